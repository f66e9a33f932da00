/*
 * log.h — the daemon's log: one line per event, to stderr or to a file (user
 * mode, where runnerd is detached). Levels: error, warn, info, debug.
 */
#ifndef RUNNERD_LOG_H
#define RUNNERD_LOG_H

enum log_level { LOG_ERROR, LOG_WARN, LOG_INFO, LOG_DEBUG };

/* Send the log to `path` (appended, created 0600) instead of stderr. */
int log_open(const char *path);
void log_set_level(enum log_level level);
void log_msg(enum log_level level, const char *fmt, ...) __attribute__((format(printf, 2, 3)));

#define log_error(...) log_msg(LOG_ERROR, __VA_ARGS__)
#define log_warn(...) log_msg(LOG_WARN, __VA_ARGS__)
#define log_info(...) log_msg(LOG_INFO, __VA_ARGS__)
#define log_debug(...) log_msg(LOG_DEBUG, __VA_ARGS__)

#endif
