/*
 * Start order and stop order. A service wanted up waits in PENDING until each of its
 * dependencies meets its condition (started, healthy, completed). Re-evaluation runs
 * once per loop turn, from the loop's prepare phase, whenever some service changed
 * state: deferring it keeps one service's transition from re-entering another's
 * effects while they are being carried out.
 */
#include "herd/daemon.h"
#include "herd/log.h"

#include <string.h>

static bool dep_met(const struct service *t, enum dep_cond cond) {
  switch (cond) {
  case DEP_STARTED: return svc_state_running(t->fsm.state) || t->fsm.state == S_COMPLETED;
  case DEP_HEALTHY: return t->fsm.state == S_HEALTHY;
  case DEP_COMPLETED: return t->fsm.state == S_COMPLETED;
  default: return false;
  }
}

const char *deps_blocker(struct service *s, char *buf, size_t len) {
  for (size_t i = 0; i < s->spec->ndeps; i++) {
    const struct dep_spec *dp = &s->spec->deps[i];
    struct service *t = daemon_find(s->d, dp->service);
    if (!t || t->removing) {
      snprintf(buf, len, "waiting for %s: not defined", dp->service);
      return buf;
    }
    if (!dep_met(t, dp->cond)) {
      snprintf(buf, len, "waiting for %s (%s): %s", dp->service, dep_cond_name(dp->cond), svc_state_name(t->fsm.state));
      return buf;
    }
  }
  return NULL;
}

/* A dependency that was met and no longer is, for restart_with_dependency. */
static const struct service *dep_down(struct service *s) {
  for (size_t i = 0; i < s->spec->ndeps; i++) {
    const struct dep_spec *dp = &s->spec->deps[i];
    struct service *t = daemon_find(s->d, dp->service);
    if (!t) continue;
    svc_state st = t->fsm.state;
    bool down = st == S_UNHEALTHY || st == S_FAILED || st == S_TIMEOUT || st == S_STOPPED || st == S_STOPPING ||
                st == S_BACKOFF || (dp->cond == DEP_HEALTHY && st == S_STARTING);
    if (dp->cond == DEP_COMPLETED) down = false; /* a finished job does not go down */
    if (down) return t;
  }
  return NULL;
}

/* Shutdown: marks each service something still running depends on (s->needed), in one
 * walk over the services and their dependencies: asking "does anything running depend on
 * me" service by service was a walk per service, 10^8 steps for 10,000 services. */
static void mark_needed(struct daemon *d) {
  struct list *pos, *tmp;
  list_for_each_safe(pos, tmp, &d->services) container_of(pos, struct service, link)->needed = false;
  if (!d->ndeps_services) return;
  list_for_each_safe(pos, tmp, &d->services) {
    struct service *x = container_of(pos, struct service, link);
    if (!x->fsm.proc_alive) continue;
    for (size_t i = 0; i < x->spec->ndeps; i++) {
      struct service *t = daemon_find(d, x->spec->deps[i].service);
      if (t && t != x) t->needed = true;
    }
  }
}

void deps_reconcile(struct daemon *d) {
  /* Nothing waits on anything; or the daemon leaves every service as it is. */
  if ((!d->shutting_down && !d->ndeps_services) || d->leaving) {
    d->deps_dirty = false;
    return;
  }
  /* Shutting down and every stop sent: nothing left to decide (this runs each loop turn a
   * service changed state, thousands of times while thousands of services stop). */
  if (d->shutting_down && d->stops_all_sent) {
    d->deps_dirty = false;
    return;
  }
  /* Each pass may change states again; a DAG settles in at most (longest chain) passes. */
  for (int pass = 0; d->deps_dirty && pass < 64; pass++) {
    d->deps_dirty = false;
    bool all_sent = true;
    /* Marked at the pass's start: a stop sent in it does not end a process at once, and a
     * mark left stale only holds a stop back to the next pass (deps_dirty brings it). */
    if (d->shutting_down) mark_needed(d);
    struct list *pos, *tmp;
    list_for_each_safe(pos, tmp, &d->services) {
      struct service *s = container_of(pos, struct service, link);
      if (s->removing) continue;
      if (d->shutting_down) {
        if (!s->stop_sent && (!s->fsm.proc_alive || !s->needed)) {
          s->stop_sent = true;
          s->start_at_rest = false;
          service_event(s, EV_STOP, 0, 0, "daemon shutting down");
        }
        if (!s->stop_sent) all_sent = false;
        continue;
      }
      if (!s->spec->ndeps) continue;
      char why[sizeof s->reason];
      if (s->fsm.state == S_PENDING && s->fsm.want_up && !s->fsm.proc_alive) {
        if (!deps_blocker(s, why, sizeof why))
          service_event(s, EV_START, 0, 0, "dependencies ready");
        else if (strcmp(why, s->reason))
          service_event(s, EV_BLOCKED, 0, 0, why); /* still blocked: shows on what now */
        continue;
      }
      if (s->spec->restart_with_dependency && s->fsm.proc_alive && svc_state_running(s->fsm.state)) {
        const struct service *t = dep_down(s);
        if (t) {
          char msg[160];
          snprintf(msg, sizeof msg, "dependency %s is %s: restarting with it", t->spec->name,
                   svc_state_name(t->fsm.state));
          service_pause(s, msg, "restart with dependency");
        }
      }
    }
    if (d->shutting_down && all_sent) d->stops_all_sent = true;
  }
}
