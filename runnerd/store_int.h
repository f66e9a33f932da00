/*
 * store_int.h — store.c's internals that tests/unit/test_store.c checks directly: the SQL of
 * GET /v1/runs for each combination of filters (the test asks sqlite for its query plan).
 * Not for other modules.
 */
#ifndef UKRUN_STORE_INT_H
#define UKRUN_STORE_INT_H

#include <stddef.h>

#include "store.h"

/* The variants of store_run_list's query: which filters of a run_filter apply. */
#define LIST_STATE 1u   /* state = */
#define LIST_IMAGE 2u   /* image = */
#define LIST_LABEL 4u   /* a label key */
#define LIST_VALUE 8u   /* with a value (only with LIST_LABEL) */
#define LIST_BEFORE 16u /* id < before */
#define LIST_VARIANTS 32u

/* Writes store_run_list's SQL for filter `f` into `buf` (1 KiB is enough) and returns its variant
 * (LIST_* bits). Parameters: ?1 state, ?2 image, ?3 label key, ?4 label value, ?5 before, ?6 limit. */
unsigned store_list_sql(const struct run_filter *f, char *buf, size_t size);

#endif
