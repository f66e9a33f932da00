/*
 * errmsg.h — building the one-line error messages that functions hand back through
 * `char **ret_err` (STYLE: report an error once, where it is understood). Shared by the
 * drivers and the daemon; part of the small ukrun_detect library, which needs nothing else.
 */
#ifndef UKRUN_ERRMSG_H
#define UKRUN_ERRMSG_H

/* A malloc'd printf-formatted string, or NULL when memory ran out. */
char *errmsg_printf(const char *fmt, ...) __attribute__((format(printf, 1, 2)));

/* Set *ret_err (when ret_err is non-NULL) to the formatted message and return r: the
 * `return errmsg_fail(ret_err, -EINVAL, "...", ...)` idiom. */
int errmsg_fail(char **ret_err, int r, const char *fmt, ...) __attribute__((format(printf, 3, 4)));

#endif
