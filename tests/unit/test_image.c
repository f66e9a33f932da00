/*
 * test_image.c — the content-addressed image store on a real directory and
 * sqlite database: uploads of known bytes land digest-named and read-only,
 * a wrong digest or an oversized upload leaves nothing behind, and the
 * digest syntax check.
 */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <dirent.h>
#include <errno.h>
#include <fcntl.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include <cmocka.h>
#include <openssl/evp.h>

#include "fs_testlib.h"
#include "image.h"
#include "log.h"

#define HELLO "hello, unikernel\n"
static char hello_sha[65]; /* its digest, computed independently of image.c */

struct fixture {
	char dir[64];
	struct store *db;
	struct image_store is;
};

static void sha256_hex(const char *buf, size_t len, char out[65])
{
	unsigned char md[EVP_MAX_MD_SIZE];
	unsigned n = 0;
	assert_int_equal(EVP_Digest(buf, len, md, &n, EVP_sha256(), NULL), 1);
	assert_int_equal(n, 32);
	for (unsigned i = 0; i < 32; i++)
		snprintf(out + 2 * i, 3, "%02x", md[i]);
}

static int setup(void **state)
{
	struct fixture *fx = calloc(1, sizeof(*fx));
	strcpy(fx->dir, "/tmp/ukrun-test-image-XXXXXX");
	if (!mkdtemp(fx->dir))
		return -1;
	char db[128];
	snprintf(db, sizeof(db), "%s/runnerd.db", fx->dir);
	char *err = NULL;
	if (store_open(db, &fx->db, &err) < 0) {
		print_error("store_open: %s\n", err ? err : "?");
		return -1;
	}
	if (image_store_init(&fx->is, fx->dir, 1024 * 1024, fx->db) < 0)
		return -1;
	sha256_hex(HELLO, strlen(HELLO), hello_sha);
	*state = fx;
	return 0;
}

static int teardown(void **state)
{
	struct fixture *fx = *state;
	image_store_fini(&fx->is);
	store_close(fx->db);
	rm_rf(fx->dir);
	free(fx);
	return 0;
}

/* Entries in images/.tmp. */
static int tmp_entries(const struct fixture *fx)
{
	DIR *d = opendir(fx->is.tmpdir);
	assert_non_null(d);
	int n = 0;
	struct dirent *e;
	while ((e = readdir(d)))
		n += strcmp(e->d_name, ".") != 0 && strcmp(e->d_name, "..") != 0;
	closedir(d);
	return n;
}

static void test_upload_ok(void **state)
{
	struct fixture *fx = *state;
	assert_false(image_exists(&fx->is, hello_sha));
	struct image_upload *up = NULL;
	char *err = NULL;
	assert_int_equal(image_upload_begin(&fx->is, hello_sha, "hello.txt", &up, &err), 0);
	assert_non_null(up);
	assert_int_equal(tmp_entries(fx), 1);
	/* In pieces, including an empty one. */
	assert_int_equal(image_upload_write(up, HELLO, 5, &err), 0);
	assert_int_equal(image_upload_write(up, &HELLO[5], 0, &err), 0);
	assert_int_equal(image_upload_write(up, &HELLO[5], strlen(HELLO) - 5, &err), 0);
	assert_int_equal(image_upload_size(up), strlen(HELLO));
	assert_int_equal(image_upload_seal(up), 0);
	assert_int_equal(image_upload_record(up, &err), 0);
	assert_null(err);

	assert_true(image_exists(&fx->is, hello_sha));
	assert_int_equal(tmp_entries(fx), 0);
	char *path = image_path(&fx->is, hello_sha);
	char want[256];
	snprintf(want, sizeof(want), "%s/images/%s", fx->dir, hello_sha);
	assert_string_equal(path, want);
	struct stat st;
	assert_int_equal(stat(path, &st), 0);
	assert_true(S_ISREG(st.st_mode));
	assert_int_equal(st.st_mode & 07777, 0400);
	assert_int_equal(st.st_size, strlen(HELLO));
	char buf[64] = { 0 };
	int fd = open(path, O_RDONLY | O_CLOEXEC);
	assert_true(fd >= 0);
	assert_int_equal(read(fd, buf, sizeof(buf)), strlen(HELLO));
	close(fd);
	assert_string_equal(buf, HELLO);
	free(path);

	json_t *rec = store_image_get(fx->db, hello_sha);
	assert_non_null(rec);
	assert_string_equal(json_string_value(json_object_get(rec, "name")), "hello.txt");
	assert_int_equal(json_integer_value(json_object_get(rec, "size")), strlen(HELLO));
	assert_string_equal(json_string_value(json_object_get(rec, "platform")), "none");
	json_decref(rec);
	assert_int_equal(fx->is.uploads, 1);
	assert_int_equal(fx->is.upload_bytes, strlen(HELLO));

	/* The same content again: sealed over the existing file, still one image. */
	assert_int_equal(image_upload_begin(&fx->is, hello_sha, NULL, &up, &err), 0);
	assert_int_equal(image_upload_write(up, HELLO, strlen(HELLO), &err), 0);
	assert_int_equal(image_upload_seal(up), 0);
	assert_int_equal(image_upload_record(up, &err), 0);
	assert_true(image_exists(&fx->is, hello_sha));
	rec = store_image_get(fx->db, hello_sha);
	assert_string_equal(json_string_value(json_object_get(rec, "name")), "hello.txt");
	json_decref(rec);
	json_t *list = store_image_list(fx->db);
	assert_int_equal(json_array_size(list), 1);
	json_decref(list);

	/* Delete: file and record go (no run refers to it). */
	assert_int_equal(image_delete(&fx->is, hello_sha), 0);
	assert_false(image_exists(&fx->is, hello_sha));
	path = image_path(&fx->is, hello_sha);
	assert_int_equal(access(path, F_OK), -1);
	free(path);
	assert_int_equal(image_delete(&fx->is, hello_sha), -ENOENT);
}

static void test_empty_upload(void **state)
{
	struct fixture *fx = *state;
	char sha[65];
	sha256_hex("", 0, sha);
	struct image_upload *up;
	assert_int_equal(image_upload_begin(&fx->is, sha, "empty", &up, NULL), 0);
	assert_int_equal(image_upload_seal(up), 0);
	assert_int_equal(image_upload_record(up, NULL), 0);
	assert_true(image_exists(&fx->is, sha));
}

static void test_wrong_digest(void **state)
{
	struct fixture *fx = *state;
	char other[65];
	sha256_hex("something else", 14, other);
	struct image_upload *up;
	char *err = NULL;
	assert_int_equal(image_upload_begin(&fx->is, other, "x", &up, &err), 0);
	assert_int_equal(image_upload_write(up, HELLO, strlen(HELLO), &err), 0);
	assert_int_equal(image_upload_seal(up), -EBADMSG);
	assert_int_equal(image_upload_record(up, &err), -EBADMSG);
	assert_non_null(err);
	assert_non_null(strstr(err, "digest mismatch"));
	assert_non_null(strstr(err, hello_sha));
	assert_non_null(strstr(err, other));
	free(err);
	assert_int_equal(tmp_entries(fx), 0);
	assert_false(image_exists(&fx->is, other));
	assert_false(image_exists(&fx->is, hello_sha));
	char *path = image_path(&fx->is, other);
	assert_int_equal(access(path, F_OK), -1);
	free(path);
	assert_null(store_image_get(fx->db, other));
	assert_int_equal(fx->is.uploads, 0);
}

static void test_max_size(void **state)
{
	struct fixture *fx = *state;
	char *big = malloc(fx->is.max_size + 1);
	memset(big, 'z', fx->is.max_size + 1);
	char sha[65];
	sha256_hex(big, fx->is.max_size, sha);
	struct image_upload *up;
	char *err = NULL;

	/* Exactly max_size fits. */
	assert_int_equal(image_upload_begin(&fx->is, sha, NULL, &up, &err), 0);
	assert_int_equal(image_upload_write(up, big, fx->is.max_size - 1, &err), 0);
	assert_int_equal(image_upload_write(up, big, 1, &err), 0);
	/* One byte more does not, and nothing of it is counted. */
	assert_int_equal(image_upload_write(up, big, 1, &err), -EFBIG);
	assert_int_equal(image_upload_size(up), fx->is.max_size);
	assert_int_equal(image_upload_seal(up), 0);
	assert_int_equal(image_upload_record(up, &err), 0);
	assert_true(image_exists(&fx->is, sha));

	/* A single write over the limit is refused before anything is written. */
	assert_int_equal(image_upload_begin(&fx->is, sha, NULL, &up, &err), 0);
	assert_int_equal(image_upload_write(up, big, fx->is.max_size + 1, &err), -EFBIG);
	assert_int_equal(image_upload_size(up), 0);
	image_upload_abort(up);
	assert_int_equal(tmp_entries(fx), 0);
	free(big);
}

static void test_abort(void **state)
{
	struct fixture *fx = *state;
	struct image_upload *up;
	assert_int_equal(image_upload_begin(&fx->is, hello_sha, "n", &up, NULL), 0);
	assert_int_equal(image_upload_write(up, HELLO, 3, NULL), 0);
	assert_int_equal(tmp_entries(fx), 1);
	image_upload_abort(up);
	assert_int_equal(tmp_entries(fx), 0);
	assert_false(image_exists(&fx->is, hello_sha));
	image_upload_abort(NULL);

	/* Abort right after begin. */
	assert_int_equal(image_upload_begin(&fx->is, hello_sha, NULL, &up, NULL), 0);
	image_upload_abort(up);
	assert_int_equal(tmp_entries(fx), 0);
}

static void test_exists_needs_record(void **state)
{
	struct fixture *fx = *state;
	/* A file alone (no record) is not an image, nor is a record without its file. */
	char *path = image_path(&fx->is, hello_sha);
	int fd = open(path, O_WRONLY | O_CREAT | O_CLOEXEC, 0400);
	assert_true(fd >= 0);
	close(fd);
	assert_false(image_exists(&fx->is, hello_sha));
	unlink(path);
	free(path);
	struct image_row row = { .size = 1, .platform = "none" };
	memcpy(row.sha256, hello_sha, 65);
	assert_int_equal(store_image_put(fx->db, &row), 0);
	assert_false(image_exists(&fx->is, hello_sha));
	assert_false(image_exists(&fx->is, "../../etc/passwd"));
	assert_false(image_exists(&fx->is, NULL));
}

/* Entries in images/.quarantine. */
static int quarantined(const struct fixture *fx)
{
	DIR *d = opendir(fx->is.quarantine_dir);
	assert_non_null(d);
	int n = 0;
	struct dirent *e;
	while ((e = readdir(d)))
		n += strcmp(e->d_name, ".") != 0 && strcmp(e->d_name, "..") != 0;
	closedir(d);
	return n;
}

static void store_hello(struct fixture *fx)
{
	struct image_upload *up = NULL;
	assert_int_equal(image_upload_begin(&fx->is, hello_sha, "hello.txt", &up, NULL), 0);
	assert_int_equal(image_upload_write(up, HELLO, strlen(HELLO), NULL), 0);
	assert_int_equal(image_upload_seal(up), 0);
	assert_int_equal(image_upload_record(up, NULL), 0);
	assert_true(image_exists(&fx->is, hello_sha));
}

/* rewrite PATH with LEN bytes of BUF (as anything with write access could). */
static void rewrite(const char *path, const char *buf, size_t len, int flags)
{
	chmod(path, 0600);
	int fd = open(path, O_WRONLY | O_CLOEXEC | flags);
	assert_true(fd >= 0);
	assert_int_equal(write(fd, buf, len), (ssize_t)len);
	close(fd);
}

static void test_verify_quarantines_damage(void **state)
{
	struct fixture *fx = *state;
	char *path = image_path(&fx->is, hello_sha);
	struct image_info info;

	/* Stored: fingerprinted, verified cheaply, typed record. */
	store_hello(fx);
	assert_int_equal(image_verify(&fx->is, hello_sha, &info), 0);
	assert_int_equal(info.size, (int64_t)strlen(HELLO));
	assert_string_equal(info.platform, "none");
	assert_non_null(info.stamp);
	image_info_clear(&info);

	/* Same size, other content: the fingerprint changed, the digest decides. */
	rewrite(path, "J", 1, 0);
	assert_false(image_exists(&fx->is, hello_sha));
	assert_int_equal(access(path, F_OK), -1);
	assert_int_equal(quarantined(fx), 1);
	assert_int_equal(fx->is.quarantined, 1);
	/* The record stays (runs refer to it); a new upload restores the image. */
	json_t *rec = store_image_get(fx->db, hello_sha);
	assert_non_null(rec);
	json_decref(rec);
	store_hello(fx);

	/* Longer. */
	rewrite(path, "tail", 4, O_APPEND);
	assert_int_equal(image_verify(&fx->is, hello_sha, NULL), -ENOENT);
	assert_int_equal(quarantined(fx), 2);
	store_hello(fx);

	/* Replaced by a link to intact bytes elsewhere: never followed. */
	char elsewhere[128];
	snprintf(elsewhere, sizeof(elsewhere), "%s/elsewhere", fx->dir);
	assert_int_equal(rename(path, elsewhere), 0);
	assert_int_equal(symlink(elsewhere, path), 0);
	assert_false(image_exists(&fx->is, hello_sha));
	assert_int_equal(quarantined(fx), 3);
	store_hello(fx);

	/* Touched only: re-hashed once, kept, fingerprint renewed. */
	char *before = NULL;
	assert_int_equal(image_verify(&fx->is, hello_sha, &info), 0);
	before = strdup(info.stamp);
	image_info_clear(&info);
	struct timespec times[2] = {{.tv_sec = 1000000000}, {.tv_sec = 1000000000}};
	assert_int_equal(utimensat(AT_FDCWD, path, times, 0), 0);
	assert_true(image_exists(&fx->is, hello_sha));
	assert_int_equal(quarantined(fx), 3);
	assert_int_equal(image_verify(&fx->is, hello_sha, &info), 0);
	assert_string_not_equal(info.stamp, before);
	image_info_clear(&info);
	free(before);

	/* An image stored by a runnerd without fingerprints is hashed, then fingerprinted. */
	assert_int_equal(store_image_set_stamp(fx->db, hello_sha, NULL), 0);
	assert_true(image_exists(&fx->is, hello_sha));
	assert_int_equal(image_verify(&fx->is, hello_sha, &info), 0);
	assert_non_null(info.stamp);
	image_info_clear(&info);
	free(path);
}

static void test_sha256_valid(void **state)
{
	(void)state;
	assert_true(image_sha256_valid(hello_sha));
	assert_true(image_sha256_valid("0123456789abcdef0123456789abcdef0123456789abcdef0123456789abcdef"));
	assert_false(image_sha256_valid(NULL));
	assert_false(image_sha256_valid(""));
	assert_false(image_sha256_valid("0123456789abcdef0123456789abcdef0123456789abcdef0123456789abcde"));
	assert_false(image_sha256_valid("0123456789abcdef0123456789abcdef0123456789abcdef0123456789abcdef0"));
	assert_false(image_sha256_valid("0123456789ABCDEF0123456789abcdef0123456789abcdef0123456789abcdef"));
	assert_false(image_sha256_valid("0123456789abcdeg0123456789abcdef0123456789abcdef0123456789abcdef"));
	assert_false(image_sha256_valid("../456789abcdef0123456789abcdef0123456789abcdef0123456789abcdef"));
	assert_false(image_sha256_valid(" 123456789abcdef0123456789abcdef0123456789abcdef0123456789abcdef"));
}

static void test_init_creates_dirs(void **state)
{
	struct fixture *fx = *state;
	struct stat st;
	assert_int_equal(stat(fx->is.dir, &st), 0);
	assert_true(S_ISDIR(st.st_mode));
	assert_int_equal(st.st_mode & 0777, 0700);
	assert_int_equal(stat(fx->is.tmpdir, &st), 0);
	assert_int_equal(st.st_mode & 0777, 0700);
	/* Again over existing directories. */
	struct image_store again;
	assert_int_equal(image_store_init(&again, fx->dir, 10, fx->db), 0);
	image_store_fini(&again);
	/* A partial upload left by a crash is removed by the next start; other files stay. */
	char partial[160], other[160];
	snprintf(partial, sizeof(partial), "%s/upload-AbC123", fx->is.tmpdir);
	snprintf(other, sizeof(other), "%s/keep-me", fx->is.tmpdir);
	int fd = open(partial, O_WRONLY | O_CREAT | O_CLOEXEC, 0600);
	assert_true(fd >= 0 && write(fd, "half", 4) == 4);
	close(fd);
	fd = open(other, O_WRONLY | O_CREAT | O_CLOEXEC, 0600);
	assert_true(fd >= 0);
	close(fd);
	assert_int_equal(image_store_init(&again, fx->dir, 10, fx->db), 0);
	image_store_fini(&again);
	assert_int_equal(access(partial, F_OK), -1);
	assert_int_equal(access(other, F_OK), 0);
	unlink(other);
	/* A data dir that cannot exist. */
	char bad[128];
	snprintf(bad, sizeof(bad), "%s/no/such", fx->dir);
	assert_true(image_store_init(&again, bad, 10, fx->db) < 0);
	image_store_fini(&again);
}

int main(void)
{
	log_set_level(LOG_WARN); /* no "image stored" lines in the test output */
	const struct CMUnitTest tests[] = {
		cmocka_unit_test_setup_teardown(test_upload_ok, setup, teardown),
		cmocka_unit_test_setup_teardown(test_empty_upload, setup, teardown),
		cmocka_unit_test_setup_teardown(test_wrong_digest, setup, teardown),
		cmocka_unit_test_setup_teardown(test_max_size, setup, teardown),
		cmocka_unit_test_setup_teardown(test_abort, setup, teardown),
		cmocka_unit_test_setup_teardown(test_exists_needs_record, setup, teardown),
		cmocka_unit_test_setup_teardown(test_verify_quarantines_damage, setup, teardown),
		cmocka_unit_test_setup_teardown(test_sha256_valid, setup, teardown),
		cmocka_unit_test_setup_teardown(test_init_creates_dirs, setup, teardown),
	};
	return cmocka_run_group_tests(tests, NULL, NULL);
}
