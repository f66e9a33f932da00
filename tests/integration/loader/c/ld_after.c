/* Loader-mode fixture: prints a passing libtest report, then computes for argv[1] ms (default 1500) and
 * prints one more line before it returns 0. On the stock elfloader kernel (which never exits) the run may
 * end only once the guest idles after that line: ending it at the summary would lose the line. */
#include <stdio.h>
#include <stdlib.h>
#include <time.h>

static long ms_since(const struct timespec *a)
{
	struct timespec b;
	clock_gettime(CLOCK_MONOTONIC, &b);
	return (b.tv_sec - a->tv_sec) * 1000 + (b.tv_nsec - a->tv_nsec) / 1000000;
}

int main(int argc, char **argv)
{
	long spin = argc > 1 ? atol(argv[1]) : 1500;
	struct timespec t0;
	volatile unsigned long n = 0;

	puts("\nrunning 1 test\ntest tests::busy_after ... ok\n");
	puts("test result: ok. 1 passed; 0 failed; 0 ignored; 0 measured; 0 filtered out; finished in 0.00s\n");
	fflush(stdout);
	clock_gettime(CLOCK_MONOTONIC, &t0);
	while (ms_since(&t0) < spin)
		n++;
	printf("after the summary: computed %ld ms\n", spin);
	fflush(stdout);
	return 0;
}
