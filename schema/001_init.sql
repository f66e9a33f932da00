-- 001_init.sql — the first schema of runnerd's store (PRAGMA user_version 1).
-- Applied by runnerd at start, in one transaction, when user_version < 1.

CREATE TABLE images (
	sha256      TEXT PRIMARY KEY CHECK (length(sha256) = 64),
	size        INTEGER NOT NULL CHECK (size >= 0),
	name        TEXT,                       -- the last file name it was uploaded as
	platform    TEXT NOT NULL,              -- detected: qemu | linuxu | xen | none
	flags       INTEGER NOT NULL DEFAULT 0, -- DETECT_* bits
	summary     TEXT NOT NULL DEFAULT '',
	created_at  TEXT NOT NULL,
	last_used_at TEXT
);

CREATE TABLE hosts (
	name        TEXT PRIMARY KEY,           -- "local" or a libvirt host name
	uri         TEXT,
	capacity    INTEGER NOT NULL DEFAULT 0,
	created_at  TEXT NOT NULL
);
INSERT INTO hosts (name, uri, capacity, created_at) VALUES ('local', NULL, 0, strftime('%Y-%m-%dT%H:%M:%fZ', 'now'));

CREATE TABLE runs (
	id            INTEGER PRIMARY KEY,      -- monotonic, never reused
	image         TEXT NOT NULL REFERENCES images(sha256),
	loader        TEXT REFERENCES images(sha256), -- loader mode: the elfloader kernel; image = the program
	name          TEXT,
	mode          TEXT NOT NULL DEFAULT 'direct' CHECK (mode IN ('direct', 'loader')),
	platform      TEXT NOT NULL,
	driver        TEXT NOT NULL,
	host          TEXT NOT NULL DEFAULT 'local' REFERENCES hosts(name),
	state         TEXT NOT NULL CHECK (state IN ('queued', 'starting', 'running', 'done', 'error',
	                                             'timeout', 'cancelled', 'lost')),
	exit_code     INTEGER,
	exit_source   TEXT,
	reason        TEXT,
	accel         TEXT,
	machine       TEXT,
	memory_mb     INTEGER NOT NULL DEFAULT 0,
	vcpus         INTEGER NOT NULL DEFAULT 0,
	timeout_s     INTEGER NOT NULL,
	success_code  INTEGER,
	flags         INTEGER NOT NULL DEFAULT 0,
	created_at    TEXT NOT NULL,
	started_at    TEXT,
	ended_at      TEXT,
	duration_ms   INTEGER,
	console_bytes INTEGER NOT NULL DEFAULT 0,
	console_truncated INTEGER NOT NULL DEFAULT 0,
	daemon_pid    INTEGER
);
CREATE INDEX runs_by_state ON runs (state, id);
CREATE INDEX runs_by_image ON runs (image, id);

CREATE TABLE run_args (
	run_id  INTEGER NOT NULL REFERENCES runs(id) ON DELETE CASCADE,
	kind    TEXT NOT NULL CHECK (kind IN ('arg', 'uk_param')),
	pos     INTEGER NOT NULL,
	value   TEXT NOT NULL,
	PRIMARY KEY (run_id, kind, pos)
);

CREATE TABLE run_notes (
	run_id  INTEGER NOT NULL REFERENCES runs(id) ON DELETE CASCADE,
	pos     INTEGER NOT NULL,
	message TEXT NOT NULL,
	PRIMARY KEY (run_id, pos)
);

CREATE TABLE labels (
	run_id  INTEGER NOT NULL REFERENCES runs(id) ON DELETE CASCADE,
	key     TEXT NOT NULL,
	value   TEXT NOT NULL,
	PRIMARY KEY (run_id, key)
);
CREATE INDEX labels_by_key ON labels (key, value);

CREATE TABLE test_cases (
	run_id     INTEGER NOT NULL REFERENCES runs(id) ON DELETE CASCADE,
	pos        INTEGER NOT NULL,
	name       TEXT NOT NULL,
	outcome    TEXT NOT NULL,
	duration_s REAL,
	PRIMARY KEY (run_id, pos)
);

-- Facts a driver reports about a run (accel, command, hint, ...): key → value.
CREATE TABLE run_facts (
	run_id  INTEGER NOT NULL REFERENCES runs(id) ON DELETE CASCADE,
	key     TEXT NOT NULL,
	value   TEXT NOT NULL,
	PRIMARY KEY (run_id, key)
);
