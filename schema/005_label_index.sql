-- 005_label_index.sql — GET /v1/runs?label= driven from the label index (PRAGMA user_version 5).
-- store_run_list walks labels in run-id order for the label asked, newest first, and joins each
-- match to its run: an index range scan instead of a scan of every run with a lookup per row.
-- labels_by_key (key, value) ended in the table's rowid, not run_id, so it could not give that order.
DROP INDEX labels_by_key;
CREATE INDEX labels_by_value_run ON labels (key, value, run_id);  -- label=k=v
CREATE INDEX labels_by_key_run ON labels (key, run_id);           -- label=k (any value)
