-- 004_farm.sql — the farm: hosts with guest-memory capacity and labels, hosts added at run time
-- (POST /v1/hosts, kept across restarts), and the scheduling fields of a run (PRAGMA user_version 4).
ALTER TABLE hosts ADD COLUMN memory_mb INTEGER NOT NULL DEFAULT 0;   -- guest memory at once (0: not counted)
ALTER TABLE hosts ADD COLUMN labels TEXT;                            -- JSON array of label strings
ALTER TABLE hosts ADD COLUMN origin TEXT NOT NULL DEFAULT 'config'   -- 'config' (runnerd.conf) or 'api'
	CHECK (origin IN ('config', 'api'));
ALTER TABLE hosts ADD COLUMN image_quota_mb INTEGER NOT NULL DEFAULT 0; -- image volumes kept there (0: no quota)
ALTER TABLE hosts ADD COLUMN removed_at TEXT;                        -- DELETE /v1/hosts: runs still name it

ALTER TABLE runs ADD COLUMN priority INTEGER NOT NULL DEFAULT 0;     -- higher first; FIFO within one
ALTER TABLE runs ADD COLUMN retries INTEGER NOT NULL DEFAULT 0;      -- attempts allowed after a lost host
ALTER TABLE runs ADD COLUMN attempts INTEGER NOT NULL DEFAULT 0;     -- times it was started
ALTER TABLE runs ADD COLUMN require TEXT;                            -- JSON array: host labels it needs
