/* The ukrun command line: see opts.h. */
#include "opts.h"

#include <ctype.h>
#include <errno.h>
#include <limits.h>
#include <stdarg.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <sys/un.h>
#include <unistd.h>

#define LABEL_KEY_MAX 63
#define LABEL_VALUE_MAX 255
#define MACHINE_MAX 63
#define UK_PARAM_MAX 1024
/* runnerd's limits (runnerd/runspec.h), checked here so the message names the option. */
#define MEMORY_MAX_MB (64 * 1024)
#define VCPUS_MAX 64

/* CI metadata recorded as labels of the same name when the variable is set. */
static const char *const ci_vars[] = { "GITHUB_SHA", "GITHUB_RUN_ID", "GITHUB_REPOSITORY", "CI_JOB_ID",
				       "CI_COMMIT_SHA", "CI_PIPELINE_ID", "BUILDKITE_BUILD_ID" };

/* Options that take a value; the rest are flags. */
enum opt_id {
	OPT_PLATFORM,
	OPT_TIMEOUT,
	OPT_MEMORY,
	OPT_VCPUS,
	OPT_ACCEL,
	OPT_MACHINE,
	OPT_DRIVER,
	OPT_HOST,
	OPT_REQUIRE,
	OPT_PRIORITY,
	OPT_RETRIES,
	OPT_SUCCESS_CODE,
	OPT_UK_PARAM,
	OPT_LABEL,
	OPT_ENV,
	OPT_BIND,
	OPT_NO_BIND,
	OPT_CONSOLE,
	OPT_LOADER,
	OPT_JUNIT,
	OPT_SOCKET,
	OPT_CACERT,
	OPT_QUIET,
	OPT_VERBOSE,
	OPT_HELP,
	OPT_VERSION,
};

struct opt_def {
	const char *name; /* long name without "--" */
	char short_name;  /* 0 = none */
	bool has_arg;
	enum opt_id id;
};

static const struct opt_def opt_defs[] = {
	{ .name = "platform", .has_arg = true, .id = OPT_PLATFORM },
	{ .name = "timeout", .has_arg = true, .id = OPT_TIMEOUT },
	{ .name = "memory", .has_arg = true, .id = OPT_MEMORY },
	{ .name = "vcpus", .has_arg = true, .id = OPT_VCPUS },
	{ .name = "accel", .has_arg = true, .id = OPT_ACCEL },
	{ .name = "machine", .has_arg = true, .id = OPT_MACHINE },
	{ .name = "driver", .has_arg = true, .id = OPT_DRIVER },
	{ .name = "host", .has_arg = true, .id = OPT_HOST },
	{ .name = "require", .has_arg = true, .id = OPT_REQUIRE },
	{ .name = "priority", .has_arg = true, .id = OPT_PRIORITY },
	{ .name = "retries", .has_arg = true, .id = OPT_RETRIES },
	{ .name = "success-code", .has_arg = true, .id = OPT_SUCCESS_CODE },
	{ .name = "uk-param", .has_arg = true, .id = OPT_UK_PARAM },
	{ .name = "label", .has_arg = true, .id = OPT_LABEL },
	{ .name = "env", .has_arg = true, .id = OPT_ENV },
	{ .name = "bind", .has_arg = true, .id = OPT_BIND },
	{ .name = "no-bind", .id = OPT_NO_BIND },
	{ .name = "console", .has_arg = true, .id = OPT_CONSOLE },
	{ .name = "loader", .has_arg = true, .id = OPT_LOADER },
	{ .name = "junit", .has_arg = true, .id = OPT_JUNIT },
	{ .name = "socket", .has_arg = true, .id = OPT_SOCKET },
	{ .name = "cacert", .has_arg = true, .id = OPT_CACERT },
	{ .name = "quiet", .short_name = 'q', .id = OPT_QUIET },
	{ .name = "verbose", .short_name = 'v', .id = OPT_VERBOSE },
	{ .name = "help", .short_name = 'h', .id = OPT_HELP },
	{ .name = "version", .short_name = 'V', .id = OPT_VERSION },
};

static int fail(char *err, size_t errlen, const char *fmt, ...) __attribute__((format(printf, 3, 4)));

static int fail(char *err, size_t errlen, const char *fmt, ...)
{
	va_list ap;

	if (err && errlen) {
		va_start(ap, fmt);
		vsnprintf(err, errlen, fmt, ap);
		va_end(ap);
	}
	return -EINVAL;
}

/* Strict decimal: digits only (no sign, no blanks), result in [min, max]. */
static int parse_long(const char *s, long min, long max, long *ret, const char **ret_end)
{
	char *end;
	long v;

	if (!isdigit((unsigned char)s[0]))
		return -EINVAL;
	errno = 0;
	v = strtol(s, &end, 10);
	if (errno || v < min || v > max)
		return -EINVAL;
	if (ret_end)
		*ret_end = end;
	else if (*end)
		return -EINVAL;
	*ret = v;
	return 0;
}

int opts_parse_duration(const char *s, long *ret_s)
{
	const long max = 7L * 24 * 3600;
	const char *end;
	long v, mul = 1;

	if (parse_long(s, 1, max, &v, &end) < 0)
		return -EINVAL;
	if (*end) {
		if (end[1])
			return -EINVAL;
		switch (*end) {
		case 's': mul = 1; break;
		case 'm': mul = 60; break;
		case 'h': mul = 3600; break;
		default: return -EINVAL;
		}
	}
	if (v > max / mul)
		return -EINVAL;
	*ret_s = v * mul;
	return 0;
}

int opts_parse_mib(const char *s, long *ret_mib)
{
	const long max = 1L << 20;
	const char *end;
	long v, mul = 1;

	if (parse_long(s, 1, max, &v, &end) < 0)
		return -EINVAL;
	if (*end) {
		if (end[1])
			return -EINVAL;
		switch (*end) {
		case 'M': case 'm': mul = 1; break;
		case 'G': case 'g': mul = 1024; break;
		default: return -EINVAL;
		}
	}
	if (v > max / mul)
		return -EINVAL;
	*ret_mib = v * mul;
	return 0;
}

int opts_check_label(const char *kv)
{
	const char *eq = strchr(kv, '=');
	size_t klen, vlen;

	if (!eq || eq == kv)
		return -EINVAL;
	klen = (size_t)(eq - kv);
	vlen = strlen(eq + 1);
	if (klen > LABEL_KEY_MAX || vlen > LABEL_VALUE_MAX)
		return -EINVAL;
	for (const char *p = kv; p < eq; p++)
		if (!isalnum((unsigned char)*p) && !strchr("._/-", *p))
			return -EINVAL;
	for (const char *p = eq + 1; *p; p++)
		if ((unsigned char)*p < 0x20 || *p == 0x7f)
			return -EINVAL;
	return 0;
}

static const struct opt_def *find_long(const char *name, size_t len)
{
	for (size_t i = 0; i < sizeof(opt_defs) / sizeof(opt_defs[0]); i++)
		if (strlen(opt_defs[i].name) == len && !strncmp(opt_defs[i].name, name, len))
			return &opt_defs[i];
	return NULL;
}

static const struct opt_def *find_short(char c)
{
	for (size_t i = 0; i < sizeof(opt_defs) / sizeof(opt_defs[0]); i++)
		if (opt_defs[i].short_name == c)
			return &opt_defs[i];
	return NULL;
}

static int apply(struct opts *o, const struct opt_def *d, const char *val, char *err, size_t errlen)
{
	switch (d->id) {
	case OPT_PLATFORM:
		if (strcmp(val, "qemu") && strcmp(val, "linuxu"))
			return fail(err, errlen, "--platform: expected qemu or linuxu, got '%s'", val);
		o->platform = val;
		o->set_platform = true;
		return 0;
	case OPT_TIMEOUT:
		if (opts_parse_duration(val, &o->timeout_s) < 0)
			return fail(err, errlen, "--timeout: expected seconds (or Nm, Nh; at most 7 days), got '%s'", val);
		o->set_timeout = true;
		return 0;
	case OPT_MEMORY:
		if (opts_parse_mib(val, &o->memory_mb) < 0 || o->memory_mb > MEMORY_MAX_MB)
			return fail(err, errlen, "--memory: expected MiB (or NG), at most %d (64G), got '%s'",
				    MEMORY_MAX_MB, val);
		return 0;
	case OPT_VCPUS:
		if (parse_long(val, 1, VCPUS_MAX, &o->vcpus, NULL) < 0)
			return fail(err, errlen, "--vcpus: expected 1..%d, got '%s'", VCPUS_MAX, val);
		return 0;
	case OPT_ACCEL:
		if (strcmp(val, "auto") && strcmp(val, "kvm") && strcmp(val, "tcg"))
			return fail(err, errlen, "--accel: expected auto, kvm or tcg, got '%s'", val);
		o->accel = val;
		return 0;
	case OPT_MACHINE:
		if (!*val || strlen(val) > MACHINE_MAX)
			return fail(err, errlen, "--machine: expected a machine type such as microvm or pc");
		o->machine = val;
		return 0;
	case OPT_DRIVER:
		if (!*val || strlen(val) > 32)
			return fail(err, errlen, "--driver: expected a driver name such as qemu or libvirt");
		o->driver = val;
		return 0;
	case OPT_HOST:
		if (!*val || strlen(val) > 64)
			return fail(err, errlen, "--host: expected a host name such as local");
		o->host = val;
		return 0;
	case OPT_SUCCESS_CODE:
		if (parse_long(val, 0, INT32_MAX, &o->success_code, NULL) < 0)
			return fail(err, errlen, "--success-code: expected a non-negative integer, got '%s'", val);
		return 0;
	case OPT_UK_PARAM:
		if (!*val || strlen(val) > UK_PARAM_MAX)
			return fail(err, errlen, "--uk-param: expected a parameter such as vfs.fstab=...");
		o->uk_params[o->nuk_params++] = val;
		return 0;
	case OPT_REQUIRE: {
		size_t n = strlen(val), ok = n >= 1 && n <= 63;

		for (size_t i = 0; ok && i < n; i++)
			ok = (val[i] >= 'a' && val[i] <= 'z') || (val[i] >= '0' && val[i] <= '9') || strchr("._-", val[i]);
		if (!ok)
			return fail(err, errlen, "--require: expected a host label such as kvm (a-z 0-9 . _ -), got '%.64s'",
				    val);
		o->require[o->nrequire++] = val;
		return 0;
	}
	case OPT_PRIORITY:
		if (parse_long(val, -1000, 1000, &o->priority, NULL) < 0)
			return fail(err, errlen, "--priority: expected an integer from -1000 to 1000, got '%s'", val);
		return 0;
	case OPT_RETRIES:
		if (parse_long(val, 0, 3, &o->retries, NULL) < 0)
			return fail(err, errlen, "--retries: expected 0 to 3 (attempts again after a lost host), got '%s'",
				    val);
		return 0;
	case OPT_LABEL:
		if (opts_check_label(val) < 0)
			return fail(err, errlen, "--label: expected key=value (key of A-Z a-z 0-9 . _ / -), got '%s'",
				    val);
		o->labels[o->nlabels++] = val;
		return 0;
	case OPT_ENV:
		if (opts_check_env(val, true) < 0)
			return fail(err, errlen, "--env: expected NAME=value or NAME (NAME of A-Z a-z 0-9 _ -, not starting "
				    "with a digit), got '%.64s'", val);
		o->envs[o->nenvs++] = val;
		return 0;
	case OPT_BIND:
		if (!*val || strlen(val) >= PATH_MAX)
			return fail(err, errlen, "--bind: expected a directory");
		o->binds[o->nbinds++] = val;
		return 0;
	case OPT_NO_BIND:
		o->no_bind = true;
		return 0;
	case OPT_CONSOLE:
		if (!strcmp(val, "raw"))
			o->console = OPTS_CONSOLE_RAW;
		else if (!strcmp(val, "app"))
			o->console = OPTS_CONSOLE_APP;
		else
			return fail(err, errlen, "--console: expected raw or app, got '%s'", val);
		return 0;
	case OPT_LOADER:
		if (!*val)
			return fail(err, errlen, "--loader: expected the path of an elfloader kernel");
		o->loader = val;
		o->set_loader = true;
		return 0;
	case OPT_JUNIT:
		if (!*val)
			return fail(err, errlen, "--junit: expected a file name");
		o->junit = val;
		return 0;
	case OPT_SOCKET:
		if (!*val)
			return fail(err, errlen, "--socket: expected a path");
		o->socket = val;
		return 0;
	case OPT_CACERT:
		if (!*val)
			return fail(err, errlen, "--cacert: expected a file");
		o->cacert = val;
		return 0;
	case OPT_QUIET:
		o->verbosity = OPTS_QUIET;
		o->set_verbosity = true;
		return 0;
	case OPT_VERBOSE:
		o->verbosity = OPTS_VERBOSE;
		o->set_verbosity = true;
		return 0;
	case OPT_HELP:
		o->help = true;
		return 0;
	case OPT_VERSION:
		o->version = true;
		return 0;
	}
	return -EINVAL;
}

/* One "--name[=value]" at argv[*i]; consumes the next word as value when needed. */
static int parse_long_opt(struct opts *o, int argc, char **argv, int *i, char *err, size_t errlen)
{
	const char *arg = argv[*i] + 2;
	const char *eq = strchr(arg, '=');
	size_t len = eq ? (size_t)(eq - arg) : strlen(arg);
	const struct opt_def *d = find_long(arg, len);
	const char *val = NULL;

	if (!d)
		return fail(err, errlen, "unknown option '--%.*s'", (int)(len > 64 ? 64 : len), arg);
	if (d->has_arg) {
		if (eq)
			val = eq + 1;
		else if (*i + 1 < argc)
			val = argv[++*i];
		else
			return fail(err, errlen, "option '--%s' needs a value", d->name);
	} else if (eq) {
		return fail(err, errlen, "option '--%s' takes no value", d->name);
	}
	return apply(o, d, val, err, errlen);
}

/* A cluster of short flags ("-qv"). */
static int parse_short_opts(struct opts *o, const char *arg, char *err, size_t errlen)
{
	for (const char *p = arg + 1; *p; p++) {
		const struct opt_def *d = find_short(*p);
		int r;

		if (!d)
			return fail(err, errlen, "unknown option '-%c'", isprint((unsigned char)*p) ? *p : '?');
		r = apply(o, d, NULL, err, errlen);
		if (r < 0)
			return r;
	}
	return 0;
}

int opts_parse(struct opts *o, int argc, char **argv, char *err, size_t errlen)
{
	size_t cap = argc > 0 ? (size_t)argc : 1;
	int i, r;

	memset(o, 0, sizeof(*o));
	o->timeout_s = -1;
	o->success_code = -1;
	o->uk_params = calloc(cap, sizeof(*o->uk_params));
	o->labels = calloc(cap, sizeof(*o->labels));
	o->envs = calloc(cap, sizeof(*o->envs));
	o->binds = calloc(cap, sizeof(*o->binds));
	o->require = calloc(cap, sizeof(*o->require));
	if (!o->uk_params || !o->labels || !o->envs || !o->binds || !o->require)
		return -ENOMEM;

	for (i = 1; i < argc; i++) {
		const char *a = argv[i];

		if (!strcmp(a, "--")) {
			i++;
			break;
		}
		if (a[0] != '-' || !a[1])
			break; /* IMAGE ("-" alone is a file name too) */
		r = a[1] == '-' ? parse_long_opt(o, argc, argv, &i, err, errlen) : parse_short_opts(o, a, err, errlen);
		if (r < 0)
			return r;
	}
	if (o->help || o->version)
		return 0;
	if (i >= argc)
		return fail(err, errlen, "missing IMAGE");
	o->image = argv[i];
	if (!*o->image)
		return fail(err, errlen, "IMAGE is empty");
	o->args = argv + i + 1;
	o->nargs = (size_t)(argc - i - 1);
	/* `--uk-param P IMAGE -- ARGS`: that `--` is the kernel command line's separator,
	 * which the driver writes itself; kept, the guest would see a second one. */
	if (o->nuk_params && o->nargs && !strcmp(o->args[0], "--")) {
		o->args++;
		o->nargs--;
	}
	if (o->loader && o->platform && strcmp(o->platform, "qemu"))
		return fail(err, errlen, "--loader runs the program inside a qemu kernel; --platform %s conflicts",
			    o->platform);
	return 0;
}

static const char *env_nonempty(const char *name)
{
	const char *v = getenv(name);

	return v && *v ? v : NULL;
}

/* Add an owned "key=value" label from the environment. */
static int add_env_label(struct opts *o, const char *key, size_t klen, const char *value)
{
	char **grown = realloc(o->env_labels, (o->nenv_labels + 1) * sizeof(*grown));

	if (!grown)
		return -ENOMEM;
	o->env_labels = grown;
	if (asprintf(&o->env_labels[o->nenv_labels], "%.*s=%s", (int)klen, key, value) < 0)
		return -ENOMEM;
	o->nenv_labels++;
	return 0;
}

/* $UKRUN_LABELS: "k=v[,k=v...]"; then the CI variables that are set (skipped when unusable as a label). */
static int env_labels(struct opts *o, char *err, size_t errlen)
{
	const char *v = env_nonempty("UKRUN_LABELS");
	char label[LABEL_KEY_MAX + LABEL_VALUE_MAX + 2];
	int r;

	for (size_t i = 0; i < sizeof(ci_vars) / sizeof(ci_vars[0]); i++) {
		const char *val = env_nonempty(ci_vars[i]);

		if (!val || snprintf(label, sizeof(label), "%s=%s", ci_vars[i], val) >= (int)sizeof(label) ||
		    opts_check_label(label) < 0)
			continue;
		if ((r = add_env_label(o, ci_vars[i], strlen(ci_vars[i]), val)) < 0)
			return r;
	}
	while (v && *v) {
		const char *comma = strchr(v, ',');
		size_t n = comma ? (size_t)(comma - v) : strlen(v);

		if (n >= sizeof(label))
			return fail(err, errlen, "$UKRUN_LABELS: a label is too long (at most %d bytes)",
				    (int)sizeof(label) - 1);
		memcpy(label, v, n);
		label[n] = '\0';
		if (n && opts_check_label(label) < 0)
			return fail(err, errlen, "$UKRUN_LABELS: expected key=value[,key=value...], got '%s'", label);
		if (n && (r = add_env_label(o, label, (size_t)(strchr(label, '=') - label), strchr(label, '=') + 1)) < 0)
			return r;
		v = comma ? comma + 1 : NULL;
	}
	return 0;
}

int opts_apply_env(struct opts *o, char *err, size_t errlen)
{
	const char *v;
	int r;

	if (!o->set_platform && (v = env_nonempty("UKRUN_PLATFORM"))) {
		if (strcmp(v, "qemu") && strcmp(v, "linuxu"))
			return fail(err, errlen, "$UKRUN_PLATFORM: expected qemu or linuxu, got '%s'", v);
		o->platform = v;
	}
	if (!o->set_timeout && (v = env_nonempty("UKRUN_TIMEOUT"))) {
		if (opts_parse_duration(v, &o->timeout_s) < 0)
			return fail(err, errlen, "$UKRUN_TIMEOUT: expected seconds (or Nm, Nh), got '%s'", v);
	}
	if (!o->set_loader && (v = env_nonempty("UKRUN_LOADER")))
		o->loader = v;
	if (o->memory_mb <= 0 && (v = env_nonempty("UKRUN_MEMORY"))) {
		if (opts_parse_mib(v, &o->memory_mb) < 0 || o->memory_mb > MEMORY_MAX_MB)
			return fail(err, errlen, "$UKRUN_MEMORY: expected MiB (or NG), at most %d (64G), got '%s'",
				    MEMORY_MAX_MB, v);
	}
	/* Under cargo (which sets $CARGO for what it runs) or nextest, only failures speak, unless -v. */
	if (!o->set_verbosity && (env_nonempty("NEXTEST") || env_nonempty("CARGO")))
		o->verbosity = OPTS_QUIET;
	if ((r = env_labels(o, err, errlen)) < 0)
		return r;
	if ((v = env_nonempty("UKRUN_ENV"))) {
		char word[1024];
		for (const char *p = v; *p;) {
			size_t n;
			p += strspn(p, " \t\n");
			n = strcspn(p, " \t\n");
			if (!n)
				break;
			snprintf(word, sizeof(word), "%.*s", (int)(n < sizeof(word) ? n : sizeof(word) - 1), p);
			if (n >= sizeof(word) || opts_check_env(word, true) < 0)
				return fail(err, errlen, "$UKRUN_ENV: expected blank-separated NAME=value or NAME words, got '%.64s'",
					    word);
			p += n;
		}
		o->env_list = v;
	}
	if (o->loader && o->platform && strcmp(o->platform, "qemu"))
		return fail(err, errlen, "loader mode runs the program inside a qemu kernel; platform %s conflicts",
			    o->platform);
	return 0;
}

void opts_free(struct opts *o)
{
	free(o->uk_params);
	free(o->labels);
	for (size_t i = 0; i < o->nenv_labels; i++)
		free(o->env_labels[i]);
	free(o->env_labels);
	free(o->envs);
	free(o->binds);
	o->binds = NULL;
	o->nbinds = 0;
	free(o->require);
	o->require = NULL;
	o->nrequire = 0;
	o->uk_params = NULL;
	o->labels = NULL;
	o->env_labels = NULL;
	o->envs = NULL;
	o->nenvs = 0;
	o->nuk_params = o->nlabels = o->nenv_labels = 0;
}

static int set_new(json_t *obj, const char *key, json_t *val)
{
	return val ? json_object_set_new(obj, key, val) : -1;
}

static json_t *string_array(const char *const *v, size_t n)
{
	json_t *a = json_array();

	for (size_t i = 0; a && i < n; i++) {
		if (json_array_append_new(a, json_string(v[i])) < 0) {
			json_decref(a);
			return NULL;
		}
	}
	return a;
}

/* Labels from both lists; `cli` (the command line) after `env`, so --label wins on a clash. */
static json_t *labels_object(const char *const *env, size_t nenv, const char *const *cli, size_t ncli)
{
	json_t *obj = json_object();

	for (size_t i = 0; obj && i < nenv + ncli; i++) {
		const char *kv = i < nenv ? env[i] : cli[i - nenv];
		const char *eq = strchr(kv, '=');
		char key[LABEL_KEY_MAX + 1];

		if (!eq || (size_t)(eq - kv) > LABEL_KEY_MAX)
			continue; /* opts_check_label refused these already */
		memcpy(key, kv, (size_t)(eq - kv));
		key[eq - kv] = '\0';
		if (json_object_set_new(obj, key, json_string(eq + 1)) < 0) {
			json_decref(obj);
			return NULL;
		}
	}
	return obj;
}

json_t *opts_run_spec(const struct opts *o, const char *image_sha, const char *name, const char *loader_sha)
{
	json_t *spec = json_object();
	int r = 0;

	if (!spec)
		return NULL;
	r |= set_new(spec, "image", json_string(image_sha));
	r |= set_new(spec, "name", json_string(name));
	if (o->platform)
		r |= set_new(spec, "platform", json_string(o->platform));
	else if (loader_sha)
		r |= set_new(spec, "platform", json_string("qemu"));
	if (loader_sha)
		r |= set_new(spec, "loader", json_string(loader_sha));
	r |= set_new(spec, "args", string_array((const char *const *)o->args, o->nargs));
	if (o->nuk_params)
		r |= set_new(spec, "uk_params", string_array(o->uk_params, o->nuk_params));
	if (o->memory_mb > 0)
		r |= set_new(spec, "memory_mb", json_integer(o->memory_mb));
	if (o->vcpus > 0)
		r |= set_new(spec, "vcpus", json_integer(o->vcpus));
	if (o->timeout_s > 0)
		r |= set_new(spec, "timeout_s", json_integer(o->timeout_s));
	if (o->accel)
		r |= set_new(spec, "accel", json_string(o->accel));
	if (o->machine)
		r |= set_new(spec, "machine", json_string(o->machine));
	if (o->driver)
		r |= set_new(spec, "driver", json_string(o->driver));
	if (o->host)
		r |= set_new(spec, "host", json_string(o->host));
	if (o->nrequire)
		r |= set_new(spec, "require", string_array(o->require, o->nrequire));
	if (o->priority)
		r |= set_new(spec, "priority", json_integer(o->priority));
	if (o->retries)
		r |= set_new(spec, "retries", json_integer(o->retries));
	if (o->success_code >= 0)
		r |= set_new(spec, "success_code", json_integer(o->success_code));
	if (o->nlabels || o->nenv_labels)
		r |= set_new(spec, "labels", labels_object((const char *const *)o->env_labels, o->nenv_labels,
							   o->labels, o->nlabels));
	{
		extern char **environ;
		json_t *env = opts_env_object(o, environ);

		if (!env)
			r = -1;
		else if (json_object_size(env))
			r |= set_new(spec, "env", env);
		else
			json_decref(env);
	}
	{
		json_t *binds = opts_binds(o);
		char cwd[PATH_MAX];

		if (!binds)
			r = -1;
		else if (json_array_size(binds)) {
			r |= set_new(spec, "binds", binds);
			if (getcwd(cwd, sizeof(cwd)))
				r |= set_new(spec, "cwd", json_string(cwd));
		} else
			json_decref(binds);
	}
	if (o->want_stdin)
		r |= set_new(spec, "stdin", json_true());
	if (r) {
		json_decref(spec);
		return NULL;
	}
	return spec;
}

/* `dir` made absolute against the working directory (canonical when it exists). */
static json_t *abs_dir(const char *dir)
{
	char buf[PATH_MAX], cwd[PATH_MAX];

	if (realpath(dir, buf))
		return json_string(buf);
	if (dir[0] == '/')
		return json_string(dir);
	if (!getcwd(cwd, sizeof(cwd)) || (size_t)snprintf(buf, sizeof(buf), "%s/%s", cwd, dir) >= sizeof(buf))
		return json_string(dir);
	return json_string(buf);
}

static void push_unique(json_t *arr, json_t *s)
{
	size_t i;
	json_t *v;

	if (!s)
		return;
	json_array_foreach(arr, i, v)
		if (json_equal(v, s)) {
			json_decref(s);
			return;
		}
	json_array_append_new(arr, s);
}

json_t *opts_binds(const struct opts *o)
{
	json_t *arr = json_array();
	const char *pkg = getenv("CARGO_MANIFEST_DIR");

	if (!arr)
		return NULL;
	if (!o->no_bind && !o->remote) {
		if (pkg && pkg[0] == '/')
			push_unique(arr, json_string(pkg));
		else
			push_unique(arr, abs_dir("."));
	}
	for (size_t i = 0; i < o->nbinds; i++)
		push_unique(arr, abs_dir(o->binds[i]));
	return arr;
}

int opts_check_env(const char *word, bool bare)
{
	size_t n = strcspn(word, "=");

	if (!n || n > 128 || isdigit((unsigned char)word[0]) || word[0] == '-' || (!word[n] && !bare))
		return -EINVAL;
	for (size_t i = 0; i < n; i++)
		if (!isalnum((unsigned char)word[i]) && word[i] != '_' && word[i] != '-')
			return -EINVAL;
	return 0;
}

bool opts_console_app(const struct opts *o)
{
	if (o->console != OPTS_CONSOLE_AUTO)
		return o->console == OPTS_CONSOLE_APP;
	for (size_t i = 0; i < o->nargs; i++)
		if (!strcmp(o->args[i], "--list"))
			return true;
	return false;
}

/* envp's value of the name that `word` starts with (up to '=' or its end), or NULL. */
static const char *env_lookup(char *const *envp, const char *word, size_t n)
{
	for (size_t i = 0; envp && envp[i]; i++)
		if (!strncmp(envp[i], word, n) && envp[i][n] == '=')
			return envp[i] + n + 1;
	return NULL;
}

/* Add one NAME=value or NAME word unless NAME is already there. */
static int env_add(json_t *obj, const char *word, size_t len, char *const *envp)
{
	size_t n = strcspn(word, "=");
	char name[129];
	const char *val;

	if (n > len)
		n = len;
	if (n == 0 || n >= sizeof(name))
		return 0;
	memcpy(name, word, n);
	name[n] = '\0';
	if (json_object_get(obj, name))
		return 0;
	if (n < len && word[n] == '=') {
		json_t *s = json_stringn(word + n + 1, len - n - 1);
		return s ? json_object_set_new(obj, name, s) : -1;
	}
	val = env_lookup(envp, name, n);
	return val ? json_object_set_new(obj, name, json_string(val)) : 0;
}

static bool forwarded(const char *entry)
{
	static const char *const names[] = { OPTS_FORWARD_ENV };
	size_t n = strcspn(entry, "=");

	for (size_t i = 0; i < sizeof(names) / sizeof(names[0]); i++) {
		size_t k = strlen(names[i]);

		if (names[i][k - 1] == '*' ? n >= k - 1 && !strncmp(entry, names[i], k - 1)
					   : n == k && !strncmp(entry, names[i], k))
			return true;
	}
	return false;
}

json_t *opts_env_object(const struct opts *o, char *const *envp)
{
	json_t *obj = json_object();
	int r = 0;

	if (!obj)
		return NULL;
	for (size_t i = 0; i < o->nenvs; i++)
		r |= env_add(obj, o->envs[i], strlen(o->envs[i]), envp);
	for (const char *p = o->env_list; p && *p;) {
		size_t n;

		p += strspn(p, " \t\n");
		n = strcspn(p, " \t\n");
		if (!n)
			break;
		r |= env_add(obj, p, n, envp);
		p += n;
	}
	for (size_t i = 0; envp && envp[i]; i++)
		if (forwarded(envp[i]))
			r |= env_add(obj, envp[i], strlen(envp[i]), envp);
	if (r) {
		json_decref(obj);
		return NULL;
	}
	return obj;
}

int opts_socket_path(const char *explicit_path, char *buf, size_t len)
{
	const struct sockaddr_un *sun = NULL;
	const size_t sun_max = sizeof(sun->sun_path);
	char cwd[PATH_MAX];
	const char *v;
	int n;

	if (explicit_path && *explicit_path)
		n = snprintf(buf, len, "%s", explicit_path);
	else if ((v = env_nonempty("UKRUN_SOCKET")))
		n = snprintf(buf, len, "%s", v);
	else if ((v = env_nonempty("XDG_RUNTIME_DIR")))
		n = snprintf(buf, len, "%s/ukrun/runnerd.sock", v);
	else
		n = snprintf(buf, len, "/tmp/ukrun-%u/runnerd.sock", (unsigned)getuid());
	if (n < 0 || (size_t)n >= len)
		return -ENAMETOOLONG;
	if (buf[0] != '/') {
		if (!getcwd(cwd, sizeof(cwd)))
			return -errno;
		if (strlen(cwd) + 1 + (size_t)n >= len)
			return -ENAMETOOLONG;
		memmove(buf + strlen(cwd) + 1, buf, (size_t)n + 1);
		memcpy(buf, cwd, strlen(cwd));
		buf[strlen(cwd)] = '/';
	}
	if (strlen(buf) >= sun_max)
		return -ENAMETOOLONG;
	return 0;
}
