/*
 * test_store.c — runnerd's sqlite store on real database files in a temporary
 * directory: schema creation and migration guard, image records and their
 * deletion rules, run records (args, params, labels, facts, notes, end),
 * listing order/paging/filters (against the query of schema 4 as a reference, and
 * their query plans), the migration to the label index, lost-run recovery and parsed
 * test cases.
 */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <errno.h>
#include <fcntl.h>
#include <sys/stat.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include <cmocka.h>
#include <sqlite3.h>

#include "store.h"
#include "store_int.h"

#define SHA_A "aaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaa"
#define SHA_B "bbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbb"
#define SHA_L "1111111111111111111111111111111111111111111111111111111111111111"

struct fixture {
	char dir[64];
	char path[128];
	struct store *st;
};

static int setup(void **state)
{
	struct fixture *fx = calloc(1, sizeof(*fx));
	strcpy(fx->dir, "/tmp/ukrun-test-store-XXXXXX");
	if (!mkdtemp(fx->dir))
		return -1;
	snprintf(fx->path, sizeof(fx->path), "%s/runnerd.db", fx->dir);
	char *err = NULL;
	if (store_open(fx->path, &fx->st, &err) < 0) {
		print_error("store_open: %s\n", err ? err : "?");
		free(err);
		return -1;
	}
	*state = fx;
	return 0;
}

static int teardown(void **state)
{
	struct fixture *fx = *state;
	store_close(fx->st);
	char p[192];
	static const char *const files[] = { "runnerd.db", "runnerd.db-wal", "runnerd.db-shm", "other.db",
	                                     "other.db-wal", "other.db-shm" };
	for (size_t i = 0; i < sizeof(files) / sizeof(files[0]); i++) {
		snprintf(p, sizeof(p), "%s/%s", fx->dir, files[i]);
		unlink(p);
	}
	rmdir(fx->dir);
	free(fx);
	return 0;
}

static int user_version(const char *path)
{
	sqlite3 *db;
	sqlite3_stmt *stmt;
	int v = -1;
	assert_int_equal(sqlite3_open_v2(path, &db, SQLITE_OPEN_READONLY, NULL), SQLITE_OK);
	assert_int_equal(sqlite3_prepare_v2(db, "PRAGMA user_version", -1, &stmt, NULL), SQLITE_OK);
	if (sqlite3_step(stmt) == SQLITE_ROW)
		v = sqlite3_column_int(stmt, 0);
	sqlite3_finalize(stmt);
	sqlite3_close(db);
	return v;
}

static void put_image(struct store *st, const char *sha, const char *name)
{
	struct image_row img = { .size = 1234, .name = name, .platform = "qemu", .flags = 1u << 7,
	                         .summary = "Unikraft kernel" };
	memcpy(img.sha256, sha, 65);
	assert_int_equal(store_image_put(st, &img), 0);
}

static int64_t insert_run(struct store *st, const char *image, const char *label_val)
{
	json_t *labels = label_val ? json_pack("{s:s}", "suite", label_val) : NULL;
	struct run_row row = { .image = image, .platform = "qemu", .driver = "qemu", .accel = "auto",
	                       .timeout_s = 300, .success_code = -1, .labels = labels };
	int64_t id = 0;
	assert_int_equal(store_run_insert(st, &row, &id), 0);
	json_decref(labels);
	assert_true(id > 0);
	return id;
}

static const char *sget(json_t *o, const char *key)
{
	return json_string_value(json_object_get(o, key));
}

static void test_open_creates_schema(void **state)
{
	struct fixture *fx = *state;
	assert_true(schema_migrations_count >= 1);
	assert_int_equal(schema_migrations[0].version, 1);
	assert_int_equal(user_version(fx->path), schema_migrations[schema_migrations_count - 1].version);
	assert_int_equal(user_version(fx->path), 5);
	put_image(fx->st, SHA_A, "a.elf");
	int64_t id = insert_run(fx->st, SHA_A, NULL);
	store_close(fx->st);
	fx->st = NULL;

	/* Reopen: nothing is migrated again and the data is still there. */
	char *err = NULL;
	assert_int_equal(store_open(fx->path, &fx->st, &err), 0);
	assert_null(err);
	assert_int_equal(user_version(fx->path), 5);
	json_t *img = store_image_get(fx->st, SHA_A);
	assert_non_null(img);
	json_decref(img);
	json_t *run = store_run_get(fx->st, id);
	assert_non_null(run);
	json_decref(run);
}

static void test_newer_schema_refused(void **state)
{
	struct fixture *fx = *state;
	char path[160];
	snprintf(path, sizeof(path), "%s/other.db", fx->dir);
	sqlite3 *db;
	assert_int_equal(sqlite3_open(path, &db), SQLITE_OK);
	assert_int_equal(sqlite3_exec(db, "CREATE TABLE future (x); PRAGMA user_version = 99", NULL, NULL, NULL),
	                 SQLITE_OK);
	sqlite3_close(db);
	struct store *st = NULL;
	char *err = NULL;
	int r = store_open(path, &st, &err);
	assert_true(r < 0);
	assert_int_equal(r, -EPROTO);
	assert_null(st);
	assert_non_null(err);
	assert_non_null(strstr(err, "99"));
	assert_non_null(strstr(err, "newer"));
	free(err);
	/* The database was not touched. */
	assert_int_equal(user_version(path), 99);
}

static void test_damaged_refused(void **state)
{
	struct fixture *fx = *state;
	put_image(fx->st, SHA_A, "a.elf");
	for (int i = 0; i < 400; i++)
		insert_run(fx->st, SHA_A, NULL);
	store_close(fx->st);
	fx->st = NULL;
	/* Scribble over b-tree pages in the middle of the file (as a bad disk or a stray write would). */
	int fd = open(fx->path, O_RDWR | O_CLOEXEC);
	assert_true(fd >= 0);
	struct stat stbuf;
	assert_int_equal(fstat(fd, &stbuf), 0);
	assert_true(stbuf.st_size >= 8 * 4096);
	char junk[4096];
	memset(junk, 0x5a, sizeof(junk));
	for (off_t page = 3; page < 7; page++)
		assert_int_equal(pwrite(fd, junk, 64, page * 4096), 64);
	close(fd);
	char *err = NULL;
	struct store *st = NULL;
	assert_int_equal(store_open(fx->path, &st, &err), -EIO);
	assert_null(st);
	assert_non_null(err);
	assert_non_null(strstr(err, "is damaged"));
	assert_non_null(strstr(err, fx->path));
	free(err);
}

static void test_open_unwritable(void **state)
{
	struct fixture *fx = *state;
	char path[160];
	snprintf(path, sizeof(path), "%s/missing-dir/x.db", fx->dir);
	struct store *st = NULL;
	char *err = NULL;
	assert_true(store_open(path, &st, &err) < 0);
	assert_null(st);
	assert_non_null(err);
	assert_non_null(strstr(err, "missing-dir/x.db"));
	free(err);
}

static void test_images(void **state)
{
	struct fixture *fx = *state;
	assert_null(store_image_get(fx->st, SHA_A));
	put_image(fx->st, SHA_A, "a.elf");
	put_image(fx->st, SHA_B, NULL);
	json_t *a = store_image_get(fx->st, SHA_A);
	assert_non_null(a);
	assert_string_equal(sget(a, "sha256"), SHA_A);
	assert_string_equal(sget(a, "name"), "a.elf");
	assert_string_equal(sget(a, "platform"), "qemu");
	assert_int_equal(json_integer_value(json_object_get(a, "size")), 1234);
	assert_true(json_is_true(json_object_get(a, "unikraft")));
	assert_string_equal(sget(a, "summary"), "Unikraft kernel");
	assert_non_null(sget(a, "created_at"));
	assert_true(json_is_null(json_object_get(a, "last_used_at")));
	char *created = strdup(sget(a, "created_at"));
	json_decref(a);

	/* Re-put: the name is kept when the new one is NULL, created_at is kept. */
	struct image_row again = { .size = 1234, .name = NULL, .platform = "linuxu", .summary = "x" };
	memcpy(again.sha256, SHA_A, 65);
	assert_int_equal(store_image_put(fx->st, &again), 0);
	a = store_image_get(fx->st, SHA_A);
	assert_string_equal(sget(a, "name"), "a.elf");
	assert_string_equal(sget(a, "platform"), "linuxu");
	assert_string_equal(sget(a, "created_at"), created);
	assert_true(json_is_false(json_object_get(a, "unikraft")));
	json_decref(a);
	free(created);

	assert_int_equal(store_image_touch(fx->st, SHA_A), 0);
	a = store_image_get(fx->st, SHA_A);
	assert_non_null(sget(a, "last_used_at"));
	json_decref(a);

	/* A bad digest violates the schema's CHECK. */
	struct image_row bad = { .size = 1, .platform = "none" };
	strcpy(bad.sha256, "abc");
	assert_true(store_image_put(fx->st, &bad) < 0);

	json_t *list = store_image_list(fx->st);
	assert_int_equal(json_array_size(list), 2);
	json_decref(list);

	assert_int_equal(store_image_delete(fx->st, SHA_B), 0);
	assert_null(store_image_get(fx->st, SHA_B));
	assert_int_equal(store_image_delete(fx->st, SHA_B), -ENOENT);
	list = store_image_list(fx->st);
	assert_int_equal(json_array_size(list), 1);
	json_decref(list);
}

static void test_image_delete_in_use(void **state)
{
	struct fixture *fx = *state;
	put_image(fx->st, SHA_A, "prog");
	put_image(fx->st, SHA_L, "elfloader");
	const char *argv[] = { "x" };
	struct run_row row = { .image = SHA_A, .loader = SHA_L, .platform = "qemu", .driver = "qemu",
	                       .timeout_s = 10, .success_code = -1, .args = (char *const *)argv, .nargs = 1 };
	int64_t id;
	assert_int_equal(store_run_insert(fx->st, &row, &id), 0);

	/* Queued, starting, running: both the program and the loader are busy. */
	static const char *const active[] = { "queued", "starting", "running" };
	for (size_t i = 0; i < 3; i++) {
		if (i)
			assert_int_equal(store_run_set_state(fx->st, id, active[i]), 0);
		assert_int_equal(store_image_delete(fx->st, SHA_A), -EBUSY);
		assert_int_equal(store_image_delete(fx->st, SHA_L), -EBUSY);
	}
	struct run_end end = { .state = "done", .has_exit_code = 1, .exit_code = 0, .exit_source = "guest" };
	assert_int_equal(store_run_finish(fx->st, id, &end), 0);

	/* A past run refers to them: the records stay as history (returns 1). */
	assert_int_equal(store_image_delete(fx->st, SHA_A), 1);
	assert_int_equal(store_image_delete(fx->st, SHA_L), 1);
	json_t *img = store_image_get(fx->st, SHA_A);
	assert_non_null(img);
	json_decref(img);
	json_t *run = store_run_get(fx->st, id);
	assert_string_equal(sget(run, "image"), SHA_A);
	assert_string_equal(sget(run, "loader"), SHA_L);
	assert_string_equal(sget(run, "mode"), "loader");
	json_decref(run);
}

static void test_run_record(void **state)
{
	struct fixture *fx = *state;
	put_image(fx->st, SHA_A, "a");
	char *args[] = { "--filter", "b c", "", "z" };
	char *params[] = { "vfs.rootfs=ramfs", "a.b=1", "x=y" };
	json_t *labels = json_pack("{s:s,s:s}", "ci/job", "7", "owner", "me");
	struct run_row row = { .image = SHA_A, .name = "a.elf", .platform = "qemu", .driver = "qemu",
	                       .machine = "microvm", .accel = "tcg", .memory_mb = 128, .vcpus = 2,
	                       .timeout_s = 42, .success_code = 3, .flags = 1, .args = args, .nargs = 4,
	                       .uk_params = params, .nuk_params = 3, .labels = labels };
	int64_t id;
	assert_int_equal(store_run_insert(fx->st, &row, &id), 0);
	json_decref(labels);

	json_t *r = store_run_get(fx->st, id);
	assert_non_null(r);
	char ids[32];
	snprintf(ids, sizeof(ids), "%lld", (long long)id);
	assert_string_equal(sget(r, "id"), ids);
	assert_string_equal(sget(r, "state"), "queued");
	assert_string_equal(sget(r, "mode"), "direct");
	assert_true(json_is_null(json_object_get(r, "loader")));
	assert_string_equal(sget(r, "name"), "a.elf");
	assert_string_equal(sget(r, "host"), "local");
	assert_string_equal(sget(r, "machine"), "microvm");
	assert_string_equal(sget(r, "accel"), "tcg");
	assert_int_equal(json_integer_value(json_object_get(r, "memory_mb")), 128);
	assert_int_equal(json_integer_value(json_object_get(r, "vcpus")), 2);
	assert_int_equal(json_integer_value(json_object_get(r, "timeout_s")), 42);
	assert_int_equal(json_integer_value(json_object_get(r, "success_code")), 3);
	assert_true(json_is_null(json_object_get(r, "exit_code")));
	assert_true(json_is_null(json_object_get(r, "started_at")));
	assert_true(json_is_null(json_object_get(r, "duration_ms")));
	assert_true(json_is_false(json_object_get(r, "console_truncated")));
	json_t *a = json_object_get(r, "args");
	assert_int_equal(json_array_size(a), 4);
	for (size_t i = 0; i < 4; i++)
		assert_string_equal(json_string_value(json_array_get(a, i)), args[i]);
	json_t *p = json_object_get(r, "uk_params");
	assert_int_equal(json_array_size(p), 3);
	for (size_t i = 0; i < 3; i++)
		assert_string_equal(json_string_value(json_array_get(p, i)), params[i]);
	json_t *l = json_object_get(r, "labels");
	assert_int_equal(json_object_size(l), 2);
	assert_string_equal(sget(l, "ci/job"), "7");
	assert_string_equal(sget(l, "owner"), "me");
	assert_int_equal(json_array_size(json_object_get(r, "notes")), 0);
	assert_int_equal(json_object_size(json_object_get(r, "facts")), 0);
	json_decref(r);

	/* success_code -1 is stored as NULL. */
	int64_t id2 = insert_run(fx->st, SHA_A, NULL);
	r = store_run_get(fx->st, id2);
	assert_true(json_is_null(json_object_get(r, "success_code")));
	assert_int_equal(json_array_size(json_object_get(r, "args")), 0);
	json_decref(r);

	/* A run on an unknown image violates the foreign key and leaves nothing behind. */
	struct run_row orphan = { .image = SHA_B, .platform = "qemu", .driver = "qemu", .timeout_s = 1,
	                          .success_code = -1, .args = args, .nargs = 1 };
	int64_t id3 = -7;
	assert_true(store_run_insert(fx->st, &orphan, &id3) < 0);
	assert_int_equal(id3, -7);
	struct run_filter all = { .limit = 100 };
	json_t *list = store_run_list(fx->st, &all);
	assert_int_equal(json_array_size(list), 2);
	json_decref(list);

	assert_null(store_run_get(fx->st, 9999));
}

static void test_run_lifecycle(void **state)
{
	struct fixture *fx = *state;
	put_image(fx->st, SHA_A, "a");
	int64_t id = insert_run(fx->st, SHA_A, NULL);
	assert_int_equal(store_run_set_state(fx->st, id, "starting"), 0);
	json_t *r = store_run_get(fx->st, id);
	assert_string_equal(sget(r, "state"), "starting");
	assert_true(json_is_null(json_object_get(r, "started_at")));
	json_decref(r);
	assert_int_equal(store_run_set_state(fx->st, id, "running"), 0);
	r = store_run_get(fx->st, id);
	assert_string_equal(sget(r, "state"), "running");
	char *started = strdup(sget(r, "started_at"));
	json_decref(r);
	/* running again keeps the first started_at */
	assert_int_equal(store_run_set_state(fx->st, id, "running"), 0);
	r = store_run_get(fx->st, id);
	assert_string_equal(sget(r, "started_at"), started);
	json_decref(r);
	free(started);
	/* An invalid state violates the CHECK constraint. */
	assert_true(store_run_set_state(fx->st, id, "bogus") < 0);

	assert_int_equal(store_run_set_fact(fx->st, id, "accel", "tcg"), 0);
	assert_int_equal(store_run_set_fact(fx->st, id, "machine", "pc"), 0);
	assert_int_equal(store_run_set_fact(fx->st, id, "command", "qemu-system-x86_64 -x"), 0);
	assert_int_equal(store_run_set_fact(fx->st, id, "command", "qemu-system-x86_64 -y"), 0);
	assert_int_equal(store_run_add_note(fx->st, id, "first"), 0);
	assert_int_equal(store_run_add_note(fx->st, id, "second"), 0);
	assert_int_equal(store_run_add_note(fx->st, id, "third"), 0);

	struct run_end end = { .state = "done", .has_exit_code = 1, .exit_code = 7, .exit_source = "guest",
	                       .reason = "main returned 7", .console_bytes = 4096, .console_truncated = 1 };
	assert_int_equal(store_run_finish(fx->st, id, &end), 0);
	r = store_run_get(fx->st, id);
	assert_string_equal(sget(r, "state"), "done");
	assert_int_equal(json_integer_value(json_object_get(r, "exit_code")), 7);
	assert_true(json_is_integer(json_object_get(r, "exit_code")));
	assert_string_equal(sget(r, "exit_source"), "guest");
	assert_string_equal(sget(r, "reason"), "main returned 7");
	assert_non_null(sget(r, "ended_at"));
	assert_true(json_is_integer(json_object_get(r, "duration_ms")));
	assert_true(json_integer_value(json_object_get(r, "duration_ms")) >= 0);
	assert_int_equal(json_integer_value(json_object_get(r, "console_bytes")), 4096);
	assert_true(json_is_true(json_object_get(r, "console_truncated")));
	assert_string_equal(sget(r, "accel"), "tcg");
	assert_string_equal(sget(r, "machine"), "pc");
	json_t *facts = json_object_get(r, "facts");
	assert_int_equal(json_object_size(facts), 3);
	assert_string_equal(sget(facts, "command"), "qemu-system-x86_64 -y");
	assert_string_equal(sget(facts, "accel"), "tcg");
	json_t *notes = json_object_get(r, "notes");
	assert_int_equal(json_array_size(notes), 3);
	assert_string_equal(json_string_value(json_array_get(notes, 0)), "first");
	assert_string_equal(json_string_value(json_array_get(notes, 1)), "second");
	assert_string_equal(json_string_value(json_array_get(notes, 2)), "third");
	json_decref(r);

	/* An end without an exit code (never started): exit_code stays null, duration from creation. */
	int64_t id2 = insert_run(fx->st, SHA_A, NULL);
	struct run_end cancelled = { .state = "cancelled", .exit_source = "runner", .reason = "cancelled" };
	assert_int_equal(store_run_finish(fx->st, id2, &cancelled), 0);
	r = store_run_get(fx->st, id2);
	assert_string_equal(sget(r, "state"), "cancelled");
	assert_true(json_is_null(json_object_get(r, "exit_code")));
	assert_true(json_is_integer(json_object_get(r, "duration_ms")));
	assert_true(json_is_false(json_object_get(r, "console_truncated")));
	json_decref(r);
}

static void assert_ids(json_t *list, const int64_t *want, size_t n)
{
	if (json_array_size(list) != n)
		print_error("list has %zu runs, wanted %zu\n", json_array_size(list), n);
	assert_int_equal(json_array_size(list), n);
	for (size_t i = 0; i < n; i++) {
		char ids[32];
		snprintf(ids, sizeof(ids), "%lld", (long long)want[i]);
		assert_string_equal(sget(json_array_get(list, i), "id"), ids);
	}
}

static void test_run_list(void **state)
{
	struct fixture *fx = *state;
	put_image(fx->st, SHA_A, "a");
	put_image(fx->st, SHA_B, "b");
	int64_t ids[13];
	for (int i = 1; i <= 12; i++) {
		const char *label = i % 3 == 0 ? "slow" : (i % 3 == 1 ? "fast" : NULL);
		ids[i] = insert_run(fx->st, i % 4 == 0 ? SHA_B : SHA_A, label);
		assert_int_equal(ids[i], i);
	}
	struct run_filter f = { .limit = 1000 };
	json_t *list = store_run_list(fx->st, &f);
	/* Newest first by numeric id: 12, 11, 10, 9 ... (not "9" > "12" as text). */
	int64_t all[] = { 12, 11, 10, 9, 8, 7, 6, 5, 4, 3, 2, 1 };
	assert_ids(list, all, 12);
	json_decref(list);

	f.limit = 3;
	list = store_run_list(fx->st, &f);
	assert_ids(list, all, 3);
	json_decref(list);

	/* Paging: before = the last id seen. */
	f.before = 10;
	list = store_run_list(fx->st, &f);
	int64_t page[] = { 9, 8, 7 };
	assert_ids(list, page, 3);
	json_decref(list);
	f.before = 7;
	f.limit = 100;
	list = store_run_list(fx->st, &f);
	int64_t rest[] = { 6, 5, 4, 3, 2, 1 };
	assert_ids(list, rest, 6);
	json_decref(list);
	f.before = 1;
	list = store_run_list(fx->st, &f);
	assert_int_equal(json_array_size(list), 0);
	json_decref(list);

	/* State filter. */
	assert_int_equal(store_run_set_state(fx->st, 2, "running"), 0);
	assert_int_equal(store_run_set_state(fx->st, 11, "running"), 0);
	struct run_filter fs = { .state = "running", .limit = 100 };
	list = store_run_list(fx->st, &fs);
	int64_t running[] = { 11, 2 };
	assert_ids(list, running, 2);
	json_decref(list);
	fs.before = 11;
	list = store_run_list(fx->st, &fs);
	assert_ids(list, running + 1, 1);
	json_decref(list);

	/* Image filter: every 4th run used SHA_B. */
	struct run_filter fi = { .image = SHA_B, .limit = 100 };
	list = store_run_list(fx->st, &fi);
	int64_t onb[] = { 12, 8, 4 };
	assert_ids(list, onb, 3);
	json_decref(list);

	/* Label filters: key with value, key alone, unknown key. */
	struct run_filter fl = { .label_key = "suite", .label_value = "slow", .limit = 100 };
	list = store_run_list(fx->st, &fl);
	int64_t slow[] = { 12, 9, 6, 3 };
	assert_ids(list, slow, 4);
	json_decref(list);
	fl.label_value = NULL;
	list = store_run_list(fx->st, &fl);
	int64_t labelled[] = { 12, 10, 9, 7, 6, 4, 3, 1 };
	assert_ids(list, labelled, 8);
	json_decref(list);
	fl.label_key = "nope";
	list = store_run_list(fx->st, &fl);
	assert_int_equal(json_array_size(list), 0);
	json_decref(list);

	/* Filters combine. */
	struct run_filter fc = { .image = SHA_B, .label_key = "suite", .label_value = "fast", .limit = 100 };
	list = store_run_list(fx->st, &fc);
	int64_t both[] = { 4 };
	assert_ids(list, both, 1);
	json_decref(list);
}

/* GET /v1/runs as it was answered before the label index (schema 4): one query with every
 * filter optional, newest first. The reference the indexed variants must agree with. */
static const char REFERENCE_LIST_SQL[] =
	"SELECT id FROM runs r WHERE (?1 IS NULL OR r.state = ?1) AND (?2 IS NULL OR r.image = ?2) "
	"AND (?3 IS NULL OR EXISTS (SELECT 1 FROM labels l WHERE l.run_id = r.id AND l.key = ?3 AND "
	"(?4 IS NULL OR l.value = ?4))) AND (?5 = 0 OR r.id < ?5) ORDER BY r.id DESC LIMIT ?6";

static size_t reference_ids(sqlite3 *db, const struct run_filter *f, int64_t *ret_ids, size_t max)
{
	sqlite3_stmt *stmt;
	assert_int_equal(sqlite3_prepare_v2(db, REFERENCE_LIST_SQL, -1, &stmt, NULL), SQLITE_OK);
	sqlite3_bind_text(stmt, 1, f->state, -1, SQLITE_STATIC);
	sqlite3_bind_text(stmt, 2, f->image, -1, SQLITE_STATIC);
	sqlite3_bind_text(stmt, 3, f->label_key, -1, SQLITE_STATIC);
	sqlite3_bind_text(stmt, 4, f->label_value, -1, SQLITE_STATIC);
	sqlite3_bind_int64(stmt, 5, f->before);
	sqlite3_bind_int64(stmt, 6, f->limit);
	size_t n = 0;
	while (sqlite3_step(stmt) == SQLITE_ROW) {
		assert_true(n < max);
		ret_ids[n++] = sqlite3_column_int64(stmt, 0);
	}
	sqlite3_finalize(stmt);
	return n;
}

/* Run i of the mixed history: its image, state and labels follow from i so that every filter
 * keeps some runs and drops others, labels included (a second key, an empty value, none). */
static void insert_mixed_runs(struct store *st, int count)
{
	static const char *const states[] = { "queued", "running", "done", "error", "done" };
	static const char *const suites[] = { "slow", "fast", "", NULL, "fast", "slow", NULL };
	for (int i = 1; i <= count; i++) {
		json_t *labels = json_object();
		if (suites[i % 7])
			json_object_set_new(labels, "suite", json_string(suites[i % 7]));
		if (i % 3 == 0)
			json_object_set_new(labels, "os", json_string(i % 2 ? "linux" : "bsd"));
		struct run_row row = { .image = i % 5 == 0 ? SHA_B : SHA_A, .platform = "qemu", .driver = "qemu",
		                       .accel = "auto", .timeout_s = 300, .success_code = -1, .labels = labels };
		int64_t id = 0;
		assert_int_equal(store_run_insert(st, &row, &id), 0);
		json_decref(labels);
		assert_int_equal(id, i);
		if (strcmp(states[i % 5], "queued") != 0)
			assert_int_equal(store_run_set_state(st, id, states[i % 5]), 0);
	}
}

/* Every combination of the filters GET /v1/runs takes gives the same runs, in the same order, as
 * the reference query, and each listed record is the run's full record. */
static void test_run_list_matches_reference(void **state)
{
	struct fixture *fx = *state;
	put_image(fx->st, SHA_A, "a");
	put_image(fx->st, SHA_B, "b");
	insert_mixed_runs(fx->st, 60);
	sqlite3 *db;
	assert_int_equal(sqlite3_open_v2(fx->path, &db, SQLITE_OPEN_READONLY, NULL), SQLITE_OK);

	static const char *const states[] = { NULL, "queued", "running", "done", "error", "lost" };
	static const char *const images[] = { NULL, SHA_A, SHA_B, SHA_L };
	static const char *const labels[][2] = {
		{ NULL, NULL },    { "suite", NULL }, { "suite", "slow" }, { "suite", "fast" }, { "suite", "" },
		{ "os", "linux" }, { "os", NULL },    { "os", "slow" },    { "nope", NULL },    { NULL, "slow" },
	};
	static const int64_t befores[] = { 0, 1, 2, 17, 45, 60, 61, 1000 };
	static const int limits[] = { 1, 3, 1000 };
	size_t compared = 0, nonempty = 0;
	for (size_t s = 0; s < sizeof(states) / sizeof(states[0]); s++)
		for (size_t im = 0; im < sizeof(images) / sizeof(images[0]); im++)
			for (size_t l = 0; l < sizeof(labels) / sizeof(labels[0]); l++)
				for (size_t b = 0; b < sizeof(befores) / sizeof(befores[0]); b++)
					for (size_t li = 0; li < sizeof(limits) / sizeof(limits[0]); li++) {
						struct run_filter f = { .state = states[s], .image = images[im],
						                        .label_key = labels[l][0], .label_value = labels[l][1],
						                        .before = befores[b], .limit = limits[li] };
						int64_t want[64];
						size_t n = reference_ids(db, &f, want, 64);
						json_t *list = store_run_list(fx->st, &f);
						if (json_array_size(list) != n)
							print_error("state=%s image=%.4s label=%s=%s before=%lld limit=%d\n",
							            f.state ? f.state : "-", f.image ? f.image : "-",
							            f.label_key ? f.label_key : "-",
							            f.label_value ? f.label_value : "-", (long long)f.before,
							            f.limit);
						assert_ids(list, want, n);
						/* The joined variants must not mix label columns into the record. */
						if (n && limits[li] == 3) {
							json_t *rec = json_array_get(list, n - 1), *one = store_run_get(fx->st, want[n - 1]);
							assert_true(json_equal(rec, one));
							json_decref(one);
						}
						json_decref(list);
						compared++;
						nonempty += n > 0;
					}
	sqlite3_close(db);
	/* The data set is not degenerate: many combinations list something, many nothing. */
	assert_true(nonempty > compared / 4);
	assert_true(nonempty < compared);
}

/* The query plan of every variant that filters: an index search, never a scan of a whole table and
 * never a sort (newest first comes from the index). Without a filter, the runs table newest first
 * (from `before` on when given). */
static void test_run_list_plans(void **state)
{
	struct fixture *fx = *state;
	sqlite3 *db;
	assert_int_equal(sqlite3_open_v2(fx->path, &db, SQLITE_OPEN_READONLY, NULL), SQLITE_OK);
	for (unsigned mask = 0; mask < LIST_VARIANTS; mask++) {
		if ((mask & LIST_VALUE) && !(mask & LIST_LABEL))
			continue;
		struct run_filter f = { .state = mask & LIST_STATE ? "done" : NULL,
		                        .image = mask & LIST_IMAGE ? SHA_A : NULL,
		                        .label_key = mask & LIST_LABEL ? "suite" : NULL,
		                        .label_value = mask & LIST_VALUE ? "slow" : NULL,
		                        .before = mask & LIST_BEFORE ? 10 : 0, .limit = 50 };
		char sql[1024], eqp[1100];
		assert_int_equal(store_list_sql(&f, sql, sizeof(sql)), mask);
		snprintf(eqp, sizeof(eqp), "EXPLAIN QUERY PLAN %s", sql);
		sqlite3_stmt *stmt;
		assert_int_equal(sqlite3_prepare_v2(db, eqp, -1, &stmt, NULL), SQLITE_OK);
		char plan[512] = "";
		size_t len = 0;
		while (sqlite3_step(stmt) == SQLITE_ROW && len < sizeof(plan) - 1)
			len += (size_t)snprintf(plan + len, sizeof(plan) - len, "%s; ", sqlite3_column_text(stmt, 3));
		sqlite3_finalize(stmt);
		int filtered = (mask & (LIST_STATE | LIST_IMAGE | LIST_LABEL)) != 0;
		int scan = strstr(plan, "SCAN") != NULL, sort = strstr(plan, "TEMP B-TREE") != NULL;
		if ((scan && filtered) || sort)
			print_error("variant %u: %s\n", mask, plan);
		assert_false(sort);
		assert_false(scan && filtered);
		if (mask & LIST_LABEL)
			assert_non_null(strstr(plan, mask & LIST_VALUE ? "labels_by_value_run" : "labels_by_key_run"));
	}
	sqlite3_close(db);
}

/* A database written by the previous runnerd (schema 4, runs with labels) migrates to 5 when
 * opened: the label indexes replace labels_by_key, and its runs are found by label. */
static void test_migrate_label_index(void **state)
{
	struct fixture *fx = *state;
	char path[192];
	snprintf(path, sizeof(path), "%s/other.db", fx->dir);
	sqlite3 *db;
	assert_int_equal(sqlite3_open(path, &db), SQLITE_OK);
	for (int i = 0; i < schema_migrations_count && schema_migrations[i].version <= 4; i++)
		assert_int_equal(sqlite3_exec(db, schema_migrations[i].sql, NULL, NULL, NULL), SQLITE_OK);
	assert_int_equal(sqlite3_exec(db,
	                              "PRAGMA user_version = 4;"
	                              "INSERT INTO images (sha256, size, name, platform, flags, summary, created_at) "
	                              "VALUES ('" SHA_A "', 1, 'a', 'qemu', 0, '', '2026-01-01T00:00:00.000Z');"
	                              "WITH RECURSIVE k(i) AS (SELECT 1 UNION ALL SELECT i + 1 FROM k WHERE i < 30) "
	                              "INSERT INTO runs (id, image, mode, platform, driver, state, timeout_s, created_at) "
	                              "SELECT i, '" SHA_A "', 'direct', 'qemu', 'qemu', 'done', 1, "
	                              "'2026-01-01T00:00:00.000Z' FROM k;"
	                              "INSERT INTO labels SELECT id, 'ci', 'job' || (id % 3) FROM runs;",
	                              NULL, NULL, NULL),
	                 SQLITE_OK);
	sqlite3_close(db);
	assert_int_equal(user_version(path), 4);

	struct store *st = NULL;
	char *err = NULL;
	assert_int_equal(store_open(path, &st, &err), 0);
	assert_null(err);
	assert_int_equal(user_version(path), 5);
	struct run_filter f = { .label_key = "ci", .label_value = "job1", .before = 20, .limit = 3 };
	json_t *list = store_run_list(st, &f);
	int64_t want[] = { 19, 16, 13 };
	assert_ids(list, want, 3);
	json_decref(list);
	store_close(st);

	assert_int_equal(sqlite3_open_v2(path, &db, SQLITE_OPEN_READONLY, NULL), SQLITE_OK);
	sqlite3_stmt *stmt;
	assert_int_equal(sqlite3_prepare_v2(db,
	                                    "SELECT group_concat(name, ' ') FROM (SELECT name FROM sqlite_master "
	                                    "WHERE type = 'index' AND tbl_name = 'labels' AND sql IS NOT NULL "
	                                    "ORDER BY name)",
	                                    -1, &stmt, NULL),
	                 SQLITE_OK);
	assert_int_equal(sqlite3_step(stmt), SQLITE_ROW);
	assert_string_equal((const char *)sqlite3_column_text(stmt, 0), "labels_by_key_run labels_by_value_run");
	sqlite3_finalize(stmt);
	sqlite3_close(db);
}

/* The store keeps its reads prepared between requests: none of them may keep its read snapshot
 * once it has answered, or the WAL could never be checkpointed (it would grow for the daemon's
 * life). A full TRUNCATE checkpoint from another connection succeeds right after reads of each kind,
 * and the kept statements see what was written after they were first used. */
static void test_reads_release_snapshot(void **state)
{
	struct fixture *fx = *state;
	put_image(fx->st, SHA_A, "a");
	put_image(fx->st, SHA_B, "b");
	insert_mixed_runs(fx->st, 20);
	sqlite3 *db;
	assert_int_equal(sqlite3_open_v2(fx->path, &db, SQLITE_OPEN_READWRITE, NULL), SQLITE_OK);
	/* The checkpointing connection sees WAL mode only once it has read the database. */
	assert_int_equal(sqlite3_exec(db, "SELECT count(*) FROM runs", NULL, NULL, NULL), SQLITE_OK);
	for (int round = 0; round < 2; round++) {
		json_t *one = store_run_get(fx->st, 6);
		assert_non_null(one);
		assert_string_equal(sget(one, "state"), round ? "cancelled" : "running");
		json_decref(one);
		struct run_filter fl = { .label_key = "suite", .label_value = "fast", .limit = 2 };
		struct run_filter fs = { .state = "running", .before = 20, .limit = 1 };
		json_t *a = store_run_list(fx->st, &fl), *b = store_run_list(fx->st, &fs);
		assert_int_equal(json_array_size(a), 2);
		assert_int_equal(json_array_size(b), 1);
		json_decref(a);
		json_decref(b);
		json_t *tests = store_run_tests(fx->st, 6);
		assert_non_null(tests);
		json_decref(tests);
		/* SQLITE_BUSY when a reader still holds a snapshot in the WAL; the log is empty after. */
		int frames = -1;
		assert_int_equal(sqlite3_wal_checkpoint_v2(db, NULL, SQLITE_CHECKPOINT_TRUNCATE, &frames, NULL), SQLITE_OK);
		assert_int_equal(frames, 0);
		struct run_end end = { .state = "cancelled", .exit_source = "runner", .reason = "test" };
		assert_int_equal(store_run_finish(fx->st, 6, &end), 0);
	}
	sqlite3_close(db);
}

struct seen {
	int64_t ids[16];
	size_t n;
};

static void on_lost(int64_t id, void *arg)
{
	struct seen *s = arg;
	if (s->n < 16)
		s->ids[s->n] = id;
	s->n++;
}

static void test_mark_lost(void **state)
{
	struct fixture *fx = *state;
	put_image(fx->st, SHA_A, "a");
	int64_t q = insert_run(fx->st, SHA_A, NULL);
	int64_t s = insert_run(fx->st, SHA_A, NULL);
	int64_t r = insert_run(fx->st, SHA_A, NULL);
	int64_t d = insert_run(fx->st, SHA_A, NULL);
	assert_int_equal(store_run_set_state(fx->st, s, "starting"), 0);
	assert_int_equal(store_run_set_state(fx->st, r, "running"), 0);
	struct run_end end = { .state = "done", .has_exit_code = 1, .exit_code = 0, .exit_source = "guest" };
	assert_int_equal(store_run_finish(fx->st, d, &end), 0);

	struct seen seen = { 0 };
	int n = store_runs_mark_lost(fx->st, on_lost, &seen);
	assert_int_equal(n, 3);
	assert_int_equal(seen.n, 3);
	int64_t want[] = { q, s, r };
	for (size_t i = 0; i < 3; i++) {
		int found = 0;
		for (size_t j = 0; j < seen.n; j++)
			found |= seen.ids[j] == want[i];
		assert_true(found);
	}
	for (size_t i = 0; i < 3; i++) {
		json_t *rec = store_run_get(fx->st, want[i]);
		assert_string_equal(sget(rec, "state"), "lost");
		assert_int_equal(json_integer_value(json_object_get(rec, "exit_code")), 125);
		assert_string_equal(sget(rec, "exit_source"), "runner");
		assert_non_null(sget(rec, "reason"));
		assert_non_null(sget(rec, "ended_at"));
		json_decref(rec);
	}
	json_t *rec = store_run_get(fx->st, d);
	assert_string_equal(sget(rec, "state"), "done");
	assert_int_equal(json_integer_value(json_object_get(rec, "exit_code")), 0);
	json_decref(rec);

	/* Nothing active any more: a second pass finds nothing; NULL callback is fine. */
	seen.n = 0;
	assert_int_equal(store_runs_mark_lost(fx->st, on_lost, &seen), 0);
	assert_int_equal(seen.n, 0);
	insert_run(fx->st, SHA_A, NULL);
	assert_int_equal(store_runs_mark_lost(fx->st, NULL, NULL), 1);
	/* The images of lost runs are no longer busy. */
	assert_int_equal(store_image_delete(fx->st, SHA_A), 1);
}

static void test_tests_json(void **state)
{
	struct fixture *fx = *state;
	put_image(fx->st, SHA_A, "a");
	int64_t id = insert_run(fx->st, SHA_A, NULL);
	assert_null(store_run_tests(fx->st, 4242));

	json_t *t = store_run_tests(fx->st, id);
	assert_non_null(t);
	assert_int_equal(json_array_size(json_object_get(t, "cases")), 0);
	assert_int_equal(json_integer_value(json_object_get(json_object_get(t, "summary"), "total")), 0);
	json_decref(t);

	json_t *cases = json_pack("{s:s,s:i,s:[{s:s,s:s,s:f},{s:s,s:s,s:s,s:s,s:s},{s:s,s:s},{s:s,s:s},{s:s,s:s},{s:s,s:s},{s:s,s:s}]}",
	                          "framework", "libtest", "not_run", 3, "cases",
	                          "name", "a::one", "outcome", "ok", "duration_s", 0.25,
	                          "name", "a::two", "outcome", "failed", "message", "boom", "location", "src/a.rs:2:3",
	                          "output", "printed\nboom",
	                          "name", "a::three", "outcome", "ignored",
	                          "name", "a::four", "outcome", "crashed",
	                          "name", "a::five", "outcome", "not_run",
	                          "name", "a::six", "outcome", "ok",
	                          "name", "a::seven", "outcome", "running");
	assert_non_null(cases);
	assert_int_equal(store_run_set_tests(fx->st, id, cases), 0);
	json_decref(cases);

	t = store_run_tests(fx->st, id);
	char ids[32];
	snprintf(ids, sizeof(ids), "%lld", (long long)id);
	assert_string_equal(sget(t, "id"), ids);
	json_t *c = json_object_get(t, "cases");
	assert_int_equal(json_array_size(c), 7);
	assert_string_equal(sget(json_array_get(c, 0), "name"), "a::one");
	assert_string_equal(sget(json_array_get(c, 0), "outcome"), "ok");
	assert_true(json_real_value(json_object_get(json_array_get(c, 0), "duration_s")) == 0.25);
	assert_true(json_is_null(json_object_get(json_array_get(c, 1), "duration_s")));
	assert_string_equal(sget(json_array_get(c, 6), "name"), "a::seven");
	assert_string_equal(sget(json_array_get(c, 1), "message"), "boom");
	assert_string_equal(sget(json_array_get(c, 1), "location"), "src/a.rs:2:3");
	assert_string_equal(sget(json_array_get(c, 1), "output"), "printed\nboom");
	assert_true(json_is_null(json_object_get(json_array_get(c, 0), "message")));
	assert_string_equal(sget(t, "framework"), "libtest");
	json_t *sum = json_object_get(t, "summary");
	assert_string_equal(sget(sum, "crashed_in"), "a::four");
	assert_int_equal(json_integer_value(json_object_get(sum, "ok")), 2);
	assert_int_equal(json_integer_value(json_object_get(sum, "failed")), 1);
	assert_int_equal(json_integer_value(json_object_get(sum, "ignored")), 1);
	assert_int_equal(json_integer_value(json_object_get(sum, "crashed")), 1);
	assert_int_equal(json_integer_value(json_object_get(sum, "not_run")), 1 + 3); /* named + unnamed */
	assert_int_equal(json_integer_value(json_object_get(sum, "running")), 1);
	assert_int_equal(json_integer_value(json_object_get(sum, "total")), 7 + 3);
	json_decref(t);

	/* Setting again replaces the cases. */
	cases = json_pack("{s:[{s:s,s:s}]}", "cases", "name", "b", "outcome", "failed");
	assert_int_equal(store_run_set_tests(fx->st, id, cases), 0);
	json_decref(cases);
	t = store_run_tests(fx->st, id);
	assert_int_equal(json_array_size(json_object_get(t, "cases")), 1);
	sum = json_object_get(t, "summary");
	assert_int_equal(json_integer_value(json_object_get(sum, "failed")), 1);
	assert_int_equal(json_integer_value(json_object_get(sum, "ok")), 0);
	assert_int_equal(json_integer_value(json_object_get(sum, "total")), 1);
	json_decref(t);

	/* A case without a name violates NOT NULL: the whole replacement rolls back. */
	cases = json_pack("{s:[{s:s,s:s},{s:s}]}", "cases", "name", "c", "outcome", "ok", "outcome", "ok");
	assert_true(store_run_set_tests(fx->st, id, cases) < 0);
	json_decref(cases);
	t = store_run_tests(fx->st, id);
	c = json_object_get(t, "cases");
	assert_int_equal(json_array_size(c), 1);
	assert_string_equal(sget(json_array_get(c, 0), "name"), "b");
	json_decref(t);
}

static void collect_host(const struct host_row *h, void *arg)
{
	json_t *out = arg;
	json_array_append_new(out, json_pack("{s:s,s:s,s:i,s:i,s:O,s:i}", "name", h->name, "uri", h->uri, "capacity",
	                                     (int)h->capacity, "memory_mb", (int)h->memory_mb, "labels",
	                                     h->labels ? h->labels : json_null(), "quota", (int)h->image_quota_mb));
}

/* Hosts added through the API come back after a restart, removed ones do not (their row
 * stays: runs name it); a runnerd.conf host is never listed as an API host. */
static void test_hosts_api(void **state)
{
	struct fixture *fx = *state;
	json_t *labels = json_pack("[s,s]", "kvm", "x86_64");
	struct host_row a = {.name = "farm1", .uri = "qemu+tcp://10.0.0.1/system", .capacity = 8, .memory_mb = 4096,
	                     .labels = labels, .image_quota_mb = 512, .api = 1};
	struct host_row b = {.name = "conf1", .uri = "qemu+tcp://10.0.0.2/system", .capacity = 2};
	assert_int_equal(store_host_put(fx->st, &a), 0);
	assert_int_equal(store_host_put(fx->st, &b), 0);
	json_t *out = json_array();
	assert_int_equal(store_host_list_api(fx->st, collect_host, out), 1);
	json_t *h = json_array_get(out, 0);
	assert_string_equal(sget(h, "name"), "farm1");
	assert_int_equal(json_integer_value(json_object_get(h, "capacity")), 8);
	assert_int_equal(json_integer_value(json_object_get(h, "memory_mb")), 4096);
	assert_int_equal(json_integer_value(json_object_get(h, "quota")), 512);
	assert_true(json_equal(json_object_get(h, "labels"), labels));
	json_decref(out);
	/* A run placed there keeps the row alive through a removal. */
	put_image(fx->st, SHA_A, "a.elf");
	int64_t id = insert_run(fx->st, SHA_A, NULL);
	assert_int_equal(store_run_set_placement(fx->st, id, "farm1", "libvirt"), 0);
	assert_int_equal(store_host_remove(fx->st, "farm1"), 0);
	assert_int_equal(store_host_remove(fx->st, "farm1"), -ENOENT);
	out = json_array();
	assert_int_equal(store_host_list_api(fx->st, collect_host, out), 0);
	json_decref(out);
	json_t *run = store_run_get(fx->st, id);
	assert_string_equal(sget(run, "host"), "farm1");
	assert_string_equal(sget(run, "driver"), "libvirt");
	assert_int_equal(json_integer_value(json_object_get(run, "attempts")), 1);
	json_decref(run);
	/* Added again: listed again. */
	assert_int_equal(store_host_put(fx->st, &a), 0);
	out = json_array();
	assert_int_equal(store_host_list_api(fx->st, collect_host, out), 1);
	json_decref(out);
	json_decref(labels);
}

int main(void)
{
	const struct CMUnitTest tests[] = {
		cmocka_unit_test_setup_teardown(test_open_creates_schema, setup, teardown),
		cmocka_unit_test_setup_teardown(test_newer_schema_refused, setup, teardown),
		cmocka_unit_test_setup_teardown(test_damaged_refused, setup, teardown),
		cmocka_unit_test_setup_teardown(test_open_unwritable, setup, teardown),
		cmocka_unit_test_setup_teardown(test_images, setup, teardown),
		cmocka_unit_test_setup_teardown(test_image_delete_in_use, setup, teardown),
		cmocka_unit_test_setup_teardown(test_run_record, setup, teardown),
		cmocka_unit_test_setup_teardown(test_run_lifecycle, setup, teardown),
		cmocka_unit_test_setup_teardown(test_run_list, setup, teardown),
		cmocka_unit_test_setup_teardown(test_run_list_matches_reference, setup, teardown),
		cmocka_unit_test_setup_teardown(test_run_list_plans, setup, teardown),
		cmocka_unit_test_setup_teardown(test_migrate_label_index, setup, teardown),
		cmocka_unit_test_setup_teardown(test_reads_release_snapshot, setup, teardown),
		cmocka_unit_test_setup_teardown(test_mark_lost, setup, teardown),
		cmocka_unit_test_setup_teardown(test_tests_json, setup, teardown),
		cmocka_unit_test_setup_teardown(test_hosts_api, setup, teardown),
	};
	return cmocka_run_group_tests(tests, NULL, NULL);
}
