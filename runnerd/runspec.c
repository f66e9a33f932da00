/* runspec.c — parse and validate a run request (see runspec.h). */
#include "runspec.h"

#include <errno.h>
#include <jansson.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "config.h"
#include "errmsg.h"
#include "image.h"


static int charset_ok(const char *s, const char *extra, size_t max)
{
	size_t n = strlen(s);
	if (n == 0 || n > max)
		return 0;
	for (; *s; s++)
		if (!((*s >= 'a' && *s <= 'z') || (*s >= 'A' && *s <= 'Z') || (*s >= '0' && *s <= '9') ||
		      strchr(extra, *s)))
			return 0;
	return 1;
}

/* A JSON array of strings into a NULL-terminated vector. */
static int strv_from(json_t *arr, const char *field, char ***ret, size_t *ret_n, size_t *bytes,
                     char **ret_err)
{
	if (!arr) {
		*ret = calloc(1, sizeof(char *));
		*ret_n = 0;
		return *ret ? 0 : -ENOMEM;
	}
	if (!json_is_array(arr))
		return errmsg_fail(ret_err, -EINVAL, "'%s' must be an array of strings", field);
	size_t n = json_array_size(arr);
	if (n > RUNSPEC_MAX_ARGS)
		return errmsg_fail(ret_err, -EINVAL, "'%s' has %zu items (at most %d)", field, n, RUNSPEC_MAX_ARGS);
	char **v = calloc(n + 1, sizeof(*v));
	if (!v)
		return -ENOMEM;
	*ret = v;
	*ret_n = 0;
	for (size_t i = 0; i < n; i++) {
		json_t *it = json_array_get(arr, i);
		if (!json_is_string(it))
			return errmsg_fail(ret_err, -EINVAL, "'%s[%zu]' must be a string", field, i);
		const char *s = json_string_value(it);
		*bytes += strlen(s) + 1;
		if (*bytes > RUNSPEC_MAX_ARGS_BYTES)
			return errmsg_fail(ret_err, -EINVAL, "arguments exceed %d bytes in all", RUNSPEC_MAX_ARGS_BYTES);
		v[i] = strdup(s);
		if (!v[i])
			return -ENOMEM;
		(*ret_n)++;
	}
	return 0;
}

static int uint_field(json_t *root, const char *field, unsigned min, unsigned max, unsigned *ret,
                      char **ret_err)
{
	json_t *v = json_object_get(root, field);
	if (!v || json_is_null(v))
		return 0;
	if (!json_is_integer(v) || json_integer_value(v) < min || json_integer_value(v) > max)
		return errmsg_fail(ret_err, -EINVAL, "'%s' must be an integer from %u to %u", field, min, max);
	*ret = (unsigned)json_integer_value(v);
	return 0;
}

static int str_field(json_t *root, const char *field, const char **ret, char **ret_err)
{
	json_t *v = json_object_get(root, field);
	*ret = NULL;
	if (!v || json_is_null(v))
		return 0;
	if (!json_is_string(v))
		return errmsg_fail(ret_err, -EINVAL, "'%s' must be a string", field);
	*ret = json_string_value(v);
	return 0;
}

/* "env": an object of NAME: value strings into "NAME=value" words. Names are C
 * identifiers (what a shell can export); values any bytes but NUL. Counted into
 * the arguments' byte budget: they travel on the same kernel command line. */
static int env_from(json_t *obj, char ***ret, size_t *ret_n, size_t *bytes, char **ret_err)
{
	*ret_n = 0;
	if (obj && !json_is_null(obj) && !json_is_object(obj))
		return errmsg_fail(ret_err, -EINVAL, "'env' must be an object of NAME: \"value\" strings");
	size_t n = obj && json_is_object(obj) ? json_object_size(obj) : 0;
	if (n > RUNSPEC_MAX_ENV)
		return errmsg_fail(ret_err, -EINVAL, "'env' has %zu variables (at most %d)", n, RUNSPEC_MAX_ENV);
	char **v = calloc(n + 1, sizeof(*v));
	if (!v)
		return -ENOMEM;
	*ret = v;
	if (!n)
		return 0;
	const char *key;
	json_t *val;
	json_object_foreach(obj, key, val) {
		size_t klen = strlen(key);
		int ok = klen > 0 && klen <= RUNSPEC_MAX_ENV_NAME && !(key[0] >= '0' && key[0] <= '9');
		/* '-' after the first character: cargo names CARGO_BIN_EXE_<bin> after binaries such as my-tool. */
		ok = ok && key[0] != '-';
		for (const char *p = key; ok && *p; p++)
			ok = (*p >= 'a' && *p <= 'z') || (*p >= 'A' && *p <= 'Z') || (*p >= '0' && *p <= '9') || *p == '_' ||
			     *p == '-';
		if (!ok)
			return errmsg_fail(ret_err, -EINVAL, "env: '%.64s' is not a variable name ([A-Za-z_][A-Za-z0-9_-]*, at most %d bytes)",
			                   key, RUNSPEC_MAX_ENV_NAME);
		if (!json_is_string(val) || json_string_length(val) != strlen(json_string_value(val)) ||
		    json_string_length(val) > RUNSPEC_MAX_ENV_VALUE)
			return errmsg_fail(ret_err, -EINVAL, "env: the value of %s must be a string without NUL of at most %d bytes",
			                   key, RUNSPEC_MAX_ENV_VALUE);
		*bytes += klen + json_string_length(val) + 2;
		if (*bytes > RUNSPEC_MAX_ARGS_BYTES)
			return errmsg_fail(ret_err, -EINVAL, "arguments and environment exceed %d bytes in all", RUNSPEC_MAX_ARGS_BYTES);
		if (asprintf(&v[*ret_n], "%s=%s", key, json_string_value(val)) < 0) {
			v[*ret_n] = NULL;
			return -ENOMEM;
		}
		(*ret_n)++;
	}
	return 0;
}

/* An absolute path without NUL, "." or ".." components, at most PATH_MAX bytes. */
static int abs_path_ok(const char *p, size_t len)
{
	if (len == 0 || len >= 4096 || p[0] != '/' || strlen(p) != len)
		return 0;
	for (const char *c = p; *c; c++) {
		if (c[0] != '/')
			continue;
		if (c[1] == '.' && (c[2] == '/' || c[2] == '\0' || (c[2] == '.' && (c[3] == '/' || c[3] == '\0'))))
			return 0;
	}
	return 1;
}

/* "stdin", "binds", "cwd": what the program reads and sees of the caller's files. */
static int io_fields(json_t *root, struct run_request *req, char **ret_err)
{
	json_t *v = json_object_get(root, "stdin");
	if (v && !json_is_null(v) && !json_is_boolean(v))
		return errmsg_fail(ret_err, -EINVAL, "'stdin' must be true or false");
	req->want_stdin = json_is_true(v);
	size_t bytes = 0;
	int r = strv_from(json_object_get(root, "binds"), "binds", &req->binds, &req->nbinds, &bytes, ret_err);
	if (r < 0)
		return r;
	for (size_t i = 0; i < req->nbinds; i++)
		if (!abs_path_ok(req->binds[i], json_string_length(json_array_get(json_object_get(root, "binds"), i))))
			return errmsg_fail(ret_err, -EINVAL, "--bind %.200s: an absolute directory path is needed "
			                   "(no '.' or '..' parts)", req->binds[i]);
	const char *cwd;
	if ((r = str_field(root, "cwd", &cwd, ret_err)) < 0)
		return r;
	if (cwd && !abs_path_ok(cwd, json_string_length(json_object_get(root, "cwd"))))
		return errmsg_fail(ret_err, -EINVAL, "'cwd' must be an absolute path (no '.' or '..' parts)");
	if (cwd && !(req->cwd = strdup(cwd)))
		return -ENOMEM;
	return 0;
}

static const char *const known_fields[] = {
	"image", "loader", "name", "platform", "args", "uk_params", "memory_mb", "vcpus",
	"timeout_s", "accel", "machine", "success_code", "labels", "host", "driver", "env", "require",
	"priority", "retries", "stdin", "binds", "cwd", NULL,
};

int runspec_parse(const char *text, size_t len, struct run_request *req, char **ret_err)
{
	memset(req, 0, sizeof(*req));
	req->success_code = -1;
	json_error_t jerr;
	json_t *root = json_loadb(text, len, JSON_REJECT_DUPLICATES, &jerr);
	if (!root)
		return errmsg_fail(ret_err, -EINVAL, "malformed JSON: %s (line %d)", jerr.text, jerr.line);
	int r = 0;
	const char *key, *s;
	json_t *val;
	if (!json_is_object(root)) {
		r = errmsg_fail(ret_err, -EINVAL, "the run request must be a JSON object");
		goto cleanup;
	}
	json_object_foreach(root, key, val) {
		int known = 0;
		for (size_t i = 0; known_fields[i]; i++)
			known |= strcmp(key, known_fields[i]) == 0;
		if (!known) {
			r = errmsg_fail(ret_err, -EINVAL, "unknown field '%s'", key);
			goto cleanup;
		}
	}
	if ((r = str_field(root, "image", &s, ret_err)) < 0)
		goto cleanup;
	if (!s || !image_sha256_valid(s)) {
		r = errmsg_fail(ret_err, -EINVAL, "'image' must be the image's sha256 (64 lowercase hex digits)");
		goto cleanup;
	}
	memcpy(req->image, s, 65);
	if ((r = str_field(root, "loader", &s, ret_err)) < 0)
		goto cleanup;
	if (s && *s) {
		if (!image_sha256_valid(s)) {
			r = errmsg_fail(ret_err, -EINVAL, "'loader' must be the loader kernel's sha256");
			goto cleanup;
		}
		memcpy(req->loader, s, 65);
	}
	if ((r = str_field(root, "name", &s, ret_err)) < 0)
		goto cleanup;
	if (s) {
		if (!*s || strlen(s) > 255 || strchr(s, '/') || strchr(s, '\n') || strcmp(s, ".") == 0 ||
		    strcmp(s, "..") == 0) {
			r = errmsg_fail(ret_err, -EINVAL, "'name' must be a file name (not empty, '.' or '..', no '/', at most 255 bytes)");
			goto cleanup;
		}
		req->name = strdup(s);
	}
	if ((r = str_field(root, "platform", &s, ret_err)) < 0)
		goto cleanup;
	if (s && strcmp(s, "auto") != 0) {
		req->platform = drv_platform_from_name(s);
		if (req->platform == DRV_PLATFORM_NONE) {
			r = errmsg_fail(ret_err, -EINVAL, "unknown platform '%s' (qemu, linuxu, xen)", s);
			goto cleanup;
		}
	}
	if ((r = str_field(root, "accel", &s, ret_err)) < 0)
		goto cleanup;
	if (s) {
		if (strcmp(s, "auto") == 0)
			req->accel = DRV_ACCEL_AUTO;
		else if (strcmp(s, "kvm") == 0)
			req->accel = DRV_ACCEL_KVM;
		else if (strcmp(s, "tcg") == 0)
			req->accel = DRV_ACCEL_TCG;
		else {
			r = errmsg_fail(ret_err, -EINVAL, "unknown accel '%s' (auto, kvm, tcg)", s);
			goto cleanup;
		}
	}
	if ((r = str_field(root, "machine", &s, ret_err)) < 0)
		goto cleanup;
	if (s) {
		/* No ',' : a machine name must not smuggle QEMU machine options. */
		if (!charset_ok(s, "._-", 64)) {
			r = errmsg_fail(ret_err, -EINVAL, "'machine' must be a QEMU machine name such as microvm, pc or q35");
			goto cleanup;
		}
		req->machine = strdup(s);
	}
	if ((r = str_field(root, "driver", &s, ret_err)) < 0)
		goto cleanup;
	if (s) {
		if (!charset_ok(s, "_-", 32)) {
			r = errmsg_fail(ret_err, -EINVAL, "'driver' must be a driver name such as qemu, linuxu or libvirt");
			goto cleanup;
		}
		req->driver = strdup(s);
	}
	if ((r = str_field(root, "host", &s, ret_err)) < 0)
		goto cleanup;
	if (s) {
		if (!charset_ok(s, "._-", 63)) {
			r = errmsg_fail(ret_err, -EINVAL, "'host' must be a host name such as local (GET /v1/hosts lists them)");
			goto cleanup;
		}
		req->host = strdup(s);
	}
	size_t bytes = 0;
	if ((r = strv_from(json_object_get(root, "args"), "args", &req->args, &req->nargs, &bytes,
	                   ret_err)) < 0)
		goto cleanup;
	if ((r = strv_from(json_object_get(root, "uk_params"), "uk_params", &req->uk_params,
	                   &req->nuk_params, &bytes, ret_err)) < 0)
		goto cleanup;
	if ((r = env_from(json_object_get(root, "env"), &req->env, &req->nenv, &bytes, ret_err)) < 0)
		goto cleanup;
	if ((r = io_fields(root, req, ret_err)) < 0)
		goto cleanup;
	for (size_t i = 0; i < req->nuk_params; i++) {
		if (!strchr(req->uk_params[i], '=') || strchr(req->uk_params[i], ' ') ||
		    strcmp(req->uk_params[i], "--") == 0) {
			r = errmsg_fail(ret_err, -EINVAL, "'uk_params[%zu]' must look like lib.param=value (no spaces)", i);
			goto cleanup;
		}
	}
	if ((r = uint_field(root, "memory_mb", 1, RUNSPEC_MAX_MEMORY_MB, &req->memory_mb, ret_err)) < 0 ||
	    (r = uint_field(root, "vcpus", 1, RUNSPEC_MAX_VCPUS, &req->vcpus, ret_err)) < 0 ||
	    (r = uint_field(root, "timeout_s", 1, 7 * 86400, &req->timeout_s, ret_err)) < 0)
		goto cleanup;
	json_t *reqv = json_object_get(root, "require");
	if (reqv && !json_is_null(reqv)) {
		size_t i;
		if (!json_is_array(reqv) || json_array_size(reqv) > RUNSPEC_MAX_REQUIRE) {
			r = errmsg_fail(ret_err, -EINVAL, "'require' must be an array of at most %d host labels",
			                RUNSPEC_MAX_REQUIRE);
			goto cleanup;
		}
		req->require = calloc(json_array_size(reqv) + 1, sizeof(char *));
		if (!req->require) {
			r = -ENOMEM;
			goto cleanup;
		}
		json_array_foreach(reqv, i, val) {
			if (!json_is_string(val) || !config_label_ok(json_string_value(val))) {
				r = errmsg_fail(ret_err, -EINVAL, "'require[%zu]' must be a host label: a-z, 0-9, '.', '_', '-', "
				                "1..63 bytes", i);
				goto cleanup;
			}
			if (!(req->require[i] = strdup(json_string_value(val)))) {
				r = -ENOMEM;
				goto cleanup;
			}
		}
	}
	json_t *pv = json_object_get(root, "priority");
	if (pv && !json_is_null(pv)) {
		if (!json_is_integer(pv) || json_integer_value(pv) < -RUNSPEC_MAX_PRIORITY ||
		    json_integer_value(pv) > RUNSPEC_MAX_PRIORITY) {
			r = errmsg_fail(ret_err, -EINVAL, "'priority' must be an integer from %d to %d", -RUNSPEC_MAX_PRIORITY,
			                RUNSPEC_MAX_PRIORITY);
			goto cleanup;
		}
		req->priority = (int)json_integer_value(pv);
	}
	if ((r = uint_field(root, "retries", 0, RUNSPEC_MAX_RETRIES, &req->retries, ret_err)) < 0)
		goto cleanup;
	unsigned sc = 0;
	json_t *scv = json_object_get(root, "success_code");
	if (scv && !json_is_null(scv)) {
		if ((r = uint_field(root, "success_code", 0, 0x7fffffff, &sc, ret_err)) < 0)
			goto cleanup;
		req->success_code = (int)sc;
	}
	json_t *labels = json_object_get(root, "labels");
	if (labels && !json_is_null(labels)) {
		if (!json_is_object(labels) || json_object_size(labels) > RUNSPEC_MAX_LABELS) {
			r = errmsg_fail(ret_err, -EINVAL, "'labels' must be an object of at most %d string values",
			        RUNSPEC_MAX_LABELS);
			goto cleanup;
		}
		json_object_foreach(labels, key, val) {
			if (!charset_ok(key, "._-/", 63) || !json_is_string(val) ||
			    strlen(json_string_value(val)) > 255) {
				r = errmsg_fail(ret_err, -EINVAL, "label '%s': keys are [A-Za-z0-9._/-]{1,63}, values strings "
				        "of at most 255 bytes", key);
				goto cleanup;
			}
		}
		req->labels = json_incref(labels);
	}
	if ((req->name == NULL && json_object_get(root, "name") && !json_is_null(json_object_get(root, "name"))) ||
	    (req->machine == NULL && json_object_get(root, "machine") && !json_is_null(json_object_get(root, "machine"))) ||
	    (req->driver == NULL && json_object_get(root, "driver") && !json_is_null(json_object_get(root, "driver"))) ||
	    (req->host == NULL && json_object_get(root, "host") && !json_is_null(json_object_get(root, "host"))) ||
	    !req->args || !req->uk_params || !req->env || !req->binds)
		r = -ENOMEM;
cleanup:
	json_decref(root);
	if (r < 0)
		runspec_free(req);
	return r;
}

static void strv_free(char **v)
{
	for (size_t i = 0; v && v[i]; i++)
		free(v[i]);
	free(v);
}

void runspec_free(struct run_request *req)
{
	free((char *)req->name);
	free((char *)req->machine);
	free((char *)req->driver);
	free((char *)req->host);
	strv_free(req->args);
	strv_free(req->uk_params);
	strv_free(req->env);
	strv_free(req->binds);
	free((char *)req->cwd);
	strv_free(req->require);
	json_decref(req->labels);
	memset(req, 0, sizeof(*req));
	req->success_code = -1;
}
