/* ukrun's subcommands: see cmds.h. */
#include "cmds.h"

#include <errno.h>
#include <fcntl.h>
#include <signal.h>
#include <time.h>
#include <sys/stat.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "autospawn.h"
#include "httpc.h"
#include "opts.h"
#include "runner.h"
#include "testreport.h"
#include "upload.h"

#define EXIT_REFUSED 1
#define PS_DEFAULT_LIMIT 20
#define PS_PAGE 200
#define PS_MAX_LIMIT 10000

/* Options common to all subcommands plus the ones a subcommand declares. */
struct cmd_args {
	const char *socket;
	const char *cacert;
	bool verbose;
	bool help;
	bool all;      /* ps --all */
	bool follow;   /* logs -f */
	bool out, err; /* logs --stdout, --stderr (both or neither: the console) */
	const char *stream; /* "stdout", "stderr" or NULL (both interleaved) */
	bool json;     /* --json: the daemon's JSON instead of a table */
	long limit;    /* ps -n */
	const char *state;
	const char *label;
	const char *junit; /* tests --junit FILE */
	const char *image;  /* ps --image, rm IMAGE: a sha256 or a file */
	const char *before; /* ps --before ID */
	const char *id;     /* show/logs/cancel */
	const char *action; /* daemon start|stop|status, hosts add|rm */
	const char *pos[2]; /* hosts add NAME URI, hosts rm NAME */
	size_t npos;
	long capacity, memory_mb, image_quota_mb; /* hosts add; -1 = the daemon's default */
	const char *host_labels[16];
	size_t nhost_labels;
	bool drain;         /* hosts rm --drain */
};

struct cmd_def {
	const char *name;
	const char *usage; /* after "ukrun NAME" */
	const char *flags; /* accepted: a=--all f=-f n=-n s=--state l=--label i=--image b=--before J=--junit
		    * o=--stdout/--stderr */
	const char *summary; /* one line for --help */
	bool needs_id;
	bool needs_image;  /* rm IMAGE */
	const char *actions; /* daemon: "start stop status" */
	bool action_optional; /* hosts: no action lists */
	bool spawn;        /* start runnerd when it is not running */
	int (*fn)(struct httpc *h, const struct cmd_args *a);
};

static int usage_error(const char *cmd, const char *fmt, ...) __attribute__((format(printf, 2, 3)));

static int usage_error(const char *cmd, const char *fmt, ...)
{
	va_list ap;

	fprintf(stderr, "ukrun %s: ", cmd);
	va_start(ap, fmt);
	vfprintf(stderr, fmt, ap);
	va_end(ap);
	fprintf(stderr, "\nTry 'ukrun %s --help' for more information.\n", cmd);
	return UKRUN_EXIT_USAGE;
}

static void transport_error(const struct httpc *h, int r)
{
	fprintf(stderr, "ukrun: cannot reach runnerd at %s: %s\n", httpc_where(h), h->errbuf[0] ? h->errbuf : strerror(-r));
}

/* Status for an unexpected HTTP answer, after saying why. */
static int http_error(const struct httpc_resp *resp)
{
	char msg[256];

	fprintf(stderr, "ukrun: %s\n", httpc_resp_message(resp, msg, sizeof(msg)));
	return resp->status >= 400 && resp->status < 500 ? EXIT_REFUSED : UKRUN_EXIT_INFRA;
}

/* GET path → *ret (status 200 and JSON), or an exit status. */
static int get_json(struct httpc *h, const char *path, struct httpc_resp *ret)
{
	int r = httpc_json(h, "GET", path, NULL, ret);

	if (r < 0) {
		transport_error(h, r);
		return UKRUN_EXIT_INFRA;
	}
	if (ret->status != 200 || !ret->json)
		return http_error(ret);
	return 0;
}

/* GET /v1/runs/ID; a missing run is "no run ID" (exit 1). */
static int get_run(struct httpc *h, const char *id, struct httpc_resp *ret)
{
	char path[128];
	int r;

	snprintf(path, sizeof(path), "/v1/runs/%s", id);
	r = httpc_json(h, "GET", path, NULL, ret);
	if (r < 0) {
		transport_error(h, r);
		return UKRUN_EXIT_INFRA;
	}
	if (ret->status == 404) {
		fprintf(stderr, "ukrun: no run %s\n", id);
		return EXIT_REFUSED;
	}
	if (ret->status != 200 || !ret->json)
		return http_error(ret);
	return 0;
}

static void print_json(const json_t *j)
{
	json_dumpf(j, stdout, JSON_INDENT(2) | JSON_PRESERVE_ORDER);
	putchar('\n');
}

/* Colour on stdout: only on a terminal, never with $NO_COLOR set (https://no-color.org) or TERM=dumb. */
static bool use_colour(void)
{
	const char *nc = getenv("NO_COLOR"), *term = getenv("TERM");

	return isatty(STDOUT_FILENO) && !(nc && *nc) && !(term && !strcmp(term, "dumb"));
}

static const char *state_colour(const char *state)
{
	if (!state)
		return NULL;
	if (!strcmp(state, "done"))
		return "\033[32m";
	if (!strcmp(state, "error") || !strcmp(state, "lost") || !strcmp(state, "timeout"))
		return "\033[31m";
	if (!strcmp(state, "running") || !strcmp(state, "starting") || !strcmp(state, "queued"))
		return "\033[33m";
	return NULL;
}

/* Untrusted text into a table cell: control bytes become '?'; `colour` (may be NULL) wraps the text. */
static void print_cell_c(const char *s, int width, bool last, const char *colour)
{
	int n = 0;

	if (colour)
		fputs(colour, stdout);
	for (; s && *s; s++, n++)
		putchar((unsigned char)*s < 0x20 || *s == 0x7f ? '?' : *s);
	if (colour)
		fputs("\033[0m", stdout);
	if (!last)
		printf("%*s", width - n + 2 > 1 ? width - n + 2 : 1, "");
}

static void print_cell(const char *s, int width, bool last)
{
	print_cell_c(s, width, last, NULL);
}

static void format_duration(const json_t *ms, char *buf, size_t len)
{
	json_int_t v = json_integer_value(ms);

	if (!json_is_integer(ms) || v < 0)
		snprintf(buf, len, "-");
	else if (v < 1000)
		snprintf(buf, len, "%dms", (int)v);
	else if (v < 60000)
		snprintf(buf, len, "%d.%02ds", (int)(v / 1000), (int)(v % 1000 / 10));
	else if (v < 3600000)
		snprintf(buf, len, "%dm%02ds", (int)(v / 60000), (int)(v / 1000 % 60));
	else
		snprintf(buf, len, "%lldh%02dm", (long long)(v / 3600000), (int)(v / 60000 % 60));
}

static void format_size(json_int_t v, char *buf, size_t len)
{
	if (v < 10 * 1024)
		snprintf(buf, len, "%lldB", (long long)v);
	else if (v < 10 * 1024 * 1024)
		snprintf(buf, len, "%lldK", (long long)(v / 1024));
	else
		snprintf(buf, len, "%lldM", (long long)(v / (1024 * 1024)));
}

/* A table: `ncols` heads, rows of cells produced by `cells_of(rec, cells, scratch)`. Column `colour_col`
 * (-1: none) is coloured by state on a terminal. */
#define MAX_COLS 8
#define SCRATCH 160

typedef void (*cells_fn)(const json_t *rec, const char *cells[MAX_COLS], char scratch[MAX_COLS][SCRATCH]);

static void print_table(const char *const *heads, size_t ncols, const json_t *rows, cells_fn cells_of,
			int colour_col)
{
	const char *cells[MAX_COLS];
	char scratch[MAX_COLS][SCRATCH];
	size_t w[MAX_COLS], i, c;
	bool colour = colour_col >= 0 && use_colour();
	json_t *rec;

	for (c = 0; c < ncols; c++)
		w[c] = strlen(heads[c]);
	json_array_foreach(rows, i, rec) {
		cells_of(rec, cells, scratch);
		for (c = 0; c < ncols; c++)
			if (cells[c] && strlen(cells[c]) > w[c] && strlen(cells[c]) < 64)
				w[c] = strlen(cells[c]);
	}
	for (c = 0; c < ncols; c++)
		print_cell(heads[c], (int)w[c], c == ncols - 1);
	putchar('\n');
	json_array_foreach(rows, i, rec) {
		cells_of(rec, cells, scratch);
		for (c = 0; c < ncols; c++)
			print_cell_c(cells[c] ? cells[c] : "-", (int)w[c], c == ncols - 1,
				     colour && (int)c == colour_col ? state_colour(cells[c]) : NULL);
		putchar('\n');
	}
}

static void run_cells(const json_t *rec, const char *cells[MAX_COLS], char scratch[MAX_COLS][SCRATCH])
{
	const json_t *code = json_object_get(rec, "exit_code");
	const char *platform = json_string_value(json_object_get(rec, "platform"));

	if (json_is_integer(code))
		snprintf(scratch[2], SCRATCH, "%lld", (long long)json_integer_value(code));
	else
		snprintf(scratch[2], SCRATCH, "-");
	format_duration(json_object_get(rec, "duration_ms"), scratch[4], SCRATCH);
	cells[0] = json_string_value(json_object_get(rec, "id"));
	cells[1] = json_string_value(json_object_get(rec, "state"));
	cells[2] = scratch[2];
	cells[3] = platform ? platform : "-";
	cells[4] = scratch[4];
	cells[5] = json_string_value(json_object_get(rec, "name"));
}

static const char *const run_state_words[] = { "queued", "starting", "running", "done",
					       "error", "timeout", "cancelled", "lost" };

/* An image given as a sha256 or as a file (hashed here, as an upload would). */
static int image_digest(const char *cmd, const char *arg, char hex[UPLOAD_HEX_SIZE])
{
	struct stat st;
	size_t n = strlen(arg);
	int fd, r;

	if (n == 64 && strspn(arg, "0123456789abcdef") == 64 && stat(arg, &st) != 0) {
		memcpy(hex, arg, 65);
		return 0;
	}
	fd = open(arg, O_RDONLY | O_CLOEXEC);
	if (fd < 0) {
		if (errno == ENOENT && n >= 4 && strspn(arg, "0123456789abcdef") == n)
			return 1; /* a digest prefix: the caller resolves it */
		fprintf(stderr, "ukrun %s: %s: %s (expected an image file or its sha256)\n", cmd, arg, strerror(errno));
		return UKRUN_EXIT_USAGE;
	}
	r = upload_sha256_fd(fd, NULL, hex, NULL);
	close(fd);
	if (r < 0) {
		fprintf(stderr, "ukrun %s: %s: %s\n", cmd, arg, strerror(-r));
		return UKRUN_EXIT_INFRA;
	}
	return 0;
}

static int cmd_ps(struct httpc *h, const struct cmd_args *a)
{
	static const char *const heads[] = { "ID", "STATE", "EXIT", "PLATFORM", "DURATION", "NAME" };
	long want = a->all ? PS_MAX_LIMIT : a->limit > 0 ? a->limit : PS_DEFAULT_LIMIT;
	json_t *all = json_array();
	char before[80] = "", hex[UPLOAD_HEX_SIZE] = "";
	char *state = NULL, *label = NULL;
	int status = 0;

	if (a->image) {
		status = image_digest("ps", a->image, hex);
		if (status == 1)
			status = usage_error("ps", "--image: expected an image file or its full sha256, got '%s'",
					     a->image);
		if (status) {
			json_decref(all);
			return status;
		}
	}
	if (a->before)
		snprintf(before, sizeof(before), "%s", a->before);
	if (a->state)
		state = httpc_escape(a->state);
	if (a->label)
		label = httpc_escape(a->label);
	while ((long)json_array_size(all) < want) {
		long page = want - (long)json_array_size(all) < PS_PAGE ? want - (long)json_array_size(all) : PS_PAGE;
		struct httpc_resp resp;
		json_t *runs, *rec;
		char *path;
		size_t i;

		if (asprintf(&path, "/v1/runs?limit=%ld%s%s%s%s%s%s%s%s", page, state ? "&state=" : "",
			     state ? state : "", label ? "&label=" : "", label ? label : "", before[0] ? "&before=" : "",
			     before, hex[0] ? "&image=" : "", hex) < 0) {
			status = UKRUN_EXIT_INFRA;
			break;
		}
		status = get_json(h, path, &resp);
		free(path);
		if (status) {
			httpc_resp_clear(&resp);
			break;
		}
		runs = json_object_get(resp.json, "runs");
		json_array_foreach(runs, i, rec)
			json_array_append(all, rec);
		rec = json_array_get(runs, json_array_size(runs) - 1);
		if (json_array_size(runs) < (size_t)page || !runner_id_valid(json_string_value(json_object_get(rec, "id")))) {
			httpc_resp_clear(&resp);
			break;
		}
		snprintf(before, sizeof(before), "%s", json_string_value(json_object_get(rec, "id")));
		httpc_resp_clear(&resp);
	}
	if (!status && a->json) {
		json_t *doc = json_pack("{s:O}", "runs", all);

		print_json(doc);
		json_decref(doc);
	} else if (!status) {
		print_table(heads, 6, all, run_cells, 1);
	}
	free(state);
	free(label);
	json_decref(all);
	return status;
}

/* One "key: value" line of `show`, the value made printable. */
static void show_line(const char *key, const json_t *v)
{
	if (!v || json_is_null(v))
		return;
	printf("%-17s ", key);
	if (json_is_string(v))
		print_cell(json_string_value(v), 0, true);
	else if (json_is_integer(v))
		printf("%" JSON_INTEGER_FORMAT, json_integer_value(v));
	else if (json_is_boolean(v))
		fputs(json_is_true(v) ? "yes" : "no", stdout);
	else {
		char *s = json_dumps(v, JSON_COMPACT | JSON_PRESERVE_ORDER);

		print_cell(s ? s : "?", 0, true);
		free(s);
	}
	putchar('\n');
}

static int cmd_show(struct httpc *h, const struct cmd_args *a)
{
	static const char *const keys[] = { "id", "name", "state", "exit_code", "exit_source", "reason",
					    "platform", "driver", "host", "mode", "accel", "image", "loader",
					    "args", "uk_params", "labels", "created_at", "started_at", "ended_at",
					    "console_bytes", "console_truncated" };
	struct httpc_resp resp;
	int status = get_run(h, a->id, &resp);
	char dur[32];
	size_t i;
	json_t *n;

	if (!status && a->json) {
		print_json(resp.json);
	} else if (!status) {
		for (i = 0; i < sizeof(keys) / sizeof(keys[0]); i++)
			show_line(keys[i], json_object_get(resp.json, keys[i]));
		format_duration(json_object_get(resp.json, "duration_ms"), dur, sizeof(dur));
		printf("%-17s %s\n", "duration", dur);
		json_array_foreach(json_object_get(resp.json, "notes"), i, n)
			show_line("note", n);
	}
	httpc_resp_clear(&resp);
	return status;
}

static int logs_status(int r)
{
	switch (r) {
	case 0: return 0;
	case -EINTR: return UKRUN_EXIT_CANCELLED; /* leaves the run alone: logs only watches */
	case -EPIPE: return 128 + SIGPIPE;
	case -ENOENT: return EXIT_REFUSED;
	default: return UKRUN_EXIT_INFRA;
	}
}

/* logs --json: {"id","console","bytes"}, the console as one string (not UTF-8: bytes >= 0x80 become '?'). */
static int logs_json(struct httpc *h, const struct cmd_args *a)
{
	FILE *tmp = tmpfile();
	uint64_t offset = 0;
	char *buf = NULL;
	long len;
	int r, status;

	if (!tmp) {
		fprintf(stderr, "ukrun: temporary file: %s\n", strerror(errno));
		return UKRUN_EXIT_INFRA;
	}
	r = runner_console(h, a->id, a->follow, fileno(tmp), &offset, a->stream);
	status = logs_status(r);
	if (!status && (fseek(tmp, 0, SEEK_END) < 0 || (len = ftell(tmp)) < 0))
		status = UKRUN_EXIT_INFRA;
	if (!status && !(buf = malloc((size_t)len + 1)))
		status = UKRUN_EXIT_INFRA;
	if (!status) {
		json_t *doc, *text;
		size_t i;

		rewind(tmp);
		if (fread(buf, 1, (size_t)len, tmp) != (size_t)len) {
			status = UKRUN_EXIT_INFRA;
			goto out;
		}
		text = json_stringn(buf, (size_t)len);
		if (!text) { /* not UTF-8: keep ASCII, mark the rest */
			for (i = 0; i < (size_t)len; i++)
				if ((unsigned char)buf[i] >= 0x80)
					buf[i] = '?';
			text = json_stringn(buf, (size_t)len);
		}
		doc = json_pack("{s:s,s:s,s:o,s:I}", "id", a->id, "stream", a->stream ? a->stream : "both", "console",
				text, "bytes", (json_int_t)offset);
		print_json(doc);
		json_decref(doc);
	}
out:
	free(buf);
	fclose(tmp);
	return status;
}

static int cmd_logs(struct httpc *h, const struct cmd_args *a)
{
	uint64_t offset = 0;

	if (a->json)
		return logs_json(h, a);
	return logs_status(runner_console(h, a->id, a->follow, STDOUT_FILENO, &offset, a->stream));
}

static int cmd_cancel(struct httpc *h, const struct cmd_args *a)
{
	struct httpc_resp resp;
	char path[128];
	int r, status = 0;

	snprintf(path, sizeof(path), "/v1/runs/%s/cancel", a->id);
	r = httpc_json(h, "POST", path, NULL, &resp);
	if (r < 0) {
		transport_error(h, r);
		status = UKRUN_EXIT_INFRA;
	} else if (resp.status == 404) {
		fprintf(stderr, "ukrun: no run %s\n", a->id);
		status = EXIT_REFUSED;
	} else if (resp.status == 409) {
		fprintf(stderr, "ukrun: run %s has already ended\n", a->id);
		status = EXIT_REFUSED;
	} else if (resp.status != 200) {
		status = http_error(&resp);
	} else if (a->json) {
		print_json(resp.json);
	} else {
		printf("%s cancelled\n", a->id);
	}
	httpc_resp_clear(&resp);
	return status;
}

static int cmd_tests(struct httpc *h, const struct cmd_args *a)
{
	struct httpc_resp resp = { 0 }, rec = { 0 };
	char path[128];
	int status, r;

	snprintf(path, sizeof(path), "/v1/runs/%s/tests", a->id);
	status = get_json(h, path, &resp);
	if (!status && a->junit) {
		snprintf(path, sizeof(path), "/v1/runs/%s", a->id);
		status = get_json(h, path, &rec);
		if (!status && (r = testreport_junit_file(a->junit, resp.json, rec.json)) < 0) {
			fprintf(stderr, "ukrun tests: cannot write '%s': %s\n", a->junit, strerror(-r));
			status = UKRUN_EXIT_INFRA;
		}
	}
	if (!status && a->json) {
		json_dumpf(resp.json, stdout, JSON_INDENT(2) | JSON_PRESERVE_ORDER);
		putchar('\n');
	} else if (!status && !a->junit) {
		testreport_print(stdout, resp.json);
	}
	httpc_resp_clear(&rec);
	httpc_resp_clear(&resp);
	return status;
}

static void image_cells(const json_t *rec, const char *cells[MAX_COLS], char scratch[MAX_COLS][SCRATCH])
{
	const char *sha = json_string_value(json_object_get(rec, "sha256"));
	const char *created = json_string_value(json_object_get(rec, "created_at"));

	snprintf(scratch[0], SCRATCH, "%.12s", sha ? sha : "-");
	format_size(json_integer_value(json_object_get(rec, "size")), scratch[1], SCRATCH);
	snprintf(scratch[3], SCRATCH, "%.19s", created ? created : "-");
	cells[0] = scratch[0];
	cells[1] = scratch[1];
	cells[2] = json_string_value(json_object_get(rec, "platform"));
	cells[3] = scratch[3];
	cells[4] = json_string_value(json_object_get(rec, "name"));
}

static int cmd_images(struct httpc *h, const struct cmd_args *a)
{
	static const char *const heads[] = { "IMAGE", "SIZE", "PLATFORM", "CREATED", "NAME" };
	struct httpc_resp resp;
	int status = get_json(h, "/v1/images", &resp);

	if (!status && a->json)
		print_json(resp.json);
	else if (!status)
		print_table(heads, 5, json_object_get(resp.json, "images"), image_cells, -1);
	httpc_resp_clear(&resp);
	return status;
}

/* A digest prefix (at least 4 hex digits) → the one stored image it names. */
static int resolve_prefix(struct httpc *h, const char *prefix, char hex[UPLOAD_HEX_SIZE])
{
	struct httpc_resp resp;
	int status = get_json(h, "/v1/images", &resp), found = 0;
	json_t *img;
	size_t i;

	if (status) {
		httpc_resp_clear(&resp);
		return status;
	}
	json_array_foreach(json_object_get(resp.json, "images"), i, img) {
		const char *sha = json_string_value(json_object_get(img, "sha256"));

		if (sha && strlen(sha) == 64 && !strncmp(sha, prefix, strlen(prefix))) {
			memcpy(hex, sha, 65);
			found++;
		}
	}
	httpc_resp_clear(&resp);
	if (found == 1)
		return 0;
	fprintf(stderr, found ? "ukrun: image %s is ambiguous: give more digits\n" : "ukrun: no image %s\n", prefix);
	return EXIT_REFUSED;
}

static int cmd_rm(struct httpc *h, const struct cmd_args *a)
{
	char hex[UPLOAD_HEX_SIZE], path[128];
	struct httpc_resp resp;
	int r, status = image_digest("rm", a->image, hex);

	if (status == 1)
		status = resolve_prefix(h, a->image, hex);
	if (status)
		return status;
	snprintf(path, sizeof(path), "/v1/images/%s", hex);
	r = httpc_json(h, "DELETE", path, NULL, &resp);
	if (r < 0) {
		transport_error(h, r);
		status = UKRUN_EXIT_INFRA;
	} else if (resp.status == 404) {
		fprintf(stderr, "ukrun: no image %s\n", a->image);
		status = EXIT_REFUSED;
	} else if (resp.status == 409) {
		fprintf(stderr, "ukrun: image %s is in use by a queued or running run (cancel it first)\n", a->image);
		status = EXIT_REFUSED;
	} else if (resp.status != 204 && resp.status != 200) {
		status = http_error(&resp);
	} else if (a->json) {
		json_t *doc = json_pack("{s:s}", "deleted", hex);

		print_json(doc);
		json_decref(doc);
	} else {
		printf("%s removed\n", hex);
	}
	httpc_resp_clear(&resp);
	return status;
}

static void host_cells(const json_t *rec, const char *cells[MAX_COLS], char scratch[MAX_COLS][SCRATCH])
{
	const json_t *d;
	size_t i, n = 0;

	snprintf(scratch[1], SCRATCH, "%" JSON_INTEGER_FORMAT, json_integer_value(json_object_get(rec, "capacity")));
	snprintf(scratch[2], SCRATCH, "%" JSON_INTEGER_FORMAT, json_integer_value(json_object_get(rec, "active")));
	snprintf(scratch[3], SCRATCH, "%" JSON_INTEGER_FORMAT, json_integer_value(json_object_get(rec, "queued")));
	scratch[4][0] = '\0';
	json_array_foreach(json_object_get(rec, "drivers"), i, d) {
		const char *name = json_string_value(json_object_get(d, "name"));
		int w = snprintf(scratch[4] + n, SCRATCH - n, "%s%s%s", n ? " " : "", name ? name : "?",
				 json_is_true(json_object_get(d, "available")) ? "" : "(unavailable)");

		if (w < 0 || (size_t)w >= SCRATCH - n)
			break;
		n += (size_t)w;
	}
	cells[0] = json_string_value(json_object_get(rec, "name"));
	cells[1] = json_string_value(json_object_get(rec, "health"));
	cells[2] = scratch[1];
	cells[3] = scratch[2];
	cells[4] = scratch[3];
	n = 0;
	scratch[5][0] = '\0';
	json_array_foreach(json_object_get(rec, "labels"), i, d) {
		int w = snprintf(scratch[5] + n, SCRATCH - n, "%s%s", n ? "," : "", json_string_value(d));

		if (w < 0 || (size_t)w >= SCRATCH - n)
			break;
		n += (size_t)w;
	}
	cells[5] = scratch[5][0] ? scratch[5] : "-";
	cells[6] = scratch[4];
}

static int hosts_add(struct httpc *h, const struct cmd_args *a)
{
	struct httpc_resp resp;
	json_t *body = json_pack("{s:s,s:s}", "name", a->pos[0], "uri", a->pos[1]), *labels = json_array();
	int r, status = 0;

	for (size_t i = 0; i < a->nhost_labels; i++)
		json_array_append_new(labels, json_string(a->host_labels[i]));
	json_object_set_new(body, "labels", labels);
	if (a->capacity >= 0)
		json_object_set_new(body, "capacity", json_integer(a->capacity));
	if (a->memory_mb >= 0)
		json_object_set_new(body, "memory_mb", json_integer(a->memory_mb));
	if (a->image_quota_mb >= 0)
		json_object_set_new(body, "image_quota_mb", json_integer(a->image_quota_mb));
	r = httpc_json(h, "POST", "/v1/hosts", body, &resp);
	json_decref(body);
	if (r < 0) {
		transport_error(h, r);
		return UKRUN_EXIT_INFRA;
	}
	if (resp.status == 400 || resp.status == 409) {
		const char *msg = json_string_value(json_object_get(json_object_get(resp.json, "error"), "message"));

		fprintf(stderr, "ukrun: hosts add: %s\n", msg ? msg : "refused");
		status = EXIT_REFUSED;
	} else if (resp.status != 201) {
		status = http_error(&resp);
	} else if (a->json) {
		print_json(resp.json);
	} else {
		printf("host %s added (%s): probing\n", a->pos[0], a->pos[1]);
	}
	httpc_resp_clear(&resp);
	return status;
}

static int hosts_rm(struct httpc *h, const struct cmd_args *a)
{
	struct httpc_resp resp;
	char path[160];
	int r, status = 0;

	if (strlen(a->pos[0]) > 63 || strspn(a->pos[0], "abcdefghijklmnopqrstuvwxyz0123456789._-") != strlen(a->pos[0])) {
		fprintf(stderr, "ukrun: no host %.64s\n", a->pos[0]);
		return EXIT_REFUSED;
	}
	snprintf(path, sizeof(path), "/v1/hosts/%s%s", a->pos[0], a->drain ? "?drain=1" : "");
	r = httpc_json(h, "DELETE", path, NULL, &resp);
	if (r < 0) {
		transport_error(h, r);
		return UKRUN_EXIT_INFRA;
	}
	if (resp.status == 404 || resp.status == 409) {
		const char *msg = json_string_value(json_object_get(json_object_get(resp.json, "error"), "message"));

		fprintf(stderr, "ukrun: hosts rm: %s\n", msg ? msg : "refused");
		status = EXIT_REFUSED;
	} else if (resp.status != 200 && resp.status != 202) {
		status = http_error(&resp);
	} else if (a->json) {
		print_json(resp.json);
	} else {
		printf(resp.status == 202 ? "host %s draining: removed after its running runs\n" : "host %s removed\n",
		       a->pos[0]);
	}
	httpc_resp_clear(&resp);
	return status;
}

static int cmd_hosts(struct httpc *h, const struct cmd_args *a)
{
	static const char *const heads[] = { "HOST", "HEALTH", "CAPACITY", "ACTIVE", "QUEUED", "LABELS", "DRIVERS" };
	struct httpc_resp resp;
	int status;
	const json_t *host, *d;
	size_t i, j;

	if (a->action && !strcmp(a->action, "add"))
		return hosts_add(h, a);
	if (a->action)
		return hosts_rm(h, a);
	status = get_json(h, "/v1/hosts", &resp);

	if (!status && a->json) {
		print_json(resp.json);
	} else if (!status) {
		print_table(heads, 7, json_object_get(resp.json, "hosts"), host_cells, -1);
		/* Why a driver cannot run: one line each, so the table stays narrow. */
		json_array_foreach(json_object_get(resp.json, "hosts"), i, host)
			json_array_foreach(json_object_get(host, "drivers"), j, d) {
				const char *reason = json_string_value(json_object_get(d, "reason"));

				if (!reason || !strcmp(json_string_value(json_object_get(host, "health")) ?: "", "down"))
					continue;
				printf("  %s: ", json_string_value(json_object_get(host, "name")));
				print_cell(reason, 0, true);
				putchar('\n');
			}
	}
	/* A host that is down: why, once. */
	if (!status && !a->json)
		json_array_foreach(json_object_get(resp.json, "hosts"), i, host) {
			const char *err = json_string_value(json_object_get(host, "last_error"));

			if (!err || strcmp(json_string_value(json_object_get(host, "health")) ?: "", "down"))
				continue;
			printf("  %s: down: ", json_string_value(json_object_get(host, "name")));
			print_cell(err, 0, true);
			putchar('\n');
		}
	httpc_resp_clear(&resp);
	return status;
}

static int cmd_version(struct httpc *h, const struct cmd_args *a)
{
	struct httpc_resp resp;
	const char *v;
	json_t *d;
	size_t i;
	int status;

	if (!a->json) {
		printf("ukrun %s\n", UKRUN_VERSION);
		fflush(stdout);
	}
	status = get_json(h, "/v1/version", &resp);
	if (!status && a->json) {
		json_t *doc = json_pack("{s:s,s:O}", "client", UKRUN_VERSION, "daemon", resp.json);

		print_json(doc);
		json_decref(doc);
	} else if (!status) {
		v = json_string_value(json_object_get(resp.json, "version"));
		printf("runnerd %s (%s)\n", v ? v : "?", httpc_where(h));
		json_array_foreach(json_object_get(resp.json, "drivers"), i, d) {
			const char *name = json_string_value(json_object_get(d, "name"));
			const char *info = json_string_value(json_object_get(d, "info"));

			printf("  driver ");
			print_cell(name ? name : "?", 8, false);
			print_cell(json_is_true(json_object_get(d, "available")) ? "available" : "unavailable", 11, false);
			print_cell(info ? info : "", 0, true);
			putchar('\n');
		}
	}
	httpc_resp_clear(&resp);
	return status;
}

/* GET /healthz: 0 (up, *ret filled), else UKRUN_EXIT_INFRA after saying why unless `quiet`. */
static int health(struct httpc *h, struct httpc_resp *ret, bool quiet)
{
	int r = httpc_json(h, "GET", "/healthz", NULL, ret);

	if (r < 0) {
		if (!quiet)
			fprintf(stderr, "ukrun: runnerd is not running at %s: %s\n", httpc_where(h),
				h->errbuf[0] ? h->errbuf : strerror(-r));
		return UKRUN_EXIT_INFRA;
	}
	if (ret->status != 200) {
		if (!quiet)
			http_error(ret);
		return UKRUN_EXIT_INFRA;
	}
	return 0;
}

static int print_health(struct httpc *h, const struct cmd_args *a, const struct httpc_resp *resp)
{
	const char *v = json_string_value(json_object_get(resp->json, "version"));
	json_int_t pid = json_integer_value(json_object_get(resp->json, "pid"));

	if (a->json) {
		json_t *doc = json_pack("{s:b,s:s,s:O}", "running", 1, "where", httpc_where(h), "health", resp->json);

		print_json(doc);
		json_decref(doc);
	} else {
		printf("runnerd %s is up (pid %lld, %s, %lld active)\n", v ? v : "?", (long long)pid, httpc_where(h),
		       (long long)json_integer_value(json_object_get(resp->json, "active")));
	}
	return 0;
}

static int cmd_ping(struct httpc *h, const struct cmd_args *a)
{
	struct httpc_resp resp;
	int status = health(h, &resp, false);

	if (!status)
		print_health(h, a, &resp);
	httpc_resp_clear(&resp);
	return status;
}

/* daemon stop: SIGTERM to the pid /healthz reports (a local daemon of ours), then wait for the socket to die. */
static int daemon_stop(struct httpc *h, const struct cmd_args *a)
{
	struct httpc_resp resp;
	json_int_t pid;
	int status = health(h, &resp, true);

	if (status) {
		httpc_resp_clear(&resp);
		if (a->json)
			printf("{\n  \"running\": false,\n  \"stopped\": false\n}\n");
		else
			printf("runnerd is not running (%s)\n", httpc_where(h));
		return 0;
	}
	pid = json_integer_value(json_object_get(resp.json, "pid"));
	httpc_resp_clear(&resp);
	if (!h->unix_path) {
		fprintf(stderr, "ukrun daemon stop: runnerd at %s is remote; stop it on its host\n", httpc_where(h));
		return EXIT_REFUSED;
	}
	if (pid <= 1 || kill((pid_t)pid, SIGTERM) < 0) {
		fprintf(stderr, "ukrun daemon stop: cannot signal runnerd (pid %lld): %s\n", (long long)pid,
			pid <= 1 ? "bad pid" : strerror(errno));
		return EXIT_REFUSED;
	}
	/* runnerd drains its runs (each is cancelled) before it exits: wait up to a minute. */
	for (int i = 0; i < 600; i++) {
		struct timespec ts = { .tv_nsec = 100 * 1000 * 1000 };

		if (h->abort_flag && *h->abort_flag)
			return UKRUN_EXIT_CANCELLED;
		if (kill((pid_t)pid, 0) < 0 && errno == ESRCH)
			break;
		nanosleep(&ts, NULL);
	}
	if (kill((pid_t)pid, 0) == 0) {
		fprintf(stderr, "ukrun daemon stop: runnerd (pid %lld) is still running\n", (long long)pid);
		return UKRUN_EXIT_INFRA;
	}
	if (a->json)
		printf("{\n  \"running\": false,\n  \"stopped\": true,\n  \"pid\": %lld\n}\n", (long long)pid);
	else
		printf("runnerd (pid %lld) stopped\n", (long long)pid);
	return 0;
}

static int cmd_daemon(struct httpc *h, const struct cmd_args *a)
{
	struct httpc_resp resp;
	int status;

	if (!strcmp(a->action, "stop"))
		return daemon_stop(h, a);
	if (!strcmp(a->action, "start") && h->unix_path) {
		status = autospawn_ensure(h, h->unix_path, a->verbose);
		if (status < 0)
			return status == -EINTR ? UKRUN_EXIT_CANCELLED : UKRUN_EXIT_INFRA;
	}
	/* start (after starting) and status */
	status = health(h, &resp, !strcmp(a->action, "status"));
	if (!status)
		print_health(h, a, &resp);
	else if (!strcmp(a->action, "status")) {
		if (a->json)
			printf("{\n  \"running\": false\n}\n");
		else
			printf("runnerd is not running (%s)\n", httpc_where(h));
		status = 3; /* as `systemctl status`: not running */
	}
	httpc_resp_clear(&resp);
	return status;
}

/* `tests` (per-test results) and `--junit` belong to their own module; the table has a row for it there. */
static const struct cmd_def cmd_defs[] = {
#define PS_USAGE "[--all] [-n N] [--state S] [--label k[=v]] [--image FILE|SHA] [--before ID]"
	{ .name = "ps", .usage = PS_USAGE, .summary = "list runs, newest first (default 20)", .flags = "anlsib",
	  .spawn = true, .fn = cmd_ps },
	{ .name = "runs", .usage = PS_USAGE, .summary = "same as ps", .flags = "anlsib", .spawn = true, .fn = cmd_ps },
	{ .name = "show", .usage = "ID", .summary = "one run's record", .flags = "", .needs_id = true, .spawn = true,
	  .fn = cmd_show },
	{ .name = "logs", .usage = "[-f] [--stdout|--stderr] ID",
	  .summary = "a run's console (-f: follow until it ends; --stdout, --stderr: one stream)", .flags = "fo",
	  .needs_id = true, .spawn = true, .fn = cmd_logs },
	{ .name = "cancel", .usage = "ID", .summary = "stop a queued or running run", .flags = "", .needs_id = true,
	  .spawn = true, .fn = cmd_cancel },
	{ .name = "tests", .usage = "[--junit FILE] ID", .summary = "a run's test cases (--junit FILE: as JUnit XML)",
	  .flags = "J", .needs_id = true, .spawn = true, .fn = cmd_tests },
	{ .name = "images", .usage = "", .summary = "list stored images", .flags = "", .spawn = true,
	  .fn = cmd_images },
	{ .name = "rm", .usage = "IMAGE (a file, its sha256 or a unique prefix of 4+ digits)",
	  .summary = "remove a stored image", .flags = "", .needs_image = true, .spawn = true, .fn = cmd_rm },
	{ .name = "hosts",
	  .usage = "| add NAME URI [--capacity N] [--memory MB] [--label L]... [--image-quota MB] | rm NAME [--drain]",
	  .summary = "the farm's hosts and their drivers; add or remove one at run time", .flags = "H",
	  .actions = " add rm ", .action_optional = true, .spawn = true, .fn = cmd_hosts },
	{ .name = "version", .usage = "", .summary = "client, daemon and driver versions", .flags = "", .spawn = true,
	  .fn = cmd_version },
	{ .name = "ping", .usage = "", .summary = "is runnerd up? (never starts it)", .flags = "", .spawn = false,
	  .fn = cmd_ping },
	{ .name = "daemon", .usage = "start|stop|status", .summary = "start, stop or look at the per-user runnerd",
	  .flags = "", .actions = " start stop status ", .spawn = false, .fn = cmd_daemon },
};

#define NDEFS (sizeof(cmd_defs) / sizeof(cmd_defs[0]))

bool cmds_is(const char *name)
{
	for (size_t i = 0; i < NDEFS; i++)
		if (!strcmp(cmd_defs[i].name, name))
			return true;
	return false;
}

/* Edit distance counting an adjacent transposition as one edit (optimal string alignment: "shwo" is 1 from
 * "show"); bounded inputs (subcommand names are short; longer words are never close). */
static size_t edit_distance(const char *a, const char *b)
{
	size_t la = strlen(a), lb = strlen(b), d[33][33];

	if (la > 32 || lb > 32)
		return SIZE_MAX;
	for (size_t i = 0; i <= la; i++)
		d[i][0] = i;
	for (size_t j = 0; j <= lb; j++)
		d[0][j] = j;
	for (size_t i = 1; i <= la; i++)
		for (size_t j = 1; j <= lb; j++) {
			size_t sub = d[i - 1][j - 1] + (a[i - 1] != b[j - 1]);
			size_t del = d[i - 1][j] + 1, ins = d[i][j - 1] + 1;
			size_t v = sub < del ? (sub < ins ? sub : ins) : (del < ins ? del : ins);

			if (i > 1 && j > 1 && a[i - 1] == b[j - 2] && a[i - 2] == b[j - 1] && d[i - 2][j - 2] + 1 < v)
				v = d[i - 2][j - 2] + 1;
			d[i][j] = v;
		}
	return d[la][lb];
}

const char *cmds_suggest(const char *word)
{
	const char *best = NULL;
	size_t best_d = SIZE_MAX;

	for (size_t i = 0; i < NDEFS; i++) {
		size_t d = edit_distance(word, cmd_defs[i].name);

		if (d < best_d) {
			best_d = d;
			best = cmd_defs[i].name;
		}
	}
	/* Close: one edit, or two for names of 5+ letters. */
	return best && (best_d <= 1 || (best_d == 2 && strlen(best) >= 5)) ? best : NULL;
}

void cmds_help(FILE *out)
{
	for (size_t i = 0; i < NDEFS; i++)
		fprintf(out, "  %-8s %s\n", cmd_defs[i].name, cmd_defs[i].summary);
}

/* Value of "--opt V" / "--opt=V" at argv[*i]; NULL when it is another option. */
static const char *value_of(const char *opt, int argc, char **argv, int *i, bool *missing)
{
	size_t n = strlen(opt);

	if (strncmp(argv[*i], opt, n))
		return NULL;
	if (argv[*i][n] == '=')
		return argv[*i] + n + 1;
	if (argv[*i][n])
		return NULL;
	if (*i + 1 >= argc) {
		*missing = true;
		return NULL;
	}
	return argv[++*i];
}

static bool state_known(const char *s)
{
	for (size_t i = 0; i < sizeof(run_state_words) / sizeof(run_state_words[0]); i++)
		if (!strcmp(s, run_state_words[i]))
			return true;
	return false;
}

/* A number option of `hosts add`: 0, or the usage error printed (nonzero). */
static int host_number(const struct cmd_def *d, const char *opt, const char *v, long lo, long hi, long *ret)
{
	char *end;

	errno = 0;
	*ret = strtol(v, &end, 10);
	if (errno || *end || !*v || *ret < lo || *ret > hi)
		return usage_error(d->name, "%s: expected %ld..%ld, got '%s'", opt, lo, hi, v);
	return 0;
}

static int parse(const struct cmd_def *d, int argc, char **argv, struct cmd_args *a)
{
	for (int i = 1; i < argc; i++) {
		const char *arg = argv[i], *v;
		bool missing = false;

		if (!strcmp(arg, "-h") || !strcmp(arg, "--help"))
			a->help = true;
		else if (!strcmp(arg, "-v") || !strcmp(arg, "--verbose"))
			a->verbose = true;
		else if (!strcmp(arg, "--json"))
			a->json = true;
		else if ((v = value_of("--socket", argc, argv, &i, &missing)))
			a->socket = v;
		else if ((v = value_of("--cacert", argc, argv, &i, &missing)))
			a->cacert = v;
		else if (strchr(d->flags, 'J') && (v = value_of("--junit", argc, argv, &i, &missing))) {
			if (!*v)
				return usage_error(d->name, "--junit: expected a file name");
			a->junit = v;
		} else if (strchr(d->flags, 'a') && !strcmp(arg, "--all"))
			a->all = true;
		else if (strchr(d->flags, 'f') && (!strcmp(arg, "-f") || !strcmp(arg, "--follow")))
			a->follow = true;
		else if (strchr(d->flags, 'o') && !strcmp(arg, "--stdout"))
			a->out = true;
		else if (strchr(d->flags, 'o') && !strcmp(arg, "--stderr"))
			a->err = true;
		else if (strchr(d->flags, 'n') && (v = value_of("-n", argc, argv, &i, &missing))) {
			char *end;

			errno = 0;
			a->limit = strtol(v, &end, 10);
			if (errno || *end || !*v || a->limit < 1 || a->limit > PS_MAX_LIMIT)
				return usage_error(d->name, "-n: expected 1..10000, got '%s'", v);
		} else if (strchr(d->flags, 's') && (v = value_of("--state", argc, argv, &i, &missing))) {
			if (!state_known(v))
				return usage_error(d->name, "--state: expected queued, starting, running, done, error, "
							    "timeout, cancelled or lost, got '%s'", v);
			a->state = v;
		} else if (strchr(d->flags, 'l') && (v = value_of("--label", argc, argv, &i, &missing))) {
			if (strchr(v, '=') ? opts_check_label(v) < 0 : !*v || strlen(v) > 63)
				return usage_error(d->name, "--label: expected key or key=value, got '%s'", v);
			a->label = v;
		} else if (strchr(d->flags, 'i') && (v = value_of("--image", argc, argv, &i, &missing))) {
			a->image = v;
		} else if (strchr(d->flags, 'b') && (v = value_of("--before", argc, argv, &i, &missing))) {
			/* Run ids are numbers: paging goes by their order. */
			if (!*v || strlen(v) > 19 || strspn(v, "0123456789") != strlen(v))
				return usage_error(d->name, "--before: expected a run ID (a number), got '%s'", v);
			a->before = v;
		} else if (strchr(d->flags, 'H') && (v = value_of("--capacity", argc, argv, &i, &missing))) {
			if (host_number(d, "--capacity", v, 1, 1024, &a->capacity))
				return UKRUN_EXIT_USAGE;
		} else if (strchr(d->flags, 'H') && (v = value_of("--memory", argc, argv, &i, &missing))) {
			if (host_number(d, "--memory", v, 0, 64L << 20, &a->memory_mb))
				return UKRUN_EXIT_USAGE;
		} else if (strchr(d->flags, 'H') && (v = value_of("--image-quota", argc, argv, &i, &missing))) {
			if (host_number(d, "--image-quota", v, 0, 64L << 20, &a->image_quota_mb))
				return UKRUN_EXIT_USAGE;
		} else if (strchr(d->flags, 'H') && (v = value_of("--label", argc, argv, &i, &missing))) {
			if (a->nhost_labels == sizeof(a->host_labels) / sizeof(a->host_labels[0]))
				return usage_error(d->name, "--label: at most 16 labels");
			a->host_labels[a->nhost_labels++] = v;
		} else if (strchr(d->flags, 'H') && !strcmp(arg, "--drain"))
			a->drain = true;
		else if (missing)
			return usage_error(d->name, "option '%s' needs a value", arg);
		else if (arg[0] == '-' && arg[1])
			return usage_error(d->name, "unknown option '%s'", arg);
		else if (d->needs_id && !a->id)
			a->id = arg;
		else if (d->needs_image && !a->image)
			a->image = arg;
		else if (d->actions && !a->action)
			a->action = arg;
		else if (d->action_optional && a->npos < 2)
			a->pos[a->npos++] = arg;
		else
			return usage_error(d->name, "unexpected argument '%s'", arg);
	}
	if (a->help)
		return 0;
	if (d->needs_id && !a->id)
		return usage_error(d->name, "missing run ID");
	if (d->needs_image && (!a->image || !*a->image))
		return usage_error(d->name, "missing IMAGE");
	if (d->actions && (a->action || !d->action_optional)) {
		char word[32], list[64];
		size_t n = 0;

		/* " start stop status " → "start, stop or status" */
		for (const char *w = d->actions; *w && n < sizeof(list) - 8;) {
			size_t len;

			w += strspn(w, " ");
			len = strcspn(w, " ");
			if (!len)
				break;
			n += (size_t)snprintf(list + n, sizeof(list) - n, "%s%.*s", n ? (w[len + 1] ? ", " : " or ") : "",
					      (int)len, w);
			w += len;
		}
		if (!a->action)
			return usage_error(d->name, "expected %s", list);
		snprintf(word, sizeof(word), " %s ", a->action);
		if (strlen(a->action) > 16 || !strstr(d->actions, word))
			return usage_error(d->name, "expected %s, got '%s'", list, a->action);
	}
	if (d->action_optional) {
		size_t want = !a->action ? 0 : !strcmp(a->action, "add") ? 2 : 1;

		if (a->npos < want)
			return usage_error(d->name, want == 2 && a->npos ? "missing URI" : "missing host NAME");
		if (a->npos > want)
			return usage_error(d->name, "unexpected argument '%s'", a->pos[want]);
		if ((a->capacity >= 0 || a->memory_mb >= 0 || a->image_quota_mb >= 0 || a->nhost_labels) &&
		    (!a->action || strcmp(a->action, "add")))
			return usage_error(d->name, "--capacity, --memory, --image-quota and --label go with 'hosts add'");
		if (a->drain && (!a->action || strcmp(a->action, "rm")))
			return usage_error(d->name, "--drain goes with 'hosts rm'");
	}
	return 0;
}

int cmds_main(int argc, char **argv, const volatile sig_atomic_t *stop)
{
	const struct cmd_def *d = NULL;
	struct cmd_args a = { .capacity = -1, .memory_mb = -1, .image_quota_mb = -1 };
	struct httpc h;
	int r, status;

	for (size_t i = 0; i < NDEFS; i++)
		if (!strcmp(cmd_defs[i].name, argv[0]))
			d = &cmd_defs[i];
	if (!d)
		return usage_error(argv[0], "unknown subcommand");
	status = parse(d, argc, argv, &a);
	if (status)
		return status;
	if (a.out != a.err)
		a.stream = a.out ? "stdout" : "stderr";
	if (a.help) {
		printf("Usage: ukrun %s [--json] [--socket PATH] [--cacert FILE] [-v] %s\n%s.\n", d->name, d->usage, d->summary);
		return 0;
	}
	/* A run id is a number: anything else names no run (not a usage error: the word was understood). */
	if (a.id && !runner_id_valid(a.id)) {
		fprintf(stderr, "ukrun: no run %.64s\n", a.id);
		return EXIT_REFUSED;
	}
	r = autospawn_connect(&h, a.socket, a.cacert, d->spawn, a.verbose, stop);
	if (r < 0) {
		httpc_free(&h);
		return r == -EINTR ? UKRUN_EXIT_CANCELLED : UKRUN_EXIT_INFRA;
	}
	status = d->fn(&h, &a);
	httpc_free(&h);
	if (fflush(stdout) != 0 && !status)
		status = UKRUN_EXIT_INFRA;
	return status;
}
