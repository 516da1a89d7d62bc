/* The daemon's own log: one line per event on stderr, text or JSON. */
#ifndef HERD_LOG_H
#define HERD_LOG_H

enum log_level { LOG_DEBUG, LOG_INFO, LOG_WARN, LOG_ERROR, LOG_LEVEL_MAX };
enum log_format { LOG_TEXT, LOG_JSON };

/** Set the minimum level and the output format. */
void log_setup(enum log_level level, enum log_format fmt);
/** Parse "debug|info|warn|error"; -1 when unknown. */
int log_level_parse(const char *s);

/**
 * Write one line. `svc` (service name) may be NULL; `inst` is "pid 123" or
 * "job 77" or NULL; `state` describes the state or "A -> B" transition or NULL.
 */
void log_msg(enum log_level lvl, const char *svc, const char *inst, const char *state, const char *fmt, ...)
    __attribute__((format(printf, 5, 6)));

#define log_debug(...) log_msg(LOG_DEBUG, NULL, NULL, NULL, __VA_ARGS__)
#define log_info(...) log_msg(LOG_INFO, NULL, NULL, NULL, __VA_ARGS__)
#define log_warn(...) log_msg(LOG_WARN, NULL, NULL, NULL, __VA_ARGS__)
#define log_error(...) log_msg(LOG_ERROR, NULL, NULL, NULL, __VA_ARGS__)

#endif
