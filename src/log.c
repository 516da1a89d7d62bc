/* The daemon's own log on stderr. One write(2) per line so lines never interleave. */
#include "herd/log.h"

#include "herd/herd.h"

#include <jansson.h>
#include <stdarg.h>
#include <stdlib.h>
#include <string.h>
#include <sys/time.h>
#include <time.h>
#include <unistd.h>

static enum log_level min_level = LOG_INFO;
static enum log_format format = LOG_TEXT;

static const char *const level_names[LOG_LEVEL_MAX] = {
    [LOG_DEBUG] = "debug", [LOG_INFO] = "info", [LOG_WARN] = "warn", [LOG_ERROR] = "error"};

void log_setup(enum log_level level, enum log_format fmt) {
  min_level = level;
  format = fmt;
}

int log_level_parse(const char *s) {
  for (int i = 0; i < LOG_LEVEL_MAX; i++)
    if (!strcmp(s, level_names[i])) return i;
  return -1;
}

void log_msg(enum log_level lvl, const char *svc, const char *inst, const char *state, const char *fmt, ...) {
  if (lvl < min_level) return;
  char msg[1024];
  va_list ap;
  va_start(ap, fmt);
  vsnprintf(msg, sizeof msg, fmt, ap);
  va_end(ap);

  struct timeval tv;
  gettimeofday(&tv, NULL);
  struct tm tm;
  gmtime_r(&tv.tv_sec, &tm);
  char ts[40];
  size_t n = strftime(ts, sizeof ts, "%Y-%m-%dT%H:%M:%S", &tm);
  snprintf(ts + n, sizeof ts - n, ".%03dZ", (int)(tv.tv_usec / 1000));

  struct buf b = {0};
  if (format == LOG_JSON) {
    json_t *o = json_pack("{s:s,s:s}", "time", ts, "level", level_names[lvl]);
    if (svc) json_object_set_new(o, "service", json_string(svc));
    if (inst) json_object_set_new(o, "instance", json_string(inst));
    if (state) json_object_set_new(o, "state", json_string(state));
    json_object_set_new(o, "msg", json_string(msg));
    char *s = json_dumps(o, JSON_COMPACT);
    buf_printf(&b, "%s\n", s);
    free(s);
    json_decref(o);
  } else {
    buf_printf(&b, "%s %-5s", ts, level_names[lvl]);
    if (svc) buf_printf(&b, " %s", svc);
    if (inst) buf_printf(&b, " [%s]", inst);
    if (state) buf_printf(&b, " %s", state);
    buf_printf(&b, "%s%s\n", (svc || inst || state) ? ": " : " ", msg);
  }
  ssize_t w = write(STDERR_FILENO, b.data, b.len);
  (void)w;
  buf_free(&b);
}
