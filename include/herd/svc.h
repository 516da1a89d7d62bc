/*
 * The service state machine. svc_step() is pure: no libuv, no syscalls, no clock.
 * It takes the machine, the policy, one event and the current time, updates the
 * machine and appends effects (transitions to publish, processes to spawn or signal,
 * a deadline to arm) that the runner (service.c) carries out in order.
 */
#ifndef HERD_SVC_H
#define HERD_SVC_H

#include <assert.h>
#include <stdbool.h>
#include <stdint.h>

typedef enum {
  S_SUBMITTED, /* a batch job was accepted by the scheduler (slurm backend) */
  S_PENDING,   /* wanted up, waiting: on dependencies or the scheduler's queue */
  S_STARTING,  /* the process/job runs; not yet proven healthy */
  S_HEALTHY,   /* running and healthy (checks pass, or up for ready_after) */
  S_UNHEALTHY, /* was healthy, checks now fail */
  S_STOPPING,  /* stop signal sent, waiting for the process to go */
  S_STOPPED,   /* not running because it was asked to stop (or never started) */
  S_FAILED,    /* the instance ended badly (exit != 0, signal, spawn error) */
  S_TIMEOUT,   /* the instance did not become healthy before its start deadline */
  S_COMPLETED, /* the instance exited 0 */
  S_BACKOFF,   /* waiting before the next restart */
  S_UNKNOWN,   /* herd cannot observe the service right now; never restarts by itself */
  S__MAX
} svc_state;

typedef enum {
  EV_START,        /* wanted: up */
  EV_STOP,         /* wanted: down */
  EV_RESTART,      /* stop if running, then start a new instance at once */
  EV_SPAWN_FAILED, /* the runner could not start the instance */
  EV_EXIT,         /* the instance's process ended (code/sig) */
  EV_DEADLINE,     /* the service's one timer fired */
  EV_CHECK_PASS,   /* a health check passed */
  EV_CHECK_FAIL,   /* a health check failed */
  EV_LOST,         /* the control plane cannot tell us about the instance */
  EV_BLOCKED,      /* wanted up but must wait (dependencies) */
  EV_STARTED,      /* the start was answered: the instance exists (a pid, or a job the scheduler
                      accepted); what was asked of it meanwhile (a stop) is carried out now */
  EV_QUEUED,       /* batch: the job waits in the scheduler's queue (or was requeued) */
  EV_RUNNING,      /* batch: the job runs (or runs again, after the control plane was lost) */
  EV_DEFERRED,     /* the runner cannot start the instance for a lack of its own (the daemon's
                      descriptor limit): wait and try again; not the service's failure */
  EV_PAUSE,        /* stop the instance for now; the wanted state does not change (spec change,
                      dependency restart) */
  EV_SHUTDOWN,     /* the daemon is shutting down: nothing restarts; the stop itself comes later
                      (dependents first) */
  EV_NOTIFY_READY, /* the instance said READY=1 on herd's notify socket ("ready": "notify") */
  EV_WATCHDOG,     /* the instance said WATCHDOG=1: it is alive for another `watchdog` seconds */
  EV__MAX
} svc_event_type;

typedef enum { RESTART_ALWAYS, RESTART_ON_FAILURE, RESTART_NEVER, RESTART__MAX } restart_policy;

/* How long a start put off by the daemon's own lack (EV_DEFERRED) waits before the next try. */
#define SVC_DEFER_RETRY 1.0

/* The least time an instance must stay healthy before the backoff starts over (seconds). */
#define SVC_RESET_FLOOR 1.0

struct svc_backoff {
  double initial, max, multiplier, jitter, reset_after;
};

/** What the state machine needs to know of the spec. */
struct svc_policy {
  restart_policy restart;
  struct svc_backoff backoff;
  int stop_signal;
  double stop_grace;
  double start_timeout; /* with a check: STARTING longer than this -> TIMEOUT (0 = never) */
  double ready_after;   /* without a check: up this long -> HEALTHY */
  bool has_check;
  unsigned success_threshold, failure_threshold;
  bool restart_on_unhealthy;
  double unhealthy_grace;
  bool batch;            /* instances are scheduler jobs: submitted, queued, then running */
  double queue_timeout;  /* batch: SUBMITTED/PENDING longer than this -> TIMEOUT (0 = never) */
  bool notify_ready;     /* "ready": "notify": HEALTHY needs READY=1 (and, with a check, its passes too) */
  double watchdog;       /* > 0: a running instance silent (no WATCHDOG=1) this long is FAILED and restarted */
  bool job;              /* runs to completion: STARTING until it exits (never HEALTHY) */
  double run_timeout;    /* job: an attempt running longer than this -> TIMEOUT (0 = never) */
  unsigned max_attempts; /* no restart by policy after this many attempts (0 = no limit) */
};

struct svc_fsm {
  svc_state state;
  bool want_up;
  bool proc_alive;      /* an instance process exists that we must see exit */
  bool killed_hard;     /* SIGKILL already sent to the instance */
  bool restart_pending; /* start again when the current instance is gone */
  unsigned attempt;     /* attempt number of the current/last instance (1-based) */
  unsigned fails;       /* consecutive failed instances since the last reset: drives backoff */
  unsigned restarts;    /* restarts made by policy or request */
  unsigned pass_streak, fail_streak;
  double since;         /* when the current state was entered */
  double healthy_since; /* when the current instance became HEALTHY (0 = not yet) */
  double deadline;      /* armed deadline (0 = none) */
  bool launching;       /* the instance was asked for (spawn, submit) and the backend has not answered
                           (EV_STARTED / EV_SPAWN_FAILED): no signal can reach it yet, no deadline or
                           check runs against it */
  svc_state lost_from;  /* the state UNKNOWN was entered from */
  bool rechecking;      /* back in sight from UNKNOWN: its checks run, the first verdict decides */
  double queued_at;     /* batch: when the current instance was asked for */
  uint64_t rng;         /* xorshift state for jitter: keeps svc_step pure and repeatable */
  char end_reason[96];  /* why a still-running instance was declared over (TIMEOUT, unhealthy) */
  bool ready_seen;      /* the current instance said READY=1 */
  double wd_at;         /* the watchdog's deadline (0 = none): the one timer is armed at the earlier of
                           this and `deadline` */
};

struct svc_event {
  svc_event_type type;
  int code;        /* EV_EXIT: exit status (-1 when unknown) */
  int sig;         /* EV_EXIT: terminating signal or 0 */
  const char *msg; /* free text (spawn error, check message, lost reason) */
  svc_state end;   /* EV_EXIT: the end state the backend determined (S_TIMEOUT, S_FAILED, S_STOPPED for a
                      cancel), or S_SUBMITTED (0) to derive it from code and sig */
};

typedef enum {
  FX_TRANSITION,   /* publish from -> to with reason */
  FX_SPAWN,        /* start a new instance (attempt = fsm.attempt) */
  FX_SIGNAL,       /* send sig to the instance's process group */
  FX_ARM,          /* arm the service's one timer at `at` (absolute, monotonic) */
  FX_DISARM,       /* stop the timer */
  FX_INSTANCE_END, /* record the end of the instance: `to` is its end state */
  FX_CHECKS_START, /* begin health checking the instance */
  FX_CHECKS_STOP,  /* stop health checking */
  FX_REASON,       /* show a new reason for the current state (no transition: a queue reason, a
                      dependency wait) */
  FX__MAX
} svc_fx_type;

struct svc_fx {
  svc_fx_type type;
  svc_state from, to;
  int sig;
  double at;
  char reason[112];
};

#define SVC_FX_MAX 16
struct svc_fx_list {
  struct svc_fx fx[SVC_FX_MAX];
  int n;
};

/** Name of a state ("HEALTHY"); parse back with svc_state_parse (case-insensitive), -1 if unknown. */
const char *svc_state_name(svc_state s);
int svc_state_parse(const char *s);
const char *svc_event_name(svc_event_type e);
const char *svc_fx_name(svc_fx_type f);
const char *restart_policy_name(restart_policy r);

/** Initialise a machine in STOPPED, wanted down. */
void svc_fsm_init(struct svc_fsm *f, uint64_t seed);

/** True when the state has a live instance that counts as "running". */
bool svc_state_running(svc_state s);
/** True when the service is at rest: no process, and no restart coming. */
bool svc_fsm_at_rest(const struct svc_fsm *f);

/** The backoff delay before restart number `fails` (1-based), before jitter. */
double svc_backoff_delay(const struct svc_backoff *b, unsigned fails);

/**
 * Resume a machine after a daemon restart, from what the previous daemon recorded and
 * what the backend found (see struct svc_resume). A live instance is re-adopted in its state, with its
 * deadline re-armed and its checks resumed; a dead one ends (EV_EXIT, status unknown)
 * and the restart policy applies. `started` is when the instance started (monotonic
 * clock), to re-arm STARTING's deadline where it would have been.
 */
struct svc_resume {
  svc_state stored;     /* the state the last daemon recorded */
  bool want_up;         /* the wanted state it recorded */
  unsigned attempt;     /* the last instance's attempt number */
  unsigned restarts;    /* the restart count it recorded */
  bool alive;           /* the recorded instance is still there (identity proven by the backend) */
  bool launching;       /* alive, but its start was never answered (a submission whose job is not
                           known yet): the backend answers EV_STARTED or EV_SPAWN_FAILED later */
  double started;       /* when the instance started (monotonic clock) */
  const char *why_gone; /* why it is not alive, or NULL */
};
void svc_resume(struct svc_fsm *f, const struct svc_policy *p, const struct svc_resume *r, double now,
                struct svc_fx_list *out);

/** Advance the machine by one event. Effects are appended to `out` (which is reset first). */
void svc_step(struct svc_fsm *f, const struct svc_policy *p, const struct svc_event *ev, double now,
              struct svc_fx_list *out);

#endif
