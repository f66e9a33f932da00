/* store.c — sqlite persistence for runnerd (see store.h). */
#include "store.h"
#include "store_int.h"

#include <errno.h>
#include <fcntl.h>
#include <sqlite3.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <unistd.h>

#include "log.h"

/* Disk space held back for the store: a full disk (console logs, uploads) must not keep a
 * run from recording its end. Released when sqlite reports SQLITE_FULL, taken again by
 * store_maintain once there is room. */
#define STORE_RESERVE_BYTES (4u << 20)

/* Reads every GET makes, kept prepared for the connection's life (cached()). */
enum {
	STMT_RUN,       /* one run's columns */
	STMT_ARGS,      /* its args */
	STMT_UK_PARAMS, /* its Unikraft parameters */
	STMT_NOTES,     /* its notes */
	STMT_LABELS,    /* its labels */
	STMT_FACTS,     /* its facts */
	STMT_COUNT
};

struct store {
	sqlite3 *db;
	char *reserve_path;
	int reserve_held;
	uint64_t reserve_releases;
	sqlite3_stmt *stmts[STMT_COUNT];
	sqlite3_stmt *lists[LIST_VARIANTS];
};

/* The statement in `slot`, prepared on first use and reset for a new use; NULL when it cannot be
 * prepared. Preparing a record's six reads per request cost 0.09 of the 0.22 ms a GET /v1/runs/ID took
 * (median, docs/performance.md change 6). The caller resets it when done
 * (a statement left mid-way would hold its read snapshot and keep the WAL from being checkpointed). */
static sqlite3_stmt *cached(struct store *st, sqlite3_stmt **slot, const char *sql)
{
	if (!*slot && sqlite3_prepare_v3(st->db, sql, -1, SQLITE_PREPARE_PERSISTENT, slot, NULL) != SQLITE_OK) {
		sqlite3_finalize(*slot);
		*slot = NULL;
		return NULL;
	}
	sqlite3_reset(*slot);
	sqlite3_clear_bindings(*slot);
	return *slot;
}

/* Take the reserve (fallocate, so it really holds blocks); -ENOSPC when there is no room. */
static int reserve_take(struct store *st)
{
	if (st->reserve_held || !st->reserve_path)
		return 0;
	int fd = open(st->reserve_path, O_WRONLY | O_CREAT | O_NOFOLLOW | O_CLOEXEC, 0600);
	if (fd < 0)
		return -errno;
	int r = -posix_fallocate(fd, 0, STORE_RESERVE_BYTES);
	close(fd);
	if (r < 0) {
		unlink(st->reserve_path);
		return r;
	}
	st->reserve_held = 1;
	return 0;
}

/* The disk is full: give the reserve's space to the database. 1 when there was one. */
static int reserve_release(struct store *st)
{
	if (!st->reserve_held)
		return 0;
	unlink(st->reserve_path);
	st->reserve_held = 0;
	st->reserve_releases++;
	log_warn("disk full: released the %u MiB reserve beside the database so run records can still be written",
	         STORE_RESERVE_BYTES >> 20);
	return 1;
}

/* sqlite result → negative errno (one place). */
static int sq_err(int rc)
{
	switch (rc & 0xff) {
	case SQLITE_OK:
	case SQLITE_DONE:
	case SQLITE_ROW:
		return 0;
	case SQLITE_BUSY:
	case SQLITE_LOCKED:
		return -EBUSY;
	case SQLITE_NOMEM:
		return -ENOMEM;
	case SQLITE_CONSTRAINT:
		return -EEXIST;
	case SQLITE_FULL:
		return -ENOSPC;
	case SQLITE_READONLY:
	case SQLITE_PERM:
		return -EROFS;
	case SQLITE_NOTFOUND:
		return -ENOENT;
	default:
		return -EIO;
	}
}

static void now_iso(char out[32])
{
	struct timespec ts;
	struct tm tm;
	clock_gettime(CLOCK_REALTIME, &ts);
	gmtime_r(&ts.tv_sec, &tm);
	size_t n = strftime(out, 32, "%Y-%m-%dT%H:%M:%S", &tm);
	snprintf(out + n, 32 - n, ".%03ldZ", ts.tv_nsec / 1000000);
}

static int exec(struct store *st, const char *sql)
{
	int rc = sqlite3_exec(st->db, sql, NULL, NULL, NULL);
	if ((rc & 0xff) == SQLITE_FULL)
		reserve_release(st);
	return sq_err(rc);
}

static int run_sql_v(struct store *st, const char *sql, const char *fmt, va_list ap);

/* Prepare, bind with a tiny format ('t' text or NULL, 'i' int64, 'n' NULL), step once.
 * A statement outside a transaction that fails for a full disk is tried once more with
 * the reserve's space. */
static int run_sql(struct store *st, const char *sql, const char *fmt, ...)
{
	va_list ap, again;
	va_start(ap, fmt);
	va_copy(again, ap);
	int autocommit = sqlite3_get_autocommit(st->db);
	int r = run_sql_v(st, sql, fmt, ap);
	if (r == -ENOSPC && reserve_release(st) && autocommit)
		r = run_sql_v(st, sql, fmt, again);
	va_end(again);
	va_end(ap);
	return r;
}

static int run_sql_v(struct store *st, const char *sql, const char *fmt, va_list ap)
{
	sqlite3_stmt *stmt = NULL;
	int rc = sqlite3_prepare_v2(st->db, sql, -1, &stmt, NULL);
	if (rc != SQLITE_OK)
		return sq_err(rc);
	for (int i = 0; fmt && fmt[i]; i++) {
		if (fmt[i] == 't') {
			const char *s = va_arg(ap, const char *);
			if (s)
				sqlite3_bind_text(stmt, i + 1, s, -1, SQLITE_TRANSIENT);
			else
				sqlite3_bind_null(stmt, i + 1);
		} else if (fmt[i] == 'i') {
			sqlite3_bind_int64(stmt, i + 1, va_arg(ap, int64_t));
		} else {
			sqlite3_bind_null(stmt, i + 1);
		}
	}
	rc = sqlite3_step(stmt);
	int changes = sqlite3_changes(st->db);
	sqlite3_finalize(stmt);
	if (rc != SQLITE_DONE && rc != SQLITE_ROW)
		return sq_err(rc);
	return changes;
}

static int migrate(struct store *st, char **ret_err)
{
	sqlite3_stmt *stmt;
	int version = 0;
	if (sqlite3_prepare_v2(st->db, "PRAGMA user_version", -1, &stmt, NULL) == SQLITE_OK) {
		if (sqlite3_step(stmt) == SQLITE_ROW)
			version = sqlite3_column_int(stmt, 0);
		sqlite3_finalize(stmt);
	}
	int latest = schema_migrations_count ? schema_migrations[schema_migrations_count - 1].version : 0;
	if (version > latest) {
		if (asprintf(ret_err, "database schema version %d is newer than this runnerd (%d)", version,
		             latest) < 0)
			*ret_err = NULL;
		return -EPROTO;
	}
	if (version == latest)
		return 0;
	int r = exec(st, "BEGIN IMMEDIATE");
	for (int i = 0; r >= 0 && i < schema_migrations_count; i++) {
		const struct schema_migration *m = &schema_migrations[i];
		if (m->version <= version)
			continue;
		char *err = NULL;
		int rc = sqlite3_exec(st->db, m->sql, NULL, NULL, &err);
		if (rc != SQLITE_OK) {
			if (asprintf(ret_err, "schema migration %s failed: %s", m->name, err ? err : "?") < 0)
				*ret_err = NULL;
			sqlite3_free(err);
			r = sq_err(rc);
			break;
		}
		char pragma[64];
		snprintf(pragma, sizeof(pragma), "PRAGMA user_version = %d", m->version);
		r = exec(st, pragma);
	}
	if (r < 0) {
		exec(st, "ROLLBACK");
		return r;
	}
	return exec(st, "COMMIT");
}

/* PRAGMA quick_check: a damaged database is refused with what sqlite found, before any
 * write could spread the damage. */
static int integrity_check(struct store *st, const char *path, char **ret_err)
{
	sqlite3_stmt *stmt;
	int rc = sqlite3_prepare_v2(st->db, "PRAGMA quick_check(5)", -1, &stmt, NULL);
	char found[512] = "";
	size_t n = 0;
	while (rc == SQLITE_OK && (rc = sqlite3_step(stmt)) == SQLITE_ROW) {
		const char *line = (const char *)sqlite3_column_text(stmt, 0);
		if (line && strcmp(line, "ok") != 0 && n < sizeof(found) - 1)
			n += (size_t)snprintf(found + n, sizeof(found) - n, "%s%s", n ? "; " : "", line);
		rc = SQLITE_OK;
	}
	if (rc == SQLITE_OK || rc == SQLITE_DONE)
		rc = found[0] ? SQLITE_CORRUPT : SQLITE_OK;
	else
		snprintf(found, sizeof(found), "%s", sqlite3_errmsg(st->db));
	sqlite3_finalize(stmt);
	if (rc == SQLITE_OK)
		return 0;
	if (asprintf(ret_err,
	             "database '%s' is damaged (quick_check: %.400s): refusing to use it; move it aside "
	             "(and its -wal/-shm files) to start with an empty one, or repair it with sqlite3's .recover",
	             path, found) < 0)
		*ret_err = NULL;
	return -EIO;
}

int store_open(const char *path, struct store **ret_store, char **ret_err)
{
	struct store *st = calloc(1, sizeof(*st));
	if (!st)
		return -ENOMEM;
	int rc = sqlite3_open_v2(path, &st->db,
	                         SQLITE_OPEN_READWRITE | SQLITE_OPEN_CREATE | SQLITE_OPEN_NOMUTEX, NULL);
	if (rc != SQLITE_OK) {
		if (asprintf(ret_err, "Failed to open database '%s': %s", path,
		             st->db ? sqlite3_errmsg(st->db) : sqlite3_errstr(rc)) < 0)
			*ret_err = NULL;
		sqlite3_close(st->db);
		free(st);
		return sq_err(rc);
	}
	sqlite3_busy_timeout(st->db, 5000);
	int r = exec(st, "PRAGMA journal_mode=WAL; PRAGMA synchronous=NORMAL; PRAGMA foreign_keys=ON;");
	if (r < 0) {
		if (asprintf(ret_err, "Failed to configure database '%s': %s", path, sqlite3_errmsg(st->db)) < 0)
			*ret_err = NULL;
	} else if ((r = integrity_check(st, path, ret_err)) == 0) {
		r = migrate(st, ret_err);
	}
	if (r < 0) {
		sqlite3_close(st->db);
		free(st);
		return r;
	}
	if (asprintf(&st->reserve_path, "%s.reserve", path) < 0)
		st->reserve_path = NULL;
	else if ((r = reserve_take(st)) < 0)
		log_warn("cannot keep %u MiB in reserve beside the database (%s): a full disk can fail run records",
		         STORE_RESERVE_BYTES >> 20, strerror(-r));
	*ret_store = st;
	return 0;
}

void store_maintain(struct store *st)
{
	if (!st->reserve_held && st->reserve_path && reserve_take(st) == 0)
		log_info("disk space is back: the database's reserve is held again");
}

uint64_t store_reserve_releases(const struct store *st)
{
	return st->reserve_releases;
}

void store_close(struct store *st)
{
	if (!st)
		return;
	for (size_t i = 0; i < STMT_COUNT; i++)
		sqlite3_finalize(st->stmts[i]);
	for (size_t i = 0; i < LIST_VARIANTS; i++)
		sqlite3_finalize(st->lists[i]);
	sqlite3_close(st->db);
	if (st->reserve_path && st->reserve_held)
		unlink(st->reserve_path);
	free(st->reserve_path);
	free(st);
}

/* ---- images ---- */

int store_image_put(struct store *st, const struct image_row *img)
{
	char now[32];
	now_iso(now);
	int r = run_sql(st,
	                "INSERT INTO images (sha256, size, name, platform, flags, summary, created_at, stamp) "
	                "VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7, ?8) ON CONFLICT(sha256) DO UPDATE SET "
	                "name = coalesce(excluded.name, name), summary = excluded.summary, "
	                "platform = excluded.platform, flags = excluded.flags, size = excluded.size, "
	                "stamp = excluded.stamp",
	                "tittittt", img->sha256, img->size, img->name, img->platform, (int64_t)img->flags,
	                img->summary ? img->summary : "", now, img->stamp);
	return r < 0 ? r : 0;
}

static json_t *col_json(sqlite3_stmt *stmt, int i)
{
	switch (sqlite3_column_type(stmt, i)) {
	case SQLITE_INTEGER:
		return json_integer(sqlite3_column_int64(stmt, i));
	case SQLITE_FLOAT:
		return json_real(sqlite3_column_double(stmt, i));
	case SQLITE_TEXT:
		return json_stringn((const char *)sqlite3_column_text(stmt, i),
		                    (size_t)sqlite3_column_bytes(stmt, i));
	default:
		return json_null();
	}
}

/* Each row of a prepared statement as an object keyed by column names. */
static json_t *row_json(sqlite3_stmt *stmt)
{
	json_t *o = json_object();
	int n = sqlite3_column_count(stmt);
	for (int i = 0; i < n; i++)
		json_object_set_new(o, sqlite3_column_name(stmt, i), col_json(stmt, i));
	return o;
}

static json_t *image_json(sqlite3_stmt *stmt)
{
	json_t *o = row_json(stmt);
	json_int_t flags = json_integer_value(json_object_get(o, "flags"));
	json_object_set_new(o, "unikraft", json_boolean(flags & (1 << 7)));
	return o;
}

#define IMAGE_COLS "sha256, size, name, platform, flags, summary, created_at, last_used_at"

json_t *store_image_get(struct store *st, const char *sha256)
{
	sqlite3_stmt *stmt;
	if (sqlite3_prepare_v2(st->db, "SELECT " IMAGE_COLS " FROM images WHERE sha256 = ?1", -1, &stmt,
	                       NULL) != SQLITE_OK)
		return NULL;
	sqlite3_bind_text(stmt, 1, sha256, -1, SQLITE_TRANSIENT);
	json_t *o = sqlite3_step(stmt) == SQLITE_ROW ? image_json(stmt) : NULL;
	sqlite3_finalize(stmt);
	return o;
}

void image_info_clear(struct image_info *info)
{
	free(info->platform);
	free(info->summary);
	free(info->stamp);
	memset(info, 0, sizeof(*info));
}

static char *col_strdup(sqlite3_stmt *stmt, int i)
{
	const unsigned char *t = sqlite3_column_text(stmt, i);
	return t ? strdup((const char *)t) : NULL;
}

int store_image_find(struct store *st, const char *sha256, struct image_info *ret_info)
{
	sqlite3_stmt *stmt;
	memset(ret_info, 0, sizeof(*ret_info));
	if (sqlite3_prepare_v2(st->db, "SELECT size, platform, flags, summary, stamp FROM images WHERE sha256 = ?1",
	                       -1, &stmt, NULL) != SQLITE_OK)
		return -EIO;
	sqlite3_bind_text(stmt, 1, sha256, -1, SQLITE_TRANSIENT);
	int r = -ENOENT;
	if (sqlite3_step(stmt) == SQLITE_ROW) {
		ret_info->size = sqlite3_column_int64(stmt, 0);
		ret_info->platform = col_strdup(stmt, 1);
		ret_info->flags = (unsigned)sqlite3_column_int64(stmt, 2);
		ret_info->summary = col_strdup(stmt, 3);
		ret_info->stamp = col_strdup(stmt, 4);
		r = ret_info->platform && ret_info->summary ? 0 : -ENOMEM;
	}
	sqlite3_finalize(stmt);
	if (r < 0)
		image_info_clear(ret_info);
	return r;
}

int store_image_set_stamp(struct store *st, const char *sha256, const char *stamp)
{
	int r = run_sql(st, "UPDATE images SET stamp = ?2 WHERE sha256 = ?1", "tt", sha256, stamp);
	return r < 0 ? r : 0;
}

json_t *store_image_list(struct store *st)
{
	sqlite3_stmt *stmt;
	json_t *arr = json_array();
	if (sqlite3_prepare_v2(st->db, "SELECT " IMAGE_COLS " FROM images ORDER BY created_at DESC", -1,
	                       &stmt, NULL) != SQLITE_OK)
		return arr;
	while (sqlite3_step(stmt) == SQLITE_ROW)
		json_array_append_new(arr, image_json(stmt));
	sqlite3_finalize(stmt);
	return arr;
}

int store_image_delete(struct store *st, const char *sha256)
{
	sqlite3_stmt *stmt;
	int busy = 0;
	if (sqlite3_prepare_v2(st->db,
	                       "SELECT count(*) FROM runs WHERE (image = ?1 OR loader = ?1) AND state IN "
	                       "('queued','starting','running')",
	                       -1, &stmt, NULL) == SQLITE_OK) {
		sqlite3_bind_text(stmt, 1, sha256, -1, SQLITE_TRANSIENT);
		if (sqlite3_step(stmt) == SQLITE_ROW)
			busy = sqlite3_column_int(stmt, 0);
		sqlite3_finalize(stmt);
	}
	if (busy)
		return -EBUSY;
	json_t *img = store_image_get(st, sha256);
	if (!img)
		return -ENOENT;
	json_decref(img);
	/* Runs keep their history: the row stays while a run refers to it (the caller still
	 * deletes the file); returns 1 in that case. */
	int r = run_sql(st,
	                "DELETE FROM images WHERE sha256 = ?1 AND NOT EXISTS (SELECT 1 FROM runs WHERE "
	                "image = ?1 OR loader = ?1)",
	                "t", sha256);
	if (r < 0)
		return r;
	return r == 0 ? 1 : 0;
}

int store_image_touch(struct store *st, const char *sha256)
{
	char now[32];
	now_iso(now);
	int r = run_sql(st, "UPDATE images SET last_used_at = ?2 WHERE sha256 = ?1", "tt", sha256, now);
	return r < 0 ? r : 0;
}

/* ---- hosts ---- */

int store_host_put(struct store *st, const struct host_row *h)
{
	char now[32];
	now_iso(now);
	char *labels = h->labels ? json_dumps(h->labels, JSON_COMPACT) : NULL;
	int r = run_sql(st,
	                "INSERT INTO hosts (name, uri, capacity, created_at, memory_mb, labels, origin, image_quota_mb) "
	                "VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7, ?8) ON CONFLICT(name) DO UPDATE SET uri = excluded.uri, "
	                "capacity = excluded.capacity, memory_mb = excluded.memory_mb, labels = excluded.labels, "
	                "origin = excluded.origin, image_quota_mb = excluded.image_quota_mb, removed_at = NULL",
	                "ttititti", h->name, h->uri, (int64_t)h->capacity, now, (int64_t)h->memory_mb, labels,
	                h->api ? "api" : "config", (int64_t)h->image_quota_mb);
	free(labels);
	return r < 0 ? r : 0;
}

int store_host_remove(struct store *st, const char *name)
{
	char now[32];
	now_iso(now);
	int r = run_sql(st, "UPDATE hosts SET removed_at = ?2 WHERE name = ?1 AND removed_at IS NULL", "tt", name, now);
	return r < 0 ? r : r == 0 ? -ENOENT : 0;
}

int store_host_list_api(struct store *st, void (*cb)(const struct host_row *h, void *arg), void *arg)
{
	sqlite3_stmt *stmt;
	if (sqlite3_prepare_v2(st->db,
	                       "SELECT name, uri, capacity, memory_mb, labels, image_quota_mb FROM hosts "
	                       "WHERE origin = 'api' AND removed_at IS NULL ORDER BY created_at, name",
	                       -1, &stmt, NULL) != SQLITE_OK)
		return -EIO;
	int n = 0;
	while (sqlite3_step(stmt) == SQLITE_ROW) {
		const char *labels = (const char *)sqlite3_column_text(stmt, 4);
		struct host_row h = {
			.name = (const char *)sqlite3_column_text(stmt, 0),
			.uri = (const char *)sqlite3_column_text(stmt, 1),
			.capacity = (unsigned)sqlite3_column_int64(stmt, 2),
			.memory_mb = (unsigned)sqlite3_column_int64(stmt, 3),
			.labels = labels ? json_loads(labels, 0, NULL) : NULL,
			.image_quota_mb = (unsigned)sqlite3_column_int64(stmt, 5),
			.api = 1,
		};
		if (h.name && h.uri) {
			cb(&h, arg);
			n++;
		}
		json_decref(h.labels);
	}
	sqlite3_finalize(stmt);
	return n;
}

/* ---- runs ---- */

int store_run_insert(struct store *st, const struct run_row *row, int64_t *ret_id)
{
	char now[32];
	now_iso(now);
	int r = exec(st, "BEGIN IMMEDIATE");
	if (r < 0)
		return r;
	r = run_sql(st,
	            "INSERT INTO runs (image, loader, name, mode, platform, driver, state, accel, machine, "
	            "memory_mb, vcpus, timeout_s, success_code, flags, created_at, daemon_pid, host) VALUES "
	            "(?1, ?2, ?3, ?4, ?5, ?6, 'queued', ?7, ?8, ?9, ?10, ?11, ?12, ?13, ?14, ?15, ?16)",
	            "ttttttttiiiiitit", row->image, row->loader, row->name,
	            row->loader ? "loader" : "direct", row->platform, row->driver, row->accel,
	            row->machine, (int64_t)row->memory_mb, (int64_t)row->vcpus, (int64_t)row->timeout_s,
	            (int64_t)row->success_code, (int64_t)row->flags, now, (int64_t)getpid(),
	            row->host ? row->host : "local");
	int64_t id = sqlite3_last_insert_rowid(st->db);
	if (r >= 0 && row->success_code < 0)
		r = run_sql(st, "UPDATE runs SET success_code = NULL WHERE id = ?1", "i", id);
	if (r >= 0 && (row->priority || row->retries || row->require)) {
		char *req = row->require ? json_dumps(row->require, JSON_COMPACT) : NULL;
		r = run_sql(st, "UPDATE runs SET priority = ?2, retries = ?3, require = ?4 WHERE id = ?1", "iiit", id,
		            (int64_t)row->priority, (int64_t)row->retries, req);
		free(req);
	}
	for (size_t i = 0; r >= 0 && i < row->nargs; i++)
		r = run_sql(st, "INSERT INTO run_args VALUES (?1, 'arg', ?2, ?3)", "iit", id, (int64_t)i,
		            row->args[i]);
	for (size_t i = 0; r >= 0 && i < row->nuk_params; i++)
		r = run_sql(st, "INSERT INTO run_args VALUES (?1, 'uk_param', ?2, ?3)", "iit", id,
		            (int64_t)i, row->uk_params[i]);
	const char *key;
	json_t *val;
	if (row->labels)
		json_object_foreach(row->labels, key, val) {
			if (r < 0)
				break;
			r = run_sql(st, "INSERT INTO labels VALUES (?1, ?2, ?3)", "itt", id, key,
			            json_string_value(val));
		}
	if (r < 0) {
		exec(st, "ROLLBACK");
		return r;
	}
	r = exec(st, "COMMIT");
	if (r < 0) {
		exec(st, "ROLLBACK");
		return r;
	}
	*ret_id = id;
	return 0;
}

int store_run_set_state(struct store *st, int64_t id, const char *state)
{
	char now[32];
	now_iso(now);
	int r = run_sql(st,
	                "UPDATE runs SET state = ?2, started_at = CASE WHEN ?2 = 'running' AND started_at "
	                "IS NULL THEN ?3 ELSE started_at END WHERE id = ?1",
	                "itt", id, state, now);
	return r < 0 ? r : 0;
}

int store_run_set_placement(struct store *st, int64_t id, const char *host, const char *driver)
{
	int r = run_sql(st, "UPDATE runs SET host = ?2, driver = ?3, attempts = attempts + 1 WHERE id = ?1", "itt", id,
	                host, driver);
	return r < 0 ? r : 0;
}

int store_run_set_fact(struct store *st, int64_t id, const char *key, const char *value)
{
	int r = run_sql(st, "INSERT INTO run_facts VALUES (?1, ?2, ?3) ON CONFLICT(run_id, key) DO UPDATE "
	                    "SET value = excluded.value",
	                "itt", id, key, value);
	/* The record's own columns for the facts it shows at top level. */
	if (r >= 0 && strcmp(key, "accel") == 0)
		r = run_sql(st, "UPDATE runs SET accel = ?2 WHERE id = ?1", "it", id, value);
	else if (r >= 0 && strcmp(key, "machine") == 0)
		r = run_sql(st, "UPDATE runs SET machine = ?2 WHERE id = ?1", "it", id, value);
	return r < 0 ? r : 0;
}

int store_run_add_note(struct store *st, int64_t id, const char *message)
{
	int r = run_sql(st,
	                "INSERT INTO run_notes VALUES (?1, (SELECT coalesce(max(pos), -1) + 1 FROM run_notes "
	                "WHERE run_id = ?1), ?2)",
	                "it", id, message);
	return r < 0 ? r : 0;
}

int store_run_finish(struct store *st, int64_t id, const struct run_end *end)
{
	char now[32];
	now_iso(now);
	/* One statement: the final state never lands without its exit code. */
	static const char sql[] =
		"UPDATE runs SET state = ?2, exit_code = ?3, exit_source = ?4, reason = ?5, "
		"ended_at = ?6, console_bytes = ?7, console_truncated = ?8, duration_ms = "
		"CAST(round((julianday(?6) - julianday(coalesce(started_at, created_at))) * "
		"86400000) AS INTEGER) WHERE id = ?1";
	int r = end->has_exit_code
	                ? run_sql(st, sql, "ititttii", id, end->state, (int64_t)end->exit_code, end->exit_source,
	                          end->reason, now, end->console_bytes, (int64_t)end->console_truncated)
	                : run_sql(st, sql, "itntttii", id, end->state, end->exit_source, end->reason, now,
	                          end->console_bytes, (int64_t)end->console_truncated);
	return r < 0 ? r : 0;
}

/* Rows per transaction when test cases are written: a writer on another connection holds
 * sqlite's write lock only this long at a time, so the loop's own writes barely wait. */
#define TESTS_BATCH 1000

static void bind_opt_text(sqlite3_stmt *stmt, int i, const json_t *v)
{
	if (json_is_string(v))
		sqlite3_bind_text(stmt, i, json_string_value(v), (int)json_string_length(v), SQLITE_TRANSIENT);
	else
		sqlite3_bind_null(stmt, i);
}

/* The run-level part of `tests` (framework, unnamed not-run count), replacing any earlier one. */
static int write_test_run(sqlite3 *db, int64_t id, const json_t *tests)
{
	sqlite3_stmt *stmt = NULL;
	int rc = sqlite3_prepare_v2(db, "INSERT OR REPLACE INTO test_runs (run_id, framework, not_run) VALUES (?1, ?2, ?3)",
	                            -1, &stmt, NULL);
	if (rc == SQLITE_OK) {
		json_int_t nr = json_integer_value(json_object_get(tests, "not_run"));
		sqlite3_bind_int64(stmt, 1, id);
		bind_opt_text(stmt, 2, json_object_get(tests, "framework"));
		sqlite3_bind_int64(stmt, 3, nr > 0 ? nr : 0);
		rc = sqlite3_step(stmt) == SQLITE_DONE ? SQLITE_OK : sqlite3_errcode(db);
	}
	sqlite3_finalize(stmt);
	return rc;
}

/* A run's test cases on connection `db` (the loop's or a worker's own), in transactions
 * of TESTS_BATCH rows with one prepared INSERT. */
static int write_tests(sqlite3 *db, int64_t id, const json_t *tests)
{
	sqlite3_stmt *del = NULL, *ins = NULL;
	const json_t *cases = json_object_get(tests, "cases");
	int rc = sqlite3_exec(db, "BEGIN IMMEDIATE", NULL, NULL, NULL);
	if (rc == SQLITE_OK)
		rc = write_test_run(db, id, tests);
	if (rc == SQLITE_OK)
		rc = sqlite3_prepare_v2(db, "DELETE FROM test_cases WHERE run_id = ?1", -1, &del, NULL);
	if (rc == SQLITE_OK) {
		sqlite3_bind_int64(del, 1, id);
		rc = sqlite3_step(del) == SQLITE_DONE ? SQLITE_OK : sqlite3_errcode(db);
	}
	if (rc == SQLITE_OK)
		rc = sqlite3_prepare_v2(db,
		                        "INSERT INTO test_cases (run_id, pos, name, outcome, duration_s, message, "
		                        "location, output) VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7, ?8)",
		                        -1, &ins, NULL);
	size_t i;
	json_t *c;
	json_array_foreach(cases, i, c) {
		if (rc != SQLITE_OK)
			break;
		if (i && i % TESTS_BATCH == 0) {
			rc = sqlite3_exec(db, "COMMIT; BEGIN IMMEDIATE", NULL, NULL, NULL);
			if (rc != SQLITE_OK)
				break;
		}
		json_t *dur = json_object_get(c, "duration_s");
		sqlite3_bind_int64(ins, 1, id);
		sqlite3_bind_int64(ins, 2, (sqlite3_int64)i);
		sqlite3_bind_text(ins, 3, json_string_value(json_object_get(c, "name")), -1, SQLITE_TRANSIENT);
		sqlite3_bind_text(ins, 4, json_string_value(json_object_get(c, "outcome")), -1, SQLITE_TRANSIENT);
		if (json_is_number(dur))
			sqlite3_bind_double(ins, 5, json_number_value(dur));
		else
			sqlite3_bind_null(ins, 5);
		bind_opt_text(ins, 6, json_object_get(c, "message"));
		bind_opt_text(ins, 7, json_object_get(c, "location"));
		bind_opt_text(ins, 8, json_object_get(c, "output"));
		rc = sqlite3_step(ins) == SQLITE_DONE ? SQLITE_OK : sqlite3_errcode(db);
		sqlite3_reset(ins);
		sqlite3_clear_bindings(ins);
	}
	sqlite3_finalize(del);
	sqlite3_finalize(ins);
	if (rc == SQLITE_OK)
		rc = sqlite3_exec(db, "COMMIT", NULL, NULL, NULL);
	if (rc != SQLITE_OK && !sqlite3_get_autocommit(db))
		sqlite3_exec(db, "ROLLBACK", NULL, NULL, NULL);
	return sq_err(rc);
}

int store_run_set_tests(struct store *st, int64_t id, const json_t *tests)
{
	int r = write_tests(st->db, id, tests);
	if (r == -ENOSPC && reserve_release(st))
		r = write_tests(st->db, id, tests);
	return r;
}

const char *store_path(const struct store *st)
{
	return sqlite3_db_filename(st->db, "main");
}

int store_run_set_tests_at(const char *db_path, int64_t id, const json_t *tests)
{
	sqlite3 *db = NULL;
	int rc = sqlite3_open_v2(db_path, &db, SQLITE_OPEN_READWRITE | SQLITE_OPEN_NOMUTEX, NULL);
	int r = sq_err(rc);
	if (rc == SQLITE_OK) {
		sqlite3_busy_timeout(db, 10000);
		r = sq_err(sqlite3_exec(db, "PRAGMA foreign_keys=ON; PRAGMA synchronous=NORMAL", NULL, NULL, NULL));
	}
	if (r == 0)
		r = write_tests(db, id, tests);
	sqlite3_close(db);
	return r;
}

#define RUN_COLS                                                                                     \
	"CAST(id AS TEXT) AS id, state, exit_code, exit_source, reason, image, loader, name, mode, "  \
	"platform, driver, host, accel, machine, memory_mb, vcpus, timeout_s, success_code, "         \
	"created_at, started_at, ended_at, duration_ms, console_bytes, console_truncated, priority, retries, " \
	"attempts, require"

static void strings_into(struct store *st, json_t *o, const char *field, int slot, const char *sql, int64_t id)
{
	sqlite3_stmt *stmt = cached(st, &st->stmts[slot], sql);
	json_t *arr = json_array();
	if (stmt) {
		sqlite3_bind_int64(stmt, 1, id);
		while (sqlite3_step(stmt) == SQLITE_ROW)
			json_array_append_new(arr, col_json(stmt, 0));
		sqlite3_reset(stmt);
	}
	json_object_set_new(o, field, arr);
}

/* Rows (key, value) of `sql` for run `id` as object `field` of `o`. */
static void pairs_into(struct store *st, json_t *o, const char *field, int slot, const char *sql, int64_t id)
{
	sqlite3_stmt *stmt = cached(st, &st->stmts[slot], sql);
	json_t *obj = json_object();
	if (stmt) {
		sqlite3_bind_int64(stmt, 1, id);
		while (sqlite3_step(stmt) == SQLITE_ROW)
			json_object_set_new(obj, (const char *)sqlite3_column_text(stmt, 0), col_json(stmt, 1));
		sqlite3_reset(stmt);
	}
	json_object_set_new(o, field, obj);
}

static json_t *run_json(struct store *st, sqlite3_stmt *stmt)
{
	json_t *o = row_json(stmt);
	int64_t id = strtoll(json_string_value(json_object_get(o, "id")), NULL, 10);
	json_object_set_new(o, "console_truncated",
	                    json_boolean(json_integer_value(json_object_get(o, "console_truncated"))));
	const char *req = json_string_value(json_object_get(o, "require"));
	json_t *reqv = req ? json_loads(req, 0, NULL) : NULL;
	json_object_set_new(o, "require", reqv ? reqv : json_array());
	strings_into(st, o, "args", STMT_ARGS,
	             "SELECT value FROM run_args WHERE run_id = ?1 AND kind = 'arg' ORDER BY pos", id);
	strings_into(st, o, "uk_params", STMT_UK_PARAMS,
	             "SELECT value FROM run_args WHERE run_id = ?1 AND kind = 'uk_param' ORDER BY pos", id);
	strings_into(st, o, "notes", STMT_NOTES, "SELECT message FROM run_notes WHERE run_id = ?1 ORDER BY pos", id);
	pairs_into(st, o, "labels", STMT_LABELS, "SELECT key, value FROM labels WHERE run_id = ?1", id);
	pairs_into(st, o, "facts", STMT_FACTS, "SELECT key, value FROM run_facts WHERE run_id = ?1 ORDER BY key", id);
	return o;
}

json_t *store_run_get(struct store *st, int64_t id)
{
	sqlite3_stmt *stmt = cached(st, &st->stmts[STMT_RUN], "SELECT " RUN_COLS " FROM runs WHERE id = ?1");
	if (!stmt)
		return NULL;
	sqlite3_bind_int64(stmt, 1, id);
	json_t *o = sqlite3_step(stmt) == SQLITE_ROW ? run_json(st, stmt) : NULL;
	sqlite3_reset(stmt);
	return o;
}

json_t *store_run_tests(struct store *st, int64_t id)
{
	json_t *rec = store_run_get(st, id);
	if (!rec)
		return NULL;
	json_decref(rec);
	sqlite3_stmt *stmt;
	json_t *cases = json_array();
	json_t *framework = json_null(), *crashed_in = json_null();
	json_int_t counts[6] = {0}, unnamed_not_run = 0;
	static const char *const names[] = {"ok", "failed", "ignored", "crashed", "running", "not_run"};
	if (sqlite3_prepare_v2(st->db, "SELECT framework, not_run FROM test_runs WHERE run_id = ?1", -1, &stmt,
	                       NULL) == SQLITE_OK) {
		sqlite3_bind_int64(stmt, 1, id);
		if (sqlite3_step(stmt) == SQLITE_ROW) {
			json_decref(framework);
			framework = col_json(stmt, 0);
			unnamed_not_run = sqlite3_column_int64(stmt, 1);
		}
		sqlite3_finalize(stmt);
	}
	if (sqlite3_prepare_v2(st->db,
	                       "SELECT name, outcome, duration_s, message, location, output FROM test_cases "
	                       "WHERE run_id = ?1 ORDER BY pos",
	                       -1, &stmt, NULL) == SQLITE_OK) {
		sqlite3_bind_int64(stmt, 1, id);
		while (sqlite3_step(stmt) == SQLITE_ROW) {
			json_t *c = row_json(stmt);
			const char *oc = (const char *)sqlite3_column_text(stmt, 1);
			for (int k = 0; k < 6; k++)
				if (oc && strcmp(oc, names[k]) == 0)
					counts[k]++;
			if (oc && strcmp(oc, "crashed") == 0 && json_is_null(crashed_in)) {
				json_decref(crashed_in);
				crashed_in = json_string((const char *)sqlite3_column_text(stmt, 0));
			}
			json_array_append_new(cases, c);
		}
		sqlite3_finalize(stmt);
	}
	counts[5] += unnamed_not_run;
	json_t *summary = json_object();
	for (int k = 0; k < 6; k++)
		json_object_set_new(summary, names[k], json_integer(counts[k]));
	json_object_set_new(summary, "total",
	                    json_integer((json_int_t)json_array_size(cases) + unnamed_not_run));
	json_object_set_new(summary, "crashed_in", crashed_in);
	char ids[32];
	snprintf(ids, sizeof(ids), "%lld", (long long)id);
	return json_pack("{s:s,s:o,s:o,s:o}", "id", ids, "framework", framework, "cases", cases, "summary",
	                 summary);
}

static unsigned list_mask(const struct run_filter *f)
{
	return (f->state ? LIST_STATE : 0) | (f->image ? LIST_IMAGE : 0) | (f->label_key ? LIST_LABEL : 0) |
	       (f->label_key && f->label_value ? LIST_VALUE : 0) | (f->before ? LIST_BEFORE : 0);
}

/* Only the terms that filter (a term like "?1 IS NULL OR state = ?1" keeps sqlite from using any
 * index). With a label, the walk is the label's index in run-id order (005_label_index.sql) joined to
 * each run: labels hold one value per key and run, so the join yields each run at most once. */
unsigned store_list_sql(const struct run_filter *f, char *buf, size_t size)
{
	unsigned mask = list_mask(f);
	const char *id = mask & LIST_LABEL ? "l.run_id" : "r.id";
	int n = snprintf(buf, size, "SELECT " RUN_COLS " FROM %s WHERE 1",
	                 mask & LIST_LABEL ? "labels l JOIN runs r ON r.id = l.run_id" : "runs r");
	if (mask & LIST_LABEL)
		n += snprintf(buf + n, size - (size_t)n, " AND l.key = ?3%s", mask & LIST_VALUE ? " AND l.value = ?4" : "");
	if (mask & LIST_STATE)
		n += snprintf(buf + n, size - (size_t)n, " AND r.state = ?1");
	if (mask & LIST_IMAGE)
		n += snprintf(buf + n, size - (size_t)n, " AND r.image = ?2");
	if (mask & LIST_BEFORE)
		n += snprintf(buf + n, size - (size_t)n, " AND %s < ?5", id);
	snprintf(buf + n, size - (size_t)n, " ORDER BY %s DESC LIMIT ?6", id);
	return mask;
}

json_t *store_run_list(struct store *st, const struct run_filter *f)
{
	json_t *arr = json_array();
	char sql[1024] = "";
	unsigned mask = list_mask(f);
	if (!st->lists[mask])
		store_list_sql(f, sql, sizeof(sql));
	sqlite3_stmt *stmt = cached(st, &st->lists[mask], sql);
	if (!stmt)
		return arr;
	sqlite3_bind_text(stmt, 1, f->state, -1, SQLITE_TRANSIENT);
	sqlite3_bind_text(stmt, 2, f->image, -1, SQLITE_TRANSIENT);
	sqlite3_bind_text(stmt, 3, f->label_key, -1, SQLITE_TRANSIENT);
	sqlite3_bind_text(stmt, 4, f->label_value, -1, SQLITE_TRANSIENT);
	sqlite3_bind_int64(stmt, 5, f->before);
	sqlite3_bind_int64(stmt, 6, f->limit);
	while (sqlite3_step(stmt) == SQLITE_ROW)
		json_array_append_new(arr, run_json(st, stmt));
	sqlite3_reset(stmt);
	return arr;
}

int store_runs_mark_lost(struct store *st, void (*cb)(int64_t id, void *arg), void *arg)
{
	sqlite3_stmt *stmt;
	int rc = sqlite3_prepare_v2(st->db,
	                            "SELECT id FROM runs WHERE state IN ('queued','starting','running')",
	                            -1, &stmt, NULL);
	if (rc != SQLITE_OK)
		return sq_err(rc);
	while (sqlite3_step(stmt) == SQLITE_ROW)
		if (cb)
			cb(sqlite3_column_int64(stmt, 0), arg);
	sqlite3_finalize(stmt);
	char now[32];
	now_iso(now);
	int r = run_sql(st,
	                "UPDATE runs SET state = 'lost', exit_code = 125, exit_source = 'runner', reason = "
	                "'runnerd stopped while the run was active', ended_at = ?1 WHERE state IN "
	                "('queued','starting','running')",
	                "t", now);
	return r;
}
