/* tailbuf.c — bounded tail buffer (see tailbuf.h). */
#include "tailbuf.h"

#include <string.h>

void tailbuf_append(char *buf, size_t cap, size_t *len, const void *data, size_t n)
{
	const char *p = data;

	if (n == 0 || cap == 0)
		return;
	if (n >= cap) {
		memcpy(buf, p + (n - cap), cap);
		*len = cap;
		return;
	}
	if (*len + n > cap) {
		size_t drop = *len + n - cap;
		memmove(buf, buf + drop, *len - drop);
		*len -= drop;
	}
	memcpy(buf + *len, p, n);
	*len += n;
}
