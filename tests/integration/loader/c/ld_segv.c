/* Loader-mode fixture: a write to an unmapped address, which Unikraft turns into a crash. */
#include <stdio.h>

int main(void)
{
	volatile int *p = (volatile int *)0x10;

	puts("about to segfault");
	fflush(stdout);
	*p = 1;
	return 0;
}
