/*
 * GET /metrics: the daemon and its services in Prometheus's text exposition format 0.0.4,
 * and GET /v1/health. Both read what the daemon, the services, the checks, the store and
 * the Slurm backend already keep; nothing here is measured on its own.
 *
 * The page is written into one growing buffer with memcpy and a hand-rolled integer
 * formatter: a scrape of 1,000 services is ~25,000 lines, and printf for each of them
 * cost more than everything else (bench/metrics.py measures it).
 */
#include "herd/check.h"
#include "herd/cmd.h"
#include "herd/ctl.h"
#include "herd/job.h"
#include "herd/metrics.h"
#include "herd/slurm.h"
#include "herd/store.h"
#include "herd/tunnel.h"
#include "herd/work.h"

#include <assert.h>
#include <fcntl.h>
#include <math.h>
#include <poll.h>
#include <stdlib.h>
#include <string.h>
#include <sys/resource.h>
#include <unistd.h>

#define CT_PROM "text/plain; version=0.0.4; charset=utf-8"

/* buf_append inlined: a page is ~200,000 of these. */
static inline void put(struct buf *b, const char *s, size_t n) {
  if (b->len + n + 1 > b->cap) {
    buf_append(b, s, n); /* grows it */
    return;
  }
  memcpy(b->data + b->len, s, n);
  b->len += n;
  b->data[b->len] = '\0';
}
#define PUT(b, lit) put((b), (lit), sizeof(lit) - 1)

static void put_str(struct buf *b, const char *s) { put(b, s, strlen(s)); }

static void put_u64(struct buf *b, uint64_t v) {
  char tmp[24], *p = tmp + sizeof tmp;
  do {
    *--p = (char)('0' + v % 10);
    v /= 10;
  } while (v);
  put(b, p, (size_t)(tmp + sizeof tmp - p));
}

/* A float sample value (15 significant digits: a Unix time to the microsecond); +Inf, -Inf and NaN are
 * spelled as Prometheus spells them. */
static void put_f(struct buf *b, double v) {
  if (isnan(v)) {
    PUT(b, "NaN");
    return;
  }
  if (isinf(v)) {
    put_str(b, v > 0 ? "+Inf" : "-Inf");
    return;
  }
  if (v == floor(v) && fabs(v) < 1e15) {
    if (v < 0) PUT(b, "-");
    put_u64(b, (uint64_t)fabs(v));
    return;
  }
  if (v > 0 && v < 1e9) {
    /* A duration or a sum of them: to the nanosecond, without printf (a page has a
     * thousand uptimes). */
    uint64_t ns = (uint64_t)llround(v * 1e9);
    put_u64(b, ns / 1000000000u);
    uint32_t frac = (uint32_t)(ns % 1000000000u);
    if (frac) {
      char d[10] = ".";
      int k = 9;
      while (frac % 10 == 0) frac /= 10, k--;
      for (int i = k; i > 0; i--, frac /= 10) d[i] = (char)('0' + frac % 10);
      put(b, d, (size_t)k + 1);
    }
    return;
  }
  char tmp[40];
  int n = snprintf(tmp, sizeof tmp, "%.15g", v);
  put(b, tmp, (size_t)n);
}

void metrics_label(struct buf *b, const char *s) {
  size_t n = strcspn(s, "\\\"\n");
  put(b, s, n); /* the usual case: a service name has none of them */
  for (s += n; *s; s++) {
    if (*s == '\\')
      PUT(b, "\\\\");
    else if (*s == '"')
      PUT(b, "\\\"");
    else if (*s == '\n')
      PUT(b, "\\n");
    else
      put(b, s, 1);
  }
}

/** # HELP and # TYPE lines of one metric family (help is a literal without \ or newline). */
static void jobs_part(struct daemon *d, struct buf *b);

static void family(struct buf *b, const char *name, const char *type, const char *help) {
  PUT(b, "# HELP ");
  put_str(b, name);
  PUT(b, " ");
  put_str(b, help);
  PUT(b, "\n# TYPE ");
  put_str(b, name);
  PUT(b, " ");
  put_str(b, type);
  PUT(b, "\n");
}

/** A sample without labels. */
static void sample(struct buf *b, const char *name, double v) {
  put_str(b, name);
  PUT(b, " ");
  put_f(b, v);
  PUT(b, "\n");
}

/** name{key="value"} v */
static void sample1(struct buf *b, const char *name, const char *key, const char *value, double v) {
  put_str(b, name);
  PUT(b, "{");
  put_str(b, key);
  PUT(b, "=\"");
  metrics_label(b, value);
  PUT(b, "\"} ");
  put_f(b, v);
  PUT(b, "\n");
}

/* name{k1="v1",k2="v2"} v */
static void sample2(struct buf *b, const char *name, const char *k1, const char *v1, const char *k2, const char *v2,
                    double v) {
  put_str(b, name);
  PUT(b, "{");
  put_str(b, k1);
  PUT(b, "=\"");
  metrics_label(b, v1);
  PUT(b, "\",");
  put_str(b, k2);
  PUT(b, "=\"");
  metrics_label(b, v2);
  PUT(b, "\"} ");
  put_f(b, v);
  PUT(b, "\n");
}

/** A histogram's samples from per-bucket (not cumulative) counts: _bucket{...,le=}, _sum,
 *  _count. `labels` is the text inside the braces before le ("" or `service="x",`). */
/* le="..." of each bucket bound, formatted once per set of bounds (they are constants). */
struct le_strs {
  const double *bounds;
  char s[16][24];
  size_t n[16];
};

static const struct le_strs *le_strs(const double *bounds, size_t nb) {
  static struct le_strs cache[4]; /* two are used: the check and lag histograms */
  for (size_t k = 0; k < ARRAY_LEN(cache); k++) {
    struct le_strs *c = &cache[k];
    if (c->bounds == bounds) return c;
    if (c->bounds) continue;
    assert(nb < 16);
    for (size_t i = 0; i <= nb; i++) {
      struct buf t = {0};
      PUT(&t, "le=\"");
      if (i < nb)
        put_f(&t, bounds[i]);
      else
        PUT(&t, "+Inf");
      PUT(&t, "\"} ");
      c->n[i] = (size_t)snprintf(c->s[i], sizeof c->s[i], "%s", t.data);
      buf_free(&t);
    }
    c->bounds = bounds;
    return c;
  }
  assert(!"more sets of bounds than the cache holds");
  return NULL;
}

/** A histogram's samples from per-bucket (not cumulative) counts: _bucket{...,le=}, _sum,
 *  _count. `labels` is the text inside the braces before le ("" or `service="x",`). */
static void histogram(struct buf *b, const char *name, const char *labels, const double *bounds, const uint64_t *counts,
                      size_t nb, uint64_t total, double sum) {
  const struct le_strs *le = le_strs(bounds, nb);
  size_t name_len = strlen(name), lab_len = strlen(labels);
  uint64_t cum = 0;
  for (size_t i = 0; i <= nb; i++) {
    cum += i < nb ? counts[i] : 0;
    put(b, name, name_len);
    PUT(b, "_bucket{");
    put(b, labels, lab_len);
    put(b, le->s[i], le->n[i]);
    put_u64(b, i < nb ? cum : total);
    PUT(b, "\n");
  }
  put(b, name, name_len);
  PUT(b, "_sum");
  if (lab_len) {
    PUT(b, "{");
    put(b, labels, lab_len - 1); /* without the trailing comma */
    PUT(b, "}");
  }
  PUT(b, " ");
  put_f(b, sum);
  PUT(b, "\n");
  put(b, name, name_len);
  PUT(b, "_count");
  if (lab_len) {
    PUT(b, "{");
    put(b, labels, lab_len - 1);
    PUT(b, "}");
  }
  PUT(b, " ");
  put_u64(b, total);
  PUT(b, "\n");
}

/* The per-service families: `lab[i]` is service i's `{service="name"` (no closing brace). */
struct svc_lab {
  struct service *s;
  size_t off, len; /* in the label buffer */
};

static void put_svc(struct buf *b, const struct buf *labs, const struct svc_lab *l) {
  put(b, labs->data + l->off, l->len);
}

static void services_part(struct daemon *d, struct buf *b) {
  size_t n = 0;
  struct svc_lab *v = xcalloc(d->nservices + 1, sizeof *v);
  struct buf labs = {0};
  struct list *pos, *tmp;
  list_for_each_safe(pos, tmp, &d->services) {
    if (n == d->nservices) break; /* (never: nservices counts them all) */
    struct service *s = container_of(pos, struct service, link);
    v[n].s = s;
    v[n].off = labs.len;
    PUT(&labs, "{service=\"");
    metrics_label(&labs, s->spec->name);
    PUT(&labs, "\"");
    v[n].len = labs.len - v[n].off;
    n++;
  }

  family(b, "herd_services", "gauge", "Services the daemon has, removed ones still stopping included.");
  sample(b, "herd_services", (double)n);

  family(b, "herd_service_state", "gauge", "1 for the state the service is in, 0 for the others.");
  static char state_tail[S__MAX][48];
  static size_t state_tail_len[S__MAX];
  if (!state_tail_len[0])
    for (int k = 0; k < S__MAX; k++)
      state_tail_len[k] =
          (size_t)snprintf(state_tail[k], sizeof state_tail[k], ",state=\"%s\"} ", svc_state_name((svc_state)k));
  for (size_t i = 0; i < n; i++)
    for (int k = 0; k < S__MAX; k++) {
      PUT(b, "herd_service_state");
      put_svc(b, &labs, &v[i]);
      put(b, state_tail[k], state_tail_len[k]);
      put(b, (int)v[i].s->fsm.state == k ? "1\n" : "0\n", 2);
    }

  family(b, "herd_service_wanted_up", "gauge", "1 when the service is wanted up (started), 0 when wanted down.");
  for (size_t i = 0; i < n; i++) {
    PUT(b, "herd_service_wanted_up");
    put_svc(b, &labs, &v[i]);
    put(b, v[i].s->fsm.want_up ? "} 1\n" : "} 0\n", 4);
  }

  family(b, "herd_service_restarts_total", "counter",
         "Restarts by policy or request (kept in the store across daemon restarts).");
  for (size_t i = 0; i < n; i++) {
    PUT(b, "herd_service_restarts_total");
    put_svc(b, &labs, &v[i]);
    PUT(b, "} ");
    put_u64(b, v[i].s->fsm.restarts);
    PUT(b, "\n");
  }

  family(b, "herd_service_instance_ends_total", "counter",
         "Instances that ended while this daemon ran, by cause (the end state; FAILED split by cause).");
  for (size_t i = 0; i < n; i++)
    for (int k = 0; k < END__MAX; k++) {
      PUT(b, "herd_service_instance_ends_total");
      put_svc(b, &labs, &v[i]);
      PUT(b, ",reason=\"");
      put_str(b, service_end_name((enum service_end)k));
      PUT(b, "\"} ");
      put_u64(b, v[i].s->ends[k]);
      PUT(b, "\n");
    }

  family(b, "herd_service_uptime_seconds", "gauge",
         "How long the current instance has run (a batch job: since it began running); absent when none runs.");
  for (size_t i = 0; i < n; i++) {
    double up = service_uptime(v[i].s);
    if (up < 0) continue;
    PUT(b, "herd_service_uptime_seconds");
    put_svc(b, &labs, &v[i]);
    PUT(b, "} ");
    put_f(b, up);
    PUT(b, "\n");
  }

  family(b, "herd_service_checks_total", "counter", "Health check results, by result (services with a check).");
  for (size_t i = 0; i < n; i++) {
    const struct check_stats *cs = check_stats(v[i].s);
    if (!cs) continue;
    PUT(b, "herd_service_checks_total");
    put_svc(b, &labs, &v[i]);
    PUT(b, ",result=\"pass\"} ");
    put_u64(b, cs->passes);
    PUT(b, "\nherd_service_checks_total");
    put_svc(b, &labs, &v[i]);
    PUT(b, ",result=\"fail\"} ");
    put_u64(b, cs->runs - cs->passes);
    PUT(b, "\n");
  }

  family(b, "herd_service_check_ok", "gauge",
         "1 when the last health check passed, 0 when it failed; absent before one.");
  for (size_t i = 0; i < n; i++) {
    if (!check_last_msg(v[i].s)) continue;
    PUT(b, "herd_service_check_ok");
    put_svc(b, &labs, &v[i]);
    put(b, check_last_ok(v[i].s) ? "} 1\n" : "} 0\n", 4);
  }

  family(b, "herd_service_check_duration_seconds", "histogram", "How long health checks took.");
  static const double bounds[CHECK_LAT_NB] = CHECK_LAT_BOUNDS;
  struct buf lab = {0};
  for (size_t i = 0; i < n; i++) {
    const struct check_stats *cs = check_stats(v[i].s);
    if (!cs) continue;
    lab.len = 0;
    put(&lab, labs.data + v[i].off + 1, v[i].len - 1); /* without the brace */
    PUT(&lab, ",");
    histogram(b, "herd_service_check_duration_seconds", lab.data, bounds, cs->lat, CHECK_LAT_NB, cs->runs, cs->lat_sum);
  }
  buf_free(&lab);
  buf_free(&labs);
  free(v);
}

/* Slurm clusters and ssh hosts: a handful, read from what their APIs show. */
static void clusters_part(struct daemon *d, struct buf *b) {
  json_t *cl = slurm_clusters_json(d);
  size_t i;
  json_t *c;
  static const struct {
    const char *metric, *key, *help;
  } counters[] = {
      {"herd_slurm_request_errors_total", "errors", "Failed slurmrestd requests (transport errors and refusals)."},
      {"herd_slurm_received_bytes_total", "bytes_in", "Response bytes received from slurmrestd."},
      {"herd_slurm_sent_bytes_total", "bytes_out", "Request body bytes sent to slurmrestd."},
      {"herd_slurm_polls_total", "polls", "Job listings asked for."},
      {"herd_slurm_polls_unchanged_total", "polls_unchanged", "Job listings the cluster answered as unchanged."},
      {"herd_slurm_poll_seconds_total", "poll_seconds", "Time spent waiting for job listings."},
  };
  family(b, "herd_slurm_requests_total", "counter", "Requests sent to slurmrestd, by kind.");
  json_array_foreach(cl, i, c) {
    const char *name = json_string_value(json_object_get(c, "name"));
    const char *kind;
    json_t *x;
    json_object_foreach(json_object_get(c, "requests"), kind, x) {
      if (!strcmp(kind, "total")) continue;
      PUT(b, "herd_slurm_requests_total{cluster=\"");
      metrics_label(b, name);
      PUT(b, "\",kind=\"");
      metrics_label(b, kind);
      PUT(b, "\"} ");
      put_f(b, json_number_value(x));
      PUT(b, "\n");
    }
  }
  for (size_t k = 0; k < ARRAY_LEN(counters); k++) {
    family(b, counters[k].metric, "counter", counters[k].help);
    json_array_foreach(cl, i, c)
        sample1(b, counters[k].metric, "cluster", json_string_value(json_object_get(c, "name")),
                json_number_value(json_object_get(c, counters[k].key)));
  }
  family(b, "herd_slurm_reachable", "gauge", "1 while the cluster's slurmrestd answers, 0 after an error.");
  json_array_foreach(cl, i, c)
      sample1(b, "herd_slurm_reachable", "cluster", json_string_value(json_object_get(c, "name")),
              json_is_true(json_object_get(c, "reachable")));
  family(b, "herd_slurm_jobs", "gauge", "herd's jobs on the cluster, by Slurm's job state.");
  json_array_foreach(cl, i, c) {
    const char *state;
    json_t *x;
    json_object_foreach(json_object_get(c, "jobs"), state, x)
        sample2(b, "herd_slurm_jobs", "cluster", json_string_value(json_object_get(c, "name")), "state", state,
                json_number_value(x));
  }
  json_decref(cl);

  jobs_part(d, b);

  json_t *hosts = tunnel_hosts_json(d);
  family(b, "herd_ssh_host_up", "gauge", "1 while the ssh host's master connection is up.");
  json_array_foreach(hosts, i, c) sample1(b, "herd_ssh_host_up", "host", json_string_value(json_object_get(c, "name")),
                                          !strcmp(json_string_value(json_object_get(c, "state")), "up"));
  family(b, "herd_ssh_host_reconnects_total", "counter", "Times the ssh host's master connection was made again.");
  json_array_foreach(hosts, i, c)
      sample1(b, "herd_ssh_host_reconnects_total", "host", json_string_value(json_object_get(c, "name")),
              json_number_value(json_object_get(c, "reconnects")));
  json_decref(hosts);
}

/*
 * Descriptors open: poll() every slot of the descriptor table with no events; a closed one
 * answers POLLNVAL. Listing /proc/self/fd costs a dentry lookup per descriptor (0.9 ms of a
 * 2 ms scrape at 1,000 services); this is one syscall over the table (FDSize in
 * /proc/self/status), tens of microseconds.
 */
static size_t open_fds(rlim_t limit) {
  static struct pollfd *v;
  static size_t cap;
  size_t len = 0, size = 0;
  int err = 0;
  char *st = file_read("/proc/self/status", 0, &len, &err), *p = st ? strstr(st, "\nFDSize:") : NULL;
  if (p) size = strtoul(p + 8, NULL, 10);
  free(st);
  if (limit != RLIM_INFINITY && size > limit) size = limit; /* poll refuses more than RLIMIT_NOFILE */
  if (!size) return 0;
  if (size > cap) {
    v = xrealloc(v, size * sizeof *v);
    cap = size;
  }
  for (size_t i = 0; i < size; i++) v[i] = (struct pollfd){.fd = (int)i};
  if (poll(v, size, 0) < 0) return 0;
  size_t n = 0;
  for (size_t i = 0; i < size; i++) n += !(v[i].revents & POLLNVAL);
  return n;
}

/* /proc/self: the process collector's standard names (what every Prometheus client exports). */
static void process_part(struct daemon *d, struct buf *b) {
  size_t len = 0;
  int err = 0;
  char *text = file_read("/proc/self/stat", 4096, &len, &err);
  double utime = 0, stime = 0, vsize = 0, rss = 0;
  long tck = sysconf(_SC_CLK_TCK), page = sysconf(_SC_PAGESIZE);
  char *p = text ? strrchr(text, ')') : NULL;
  if (p) {
    /* After the command's ")": field 3 (the state letter) on; utime is field 14, stime 15,
     * vsize 23, rss 24 (pages). */
    unsigned long long f[25] = {0};
    char *save = NULL, *tok = strtok_r(p + 1, " ", &save);
    for (int k = 3; tok && k < 25; k++, tok = strtok_r(NULL, " ", &save)) f[k] = strtoull(tok, NULL, 10);
    utime = (double)f[14] / (double)tck;
    stime = (double)f[15] / (double)tck;
    vsize = (double)f[23];
    rss = (double)f[24] * (double)page;
  }
  free(text);
  struct rlimit rl = {0};
  getrlimit(RLIMIT_NOFILE, &rl);
  size_t fds = open_fds(rl.rlim_cur);
  family(b, "process_cpu_seconds_total", "counter", "User and system CPU time the daemon has used.");
  sample(b, "process_cpu_seconds_total", utime + stime);
  family(b, "process_resident_memory_bytes", "gauge", "The daemon's resident memory.");
  sample(b, "process_resident_memory_bytes", rss);
  family(b, "process_virtual_memory_bytes", "gauge", "The daemon's virtual memory.");
  sample(b, "process_virtual_memory_bytes", vsize);
  family(b, "process_open_fds", "gauge", "Descriptors the daemon has open.");
  sample(b, "process_open_fds", (double)fds);
  family(b, "process_max_fds", "gauge", "The daemon's descriptor limit (RLIMIT_NOFILE).");
  sample(b, "process_max_fds", rl.rlim_cur == RLIM_INFINITY ? INFINITY : (double)rl.rlim_cur);
  family(b, "process_start_time_seconds", "gauge", "When the daemon started, in seconds since the epoch.");
  sample(b, "process_start_time_seconds", d->start_wall);
}

/* Jobs by queue and state, the queues' slots; work items by queue and state. */
static void jobs_part(struct daemon *d, struct buf *b) {
  const char *q, *st;
  json_t *qo, *x;
  json_t *jc = jobs_counts(d);
  family(b, "herd_jobs", "gauge", "Jobs by queue and state (RUNNING: an attempt runs).");
  json_object_foreach(jc, q, qo) json_object_foreach(json_object_get(qo, "states"), st, x)
      sample2(b, "herd_jobs", "queue", q, "state", st, (double)json_integer_value(x));
  family(b, "herd_queue_slots_used", "gauge",
         "Slots of the queue its jobs hold (from an attempt's start to the job's rest).");
  json_object_foreach(jc, q, qo)
      sample1(b, "herd_queue_slots_used", "queue", q, (double)json_integer_value(json_object_get(qo, "slots")));
  family(b, "herd_queue_max_running", "gauge", "The queue's limit on running jobs (0: none).");
  json_object_foreach(jc, q, qo)
      sample1(b, "herd_queue_max_running", "queue", q, (double)json_integer_value(json_object_get(qo, "max_running")));
  json_decref(jc);
  json_t *wc = work_counts(d);
  family(b, "herd_work_items", "gauge", "Work items of the work queues by state (queued, running, success, failure).");
  json_object_foreach(wc, q, qo) json_object_foreach(qo, st, x)
      sample2(b, "herd_work_items", "queue", q, "state", st, (double)json_integer_value(x));
  json_decref(wc);
}

static void daemon_part(struct daemon *d, struct buf *b) {
  family(b, "herd_build_info", "gauge", "Always 1; the labels say which herd this is.");
  PUT(b, "herd_build_info{version=\"");
  metrics_label(b, HERD_VERSION);
  PUT(b, "\",api=\"");
  put_u64(b, HERD_API_VERSION);
  PUT(b, "\"} 1\n");
  family(b, "herd_shutting_down", "gauge", "1 while the daemon shuts down.");
  sample(b, "herd_shutting_down", d->shutting_down);
  family(b, "herd_control_connections", "gauge", "Open connections on the control socket.");
  sample(b, "herd_control_connections", (double)ctl_nconns(d->ctl));
  const struct heartbeat *hb = &d->hb;
  static const double lb[HB_LAG_NB] = HB_LAG_BOUNDS;
  family(b, "herd_loop_lag_seconds", "histogram",
         "How late the daemon's 1 s heartbeat fired: time the loop was busy when it was due.");
  histogram(b, "herd_loop_lag_seconds", "", lb, hb->lag, HB_LAG_NB, hb->ticks, hb->lag_sum);
  family(b, "herd_loop_lag_max_seconds", "gauge", "The latest the heartbeat has fired since the daemon started.");
  sample(b, "herd_loop_lag_max_seconds", hb->lag_max);
  const struct store_stats *ss = store_stats(d->store);
  family(b, "herd_store_commits_total", "counter", "Transactions committed to the store (herd.db).");
  sample(b, "herd_store_commits_total", (double)ss->commits);
  family(b, "herd_store_errors_total", "counter", "Failed store writes, commits and checkpoints.");
  sample(b, "herd_store_errors_total", (double)ss->errors);
  family(b, "herd_store_failing", "gauge", "1 when a store write failed and no commit has succeeded since.");
  sample(b, "herd_store_failing", ss->failing);
}

void api_metrics(struct daemon *d, struct conn *c, struct request *r, const char *unused) {
  /* Sized from the last scrape: one allocation, not twenty doublings of a 2 MB page. */
  static size_t hint = 64 * 1024;
  struct buf b = {.data = xmalloc(hint), .cap = hint};
  b.data[0] = '\0';
  daemon_part(d, &b);
  process_part(d, &b);
  services_part(d, &b);
  clusters_part(d, &b);
  if (b.len + 1 > hint) hint = b.len + b.len / 8 + 1;
  conn_reply_take(c, 200, CT_PROM, &b); /* the page is written from b, not copied */
}

/* ---- GET /v1/health ---- */

void api_health(struct daemon *d, struct conn *c, struct request *r, const char *unused) {
  double now = now_mono();
  const struct heartbeat *hb = &d->hb;
  const struct store_stats *ss = store_stats(d->store);
  double since_tick = now - hb->last_tick;
  json_t *loop =
      json_pack("{s:f,s:f,s:I}", "last_tick_ago", since_tick, "lag_max", hb->lag_max, "ticks", (json_int_t)hb->ticks);
  const char *serr = store_last_error(d->store);
  json_t *store = json_pack("{s:b,s:I,s:I,s:I,s:o,s:o}", "ok", !ss->failing, "commits", (json_int_t)ss->commits,
                            "errors", (json_int_t)ss->errors, "pending", (json_int_t)ss->pending, "last_commit_ago",
                            ss->last_commit_at ? json_real(now - ss->last_commit_at) : json_null(), "last_error",
                            serr ? json_string(serr) : json_null());
  /* The loop answers this request, so it turns now. It stood still if a tick is overdue
   * (a callback has held it that long) or came more than HB_STALLED late a moment ago: libuv
   * runs due timers before it reads sockets, so after a stall the tick comes first. */
  if (since_tick > HB_STALLED) {
    conn_error(c, 503, "loop_stalled", json_pack("{s:o,s:o}", "loop", loop, "store", store),
               "the daemon's loop has not ticked for %.1fs", since_tick);
    return;
  }
  if (hb->stall_at && now - hb->stall_at < HB_STALL_SHOWN) {
    conn_error(c, 503, "loop_stalled", json_pack("{s:o,s:o}", "loop", loop, "store", store),
               "the daemon's loop stood still for %.1fs, %.1fs ago", hb->stall, now - hb->stall_at);
    return;
  }
  if (ss->failing) {
    conn_error(c, 503, "store_failing", json_pack("{s:o,s:o}", "loop", loop, "store", store),
               "the store cannot write: %s", serr ? serr : "unknown error");
    return;
  }
  conn_reply(c, 200,
             json_pack("{s:b,s:o,s:o,s:b,s:I}", "ok", 1, "loop", loop, "store", store, "shutting_down",
                       d->shutting_down, "services", (json_int_t)d->nservices));
}
