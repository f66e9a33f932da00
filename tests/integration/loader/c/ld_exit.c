/* Loader-mode fixture: prints "exit N" and returns N (argv[1], 0..255, default 7). */
#include <stdio.h>
#include <stdlib.h>

int main(int argc, char **argv)
{
	int n = argc > 1 ? atoi(argv[1]) & 0xff : 7;

	printf("exit %d\n", n);
	return n;
}
