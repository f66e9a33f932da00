/*
 * conview.h — what ukrun's stdout carries of a run's console (`--console`).
 *
 * raw: the console byte-exact (the default). app: the program's lines only,
 * as a program run natively would print them — line ends LF (Unikraft's serial
 * console writes CR LF), and the lines a Unikraft kernel adds dropped: its
 * banner ("Powered by" and the six lines of art and release under it, or the
 * one-line "Powered by Unikraft ..."), kernel log lines ("[    0.000000] Info:
 * ..."), SeaBIOS's version line and its "Booting from ROM.." prefix. This is
 * what cargo-nextest needs of a list request: every line `NAME: test`.
 */
#ifndef UKRUN_CLIENT_CONVIEW_H
#define UKRUN_CLIENT_CONVIEW_H

#include <signal.h>
#include <stdbool.h>
#include <stddef.h>

#define CONVIEW_LINE_MAX 8192 /* a longer line is passed on in pieces, unfiltered */

struct conview {
	int fd;
	bool app;
	const volatile sig_atomic_t *abort_flag; /* a write cut by a signal stops when set */
	int skip;   /* banner lines still to drop */
	size_t len; /* bytes in line */
	char line[CONVIEW_LINE_MAX];
};

void conview_init(struct conview *v, int fd, bool app, const volatile sig_atomic_t *abort_flag);
/* Console bytes in (an httpc sink): 0 or -errno of the write (-EPIPE, -EINTR). */
int conview_write(void *ctx, const char *p, size_t n);
/* The console ended: pass on a last line without its line end. 0 or -errno. */
int conview_flush(struct conview *v);
/* Is this line (no line end, CRs stripped) kernel output rather than the program's?
 * Sets *skip_next to the number of following lines that belong to it. */
bool conview_is_noise(const char *line, size_t len, int *skip_next);

#endif
