/*
 * store.h — runnerd's sqlite store: images, runs (with args, notes, labels,
 * parsed test cases) and hosts. WAL, synchronous=NORMAL, foreign keys on.
 * The schema comes from schema/NNN_*.sql (embedded at build time) and is
 * migrated by PRAGMA user_version in one transaction at open.
 * Records leave the store as jansson objects: the API's JSON is the record.
 */
#ifndef RUNNERD_STORE_H
#define RUNNERD_STORE_H

#include <jansson.h>
#include <stdint.h>

struct store;

/* Embedded migrations (generated schema_sql.c). */
struct schema_migration {
	int version;
	const char *name;
	const char *sql;
};
extern const struct schema_migration schema_migrations[];
extern const int schema_migrations_count;

struct image_row {
	char sha256[65];
	int64_t size;
	const char *name;     /* may be NULL */
	const char *platform; /* "qemu", "linuxu", "xen", "none" */
	unsigned flags;       /* DETECT_* */
	const char *summary;
	const char *stamp;    /* stat fingerprint of the stored file (image.c); NULL = unknown */
};

/* A stored image's record, typed (strings owned: image_info_clear). */
struct image_info {
	int64_t size;
	char *platform;       /* "qemu", "linuxu", "xen", "none" */
	unsigned flags;       /* DETECT_* */
	char *summary;
	char *stamp;          /* NULL when the file was never fingerprinted */
};
void image_info_clear(struct image_info *info);

/* A run as inserted; strings borrowed. */
struct run_row {
	const char *image;
	const char *loader;    /* NULL unless loader mode */
	const char *name;
	const char *platform;
	const char *driver;
	const char *host;      /* NULL = "local" (a row of hosts: store_host_put) */
	const char *machine;   /* NULL = default */
	const char *accel;     /* requested: auto|kvm|tcg */
	unsigned memory_mb, vcpus, timeout_s;
	int success_code;      /* -1 = none */
	unsigned flags;
	char *const *args;
	size_t nargs;
	char *const *uk_params;
	size_t nuk_params;
	json_t *labels;        /* object of strings or NULL */
	int priority;          /* higher runs first */
	unsigned retries;      /* attempts allowed after a lost host */
	json_t *require;       /* array of host labels the run needs, or NULL */
};

/* A host as stored (strings borrowed). */
struct host_row {
	const char *name;
	const char *uri;         /* NULL = this machine */
	unsigned capacity;       /* guests at once */
	unsigned memory_mb;      /* guest memory at once, 0 = not counted */
	json_t *labels;          /* array of strings or NULL */
	unsigned image_quota_mb; /* 0 = no quota */
	int api;                 /* added through POST /v1/hosts (restored at start), else runnerd.conf */
};

/* The end of a run. */
struct run_end {
	const char *state;
	int has_exit_code;
	int exit_code;
	const char *exit_source;
	const char *reason;
	int64_t console_bytes;
	int console_truncated;
};

/* Open (creating) the database at `path` and migrate it. */
int store_open(const char *path, struct store **ret_store, char **ret_err);
void store_close(struct store *st);
/* The store keeps a few MiB of disk in reserve beside the database (DB.reserve) and gives
 * them up when the disk is full, so runs can still record their end. Called periodically:
 * takes the reserve again once there is room. */
void store_maintain(struct store *st);
/* How often the reserve was given up (metrics). */
uint64_t store_reserve_releases(const struct store *st);

/* Insert or refresh an image (name/summary updated, created_at kept). */
int store_image_put(struct store *st, const struct image_row *img);
/* The image record as JSON, or NULL when unknown. */
json_t *store_image_get(struct store *st, const char *sha256);
json_t *store_image_list(struct store *st);
/* The typed record: 0, or -ENOENT when unknown. */
int store_image_find(struct store *st, const char *sha256, struct image_info *ret_info);
/* Record the file's fingerprint after it was verified (NULL clears it). */
int store_image_set_stamp(struct store *st, const char *sha256, const char *stamp);
/* -EBUSY while a queued/starting/running run uses it, -ENOENT when unknown. */
int store_image_delete(struct store *st, const char *sha256);
int store_image_touch(struct store *st, const char *sha256);

/* Insert a queued run; *ret_id gets its id. */
int store_run_insert(struct store *st, const struct run_row *row, int64_t *ret_id);
/* Record (or update, and un-remove) a host runs can name. */
int store_host_put(struct store *st, const struct host_row *h);
/* DELETE /v1/hosts: the row stays (runs name it) with removed_at set. -ENOENT when absent. */
int store_host_remove(struct store *st, const char *name);
/* Every host added through the API and not removed, oldest first: `cb` per host (row valid
 * during the call). Returns how many, or -errno. */
int store_host_list_api(struct store *st, void (*cb)(const struct host_row *h, void *arg), void *arg);
/* Where a run was placed when it started (host, driver); counts an attempt. */
int store_run_set_placement(struct store *st, int64_t id, const char *host, const char *driver);
/* state ∈ starting|running; records started_at when it becomes running. */
int store_run_set_state(struct store *st, int64_t id, const char *state);
/* Record a fact a driver reported ("accel" → "tcg", "command" → argv); accel and
 * machine also update the record's columns. */
int store_run_set_fact(struct store *st, int64_t id, const char *key, const char *value);
int store_run_add_note(struct store *st, int64_t id, const char *message);
/* Final state, exit status, timings, console size. */
int store_run_finish(struct store *st, int64_t id, const struct run_end *end);
/* Replace the run's parsed tests (transactions of 1000 rows): `tests` is
 * {"framework": "libtest"|"uktest"|null, "not_run": N (unnamed tests never started),
 *  "cases": [{"name", "outcome", "duration_s"?, "message"?, "location"?, "output"?}, ...]}. */
int store_run_set_tests(struct store *st, int64_t id, const json_t *tests);
/* The same on a connection of its own to the database at `db_path` (store_path): safe on a
 * worker thread while the loop uses the store. */
int store_run_set_tests_at(const char *db_path, int64_t id, const json_t *tests);
/* The database file's path. */
const char *store_path(const struct store *st);

/* Full record (see docs/api.md) or NULL. */
json_t *store_run_get(struct store *st, int64_t id);
/* Parsed tests: {"id", "framework", "cases": [...], "summary": {ok, failed, ignored, crashed, running,
 * not_run (named + unnamed), total, crashed_in (the first crashed case or null)}}, or NULL when the
 * run is unknown. */
json_t *store_run_tests(struct store *st, int64_t id);

struct run_filter {
	const char *state;       /* NULL = any */
	const char *image;       /* NULL = any */
	const char *label_key;   /* NULL = any */
	const char *label_value; /* NULL = any value of label_key */
	int64_t before;          /* 0 = newest */
	int limit;               /* 1..1000 */
};
json_t *store_run_list(struct store *st, const struct run_filter *f);

/* Runs a dead daemon left queued/starting/running become `lost`; `cb` sees each id first. */
int store_runs_mark_lost(struct store *st, void (*cb)(int64_t id, void *arg), void *arg);

#endif
