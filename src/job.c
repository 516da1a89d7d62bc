/*
 * Jobs (see job.h): the queues' runner glue and the job API. A job is a service whose spec
 * has a "job" section; everything it does after its start goes through the state machine
 * like any service's. What is here: when it may start (its queue's order and limit), its
 * view, and the commands that act on many jobs at once (run, list, wait, kill, prune).
 */
#include "herd/job.h"

#include "herd/cfg.h"
#include "herd/cmd.h"
#include "herd/daemon.h"
#include "herd/log.h"
#include "herd/queue.h"
#include "herd/store.h"
#include "herd/work.h"

#include <errno.h>
#include <math.h>
#include <sqlite3.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

struct jqueue {
  struct list link;
  char *name;
  struct queue q;
  bool dirty;       /* a slot was given back: admit the next ones */
  double retention; /* finished jobs (and work items of the queue of this name) kept this long; 0: until pruned */
};

struct jobs {
  struct daemon *d;
  struct list queues;
  bool dirty; /* some queue is dirty */
  unsigned default_max;
  int64_t seq;      /* the last generated job name's number */
  uv_timer_t sweep; /* retention: forgets what is past it */
  bool sweep_open;
  /* History (below): past the most recent hot_max finished jobs, they leave memory for the
   * store's job_history table. */
  size_t hot_max;
  struct list done; /* finished jobs still in memory, oldest first */
  size_t ndone;
  json_t *hist;      /* {queue: {state: n}} of job_history, kept as rows come and go */
  struct list waits; /* herd wait streams (they count history rows too) */
  bool hist_ok;      /* the table and its statements are there */
  sqlite3_stmt *h_ins, *h_get, *h_page, *h_page_pfx, *h_after, *h_rowid, *h_counts, *h_failed, *h_sel, *h_sel_q, *h_del,
      *h_all;
};

struct job {
  struct queue_item qi;
  struct service *s;
  struct jqueue *q;
  bool slot;    /* it holds one of its queue's slots (from its start to its rest) */
  bool in_done; /* in the jobs' done list (finished, in memory) */
  struct list done_link;
  size_t rank; /* scratch: its place, while a listing is built */
};

static struct jqueue *jqueue_get(struct daemon *d, const char *name) {
  struct jobs *js = d->jobs;
  struct list *pos, *tmp;
  list_for_each_safe(pos, tmp, &js->queues) {
    struct jqueue *q = container_of(pos, struct jqueue, link);
    if (!strcmp(q->name, name)) return q;
  }
  struct jqueue *q = xcalloc(1, sizeof *q);
  q->name = xstrdup(name);
  queue_init(&q->q, js->default_max);
  list_add_tail(&js->queues, &q->link);
  return q;
}

static void prune_one(struct daemon *d, struct service *s);
static double finished_at(const struct service *s);
static bool match_any(const char *patterns, const char *name);
static void hist_open(struct daemon *d);
static void hist_overflow(struct daemon *d);
static size_t hist_prune(struct daemon *d, const char *match, const char *state, double before, const char *queue);
static void hist_counts(struct jobs *js, const char *match, size_t counts[S__MAX]);
static long hist_page(struct jobs *js, struct buf *b, const char *match, int want, long limit, long offset, char *last,
                      size_t lastlen);
static long hist_page_after(struct jobs *js, struct buf *b, const char *match, int want, long limit, int64_t row,
                            bool *more, char *last, size_t lastlen);
static int64_t hist_rowid(struct jobs *js, const char *name);
static void hist_failed(struct jobs *js, const char *match, json_t *failed);

/* Forget what is past its queue's retention; again in a while (the shortest retention's
 * quarter, from 1 s to 60 s). */
static void on_sweep(uv_timer_t *t) {
  struct jobs *js = container_of(t, struct jobs, sweep);
  struct daemon *d = js->d;
  double now = now_wall(), next = 60;
  struct list *pos, *tmp;
  list_for_each_safe(pos, tmp, &js->queues) {
    struct jqueue *q = container_of(pos, struct jqueue, link);
    if (q->retention <= 0) continue;
    if (q->retention / 4 < next) next = q->retention / 4;
    work_expire(d, q->name, q->retention);
  }
  size_t n = 0;
  list_for_each_safe(pos, tmp, &d->services) {
    struct service *s = container_of(pos, struct service, link);
    if (!s->job || s->removing || s->job->q->retention <= 0 || !svc_fsm_at_rest(&s->fsm) || s->start_at_rest) continue;
    if (now - finished_at(s) < s->job->q->retention) continue;
    prune_one(d, s);
    n++;
  }
  list_for_each_safe(pos, tmp, &js->queues) {
    struct jqueue *q = container_of(pos, struct jqueue, link);
    if (q->retention > 0) n += hist_prune(d, NULL, NULL, now - q->retention, q->name);
  }
  if (n) log_info("%zu finished job(s) past their queue's retention forgotten", n);
  if (next < 1) next = 1;
  uv_timer_start(&js->sweep, on_sweep, (uint64_t)(next * 1000), 0);
}

static void configure(struct daemon *d, const struct queue_spec *qs, size_t n) {
  struct list *pos, *tmp;
  list_for_each_safe(pos, tmp, &d->jobs->queues) {
    struct jqueue *q = container_of(pos, struct jqueue, link);
    q->q.max_running = d->jobs->default_max;
    q->retention = 0;
    q->dirty = true; /* a higher limit admits more now */
  }
  bool any = false;
  for (size_t i = 0; i < n; i++) {
    struct jqueue *q = jqueue_get(d, qs[i].name);
    q->q.max_running = qs[i].max_running;
    q->retention = qs[i].retention;
    any |= q->retention > 0;
  }
  d->jobs->dirty = true;
  if (!d->jobs->sweep_open) return;
  if (any)
    uv_timer_start(&d->jobs->sweep, on_sweep, 0, 0); /* a first sweep now, then by the shortest retention */
  else
    uv_timer_stop(&d->jobs->sweep);
}

void jobs_init(struct daemon *d, const struct queue_spec *q, size_t n) {
  struct jobs *js = xcalloc(1, sizeof *js);
  list_init(&js->queues);
  long ncpu = sysconf(_SC_NPROCESSORS_ONLN);
  js->default_max = ncpu > 0 ? (unsigned)ncpu : 1;
  d->jobs = js;
  js->d = d;
  uv_timer_init(d->loop, &js->sweep);
  js->sweep_open = true;
  char *v = store_meta_get(d->store, "job_seq");
  if (v) js->seq = strtoll(v, NULL, 10);
  free(v);
  jqueue_get(d, "default");
  list_init(&js->done);
  list_init(&js->waits);
  js->hot_max = d->o.finished_jobs >= 0 ? (size_t)d->o.finished_jobs : 1000;
  hist_open(d);
  configure(d, q, n);
}

void jobs_configure(struct daemon *d, const struct queue_spec *q, size_t n) { configure(d, q, n); }

void jobs_close(struct daemon *d) {
  if (!d->jobs || !d->jobs->sweep_open) return;
  d->jobs->sweep_open = false;
  uv_close((uv_handle_t *)&d->jobs->sweep, NULL);
}

void jobs_free(struct daemon *d) {
  if (!d->jobs) return;
  struct list *pos, *tmp;
  list_for_each_safe(pos, tmp, &d->jobs->queues) {
    struct jqueue *q = container_of(pos, struct jqueue, link);
    queue_free(&q->q);
    free(q->name);
    free(q);
  }
  struct jobs *js = d->jobs;
  sqlite3_stmt *all[] = {js->h_ins, js->h_get,   js->h_page, js->h_page_pfx, js->h_counts, js->h_failed,
                         js->h_sel, js->h_sel_q, js->h_del,  js->h_all,      js->h_after,  js->h_rowid};
  for (size_t i = 0; i < ARRAY_LEN(all); i++) sqlite3_finalize(all[i]);
  json_decref(js->hist);
  free(d->jobs);
  d->jobs = NULL;
}

void job_attach(struct service *s, const char *stored_state) {
  struct job *j = xcalloc(1, sizeof *j);
  queue_item_init(&j->qi, s->spec->job->priority);
  j->s = s;
  j->q = jqueue_get(s->d, s->spec->job->queue);
  s->job = j;
  int st = stored_state ? svc_state_parse(stored_state) : -1;
  /* What a daemon before us started still holds its slot (job_settle gives it back if it
   * turns out to be over). */
  if (st >= 0 && st != S_PENDING && st != S_STOPPED && st != S_COMPLETED) {
    queue_take(&j->q->q);
    j->slot = true;
  }
}

static void give_back(struct daemon *d, struct job *j) {
  queue_remove(&j->q->q, &j->qi);
  if (!j->slot) return;
  j->slot = false;
  queue_release(&j->q->q);
  j->q->dirty = true;
  d->jobs->dirty = true;
}

void job_detach(struct service *s) {
  if (!s->job) return;
  if (s->job->in_done && s->d->jobs) {
    list_del(&s->job->done_link);
    s->d->jobs->ndone--;
  }
  if (s->d->jobs) give_back(s->d, s->job);
  free(s->job);
  s->job = NULL;
}

bool job_admit(struct service *s, char *why, size_t len) {
  struct job *j = s->job;
  if (!j || j->slot) return true;
  if (!queue_waiting(&j->qi) && queue_take_now(&j->q->q, j->qi.prio)) {
    j->slot = true;
    return true;
  }
  queue_push(&j->q->q, &j->qi);
  snprintf(why, len, "queued in %s (priority %d, %u of %u running)", j->q->name, j->qi.prio, j->q->q.running,
           j->q->q.max_running);
  return false;
}

/* Over for good: at rest, no start or retry to come. */
static bool finished(const struct service *s) {
  return svc_fsm_at_rest(&s->fsm) && !s->start_at_rest && !s->fsm.restart_pending;
}

void job_settle(struct service *s) {
  struct job *j = s->job;
  if (!j) return;
  if (svc_fsm_at_rest(&s->fsm)) give_back(s->d, j);
  /* (a job of the config files stays a service: its file would bring it back) */
  bool fin = finished(s) && !s->removing && !strcmp(s->spec->source, "api");
  if (fin == j->in_done) return;
  struct jobs *js = s->d->jobs;
  if (fin) {
    list_add_tail(&js->done, &j->done_link);
    js->ndone++;
  } else {
    list_del(&j->done_link);
    js->ndone--;
  }
  j->in_done = fin;
}

void jobs_reconcile(struct daemon *d) {
  struct jobs *js = d->jobs;
  if (!js || d->shutting_down) return;
  /* A start may fail at once and give its slot back: admit again, a bounded number of times. */
  for (int pass = 0; js->dirty && pass < 64; pass++) {
    js->dirty = false;
    struct list *pos, *tmp;
    list_for_each_safe(pos, tmp, &js->queues) {
      struct jqueue *q = container_of(pos, struct jqueue, link);
      if (!q->dirty) continue;
      q->dirty = false;
      struct queue_item *it;
      while ((it = queue_admit(&q->q))) {
        struct job *j = container_of(it, struct job, qi);
        j->slot = true;
        char why[160];
        snprintf(why, sizeof why, "its turn came in queue %s", q->name);
        service_want_up(j->s, why);
      }
    }
  }
  hist_overflow(d);
}

/* ---- views ---- */

/* The state a job is in, in the jobs' words: a running instance is RUNNING. */
static const char *job_state(const struct service *s) {
  return svc_state_running(s->fsm.state) ? "RUNNING" : svc_state_name(s->fsm.state);
}

json_t *jobs_counts(struct daemon *d) {
  static const svc_state shown[] = {S_PENDING,   S_STARTING, S_STOPPING, S_BACKOFF, S_UNKNOWN,
                                    S_COMPLETED, S_FAILED,   S_TIMEOUT,  S_STOPPED};
  const char *qn, *sn;
  json_t *qo, *x;
  json_object_foreach(d->jobs->hist, qn, qo) jqueue_get(d, qn); /* (a queue only the history knows) */
  json_t *o = json_object();
  struct list *pos, *tmp;
  list_for_each_safe(pos, tmp, &d->jobs->queues) {
    struct jqueue *q = container_of(pos, struct jqueue, link);
    json_t *st = json_object();
    for (size_t i = 0; i < ARRAY_LEN(shown); i++)
      json_object_set_new(st, shown[i] == S_STARTING ? "RUNNING" : svc_state_name(shown[i]), json_integer(0));
    json_object_foreach(json_object_get(d->jobs->hist, q->name), sn, x)
        json_object_set_new(st, sn, json_integer(json_integer_value(json_object_get(st, sn)) + json_integer_value(x)));
    json_object_set_new(o, q->name,
                        json_pack("{s:I,s:I,s:o}", "max_running", (json_int_t)q->q.max_running, "slots",
                                  (json_int_t)q->q.running, "states", st));
  }
  list_for_each_safe(pos, tmp, &d->services) {
    struct service *s = container_of(pos, struct service, link);
    if (!s->job || !s->job->q || s->removing) continue;
    json_t *st = json_object_get(json_object_get(o, s->job->q->name), "states");
    json_object_set_new(st, job_state(s), json_integer(json_integer_value(json_object_get(st, job_state(s))) + 1));
  }
  return o;
}

static int job_state_parse(const char *st) {
  if (!strcasecmp(st, "RUNNING")) return S_STARTING;
  return svc_state_parse(st);
}

static bool job_in_state(const struct service *s, int st) {
  return st == S_STARTING ? svc_state_running(s->fsm.state) : (int)s->fsm.state == st;
}

/* Patterns: globs separated by commas (a name has none). */
static bool match_any(const char *patterns, const char *name) {
  if (!patterns || !*patterns) return true;
  char buf[1024];
  snprintf(buf, sizeof buf, "%s", patterns);
  char *save = NULL;
  for (char *p = strtok_r(buf, ",", &save); p; p = strtok_r(NULL, ",", &save))
    if (glob_match(p, name)) return true;
  return false;
}

static size_t job_rank(const struct job *j) { return queue_waiting(&j->qi) ? queue_rank(&j->q->q, &j->qi) : 0; }

static void attempt_json(void *arg, const struct store_instance *in) {
  json_t *o = json_pack("{s:i,s:f}", "attempt", (int)in->attempt, "started_at", in->started_at);
  json_object_set_new(o, "pid", in->pid > 0 ? json_integer(in->pid) : json_null());
  json_object_set_new(o, "state", in->end_state ? json_string(in->end_state) : json_string("RUNNING"));
  json_object_set_new(o, "exit_code", in->end_state && in->exit_code >= 0 ? json_integer(in->exit_code) : json_null());
  json_object_set_new(o, "signal", in->signal > 0 ? json_integer(in->signal) : json_null());
  json_object_set_new(o, "reason", in->reason ? json_string(in->reason) : json_null());
  json_object_set_new(o, "ended_at", in->end_state ? json_real(in->ended_at) : json_null());
  if (in->job_id > 0) { /* a Slurm job: each attempt is a job of its own */
    json_object_set_new(o, "job_id", json_integer(in->job_id));
    json_object_set_new(o, "cluster", in->cluster ? json_string(in->cluster) : json_null());
  }
  json_array_append_new(arg, o);
}

json_t *job_json(struct service *s, bool full) {
  struct job *j = s->job;
  const struct job_spec *js = s->spec->job;
  size_t rank = job_rank(j);
  json_t *o = json_pack("{s:s,s:s,s:i,s:i}", "state", job_state(s), "queue", js->queue, "priority", js->priority,
                        "retries", js->retries);
  json_object_set_new(o, "timeout", js->timeout > 0 ? json_real(js->timeout) : json_null());
  json_object_set_new(o, "position", rank ? json_integer((json_int_t)rank) : json_null());
  if (full) {
    json_t *a = json_array();
    store_each_instance(s->d->store, s->spec->name, attempt_json, a);
    json_object_set_new(o, "attempts", a);
  }
  return o;
}

/* The end of a finished job (wall clock), for prune --older-than. */
static double finished_at(const struct service *s) {
  if (s->has_exit && s->last_exit_wall > 0) return s->last_exit_wall;
  return now_wall() - (now_mono() - s->fsm.since);
}

/* ---- POST /v1/jobs ---- */

static const char *const flat_job_keys[] = {"queue", "priority", "retries", "timeout"};

void api_job_run(struct daemon *d, struct conn *c, struct request *r, const char *unused) {
  (void)unused;
  if (store_stats(d->store)->failing) {
    /* A job is acknowledged only once it is in the database (kill -9 loses none). */
    const char *why = store_last_error(d->store);
    conn_error(c, 503, "store_failing", NULL, "the store cannot write now (%s): no job was made; try again",
               why && *why ? why : "a write failed");
    return;
  }
  json_error_t je;
  json_t *o = json_loadb(r->body, r->body_len, JSON_REJECT_DUPLICATES, &je);
  struct spec_set set = {0};
  struct cfg_errors errs = {0};
  if (!json_is_object(o)) {
    conn_error(c, 400, "bad_body", NULL, "the body must be a JSON object (a job: command, name, queue, ...)%s%s",
               o ? "" : ": ", o ? "" : je.text);
    goto out;
  }
  if (d->shutting_down) {
    conn_error(c, 503, "shutting_down", NULL, "the daemon is shutting down");
    goto out;
  }
  /* The job's own keys may be given flat, as the CLI's options are: they go to "job". */
  json_t *job = json_object_get(o, "job");
  if (!job) {
    job = json_object();
    json_object_set_new(o, "job", job);
  }
  if (json_is_object(job))
    for (size_t i = 0; i < ARRAY_LEN(flat_job_keys); i++) {
      json_t *v = json_object_get(o, flat_job_keys[i]);
      if (!v) continue;
      json_object_set(job, flat_job_keys[i], v);
      json_object_del(o, flat_job_keys[i]);
    }
  bool named = json_object_get(o, "name") != NULL;
  char gen[64];
  if (!named) {
    /* job-N: N counts on across daemons (the store's meta), skipping names in use. */
    do {
      snprintf(gen, sizeof gen, "job-%lld", (long long)++d->jobs->seq);
    } while (daemon_find(d, gen) || job_archived(d, gen));
    char num[32];
    snprintf(num, sizeof num, "%lld", (long long)d->jobs->seq);
    store_meta_put(d->store, "job_seq", num);
    json_object_set_new(o, "name", json_string(gen));
  }
  char *text = json_dumps(o, JSON_COMPACT);
  int bad = cfg_parse_text("request body", text, strlen(text), &set, &errs);
  free(text);
  if (bad || set.n != 1) {
    if (errs.n) {
      char *first = cfg_error_str(&errs.v[0]);
      conn_error(c, 422, "invalid_job", json_pack("{s:o}", "errors", cfg_errors_json(&errs)), "%s", first);
      free(first);
    } else {
      conn_error(c, 422, "invalid_job", NULL, "the body holds no job");
    }
    goto out;
  }
  struct spec *sp = set.v[0];
  struct service *old = daemon_find(d, sp->name);
  if (old || job_archived(d, sp->name)) {
    conn_error(c, 409, "exists", NULL, "\"%s\" already exists (%s): prune it first, or choose another name", sp->name,
               !old       ? "a finished job in the history"
               : old->job ? job_state(old)
                          : "a service");
    goto out;
  }
  /* Its dependencies exist (a new name can close no cycle: nothing may depend on a name
   * that does not exist). */
  for (size_t i = 0; i < sp->ndeps; i++) {
    struct service *t = daemon_find(d, sp->deps[i].service);
    if (!t || t->removing || !strcmp(sp->deps[i].service, sp->name)) {
      conn_error(c, 422, "invalid_job", NULL, "depends_on: no service named \"%s\"", sp->deps[i].service);
      goto out;
    }
  }
  free(sp->source);
  sp->source = xstrdup("api");
  set.v[0] = NULL;
  set.n = 0;
  store_put_service(d->store, sp->name, "api", sp->canon, "up");
  struct service *s = service_create(d, sp, true, NULL, 0);
  /* Committed before the answer: a job the caller was told about survives a kill -9. */
  store_flush(d->store);
  conn_reply(c, 201, json_pack("{s:o}", "job", service_json(s)));
out:
  json_decref(o);
  spec_set_free(&set);
  cfg_errors_free(&errs);
}

/* ---- GET /v1/jobs ---- */

static int cmp_item(const void *a, const void *b) {
  const struct queue_item *x = *(struct queue_item *const *)a, *y = *(struct queue_item *const *)b;
  if (x->prio != y->prio) return x->prio > y->prio ? -1 : 1;
  return x->seq < y->seq ? -1 : x->seq > y->seq;
}

/* Every waiting job's place, in one sort per queue (a rank each would be quadratic). */
static void rank_all(struct daemon *d) {
  struct list *pos, *tmp;
  list_for_each_safe(pos, tmp, &d->jobs->queues) {
    struct jqueue *q = container_of(pos, struct jqueue, link);
    if (!q->q.n) continue;
    struct queue_item **v = xcalloc(q->q.n, sizeof *v);
    memcpy(v, q->q.heap, q->q.n * sizeof *v);
    qsort(v, q->q.n, sizeof *v, cmp_item);
    for (size_t i = 0; i < q->q.n; i++) container_of(v[i], struct job, qi)->rank = i + 1;
    free(v);
  }
}

static int query_state(struct conn *c, struct request *r, int *out) {
  char sb[32];
  const char *st = req_query(r, "state", sb, sizeof sb);
  *out = -1;
  if (st && (*out = job_state_parse(st)) < 0) {
    conn_error(c, 400, "bad_state", json_pack("{s:s}", "param", "state"), "unknown state \"%s\"", st);
    return -1;
  }
  return 0;
}

static int query_count(struct conn *c, struct request *r, const char *key, long lo, long hi, long *out) {
  char b[32];
  const char *v = req_query(r, key, b, sizeof b);
  if (!v) return 0;
  errno = 0;
  long n = strtol(v, NULL, 10);
  if (!*v || strspn(v, "0123456789") != strlen(v) || errno == ERANGE || n < lo || n > hi) {
    conn_error(c, 400, "bad_param", json_pack("{s:s}", "param", key), "%s must be a whole number from %ld to %ld", key,
               lo, hi);
    return -1;
  }
  *out = n;
  return 0;
}

void api_jobs(struct daemon *d, struct conn *c, struct request *r, const char *unused) {
  (void)unused;
  char mb[1024];
  const char *match = req_query(r, "match", mb, sizeof mb);
  char ab[256];
  const char *after = req_query(r, "after", ab, sizeof ab);
  int want;
  long limit = 1000, offset = 0;
  if (query_state(c, r, &want) < 0 || query_count(c, r, "limit", 1, 100000, &limit) < 0 ||
      query_count(c, r, "offset", 0, LONG_MAX / 2, &offset) < 0)
    return;
  /* after=NAME: the page that follows that row (a cursor: no row skipped one by one). */
  int64_t after_row = 0;
  bool after_mem = false;
  if (after) {
    struct service *a = daemon_find(d, after);
    if (offset) {
      conn_error(c, 400, "bad_param", json_pack("{s:s}", "param", "after"),
                 "after and offset go one without the other");
      return;
    } else if (a && a->job && !a->removing) {
      after_mem = true;
    } else if (!(after_row = hist_rowid(d->jobs, after))) {
      conn_error(c, 400, "bad_param", json_pack("{s:s}", "param", "after"), "after: no job named \"%s\"", after);
      return;
    }
  }
  rank_all(d);
  struct buf b = {0};
  buf_lit(&b, "{\"jobs\":[");
  /* The history's rows first (the oldest), then the jobs in memory. */
  size_t counts[S__MAX] = {0};
  hist_counts(d->jobs, match, counts);
  long seen = 0, shown = 0;
  bool more = false;
  char last[256] = "";
  for (int i = 0; i < S__MAX; i++)
    if (want < 0 || i == want) seen += (long)counts[i];
  if (after_row)
    shown = hist_page_after(d->jobs, &b, match, want, limit, after_row, &more, last, sizeof last);
  else if (!after && offset < seen)
    shown = hist_page(d->jobs, &b, match, want, limit, offset, last, sizeof last);
  bool skipping = after_mem;
  struct list *pos, *tmp;
  list_for_each_safe(pos, tmp, &d->services) {
    struct service *s = container_of(pos, struct service, link);
    if (!s->job || s->removing || !match_any(match, s->spec->name)) continue;
    counts[svc_state_running(s->fsm.state) ? S_STARTING : s->fsm.state]++;
    if (want >= 0 && !job_in_state(s, want)) continue;
    if (skipping) { /* (up to the cursor's row, itself included) */
      seen++;
      skipping = strcmp(s->spec->name, after) != 0;
      continue;
    }
    if (seen++ < offset) continue;
    if (shown >= limit) {
      more = true;
      continue;
    }
    snprintf(last, sizeof last, "%s", s->spec->name);
    const struct job_spec *js = s->spec->job;
    if (shown++) buf_lit(&b, ",");
    buf_lit(&b, "{\"name\":");
    buf_json_string(&b, s->spec->name);
    buf_printf(&b, ",\"state\":\"%s\",\"attempt\":%u,\"queue\":", job_state(s), s->fsm.attempt);
    buf_json_string(&b, js->queue);
    buf_printf(&b, ",\"priority\":%d,\"retries\":%d", js->priority, js->retries);
    if (queue_waiting(&s->job->qi))
      buf_printf(&b, ",\"position\":%zu", s->job->rank);
    else
      buf_lit(&b, ",\"position\":null");
    if (s->pid > 0)
      buf_printf(&b, ",\"pid\":%d", s->pid);
    else
      buf_lit(&b, ",\"pid\":null");
    if (s->has_exit && s->last_code >= 0 && !s->last_sig)
      buf_printf(&b, ",\"exit_code\":%d", s->last_code);
    else
      buf_lit(&b, ",\"exit_code\":null");
    if (s->has_exit && s->last_sig > 0)
      buf_printf(&b, ",\"signal\":%d", s->last_sig);
    else
      buf_lit(&b, ",\"signal\":null");
    double up = service_uptime(s);
    if (up >= 0)
      buf_printf(&b, ",\"runtime\":%.3f", up);
    else
      buf_lit(&b, ",\"runtime\":null");
    buf_lit(&b, ",\"reason\":");
    buf_json_string(&b, s->reason);
    buf_lit(&b, ",\"tags\":[");
    for (char **t = s->spec->tags; t && *t; t++) {
      if (t != s->spec->tags) buf_lit(&b, ",");
      buf_json_string(&b, *t);
    }
    buf_lit(&b, "]}");
  }
  more = more || (!after && seen > offset + shown);
  buf_printf(&b, "],\"matched\":%ld,\"more\":%s,", seen, more ? "true" : "false");
  if (more && last[0]) { /* the cursor for the next page */
    buf_lit(&b, "\"next_after\":");
    buf_json_string(&b, last);
    buf_lit(&b, ",");
  }
  buf_lit(&b, "\"counts\":{");
  bool first = true;
  for (int i = 0; i < S__MAX; i++) {
    if (!counts[i]) continue;
    buf_printf(&b, "%s\"%s\":%zu", first ? "" : ",", i == S_STARTING ? "RUNNING" : svc_state_name(i), counts[i]);
    first = false;
  }
  buf_printf(&b, "},\"api\":%d}\n", HERD_API_VERSION);
  conn_reply_take(c, 200, "application/json", &b);
}

/* ---- wait: a stream of progress lines until every matching job is finished ---- */

enum { W_QUEUED, W_RUNNING, W_DONE, W_FAILED, W__MAX };

/* Where a job is for a wait: finished (done or failed), running (or about to retry), queued. */
static int wait_class(const struct service *s) {
  if (svc_fsm_at_rest(&s->fsm) && !s->start_at_rest && !s->fsm.restart_pending)
    return s->fsm.state == S_COMPLETED ? W_DONE : W_FAILED;
  if (s->fsm.state == S_PENDING && !s->fsm.proc_alive) return W_QUEUED;
  return W_RUNNING;
}

struct jwait {
  struct svc_watch w;
  struct conn *c;
  struct daemon *d;
  char match[1024];
  uv_timer_t timer;
  bool armed;
  double t0;
  size_t total;          /* matching jobs at the last count */
  struct list hlink;     /* in the jobs' waits */
  size_t hdone, hfailed; /* matching jobs in the history: kept as rows come and go */
};

static void jwait_free(uv_handle_t *h) { free(container_of((uv_timer_t *)h, struct jwait, timer)); }

static void jwait_gone(struct conn *c, void *arg) {
  (void)c;
  struct jwait *wt = arg;
  list_del(&wt->w.link);
  list_del(&wt->hlink);
  uv_close((uv_handle_t *)&wt->timer, jwait_free);
}

/* Count, say so; the end when nothing is left to run. Returns true when it ended. */
static bool jwait_progress(struct jwait *wt) {
  size_t n[W__MAX] = {0}, total = 0;
  json_t *failed = json_array();
  struct list *pos, *tmp;
  n[W_DONE] = wt->hdone;
  n[W_FAILED] = wt->hfailed;
  total = wt->hdone + wt->hfailed;
  list_for_each_safe(pos, tmp, &wt->d->services) {
    struct service *s = container_of(pos, struct service, link);
    if (!s->job || s->removing || !match_any(wt->match, s->spec->name)) continue;
    int k = wait_class(s);
    n[k]++;
    total++;
    if (k == W_FAILED && json_array_size(failed) < 100)
      json_array_append_new(failed, json_pack("{s:s,s:s,s:s}", "name", s->spec->name, "state", job_state(s), "reason",
                                              s->last_error[0] ? s->last_error : s->reason));
  }
  bool end = !n[W_QUEUED] && !n[W_RUNNING];
  wt->total = total;
  json_t *o = json_pack("{s:I,s:I,s:I,s:I,s:I,s:f,s:b}", "done", (json_int_t)n[W_DONE], "failed",
                        (json_int_t)n[W_FAILED], "running", (json_int_t)n[W_RUNNING], "queued", (json_int_t)n[W_QUEUED],
                        "total", (json_int_t)total, "elapsed", now_mono() - wt->t0, "finished", end);
  if (end && wt->hfailed) hist_failed(wt->d->jobs, wt->match, failed);
  if (end)
    json_object_set_new(o, "failed_jobs", failed);
  else
    json_decref(failed);
  char *line = json_dumps(o, JSON_COMPACT);
  json_decref(o);
  size_t len = strlen(line);
  line[len] = '\n'; /* (json_dumps' terminator: the line's end; the length says where) */
  struct conn *c = wt->c;
  int wrc = conn_stream_write(c, line, len + 1);
  free(line);
  if (!end && wrc == 0) return false;
  /* Over: this wait lets go of the connection first, so that its end is not a "gone". */
  conn_park(c, NULL, NULL, NULL, 0);
  list_del(&wt->w.link);
  list_del(&wt->hlink);
  uv_close((uv_handle_t *)&wt->timer, jwait_free);
  if (wrc == 0) conn_stream_end(c);
  return true;
}

static void jwait_tick(uv_timer_t *t) {
  struct jwait *wt = container_of(t, struct jwait, timer);
  wt->armed = false;
  jwait_progress(wt);
}

static void jwait_transition(struct svc_watch *w, struct service *s, svc_state from, svc_state to, const char *reason,
                             int64_t id, double ts) {
  (void)from, (void)to, (void)reason, (void)id, (void)ts;
  struct jwait *wt = container_of(w, struct jwait, w);
  if (!s->job || wt->armed || !match_any(wt->match, s->spec->name)) return;
  /* Changes come in bursts (a thousand jobs end in one turn): one line for the burst; a
   * count goes over every job, so a big wait counts less often. */
  wt->armed = true;
  uv_timer_start(&wt->timer, jwait_tick, wt->total > 1000 ? 100 : 20, 0);
}

void api_jobs_wait(struct daemon *d, struct conn *c, struct request *r, const char *unused) {
  (void)unused;
  struct jwait *wt = xcalloc(1, sizeof *wt);
  if (!req_query(r, "match", wt->match, sizeof wt->match) || !wt->match[0]) {
    free(wt);
    conn_error(c, 400, "bad_match", json_pack("{s:s}", "param", "match"), "match names the jobs to wait for (globs)");
    return;
  }
  size_t hc[S__MAX] = {0};
  hist_counts(d->jobs, wt->match, hc);
  for (int i = 0; i < S__MAX; i++) {
    if (i == S_COMPLETED)
      wt->hdone += hc[i];
    else
      wt->hfailed += hc[i];
  }
  bool any = wt->hdone + wt->hfailed > 0;
  struct list *pos, *tmp;
  list_for_each_safe(pos, tmp, &d->services) {
    struct service *s = container_of(pos, struct service, link);
    if (s->job && !s->removing && match_any(wt->match, s->spec->name)) {
      any = true;
      break;
    }
  }
  if (!any) {
    conn_error(c, 404, "no_such_job", NULL, "no job matches \"%s\"", wt->match);
    free(wt);
    return;
  }
  wt->c = c;
  wt->d = d;
  wt->t0 = now_mono();
  uv_timer_init(d->loop, &wt->timer);
  wt->w.on_transition = jwait_transition;
  list_add_tail(&d->watches, &wt->w.link);
  list_add_tail(&d->jobs->waits, &wt->hlink);
  conn_stream_begin(c, 200, "application/x-ndjson");
  conn_park(c, wt, jwait_gone, NULL, 0);
  jwait_progress(wt);
}

/* ---- kill and prune ---- */

void api_jobs_kill(struct daemon *d, struct conn *c, struct request *r, const char *unused) {
  (void)unused;
  char mb[1024], fb[16];
  const char *match = req_query(r, "match", mb, sizeof mb);
  const char *fl = req_query(r, "failed", fb, sizeof fb);
  bool failed = fl && (!*fl || !strcmp(fl, "1") || !strcmp(fl, "true"));
  if ((!match || !*match) && !failed) {
    conn_error(c, 400, "bad_match", NULL, "kill takes match (globs) or failed=1");
    return;
  }
  json_t *a = json_array();
  struct list *pos, *tmp;
  list_for_each_safe(pos, tmp, &d->services) {
    struct service *s = container_of(pos, struct service, link);
    if (!s->job || s->removing || (match && *match && !match_any(match, s->spec->name))) continue;
    int k = wait_class(s);
    if (k == W_DONE || k == W_FAILED) continue; /* over already */
    /* --failed: the jobs that failed an attempt and would try again. */
    if (failed && !(s->fsm.state == S_BACKOFF || s->fsm.attempt > 1)) continue;
    json_array_append_new(a, json_string(s->spec->name));
    service_stop(s);
  }
  conn_reply(c, 200, json_pack("{s:o}", "killed", a));
}

void api_jobs_prune(struct daemon *d, struct conn *c, struct request *r, const char *unused) {
  (void)unused;
  char mb[1024], ob[32];
  const char *match = req_query(r, "match", mb, sizeof mb);
  const char *older = req_query(r, "older_than", ob, sizeof ob);
  double age = 0;
  if (older && duration_parse(older, &age) < 0) {
    conn_error(c, 400, "bad_duration", json_pack("{s:s}", "param", "older_than"), "older_than \"%s\" is not a duration",
               older);
    return;
  }
  int want;
  if (query_state(c, r, &want) < 0) return;
  double now = now_wall();
  size_t n = 0;
  struct list *pos, *tmp;
  list_for_each_safe(pos, tmp, &d->services) {
    struct service *s = container_of(pos, struct service, link);
    if (!s->job || s->removing || !svc_fsm_at_rest(&s->fsm) || s->start_at_rest || s->fsm.restart_pending) continue;
    if (match && *match && !match_any(match, s->spec->name)) continue;
    if (want >= 0 && !job_in_state(s, want)) continue;
    if (age > 0 && now - finished_at(s) < age) continue;
    prune_one(d, s);
    n++;
  }
  n += hist_prune(d, match && *match ? match : NULL,
                  want < 0             ? NULL
                  : want == S_STARTING ? "RUNNING"
                                       : svc_state_name((svc_state)want),
                  now - age, NULL);
  conn_reply(c, 200, json_pack("{s:I}", "pruned", (json_int_t)n));
}

/* Forget a finished job: its service, its attempts, its log. */
static void prune_one(struct daemon *d, struct service *s) {
  store_del_instances(d->store, s->spec->name);
  char *log = xstrdup(s->log_path);
  service_remove(s); /* at rest: gone at once (freed once its handles close) */
  unlink(log);
  free(log);
}

/* ---- logs per attempt ---- */

static const char *find_start(const char *p, const char *end) {
  static const char mark[] = "] started pid ";
  size_t ml = sizeof mark - 1;
  for (; p + ml <= end; p++) {
    p = memchr(p, ']', (size_t)(end - p));
    if (!p || p + ml > end) return NULL;
    if (!memcmp(p, mark, ml)) return p;
  }
  return NULL;
}

bool job_log_slice(const char *data, size_t n, unsigned attempt, size_t *start, size_t *len) {
  const char *end = data + n, *p = data;
  char want[32];
  int wl = snprintf(want, sizeof want, ", attempt %u", attempt);
  while ((p = find_start(p, end))) {
    const char *eol = memchr(p, '\n', (size_t)(end - p));
    if (!eol) eol = end;
    const char *a = memmem(p, (size_t)(eol - p), want, (size_t)wl);
    if (a && (a[wl] == ')' || a[wl] == ',')) {
      const char *bol = p;
      while (bol > data && bol[-1] != '\n') bol--;
      const char *next = find_start(eol, end);
      if (next)
        while (next > eol && next[-1] != '\n') next--;
      *start = (size_t)(bol - data);
      *len = (size_t)((next ? next : end) - bol);
      return true;
    }
    p = eol;
  }
  return false;
}

/* ---- history ----
 *
 * A daemon keeps the most recent hot_max finished jobs in memory (herd status shows them
 * like any service); older ones move, one row each, to the store's job_history table (their
 * attempts stay in instances, their logs on disk), so memory stays bounded whatever the
 * number of jobs run. The row and the service's removal are journaled writes of the same
 * transaction: a failed commit keeps both, in order. Listings, counts, wait, prune and the
 * retention sweep read the history beside the jobs in memory; a queue's counts are kept
 * here as rows come and go, so an unfiltered listing never counts a million rows.
 */

#define HIST_COLS "name,queue,priority,retries,state,attempt,exit_code,signal,reason,ended_at,tags,spec"

static const char hist_schema[] =
    "CREATE TABLE IF NOT EXISTS job_history(name TEXT PRIMARY KEY, queue TEXT NOT NULL, priority INTEGER NOT NULL,"
    " retries INTEGER NOT NULL, state TEXT NOT NULL, attempt INTEGER NOT NULL, exit_code INTEGER, signal INTEGER,"
    " reason TEXT NOT NULL, ended_at REAL NOT NULL, tags TEXT NOT NULL, spec TEXT NOT NULL);"
    "CREATE INDEX IF NOT EXISTS job_history_queue ON job_history(queue, ended_at);"
    "CREATE INDEX IF NOT EXISTS job_history_state ON job_history(queue, state);";

/* herd_match(PATTERNS, NAME): the jobs' glob patterns (comma-separated), in SQL. */
static void sql_match(sqlite3_context *cx, int argc, sqlite3_value **v) {
  (void)argc;
  const char *p = (const char *)sqlite3_value_text(v[0]), *n = (const char *)sqlite3_value_text(v[1]);
  sqlite3_result_int(cx, n && match_any(p, n));
}

static const char *col(sqlite3_stmt *s, int i) {
  const char *t = (const char *)sqlite3_column_text(s, i);
  return t ? t : "";
}

static void hist_add(struct jobs *js, const char *queue, const char *state, json_int_t delta) {
  json_t *q = json_object_get(js->hist, queue);
  if (!q) {
    q = json_object();
    json_object_set_new(js->hist, queue, q);
  }
  json_int_t v = json_integer_value(json_object_get(q, state)) + delta;
  json_object_set_new(q, state, json_integer(v < 0 ? 0 : v));
}

static void hist_open(struct daemon *d) {
  struct jobs *js = d->jobs;
  sqlite3 *db = store_db(d->store);
  js->hist = json_object();
  if (sqlite3_create_function(db, "herd_match", 2, SQLITE_UTF8 | SQLITE_DETERMINISTIC, NULL, sql_match, NULL, NULL) !=
          SQLITE_OK ||
      sqlite3_exec(db, hist_schema, NULL, NULL, NULL) != SQLITE_OK ||
      store_prepare(d->store, &js->h_ins,
                    "INSERT OR REPLACE INTO job_history(" HIST_COLS ") VALUES(?,?,?,?,?,?,?,?,?,?,?,?)") ||
      store_prepare(d->store, &js->h_get, "SELECT " HIST_COLS " FROM job_history WHERE name=?") ||
      store_prepare(d->store, &js->h_page,
                    "SELECT " HIST_COLS " FROM job_history WHERE herd_match(?1,name) AND (?2 IS NULL OR state=?2) "
                    "ORDER BY rowid LIMIT ?3 OFFSET ?4") ||
      store_prepare(d->store, &js->h_page_pfx,
                    "SELECT " HIST_COLS " FROM job_history WHERE name>=?5 AND name<?6 AND herd_match(?1,name) AND "
                    "(?2 IS NULL OR state=?2) ORDER BY rowid LIMIT ?3 OFFSET ?4") ||
      store_prepare(d->store, &js->h_after,
                    "SELECT " HIST_COLS " FROM job_history WHERE rowid>?4 AND herd_match(?1,name) AND "
                    "(?2 IS NULL OR state=?2) ORDER BY rowid LIMIT ?3") ||
      store_prepare(d->store, &js->h_rowid, "SELECT rowid FROM job_history WHERE name=?") ||
      store_prepare(
          d->store, &js->h_counts,
          "SELECT state,count(*) FROM job_history WHERE name>=?2 AND name<?3 AND herd_match(?1,name) GROUP BY state") ||
      store_prepare(d->store, &js->h_failed,
                    "SELECT name,state,reason FROM job_history WHERE name>=?3 AND name<?4 AND herd_match(?1,name) AND "
                    "state<>'COMPLETED' ORDER BY rowid LIMIT ?2") ||
      store_prepare(d->store, &js->h_sel,
                    "SELECT name,queue,state FROM job_history WHERE name>=?5 AND name<?6 AND herd_match(?1,name) AND "
                    "(?2 IS NULL OR state=?2) AND ended_at<=?3 AND (?4 IS NULL OR queue=?4) ORDER BY rowid") ||
      store_prepare(d->store, &js->h_sel_q,
                    "SELECT name,queue,state FROM job_history WHERE queue=?1 AND ended_at<=?2 ORDER BY ended_at") ||
      store_prepare(d->store, &js->h_del, "DELETE FROM job_history WHERE name=?") ||
      store_prepare(d->store, &js->h_all, "SELECT queue,state,count(*) FROM job_history GROUP BY queue,state")) {
    log_error("store: no job history (%s): finished jobs stay in memory", sqlite3_errmsg(db));
    return;
  }
  while (sqlite3_step(js->h_all) == SQLITE_ROW)
    hist_add(js, col(js->h_all, 0), col(js->h_all, 1), sqlite3_column_int64(js->h_all, 2));
  sqlite3_reset(js->h_all);
  js->hist_ok = true;
}

/* The names a match can reach: from its patterns' common literal prefix to that prefix
 * followed by DEL (names are [A-Za-z0-9._-]: every one starting with the prefix is below
 * it), bound at ?lo and ?lo+1, so SQLite walks that range of the name index only. Returns
 * the prefix's length (0: every name). */
static size_t bind_range(sqlite3_stmt *s, int lo, const char *match) {
  char pfx[256] = "";
  size_t n = 0;
  bool first = true;
  for (const char *p = match ? match : ""; first || *p;) {
    const char *end = strchr(p, ',');
    size_t plen = end ? (size_t)(end - p) : strlen(p), lit = strcspn(p, "*?[\\");
    if (lit > plen) lit = plen;
    if (first) {
      n = lit < sizeof pfx - 2 ? lit : sizeof pfx - 2;
      memcpy(pfx, p, n);
    } else {
      size_t k = 0;
      while (k < n && k < lit && pfx[k] == p[k]) k++;
      n = k;
    }
    first = false;
    if (!end) break;
    p = end + 1;
  }
  pfx[n] = '\0';
  sqlite3_bind_text(s, lo, pfx, (int)n, SQLITE_TRANSIENT);
  pfx[n] = '\x7f';
  sqlite3_bind_text(s, lo + 1, pfx, (int)n + 1, SQLITE_TRANSIENT);
  return n;
}

bool job_archived(struct daemon *d, const char *name) {
  struct jobs *js = d->jobs;
  if (!js || !js->hist_ok) return false;
  sqlite3_reset(js->h_get);
  sqlite3_bind_text(js->h_get, 1, name, -1, SQLITE_TRANSIENT);
  bool found = sqlite3_step(js->h_get) == SQLITE_ROW;
  sqlite3_reset(js->h_get);
  return found;
}

/* Matching history rows by state (into counts, added). */
static void hist_counts(struct jobs *js, const char *match, size_t counts[S__MAX]) {
  if (!js->hist_ok) return;
  if (!match || !*match) { /* every row: the counts kept here */
    const char *q, *st;
    json_t *qo, *n;
    json_object_foreach(js->hist, q, qo) json_object_foreach(qo, st, n) {
      int i = svc_state_parse(st);
      if (i >= 0) counts[i] += (size_t)json_integer_value(n);
    }
    return;
  }
  sqlite3_stmt *s = js->h_counts;
  sqlite3_reset(s);
  sqlite3_bind_text(s, 1, match, -1, SQLITE_TRANSIENT);
  bind_range(s, 2, match);
  while (sqlite3_step(s) == SQLITE_ROW) {
    int i = svc_state_parse(col(s, 0));
    if (i >= 0) counts[i] += (size_t)sqlite3_column_int64(s, 1);
  }
  sqlite3_reset(s);
}

/* One history row as GET /v1/jobs shows a job. */
static void hist_row(struct buf *b, sqlite3_stmt *s) {
  buf_lit(b, "{\"name\":");
  buf_json_string(b, col(s, 0));
  buf_lit(b, ",\"state\":");
  buf_json_string(b, col(s, 4));
  buf_printf(b, ",\"attempt\":%lld,\"queue\":", (long long)sqlite3_column_int64(s, 5));
  buf_json_string(b, col(s, 1));
  buf_printf(b, ",\"priority\":%d,\"retries\":%d,\"position\":null,\"pid\":null", sqlite3_column_int(s, 2),
             sqlite3_column_int(s, 3));
  for (int k = 6; k <= 7; k++) {
    if (k == 6)
      buf_lit(b, ",\"exit_code\":");
    else
      buf_lit(b, ",\"signal\":");
    if (sqlite3_column_type(s, k) == SQLITE_NULL)
      buf_lit(b, "null");
    else
      buf_printf(b, "%d", sqlite3_column_int(s, k));
  }
  buf_lit(b, ",\"runtime\":null,\"reason\":");
  buf_json_string(b, col(s, 8));
  buf_lit(b, ",\"tags\":");
  buf_printf(b, "%s", *col(s, 10) ? col(s, 10) : "[]"); /* (JSON written by archive) */
  buf_lit(b, ",\"archived\":true}");
}

/* A page of matching history rows (oldest first), appended as a list's items; how many. */
static long hist_page(struct jobs *js, struct buf *b, const char *match, int want, long limit, long offset, char *last,
                      size_t lastlen) {
  if (!js->hist_ok) return 0;
  /* With a prefix, the rows in its range of the name index (then in their order); without
   * one, the table in its order, until the page is full. */
  sqlite3_stmt *s = js->h_page_pfx;
  sqlite3_reset(s);
  sqlite3_clear_bindings(s);
  if (!bind_range(s, 5, match)) {
    s = js->h_page;
    sqlite3_reset(s);
    sqlite3_clear_bindings(s);
  }
  if (match && *match) sqlite3_bind_text(s, 1, match, -1, SQLITE_TRANSIENT);
  if (want >= 0)
    sqlite3_bind_text(s, 2, want == S_STARTING ? "RUNNING" : svc_state_name((svc_state)want), -1, SQLITE_STATIC);
  sqlite3_bind_int64(s, 3, limit);
  sqlite3_bind_int64(s, 4, offset);
  long n = 0;
  while (sqlite3_step(s) == SQLITE_ROW) {
    if (n++) buf_lit(b, ",");
    hist_row(b, s);
    snprintf(last, lastlen, "%s", col(s, 0));
  }
  sqlite3_reset(s);
  return n;
}

/* The rows after the one at `row` (in the listing's order), up to limit; *more when there
 * are others after them. */
static long hist_page_after(struct jobs *js, struct buf *b, const char *match, int want, long limit, int64_t row,
                            bool *more, char *last, size_t lastlen) {
  if (!js->hist_ok) return 0;
  sqlite3_stmt *s = js->h_after;
  sqlite3_reset(s);
  sqlite3_clear_bindings(s);
  if (match && *match) sqlite3_bind_text(s, 1, match, -1, SQLITE_TRANSIENT);
  if (want >= 0)
    sqlite3_bind_text(s, 2, want == S_STARTING ? "RUNNING" : svc_state_name((svc_state)want), -1, SQLITE_STATIC);
  sqlite3_bind_int64(s, 3, limit + 1);
  sqlite3_bind_int64(s, 4, row);
  long n = 0;
  while (sqlite3_step(s) == SQLITE_ROW) {
    if (n == limit) {
      *more = true;
      break;
    }
    if (n++) buf_lit(b, ",");
    hist_row(b, s);
    snprintf(last, lastlen, "%s", col(s, 0));
  }
  sqlite3_reset(s);
  return n;
}

static int64_t hist_rowid(struct jobs *js, const char *name) {
  if (!js->hist_ok) return 0;
  sqlite3_stmt *s = js->h_rowid;
  sqlite3_reset(s);
  sqlite3_bind_text(s, 1, name, -1, SQLITE_TRANSIENT);
  int64_t id = sqlite3_step(s) == SQLITE_ROW ? sqlite3_column_int64(s, 0) : 0;
  sqlite3_reset(s);
  return id;
}

/* The failed ones among the matching rows, for a wait's last line (up to 100 in all). */
static void hist_failed(struct jobs *js, const char *match, json_t *failed) {
  if (!js->hist_ok || json_array_size(failed) >= 100) return;
  sqlite3_stmt *s = js->h_failed;
  sqlite3_reset(s);
  sqlite3_bind_text(s, 1, match, -1, SQLITE_TRANSIENT);
  sqlite3_bind_int64(s, 2, 100 - (sqlite3_int64)json_array_size(failed));
  bind_range(s, 3, match);
  while (sqlite3_step(s) == SQLITE_ROW)
    json_array_append_new(failed,
                          json_pack("{s:s,s:s,s:s}", "name", col(s, 0), "state", col(s, 1), "reason", col(s, 2)));
  sqlite3_reset(s);
}

/* A job's row came (+1) or went (-1): the waits that count it. */
static void waits_count(struct jobs *js, const char *name, bool done, int delta) {
  struct list *pos, *tmp;
  list_for_each_safe(pos, tmp, &js->waits) {
    struct jwait *wt = container_of(pos, struct jwait, hlink);
    if (!match_any(wt->match, name)) continue;
    size_t *n = done ? &wt->hdone : &wt->hfailed;
    if (delta > 0)
      (*n)++;
    else if (*n)
      (*n)--;
  }
}

/* A finished job leaves memory for the history. */
static void archive(struct daemon *d, struct service *s) {
  struct jobs *js = d->jobs;
  struct job *j = s->job;
  const struct job_spec *jsp = s->spec->job;
  json_t *ta = json_array();
  for (char **t = s->spec->tags; t && *t; t++) json_array_append_new(ta, json_string(*t));
  char *tags = json_dumps(ta, JSON_COMPACT);
  json_decref(ta);
  const char *state = job_state(s);
  bool code = s->has_exit && s->last_code >= 0 && !s->last_sig, sig = s->has_exit && s->last_sig > 0;
  store_write(d->store, js->h_ins, "job history", "ttiitiNNtrtt", s->spec->name, jsp->queue, (int64_t)jsp->priority,
              (int64_t)jsp->retries, state, (int64_t)s->fsm.attempt, (int64_t)(code ? s->last_code : -1),
              (int64_t)(sig ? s->last_sig : -1), s->reason, finished_at(s), tags, s->spec->canon);
  free(tags);
  hist_add(js, jsp->queue, state, 1);
  waits_count(js, s->spec->name, s->fsm.state == S_COMPLETED, +1);
  list_del(&j->done_link);
  js->ndone--;
  j->in_done = false;
  service_remove(s); /* (at rest: no event; its attempts and log stay) */
}

/* Past hot_max finished jobs in memory: the oldest go to the history (a bounded number a
 * turn; not while the store fails: they wait in memory). */
static void hist_overflow(struct daemon *d) {
  struct jobs *js = d->jobs;
  if (!js->hist_ok || js->ndone <= js->hot_max || store_stats(d->store)->failing) return;
  for (int n = 0; js->ndone > js->hot_max && n < 1000; n++)
    archive(d, container_of(js->done.next, struct job, done_link)->s);
}

/* Forget history rows: matching, in that state, ended at or before `before`, of that queue
 * (NULL: any); their attempts and logs too. How many. */
static size_t hist_prune(struct daemon *d, const char *match, const char *state, double before, const char *queue) {
  struct jobs *js = d->jobs;
  if (!js->hist_ok) return 0;
  sqlite3_stmt *s = js->h_sel;
  sqlite3_reset(s);
  sqlite3_clear_bindings(s);
  if (queue && !match && !state) { /* a queue's retention: its index, the rows past it only */
    s = js->h_sel_q;
    sqlite3_reset(s);
    sqlite3_bind_text(s, 1, queue, -1, SQLITE_TRANSIENT);
    sqlite3_bind_double(s, 2, before);
  } else {
    if (match) sqlite3_bind_text(s, 1, match, -1, SQLITE_TRANSIENT);
    if (state) sqlite3_bind_text(s, 2, state, -1, SQLITE_TRANSIENT);
    sqlite3_bind_double(s, 3, before);
    if (queue) sqlite3_bind_text(s, 4, queue, -1, SQLITE_TRANSIENT);
    bind_range(s, 5, match);
  }
  struct row {
    char *name, *queue, *state;
  } *v = NULL;
  size_t n = 0, cap = 0;
  while (sqlite3_step(s) == SQLITE_ROW) { /* (read first, then deleted) */
    if (n == cap) v = xrealloc(v, (cap = cap ? cap * 2 : 64) * sizeof *v);
    v[n++] = (struct row){xstrdup(col(s, 0)), xstrdup(col(s, 1)), xstrdup(col(s, 2))};
  }
  sqlite3_reset(s);
  for (size_t i = 0; i < n; i++) {
    store_write(d->store, js->h_del, "job history", "t", v[i].name);
    store_del_instances(d->store, v[i].name);
    char *log = xasprintf("%s/%s.log", d->log_dir, v[i].name);
    unlink(log);
    free(log);
    hist_add(js, v[i].queue, v[i].state, -1);
    waits_count(js, v[i].name, !strcmp(v[i].state, "COMPLETED"), -1);
    free(v[i].name);
    free(v[i].queue);
    free(v[i].state);
  }
  free(v);
  return n;
}

/* GET /v1/services/NAME of a job in the history: its row, its spec and its attempts. */
json_t *job_archived_json(struct daemon *d, const char *name) {
  struct jobs *js = d->jobs;
  if (!js || !js->hist_ok) return NULL;
  sqlite3_stmt *s = js->h_get;
  sqlite3_reset(s);
  sqlite3_bind_text(s, 1, name, -1, SQLITE_TRANSIENT);
  if (sqlite3_step(s) != SQLITE_ROW) {
    sqlite3_reset(s);
    return NULL;
  }
  json_t *ex = json_object(), *job = json_object();
  for (int k = 6; k <= 7; k++)
    json_object_set_new(ex, k == 6 ? "code" : "signal",
                        sqlite3_column_type(s, k) == SQLITE_NULL ? json_null()
                                                                 : json_integer(sqlite3_column_int(s, k)));
  json_object_set_new(ex, "at", json_real(sqlite3_column_double(s, 9)));
  json_object_set_new(job, "state", json_string(col(s, 4)));
  json_object_set_new(job, "queue", json_string(col(s, 1)));
  json_object_set_new(job, "priority", json_integer(sqlite3_column_int(s, 2)));
  json_object_set_new(job, "retries", json_integer(sqlite3_column_int(s, 3)));
  json_object_set_new(job, "position", json_null());
  json_t *o =
      json_pack("{s:s,s:s,s:s,s:s,s:b,s:I,s:o,s:o}", "name", name, "state", col(s, 4), "reason", col(s, 8), "wanted",
                "down", "archived", 1, "attempt", (json_int_t)sqlite3_column_int64(s, 5), "last_exit", ex, "job", job);
  json_t *tags = json_loads(col(s, 10), 0, NULL), *spec = json_loads(col(s, 11), 0, NULL);
  json_object_set_new(o, "tags", tags ? tags : json_array());
  json_object_set_new(o, "spec", spec ? spec : json_null());
  sqlite3_reset(s);
  json_t *a = json_array();
  store_each_instance(d->store, name, attempt_json, a);
  json_object_set_new(job, "attempts", a);
  return o;
}
