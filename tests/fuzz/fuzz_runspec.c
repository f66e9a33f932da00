/*
 * fuzz_runspec.c — libFuzzer harness for runnerd/runspec.c: the input is a
 * POST /v1/runs body. Beyond the sanitizers it checks runspec's contract: a
 * refusal names its reason, and an accepted request holds only values in the
 * documented bounds (so nothing downstream sees an unchecked value).
 */
#include <errno.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "runspec.h"

#define FAIL(...) (fprintf(stderr, "fuzz_runspec: " __VA_ARGS__), fputc('\n', stderr), abort())

static int is_sha256(const char *s)
{
	if (strlen(s) != 64)
		return 0;
	for (; *s; s++)
		if (!((*s >= '0' && *s <= '9') || (*s >= 'a' && *s <= 'f')))
			return 0;
	return 1;
}

static size_t strv_check(char **v, size_t n)
{
	size_t bytes = 0;
	if (!v || v[n])
		FAIL("vector of %zu not NULL-terminated", n);
	for (size_t i = 0; i < n; i++) {
		if (!v[i])
			FAIL("item %zu of %zu is NULL", i, n);
		bytes += strlen(v[i]) + 1;
	}
	return bytes;
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
	struct run_request req;
	char *err = NULL;
	int r = runspec_parse((const char *)data, size, &req, &err);
	if (r < 0) {
		if (r != -EINVAL && r != -ENOMEM)
			FAIL("unexpected error %d", r);
		if (r == -EINVAL && !err)
			FAIL("refused without a reason");
		free(err);
		return 0;
	}
	if (r != 0 || err)
		FAIL("accepted with r=%d and an error '%s'", r, err ? err : "");
	if (!is_sha256(req.image) || (req.loader[0] && !is_sha256(req.loader)))
		FAIL("image or loader is not a sha256");
	if (req.nargs > RUNSPEC_MAX_ARGS || req.nuk_params > RUNSPEC_MAX_ARGS)
		FAIL("too many arguments accepted");
	size_t bytes = strv_check(req.args, req.nargs) + strv_check(req.uk_params, req.nuk_params);
	if (bytes > RUNSPEC_MAX_ARGS_BYTES)
		FAIL("%zu argument bytes accepted", bytes);
	for (size_t i = 0; i < req.nuk_params; i++)
		if (!strchr(req.uk_params[i], '=') || strchr(req.uk_params[i], ' '))
			FAIL("uk_param '%s' accepted", req.uk_params[i]);
	if (req.memory_mb > RUNSPEC_MAX_MEMORY_MB || req.vcpus > RUNSPEC_MAX_VCPUS || req.timeout_s > 7 * 86400)
		FAIL("memory/vcpus/timeout out of range");
	if (req.name && (strlen(req.name) > 255 || strchr(req.name, '/')))
		FAIL("name '%s' accepted", req.name);
	if (req.machine && (strlen(req.machine) > 64 || strchr(req.machine, ',')))
		FAIL("machine '%s' accepted", req.machine);
	if (req.labels && (!json_is_object(req.labels) || json_object_size(req.labels) > RUNSPEC_MAX_LABELS))
		FAIL("labels accepted");
	runspec_free(&req);
	return 0;
}
