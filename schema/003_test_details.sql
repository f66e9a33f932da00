-- 003_test_details.sql — what a failed test left behind, and what a run's test output said as a whole
-- (PRAGMA user_version 3). Written with the run's test cases when it ends.
ALTER TABLE test_cases ADD COLUMN message TEXT;  -- panic / failed assertion message (failed, crashed)
ALTER TABLE test_cases ADD COLUMN location TEXT; -- where it panicked or failed: "src/lib.rs:9:5", "tests.c:18"
ALTER TABLE test_cases ADD COLUMN output TEXT;   -- its captured output (failed)

-- One row per run whose console showed a test framework.
CREATE TABLE test_runs (
	run_id    INTEGER PRIMARY KEY REFERENCES runs(id) ON DELETE CASCADE,
	framework TEXT,                     -- "libtest" or "uktest"
	not_run   INTEGER NOT NULL DEFAULT 0 -- announced tests that never started and have no name (libtest
	                                     -- announces a count): "not_run" cases are counted beside them
);
