/* Loader-mode fixture: prints its arguments. argv[0] is the kernel's image path, which the test cannot know,
 * so only argv[1..] are printed, each between brackets so leading/trailing spaces are visible. */
#include <stdio.h>

int main(int argc, char **argv)
{
	printf("argc-1=%d\n", argc - 1);
	for (int i = 1; i < argc; i++)
		printf("argv[%d]=[%s]\n", i, argv[i]);
	return 0;
}
