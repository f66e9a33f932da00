/*
 * streams.h — a run's stdout and stderr kept apart, beside its console.
 *
 * console.log always holds every byte in the order it was read (the default view,
 * byte-exact, what the test parser sees). A run whose driver reports a plain
 * program's two streams apart (DRV_F_STREAMS: linuxu) also appends each stream's
 * bytes to a log of its own, stdout.log or stderr.log, each a struct console with
 * its own followers: `GET .../console?stream=stdout|stderr` follows one of them with
 * the same file-and-offset machinery as the console. A run without them has no
 * stderr of its own: its stdout is its console.
 */
#ifndef RUNNERD_STREAMS_H
#define RUNNERD_STREAMS_H

#include <stdint.h>

#include "console.h"
#include "driver.h"

struct streams {
	int split;              /* the run has stdout.log and stderr.log */
	struct console con[2];  /* [0] stdout, [1] stderr (valid when split) */
};

/* With `split`, create the run's empty stdout.log and stderr.log in `dir` (followers can
 * attach from now on); without, nothing. 0 or -errno. */
int streams_init(struct streams *s, const char *dir, uint64_t cap, int split);
/* The run starts: open both logs for appending (those not open yet). 0 or -errno. */
int streams_open(struct streams *s, const char *dir);
/* Batch both logs' appends on `loop` (console_batch). */
void streams_batch(struct streams *s, uv_loop_t *loop);
/* Store bytes of `stream` (DRV_STREAM_CONSOLE bytes are the console's alone). */
void streams_append(struct streams *s, enum drv_stream stream, const char *buf, size_t len);
/* The run ended: followers finish, descriptors close. Safe on a non-split set. */
void streams_close(struct streams *s);
/* The live console of `stream` (DRV_STREAM_STDOUT/STDERR), or NULL when not split. */
struct console *streams_live(struct streams *s, enum drv_stream stream);
/* The log file name of `stream` in a run's directory. */
const char *streams_file(enum drv_stream stream);

#endif
