/*
 * The service state machine (see svc.h). Pure: everything it does to the world is an
 * effect in the list it returns, so every state x event pair is tested by a table.
 *
 * enter() owns the side effects of entering a state (systemd's service_set_state,
 * s6's settimeout): it disarms the old deadline, arms the new one and starts or stops
 * health checks, so no event handler arms timers by hand.
 */
#include "herd/svc.h"

#include <math.h>
#include <stdarg.h>
#include <stdio.h>
#include <string.h>

static const char *const state_names[] = {
    [S_SUBMITTED] = "SUBMITTED", [S_PENDING] = "PENDING",     [S_STARTING] = "STARTING", [S_HEALTHY] = "HEALTHY",
    [S_UNHEALTHY] = "UNHEALTHY", [S_STOPPING] = "STOPPING",   [S_STOPPED] = "STOPPED",   [S_FAILED] = "FAILED",
    [S_TIMEOUT] = "TIMEOUT",     [S_COMPLETED] = "COMPLETED", [S_BACKOFF] = "BACKOFF",   [S_UNKNOWN] = "UNKNOWN",
};
static_assert(sizeof state_names / sizeof state_names[0] == S__MAX, "state name table");

static const char *const event_names[] = {
    [EV_START] = "start",
    [EV_STOP] = "stop",
    [EV_RESTART] = "restart",
    [EV_SPAWN_FAILED] = "spawn-failed",
    [EV_EXIT] = "exit",
    [EV_DEADLINE] = "deadline",
    [EV_CHECK_PASS] = "check-pass",
    [EV_CHECK_FAIL] = "check-fail",
    [EV_LOST] = "lost",
    [EV_BLOCKED] = "blocked",
    [EV_DEFERRED] = "deferred",
    [EV_PAUSE] = "pause",
    [EV_SHUTDOWN] = "shutdown",
    [EV_STARTED] = "started",
    [EV_QUEUED] = "queued",
    [EV_RUNNING] = "running",
    [EV_NOTIFY_READY] = "notify-ready",
    [EV_WATCHDOG] = "watchdog",
};
static_assert(sizeof event_names / sizeof event_names[0] == EV__MAX, "event name table");

static const char *const fx_names[] = {
    [FX_TRANSITION] = "transition",
    [FX_SPAWN] = "spawn",
    [FX_SIGNAL] = "signal",
    [FX_ARM] = "arm",
    [FX_DISARM] = "disarm",
    [FX_INSTANCE_END] = "instance-end",
    [FX_CHECKS_START] = "checks-start",
    [FX_CHECKS_STOP] = "checks-stop",
    [FX_REASON] = "reason",
};
static_assert(sizeof fx_names / sizeof fx_names[0] == FX__MAX, "effect name table");

static const char *const restart_names[] = {
    [RESTART_ALWAYS] = "always", [RESTART_ON_FAILURE] = "on-failure", [RESTART_NEVER] = "never"};
static_assert(sizeof restart_names / sizeof restart_names[0] == RESTART__MAX, "restart name table");

const char *svc_state_name(svc_state s) { return (unsigned)s < S__MAX ? state_names[s] : "?"; }
const char *svc_event_name(svc_event_type e) { return (unsigned)e < EV__MAX ? event_names[e] : "?"; }
const char *svc_fx_name(svc_fx_type f) { return (unsigned)f < FX__MAX ? fx_names[f] : "?"; }
const char *restart_policy_name(restart_policy r) { return (unsigned)r < RESTART__MAX ? restart_names[r] : "?"; }

int svc_state_parse(const char *s) {
  for (int i = 0; i < S__MAX; i++)
    if (!strcasecmp(s, state_names[i])) return i;
  return -1;
}

void svc_fsm_init(struct svc_fsm *f, uint64_t seed) {
  memset(f, 0, sizeof *f);
  f->state = S_STOPPED;
  f->rng = seed ? seed : 0x9e3779b97f4a7c15ULL;
}

bool svc_state_running(svc_state s) { return s == S_STARTING || s == S_HEALTHY || s == S_UNHEALTHY; }

bool svc_fsm_at_rest(const struct svc_fsm *f) {
  if (f->proc_alive) return false;
  switch (f->state) {
  case S_STOPPED:
  case S_FAILED:
  case S_TIMEOUT:
  case S_COMPLETED: return true;
  default: return false;
  }
}

/* A crash loop never spins, whatever the config says: from the second consecutive
 * failure on, wait at least 100 ms, doubling, up to one second. */
static double backoff_floor(unsigned fails) { return fmin(0.1 * pow(2.0, (double)(fails - 2)), 1.0); }

double svc_backoff_delay(const struct svc_backoff *b, unsigned fails) {
  if (fails == 0) return 0;
  double d = b->initial * pow(b->multiplier, (double)(fails - 1));
  if (d > b->max) d = b->max;
  if (fails >= 2 && d < backoff_floor(fails)) d = backoff_floor(fails);
  return d;
}

static double rng_unit(struct svc_fsm *f) {
  /* xorshift64* */
  uint64_t x = f->rng;
  x ^= x >> 12;
  x ^= x << 25;
  x ^= x >> 27;
  f->rng = x;
  return (double)((x * 2685821657736338717ULL) >> 11) * 0x1.0p-53;
}

static struct svc_fx *push(struct svc_fx_list *out, svc_fx_type t) {
  /* The list is sized for the longest chain svc_step can produce; overflow is a bug. */
  assert(out->n < SVC_FX_MAX);
  struct svc_fx *x = &out->fx[out->n++];
  memset(x, 0, sizeof *x);
  x->type = t;
  return x;
}

static void arm(struct svc_fsm *f, struct svc_fx_list *out, double at) {
  f->deadline = at;
  push(out, FX_ARM)->at = at;
}

static void vreason(struct svc_fx *x, const char *fmt, va_list ap) { vsnprintf(x->reason, sizeof x->reason, fmt, ap); }

struct ctx {
  struct svc_fsm *f;
  const struct svc_policy *p;
  double now;
  struct svc_fx_list *out;
};

/* STARTING's clock and checks, from the moment the instance exists. */
static void starting_arm(struct ctx *c) {
  struct svc_fsm *f = c->f;
  const struct svc_policy *p = c->p;
  if (p->job) { /* it runs until it exits: the only clock is its timeout */
    if (p->run_timeout > 0) arm(f, c->out, c->now + p->run_timeout);
    return;
  }
  if (p->notify_ready && !p->has_check) {
    /* HEALTHY comes with READY=1; start_timeout bounds the wait (0: wait for ever). */
    if (p->start_timeout > 0) arm(f, c->out, c->now + p->start_timeout);
  } else if (p->has_check) {
    push(c->out, FX_CHECKS_START);
    if (p->start_timeout > 0) arm(f, c->out, c->now + p->start_timeout);
  } else {
    /* Even with ready_after 0, HEALTHY comes from the deadline (next loop turn), so a
     * spawn that fails is reported as STARTING -> FAILED, never as HEALTHY first. */
    arm(f, c->out, c->now + p->ready_after);
  }
}

/* The stop signal, and the grace before SIGKILL. */
static void kill_begin(struct ctx *c) {
  c->f->killed_hard = false;
  push(c->out, FX_SIGNAL)->sig = c->p->stop_signal;
  arm(c->f, c->out, c->now + c->p->stop_grace);
}

static void enter(struct ctx *c, svc_state to, const char *fmt, ...) __attribute__((format(printf, 3, 4)));

static void enter(struct ctx *c, svc_state to, const char *fmt, ...) {
  struct svc_fsm *f = c->f;
  const struct svc_policy *p = c->p;
  svc_state from = f->state;
  struct svc_fx *t = push(c->out, FX_TRANSITION);
  t->from = from;
  t->to = to;
  va_list ap;
  va_start(ap, fmt);
  vreason(t, fmt, ap);
  va_end(ap);

  if (f->deadline) {
    f->deadline = 0;
    push(c->out, FX_DISARM);
  }
  if (f->wd_at && !svc_state_running(to)) { /* the watchdog watches a running instance only */
    if (!f->deadline) push(c->out, FX_DISARM);
    f->wd_at = 0;
  }
  /* (A start in flight had no checks started.) */
  if (p->has_check && svc_state_running(from) && !svc_state_running(to) && !(from == S_STARTING && f->launching))
    push(c->out, FX_CHECKS_STOP);
  if (f->rechecking) { /* (UNKNOWN, its checks running) */
    f->rechecking = false;
    if (!svc_state_running(to)) push(c->out, FX_CHECKS_STOP);
  }
  f->state = to;
  f->since = c->now;

  switch (to) {
  case S_STARTING:
    f->pass_streak = f->fail_streak = 0;
    f->healthy_since = 0;
    /* While the start is in flight there is nothing to check and no time counts yet:
     * both begin with EV_STARTED, measured from the instance's existence. */
    if (!f->launching) starting_arm(c);
    break;
  case S_SUBMITTED:
  case S_PENDING:
    /* A queue deadline spans SUBMITTED and PENDING: it counts from the request. */
    if (p->batch && f->proc_alive && p->queue_timeout > 0) arm(f, c->out, f->queued_at + p->queue_timeout);
    break;
  case S_HEALTHY:
    if (!f->healthy_since) f->healthy_since = c->now;
    f->fail_streak = 0;
    break;
  case S_UNHEALTHY:
    f->pass_streak = 0;
    if (p->restart_on_unhealthy) arm(f, c->out, c->now + p->unhealthy_grace);
    break;
  case S_STOPPING:
  case S_TIMEOUT:
    /* A start still in flight gets its stop signal when it is answered (EV_STARTED). */
    if (f->proc_alive && !f->launching) kill_begin(c);
    break;
  default: break;
  }
}

static void spawn(struct ctx *c, const char *why) {
  struct svc_fsm *f = c->f;
  f->attempt++;
  f->proc_alive = true;
  f->end_reason[0] = '\0';
  f->killed_hard = false;
  f->restart_pending = false;
  f->launching = true; /* until the backend answers EV_STARTED or EV_SPAWN_FAILED */
  f->ready_seen = false;
  f->wd_at = 0;
  push(c->out, FX_SPAWN);
  if (c->p->batch) {
    /* Not SUBMITTED until the scheduler says so: the request may yet be refused. */
    f->queued_at = c->now;
    enter(c, S_PENDING, "%s (attempt %u): submitting", why, f->attempt);
    return;
  }
  enter(c, S_STARTING, "%s (attempt %u)", why, f->attempt);
}

static void instance_end(struct ctx *c, svc_state end, const char *fmt, ...) __attribute__((format(printf, 3, 4)));

static void instance_end(struct ctx *c, svc_state end, const char *fmt, ...) {
  struct svc_fx *x = push(c->out, FX_INSTANCE_END);
  x->from = c->f->state;
  x->to = end;
  va_list ap;
  va_start(ap, fmt);
  vreason(x, fmt, ap);
  va_end(ap);
}

/* After an instance ended in FAILED/TIMEOUT/COMPLETED: restart by policy, or rest. */
static void apply_policy(struct ctx *c) {
  struct svc_fsm *f = c->f;
  const struct svc_policy *p = c->p;
  if (f->restart_pending && f->want_up) {
    f->restarts++;
    spawn(c, "restart requested");
    return;
  }
  f->restart_pending = false;
  if (!f->want_up) return;
  bool again = p->restart == RESTART_ALWAYS || (p->restart == RESTART_ON_FAILURE && f->state != S_COMPLETED);
  if (!again) return;
  if (p->max_attempts && f->attempt >= p->max_attempts) return; /* a job's retries are spent */
  /* The backoff starts over only after an instance stayed healthy a while: never less than
   * SVC_RESET_FLOOR, or `ready_after: 0` with `reset_after: 0` would restart a program
   * that fails at once as fast as it can spawn (passing through HEALTHY each time). */
  double reset = fmax(p->backoff.reset_after, SVC_RESET_FLOOR);
  if (f->healthy_since && c->now - f->healthy_since >= reset) f->fails = 0;
  f->fails++;
  f->restarts++;
  double d = svc_backoff_delay(&p->backoff, f->fails);
  d *= 1.0 - p->backoff.jitter * rng_unit(f);
  /* Jitter never takes a crash loop below its floor. */
  if (f->fails >= 2 && d < backoff_floor(f->fails)) d = backoff_floor(f->fails);
  if (d < 0) d = 0;
  enter(c, S_BACKOFF, "restart %u in %.3fs", f->restarts, d);
  arm(f, c->out, c->now + d);
}

static void describe_exit(char *buf, size_t len, const struct svc_event *ev) {
  if (ev->end && ev->msg)
    snprintf(buf, len, "%s", ev->msg); /* the backend's own words (e.g. Slurm's state and reason) */
  else if (ev->sig)
    snprintf(buf, len, "killed by signal %d", ev->sig);
  else if (ev->code < 0)
    snprintf(buf, len, "%s", ev->msg ? ev->msg : "exited (status unknown)");
  else
    snprintf(buf, len, "exited with code %d", ev->code);
}

static void on_start(struct ctx *c, const struct svc_event *ev, bool restart) {
  struct svc_fsm *f = c->f;
  f->want_up = true;
  switch (f->state) {
  case S_STARTING:
  case S_HEALTHY:
  case S_UNHEALTHY:
    if (restart) {
      f->restart_pending = true;
      enter(c, S_STOPPING, "restart requested");
    }
    break;
  case S_STOPPING: f->restart_pending = true; break;
  case S_PENDING:
    if (f->proc_alive) { /* batch: already submitted (or being submitted) */
      if (restart) {
        f->restart_pending = true;
        enter(c, S_STOPPING, "restart requested");
      }
      break;
    }
    /* fall through */
  case S_BACKOFF:
    if (restart) f->restarts++;
    spawn(c, ev->msg ? ev->msg : (restart ? "restart requested" : "start requested"));
    break;
  case S_STOPPED:
  case S_FAILED:
  case S_TIMEOUT:
  case S_COMPLETED:
    if (f->proc_alive) {
      f->restart_pending = true; /* still being killed; start when it is gone */
    } else {
      f->fails = 0;
      if (restart) f->restarts++;
      spawn(c, ev->msg ? ev->msg : (restart ? "restart requested" : "start requested"));
    }
    break;
  case S_SUBMITTED:
  case S_UNKNOWN:
  case S__MAX: break;
  }
}

static void on_stop(struct ctx *c, const struct svc_event *ev) {
  struct svc_fsm *f = c->f;
  f->want_up = false;
  f->restart_pending = false;
  const char *why = ev->msg ? ev->msg : "stop requested";
  switch (f->state) {
  case S_STARTING:
  case S_HEALTHY:
  case S_UNHEALTHY:
  case S_SUBMITTED:
  case S_UNKNOWN:
    if (f->proc_alive)
      enter(c, S_STOPPING, "%s", why);
    else
      enter(c, S_STOPPED, "%s", why);
    break;
  case S_BACKOFF:
  case S_PENDING: enter(c, f->proc_alive ? S_STOPPING : S_STOPPED, "%s", why); break;
  default: /* STOPPING, or at rest / being killed: nothing more to do */ break;
  }
}

static void on_exit_ev(struct ctx *c, const struct svc_event *ev) {
  struct svc_fsm *f = c->f;
  if (!f->proc_alive) return; /* stale: no instance of ours */
  f->proc_alive = false;
  f->launching = false;
  char what[96];
  describe_exit(what, sizeof what, ev);
  switch (f->state) {
  case S_STARTING:
  case S_HEALTHY:
  case S_UNHEALTHY:
  case S_UNKNOWN:
  case S_SUBMITTED:
  case S_PENDING: {
    bool clean = ev->code == 0 && ev->sig == 0;
    svc_state end = ev->end ? ev->end : clean ? S_COMPLETED : S_FAILED;
    if (end == S_STOPPED) { /* cancelled, and not by us: we were not stopping it */
      end = S_FAILED;
      snprintf(what + strlen(what), sizeof what - strlen(what), " (not by herd)");
    } else if (end != S_COMPLETED && end != S_TIMEOUT) {
      end = S_FAILED;
    }
    const char *when = f->state == S_STARTING && !c->p->job ? " while starting" : ""; /* (a job runs in STARTING) */
    instance_end(c, end, "%s%s", what, when);
    enter(c, end, "%s%s", what, when);
    apply_policy(c);
    break;
  }
  case S_STOPPING:
    if (f->killed_hard)
      instance_end(c, S_STOPPED, "killed after %.3gs grace", c->p->stop_grace);
    else
      instance_end(c, S_STOPPED, "stopped (%s)", what);
    enter(c, S_STOPPED, "%s", f->killed_hard ? "killed with SIGKILL after grace" : what);
    if (f->want_up && f->restart_pending) {
      f->restarts++;
      spawn(c, "restart requested");
    }
    break;
  case S_TIMEOUT:
  case S_FAILED:
    /* The instance was already declared over; now that its process is gone, the
     * restart policy decides. */
    if (f->deadline) {
      f->deadline = 0;
      push(c->out, FX_DISARM);
    }
    instance_end(c, f->state, "%s (then %s)", f->end_reason[0] ? f->end_reason : svc_state_name(f->state), what);
    apply_policy(c);
    break;
  default: break;
  }
}

/* The watchdog's deadline passed: the instance is declared FAILED and stopped, as an
 * unhealthy one is; once it is gone the restart policy applies. */
static void watchdog_expired(struct ctx *c) {
  struct svc_fsm *f = c->f;
  const struct svc_policy *p = c->p;
  f->wd_at = 0;
  if (!f->proc_alive || f->launching || !svc_state_running(f->state)) return;
  snprintf(f->end_reason, sizeof f->end_reason, "watchdog: no WATCHDOG=1 for %.3gs", p->watchdog);
  enter(c, S_FAILED, "%s", f->end_reason);
  f->killed_hard = false;
  push(c->out, FX_SIGNAL)->sig = p->stop_signal;
  arm(f, c->out, c->now + p->stop_grace);
}

static void on_deadline(struct ctx *c) {
  struct svc_fsm *f = c->f;
  const struct svc_policy *p = c->p;
  /* One timer, two deadlines: the watchdog's when it is the earlier one. */
  if (f->wd_at && (!f->deadline || f->wd_at <= f->deadline)) {
    watchdog_expired(c);
    return;
  }
  bool armed = f->deadline != 0; /* not a stale timer */
  f->deadline = 0;
  switch (f->state) {
  case S_SUBMITTED:
  case S_PENDING:
    if (armed && f->want_up && !f->proc_alive) { /* a deferred start (EV_DEFERRED) */
      spawn(c, "trying the start again");
      break;
    }
    if (p->batch && f->proc_alive && p->queue_timeout > 0) {
      snprintf(f->end_reason, sizeof f->end_reason, "still queued after queue_timeout %.3gs", p->queue_timeout);
      enter(c, S_TIMEOUT, "%s", f->end_reason);
    }
    break;
  case S_STARTING:
    if (f->launching) break; /* (no clock runs before the instance exists) */
    if (p->job) {
      snprintf(f->end_reason, sizeof f->end_reason, "ran longer than its timeout %.3gs", p->run_timeout);
      enter(c, S_TIMEOUT, "%s", f->end_reason);
    } else if (p->notify_ready && !f->ready_seen) {
      snprintf(f->end_reason, sizeof f->end_reason, "no READY=1 within start_timeout %.3gs", p->start_timeout);
      enter(c, S_TIMEOUT, "%s", f->end_reason);
    } else if (p->has_check) {
      snprintf(f->end_reason, sizeof f->end_reason, "not healthy within start_timeout %.3gs", p->start_timeout);
      enter(c, S_TIMEOUT, "%s", f->end_reason);
    } else
      enter(c, S_HEALTHY, "up for ready_after %.3gs", p->ready_after);
    break;
  case S_UNHEALTHY:
    if (p->restart_on_unhealthy && f->proc_alive) {
      /* Ends the instance as a failure: the restart policy and its backoff apply. */
      snprintf(f->end_reason, sizeof f->end_reason, "unhealthy for %.3gs", p->unhealthy_grace);
      enter(c, S_FAILED, "%s", f->end_reason);
      f->killed_hard = false;
      push(c->out, FX_SIGNAL)->sig = p->stop_signal;
      arm(f, c->out, c->now + p->stop_grace);
    }
    break;
  case S_STOPPING:
  case S_TIMEOUT:
  case S_FAILED:
    if (f->proc_alive && !f->launching) {
      /* Grace is over: SIGKILL the group, then keep re-sending while it lingers. */
      f->killed_hard = true;
      push(c->out, FX_SIGNAL)->sig = 9;
      arm(f, c->out, c->now + 5.0);
    }
    break;
  case S_BACKOFF: spawn(c, "backoff over"); break;
  default: break; /* a stale deadline */
  }
}

static void on_check(struct ctx *c, bool pass, const struct svc_event *ev) {
  struct svc_fsm *f = c->f;
  const struct svc_policy *p = c->p;
  unsigned succ = p->success_threshold ? p->success_threshold : 1;
  unsigned fail = p->failure_threshold ? p->failure_threshold : 1;
  const char *msg = ev->msg ? ev->msg : "";
  if (f->launching) return; /* a result about no instance of ours */
  switch (f->state) {
  case S_STARTING:
  case S_UNHEALTHY:
    if (pass) {
      f->fail_streak = 0;
      /* "ready": "notify" with a check: both must say so (READY=1 comes in on_notify_ready). */
      if (++f->pass_streak >= succ && (f->state != S_STARTING || !p->notify_ready || f->ready_seen))
        enter(c, S_HEALTHY, "check passed %u time(s)%s%s", f->pass_streak, *msg ? ": " : "", msg);
    } else {
      f->pass_streak = 0;
      f->fail_streak++;
    }
    break;
  case S_HEALTHY:
    if (pass) {
      f->fail_streak = 0;
    } else if (++f->fail_streak >= fail) {
      enter(c, S_UNHEALTHY, "check failed %u time(s)%s%s", f->fail_streak, *msg ? ": " : "", msg);
    }
    break;
  case S_UNKNOWN: /* back in sight: the verdict, by the same thresholds */
    if (!f->rechecking) break;
    if (pass && ++f->pass_streak >= succ)
      enter(c, S_HEALTHY, "back; check passed %u time(s)%s%s", f->pass_streak, *msg ? ": " : "", msg);
    else if (!pass && ++f->fail_streak >= fail)
      enter(c, S_UNHEALTHY, "back; check failed %u time(s)%s%s", f->fail_streak, *msg ? ": " : "", msg);
    if (pass) f->fail_streak = 0;
    if (!pass) f->pass_streak = 0;
    break;
  default: break;
  }
}

/* The backend answered a start: the instance exists. What was asked while it was in
 * flight happens now: a stop's signal, or STARTING's clock and checks. */
static void on_started(struct ctx *c, const struct svc_event *ev) {
  struct svc_fsm *f = c->f;
  if (!f->proc_alive || !f->launching) return; /* stale, or answered already */
  f->launching = false;
  switch (f->state) {
  case S_STOPPING:
  case S_TIMEOUT:
  case S_FAILED: kill_begin(c); break;
  case S_STARTING:
    if (c->p->batch) break;
    if (c->p->watchdog > 0) f->wd_at = c->now + c->p->watchdog;
    if (c->p->notify_ready && f->ready_seen && !c->p->has_check) /* READY=1 came before the pid */
      enter(c, S_HEALTHY, "READY=1");
    else
      starting_arm(c);
    break;
  case S_PENDING:
  case S_UNKNOWN:
    if (c->p->batch) enter(c, S_SUBMITTED, "%s", ev->msg ? ev->msg : "submitted");
    break;
  default: break;
  }
}

static void on_queued(struct ctx *c, const struct svc_event *ev) {
  struct svc_fsm *f = c->f;
  if (!f->proc_alive || f->launching) return;
  switch (f->state) {
  case S_PENDING: /* still queued: the queue's reason may have changed, the state has not */
    if (ev->msg) snprintf(push(c->out, FX_REASON)->reason, sizeof c->out->fx[0].reason, "%s", ev->msg);
    break;
  case S_SUBMITTED:
  case S_UNKNOWN:
  case S_STARTING:
  case S_HEALTHY:
  case S_UNHEALTHY: /* requeued: back in the queue, which is not a failure */
    enter(c, S_PENDING, "%s", ev->msg ? ev->msg : "queued");
    break;
  default: break;
  }
}

static void on_running(struct ctx *c, const struct svc_event *ev) {
  struct svc_fsm *f = c->f;
  if (!f->proc_alive || f->launching) return;
  const char *msg = ev->msg ? ev->msg : "running";
  switch (f->state) {
  case S_SUBMITTED:
  case S_PENDING: enter(c, S_STARTING, "%s", msg); break; /* the start deadline counts from here */
  case S_UNKNOWN:
    if ((f->lost_from == S_HEALTHY || f->lost_from == S_UNHEALTHY) && c->p->has_check) {
      /* Back in sight: its health is not known until a check says so (checks that failed
       * while it was going out of sight may have failed for the path, not the service).
       * Still UNKNOWN; the first verdict of its checks decides. */
      if (!f->rechecking) {
        f->rechecking = true;
        f->pass_streak = f->fail_streak = 0;
        push(c->out, FX_CHECKS_START);
      }
      snprintf(push(c->out, FX_REASON)->reason, sizeof c->out->fx[0].reason, "%s; checking", msg);
    } else if (f->lost_from == S_HEALTHY || f->lost_from == S_UNHEALTHY) {
      enter(c, f->lost_from, "%s", msg); /* nothing to check: back where it was */
    } else {
      enter(c, S_STARTING, "%s", msg);
    }
    break;
  default: break;
  }
}

/* READY=1: the instance says it is ready. Without a check that makes it HEALTHY; with one,
 * HEALTHY needs the check's passes too (whichever comes last decides). Only STARTING waits
 * for it: a READY=1 later (a reload's) changes nothing. */
static void on_notify_ready(struct ctx *c, const struct svc_event *ev) {
  struct svc_fsm *f = c->f;
  const struct svc_policy *p = c->p;
  if (!p->notify_ready || !f->proc_alive || f->ready_seen) return;
  f->ready_seen = true;
  if (f->state != S_STARTING || f->launching) return; /* launching: EV_STARTED decides */
  const char *msg = ev->msg && *ev->msg ? ev->msg : NULL;
  unsigned succ = p->success_threshold ? p->success_threshold : 1;
  if (!p->has_check)
    enter(c, S_HEALTHY, "READY=1%s%s", msg ? ": " : "", msg ? msg : "");
  else if (f->pass_streak >= succ)
    enter(c, S_HEALTHY, "READY=1, and check passed %u time(s)", f->pass_streak);
}

/* WATCHDOG=1: the watchdog's deadline moves on. */
static void on_watchdog(struct ctx *c) {
  struct svc_fsm *f = c->f;
  if (c->p->watchdog <= 0 || !f->proc_alive || f->launching || !svc_state_running(f->state)) return;
  f->wd_at = c->now + c->p->watchdog;
}

/* The one timer serves both deadlines: with the watchdog on, arm it at the earlier one,
 * last in the list (so it wins over any ARM or DISARM before it). */
static void watchdog_sync(struct ctx *c) {
  struct svc_fsm *f = c->f;
  if (!f->wd_at) return;
  push(c->out, FX_ARM)->at = f->deadline && f->deadline < f->wd_at ? f->deadline : f->wd_at;
}

void svc_step(struct svc_fsm *f, const struct svc_policy *p, const struct svc_event *ev, double now,
              struct svc_fx_list *out) {
  out->n = 0;
  struct ctx c = {f, p, now, out};
  switch (ev->type) {
  case EV_START: on_start(&c, ev, false); break;
  case EV_RESTART: on_start(&c, ev, true); break;
  case EV_STOP: on_stop(&c, ev); break;
  case EV_SPAWN_FAILED:
    if (!f->proc_alive || !f->launching) break; /* stale: no start in flight */
    if (f->state != S_PENDING && f->state != S_UNKNOWN && f->state != S_STARTING) {
      /* Stopped (or timed out) while the request was in flight: it simply never began. */
      on_exit_ev(&c, ev);
    } else {
      f->proc_alive = false;
      f->launching = false;
      const char *m = ev->msg ? ev->msg : "spawn failed";
      instance_end(&c, S_FAILED, "%s", m);
      enter(&c, S_FAILED, "%s", m);
      apply_policy(&c);
    }
    break;
  case EV_EXIT: on_exit_ev(&c, ev); break;
  case EV_DEADLINE: on_deadline(&c); break;
  case EV_CHECK_PASS: on_check(&c, true, ev); break;
  case EV_CHECK_FAIL: on_check(&c, false, ev); break;
  case EV_LOST:
    if (f->proc_alive && (svc_state_running(f->state) || f->state == S_SUBMITTED || f->state == S_PENDING)) {
      f->lost_from = f->state;
      enter(&c, S_UNKNOWN, "%s", ev->msg ? ev->msg : "cannot observe the instance");
    } else if (f->state == S_UNKNOWN && f->rechecking) { /* out of sight again before a verdict */
      f->rechecking = false;
      push(out, FX_CHECKS_STOP);
      snprintf(push(out, FX_REASON)->reason, sizeof out->fx[0].reason, "%s",
               ev->msg ? ev->msg : "cannot observe the instance");
    }
    break;
  case EV_BLOCKED:
    f->want_up = true;
    if (!f->proc_alive && (svc_fsm_at_rest(f) || f->state == S_BACKOFF))
      enter(&c, S_PENDING, "%s", ev->msg ? ev->msg : "waiting");
    else if (!f->proc_alive && f->state == S_PENDING && ev->msg) /* still waiting: show on what now */
      snprintf(push(out, FX_REASON)->reason, sizeof out->fx[0].reason, "%s", ev->msg);
    break;
  case EV_DEFERRED:
    /* The start never began (a batch job: it certainly never reached the scheduler): no
     * instance ended, no failure counts; PENDING says why and the deadline tries again. */
    if (!f->proc_alive || !f->launching) break; /* stale: no start in flight */
    if (f->state == S_STOPPING || f->state == S_TIMEOUT) {
      on_exit_ev(&c, ev); /* stopped while the request waited: it simply never began */
    } else if (p->batch ? f->state == S_PENDING || f->state == S_UNKNOWN : f->state == S_STARTING) {
      f->proc_alive = false;
      f->launching = false;
      f->attempt--;
      if (f->state == S_PENDING)
        snprintf(push(out, FX_REASON)->reason, sizeof out->fx[0].reason, "%s",
                 ev->msg ? ev->msg : "the start is put off");
      else
        enter(&c, S_PENDING, "%s", ev->msg ? ev->msg : "the start is put off");
      arm(f, out, now + SVC_DEFER_RETRY);
    }
    break;
  case EV_STARTED: on_started(&c, ev); break;
  case EV_PAUSE: {
    bool want = f->want_up; /* what the user asked for has not changed */
    on_stop(&c, ev);
    f->want_up = want;
    break;
  }
  case EV_SHUTDOWN: f->want_up = false; break;
  case EV_QUEUED: on_queued(&c, ev); break;
  case EV_RUNNING: on_running(&c, ev); break;
  case EV_NOTIFY_READY: on_notify_ready(&c, ev); break;
  case EV_WATCHDOG: on_watchdog(&c); break;
  case EV__MAX: break;
  }
  watchdog_sync(&c);
}

void svc_resume(struct svc_fsm *f, const struct svc_policy *p, const struct svc_resume *r, double now,
                struct svc_fx_list *out) {
  out->n = 0;
  struct ctx c = {f, p, now, out};
  svc_state stored = r->stored;
  bool alive = r->alive;
  double started = r->started;
  const char *why_gone = r->why_gone;
  f->want_up = r->want_up;
  f->attempt = r->attempt;
  f->restarts = r->restarts;
  f->state = stored;
  f->since = now;
  f->deadline = 0;
  bool had_instance = svc_state_running(stored) || stored == S_STOPPING || stored == S_UNKNOWN ||
                      stored == S_SUBMITTED || ((stored == S_TIMEOUT || stored == S_FAILED) && alive) ||
                      (p->batch && stored == S_PENDING && alive);
  f->proc_alive = had_instance;
  f->launching = had_instance && alive && r->launching;
  if (!had_instance) return; /* at rest, BACKOFF or PENDING: the caller decides what to start */
  if (!alive) {
    /* The instance ended while no daemon watched it. */
    struct svc_event ev = {
        .type = EV_EXIT, .code = -1, .msg = why_gone ? why_gone : "exited while herd was down (status unknown)"};
    svc_step(f, p, &ev, now, out);
    return;
  }
  if (p->batch && (stored == S_STARTING || stored == S_HEALTHY || stored == S_UNHEALTHY)) {
    /* A job: whether it still runs, and where, is the scheduler's word (its next listing);
     * until then no check runs against a node or a tunnel not known yet. */
    f->healthy_since = now;
    struct svc_event ev = {.type = EV_LOST,
                           .msg = "watching the job again after a daemon restart: waiting for "
                                  "the scheduler's listing"};
    svc_step(f, p, &ev, now, out);
    return;
  }
  /* The watchdog starts afresh: the last WATCHDOG=1 went to the daemon before us. */
  if (p->watchdog > 0 && svc_state_running(stored) && !f->launching) f->wd_at = now + p->watchdog;
  switch (stored) {
  case S_STARTING:
    f->pass_streak = f->fail_streak = 0;
    if (p->job) {
      if (p->run_timeout > 0) arm(f, out, fmax(now, started + p->run_timeout));
    } else if (p->notify_ready && !p->has_check) {
      /* A READY=1 sent to the daemon before us is lost: the instance waits for its start
       * deadline as if it had not said it (see README). */
      if (p->start_timeout > 0) arm(f, out, fmax(now, started + p->start_timeout));
    } else if (p->has_check) {
      push(out, FX_CHECKS_START);
      if (p->start_timeout > 0) arm(f, out, fmax(now, started + p->start_timeout));
    } else {
      arm(f, out, fmax(now, started + p->ready_after));
    }
    break;
  case S_HEALTHY:
  case S_UNHEALTHY:
    f->healthy_since = now;
    f->ready_seen = true;
    if (p->has_check) push(out, FX_CHECKS_START);
    if (stored == S_UNHEALTHY && p->restart_on_unhealthy) arm(f, out, now + p->unhealthy_grace);
    break;
  case S_STOPPING:
  case S_TIMEOUT:
  case S_FAILED:
    /* It was being stopped: stop it again, with a fresh grace (once its start is
     * answered, if it never was). */
    if (!f->launching) kill_begin(&c);
    break;
  default: break;
  }
  watchdog_sync(&c);
}
