/*
 * runspec.h — the run request (POST /v1/runs body) from JSON to a validated
 * struct run_request: types, bounds and allowed characters checked here,
 * once, so nothing downstream sees an unchecked value. Unknown fields are
 * refused (a typo must not silently change a run).
 */
#ifndef RUNNERD_RUNSPEC_H
#define RUNNERD_RUNSPEC_H

#include <stddef.h>

#include "run.h"

#define RUNSPEC_MAX_ARGS 1024
#define RUNSPEC_MAX_ARGS_BYTES (64 * 1024) /* all arguments + params together */
#define RUNSPEC_MAX_LABELS 64
#define RUNSPEC_MAX_MEMORY_MB (64 * 1024)
#define RUNSPEC_MAX_VCPUS 64
#define RUNSPEC_MAX_REQUIRE 16          /* host labels a run requires */
#define RUNSPEC_MAX_PRIORITY 1000        /* priority: -1000..1000 */
#define RUNSPEC_MAX_RETRIES 3            /* attempts again after a lost host */
#define RUNSPEC_MAX_ENV 256            /* environment variables */
#define RUNSPEC_MAX_ENV_NAME 128       /* bytes of one variable name */
#define RUNSPEC_MAX_ENV_VALUE 4096     /* bytes of one value */

/* Parse `len` bytes of JSON into *ret (owned strings; free with runspec_free).
 * Returns 0 or -EINVAL with *ret_err naming the offending field. */
int runspec_parse(const char *json, size_t len, struct run_request *ret, char **ret_err);
void runspec_free(struct run_request *req);

#endif
