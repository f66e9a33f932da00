/* Loader-mode fixture: never ends (busy loop: the stock kernel's nanosleep returns at once). */
#include <stdio.h>

int main(void)
{
	puts("hanging");
	fflush(stdout);
	for (;;)
		__asm__ volatile("pause");
}
