/* The cargo-runner flow: see runner.h. */
#include "runner.h"

#include <ctype.h>
#include <errno.h>
#include <fcntl.h>
#include <pthread.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <time.h>
#include <unistd.h>

#include "conview.h"
#include "detect.h"
#include "testreport.h"
#include "upload.h"

#define RUN_ID_MAX 64
#define RECONNECTS 3      /* console connection drops tolerated per run */
#define SETTLE_ROUNDS 50  /* console ended but record not final yet: re-follow this often */
#define SETTLE_STEP_MS 100
#define STDIN_CHUNK (64 * 1024) /* bytes of stdin per POST .../stdin */
#define STDIN_RETRY_MAX_MS 500   /* the program has not started or reads slowly: back off up to this */

/* An image file opened for the run. */
struct image {
	const char *path;
	const char *name; /* basename */
	int fd;
	uint64_t size;
	struct detect_result det;
	char hex[UPLOAD_HEX_SIZE];
};

static bool interrupted(const struct httpc *h)
{
	return h->abort_flag && *h->abort_flag;
}

static void sleep_ms(long ms)
{
	struct timespec ts = { .tv_sec = ms / 1000, .tv_nsec = (ms % 1000) * 1000000L };

	(void)nanosleep(&ts, NULL);
}

bool runner_id_valid(const char *id)
{
	size_t n = 0;

	if (!id || !*id)
		return false;
	for (; id[n]; n++)
		if (n >= RUN_ID_MAX || !(isalnum((unsigned char)id[n]) || id[n] == '-' || id[n] == '_'))
			return false;
	return true;
}

int runner_exit_status(const json_t *rec, bool *ret_final)
{
	const char *state = json_string_value(json_object_get(rec, "state"));
	const json_t *jcode = json_object_get(rec, "exit_code");
	bool has_code = json_is_integer(jcode);
	json_int_t code = has_code ? json_integer_value(jcode) : 0;

	*ret_final = true;
	if (!state)
		return UKRUN_EXIT_INFRA;
	if (!strcmp(state, "queued") || !strcmp(state, "starting") || !strcmp(state, "running")) {
		*ret_final = false;
		return 0;
	}
	if (!strcmp(state, "error"))
		return has_code && code == UKRUN_EXIT_NOTRUN ? UKRUN_EXIT_NOTRUN : UKRUN_EXIT_INFRA;
	if (!strcmp(state, "done") || !strcmp(state, "timeout") || !strcmp(state, "cancelled")) {
		if (!has_code)
			return !strcmp(state, "timeout")     ? UKRUN_EXIT_TIMEOUT
			       : !strcmp(state, "cancelled") ? UKRUN_EXIT_CANCELLED
							     : UKRUN_EXIT_INFRA;
		/* The kernel keeps only the low 8 bits: 256 must not turn into success. */
		return code >= 0 && code <= 255 ? (int)code : 1;
	}
	return UKRUN_EXIT_INFRA; /* "lost" and states this client does not know */
}

int runner_console(struct httpc *h, const char *id, bool follow, int out_fd, uint64_t *io_offset,
		   const char *stream)
{
	struct httpc_resp resp;
	char path[192], msg[256];
	int drops = 0, r;

	for (;;) {
		snprintf(path, sizeof(path), "/v1/runs/%s/console?%s%s%s%soffset=%llu", id, follow ? "follow=1&" : "",
			 stream ? "stream=" : "", stream ? stream : "", stream ? "&" : "",
			 (unsigned long long)*io_offset);
		r = httpc_stream(h, path, out_fd, io_offset, &resp);
		if (r == -EINTR || (r < 0 && interrupted(h))) {
			httpc_resp_clear(&resp);
			return -EINTR;
		}
		if (r == -EPIPE)
			return r;
		if (r < 0 && follow && ++drops <= RECONNECTS &&
		    (r == -ECONNRESET || r == -ECONNREFUSED || r == -ETIMEDOUT)) {
			sleep_ms(200);
			continue; /* resume at the first byte not yet written */
		}
		if (r < 0) {
			fprintf(stderr, "ukrun: %s of run %s: %s\n", stream ? stream : "console", id,
				h->errbuf[0] ? h->errbuf : strerror(-r));
			return r;
		}
		break;
	}
	if (resp.status != 200) {
		fprintf(stderr, "ukrun: console of run %s: %s\n", id, httpc_resp_message(&resp, msg, sizeof(msg)));
		r = resp.status == 404 ? -ENOENT : -EPROTO;
	}
	httpc_resp_clear(&resp);
	return r;
}

/* Open, check and probe one file; 126-class failures are reported here. */
static int image_open(struct image *img, const char *path)
{
	struct stat st;
	const char *slash = strrchr(path, '/');
	int r;

	img->path = path;
	img->name = slash && slash[1] ? slash + 1 : path;
	img->fd = open(path, O_RDONLY | O_CLOEXEC);
	if (img->fd < 0 || fstat(img->fd, &st) < 0) {
		r = -errno;
		fprintf(stderr, "ukrun: %s: %s\n", path, r == -ENOENT ? "No such file" : strerror(-r));
		return r;
	}
	if (!S_ISREG(st.st_mode)) {
		fprintf(stderr, "ukrun: %s: Not a regular file\n", path);
		return -EINVAL;
	}
	img->size = (uint64_t)st.st_size;
	r = detect_file(path, img->name, &img->det);
	if (r < 0) {
		fprintf(stderr, "ukrun: %s: %s\n", path, strerror(-r));
		return r;
	}
	return 0;
}

static void image_close(struct image *img)
{
	if (img->fd >= 0)
		close(img->fd);
	img->fd = -1;
}

/* Local checks before anything is uploaded. Returns 0 or an exit status. */
static int check_images(const struct opts *o, struct image *prog, struct image *loader)
{
	const unsigned linux_elf = DETECT_STATIC | DETECT_STATIC_PIE | DETECT_DYNAMIC;

	if (o->verbosity >= OPTS_VERBOSE)
		fprintf(stderr, "ukrun: %s: %s\n", prog->name, prog->det.summary);
	if (!loader) {
		if (prog->det.platform == DRV_PLATFORM_NONE && !o->platform) {
			fprintf(stderr, "ukrun: %s: not runnable: %s\n", prog->path, prog->det.summary);
			return UKRUN_EXIT_NOTRUN;
		}
		return 0;
	}
	if (o->verbosity >= OPTS_VERBOSE)
		fprintf(stderr, "ukrun: loader %s: %s\n", loader->name, loader->det.summary);
	if (loader->det.platform != DRV_PLATFORM_QEMU) {
		fprintf(stderr, "ukrun: loader %s: not a qemu kernel: %s\n", loader->path, loader->det.summary);
		return UKRUN_EXIT_NOTRUN;
	}
	if (!(prog->det.flags & linux_elf)) {
		fprintf(stderr, "ukrun: %s: not a Linux x86-64 program for the elfloader: %s\n", prog->path,
			prog->det.summary);
		return UKRUN_EXIT_NOTRUN;
	}
	if (prog->det.flags & DETECT_STATIC)
		/* The elfloader refuses it at boot and halts; runnerd reports that as 126 with the
		 * kernel's own error line, which says more than we can here. */
		fprintf(stderr, "ukrun: warning: %s: static non-PIE ELF: the elfloader refuses these; "
				"build with -C target-feature=+crt-static (static-pie)\n",
			prog->path);
	else if (!(prog->det.flags & DETECT_STATIC_PIE))
		fprintf(stderr, "ukrun: warning: %s: elfloader needs a static-pie ELF; "
				"build with -C target-feature=+crt-static\n",
			prog->path);
	return 0;
}

static int hash_image(struct httpc *h, const struct opts *o, struct image *img)
{
	uint64_t hashed = 0;
	int r;

	r = upload_sha256_fd(img->fd, h->abort_flag, img->hex, &hashed);
	if (r < 0) {
		if (r != -EINTR)
			fprintf(stderr, "ukrun: %s: %s\n", img->path, strerror(-r));
		return r;
	}
	img->size = hashed; /* what the digest covers is what must be sent */
	if (o->verbosity >= OPTS_VERBOSE)
		fprintf(stderr, "ukrun: %s: sha256 %s (%llu bytes)\n", img->name, img->hex,
			(unsigned long long)hashed);
	return 0;
}

/* POST /v1/runs. Returns 0 with the id, or an exit status. */
/* What the run's record says of its streams (facts "streams" and "stdin"). */
struct run_io {
	bool split; /* stdout and stderr apart */
	bool stdin; /* the program reads a pipe fed by POST .../stdin */
};

/* With `missing_ok`, runnerd's "image_not_found" answer is not an error: *ret_missing is set
 * and nothing printed (the caller uploads, then asks again). */
static int create_run(struct httpc *h, const struct opts *o, const struct image *prog, const struct image *loader,
		      bool missing_ok, bool *ret_missing, char ret_id[RUN_ID_MAX + 1], struct run_io *ret_io)
{
	struct httpc_resp resp;
	json_t *spec = opts_run_spec(o, prog->hex, prog->name, loader ? loader->hex : NULL);
	const char *id;
	char msg[256];
	int r, status = 0;

	if (!spec)
		return UKRUN_EXIT_INFRA;
	r = httpc_json(h, "POST", "/v1/runs", spec, &resp);
	json_decref(spec);
	if (r < 0) {
		fprintf(stderr, "ukrun: cannot reach runnerd at %s: %s\n", httpc_where(h),
			h->errbuf[0] ? h->errbuf : strerror(-r));
		return UKRUN_EXIT_INFRA;
	}
	id = json_string_value(json_object_get(resp.json, "id"));
	if (missing_ok && resp.status == 404 && !strcmp(httpc_resp_code(&resp), "image_not_found")) {
		*ret_missing = true;
	} else if (resp.status != 201 && resp.status != 200) {
		fprintf(stderr, "ukrun: %s\n", httpc_resp_message(&resp, msg, sizeof(msg)));
		/* 400: runnerd refused what the options asked (an unknown host or driver, vcpus a
		 * driver cannot honour, a timeout over its limit): a usage error, not a failure. */
		status = !strcmp(httpc_resp_code(&resp), "image_not_runnable") || resp.status == 422
				 ? UKRUN_EXIT_NOTRUN
				 : resp.status == 400 ? UKRUN_EXIT_USAGE : UKRUN_EXIT_INFRA;
	} else if (!runner_id_valid(id)) {
		fprintf(stderr, "ukrun: runnerd answered without a valid run id\n");
		status = UKRUN_EXIT_INFRA;
	} else {
		json_t *facts = json_object_get(resp.json, "facts");

		snprintf(ret_id, RUN_ID_MAX + 1, "%s", id);
		ret_io->split = json_string_value(json_object_get(facts, "streams")) != NULL;
		ret_io->stdin = json_string_value(json_object_get(facts, "stdin")) != NULL;
	}
	httpc_resp_clear(&resp);
	return status;
}

/* ---- the other streams, each on a thread and a connection of its own ---- */

struct side {
	struct httpc h;
	pthread_mutex_t busy; /* stdin: held while a POST is under way (see side_stop) */
	bool stop;            /* stdin: the run is over, send nothing more */
	char id[RUN_ID_MAX + 1];
	int verbosity;
	int result;
	pthread_t thread;
	bool running;
};

/* Is our stdin worth forwarding: open, not a terminal, not /dev/null? */
static bool stdin_forwardable(void)
{
	struct stat st, null;

	if (fstat(STDIN_FILENO, &st) < 0 || isatty(STDIN_FILENO))
		return false;
	if (S_ISCHR(st.st_mode) && stat("/dev/null", &null) == 0 && st.st_rdev == null.st_rdev)
		return false;
	return true;
}

/* POST one piece of stdin (eof: then close it), again while the program is not ready.
 * 0, or -EPIPE when the program's stdin is gone (stop sending), or another -errno. */
static int stdin_post(struct side *s, const char *buf, size_t len, bool eof)
{
	struct httpc_resp resp;
	char path[128];
	long wait_ms = 10;

	snprintf(path, sizeof(path), "/v1/runs/%s/stdin%s", s->id, eof ? "?eof=1" : "");
	for (;;) {
		int r = httpc_post_data(&s->h, path, buf, len, &resp);

		if (r < 0)
			return r;
		long status = resp.status;
		bool retry = status == 503 && !strcmp(httpc_resp_code(&resp), "stdin_not_ready");

		httpc_resp_clear(&resp);
		if (status == 204)
			return 0;
		if (!retry)
			return -EPIPE; /* 409: closed or no stdin; 404: gone */
		if (interrupted(&s->h))
			return -EINTR;
		sleep_ms(wait_ms);
		wait_ms = wait_ms * 2 > STDIN_RETRY_MAX_MS ? STDIN_RETRY_MAX_MS : wait_ms * 2;
	}
}

/* Our stdin to the program until EOF (then its stdin closes) or until it stops taking it. */
static void *stdin_main(void *arg)
{
	struct side *s = arg;
	static char buf[STDIN_CHUNK];

	for (;;) {
		ssize_t n = read(STDIN_FILENO, buf, sizeof(buf));

		if (n < 0 && errno == EINTR && !interrupted(&s->h))
			continue;
		if (n < 0) {
			/* Unreadable stdin: the program sees it end. */
			n = 0;
		}
		pthread_mutex_lock(&s->busy);
		int r = s->stop ? -EPIPE : stdin_post(s, buf, (size_t)n, n == 0);
		pthread_mutex_unlock(&s->busy);
		if (r < 0 || n == 0)
			break;
	}
	return NULL;
}

static void *stderr_main(void *arg)
{
	struct side *s = arg;
	uint64_t offset = 0;

	s->result = runner_console(&s->h, s->id, true, STDERR_FILENO, &offset, "stderr");
	return NULL;
}

/* Start `fn` on `s` with a second channel; signals stay with the main thread. */
static int side_start(struct side *s, struct httpc *h, const char *id, void *(*fn)(void *))
{
	sigset_t all, old;

	if (httpc_clone(&s->h, h) < 0)
		return -ENOMEM;
	pthread_mutex_init(&s->busy, NULL);
	snprintf(s->id, sizeof(s->id), "%s", id);
	sigfillset(&all);
	pthread_sigmask(SIG_BLOCK, &all, &old);
	int r = pthread_create(&s->thread, NULL, fn, s);
	pthread_sigmask(SIG_SETMASK, &old, NULL);
	if (r) {
		httpc_free(&s->h);
		return -r;
	}
	s->running = true;
	return 0;
}

/* The run is over: wait for a POST under way, and let the stdin thread (maybe blocked in
 * read(2), never waited for) send nothing more, so the process can exit (and clean up
 * curl) under it. */
static void side_stop(struct side *s)
{
	if (!s->running)
		return;
	pthread_mutex_lock(&s->busy);
	s->stop = true;
	pthread_mutex_unlock(&s->busy);
}

static void side_join(struct side *s)
{
	if (!s->running)
		return;
	pthread_join(s->thread, NULL);
	httpc_free(&s->h);
	s->running = false;
}

static void cancel_run(struct httpc *h, const char *id, int verbosity)
{
	struct httpc_resp resp;
	char path[128];

	snprintf(path, sizeof(path), "/v1/runs/%s/cancel", id);
	if (httpc_json(h, "POST", path, NULL, &resp) < 0) {
		if (verbosity > OPTS_QUIET)
			fprintf(stderr, "ukrun: could not cancel run %s: %s\n", id, h->errbuf);
	}
	else if (verbosity >= OPTS_VERBOSE)
		fprintf(stderr, "ukrun: cancelled run %s (HTTP %ld)\n", id, resp.status);
	httpc_resp_clear(&resp);
}

static json_t *get_record(struct httpc *h, const char *id)
{
	struct httpc_resp resp;
	char path[128], msg[256];
	json_t *rec = NULL;

	snprintf(path, sizeof(path), "/v1/runs/%s", id);
	if (httpc_json(h, "GET", path, NULL, &resp) < 0)
		fprintf(stderr, "ukrun: run %s: cannot reach runnerd: %s\n", id, h->errbuf);
	else if (resp.status != 200 || !json_is_object(resp.json))
		fprintf(stderr, "ukrun: run %s: %s\n", id, httpc_resp_message(&resp, msg, sizeof(msg)));
	else
		rec = json_incref(resp.json);
	httpc_resp_clear(&resp);
	return rec;
}

/* Notes and the verdict of a final record on stderr; returns the exit status. */
static int report(const struct opts *o, const char *id, const json_t *rec)
{
	const char *state = json_string_value(json_object_get(rec, "state"));
	const char *reason = json_string_value(json_object_get(rec, "reason"));
	const char *source = json_string_value(json_object_get(rec, "exit_source"));
	const json_t *notes = json_object_get(rec, "notes");
	bool final;
	int status = runner_exit_status(rec, &final);
	size_t i;
	json_t *n;

	if (!state)
		state = "?";
	if (reason && !*reason)
		reason = NULL;
	if (o->verbosity > OPTS_QUIET) {
		json_array_foreach(notes, i, n)
			if (json_string_value(n))
				fprintf(stderr, "ukrun: %s\n", json_string_value(n));
		if (json_is_true(json_object_get(rec, "console_truncated")))
			fprintf(stderr, "ukrun: console output was truncated by runnerd's cap\n");
	}
	if (!strcmp(state, "error") || !strcmp(state, "lost") || status == UKRUN_EXIT_INFRA ||
	    status == UKRUN_EXIT_NOTRUN)
		fprintf(stderr, "ukrun: run %s %s: %s\n", id, !strcmp(state, "lost") ? "was lost" : "failed",
			reason ? reason : "no reason given");
	else if (o->verbosity > OPTS_QUIET && !strcmp(state, "cancelled"))
		fprintf(stderr, "ukrun: run %s was cancelled%s%s\n", id, reason ? ": " : "", reason ? reason : "");
	if (status == 1 && json_integer_value(json_object_get(rec, "exit_code")) != 1)
		fprintf(stderr, "ukrun: guest exit value %" JSON_INTEGER_FORMAT " does not fit an exit status; "
				"exiting 1\n",
			json_integer_value(json_object_get(rec, "exit_code")));
	if (o->verbosity >= OPTS_VERBOSE)
		fprintf(stderr, "ukrun: run %s %s: exit %d%s%s%s\n", id, state, status, source ? " (" : "",
			source ? source : "", source ? ")" : "");
	return status;
}

/* --junit FILE: the ended run's tests as JUnit XML; 0 or UKRUN_EXIT_INFRA after saying why. */
static int write_junit(struct httpc *h, const char *path, const char *id, const json_t *rec)
{
	struct httpc_resp resp = { 0 };
	char url[128], msg[256];
	int r, status = 0;

	snprintf(url, sizeof(url), "/v1/runs/%s/tests", id);
	r = httpc_json(h, "GET", url, NULL, &resp);
	if (r < 0 || resp.status != 200 || !json_is_object(resp.json)) {
		fprintf(stderr, "ukrun: run %s: no test results for --junit: %s\n", id,
			r < 0 ? h->errbuf : httpc_resp_message(&resp, msg, sizeof(msg)));
		status = UKRUN_EXIT_INFRA;
	} else if ((r = testreport_junit_file(path, resp.json, rec)) < 0) {
		fprintf(stderr, "ukrun: --junit: cannot write '%s': %s\n", path, strerror(-r));
		status = UKRUN_EXIT_INFRA;
	}
	httpc_resp_clear(&resp);
	return status;
}

/* The stdin thread: it may outlive the run (blocked in read), so it is never joined. */
static struct side in_side;

/* Console to stdout until the run ends, then its record's verdict. A run with separate
 * streams: its stdout to ours, its stderr to ours from a second thread; stdin from a
 * third one when the program reads it. */
static int follow_run(struct httpc *h, const struct opts *o, const char *id, const struct run_io *io)
{
	uint64_t offset = 0;
	json_t *rec = NULL;
	int status = UKRUN_EXIT_INFRA;
	static struct conview view; /* one run per process; its line buffer is large */
	static struct side err_side;

	if (io->split && side_start(&err_side, h, id, stderr_main) < 0)
		fprintf(stderr, "ukrun: run %s: cannot follow its stderr\n", id);
	if (io->stdin && side_start(&in_side, h, id, stdin_main) == 0)
		pthread_detach(in_side.thread);

	conview_init(&view, STDOUT_FILENO, opts_console_app(o), h->abort_flag);
	if (view.app) {
		h->sink = conview_write;
		h->sink_ctx = &view;
	}
	for (int round = 0;; round++) {
		bool final;
		int r = runner_console(h, id, true, STDOUT_FILENO, &offset, io->split ? "stdout" : NULL);

		if (r == 0 && (r = conview_flush(&view)) < 0 && r != -EPIPE && r != -EINTR)
			r = 0; /* a last line that cannot be written changes no verdict */

		if (r == -EINTR || interrupted(h)) {
			cancel_run(h, id, o->verbosity);
			side_join(&err_side);
			if (o->verbosity > OPTS_QUIET)
				fprintf(stderr, "ukrun: interrupted; run %s cancelled\n", id);
			return UKRUN_EXIT_CANCELLED;
		}
		if (r == -EPIPE) {
			/* Nobody reads the console any more: stop the guest, end as a SIGPIPE would. */
			cancel_run(h, id, o->verbosity);
			side_join(&err_side);
			return 128 + SIGPIPE;
		}
		if (r < 0) {
			/* Best effort: a guest nobody watches should not run on to its timeout. */
			cancel_run(h, id, OPTS_QUIET);
			side_join(&err_side);
			return UKRUN_EXIT_INFRA;
		}
		side_join(&err_side); /* stderr ends with the run, as stdout did */
		rec = get_record(h, id);
		if (!rec)
			return UKRUN_EXIT_INFRA;
		runner_exit_status(rec, &final);
		if (final)
			break;
		json_decref(rec);
		rec = NULL;
		if (round >= SETTLE_ROUNDS) {
			fprintf(stderr, "ukrun: run %s: console ended but the run did not\n", id);
			return UKRUN_EXIT_INFRA;
		}
		sleep_ms(SETTLE_STEP_MS);
	}
	h->sink = NULL;
	status = report(o, id, rec);
	/* A report that cannot be written fails a passing run; a failing run keeps its status. */
	if (o->junit && write_junit(h, o->junit, id, rec) && status == 0)
		status = UKRUN_EXIT_INFRA;
	json_decref(rec);
	return status;
}

int runner_run(struct httpc *h, const struct opts *o)
{
	struct image prog = { .fd = -1 }, loader = { .fd = -1 };
	char id[RUN_ID_MAX + 1];
	int status, r;

	if (image_open(&prog, o->image) < 0) {
		status = UKRUN_EXIT_NOTRUN;
		goto cleanup;
	}
	if (o->loader && image_open(&loader, o->loader) < 0) {
		status = UKRUN_EXIT_NOTRUN;
		goto cleanup;
	}
	status = check_images(o, &prog, o->loader ? &loader : NULL);
	if (status)
		goto cleanup;

	r = hash_image(h, o, &prog);
	if (r >= 0 && o->loader)
		r = hash_image(h, o, &loader);
	if (r < 0) {
		status = r == -EINTR || interrupted(h) ? UKRUN_EXIT_CANCELLED : UKRUN_EXIT_INFRA;
		goto cleanup;
	}
	struct opts ro = *o;
	struct run_io io = { 0 };
	bool missing = false;

	ro.remote = h->unix_path == NULL;
	ro.want_stdin = stdin_forwardable();
	/* The run is asked for first: with its images stored (every warm run) that is the one
	 * request before the console, with no HEAD per image. Only when runnerd lacks one are
	 * they checked and uploaded, and the run asked for again. */
	status = create_run(h, &ro, &prog, o->loader ? &loader : NULL, true, &missing, id, &io);
	if (!status && missing) {
		r = upload_image(h, prog.fd, prog.size, prog.name, prog.hex, o->verbosity);
		if (r >= 0 && o->loader)
			r = upload_image(h, loader.fd, loader.size, loader.name, loader.hex, o->verbosity);
		if (r < 0) {
			status = r == -EINTR || interrupted(h) ? UKRUN_EXIT_CANCELLED : UKRUN_EXIT_INFRA;
			goto cleanup;
		}
		status = create_run(h, &ro, &prog, o->loader ? &loader : NULL, false, &missing, id, &io);
	} else if (!status && o->verbosity >= OPTS_VERBOSE) {
		fprintf(stderr, "ukrun: %s already stored (sha256 %s)\n", prog.name, prog.hex);
		if (o->loader)
			fprintf(stderr, "ukrun: %s already stored (sha256 %s)\n", loader.name, loader.hex);
	}
	if (status)
		goto cleanup;
	if (o->verbosity >= OPTS_VERBOSE)
		fprintf(stderr, "ukrun: run %s queued%s%s\n", id, io.split ? "; stdout and stderr apart" : "",
			io.stdin ? "; stdin forwarded" : "");
	status = follow_run(h, o, id, &io);
	side_stop(&in_side);
cleanup:
	image_close(&prog);
	image_close(&loader);
	return status;
}
