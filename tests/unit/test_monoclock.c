/* test_monoclock.c — the monotonic millisecond clock never goes back and moves across a sleep. */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <time.h>

#include <cmocka.h>

#include "monoclock.h"

/* The monotonic clock: never goes back, and moves. */
static void test_mono_ms(void **state)
{
	uint64_t a, b;

	(void)state;
	a = mono_ms();
	assert_true(a > 0);
	for (int i = 0; i < 1000; i++) {
		b = mono_ms();
		assert_true(b >= a);
		a = b;
	}
	nanosleep(&(struct timespec){ .tv_nsec = 20 * 1000 * 1000 }, NULL);
	assert_true(mono_ms() > a);
}

int main(void)
{
	const struct CMUnitTest tests[] = {
		cmocka_unit_test(test_mono_ms),
	};
	return cmocka_run_group_tests(tests, NULL, NULL);
}
