/* test_tailbuf.c — the bounded tail buffer keeps exactly the last `cap` bytes of a stream, whatever the chunking. */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include <cmocka.h>

#include "tailbuf.h"

static void test_under_and_at_cap(void **state)
{
	char buf[8];
	size_t len = 0;

	(void)state;
	tailbuf_append(buf, sizeof(buf), &len, "abc", 3);
	tailbuf_append(buf, sizeof(buf), &len, NULL, 0);
	assert_int_equal(len, 3);
	assert_memory_equal(buf, "abc", 3);
	tailbuf_append(buf, sizeof(buf), &len, "defgh", 5);
	assert_int_equal(len, 8);
	assert_memory_equal(buf, "abcdefgh", 8);
	/* One more byte drops the oldest one. */
	tailbuf_append(buf, sizeof(buf), &len, "i", 1);
	assert_int_equal(len, 8);
	assert_memory_equal(buf, "bcdefghi", 8);
}

static void test_chunk_larger_than_cap(void **state)
{
	char buf[4];
	size_t len = 0;

	(void)state;
	tailbuf_append(buf, sizeof(buf), &len, "xy", 2);
	tailbuf_append(buf, sizeof(buf), &len, "0123456789", 10);
	assert_int_equal(len, 4);
	assert_memory_equal(buf, "6789", 4);
	tailbuf_append(buf, 0, &len, "zz", 2); /* no room at all: nothing happens */
	assert_int_equal(len, 4);
}

/* Any chunking of a stream leaves the same tail as the stream's last bytes. */
static void test_random_chunks(void **state)
{
	static char stream[5000];
	char buf[97];
	unsigned seed = 7;

	(void)state;
	for (size_t i = 0; i < sizeof(stream); i++)
		stream[i] = (char)('a' + rand_r(&seed) % 26);
	for (int iter = 0; iter < 200; iter++) {
		size_t len = 0, off = 0, total = (size_t)rand_r(&seed) % sizeof(stream);
		while (off < total) {
			size_t n = 1 + (size_t)rand_r(&seed) % 150;
			if (n > total - off)
				n = total - off;
			tailbuf_append(buf, sizeof(buf), &len, stream + off, n);
			off += n;
		}
		size_t want = total < sizeof(buf) ? total : sizeof(buf);
		assert_int_equal(len, want);
		assert_memory_equal(buf, stream + total - want, want);
	}
}

int main(void)
{
	const struct CMUnitTest tests[] = {
		cmocka_unit_test(test_under_and_at_cap),
		cmocka_unit_test(test_chunk_larger_than_cap),
		cmocka_unit_test(test_random_chunks),
	};
	return cmocka_run_group_tests(tests, NULL, NULL);
}
