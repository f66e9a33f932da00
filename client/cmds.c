/* ukrun's subcommands: see cmds.h. */
#include "cmds.h"

#include <errno.h>
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
	long limit;    /* ps -n */
	const char *state;
	const char *label;
	const char *id; /* show/logs/cancel */
	bool json;        /* tests --json */
	const char *junit; /* tests --junit FILE */
};

struct cmd_def {
	const char *name;
	const char *usage; /* after "ukrun NAME" */
	const char *flags; /* accepted: a=--all f=-f n=-n s=--state l=--label j=--json J=--junit */
	bool needs_id;
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
	fprintf(stderr, "\nTry 'ukrun --help' for more information.\n");
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

/* Untrusted text into a table cell: control bytes become '?'. */
static void print_cell(const char *s, int width, bool last)
{
	int n = 0;

	for (; s && *s; s++, n++)
		putchar((unsigned char)*s < 0x20 || *s == 0x7f ? '?' : *s);
	if (!last)
		printf("%*s", width - n + 2 > 1 ? width - n + 2 : 1, "");
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

#define COLS 6

/* The table cells of one record; exit_s and dur hold the formatted numbers. */
static void row_cells(const json_t *rec, const char *cells[COLS], char exit_s[24], char dur[32])
{
	const json_t *code = json_object_get(rec, "exit_code");
	const char *platform = json_string_value(json_object_get(rec, "platform"));

	if (json_is_integer(code))
		snprintf(exit_s, 24, "%lld", (long long)json_integer_value(code));
	else
		snprintf(exit_s, 24, "-");
	format_duration(json_object_get(rec, "duration_ms"), dur, 32);
	cells[0] = json_string_value(json_object_get(rec, "id"));
	cells[1] = json_string_value(json_object_get(rec, "state"));
	cells[2] = exit_s;
	cells[3] = platform ? platform : "-";
	cells[4] = dur;
	cells[5] = json_string_value(json_object_get(rec, "name"));
}

static void print_runs(const json_t *runs)
{
	static const char *const heads[COLS] = { "ID", "STATE", "EXIT", "PLATFORM", "DURATION", "NAME" };
	const char *cells[COLS];
	char exit_s[24], dur[32];
	size_t w[COLS], i, c;
	json_t *rec;

	for (c = 0; c < COLS; c++)
		w[c] = strlen(heads[c]);
	json_array_foreach(runs, i, rec) {
		row_cells(rec, cells, exit_s, dur);
		for (c = 0; c < COLS; c++)
			if (cells[c] && strlen(cells[c]) > w[c] && strlen(cells[c]) < 64)
				w[c] = strlen(cells[c]);
	}
	for (c = 0; c < COLS; c++)
		print_cell(heads[c], (int)w[c], c == COLS - 1);
	putchar('\n');
	json_array_foreach(runs, i, rec) {
		row_cells(rec, cells, exit_s, dur);
		for (c = 0; c < COLS; c++)
			print_cell(cells[c] ? cells[c] : "-", (int)w[c], c == COLS - 1);
		putchar('\n');
	}
}

static int cmd_ps(struct httpc *h, const struct cmd_args *a)
{
	long want = a->all ? PS_MAX_LIMIT : a->limit > 0 ? a->limit : PS_DEFAULT_LIMIT;
	json_t *all = json_array();
	char before[80] = "";
	char *state = NULL, *label = NULL;
	int status = 0;

	if (a->state)
		state = curl_easy_escape(h->curl, a->state, 0);
	if (a->label)
		label = curl_easy_escape(h->curl, a->label, 0);
	while ((long)json_array_size(all) < want) {
		long page = want - (long)json_array_size(all) < PS_PAGE ? want - (long)json_array_size(all) : PS_PAGE;
		struct httpc_resp resp;
		json_t *runs, *rec;
		char *path;
		size_t i;

		if (asprintf(&path, "/v1/runs?limit=%ld%s%s%s%s%s%s", page, state ? "&state=" : "", state ? state : "",
			     label ? "&label=" : "", label ? label : "", before[0] ? "&before=" : "", before) < 0) {
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
	if (!status)
		print_runs(all);
	curl_free(state);
	curl_free(label);
	json_decref(all);
	return status;
}

static int cmd_show(struct httpc *h, const struct cmd_args *a)
{
	struct httpc_resp resp;
	char path[128];
	int status;

	snprintf(path, sizeof(path), "/v1/runs/%s", a->id);
	status = get_json(h, path, &resp);
	if (!status) {
		json_dumpf(resp.json, stdout, JSON_INDENT(2) | JSON_PRESERVE_ORDER);
		putchar('\n');
	}
	httpc_resp_clear(&resp);
	return status;
}

static int cmd_logs(struct httpc *h, const struct cmd_args *a)
{
	uint64_t offset = 0;
	int r = runner_console(h, a->id, a->follow, STDOUT_FILENO, &offset);

	switch (r) {
	case 0: return 0;
	case -EINTR: return UKRUN_EXIT_CANCELLED; /* leaves the run alone: logs only watches */
	case -EPIPE: return 128 + SIGPIPE;
	case -ENOENT: return EXIT_REFUSED;
	default: return UKRUN_EXIT_INFRA;
	}
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
	} else if (resp.status == 409) {
		fprintf(stderr, "ukrun: run %s has already ended\n", a->id);
		status = EXIT_REFUSED;
	} else if (resp.status != 200) {
		status = http_error(&resp);
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

static int cmd_version(struct httpc *h, const struct cmd_args *a)
{
	struct httpc_resp resp;
	const char *v;
	json_t *d;
	size_t i;
	int status;

	printf("ukrun %s\n", UKRUN_VERSION);
	fflush(stdout);
	status = get_json(h, "/v1/version", &resp);
	if (!status) {
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

static int cmd_ping(struct httpc *h, const struct cmd_args *a)
{
	struct httpc_resp resp;
	int r = httpc_json(h, "GET", "/healthz", NULL, &resp);
	int status = UKRUN_EXIT_INFRA;

	if (r < 0) {
		fprintf(stderr, "ukrun: runnerd is not running at %s: %s\n", httpc_where(h),
			h->errbuf[0] ? h->errbuf : strerror(-r));
	} else if (resp.status != 200) {
		http_error(&resp);
	} else {
		const char *v = json_string_value(json_object_get(resp.json, "version"));
		json_int_t pid = json_integer_value(json_object_get(resp.json, "pid"));

		printf("runnerd %s is up (pid %lld, %s)\n", v ? v : "?", (long long)pid, httpc_where(h));
		status = 0;
	}
	httpc_resp_clear(&resp);
	return status;
}

static const struct cmd_def cmd_defs[] = {
	{ .name = "ps", .usage = "[--all] [-n N] [--state S] [--label k=v]", .flags = "anls", .spawn = true,
	  .fn = cmd_ps },
	{ .name = "show", .usage = "ID", .flags = "", .needs_id = true, .spawn = true, .fn = cmd_show },
	{ .name = "logs", .usage = "[-f] ID", .flags = "f", .needs_id = true, .spawn = true, .fn = cmd_logs },
	{ .name = "cancel", .usage = "ID", .flags = "", .needs_id = true, .spawn = true, .fn = cmd_cancel },
	{ .name = "tests", .usage = "[--json] [--junit FILE] ID", .flags = "jJ", .needs_id = true, .spawn = true,
	  .fn = cmd_tests },
	{ .name = "version", .usage = "", .flags = "", .spawn = true, .fn = cmd_version },
	{ .name = "ping", .usage = "", .flags = "", .spawn = false, .fn = cmd_ping },
};

bool cmds_is(const char *name)
{
	for (size_t i = 0; i < sizeof(cmd_defs) / sizeof(cmd_defs[0]); i++)
		if (!strcmp(cmd_defs[i].name, name))
			return true;
	return false;
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

static int parse(const struct cmd_def *d, int argc, char **argv, struct cmd_args *a)
{
	for (int i = 1; i < argc; i++) {
		const char *arg = argv[i], *v;
		bool missing = false;

		if (!strcmp(arg, "-h") || !strcmp(arg, "--help"))
			a->help = true;
		else if (!strcmp(arg, "-v") || !strcmp(arg, "--verbose"))
			a->verbose = true;
		else if ((v = value_of("--socket", argc, argv, &i, &missing)))
			a->socket = v;
		else if ((v = value_of("--cacert", argc, argv, &i, &missing)))
			a->cacert = v;
		else if (strchr(d->flags, 'j') && !strcmp(arg, "--json"))
			a->json = true;
		else if (strchr(d->flags, 'J') && (v = value_of("--junit", argc, argv, &i, &missing))) {
			if (!*v)
				return usage_error(d->name, "--junit: expected a file name");
			a->junit = v;
		} else if (strchr(d->flags, 'a') && !strcmp(arg, "--all"))
			a->all = true;
		else if (strchr(d->flags, 'f') && (!strcmp(arg, "-f") || !strcmp(arg, "--follow")))
			a->follow = true;
		else if (strchr(d->flags, 'n') && (v = value_of("-n", argc, argv, &i, &missing))) {
			char *end;

			errno = 0;
			a->limit = strtol(v, &end, 10);
			if (errno || *end || !*v || a->limit < 1 || a->limit > PS_MAX_LIMIT)
				return usage_error(d->name, "-n: expected 1..10000, got '%s'", v);
		} else if (strchr(d->flags, 's') && (v = value_of("--state", argc, argv, &i, &missing)))
			a->state = v;
		else if (strchr(d->flags, 'l') && (v = value_of("--label", argc, argv, &i, &missing))) {
			if (opts_check_label(v) < 0)
				return usage_error(d->name, "--label: expected key=value, got '%s'", v);
			a->label = v;
		} else if (missing)
			return usage_error(d->name, "option '%s' needs a value", arg);
		else if (arg[0] == '-' && arg[1])
			return usage_error(d->name, "unknown option '%s'", arg);
		else if (d->needs_id && !a->id)
			a->id = arg;
		else
			return usage_error(d->name, "unexpected argument '%s'", arg);
	}
	if (a->help)
		return 0;
	if (d->needs_id && !a->id)
		return usage_error(d->name, "missing run ID");
	if (a->id && !runner_id_valid(a->id))
		return usage_error(d->name, "not a run id: '%s'", a->id);
	return 0;
}

int cmds_main(int argc, char **argv, const volatile sig_atomic_t *stop)
{
	const struct cmd_def *d = NULL;
	struct cmd_args a = { 0 };
	struct httpc h;
	int r, status;

	for (size_t i = 0; i < sizeof(cmd_defs) / sizeof(cmd_defs[0]); i++)
		if (!strcmp(cmd_defs[i].name, argv[0]))
			d = &cmd_defs[i];
	if (!d)
		return usage_error(argv[0], "unknown subcommand");
	status = parse(d, argc, argv, &a);
	if (status)
		return status;
	if (a.help) {
		printf("Usage: ukrun %s [--socket PATH] [--cacert FILE] [-v] %s\n", d->name, d->usage);
		return 0;
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
