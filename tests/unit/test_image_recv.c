/*
 * test_image_recv.c — an upload received through the libuv worker, on a real loop,
 * directory and sqlite database: bytes fed in socket-sized pieces are stored exactly;
 * the feed holds the input once every chunk is taken (on the workers, or full) and
 * goes on after ops.room; a body that does not hash to its digest, or is over the limit,
 * is refused at record time and leaves nothing behind; an upload aborted while the
 * worker writes one of its chunks is removed once that job returns.
 */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <dirent.h>
#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include <cmocka.h>
#include <openssl/evp.h>

#include "fs_testlib.h"
#include "image_recv.h"

#define PIECE (64 * 1024) /* what one socket read brings */

struct fixture {
	char dir[64];
	struct store *db;
	struct image_store is;
	uv_loop_t loop;
	int rooms;  /* ops.room calls */
	int sealed; /* ops.sealed calls */
};

static void sha256_hex(const char *buf, size_t len, char out[65])
{
	unsigned char md[EVP_MAX_MD_SIZE];
	unsigned n = 0;
	assert_int_equal(EVP_Digest(buf, len, md, &n, EVP_sha256(), NULL), 1);
	for (unsigned i = 0; i < 32; i++)
		snprintf(out + 2 * i, 3, "%02x", md[i]);
}

static int setup(void **state)
{
	struct fixture *fx = calloc(1, sizeof(*fx));
	strcpy(fx->dir, "/tmp/ukrun-test-recv-XXXXXX");
	if (!mkdtemp(fx->dir))
		return -1;
	char db[128];
	snprintf(db, sizeof(db), "%s/runnerd.db", fx->dir);
	if (store_open(db, &fx->db, NULL) < 0 || image_store_init(&fx->is, fx->dir, 64u << 20, fx->db) < 0 ||
	    uv_loop_init(&fx->loop) < 0)
		return -1;
	*state = fx;
	return 0;
}

static int teardown(void **state)
{
	struct fixture *fx = *state;
	assert_int_equal(uv_run(&fx->loop, UV_RUN_DEFAULT), 0);
	assert_int_equal(uv_loop_close(&fx->loop), 0);
	image_store_fini(&fx->is);
	store_close(fx->db);
	rm_rf(fx->dir);
	free(fx);
	return 0;
}

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

static void on_room(void *arg)
{
	((struct fixture *)arg)->rooms++;
}

static void on_sealed(void *arg)
{
	((struct fixture *)arg)->sealed++;
}

static const struct image_recv_ops ops = {.room = on_room, .sealed = on_sealed};

static char *pattern(size_t len)
{
	char *b = malloc(len);
	assert_non_null(b);
	for (size_t i = 0; i < len; i++)
		b[i] = (char)(i * 2654435761u >> 13);
	return b;
}

static struct image_recv *start(struct fixture *fx, const char *sha)
{
	struct image_upload *up = NULL;
	struct image_recv *rc = NULL;
	assert_int_equal(image_upload_begin(&fx->is, sha, "big", &up, NULL), 0);
	assert_int_equal(image_recv_new(&fx->loop, up, &ops, fx, &rc), 0);
	return rc;
}

/* Feed `len` bytes as a connection would: on a hold, run the loop until ops.room. Returns
 * the bytes fed when the first hold came (0: none). */
static size_t feed_all(struct fixture *fx, struct image_recv *rc, const char *buf, size_t len)
{
	size_t first_hold = 0;
	for (size_t off = 0; off < len; off += PIECE) {
		size_t n = len - off < PIECE ? len - off : PIECE;
		int r = image_recv_feed(rc, buf + off, n, NULL);
		assert_true(r == 0 || r == IMAGE_RECV_HOLD);
		if (r == IMAGE_RECV_HOLD) {
			if (!first_hold)
				first_hold = off + n;
			int rooms = fx->rooms;
			while (fx->rooms == rooms)
				uv_run(&fx->loop, UV_RUN_ONCE);
		}
	}
	return first_hold;
}

static void wait_sealed(struct fixture *fx)
{
	while (!fx->sealed)
		uv_run(&fx->loop, UV_RUN_ONCE);
}

static void test_chunks_and_hold(void **state)
{
	struct fixture *fx = *state;
	size_t len = 5 * IMAGE_RECV_CHUNK + 12345;
	char *data = pattern(len), sha[65];
	sha256_hex(data, len, sha);
	struct image_recv *rc = start(fx, sha);
	/* The loop does not run between feeds: no job can have been seen to return, so the
	 * feed that fills the last free chunk is the first to hold. */
	assert_int_equal(feed_all(fx, rc, data, len), IMAGE_RECV_CHUNKS * IMAGE_RECV_CHUNK);
	assert_true(fx->rooms >= 1);
	image_recv_finish(rc);
	wait_sealed(fx);
	assert_int_equal(image_recv_record(rc, NULL), 0);
	assert_true(image_exists(&fx->is, sha));
	char *path = image_path(&fx->is, sha);
	FILE *f = fopen(path, "rb");
	assert_non_null(f);
	char *back = malloc(len + 1);
	assert_int_equal(fread(back, 1, len + 1, f), len);
	assert_memory_equal(back, data, len);
	fclose(f);
	assert_int_equal(tmp_entries(fx), 0);
	free(back);
	free(path);
	free(data);
}

static void test_digest_mismatch(void **state)
{
	struct fixture *fx = *state;
	size_t len = 3 * IMAGE_RECV_CHUNK + 7;
	char *data = pattern(len), sha[65];
	sha256_hex(data, len, sha);
	data[2 * IMAGE_RECV_CHUNK + 5] ^= 1; /* what arrives is not what was hashed */
	struct image_recv *rc = start(fx, sha);
	feed_all(fx, rc, data, len);
	image_recv_finish(rc);
	wait_sealed(fx);
	char *err = NULL;
	assert_int_equal(image_recv_record(rc, &err), -EBADMSG);
	assert_non_null(err);
	assert_non_null(strstr(err, "digest mismatch"));
	free(err);
	assert_false(image_exists(&fx->is, sha));
	char *path = image_path(&fx->is, sha);
	assert_int_equal(access(path, F_OK), -1);
	free(path);
	assert_int_equal(tmp_entries(fx), 0);
	free(data);
}

static void test_over_limit(void **state)
{
	struct fixture *fx = *state;
	fx->is.max_size = IMAGE_RECV_CHUNK;
	size_t len = IMAGE_RECV_CHUNK + 1;
	char *data = pattern(len), sha[65];
	sha256_hex(data, len, sha);
	struct image_recv *rc = start(fx, sha);
	feed_all(fx, rc, data, len);
	image_recv_finish(rc);
	wait_sealed(fx);
	assert_int_equal(image_recv_record(rc, NULL), -EFBIG);
	assert_false(image_exists(&fx->is, sha));
	assert_int_equal(tmp_entries(fx), 0);
	free(data);
}

static void test_abort_in_flight(void **state)
{
	struct fixture *fx = *state;
	size_t len = IMAGE_RECV_CHUNKS * IMAGE_RECV_CHUNK;
	char *data = pattern(len), sha[65];
	sha256_hex(data, len, sha);
	struct image_recv *rc = start(fx, sha);
	/* Every chunk taken: on the workers, the last one full behind them (it holds). */
	for (int i = 0; i < IMAGE_RECV_CHUNKS - 1; i++)
		assert_int_equal(image_recv_feed(rc, data + i * IMAGE_RECV_CHUNK, IMAGE_RECV_CHUNK, NULL), 0);
	assert_int_equal(image_recv_feed(rc, data + len - IMAGE_RECV_CHUNK, IMAGE_RECV_CHUNK, NULL), IMAGE_RECV_HOLD);
	assert_int_equal(tmp_entries(fx), 1);
	image_recv_abort(rc); /* the client went away */
	assert_int_equal(uv_run(&fx->loop, UV_RUN_DEFAULT), 0); /* the job returns, then frees */
	assert_int_equal(fx->rooms + fx->sealed, 0);
	assert_int_equal(tmp_entries(fx), 0);
	/* Nothing on the worker: gone at once. */
	rc = start(fx, sha);
	assert_int_equal(image_recv_feed(rc, data, 100, NULL), 0);
	image_recv_abort(rc);
	assert_int_equal(tmp_entries(fx), 0);
	assert_false(image_exists(&fx->is, sha));
	free(data);
}

int main(void)
{
	const struct CMUnitTest tests[] = {
		cmocka_unit_test_setup_teardown(test_chunks_and_hold, setup, teardown),
		cmocka_unit_test_setup_teardown(test_digest_mismatch, setup, teardown),
		cmocka_unit_test_setup_teardown(test_over_limit, setup, teardown),
		cmocka_unit_test_setup_teardown(test_abort_in_flight, setup, teardown),
	};
	return cmocka_run_group_tests(tests, NULL, NULL);
}
