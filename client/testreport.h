/*
 * testreport.h — a run's parsed tests (GET /v1/runs/ID/tests) as ukrun shows
 * them: a table with the panic message of each failed case, a one-line
 * summary, and JUnit XML (one <testsuite> per run, one <testcase> per test,
 * <failure>/<error>/<skipped> and <system-out>; valid against the Jenkins
 * junit-10 schema, see tests/fixtures/junit/README.md).
 *
 * Pure functions of the two JSON documents, so the unit tests drive them.
 */
#ifndef UKRUN_CLIENT_TESTREPORT_H
#define UKRUN_CLIENT_TESTREPORT_H

#include <stddef.h>
#include <stdio.h>

#include <jansson.h>

/* "libtest: 1 ok, 2 failed, 1 ignored (4 tests)", plus "; crashed during NAME, N not run"
 * when the run crashed mid-way. */
void testreport_summary(const json_t *tests, char *buf, size_t len);

/* Every case with its status; failed and crashed ones with their location and message. */
void testreport_print(FILE *f, const json_t *tests);

/* JUnit XML for `tests` of run record `run` (name, id, exit code, duration). Returns 0 or
 * -EIO when writing failed. */
int testreport_junit(FILE *f, const json_t *tests, const json_t *run);

/* The same into `path` (written beside it, then renamed). Returns 0 or -errno. */
int testreport_junit_file(const char *path, const json_t *tests, const json_t *run);

#endif
