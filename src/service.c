/*
 * The runner: a service object owns its state machine, its one timer, its log pipe
 * and its current process; it feeds events to svc_step() and carries out the effects
 * in order. Everything here runs on the loop thread, from loop callbacks.
 */
#include "herd/check.h"
#include "herd/daemon.h"
#include "herd/job.h"
#include "herd/log.h"
#include "herd/run.h"
#include "herd/store.h"
#include "herd/tunnel.h"

#include <math.h>
#include <signal.h>
#include <stdlib.h>
#include <string.h>

static size_t hash_name(const char *s) {
  size_t h = 1469598103934665603ULL;
  for (; *s; s++) h = (h ^ (unsigned char)*s) * 1099511628211ULL;
  return h;
}

struct service *daemon_find(struct daemon *d, const char *name) {
  if (!d->hcap) return NULL;
  for (struct service *s = d->htab[hash_name(name) & (d->hcap - 1)]; s; s = s->hnext)
    if (!strcmp(s->spec->name, name)) return s;
  return NULL;
}

static void hash_insert(struct daemon *d, struct service *s) {
  if (d->nservices * 2 >= d->hcap) {
    size_t ncap = d->hcap ? d->hcap * 2 : 64;
    struct service **nt = xcalloc(ncap, sizeof *nt);
    struct list *pos, *tmp;
    list_for_each_safe(pos, tmp, &d->services) {
      struct service *x = container_of(pos, struct service, link);
      if (x == s) continue; /* already on the list; inserted below */
      size_t b = hash_name(x->spec->name) & (ncap - 1);
      x->hnext = nt[b];
      nt[b] = x;
    }
    free(d->htab);
    d->htab = nt;
    d->hcap = ncap;
  }
  size_t b = hash_name(s->spec->name) & (d->hcap - 1);
  s->hnext = d->htab[b];
  d->htab[b] = s;
}

static void hash_remove(struct daemon *d, struct service *s) {
  struct service **pp = &d->htab[hash_name(s->spec->name) & (d->hcap - 1)];
  while (*pp && *pp != s) pp = &(*pp)->hnext;
  if (*pp) *pp = s->hnext;
}

static void instance_str(const struct service *s, char *buf, size_t len) {
  if (s->pid > 0)
    snprintf(buf, len, "pid %d", s->pid);
  else if (s->instance > 0)
    snprintf(buf, len, "instance %lld", (long long)s->instance);
  else
    snprintf(buf, len, "-");
}

static void on_timer(uv_timer_t *t) {
  struct service *s = container_of(t, struct service, timer);
  if (s->fsm.state == S_PENDING && s->fsm.want_up && !s->fsm.proc_alive && s->be->ready && !s->be->ready(s)) {
    /* A start put off for a descriptor (EV_DEFERRED): still none; look again in a while
     * without a STARTING -> PENDING round trip in the events each time. */
    timer_arm(s->d->loop, &s->timer, on_timer, now_mono() + SVC_DEFER_RETRY);
    return;
  }
  service_event(s, EV_DEADLINE, 0, 0, NULL);
  if (!s->fsm.proc_alive && !s->be->busy(s)) logpipe_detach(s); /* the reader waits for no one */
}

static void publish(struct service *s, const struct svc_fx *x) {
  struct daemon *d = s->d;
  double ts = now_wall();
  snprintf(s->reason, sizeof s->reason, "%s", x->reason);
  d->deps_dirty = true;
  /* What the next daemon resumes from (same transaction as the event). */
  store_set_state(d->store, s->spec->name, svc_state_name(x->to), s->fsm.restarts);
  if (x->to == S_FAILED || x->to == S_TIMEOUT) snprintf(s->last_error, sizeof s->last_error, "%s", x->reason);
  int64_t id = store_event_add(d->store, ts, s->spec->name, s->instance, svc_state_name(x->from), svc_state_name(x->to),
                               x->reason);
  char inst[48], tr[48];
  instance_str(s, inst, sizeof inst);
  snprintf(tr, sizeof tr, "%s -> %s", svc_state_name(x->from), svc_state_name(x->to));
  enum log_level lvl = (x->to == S_FAILED || x->to == S_TIMEOUT || x->to == S_UNHEALTHY) ? LOG_WARN : LOG_INFO;
  log_msg(lvl, s->spec->name, inst, tr, "%s", x->reason);
  struct list *pos, *tmp;
  list_for_each_safe(pos, tmp, &s->watches) {
    struct svc_watch *w = container_of(pos, struct svc_watch, link);
    if (w->on_transition) w->on_transition(w, s, x->from, x->to, x->reason, id, ts);
  }
  list_for_each_safe(pos, tmp, &d->watches) {
    struct svc_watch *w = container_of(pos, struct svc_watch, link);
    if (w->on_transition) w->on_transition(w, s, x->from, x->to, x->reason, id, ts);
  }
}

const char *service_end_name(enum service_end e) {
  static const char *const names[] = {
      [END_COMPLETED] = "completed", [END_STOPPED] = "stopped",           [END_EXIT_CODE] = "exit_code",
      [END_SIGNAL] = "signal",       [END_SPAWN_FAILED] = "spawn_failed", [END_TIMEOUT] = "timeout",
      [END_OTHER] = "other"};
  static_assert(ARRAY_LEN(names) == END__MAX, "one name per end cause");
  return (unsigned)e < END__MAX ? names[e] : "?";
}

static enum service_end end_cause(const struct service *s, svc_state to) {
  switch (to) {
  case S_COMPLETED: return END_COMPLETED;
  case S_STOPPED: return END_STOPPED;
  case S_TIMEOUT: return END_TIMEOUT;
  default: break;
  }
  if (s->last_spawn_failed) return END_SPAWN_FAILED;
  if (s->last_sig > 0) return END_SIGNAL;
  if (s->last_code > 0) return END_EXIT_CODE;
  return END_OTHER;
}

/* Carry out the effects in order. What backends post meanwhile waits for the end (run.h). */
static void apply(struct service *s, const struct svc_fx_list *fx) {
  struct daemon *d = s->d;
  for (int i = 0; i < fx->n; i++) {
    const struct svc_fx *x = &fx->fx[i];
    switch (x->type) {
    case FX_TRANSITION: publish(s, x); break;
    case FX_SPAWN: run_start(s); break; /* asynchronous: answered by an event */
    case FX_SIGNAL: s->be->signal(s, x->sig); break;
    case FX_ARM: timer_arm(d->loop, &s->timer, on_timer, x->at); break;
    case FX_DISARM: uv_timer_stop(&s->timer); break;
    case FX_REASON:
      if (strcmp(s->reason, x->reason)) snprintf(s->reason, sizeof s->reason, "%s", x->reason);
      break;
    case FX_INSTANCE_END:
      s->ends[end_cause(s, x->to)]++;
      s->has_exit = true;
      s->last_exit_wall = now_wall();
      store_instance_end(d->store, s->instance, svc_state_name(x->to), s->last_code, s->last_sig, x->reason,
                         s->last_exit_wall);
      if (x->to == S_FAILED || x->to == S_TIMEOUT) snprintf(s->last_error, sizeof s->last_error, "%s", x->reason);
      break;
    case FX_CHECKS_START: check_start(s); break;
    case FX_CHECKS_STOP: check_stop(s); break;
    case FX__MAX: break;
    }
  }
}

static bool service_busy(struct service *s) {
  return s->be->busy(s) || (s->fsm.proc_alive && !(s->be->may_leave && s->be->may_leave(s)));
}

/* Asked after every event while a shutdown waits for the last service: a walk over all of
 * them each time was quadratic (10,000 services stopping: 10^8 steps). So the walk starts
 * at the service that was busy last time (d->idle_cursor) and goes round once: while that
 * one is busy the answer costs one look, and "idle" is said only after a whole round saw
 * every service idle. */
bool services_idle(struct daemon *d) {
  struct service *c = d->idle_cursor;
  if (c && service_busy(c)) return false;
  struct list *start = c ? &c->link : &d->services, *pos = start;
  do {
    if (pos != &d->services) {
      struct service *s = container_of(pos, struct service, link);
      if (service_busy(s)) {
        d->idle_cursor = s;
        return false;
      }
    }
    pos = pos->next;
  } while (pos != start);
  d->idle_cursor = NULL;
  return true;
}

void service_check_idle(struct daemon *d) {
  /* Not finish() here: we may be deep in a callback chain (curl's, a close callback). */
  if (d->shutting_down && !d->finish_pending && services_idle(d)) d->finish_pending = true;
}

static void on_timer_close(uv_handle_t *h) { service_unref(container_of((uv_timer_t *)h, struct service, timer)); }

void service_ref(struct service *s) { s->nhandles++; }

void service_unref(struct service *s) {
  struct daemon *d = s->d;
  /* A removed service (on d->dying, its handles closed or closing) is freed with its last
   * reference. Only that one: a walk over every dying service here made the teardown of
   * 10,000 services quadratic. */
  if (--s->nhandles == 0 && s->closed) {
    list_del(&s->link);
    service_free(s);
  }
  service_check_idle(d);
}

void service_close_handles(struct service *s) {
  s->closed = true;
  tunnel_release(s, !s->d->leaving); /* leaving: the forward stays with its master */
  s->be->release(s);
  check_close(s);
  if (!uv_is_closing((uv_handle_t *)&s->timer)) uv_close((uv_handle_t *)&s->timer, on_timer_close);
  logpipe_close(s);
}

void service_free(struct service *s) {
  run_forget(s);
  job_detach(s);
  s->be->detach(s);
  spec_free(s->spec);
  spec_free(s->next_spec);
  free(s->fifo_path);
  free(s->log_path);
  free(s);
}

/* The state machine's policy: the spec's, the backend's batch mode, and, checked through an
 * ssh host, an unhealthy grace no shorter than the time a cut path can go unnoticed. */
static void service_policy(struct service *s) {
  spec_policy(s->spec, &s->pol);
  s->pol.batch = s->be->batch;
  double w = tunnel_dead_window(s);
  if (s->pol.restart_on_unhealthy && s->pol.unhealthy_grace < w) s->pol.unhealthy_grace = w;
}

/* When the service is at rest: a pending spec swap or removal can go ahead. */
/* A service reached through an ssh host: its fixed local endpoint points at the instance
 * while it runs (or is out of sight, UNKNOWN), and at nothing otherwise. */
void service_endpoint_sync(struct service *s) {
  if (!s->spec->ssh || s->closed) return;
  const char *h = s->spec->endpoint.host, *target = h && *h ? h : s->host; /* a job's node */
  bool want = s->fsm.proc_alive && !s->fsm.launching &&
              (svc_state_running(s->fsm.state) || s->fsm.state == S_UNKNOWN) && *target && s->port > 0;
  tunnel_sync(s, want, target, s->port);
}

static void after_step(struct service *s) {
  if (s->job) job_settle(s); /* a job at rest gives its queue slot back */
  service_endpoint_sync(s);
  if (!svc_fsm_at_rest(&s->fsm) || s->be->busy(s)) return;
  if (s->next_spec) {
    struct spec *old = s->spec;
    s->d->ndeps_services += (s->next_spec->ndeps > 0) - (old->ndeps > 0);
    s->spec = s->next_spec;
    s->next_spec = NULL;
    spec_free(old);
    check_close(s); /* the new spec may check differently, or not at all */
    check_attach(s);
    const struct backend_ops *be = run_backend(s->spec->backend);
    if (be != s->be) { /* at rest: nothing of the old backend's is running */
      s->be->detach(s);
      s->be = be;
    }
    s->be->attach(s);
    service_policy(s);
  }
  if (s->start_at_rest && !s->removing) {
    s->start_at_rest = false;
    if (s->fsm.want_up) service_want_up(s, s->start_at_rest_why);
    return;
  }
  if (s->removing && !s->destroyed) {
    s->destroyed = true;
    if (s->spec->ndeps) s->d->ndeps_services--;
    struct daemon *d = s->d;
    struct list *pos, *tmp;
    list_for_each_safe(pos, tmp, &s->watches) {
      struct svc_watch *w = container_of(pos, struct svc_watch, link);
      list_del(&w->link);
      if (w->on_gone) w->on_gone(w, s);
    }
    hash_remove(d, s);
    if (d->idle_cursor == s) d->idle_cursor = NULL;
    list_del(&s->link);
    d->nservices--;
    log_msg(LOG_INFO, s->spec->name, NULL, NULL, "removed");
    unlink(s->fifo_path);
    /* Freed by service_unref once its last handle has closed. */
    list_add_tail(&d->dying, &s->link);
    service_close_handles(s);
  }
  service_check_idle(s->d);
}

void service_event(struct service *s, svc_event_type type, int code, int sig, const char *msg) {
  struct svc_event ev = {.type = type, .code = code, .sig = sig, .msg = msg};
  service_feed(s, &ev);
}

/* Apply a list of effects; events posted meanwhile are fed once the outermost list is done. */
static void apply_then_drain(struct service *s, const struct svc_fx_list *fx, bool settle) {
  struct daemon *d = s->d;
  d->run_depth++;
  apply(s, fx);
  if (settle) after_step(s);
  d->run_depth--;
  if (!d->run_depth) run_drain(d);
}

void service_feed(struct service *s, const struct svc_event *ev) {
  if (s->destroyed || s->closed) return;
  struct svc_fx_list fx;
  if (ev->type == EV_EXIT || (ev->type == EV_SPAWN_FAILED && s->fsm.proc_alive)) {
    s->last_code = ev->code;
    s->last_sig = ev->sig;
    s->last_spawn_failed = ev->type == EV_SPAWN_FAILED;
  }
  svc_step(&s->fsm, &s->pol, ev, now_mono(), &fx);
  apply_then_drain(s, &fx, true);
}

double service_uptime(struct service *s) {
  if (s->pid > 0 || (s->be->batch && s->fsm.proc_alive && svc_state_running(s->fsm.state)))
    return now_mono() - s->started_mono;
  return -1;
}

void service_add_watch(struct service *s, struct svc_watch *w) { list_add_tail(&s->watches, &w->link); }

struct service *service_create(struct daemon *d, struct spec *spec, bool want_up, const char *stored_state,
                               unsigned restarts) {
  struct service *s = xcalloc(1, sizeof *s);
  s->d = d;
  s->spec = spec;
  if (spec->ndeps) d->ndeps_services++;
  s->log_fd = -1;
  list_init(&s->logfd_link);
  list_init(&s->watches);
  s->be = run_backend(spec->backend);
  service_policy(s);
  if (spec->job) job_attach(s, stored_state);
  svc_fsm_init(&s->fsm, d->seed ^ hash_name(spec->name));
  s->fifo_path = xasprintf("%s/%s.fifo", d->run_dir, spec->name);
  s->log_path = xasprintf("%s/%s.log", d->log_dir, spec->name);
  uv_timer_init(d->loop, &s->timer);
  s->nhandles = 1;
  list_add_tail(&d->services, &s->link);
  d->stops_all_sent = false;
  d->nservices++;
  hash_insert(d, s);
  struct store_instance last;
  bool has_last = store_last_instance(d->store, spec->name, &last) == 0;
  char *last_cmdline = NULL, *last_cluster = NULL, *last_reason = NULL;
  if (has_last) {
    s->instance = last.id;
    s->fsm.attempt = last.attempt;
    s->last_port = last.port;
    if (last.end_state) {
      s->has_exit = true;
      s->last_code = last.exit_code;
      s->last_sig = last.signal;
      s->last_exit_wall = last.ended_at;
      if (last.reason && (!strcmp(last.end_state, "FAILED") || !strcmp(last.end_state, "TIMEOUT")))
        snprintf(s->last_error, sizeof s->last_error, "%s", last.reason);
    }
    /* Its strings live until the next store call: copies go to the backend's resume. */
    last_cmdline = last.cmdline ? xstrdup(last.cmdline) : NULL;
    last_cluster = last.cluster ? xstrdup(last.cluster) : NULL;
    last_reason = last.end_state && last.reason ? xstrdup(last.reason) : NULL;
    last.cmdline = last_cmdline;
    last.cluster = last_cluster;
    last.service = spec->name;
    last.end_state = last.reason = NULL;
  }
  s->be->attach(s);
  check_attach(s);
  char err[256];
  if (logpipe_open(s, err, sizeof err) < 0) {
    snprintf(s->last_error, sizeof s->last_error, "%s", err);
    log_msg(LOG_ERROR, spec->name, NULL, NULL, "%s", err);
  }
  int st = stored_state ? svc_state_parse(stored_state) : -1;
  if (st < 0) {
    free(last_cmdline);
    free(last_cluster);
    free(last_reason);
    if (want_up) service_want_up(s, "herd started it");
    return s;
  }
  /* A daemon ran this service before us: resume where it left off. Its backend says
   * whether the last instance is still there (and watches it again if so). */
  struct run_resume rr = {0};
  bool open_instance = s->instance && !s->has_exit;
  s->be->resume(s, open_instance ? &last : NULL, &rr);
  if (open_instance && rr.alive) {
    if (rr.pid_found) store_instance_pid(d->store, s->instance, rr.pid, rr.starttime);
    s->pid = rr.pid;
    s->starttime = rr.starttime;
    s->job_id = last.job_id;
    s->port = s->last_port;
    s->started_wall = last.started_at;
    s->started_mono = rr.since ? now_mono() - (now_wall() - rr.since) : now_mono();
  }
  free(last_cmdline);
  free(last_cluster);
  struct svc_fx_list fx;
  struct svc_resume rs = {.stored = (svc_state)st,
                          .want_up = want_up,
                          .attempt = s->fsm.attempt,
                          .restarts = restarts,
                          .alive = open_instance && rr.alive,
                          .launching = rr.launching,
                          .started = s->started_mono,
                          .why_gone = rr.why[0] ? rr.why : NULL};
  svc_resume(&s->fsm, &s->pol, &rs, now_mono(), &fx);
  apply_then_drain(s, &fx, false);
  /* At rest as it was left: why it ended is its last instance's reason (a state read back
   * from the store carries none of its own). */
  if (!s->reason[0] && last_reason && !s->fsm.proc_alive &&
      (s->fsm.state == S_FAILED || s->fsm.state == S_TIMEOUT || s->fsm.state == S_COMPLETED ||
       s->fsm.state == S_STOPPED))
    snprintf(s->reason, sizeof s->reason, "%s", last_reason);
  free(last_reason);
  if (s->job) job_settle(s); /* over while no daemon watched: its slot is free */
  if (s->fsm.proc_alive && !want_up && s->fsm.state != S_STOPPING) {
    service_event(s, EV_STOP, 0, 0, "wanted down");
  } else if (!s->fsm.proc_alive && want_up &&
             (s->fsm.state == S_STOPPED || s->fsm.state == S_BACKOFF || s->fsm.state == S_PENDING) &&
             !s->fsm.deadline) {
    service_want_up(s, "herd started it");
  }
  return s;
}

void service_want_up(struct service *s, const char *why) {
  if (s->d->shutting_down) return; /* nothing starts while the daemon stops everything */
  if (s->d->booting) {
    /* Services are being created (start-up, reload): start once all exist, so a
     * dependency defined later in the config is not reported as missing. */
    s->fsm.want_up = true;
    s->boot_start = true;
    return;
  }
  char blk[160];
  if (deps_blocker(s, blk, sizeof blk))
    service_event(s, EV_BLOCKED, 0, 0, blk);
  else if (s->job && !job_admit(s, blk, sizeof blk)) /* its queue's turn */
    service_event(s, EV_BLOCKED, 0, 0, blk);
  else
    service_event(s, EV_START, 0, 0, why);
}

void service_start(struct service *s) {
  store_set_wanted(s->d->store, s->spec->name, "up");
  service_want_up(s, NULL);
}

void service_pause(struct service *s, const char *stop_why, const char *start_why) {
  s->start_at_rest = s->fsm.want_up;
  s->start_at_rest_why = start_why;
  service_event(s, EV_PAUSE, 0, 0, stop_why); /* the wanted state stays what the user asked */
}

void service_stop(struct service *s) {
  /* A stop wins over a restart that a spec change or a dependency had planned. */
  s->start_at_rest = false;
  store_set_wanted(s->d->store, s->spec->name, "down");
  service_event(s, EV_STOP, 0, 0, NULL);
}

void service_restart(struct service *s) {
  store_set_wanted(s->d->store, s->spec->name, "up");
  service_event(s, EV_RESTART, 0, 0, NULL);
}

void service_remove(struct service *s) {
  if (s->removing) return;
  s->removing = true;
  store_del_service(s->d->store, s->spec->name);
  if (s->next_spec) {
    spec_free(s->next_spec);
    s->next_spec = NULL;
  }
  s->start_at_rest = false;
  service_event(s, EV_STOP, 0, 0, "removed");
  after_step(s);
}

bool service_replace(struct service *s, struct spec *spec) {
  if (!strcmp(s->spec->canon, spec->canon) && !s->next_spec) {
    spec_free(spec);
    return false;
  }
  if (s->next_spec) spec_free(s->next_spec);
  s->next_spec = spec; /* swapped in by after_step once the service is at rest */
  if (s->fsm.proc_alive || s->fsm.state == S_BACKOFF || s->fsm.state == S_PENDING) {
    service_pause(s, "spec changed", "spec changed");
  } else {
    s->start_at_rest = s->fsm.want_up;
    s->start_at_rest_why = "spec changed";
    after_step(s);
  }
  return true;
}

json_t *service_json(struct service *s) { return service_json_view(s, true); }

const char *service_notify_status(const struct service *s) {
  return s->notify_status[0] && s->notify_instance == s->instance && s->fsm.proc_alive ? s->notify_status : NULL;
}

void service_summary_append(struct buf *b, struct service *s) {
  /* The same object as service_json_view(s, false), written directly: a thousand of them
   * for `herd status` cost a fraction of building and dumping jansson objects. */
  buf_lit(b, "{\"name\":");
  buf_json_string(b, s->spec->name);
  buf_printf(b, ",\"state\":\"%s\",\"wanted\":\"%s\",\"reason\":", svc_state_name(s->fsm.state),
             s->fsm.want_up ? "up" : "down");
  buf_json_string(b, s->reason);
  if (s->removing) buf_lit(b, ",\"removing\":true"); /* removed, still stopping */
  double up = service_uptime(s);
  if (s->pid > 0)
    buf_printf(b, ",\"pid\":%d", s->pid);
  else
    buf_lit(b, ",\"pid\":null");
  if (up >= 0)
    buf_printf(b, ",\"uptime\":%.3f", up);
  else
    buf_lit(b, ",\"uptime\":null");
  buf_printf(b, ",\"restarts\":%u,\"last_error\":", s->fsm.restarts);
  if (s->last_error[0])
    buf_json_string(b, s->last_error);
  else
    buf_lit(b, "null");
  if (s->port)
    buf_printf(b, ",\"port\":%d", s->port);
  else
    buf_lit(b, ",\"port\":null");
  if (service_notify_status(s)) {
    buf_lit(b, ",\"notify_status\":");
    buf_json_string(b, s->notify_status);
  }
  json_t *own = s->be->describe ? s->be->describe(s, false) : NULL; /* the backend's keys */
  json_t *ep = tunnel_service_json(s);
  if (ep) {
    if (!own) own = json_object();
    json_object_set_new(own, "endpoint", ep);
  }
  const char *k;
  json_t *v;
  json_object_foreach(own, k, v) {
    char *js = json_dumps(v, JSON_COMPACT | JSON_ENCODE_ANY);
    buf_lit(b, ",");
    buf_json_string(b, k);
    buf_printf(b, ":%s", js ? js : "null");
    free(js);
  }
  json_decref(own);
  buf_lit(b, ",\"check\":");
  const char *msg = check_last_msg(s);
  if (!s->checker)
    buf_lit(b, "null");
  else if (!msg)
    buf_lit(b, "{\"last\":null}");
  else {
    buf_printf(b, "{\"last\":{\"ok\":%s,\"message\":", check_last_ok(s) ? "true" : "false");
    buf_json_string(b, msg);
    buf_lit(b, "}}");
  }
  buf_lit(b, "}");
}

json_t *service_json_view(struct service *s, bool full) {
  struct spec *sp = s->spec;
  double now = now_mono();
  json_t *o = json_object();
  /* The summary: what a status table needs, small enough for a thousand services. */
  json_object_set_new(o, "name", json_string(sp->name));
  json_object_set_new(o, "state", json_string(svc_state_name(s->fsm.state)));
  json_object_set_new(o, "wanted", json_string(s->fsm.want_up ? "up" : "down"));
  json_object_set_new(o, "reason", json_string(s->reason));
  if (s->removing) json_object_set_new(o, "removing", json_true()); /* removed, still stopping */
  json_object_set_new(o, "pid", s->pid > 0 ? json_integer(s->pid) : json_null());
  double up = service_uptime(s);
  json_object_set_new(o, "uptime", up >= 0 ? json_real(up) : json_null());
  json_object_set_new(o, "restarts", json_integer(s->fsm.restarts));
  json_object_set_new(o, "last_error", s->last_error[0] ? json_string(s->last_error) : json_null());
  json_object_set_new(o, "port", s->port ? json_integer(s->port) : json_null());
  if (service_notify_status(s)) json_object_set_new(o, "notify_status", json_string(s->notify_status));
  json_t *own = s->be->describe ? s->be->describe(s, full) : NULL; /* the backend's keys */
  if (own) json_object_update(o, own);
  json_t *ep = tunnel_service_json(s);
  if (ep) json_object_set_new(o, "endpoint", ep);
  json_decref(own);
  json_object_set_new(o, "check", full ? check_json(s) : check_json_brief(s));
  if (s->job) json_object_set_new(o, "job", job_json(s, full));
  if (!full) return o;
  json_object_set_new(o, "since", json_real(now_wall() - (now - s->fsm.since)));
  json_object_set_new(o, "instance", s->instance ? json_integer(s->instance) : json_null());
  json_object_set_new(o, "attempt", json_integer(s->fsm.attempt));
  if (s->has_exit) {
    json_t *e = json_object();
    json_object_set_new(e, "code", s->last_code >= 0 ? json_integer(s->last_code) : json_null());
    json_object_set_new(e, "signal", s->last_sig > 0 ? json_integer(s->last_sig) : json_null());
    json_object_set_new(e, "at", json_real(s->last_exit_wall));
    json_object_set_new(o, "last_exit", e);
  } else {
    json_object_set_new(o, "last_exit", json_null());
  }
  json_object_set_new(o, "source", json_string(sp->source));
  json_t *tags = json_array();
  for (char **t = sp->tags; t && *t; t++) json_array_append_new(tags, json_string(*t));
  json_object_set_new(o, "tags", tags);
  json_object_set_new(o, "log", json_string(s->log_path));
  if (s->log_error[0]) json_object_set_new(o, "log_error", json_string(s->log_error));
  if (s->spec->ndeps) {
    json_t *deps = json_array();
    for (size_t i = 0; i < s->spec->ndeps; i++) {
      struct service *t = daemon_find(s->d, s->spec->deps[i].service);
      json_array_append_new(deps, json_pack("{s:s,s:s,s:s}", "service", s->spec->deps[i].service, "condition",
                                            dep_cond_name(s->spec->deps[i].cond), "state",
                                            t ? svc_state_name(t->fsm.state) : "MISSING"));
    }
    json_object_set_new(o, "depends_on", deps);
  }
  json_object_set_new(o, "spec", json_incref(sp->json));
  if (s->next_spec) json_object_set_new(o, "pending_spec", json_incref(s->next_spec->json));
  return o;
}
