/*
 * Config: JSON files to validated specs. Every error names file:line:column and the
 * field; unknown keys are errors (typo protection). All errors are collected, not
 * just the first, so a user fixes a file in one pass.
 */
#include "herd/cfg.h"
#include "cfg_int.h"
#include "herd/log.h"

#include <dirent.h>
#include <errno.h>
#include <fcntl.h>
#include <grp.h>
#include <pwd.h>
#include <signal.h>
#include <stdarg.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

void cfg_errors_free(struct cfg_errors *e) {
  for (size_t i = 0; i < e->n; i++) {
    free(e->v[i].file);
    free(e->v[i].field);
    free(e->v[i].msg);
  }
  free(e->v);
  memset(e, 0, sizeof *e);
}

char *cfg_error_str(const struct cfg_error *e) {
  if (e->field && *e->field) return xasprintf("%s:%d:%d: %s: %s", e->file, e->line, e->col, e->field, e->msg);
  return xasprintf("%s:%d:%d: %s", e->file, e->line, e->col, e->msg);
}

json_t *cfg_errors_json(const struct cfg_errors *e) {
  json_t *a = json_array();
  for (size_t i = 0; i < e->n; i++) {
    const struct cfg_error *x = &e->v[i];
    json_array_append_new(a, json_pack("{s:s,s:i,s:i,s:s,s:s}", "file", x->file, "line", x->line, "column", x->col,
                                       "field", x->field ? x->field : "", "message", x->msg));
  }
  return a;
}

void spec_set_add(struct spec_set *s, struct spec *sp) {
  if (s->n == s->cap) {
    s->cap = s->cap ? s->cap * 2 : 16;
    s->v = xrealloc(s->v, s->cap * sizeof *s->v);
  }
  s->v[s->n++] = sp;
}

void spec_set_free(struct spec_set *s) {
  for (size_t i = 0; i < s->n; i++) spec_free(s->v[i]);
  free(s->v);
  free(s->byname);
  for (size_t i = 0; i < s->nclusters; i++) cluster_spec_free(s->clusters[i]);
  free(s->clusters);
  for (size_t i = 0; i < s->nhosts; i++) host_spec_free(s->hosts[i]);
  free(s->hosts);
  for (size_t i = 0; i < s->nqueues; i++) free(s->queues[i].name);
  free(s->queues);
  memset(s, 0, sizeof *s);
}

/* Where `field` is in this document (see jpos_lookup). */
void cfgp_pos(struct pctx *c, const char *field, bool at_key, int *line, int *col) {
  if (!c->jp) c->jp = jpos_index(c->text, c->len);
  jpos_lookup(c->jp, field, at_key, line, col);
}

static void pctx_done(struct pctx *c) {
  jpos_free(c->jp);
  c->jp = NULL;
}

static void cfg_error_vadd(struct cfg_errors *e, const char *file, int line, int col, const char *field,
                           const char *fmt, va_list ap) {
  if (e->n == e->cap) {
    e->cap = e->cap ? e->cap * 2 : 8;
    e->v = xrealloc(e->v, e->cap * sizeof *e->v);
  }
  struct cfg_error *x = &e->v[e->n++];
  x->file = xstrdup(file ? file : "?");
  x->line = line > 0 ? line : 1;
  x->col = col > 0 ? col : 1;
  x->field = xstrdup(field);
  if (vasprintf(&x->msg, fmt, ap) < 0) abort();
}

void cfg_error_add(struct cfg_errors *e, const char *file, int line, int col, const char *field, const char *fmt, ...) {
  va_list ap;
  va_start(ap, fmt);
  cfg_error_vadd(e, file, line, col, field, fmt, ap);
  va_end(ap);
}

static void verr(struct pctx *c, const char *field, bool at_key, const char *fmt, va_list ap) {
  int line, col;
  cfgp_pos(c, field, at_key, &line, &col);
  cfg_error_vadd(c->errs, c->file, line, col, field, fmt, ap);
  c->nerr++;
}

void cfgp_err_at(struct pctx *c, const char *field, const char *fmt, ...) {
  va_list ap;
  va_start(ap, fmt);
  verr(c, field, false, fmt, ap);
  va_end(ap);
}

void cfgp_err_at_key(struct pctx *c, const char *field, const char *fmt, ...) {
  va_list ap;
  va_start(ap, fmt);
  verr(c, field, true, fmt, ap);
  va_end(ap);
}

const char *cfgp_type_name(const json_t *v) {
  switch (json_typeof(v)) {
  case JSON_OBJECT: return "an object";
  case JSON_ARRAY: return "an array";
  case JSON_STRING: return "a string";
  case JSON_INTEGER:
  case JSON_REAL: return "a number";
  case JSON_TRUE:
  case JSON_FALSE: return "a boolean";
  default: return "null";
  }
}

/* A field path: prefix + "." + key, built on the stack. */
/* A field path: prefix + "." + key, truncated to fit (paths are short in practice). */
char *cfgp_field_join(char *buf, size_t len, const char *prefix, const char *key) {
  size_t n = 0;
  for (const char *p = prefix; *p && n + 1 < len; p++) buf[n++] = *p;
  if (*prefix && n + 1 < len) buf[n++] = '.';
  for (const char *p = key; *p && n + 1 < len; p++) buf[n++] = *p;
  buf[n] = '\0';
  return buf;
}

/* A duration past CFG_DURATION_MAX is an error, not a timer that overflows (a grace of
 * 1e300 s once became a SIGKILL at once). */
int cfgp_duration_in_range(struct pctx *c, const char *field, double d, double *out) {
  if (d < 0) {
    cfgp_err_at(c, field, "a duration cannot be negative");
    return -1;
  }
  if (!(d <= CFG_DURATION_MAX)) {
    cfgp_err_at(c, field, "too long: a duration may be at most %gd (%g seconds)", CFG_DURATION_MAX / 86400,
                CFG_DURATION_MAX);
    return -1;
  }
  *out = d;
  return 0;
}

int cfgp_get_duration(struct pctx *c, const char *field, json_t *v, double *out) {
  if (json_is_number(v)) return cfgp_duration_in_range(c, field, json_number_value(v), out);
  double d;
  if (json_is_string(v) && duration_parse(json_string_value(v), &d) == 0)
    return cfgp_duration_in_range(c, field, d, out);
  cfgp_err_at(c, field,
              "expected a duration (seconds, or a string such as \"250ms\", \"5s\", \"2m\", \"1h\"), got %s%s%s%s",
              cfgp_type_name(v), json_is_string(v) ? " \"" : "", json_is_string(v) ? json_string_value(v) : "",
              json_is_string(v) ? "\"" : "");
  return -1;
}

int cfgp_get_string(struct pctx *c, const char *field, json_t *v, char **out) {
  if (!json_is_string(v)) {
    cfgp_err_at(c, field, "expected a string, got %s", cfgp_type_name(v));
    return -1;
  }
  free(*out);
  *out = xstrdup(json_string_value(v));
  return 0;
}

/* One of a fixed set of strings: returns its index, or -1 after an error listing them. */
int cfgp_get_enum(struct pctx *c, const char *field, json_t *v, const char *const *names, int n) {
  const char *s = json_string_value(v);
  for (int i = 0; s && i < n; i++)
    if (!strcmp(s, names[i])) return i;
  struct buf want = {0};
  for (int i = 0; i < n; i++) buf_printf(&want, "%s\"%s\"", i == 0 ? "" : i == n - 1 ? " or " : ", ", names[i]);
  cfgp_err_at(c, field, "expected %s", want.data);
  buf_free(&want);
  return -1;
}

void cfgp_get_bool(struct pctx *c, const char *field, json_t *v, bool *out) {
  if (!json_is_boolean(v))
    cfgp_err_at(c, field, "expected true or false");
  else
    *out = json_is_true(v);
}

int cfgp_get_number(struct pctx *c, const char *field, json_t *v, double lo, double hi, double *out) {
  if (!json_is_number(v) || json_number_value(v) < lo || json_number_value(v) > hi) {
    cfgp_err_at(c, field, "expected a number from %g to %g", lo, hi);
    return -1;
  }
  *out = json_number_value(v);
  return 0;
}

/* A count: a JSON integer (1.5 files or checks mean nothing), lo..hi. Returns 0 when set. */
int cfgp_get_int(struct pctx *c, const char *field, json_t *v, int lo, int hi, int *out) {
  if (!json_is_integer(v) || json_integer_value(v) < lo || json_integer_value(v) > hi) {
    cfgp_err_at(c, field, "expected an integer from %d to %d", lo, hi);
    return -1;
  }
  *out = (int)json_integer_value(v);
  return 0;
}

char **cfgp_get_strv(struct pctx *c, const char *field, json_t *v, bool nonempty) {
  if (!json_is_array(v)) {
    cfgp_err_at(c, field, "expected an array of strings, got %s", cfgp_type_name(v));
    return NULL;
  }
  if (nonempty && json_array_size(v) == 0) {
    cfgp_err_at(c, field, "must not be empty");
    return NULL;
  }
  char **out = xcalloc(json_array_size(v) + 1, sizeof *out);
  size_t i;
  json_t *x;
  json_array_foreach(v, i, x) {
    if (!json_is_string(x)) {
      char f[256];
      snprintf(f, sizeof f, "%s[%zu]", field, i);
      cfgp_err_at(c, f, "expected a string, got %s", cfgp_type_name(x));
      for (size_t k = 0; k < i; k++) free(out[k]);
      free(out);
      return NULL;
    }
    out[i] = xstrdup(json_string_value(x));
  }
  return out;
}

/* An argv: a non-empty array of strings whose first (the program) is not empty. */
char **cfgp_get_argv(struct pctx *c, const char *field, json_t *v) {
  char **argv = cfgp_get_strv(c, field, v, true);
  if (argv && !argv[0][0]) {
    char f[300];
    snprintf(f, sizeof f, "%s[0]", field);
    cfgp_err_at(c, f, "the program to run is empty: give its name or path, such as \"/usr/bin/python3\"");
  }
  return argv;
}

/* Reject keys not in `allowed`, naming the nearest known key when there is one. */
void cfgp_check_keys(struct pctx *c, const char *prefix, json_t *obj, const char *const *allowed) {
  const char *key;
  json_t *v;
  json_object_foreach(obj, key, v) {
    bool ok = false;
    for (const char *const *a = allowed; *a; a++)
      if (!strcmp(*a, key)) ok = true;
    if (ok) continue;
    char f[256];
    struct buf known = {0};
    for (const char *const *a = allowed; *a; a++) buf_printf(&known, "%s%s", a == allowed ? "" : ", ", *a);
    cfgp_err_at_key(c, FIELD(f, prefix, key), "unknown key (known keys: %s)", known.data);
    buf_free(&known);
  }
}

static const char *const check_keys_http[] = {"type",
                                              "url",
                                              "path",
                                              "method",
                                              "status",
                                              "headers",
                                              "body_contains",
                                              "ca_file",
                                              "insecure",
                                              "interval",
                                              "timeout",
                                              "start_period",
                                              "failure_threshold",
                                              "success_threshold",
                                              "on_unhealthy",
                                              "unhealthy_grace",
                                              NULL};
static const char *const check_keys_tcp[] = {"type",
                                             "host",
                                             "port",
                                             "interval",
                                             "timeout",
                                             "start_period",
                                             "failure_threshold",
                                             "success_threshold",
                                             "on_unhealthy",
                                             "unhealthy_grace",
                                             NULL};
static const char *const check_keys_exec[] = {"type",
                                              "command",
                                              "host",
                                              "interval",
                                              "timeout",
                                              "start_period",
                                              "failure_threshold",
                                              "success_threshold",
                                              "on_unhealthy",
                                              "unhealthy_grace",
                                              NULL};
static const char *const endpoint_keys[] = {"protocol", "host", "port", "allocate", "port_range", "local_port", NULL};
static const char *const dep_keys[] = {"service", "condition", NULL};
static const char *const service_keys[] = {"name",
                                           "command",
                                           "env",
                                           "cwd",
                                           "user",
                                           "group",
                                           "restart",
                                           "backoff",
                                           "stop",
                                           "start_timeout",
                                           "ready_after",
                                           "tags",
                                           "log",
                                           "endpoint",
                                           "check",
                                           "depends_on",
                                           "restart_with_dependency",
                                           "ssh",
                                           "backend",
                                           "cluster",
                                           "script",
                                           "partition",
                                           "time_limit",
                                           "nodes",
                                           "cpus_per_task",
                                           "memory",
                                           "gres",
                                           "account",
                                           "qos",
                                           "output",
                                           "error",
                                           "container",
                                           "queue_timeout",
                                           "ready",
                                           "watchdog",
                                           "job",
                                           NULL};
/* Keys that only mean something to the Slurm backend. */
static const char *const slurm_only_keys[] = {"cluster",       "script", "partition", "time_limit",    "nodes",
                                              "cpus_per_task", "memory", "gres",      "account",       "qos",
                                              "output",        "error",  "container", "queue_timeout", NULL};
static const char *const backoff_keys[] = {"initial", "max", "multiplier", "jitter", "reset_after", NULL};
static const char *const stop_keys[] = {"signal", "grace", NULL};
static const char *const log_keys[] = {"max_size", "keep", NULL};

static void parse_backoff(struct pctx *c, const char *prefix, json_t *o, struct spec *s) {
  char f[256];
  if (!json_is_object(o)) {
    cfgp_err_at(c, prefix, "expected an object, got %s", cfgp_type_name(o));
    return;
  }
  cfgp_check_keys(c, prefix, o, backoff_keys);
  json_t *v;
  if ((v = json_object_get(o, "initial"))) cfgp_get_duration(c, FIELD(f, prefix, "initial"), v, &s->backoff.initial);
  if ((v = json_object_get(o, "max"))) cfgp_get_duration(c, FIELD(f, prefix, "max"), v, &s->backoff.max);
  if ((v = json_object_get(o, "multiplier")))
    cfgp_get_number(c, FIELD(f, prefix, "multiplier"), v, 1, 100, &s->backoff.multiplier);
  if ((v = json_object_get(o, "jitter"))) cfgp_get_number(c, FIELD(f, prefix, "jitter"), v, 0, 1, &s->backoff.jitter);
  if ((v = json_object_get(o, "reset_after")))
    cfgp_get_duration(c, FIELD(f, prefix, "reset_after"), v, &s->backoff.reset_after);
  if (s->backoff.max < s->backoff.initial)
    cfgp_err_at(c, FIELD(f, prefix, "max"), "max (%gs) is less than initial (%gs)", s->backoff.max, s->backoff.initial);
}

static void parse_stop(struct pctx *c, const char *prefix, json_t *o, struct spec *s) {
  char f[256];
  if (!json_is_object(o)) {
    cfgp_err_at(c, prefix, "expected an object, got %s", cfgp_type_name(o));
    return;
  }
  cfgp_check_keys(c, prefix, o, stop_keys);
  json_t *v;
  if ((v = json_object_get(o, "signal"))) {
    int sig = -1;
    if (json_is_string(v))
      sig = signal_parse(json_string_value(v));
    else if (json_is_integer(v) && json_integer_value(v) > 0 && json_integer_value(v) < 65)
      sig = (int)json_integer_value(v);
    if (sig <= 0)
      cfgp_err_at(c, FIELD(f, prefix, "signal"), "expected a signal name such as \"TERM\" or \"INT\"");
    else
      s->stop_signal = sig;
  }
  if ((v = json_object_get(o, "grace"))) cfgp_get_duration(c, FIELD(f, prefix, "grace"), v, &s->stop_grace);
}

static void parse_log(struct pctx *c, const char *prefix, json_t *o, struct spec *s) {
  char f[256];
  if (!json_is_object(o)) {
    cfgp_err_at(c, prefix, "expected an object, got %s", cfgp_type_name(o));
    return;
  }
  cfgp_check_keys(c, prefix, o, log_keys);
  json_t *v;
  if ((v = json_object_get(o, "max_size"))) {
    uint64_t sz = 0;
    int bad = 0;
    if (json_is_integer(v) && json_integer_value(v) > 0)
      sz = (uint64_t)json_integer_value(v);
    else if (json_is_string(v))
      bad = size_parse(json_string_value(v), &sz);
    else
      bad = 1;
    if (bad || sz < 1024)
      cfgp_err_at(c, FIELD(f, prefix, "max_size"),
                  "expected a size of at least 1024 bytes (a number of bytes, or \"512K\", \"10M\", \"1G\")");
    else
      s->log_max_size = sz;
  }
  if ((v = json_object_get(o, "keep"))) {
    int k;
    if (cfgp_get_int(c, FIELD(f, prefix, "keep"), v, 0, 100, &k) == 0) s->log_keep = (unsigned)k;
  }
}

int cfgp_get_port(struct pctx *c, const char *field, json_t *v, int *out) {
  if (!json_is_integer(v) || json_integer_value(v) < 1 || json_integer_value(v) > 65535) {
    cfgp_err_at(c, field, "expected a port number from 1 to 65535");
    return -1;
  }
  *out = (int)json_integer_value(v);
  return 0;
}

static void parse_status(struct pctx *c, const char *field, json_t *v, struct check_spec *k) {
  if (json_is_integer(v) && json_integer_value(v) >= 100 && json_integer_value(v) <= 599) {
    k->status_lo = k->status_hi = (int)json_integer_value(v);
    return;
  }
  int lo, hi, n = 0;
  if (json_is_string(v) && sscanf(json_string_value(v), "%d-%d%n", &lo, &hi, &n) == 2 &&
      n == (int)strlen(json_string_value(v)) && lo >= 100 && hi <= 599 && lo <= hi) {
    k->status_lo = lo;
    k->status_hi = hi;
    return;
  }
  cfgp_err_at(c, field, "expected a status code such as 200 or a range such as \"200-399\"");
}

static void parse_check(struct pctx *c, const char *prefix, json_t *o, struct spec *s) {
  char f[256];
  if (!json_is_object(o)) {
    cfgp_err_at(c, prefix, "expected an object, got %s", cfgp_type_name(o));
    return;
  }
  struct check_spec *k = xcalloc(1, sizeof *k);
  s->check = k;
  k->interval = 5;
  k->timeout = 2;
  k->failure_threshold = 3;
  k->success_threshold = 1;
  k->restart_on_unhealthy = true;
  k->unhealthy_grace = 0;
  k->status_lo = 200;
  k->status_hi = 399;
  json_t *v = json_object_get(o, "type");
  if (!v) {
    cfgp_err_at(c, prefix, "missing required key \"type\" (\"http\", \"tcp\" or \"exec\")");
    return;
  }
  static const char *const types[] = {[CHECK_HTTP] = "http", [CHECK_TCP] = "tcp", [CHECK_EXEC] = "exec"};
  int ti = cfgp_get_enum(c, FIELD(f, prefix, "type"), v, types, CHECK__MAX);
  if (ti < 0) return;
  k->type = (enum check_type)ti;
  cfgp_check_keys(c, prefix, o,
                  k->type == CHECK_HTTP  ? check_keys_http
                  : k->type == CHECK_TCP ? check_keys_tcp
                                         : check_keys_exec);
  if ((v = json_object_get(o, "interval"))) {
    if (cfgp_get_duration(c, FIELD(f, prefix, "interval"), v, &k->interval) == 0 && k->interval < 0.05)
      cfgp_err_at(c, FIELD(f, prefix, "interval"), "must be at least 50ms");
  }
  if ((v = json_object_get(o, "timeout"))) {
    if (cfgp_get_duration(c, FIELD(f, prefix, "timeout"), v, &k->timeout) == 0 && k->timeout < 0.001)
      cfgp_err_at(c, FIELD(f, prefix, "timeout"), "must be at least 1ms");
  }
  if ((v = json_object_get(o, "start_period")))
    cfgp_get_duration(c, FIELD(f, prefix, "start_period"), v, &s->start_period);
  int num;
  if ((v = json_object_get(o, "failure_threshold")) &&
      cfgp_get_int(c, FIELD(f, prefix, "failure_threshold"), v, 1, 1000, &num) == 0)
    k->failure_threshold = (unsigned)num;
  if ((v = json_object_get(o, "success_threshold")) &&
      cfgp_get_int(c, FIELD(f, prefix, "success_threshold"), v, 1, 1000, &num) == 0)
    k->success_threshold = (unsigned)num;
  static const char *const on_unhealthy[] = {"keep", "restart"};
  int ui;
  if ((v = json_object_get(o, "on_unhealthy")) &&
      (ui = cfgp_get_enum(c, FIELD(f, prefix, "on_unhealthy"), v, on_unhealthy, 2)) >= 0)
    k->restart_on_unhealthy = ui == 1;
  if ((v = json_object_get(o, "unhealthy_grace")))
    cfgp_get_duration(c, FIELD(f, prefix, "unhealthy_grace"), v, &k->unhealthy_grace);

  switch (k->type) {
  case CHECK_HTTP:
    if ((v = json_object_get(o, "url"))) {
      if (cfgp_get_string(c, FIELD(f, prefix, "url"), v, &k->url) == 0 && strncmp(k->url, "http://", 7) &&
          strncmp(k->url, "https://", 8))
        cfgp_err_at(c, FIELD(f, prefix, "url"), "must start with http:// or https://");
    }
    if ((v = json_object_get(o, "path"))) {
      if (cfgp_get_string(c, FIELD(f, prefix, "path"), v, &k->path) == 0 && k->path[0] != '/')
        cfgp_err_at(c, FIELD(f, prefix, "path"), "must start with /");
    }
    if (k->url && k->path) cfgp_err_at(c, FIELD(f, prefix, "path"), "give either url or path, not both");
    if (!k->url && !k->path) cfgp_err_at(c, prefix, "an http check needs \"url\", or \"path\" with an endpoint");
    k->method = xstrdup("GET");
    if ((v = json_object_get(o, "method")) && cfgp_get_string(c, FIELD(f, prefix, "method"), v, &k->method) == 0 &&
        strcmp(k->method, "GET") && strcmp(k->method, "HEAD"))
      cfgp_err_at(c, FIELD(f, prefix, "method"), "expected \"GET\" or \"HEAD\"");
    if ((v = json_object_get(o, "status"))) parse_status(c, FIELD(f, prefix, "status"), v, k);
    if ((v = json_object_get(o, "headers"))) {
      if (!json_is_object(v)) {
        cfgp_err_at(c, FIELD(f, prefix, "headers"), "expected an object of strings");
      } else {
        k->headers = xcalloc(json_object_size(v) + 1, sizeof *k->headers);
        size_t n = 0;
        const char *key;
        json_t *x;
        json_object_foreach(v, key, x) {
          if (!json_is_string(x) || strpbrk(key, ":\r\n") || strpbrk(json_string_value(x), "\r\n")) {
            char hf[300];
            snprintf(hf, sizeof hf, "%s.headers.%s", prefix, key);
            cfgp_err_at(c, hf, "expected a header value (a string without line breaks)");
            continue;
          }
          k->headers[n++] = xasprintf("%s: %s", key, json_string_value(x));
        }
      }
    }
    if ((v = json_object_get(o, "body_contains")))
      cfgp_get_string(c, FIELD(f, prefix, "body_contains"), v, &k->body_contains);
    if ((v = json_object_get(o, "ca_file"))) {
      if (cfgp_get_string(c, FIELD(f, prefix, "ca_file"), v, &k->ca_file) == 0 && access(k->ca_file, R_OK) < 0)
        cfgp_err_at(c, FIELD(f, prefix, "ca_file"), "cannot read %s: %s", k->ca_file, strerror(errno));
    }
    if ((v = json_object_get(o, "insecure"))) cfgp_get_bool(c, FIELD(f, prefix, "insecure"), v, &k->insecure);
    break;
  case CHECK_TCP:
    if ((v = json_object_get(o, "host"))) cfgp_get_string(c, FIELD(f, prefix, "host"), v, &k->host);
    if ((v = json_object_get(o, "port"))) cfgp_get_port(c, FIELD(f, prefix, "port"), v, &k->port);
    break;
  case CHECK_EXEC:
    if (!(v = json_object_get(o, "command")))
      cfgp_err_at(c, prefix, "an exec check needs \"command\" (an argv array)");
    else
      k->command = cfgp_get_argv(c, FIELD(f, prefix, "command"), v);
    if ((v = json_object_get(o, "host")) && cfgp_get_string(c, FIELD(f, prefix, "host"), v, &k->ssh_host) == 0) {
      if (!name_valid(k->ssh_host))
        cfgp_err_at(c, FIELD(f, prefix, "host"), "expected the name of a host in \"hosts\", got \"%s\"", k->ssh_host);
      cfgp_pos(c, FIELD(f, prefix, "host"), false, &k->ssh_line, &k->ssh_col);
    }
    break;
  case CHECK__MAX: break;
  }
}

static void parse_endpoint(struct pctx *c, const char *prefix, json_t *o, struct spec *s) {
  char f[256];
  if (!json_is_object(o)) {
    cfgp_err_at(c, prefix, "expected an object, got %s", cfgp_type_name(o));
    return;
  }
  cfgp_check_keys(c, prefix, o, endpoint_keys);
  struct endpoint_spec *e = &s->endpoint;
  e->set = true;
  e->protocol = PROTO_TCP;
  e->range_lo = 20000;
  e->range_hi = 29999;
  json_t *v;
  static const char *const protos[] = {[PROTO_TCP] = "tcp", [PROTO_HTTP] = "http", [PROTO_HTTPS] = "https"};
  int pi;
  if ((v = json_object_get(o, "protocol")) && (pi = cfgp_get_enum(c, FIELD(f, prefix, "protocol"), v, protos, 3)) >= 0)
    e->protocol = (enum endpoint_proto)pi;
  if ((v = json_object_get(o, "host")))
    cfgp_get_string(c, FIELD(f, prefix, "host"), v, &e->host);
  else
    e->host = xstrdup(s->backend == BACKEND_SLURM ? "" : "127.0.0.1"); /* slurm: the job's node */
  if ((v = json_object_get(o, "port"))) cfgp_get_port(c, FIELD(f, prefix, "port"), v, &e->port);
  if ((v = json_object_get(o, "allocate"))) cfgp_get_bool(c, FIELD(f, prefix, "allocate"), v, &e->allocate);
  if ((v = json_object_get(o, "port_range"))) {
    if (!json_is_array(v) || json_array_size(v) != 2 || !json_is_integer(json_array_get(v, 0)) ||
        !json_is_integer(json_array_get(v, 1)) || json_integer_value(json_array_get(v, 0)) < 1 ||
        json_integer_value(json_array_get(v, 1)) > 65535 ||
        json_integer_value(json_array_get(v, 0)) > json_integer_value(json_array_get(v, 1)))
      cfgp_err_at(c, FIELD(f, prefix, "port_range"), "expected [low, high] with 1 <= low <= high <= 65535");
    else {
      e->range_lo = (int)json_integer_value(json_array_get(v, 0));
      e->range_hi = (int)json_integer_value(json_array_get(v, 1));
    }
  }
  if ((v = json_object_get(o, "local_port"))) cfgp_get_port(c, FIELD(f, prefix, "local_port"), v, &e->local_port);
  if (!e->port) e->allocate = true; /* no port given: always choose one */
}

static void parse_deps(struct pctx *c, const char *prefix, json_t *a, struct spec *s) {
  if (!json_is_array(a)) {
    cfgp_err_at(c, prefix, "expected an array of {\"service\", \"condition\"} objects or service names");
    return;
  }
  s->deps = xcalloc(json_array_size(a) + 1, sizeof *s->deps);
  size_t i;
  json_t *x;
  json_array_foreach(a, i, x) {
    char f[300], g[320];
    snprintf(f, sizeof f, "%s[%zu]", prefix, i);
    struct dep_spec *d = &s->deps[s->ndeps];
    d->cond = DEP_HEALTHY;
    json_t *name = x;
    if (json_is_object(x)) {
      cfgp_check_keys(c, f, x, dep_keys);
      name = json_object_get(x, "service");
      json_t *cond = json_object_get(x, "condition");
      if (cond) {
        static const char *const conds[] = {
            [DEP_STARTED] = "started", [DEP_HEALTHY] = "healthy", [DEP_COMPLETED] = "completed"};
        snprintf(g, sizeof g, "%s.condition", f);
        int k = cfgp_get_enum(c, g, cond, conds, DEP__MAX);
        if (k >= 0) d->cond = (enum dep_cond)k;
      }
      snprintf(g, sizeof g, "%s.service", f);
    } else {
      snprintf(g, sizeof g, "%s", f);
    }
    if (!json_is_string(name) || !name_valid(json_string_value(name))) {
      cfgp_err_at(c, name ? g : f, "expected a service name");
      continue;
    }
    for (size_t j = 0; j < s->ndeps; j++)
      if (!strcmp(s->deps[j].service, json_string_value(name))) cfgp_err_at(c, g, "listed twice");
    d->service = xstrdup(json_string_value(name));
    cfgp_pos(c, g, false, &d->line, &d->col);
    s->ndeps++;
  }
}

/* Shell-quote one word for a generated batch script. */
static void spec_defaults(struct spec *s) {
  s->restart = RESTART_ALWAYS;
  s->backoff = (struct svc_backoff){.initial = 1, .max = 60, .multiplier = 2, .jitter = 0.2, .reset_after = 60};
  s->stop_signal = SIGTERM;
  s->stop_grace = 10;
  s->start_timeout = 60;
  s->ready_after = 1;
  s->log_max_size = 10 * 1024 * 1024;
  s->log_keep = 5;
}

/*
 * The crash-loop floor counts consecutive failures; an instance that was HEALTHY for
 * reset_after resets the count. With ready_after 0 and reset_after 0, an instance that
 * dies 2 ms after it started has been "healthy long enough", the count never passes 1 and
 * `false` restarts every 2 ms. Raise reset_after so the instance must live
 * CFG_RESET_MIN in all; warn (not an error: the config still means what it says,
 * "reset quickly").
 */
static void clamp_reset_after(struct pctx *c, const char *prefix, struct spec *s) {
  double up = s->check ? 0 : s->ready_after; /* with a check, HEALTHY comes with the first pass */
  if (up + s->backoff.reset_after >= CFG_RESET_MIN) return;
  char f[256];
  int line, col;
  FIELD(f, prefix, "backoff.reset_after");
  cfgp_pos(c, f, false, &line, &col);
  double was = s->backoff.reset_after;
  s->backoff.reset_after = CFG_RESET_MIN - up;
  log_warn("%s:%d:%d: %s: reset_after %gs%s lets an instance that dies at once reset its own backoff (a crash loop "
           "would never slow down); using %gs, so that an instance must stay up %gs before its backoff resets",
           c->file, line, col, f, was, s->check ? "" : (up > 0 ? " with a short ready_after" : " with ready_after 0"),
           s->backoff.reset_after, CFG_RESET_MIN);
}

/* "ready": "notify" and "watchdog": the notify protocol herd offers local processes. */
static void parse_notify(struct pctx *c, const char *prefix, json_t *o, struct spec *s) {
  char f[256];
  json_t *v;
  static const char *const readies[] = {"notify"};
  if ((v = json_object_get(o, "ready")) && cfgp_get_enum(c, FIELD(f, prefix, "ready"), v, readies, 1) == 0)
    s->notify_ready = true;
  if ((v = json_object_get(o, "watchdog")) &&
      cfgp_get_duration(c, FIELD(f, prefix, "watchdog"), v, &s->watchdog) == 0 && s->watchdog <= 0)
    cfgp_err_at(c, FIELD(f, prefix, "watchdog"), "must be more than 0 (leave it out for no watchdog)");
  if (s->backend != BACKEND_LOCAL) {
    if (json_object_get(o, "ready")) cfgp_err_at_key(c, FIELD(f, prefix, "ready"), "only for local services");
    if (json_object_get(o, "watchdog")) cfgp_err_at_key(c, FIELD(f, prefix, "watchdog"), "only for local services");
  }
}

static struct spec *parse_service(struct pctx *c, const char *prefix, json_t *o) {
  char f[256];
  int before = c->nerr;
  if (!json_is_object(o)) {
    cfgp_err_at(c, prefix, "a service must be an object, got %s", cfgp_type_name(o));
    return NULL;
  }
  struct spec *s = xcalloc(1, sizeof *s);
  spec_defaults(s);
  cfgp_check_keys(c, prefix, o, service_keys);
  json_t *v;

  if (!(v = json_object_get(o, "name")))
    cfgp_err_at(c, prefix, "missing required key \"name\"");
  else if (cfgp_get_string(c, FIELD(f, prefix, "name"), v, &s->name) == 0 && !name_valid(s->name))
    cfgp_err_at(c, FIELD(f, prefix, "name"), "\"%s\" is not a valid name: use [a-z0-9][a-z0-9._-]{0,62}", s->name);

  static const char *const backends[] = {[BACKEND_LOCAL] = "local", [BACKEND_SLURM] = "slurm"};
  json_t *bv = json_object_get(o, "backend");
  int bi = bv ? cfgp_get_enum(c, FIELD(f, prefix, "backend"), bv, backends, BACKEND__MAX) : BACKEND_LOCAL;
  if (bi >= 0) s->backend = (enum backend)bi;
  if (!(v = json_object_get(o, "command"))) {
    if (s->backend == BACKEND_LOCAL) cfgp_err_at(c, prefix, "missing required key \"command\" (an argv array)");
  } else if (json_is_string(v))
    cfgp_err_at(
        c, FIELD(f, prefix, "command"),
        "expected an argv array such as [\"/usr/bin/python3\", \"app.py\"]; write [\"/bin/sh\", \"-c\", \"...\"] "
        "if you want a shell");
  else
    s->argv = cfgp_get_argv(c, FIELD(f, prefix, "command"), v);

  if ((v = json_object_get(o, "env"))) {
    if (!json_is_object(v)) {
      cfgp_err_at(c, FIELD(f, prefix, "env"), "expected an object of strings, got %s", cfgp_type_name(v));
    } else {
      s->env = xcalloc(json_object_size(v) + 1, sizeof *s->env);
      size_t k = 0;
      const char *key;
      json_t *x;
      json_object_foreach(v, key, x) {
        char ef[300];
        snprintf(ef, sizeof ef, "%s%senv.%s", prefix, *prefix ? "." : "", key);
        if (!*key || strchr(key, '='))
          cfgp_err_at(c, ef, "not a valid environment variable name");
        else if (json_is_string(x))
          s->env[k++] = xasprintf("%s=%s", key, json_string_value(x));
        else if (json_is_number(x)) {
          char *num = json_dumps(x, JSON_ENCODE_ANY);
          s->env[k++] = xasprintf("%s=%s", key, num);
          free(num);
        } else
          cfgp_err_at(c, ef, "expected a string, got %s", cfgp_type_name(x));
      }
    }
  }
  if ((v = json_object_get(o, "cwd"))) {
    if (cfgp_get_string(c, FIELD(f, prefix, "cwd"), v, &s->cwd) == 0 && s->cwd[0] != '/')
      cfgp_err_at(c, FIELD(f, prefix, "cwd"), "must be an absolute path");
  }
  if ((v = json_object_get(o, "user")) && cfgp_get_string(c, FIELD(f, prefix, "user"), v, &s->user) == 0 &&
      s->backend == BACKEND_LOCAL) { /* a Slurm job's user lives on the cluster, not here */
    struct passwd *pw = getpwnam(s->user);
    if (!pw)
      cfgp_err_at(c, FIELD(f, prefix, "user"), "no such user \"%s\"", s->user);
    else {
      s->uid = pw->pw_uid;
      s->set_uid = true;
      if (!s->set_gid) s->gid = pw->pw_gid, s->set_gid = true;
    }
  }
  if ((v = json_object_get(o, "group")) && cfgp_get_string(c, FIELD(f, prefix, "group"), v, &s->group) == 0) {
    struct group *gr = getgrnam(s->group);
    if (!gr)
      cfgp_err_at(c, FIELD(f, prefix, "group"), "no such group \"%s\"", s->group);
    else
      s->gid = gr->gr_gid, s->set_gid = true;
  }
  static const char *const restarts[] = {
      [RESTART_ALWAYS] = "always", [RESTART_ON_FAILURE] = "on-failure", [RESTART_NEVER] = "never"};
  int ri;
  if ((v = json_object_get(o, "restart")) &&
      (ri = cfgp_get_enum(c, FIELD(f, prefix, "restart"), v, restarts, RESTART__MAX)) >= 0)
    s->restart = (restart_policy)ri;
  if ((v = json_object_get(o, "backoff"))) parse_backoff(c, FIELD(f, prefix, "backoff"), v, s);
  if ((v = json_object_get(o, "stop"))) parse_stop(c, FIELD(f, prefix, "stop"), v, s);
  if ((v = json_object_get(o, "start_timeout")))
    cfgp_get_duration(c, FIELD(f, prefix, "start_timeout"), v, &s->start_timeout);
  if ((v = json_object_get(o, "ready_after")))
    cfgp_get_duration(c, FIELD(f, prefix, "ready_after"), v, &s->ready_after);
  if ((v = json_object_get(o, "tags"))) s->tags = cfgp_get_strv(c, FIELD(f, prefix, "tags"), v, false);
  if ((v = json_object_get(o, "log"))) parse_log(c, FIELD(f, prefix, "log"), v, s);
  if ((v = json_object_get(o, "endpoint"))) parse_endpoint(c, FIELD(f, prefix, "endpoint"), v, s);
  if ((v = json_object_get(o, "check"))) parse_check(c, FIELD(f, prefix, "check"), v, s);
  if ((v = json_object_get(o, "depends_on"))) parse_deps(c, FIELD(f, prefix, "depends_on"), v, s);
  if ((v = json_object_get(o, "restart_with_dependency")))
    cfgp_get_bool(c, FIELD(f, prefix, "restart_with_dependency"), v, &s->restart_with_dependency);
  if ((v = json_object_get(o, "ssh"))) cfgp_parse_ssh(c, FIELD(f, prefix, "ssh"), v, s);
  parse_notify(c, prefix, o, s);
  if ((v = json_object_get(o, "job"))) cfgp_parse_job(c, FIELD(f, prefix, "job"), v, s, json_object_get(o, "restart"));
  if (s->backend == BACKEND_SLURM) {
    cfgp_parse_slurm(c, prefix, o, s);
    if (s->set_gid) cfgp_err_at_key(c, FIELD(f, prefix, "group"), "a Slurm job runs with its user's groups");
    if (!c->nerr && !s->slurm->script) s->slurm->script = cfgp_script_for(s);
  } else {
    for (const char *const *k = slurm_only_keys; *k; k++)
      if (json_object_get(o, *k)) cfgp_err_at_key(c, FIELD(f, prefix, *k), "only for \"backend\": \"slurm\"");
  }
  if (s->check && s->check->type == CHECK_HTTP && s->check->path && !s->endpoint.set)
    cfgp_err_at(c, FIELD(f, prefix, "check.path"), "a check path needs an endpoint (or give an absolute url)");
  if (s->check && s->check->type == CHECK_TCP && !s->check->port && !s->endpoint.set)
    cfgp_err_at(c, FIELD(f, prefix, "check"), "a tcp check needs a port (or an endpoint)");

  if (c->nerr != before) {
    spec_free(s);
    return NULL;
  }
  clamp_reset_after(c, prefix, s);
  if (!s->tags) s->tags = xcalloc(1, sizeof *s->tags);
  s->json = json_incref(o);
  s->canon = json_dumps(o, JSON_COMPACT | JSON_SORT_KEYS);
  s->source = xstrdup(c->file);
  return s;
}

int cfg_parse_text(const char *file, const char *text, size_t len, struct spec_set *out, struct cfg_errors *errs) {
  struct pctx c = {file, text, len, errs, 0, NULL};
  size_t first = out->n, first_cluster = out->nclusters, first_host = out->nhosts, first_queue = out->nqueues;
  json_error_t je;
  json_t *root = json_loadb(text, len, JSON_REJECT_DUPLICATES, &je);
  if (!root) {
    cfg_error_add(errs, file, je.line, je.column, "", "invalid JSON: %s", je.text);
    return 1;
  }
  json_t *list = json_is_object(root) ? json_object_get(root, "services") : NULL;
  json_t *clusters = json_is_object(root) ? json_object_get(root, "clusters") : NULL;
  if (clusters) {
    if (!json_is_array(clusters)) {
      cfgp_err_at(&c, "clusters", "expected an array of clusters, got %s", cfgp_type_name(clusters));
    } else {
      size_t i;
      json_t *o;
      json_array_foreach(clusters, i, o) {
        char prefix[64];
        snprintf(prefix, sizeof prefix, "clusters[%zu]", i);
        struct cluster_spec *k = cfgp_parse_cluster(&c, prefix, o);
        if (!k) continue;
        if (out->nclusters == out->ccap)
          out->clusters = xrealloc(out->clusters, (out->ccap = out->ccap ? out->ccap * 2 : 4) * sizeof *out->clusters);
        out->clusters[out->nclusters++] = k;
      }
    }
  }
  json_t *hosts = json_is_object(root) ? json_object_get(root, "hosts") : NULL;
  if (hosts) {
    if (!json_is_array(hosts)) {
      cfgp_err_at(&c, "hosts", "expected an array of ssh hosts, got %s", cfgp_type_name(hosts));
    } else {
      size_t i;
      json_t *o;
      json_array_foreach(hosts, i, o) {
        char prefix[64];
        snprintf(prefix, sizeof prefix, "hosts[%zu]", i);
        struct host_spec *h = cfgp_parse_host(&c, prefix, o);
        if (!h) continue;
        if (out->nhosts == out->hcap)
          out->hosts = xrealloc(out->hosts, (out->hcap = out->hcap ? out->hcap * 2 : 4) * sizeof *out->hosts);
        out->hosts[out->nhosts++] = h;
      }
    }
  }
  json_t *queues = json_is_object(root) ? json_object_get(root, "queues") : NULL;
  if (queues) cfgp_parse_queues(&c, queues, out);
  if (list || clusters || hosts || queues) {
    static const char *const top_keys[] = {"services", "clusters", "hosts", "queues", NULL};
    cfgp_check_keys(&c, "", root, top_keys);
    if (!list) {
    } else if (!json_is_array(list)) {
      cfgp_err_at(&c, "services", "expected an array of services, got %s", cfgp_type_name(list));
    } else {
      size_t i;
      json_t *o;
      json_array_foreach(list, i, o) {
        char prefix[64];
        snprintf(prefix, sizeof prefix, "services[%zu]", i);
        struct spec *s = parse_service(&c, prefix, o);
        if (s) spec_set_add(out, s);
      }
    }
  } else {
    struct spec *s = parse_service(&c, "", root);
    if (s) spec_set_add(out, s);
  }
  json_decref(root);
  pctx_done(&c);
  if (c.nerr) { /* all or nothing: a document with errors yields no spec */
    for (size_t i = first; i < out->n; i++) spec_free(out->v[i]);
    out->n = first;
    for (size_t i = first_cluster; i < out->nclusters; i++) cluster_spec_free(out->clusters[i]);
    out->nclusters = first_cluster;
    for (size_t i = first_host; i < out->nhosts; i++) host_spec_free(out->hosts[i]);
    out->nhosts = first_host;
    for (size_t i = first_queue; i < out->nqueues; i++) free(out->queues[i].name);
    out->nqueues = first_queue;
  }
  return c.nerr;
}

static int cmp_str(const void *a, const void *b) { return strcmp(*(char *const *)a, *(char *const *)b); }

/* ---- names to specs in constant time (duplicates, dependencies) ---- */

struct name_index {
  struct spec *const *v; /* the specs; the table holds their indexes + 1 (0: empty) */
  size_t *tab, cap, n;
};

static uint64_t name_hash(const char *s) {
  uint64_t h = 1469598103934665603ULL; /* FNV-1a */
  for (; *s; s++) h = (h ^ (uint8_t)*s) * 1099511628211ULL;
  return h;
}

static void nidx_grow(struct name_index *x) {
  size_t ocap = x->cap;
  size_t *old = x->tab;
  x->cap = ocap ? ocap * 2 : 64;
  x->tab = xcalloc(x->cap, sizeof *x->tab);
  for (size_t i = 0; i < ocap; i++) {
    if (!old[i]) continue;
    size_t m = x->cap - 1, h = name_hash(x->v[old[i] - 1]->name) & m;
    while (x->tab[h]) h = (h + 1) & m;
    x->tab[h] = old[i];
  }
  free(old);
}

/* The index of the first spec named `name`, or -1. */
static long nidx_find(const struct name_index *x, const char *name) {
  if (!x->cap) return -1;
  size_t m = x->cap - 1;
  for (size_t h = name_hash(name) & m; x->tab[h]; h = (h + 1) & m)
    if (!strcmp(x->v[x->tab[h] - 1]->name, name)) return (long)(x->tab[h] - 1);
  return -1;
}

/* Add spec i (x->v may have moved since the last call: pass the current array). */
static void nidx_put(struct name_index *x, struct spec *const *v, size_t i) {
  x->v = v;
  if ((x->n + 1) * 2 > x->cap) nidx_grow(x);
  size_t m = x->cap - 1, h = name_hash(v[i]->name) & m;
  while (x->tab[h]) h = (h + 1) & m;
  x->tab[h] = i + 1;
  x->n++;
}

static void nidx_free(struct name_index *x) {
  free(x->tab);
  memset(x, 0, sizeof *x);
}

long spec_set_find(struct spec_set *s, const char *name) {
  struct name_index x = {s->v, s->byname, s->bcap, s->bn};
  if (s->bn != s->n) { /* specs were added (or the set was emptied): index them all again */
    nidx_free(&x);
    for (size_t i = 0; i < s->n; i++)
      if (nidx_find(&x, s->v[i]->name) < 0) nidx_put(&x, s->v, i);
    x.n = s->n;
    s->byname = x.tab;
    s->bcap = x.cap;
    s->bn = s->n;
  }
  return nidx_find(&x, name);
}

/* ---- reading one config file: nothing may hang, abort or eat the memory ---- */

static const char *file_kind(mode_t m) {
  if (S_ISDIR(m)) return "a directory";
  if (S_ISFIFO(m)) return "a named pipe (FIFO)";
  if (S_ISCHR(m)) return "a character device";
  if (S_ISBLK(m)) return "a block device";
  if (S_ISSOCK(m)) return "a socket";
  return "not a regular file";
}

/* "(a symlink to T) " when path is one, else "". Caller frees. */
static char *link_note(const char *path) {
  struct stat ls;
  char target[512];
  ssize_t n;
  if (lstat(path, &ls) < 0 || !S_ISLNK(ls.st_mode) || (n = readlink(path, target, sizeof target - 1)) < 0)
    return xstrdup("");
  target[n] = '\0';
  return xasprintf(" (a symlink to %s)", target);
}

static void file_error(struct pctx *fc, const char *fmt, ...) __attribute__((format(printf, 2, 3)));
static void file_error(struct pctx *fc, const char *fmt, ...) {
  va_list ap;
  va_start(ap, fmt);
  cfg_error_vadd(fc->errs, fc->file, 1, 1, "", fmt, ap);
  va_end(ap);
  fc->nerr++;
}

/* True for a regular file of an acceptable size; otherwise adds the error saying why not. */
static bool check_stat(struct pctx *fc, const struct stat *st) {
  if (!S_ISREG(st->st_mode)) {
    char *ln = link_note(fc->file);
    file_error(fc, "%s%s is %s, not a config file: only regular files (or symlinks to them) named *.json are read",
               fc->file, ln, file_kind(st->st_mode));
    free(ln);
  } else if (st->st_size > CFG_FILE_MAX) {
    file_error(fc, "%s is %lld bytes: a config file may hold at most %d MiB (%d bytes); split it into several files",
               fc->file, (long long)st->st_size, CFG_FILE_MAX >> 20, CFG_FILE_MAX);
  } else {
    return true;
  }
  return false;
}

static void open_error(struct pctx *fc, int err) {
  char *ln = link_note(fc->file);
  if (err == EACCES || err == EPERM)
    file_error(fc, "cannot read %s%s: %s (herd runs as uid %u, gid %u)", fc->file, ln, strerror(err),
               (unsigned)geteuid(), (unsigned)getegid());
  else
    file_error(fc, "cannot read %s%s: %s", fc->file, ln, strerror(err));
  free(ln);
}

/*
 * Read one config file whole, or add an error naming its path and return NULL. Only a
 * regular file (a symlink to one is fine) of at most CFG_FILE_MAX bytes: stat before open
 * so that a device is never even opened; O_NONBLOCK so that a FIFO swapped in after the
 * stat cannot block the open; fstat after, on what was actually opened; and never more
 * than CFG_FILE_MAX + 1 bytes read, should the file grow meanwhile.
 */
static char *read_config(struct pctx *fc, size_t *len) {
  struct stat st;
  if (stat(fc->file, &st) < 0) {
    open_error(fc, errno);
    return NULL;
  }
  if (!check_stat(fc, &st)) return NULL;
  int fd = open(fc->file, O_RDONLY | O_NONBLOCK | O_NOCTTY | O_CLOEXEC);
  if (fd < 0) {
    open_error(fc, errno);
    return NULL;
  }
  char *text = NULL;
  if (fstat(fd, &st) < 0) {
    open_error(fc, errno);
    goto out;
  }
  if (!check_stat(fc, &st)) goto out;
  size_t cap = (size_t)st.st_size + 1, n = 0;
  text = xmalloc(cap + 1);
  for (;;) {
    if (n == cap) {
      if (cap > CFG_FILE_MAX) break;
      cap = cap * 2 > (size_t)CFG_FILE_MAX + 1 ? (size_t)CFG_FILE_MAX + 1 : cap * 2;
      text = xrealloc(text, cap + 1);
    }
    ssize_t r = read(fd, text + n, cap - n);
    if (r < 0 && errno == EINTR) continue;
    if (r < 0) {
      open_error(fc, errno);
      free(text);
      text = NULL;
      goto out;
    }
    if (r == 0) break;
    n += (size_t)r;
  }
  if (n > CFG_FILE_MAX) {
    file_error(fc, "%s grew past %d MiB while being read: a config file may hold at most %d bytes", fc->file,
               CFG_FILE_MAX >> 20, CFG_FILE_MAX);
    free(text);
    text = NULL;
    goto out;
  }
  text[n] = '\0';
  *len = n;
out:
  close(fd);
  return text;
}

int cfg_load_dir(const char *dir, struct spec_set *out, struct cfg_errors *errs) {
  size_t before = errs->n;
  struct pctx dc = {dir, "", 0, errs, 0, NULL};
  DIR *d = opendir(dir);
  if (!d) {
    int e = errno;
    if (e == EACCES || e == EPERM)
      file_error(&dc, "cannot open config directory %s: %s (herd runs as uid %u, gid %u)", dir, strerror(e),
                 (unsigned)geteuid(), (unsigned)getegid());
    else
      file_error(&dc, "cannot open config directory %s: %s", dir, strerror(e));
    return -1;
  }
  char **names = NULL;
  size_t n = 0, cap = 0;
  struct dirent *de;
  while ((de = readdir(d))) {
    size_t l = strlen(de->d_name);
    if (l < 6 || strcmp(de->d_name + l - 5, ".json") || de->d_name[0] == '.') continue;
    if (n == cap) names = xrealloc(names, (cap = cap ? cap * 2 : 16) * sizeof *names);
    names[n++] = xstrdup(de->d_name);
  }
  closedir(d);
  if (n) qsort(names, n, sizeof *names, cmp_str);

  struct spec_set all = {0};
  struct name_index seen = {0};
  for (size_t i = 0; i < n; i++) {
    char *path = xasprintf("%s/%s", dir, names[i]);
    struct pctx fc = {path, "", 0, errs, 0, NULL};
    size_t len = 0;
    char *text = read_config(&fc, &len);
    if (text) {
      size_t first = all.n;
      cfg_parse_text(path, text, len, &all, errs);
      /* Duplicate names across the whole directory. */
      fc.text = text;
      fc.len = len;
      for (size_t k = first; k < all.n; k++) {
        long j = nidx_find(&seen, all.v[k]->name);
        if (j < 0) {
          nidx_put(&seen, all.v, k);
          continue;
        }
        char field[64];
        int l, c;
        if (!fc.jp) fc.jp = jpos_index(text, len);
        if (jpos_lookup(fc.jp, "services", false, &l, &c) == 0) /* {"services": [...]} */
          snprintf(field, sizeof field, "services[%zu].name", k - first);
        else
          snprintf(field, sizeof field, "name");
        cfgp_err_at_key(&fc, field, "duplicate service name \"%s\" (also defined in %s)", all.v[k]->name,
                        all.v[j]->source);
      }
      pctx_done(&fc);
    }
    free(text);
    free(path);
    free(names[i]);
  }
  free(names);
  nidx_free(&seen);
  if (errs->n == before) cfg_validate_clusters(all.v, all.n, all.clusters, all.nclusters, errs);
  if (errs->n == before) cfg_validate_hosts(all.v, all.n, all.hosts, all.nhosts, errs);
  if (errs->n == before) cfg_validate_cluster_hosts(all.clusters, all.nclusters, all.hosts, all.nhosts, errs);
  if (errs->n != before) {
    spec_set_free(&all);
    return -1;
  }
  for (size_t i = 0; i < all.n; i++) spec_set_add(out, all.v[i]);
  free(all.v);
  out->clusters = all.clusters;
  out->nclusters = all.nclusters;
  out->ccap = all.ccap;
  out->hosts = all.hosts;
  out->nhosts = all.nhosts;
  out->hcap = all.hcap;
  out->queues = all.queues;
  out->nqueues = all.nqueues;
  return 0;
}

/* ---- dependencies across services ---- */

static void dep_error(struct cfg_errors *e, const struct spec *s, const struct dep_spec *d, const char *fmt, ...)
    __attribute__((format(printf, 4, 5)));

static void dep_error(struct cfg_errors *e, const struct spec *s, const struct dep_spec *d, const char *fmt, ...) {
  char field[96];
  snprintf(field, sizeof field, "%s.depends_on", s->name);
  va_list ap;
  va_start(ap, fmt);
  cfg_error_vadd(e, s->source, d->line, d->col, field, fmt, ap);
  va_end(ap);
}

/*
 * Depth-first search for cycles with an explicit stack (a chain of 100,000 dependencies
 * must not overflow the C stack). Colours: 0 new, 1 on the stack, 2 done. On a back edge,
 * report the cycle once.
 */
struct dfs_frame {
  size_t node, next; /* the spec, and its next dependency to follow */
};

static void dfs(struct spec *const *v, const struct name_index *idx, size_t root, int *colour, struct dfs_frame *stack,
                struct cfg_errors *errs) {
  size_t depth = 0;
  stack[depth++] = (struct dfs_frame){root, 0};
  colour[root] = 1;
  while (depth) {
    struct dfs_frame *top = &stack[depth - 1];
    const struct spec *s = v[top->node];
    if (top->next == s->ndeps) {
      colour[top->node] = 2;
      depth--;
      continue;
    }
    const struct dep_spec *d = &s->deps[top->next++];
    long j = nidx_find(idx, d->service);
    if (j < 0) continue;
    if (colour[j] == 1) {
      struct buf path = {0};
      size_t from = 0;
      while (stack[from].node != (size_t)j) from++;
      for (size_t m = from; m < depth; m++) buf_printf(&path, "%s -> ", v[stack[m].node]->name);
      buf_printf(&path, "%s", v[j]->name);
      dep_error(errs, s, d, "dependency cycle: %s", path.data);
      buf_free(&path);
    } else if (colour[j] == 0) {
      colour[j] = 1;
      stack[depth++] = (struct dfs_frame){(size_t)j, 0};
    }
  }
}

int cfg_validate_deps(struct spec *const *v, size_t n, struct cfg_errors *errs) {
  size_t before = errs->n;
  struct name_index idx = {0};
  for (size_t i = 0; i < n; i++)
    if (nidx_find(&idx, v[i]->name) < 0) nidx_put(&idx, v, i);
  for (size_t i = 0; i < n; i++)
    for (size_t k = 0; k < v[i]->ndeps; k++) {
      const struct dep_spec *d = &v[i]->deps[k];
      if (!strcmp(d->service, v[i]->name))
        dep_error(errs, v[i], d, "%s depends on itself", v[i]->name);
      else if (nidx_find(&idx, d->service) < 0)
        dep_error(errs, v[i], d, "%s depends on \"%s\", which is not defined", v[i]->name, d->service);
    }
  int *colour = xcalloc(n + 1, sizeof *colour);
  struct dfs_frame *stack = xcalloc(n + 1, sizeof *stack);
  for (size_t i = 0; i < n; i++)
    if (!colour[i]) dfs(v, &idx, i, colour, stack, errs);
  free(colour);
  free(stack);
  nidx_free(&idx);
  return (int)(errs->n - before);
}
