/*
 * The runner's side of the run boundary (see run.h): the backend table, the queue of
 * events backends post, and FX_SPAWN (the endpoint's port, the instance's row, the
 * backend's start).
 */
#include "herd/run.h"

#include "herd/daemon.h"
#include "herd/log.h"

#include <errno.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <unistd.h>

static const struct backend_ops *const backends[] = {
    [BACKEND_LOCAL] = &local_backend,
    [BACKEND_SLURM] = &slurm_backend,
};
static_assert(sizeof backends / sizeof backends[0] == BACKEND__MAX, "a row per backend");

static const struct backend_ops *only; /* run_backend_only */

const struct backend_ops *run_backend(enum backend b) {
  if (only) return only;
  return (unsigned)b < BACKEND__MAX ? backends[b] : &local_backend;
}

void run_backend_only(const struct backend_ops *ops) { only = ops; }

/* ---- posted events ---- */

struct posted {
  struct list link;
  struct service *s;
  struct run_event ev; /* its strings point into the node's own copies */
};

static char *dup_or_null(const char *s) { return s ? xstrdup(s) : NULL; }

static void posted_free(struct posted *p) {
  free((char *)p->ev.msg);
  free((char *)p->ev.job_where);
  free((char *)p->ev.host);
  free(p);
}

void run_post(struct service *s, const struct run_event *ev) {
  struct daemon *d = s->d;
  struct posted *p = xcalloc(1, sizeof *p);
  p->s = s;
  p->ev = *ev;
  p->ev.msg = dup_or_null(ev->msg);
  p->ev.job_where = dup_or_null(ev->job_where);
  p->ev.host = dup_or_null(ev->host);
  list_add_tail(&d->runq, &p->link);
  if (!d->run_depth) run_drain(d);
}

void run_post_event(struct service *s, svc_event_type type, int code, int sig, const char *msg) {
  struct run_event ev = {.type = type, .code = code, .sig = sig, .msg = msg};
  run_post(s, &ev);
}

/* Record what the backend says of the instance, then feed the event. */
static void deliver(struct service *s, const struct run_event *ev) {
  struct daemon *d = s->d;
  if (ev->facts & RUN_PID) {
    s->pid = ev->pid;
    s->starttime = ev->starttime;
    if (ev->pid > 0) store_instance_pid(d->store, s->instance, ev->pid, ev->starttime);
  }
  if (ev->facts & RUN_JOB) {
    s->job_id = ev->job_id;
    store_instance_job(d->store, s->instance, ev->job_where ? ev->job_where : "", ev->job_id);
  }
  bool moved = false;
  if (ev->facts & RUN_HOST) {
    moved = strcmp(s->host, ev->host ? ev->host : "") != 0;
    snprintf(s->host, sizeof s->host, "%s", ev->host ? ev->host : "");
  }
  if (ev->facts & RUN_RUNNING) {
    s->started_wall = ev->since;
    s->started_mono = now_mono() - (now_wall() - ev->since);
  }
  if (ev->type == EV__MAX || s->closed || s->destroyed) {
    /* The node's address came while the job runs: its endpoint is re-pointed there. */
    if (moved && !s->closed && !s->destroyed) service_endpoint_sync(s);
    service_check_idle(d); /* what it said may let a shutdown finish (a job left behind) */
    return;
  }
  switch (ev->type) {
  case EV_EXIT:
  case EV_SPAWN_FAILED: s->pid = 0; break;
  case EV_DEFERRED:
    /* The daemon's own lack: the attempt never began, and is not the service's failure. */
    s->pid = 0;
    s->last_code = s->last_sig = 0;
    store_instance_end(d->store, s->instance, "PENDING", 0, 0, ev->msg ? ev->msg : "", now_wall());
    break;
  case EV_STARTED:
    if (s->port) s->last_port = s->port;
    break;
  default: break;
  }
  struct svc_event se = {.type = ev->type, .code = ev->code, .sig = ev->sig, .msg = ev->msg, .end = ev->end};
  service_feed(s, &se);
}

void run_drain(struct daemon *d) {
  if (d->run_draining) return; /* the outer drain goes on with what is queued */
  d->run_draining = true;
  while (!list_empty(&d->runq)) {
    struct posted *p = container_of(d->runq.next, struct posted, link);
    list_del(&p->link);
    deliver(p->s, &p->ev);
    posted_free(p);
  }
  d->run_draining = false;
}

void run_forget(struct service *s) {
  struct list *pos, *tmp;
  list_for_each_safe(pos, tmp, &s->d->runq) {
    struct posted *p = container_of(pos, struct posted, link);
    if (p->s != s) continue;
    list_del(&p->link);
    posted_free(p);
  }
}

/* ---- ports ---- */

/* Whether host:port can be bound now (a TIME_WAIT leftover does not count as busy). */
static bool port_free(const char *host, int port) {
  struct sockaddr_storage ss;
  if (addr_from_literal(host, port, &ss) < 0) uv_ip4_addr("0.0.0.0", port, (struct sockaddr_in *)&ss);
  int fd = socket(ss.ss_family, SOCK_STREAM | SOCK_CLOEXEC, 0);
  if (fd < 0) return false;
  int one = 1;
  setsockopt(fd, SOL_SOCKET, SO_REUSEADDR, &one, sizeof one);
  socklen_t len = ss.ss_family == AF_INET6 ? sizeof(struct sockaddr_in6) : sizeof(struct sockaddr_in);
  bool ok = bind(fd, (struct sockaddr *)&ss, len) == 0;
  close(fd);
  return ok;
}

/* Choose the instance's port as ZenML does: the configured one if free; if it is busy
 * (or none is configured) and allocation is allowed, the last run's port if free, else
 * a free one from the range. */
/* Ports our other live instances hold (a port just handed out may not be bound yet), as a
 * bitmap: one pass over the services per start. */
static uint8_t taken[65536 / 8];
#define TAKEN(p) (taken[(p) / 8] & (1u << ((p) % 8)))
static void ports_taken(struct service *s) {
  memset(taken, 0, sizeof taken);
  struct list *pos, *tmp;
  list_for_each_safe(pos, tmp, &s->d->services) {
    struct service *x = container_of(pos, struct service, link);
    if (x != s && x->port > 0 && x->fsm.proc_alive) taken[x->port / 8] |= (uint8_t)(1u << (x->port % 8));
  }
}

static int choose_port(struct service *s, char *err, size_t errlen) {
  const struct endpoint_spec *e = &s->spec->endpoint;
  s->port = 0;
  if (!e->set) return 0;
  ports_taken(s);
  if (e->port && !TAKEN(e->port) && port_free(e->host, e->port)) {
    s->port = e->port;
    return 0;
  }
  if (!e->allocate) {
    snprintf(err, errlen, "port %d on %s is in use (set endpoint.allocate to take another)", e->port, e->host);
    return UV_EADDRINUSE;
  }
  if (s->last_port && s->last_port != e->port && !TAKEN(s->last_port) && port_free(e->host, s->last_port)) {
    s->port = s->last_port;
    return 0;
  }
  int span = e->range_hi - e->range_lo + 1;
  int start = (int)(now_mono() * 1000) % span;
  for (int i = 0; i < span; i++) {
    int p = e->range_lo + (start + i) % span;
    if (p != e->port && !TAKEN(p) && port_free(e->host, p)) {
      s->port = p;
      return 0;
    }
  }
  snprintf(err, errlen, "no free port on %s in %d-%d", e->host, e->range_lo, e->range_hi);
  return UV_EADDRINUSE;
}

/* A port on the other side (a compute node, an ssh host) cannot be probed from here: the
 * configured one, or one from the range drawn at random, never the last instance's (when
 * it could not bind there, its end brought us here) nor one our live instances hold. The
 * instance gets it as PORT / HERD_PORT; if it is taken there, the instance fails and the
 * restart policy draws again. */
static void choose_remote_port(struct service *s) {
  const struct endpoint_spec *e = &s->spec->endpoint;
  s->port = e->set ? e->port : 0;
  if (!e->set || e->port) return;
  int span = e->range_hi - e->range_lo + 1;
  ports_taken(s);
  for (int tries = 0; tries < 64; tries++) {
    s->port = e->range_lo + (int)((unsigned)rand() % (unsigned)span);
    if (!TAKEN(s->port) && !(span > 1 && s->port == s->last_port)) return;
  }
}

/* ---- FX_SPAWN ---- */

void run_start(struct service *s) {
  struct daemon *d = s->d;
  char err[256] = "";
  int rc = 0;
  s->pid = 0;
  s->job_id = 0;
  s->host[0] = '\0';
  if (s->be->local_ports && !s->spec->ssh) /* (through ssh, the port is on the other side) */
    rc = choose_port(s, err, sizeof err);
  else
    choose_remote_port(s);
  struct run_plan plan = {0};
  if (rc == 0 && s->be->plan) s->be->plan(s, &plan);
  /* The instance exists from here on (its events name it); its pid or job follows. */
  s->started_wall = now_wall();
  s->started_mono = now_mono();
  s->instance =
      store_instance_start(d->store, s->spec->name, s->fsm.attempt, 0, 0, s->started_wall, plan.cmdline, s->port);
  if (plan.job_where) store_instance_job(d->store, s->instance, plan.job_where, 0);
  free(plan.cmdline);
  if (s->job && rc == 0) {
    /* A job runs once: its instance is committed as started before its process can exist,
     * so that a daemon killed in between finds it (running, or over with its status
     * unknown), never a job still PENDING that it would start a second time. */
    store_set_state(d->store, s->spec->name, "STARTING", s->fsm.restarts);
    store_flush(d->store);
  }
  if (rc == 0) rc = s->be->start(s, err, sizeof err);
  if (rc == 0) return;
  /* It cannot even begin: said in its log, and answered like any start (after the effects
   * being applied now). The daemon out of descriptors is its own lack: put off, retried. */
  logpipe_note(s, "%s", err);
  if (rc == UV_EMFILE || rc == UV_ENFILE)
    run_post_event(s, EV_DEFERRED, 0, 0, err);
  else
    run_post_event(s, EV_SPAWN_FAILED, -1, 0, err);
}
