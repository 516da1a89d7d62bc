/*
 * svc_step, table-driven: every state x event pair has at least one row, and the test
 * fails if a pair is missing. A row gives the machine's starting point, the policy,
 * the event, and the exact effects expected, written compactly:
 *   "FROM>TO" a transition, "spawn", "sig:N", "arm", "disarm", "end:STATE" (instance
 *   end), "chk+"/"chk-" (checks start/stop).
 */
#include "herd/svc.h"

#include <stdio.h>
#include <string.h>

#include "check.h"

enum { P_PLAIN, P_CHECK, P_NEVER, P_ONFAIL, P_BATCH, P_NOTIFY, P_NOTIFYCHK, P_WD, P__MAX };

static struct svc_policy policy(int which) {
  struct svc_policy p = {
      .restart = RESTART_ALWAYS,
      .backoff = {.initial = 1, .max = 60, .multiplier = 2, .jitter = 0, .reset_after = 60},
      .stop_signal = 15,
      .stop_grace = 10,
      .start_timeout = 5,
      .ready_after = 1,
      .success_threshold = 1,
      .failure_threshold = 1,
  };
  if (which == P_CHECK) {
    p.has_check = true;
    p.failure_threshold = 2;
    p.restart_on_unhealthy = true;
    p.unhealthy_grace = 3;
  }
  if (which == P_NEVER) p.restart = RESTART_NEVER;
  if (which == P_ONFAIL) p.restart = RESTART_ON_FAILURE;
  if (which == P_BATCH) {
    p.batch = true;
    p.has_check = true;
    p.queue_timeout = 30;
  }
  if (which == P_NOTIFY || which == P_NOTIFYCHK) p.notify_ready = true; /* "ready": "notify" */
  if (which == P_NOTIFYCHK) p.has_check = true;
  if (which == P_WD) p.watchdog = 5;
  return p;
}

struct row {
  svc_state from;
  bool launching; /* the instance was asked for; its start is not answered yet */
  bool proc, want, deadline;
  int pol;
  svc_event_type ev;
  int code; /* EV_EXIT code (signal when negative) */
  svc_state to;
  const char *fx;
  int line;
};

#define R(from, proc, want, dl, pol, ev, code, to, fx)                                                                 \
  { from, false, proc, want, dl, pol, ev, code, to, fx, __LINE__ }
/* The same with the instance's start in flight (spawn or submit not answered). */
#define L(from, proc, want, dl, pol, ev, code, to, fx)                                                                 \
  { from, true, proc, want, dl, pol, ev, code, to, fx, __LINE__ }

static const struct row rows[] = {
    /* A start in flight (the spawner thread or the scheduler has not answered): no clock,
     * no check and no signal until EV_STARTED; what was asked meanwhile happens then. */
    L(S_STARTING, 1, 1, 0, P_PLAIN, EV_STARTED, 0, S_STARTING, "arm"),
    L(S_STARTING, 1, 1, 0, P_CHECK, EV_STARTED, 0, S_STARTING, "chk+ arm"),
    L(S_STARTING, 1, 1, 0, P_PLAIN, EV_STOP, 0, S_STOPPING, "STARTING>STOPPING"),
    L(S_STARTING, 1, 1, 0, P_CHECK, EV_RESTART, 0, S_STOPPING, "STARTING>STOPPING"),
    L(S_STARTING, 1, 1, 0, P_PLAIN, EV_DEADLINE, 0, S_STARTING, ""),
    L(S_STARTING, 1, 1, 0, P_CHECK, EV_CHECK_PASS, 0, S_STARTING, ""),
    L(S_STOPPING, 1, 0, 0, P_PLAIN, EV_STARTED, 0, S_STOPPING, "sig:15 arm"),
    L(S_STOPPING, 1, 0, 0, P_PLAIN, EV_DEADLINE, 0, S_STOPPING, ""),
    L(S_STOPPING, 1, 0, 0, P_PLAIN, EV_SPAWN_FAILED, 0, S_STOPPED, "end:STOPPED STOPPING>STOPPED"),
    L(S_STOPPING, 1, 1, 0, P_PLAIN, EV_EXIT, 0, S_STOPPED, "end:STOPPED STOPPING>STOPPED"),
    L(S_PENDING, 1, 1, 1, P_BATCH, EV_STOP, 0, S_STOPPING, "PENDING>STOPPING disarm"),
    L(S_PENDING, 1, 1, 1, P_BATCH, EV_DEADLINE, 0, S_TIMEOUT, "PENDING>TIMEOUT"),
    L(S_PENDING, 1, 1, 1, P_BATCH, EV_QUEUED, 0, S_PENDING, ""),
    L(S_PENDING, 1, 1, 1, P_BATCH, EV_RUNNING, 0, S_PENDING, ""),
    L(S_PENDING, 1, 1, 1, P_BATCH, EV_SPAWN_FAILED, 0, S_BACKOFF,
      "end:FAILED PENDING>FAILED disarm FAILED>BACKOFF arm"),
    L(S_TIMEOUT, 1, 1, 0, P_BATCH, EV_STARTED, 0, S_TIMEOUT, "sig:15 arm"),
    L(S_TIMEOUT, 1, 1, 0, P_BATCH, EV_SPAWN_FAILED, 0, S_BACKOFF, "end:TIMEOUT TIMEOUT>BACKOFF arm"),
    L(S_UNKNOWN, 1, 1, 0, P_BATCH, EV_STARTED, 0, S_SUBMITTED, "UNKNOWN>SUBMITTED arm"),
    L(S_UNKNOWN, 1, 1, 0, P_BATCH, EV_SPAWN_FAILED, 0, S_BACKOFF, "end:FAILED UNKNOWN>FAILED FAILED>BACKOFF arm"),
    /* A pause: a stop that keeps the wanted state (test_pause checks it is kept). */
    R(S_SUBMITTED, 1, 1, 1, P_BATCH, EV_PAUSE, 0, S_STOPPING, "SUBMITTED>STOPPING disarm sig:15 arm"),
    R(S_PENDING, 0, 1, 0, P_PLAIN, EV_PAUSE, 0, S_STOPPED, "PENDING>STOPPED"),
    R(S_STARTING, 1, 1, 1, P_PLAIN, EV_PAUSE, 0, S_STOPPING, "STARTING>STOPPING disarm sig:15 arm"),
    R(S_HEALTHY, 1, 1, 0, P_PLAIN, EV_PAUSE, 0, S_STOPPING, "HEALTHY>STOPPING sig:15 arm"),
    R(S_UNHEALTHY, 1, 1, 0, P_CHECK, EV_PAUSE, 0, S_STOPPING, "UNHEALTHY>STOPPING chk- sig:15 arm"),
    R(S_STOPPING, 1, 0, 1, P_PLAIN, EV_PAUSE, 0, S_STOPPING, ""),
    R(S_STOPPED, 0, 0, 0, P_PLAIN, EV_PAUSE, 0, S_STOPPED, ""),
    R(S_FAILED, 0, 1, 0, P_NEVER, EV_PAUSE, 0, S_FAILED, ""),
    R(S_TIMEOUT, 1, 1, 1, P_CHECK, EV_PAUSE, 0, S_TIMEOUT, ""),
    R(S_COMPLETED, 0, 1, 0, P_ONFAIL, EV_PAUSE, 0, S_COMPLETED, ""),
    R(S_BACKOFF, 0, 1, 1, P_PLAIN, EV_PAUSE, 0, S_STOPPED, "BACKOFF>STOPPED disarm"),
    R(S_UNKNOWN, 1, 1, 0, P_PLAIN, EV_PAUSE, 0, S_STOPPING, "UNKNOWN>STOPPING sig:15 arm"),
    /* Shutdown: nothing restarts from here on; the stops come later, dependents first. */
    R(S_SUBMITTED, 1, 1, 1, P_BATCH, EV_SHUTDOWN, 0, S_SUBMITTED, ""),
    R(S_PENDING, 0, 1, 0, P_PLAIN, EV_SHUTDOWN, 0, S_PENDING, ""),
    R(S_STARTING, 1, 1, 1, P_PLAIN, EV_SHUTDOWN, 0, S_STARTING, ""),
    R(S_HEALTHY, 1, 1, 0, P_PLAIN, EV_SHUTDOWN, 0, S_HEALTHY, ""),
    R(S_UNHEALTHY, 1, 1, 0, P_CHECK, EV_SHUTDOWN, 0, S_UNHEALTHY, ""),
    R(S_STOPPING, 1, 1, 1, P_PLAIN, EV_SHUTDOWN, 0, S_STOPPING, ""),
    R(S_STOPPED, 0, 0, 0, P_PLAIN, EV_SHUTDOWN, 0, S_STOPPED, ""),
    R(S_FAILED, 0, 1, 0, P_NEVER, EV_SHUTDOWN, 0, S_FAILED, ""),
    R(S_TIMEOUT, 1, 1, 1, P_CHECK, EV_SHUTDOWN, 0, S_TIMEOUT, ""),
    R(S_COMPLETED, 0, 1, 0, P_ONFAIL, EV_SHUTDOWN, 0, S_COMPLETED, ""),
    R(S_BACKOFF, 0, 1, 1, P_PLAIN, EV_SHUTDOWN, 0, S_BACKOFF, ""),
    R(S_UNKNOWN, 1, 1, 0, P_PLAIN, EV_SHUTDOWN, 0, S_UNKNOWN, ""),
    /* Batch events (a Slurm job's life), for every state. */
    R(S_SUBMITTED, 1, 1, 1, P_BATCH, EV_STARTED, 0, S_SUBMITTED, ""),
    R(S_SUBMITTED, 1, 1, 1, P_BATCH, EV_QUEUED, 0, S_PENDING, "SUBMITTED>PENDING disarm arm"),
    R(S_SUBMITTED, 1, 1, 1, P_BATCH, EV_RUNNING, 0, S_STARTING, "SUBMITTED>STARTING disarm chk+ arm"),
    L(S_PENDING, 1, 1, 0, P_BATCH, EV_STARTED, 0, S_SUBMITTED, "PENDING>SUBMITTED arm"),
    R(S_PENDING, 1, 1, 1, P_BATCH, EV_QUEUED, 0, S_PENDING, "reason"),
    R(S_PENDING, 1, 1, 1, P_BATCH, EV_RUNNING, 0, S_STARTING, "PENDING>STARTING disarm chk+ arm"),
    R(S_PENDING, 0, 1, 0, P_PLAIN, EV_RUNNING, 0, S_PENDING, ""),
    R(S_STARTING, 1, 1, 1, P_BATCH, EV_STARTED, 0, S_STARTING, ""),
    R(S_STARTING, 1, 1, 1, P_BATCH, EV_QUEUED, 0, S_PENDING, "STARTING>PENDING disarm chk- arm"),
    R(S_STARTING, 1, 1, 1, P_BATCH, EV_RUNNING, 0, S_STARTING, ""),
    R(S_HEALTHY, 1, 1, 0, P_BATCH, EV_STARTED, 0, S_HEALTHY, ""),
    R(S_HEALTHY, 1, 1, 0, P_BATCH, EV_QUEUED, 0, S_PENDING, "HEALTHY>PENDING chk- arm"),
    R(S_HEALTHY, 1, 1, 0, P_BATCH, EV_RUNNING, 0, S_HEALTHY, ""),
    R(S_UNHEALTHY, 1, 1, 0, P_BATCH, EV_STARTED, 0, S_UNHEALTHY, ""),
    R(S_UNHEALTHY, 1, 1, 0, P_BATCH, EV_QUEUED, 0, S_PENDING, "UNHEALTHY>PENDING chk- arm"),
    R(S_UNHEALTHY, 1, 1, 0, P_BATCH, EV_RUNNING, 0, S_UNHEALTHY, ""),
    R(S_STOPPING, 1, 0, 1, P_BATCH, EV_STARTED, 0, S_STOPPING, ""),
    R(S_STOPPING, 1, 0, 1, P_BATCH, EV_QUEUED, 0, S_STOPPING, ""),
    R(S_STOPPING, 1, 0, 1, P_BATCH, EV_RUNNING, 0, S_STOPPING, ""),
    R(S_STOPPED, 0, 0, 0, P_BATCH, EV_STARTED, 0, S_STOPPED, ""),
    R(S_STOPPED, 0, 0, 0, P_BATCH, EV_QUEUED, 0, S_STOPPED, ""),
    R(S_STOPPED, 0, 0, 0, P_BATCH, EV_RUNNING, 0, S_STOPPED, ""),
    R(S_FAILED, 0, 1, 0, P_BATCH, EV_STARTED, 0, S_FAILED, ""),
    R(S_FAILED, 0, 1, 0, P_BATCH, EV_QUEUED, 0, S_FAILED, ""),
    R(S_FAILED, 1, 1, 1, P_BATCH, EV_RUNNING, 0, S_FAILED, ""),
    R(S_TIMEOUT, 1, 1, 1, P_BATCH, EV_STARTED, 0, S_TIMEOUT, ""),
    R(S_TIMEOUT, 1, 1, 1, P_BATCH, EV_QUEUED, 0, S_TIMEOUT, ""),
    R(S_TIMEOUT, 1, 1, 1, P_BATCH, EV_RUNNING, 0, S_TIMEOUT, ""),
    R(S_COMPLETED, 0, 1, 0, P_BATCH, EV_STARTED, 0, S_COMPLETED, ""),
    R(S_COMPLETED, 0, 1, 0, P_BATCH, EV_QUEUED, 0, S_COMPLETED, ""),
    R(S_COMPLETED, 0, 1, 0, P_BATCH, EV_RUNNING, 0, S_COMPLETED, ""),
    R(S_BACKOFF, 0, 1, 1, P_BATCH, EV_STARTED, 0, S_BACKOFF, ""),
    R(S_BACKOFF, 0, 1, 1, P_BATCH, EV_QUEUED, 0, S_BACKOFF, ""),
    R(S_BACKOFF, 0, 1, 1, P_BATCH, EV_RUNNING, 0, S_BACKOFF, ""),
    R(S_BACKOFF, 0, 1, 1, P_BATCH, EV_DEADLINE, 0, S_PENDING, "spawn BACKOFF>PENDING arm"),
    R(S_UNKNOWN, 1, 1, 0, P_BATCH, EV_STARTED, 0, S_UNKNOWN, ""),
    R(S_UNKNOWN, 1, 1, 0, P_BATCH, EV_QUEUED, 0, S_PENDING, "UNKNOWN>PENDING arm"),
    R(S_UNKNOWN, 1, 1, 0, P_BATCH, EV_RUNNING, 0, S_STARTING, "UNKNOWN>STARTING chk+ arm"),
    /* Batch specifics. */
    R(S_STOPPED, 0, 0, 0, P_BATCH, EV_START, 0, S_PENDING, "spawn STOPPED>PENDING arm"),
    R(S_PENDING, 1, 1, 1, P_BATCH, EV_START, 0, S_PENDING, ""),
    R(S_PENDING, 1, 1, 1, P_BATCH, EV_RESTART, 0, S_STOPPING, "PENDING>STOPPING disarm sig:15 arm"),
    R(S_PENDING, 1, 1, 1, P_BATCH, EV_STOP, 0, S_STOPPING, "PENDING>STOPPING disarm sig:15 arm"),
    R(S_PENDING, 1, 1, 1, P_BATCH, EV_DEADLINE, 0, S_TIMEOUT, "PENDING>TIMEOUT sig:15 arm"),
    R(S_SUBMITTED, 1, 1, 1, P_BATCH, EV_DEADLINE, 0, S_TIMEOUT, "SUBMITTED>TIMEOUT sig:15 arm"),
    R(S_PENDING, 1, 1, 1, P_BATCH, EV_LOST, 0, S_UNKNOWN, "PENDING>UNKNOWN disarm"),
    R(S_HEALTHY, 1, 1, 0, P_BATCH, EV_LOST, 0, S_UNKNOWN, "HEALTHY>UNKNOWN chk-"),
    R(S_UNKNOWN, 1, 1, 0, P_BATCH, EV_DEADLINE, 0, S_UNKNOWN, ""),
    R(S_UNKNOWN, 1, 1, 0, P_BATCH, EV_EXIT, 3, S_BACKOFF, "end:FAILED UNKNOWN>FAILED FAILED>BACKOFF arm"),
    /* SUBMITTED: a scheduler accepted the job (slurm backend) */
    R(S_SUBMITTED, 1, 1, 0, P_PLAIN, EV_START, 0, S_SUBMITTED, ""),
    R(S_SUBMITTED, 1, 1, 0, P_PLAIN, EV_STOP, 0, S_STOPPING, "SUBMITTED>STOPPING sig:15 arm"),
    R(S_SUBMITTED, 1, 1, 0, P_PLAIN, EV_RESTART, 0, S_SUBMITTED, ""),
    R(S_SUBMITTED, 1, 1, 0, P_PLAIN, EV_SPAWN_FAILED, 0, S_SUBMITTED, ""),
    R(S_SUBMITTED, 1, 1, 0, P_PLAIN, EV_EXIT, 1, S_BACKOFF, "end:FAILED SUBMITTED>FAILED FAILED>BACKOFF arm"),
    R(S_SUBMITTED, 1, 1, 0, P_PLAIN, EV_DEADLINE, 0, S_SUBMITTED, ""),
    R(S_SUBMITTED, 1, 1, 0, P_PLAIN, EV_CHECK_PASS, 0, S_SUBMITTED, ""),
    R(S_SUBMITTED, 1, 1, 0, P_PLAIN, EV_CHECK_FAIL, 0, S_SUBMITTED, ""),
    R(S_SUBMITTED, 1, 1, 0, P_PLAIN, EV_LOST, 0, S_UNKNOWN, "SUBMITTED>UNKNOWN"),
    R(S_SUBMITTED, 1, 1, 0, P_PLAIN, EV_BLOCKED, 0, S_SUBMITTED, ""),
    /* PENDING: wanted up, waiting (dependencies, queue) */
    R(S_PENDING, 0, 1, 0, P_PLAIN, EV_START, 0, S_STARTING, "spawn PENDING>STARTING"),
    R(S_PENDING, 0, 1, 0, P_PLAIN, EV_STOP, 0, S_STOPPED, "PENDING>STOPPED"),
    R(S_PENDING, 0, 1, 0, P_PLAIN, EV_RESTART, 0, S_STARTING, "spawn PENDING>STARTING"),
    R(S_PENDING, 0, 1, 0, P_PLAIN, EV_SPAWN_FAILED, 0, S_PENDING, ""),
    R(S_PENDING, 0, 1, 0, P_PLAIN, EV_EXIT, 1, S_PENDING, ""),
    R(S_PENDING, 0, 1, 0, P_PLAIN, EV_DEADLINE, 0, S_PENDING, ""),
    /* A start the daemon put off (its descriptor limit): PENDING, no failure, retried. */
    L(S_STARTING, 1, 1, 0, P_PLAIN, EV_DEFERRED, 0, S_PENDING, "STARTING>PENDING arm"),
    R(S_STARTING, 1, 1, 1, P_PLAIN, EV_DEFERRED, 0, S_STARTING, ""), /* it runs: too late to put off */
    R(S_STARTING, 1, 1, 1, P_BATCH, EV_DEFERRED, 0, S_STARTING, ""),
    /* A submission that certainly never reached the scheduler (its control plane down): the
     * same, still PENDING, the reason says why; the deadline submits again. */
    L(S_PENDING, 1, 1, 0, P_BATCH, EV_DEFERRED, 0, S_PENDING, "reason arm"),
    R(S_PENDING, 1, 1, 0, P_BATCH, EV_DEFERRED, 0, S_PENDING, ""), /* it was answered: too late */
    L(S_UNKNOWN, 1, 1, 0, P_BATCH, EV_DEFERRED, 0, S_PENDING, "UNKNOWN>PENDING arm"),
    /* stopped while the submission waited, then it never left: nothing to stop */
    L(S_STOPPING, 1, 0, 1, P_BATCH, EV_DEFERRED, 0, S_STOPPED, "end:STOPPED STOPPING>STOPPED disarm"),
    R(S_PENDING, 0, 1, 1, P_BATCH, EV_DEADLINE, 0, S_PENDING, "spawn PENDING>PENDING arm"),
    R(S_PENDING, 0, 1, 1, P_PLAIN, EV_DEADLINE, 0, S_STARTING, "spawn PENDING>STARTING"),
    R(S_PENDING, 0, 1, 0, P_PLAIN, EV_DEFERRED, 0, S_PENDING, ""),
    R(S_SUBMITTED, 1, 1, 1, P_BATCH, EV_DEFERRED, 0, S_SUBMITTED, ""),
    R(S_HEALTHY, 1, 1, 0, P_PLAIN, EV_DEFERRED, 0, S_HEALTHY, ""),
    R(S_UNHEALTHY, 1, 1, 0, P_CHECK, EV_DEFERRED, 0, S_UNHEALTHY, ""),
    R(S_STOPPING, 1, 0, 1, P_PLAIN, EV_DEFERRED, 0, S_STOPPING, ""),
    R(S_STOPPED, 0, 0, 0, P_PLAIN, EV_DEFERRED, 0, S_STOPPED, ""),
    R(S_FAILED, 0, 1, 0, P_NEVER, EV_DEFERRED, 0, S_FAILED, ""),
    R(S_TIMEOUT, 1, 1, 1, P_CHECK, EV_DEFERRED, 0, S_TIMEOUT, ""),
    R(S_COMPLETED, 0, 1, 0, P_ONFAIL, EV_DEFERRED, 0, S_COMPLETED, ""),
    R(S_BACKOFF, 0, 1, 1, P_PLAIN, EV_DEFERRED, 0, S_BACKOFF, ""),
    R(S_UNKNOWN, 1, 1, 0, P_PLAIN, EV_DEFERRED, 0, S_UNKNOWN, ""),
    R(S_PENDING, 0, 1, 0, P_PLAIN, EV_CHECK_PASS, 0, S_PENDING, ""),
    R(S_PENDING, 0, 1, 0, P_PLAIN, EV_CHECK_FAIL, 0, S_PENDING, ""),
    R(S_PENDING, 0, 1, 0, P_PLAIN, EV_LOST, 0, S_PENDING, ""),
    R(S_PENDING, 0, 1, 0, P_PLAIN, EV_BLOCKED, 0, S_PENDING, "reason"),
    /* STARTING: never UNHEALTHY; only HEALTHY, TIMEOUT, FAILED/COMPLETED or STOPPING */
    R(S_STARTING, 1, 1, 1, P_PLAIN, EV_START, 0, S_STARTING, ""),
    R(S_STARTING, 1, 1, 1, P_PLAIN, EV_STOP, 0, S_STOPPING, "STARTING>STOPPING disarm sig:15 arm"),
    R(S_STARTING, 1, 1, 1, P_PLAIN, EV_RESTART, 0, S_STOPPING, "STARTING>STOPPING disarm sig:15 arm"),
    L(S_STARTING, 1, 1, 0, P_PLAIN, EV_SPAWN_FAILED, 0, S_BACKOFF, "end:FAILED STARTING>FAILED FAILED>BACKOFF arm"),
    R(S_STARTING, 1, 1, 1, P_PLAIN, EV_STARTED, 0, S_STARTING, ""), /* answered already: stale */
    R(S_STARTING, 1, 1, 1, P_PLAIN, EV_EXIT, 1, S_BACKOFF, "end:FAILED STARTING>FAILED disarm FAILED>BACKOFF arm"),
    R(S_STARTING, 1, 1, 1, P_PLAIN, EV_EXIT, 0, S_BACKOFF,
      "end:COMPLETED STARTING>COMPLETED disarm COMPLETED>BACKOFF arm"),
    R(S_STARTING, 1, 1, 1, P_ONFAIL, EV_EXIT, 0, S_COMPLETED, "end:COMPLETED STARTING>COMPLETED disarm"),
    R(S_STARTING, 1, 1, 1, P_NEVER, EV_EXIT, -9, S_FAILED, "end:FAILED STARTING>FAILED disarm"),
    R(S_STARTING, 1, 1, 1, P_PLAIN, EV_DEADLINE, 0, S_HEALTHY, "STARTING>HEALTHY"),
    R(S_STARTING, 1, 1, 1, P_CHECK, EV_DEADLINE, 0, S_TIMEOUT, "STARTING>TIMEOUT chk- sig:15 arm"),
    R(S_STARTING, 1, 1, 1, P_CHECK, EV_CHECK_PASS, 0, S_HEALTHY, "STARTING>HEALTHY disarm"),
    R(S_STARTING, 1, 1, 1, P_CHECK, EV_CHECK_FAIL, 0, S_STARTING, ""),
    R(S_STARTING, 1, 1, 1, P_PLAIN, EV_LOST, 0, S_UNKNOWN, "STARTING>UNKNOWN disarm"),
    R(S_STARTING, 1, 1, 1, P_PLAIN, EV_BLOCKED, 0, S_STARTING, ""),
    /* HEALTHY */
    R(S_HEALTHY, 1, 1, 0, P_PLAIN, EV_START, 0, S_HEALTHY, ""),
    R(S_HEALTHY, 1, 1, 0, P_PLAIN, EV_STOP, 0, S_STOPPING, "HEALTHY>STOPPING sig:15 arm"),
    R(S_HEALTHY, 1, 1, 0, P_PLAIN, EV_RESTART, 0, S_STOPPING, "HEALTHY>STOPPING sig:15 arm"),
    R(S_HEALTHY, 1, 1, 0, P_PLAIN, EV_SPAWN_FAILED, 0, S_HEALTHY, ""),
    R(S_HEALTHY, 1, 1, 0, P_PLAIN, EV_EXIT, 1, S_BACKOFF, "end:FAILED HEALTHY>FAILED FAILED>BACKOFF arm"),
    R(S_HEALTHY, 1, 1, 0, P_CHECK, EV_EXIT, 1, S_BACKOFF, "end:FAILED HEALTHY>FAILED chk- FAILED>BACKOFF arm"),
    R(S_HEALTHY, 1, 1, 0, P_PLAIN, EV_DEADLINE, 0, S_HEALTHY, ""),
    R(S_HEALTHY, 1, 1, 0, P_CHECK, EV_CHECK_PASS, 0, S_HEALTHY, ""),
    R(S_HEALTHY, 1, 1, 0, P_PLAIN, EV_CHECK_FAIL, 0, S_UNHEALTHY, "HEALTHY>UNHEALTHY"),
    R(S_HEALTHY, 1, 1, 0, P_CHECK, EV_CHECK_FAIL, 0, S_HEALTHY, ""), /* threshold 2: one failure is not enough */
    R(S_HEALTHY, 1, 1, 0, P_PLAIN, EV_LOST, 0, S_UNKNOWN, "HEALTHY>UNKNOWN"),
    R(S_HEALTHY, 1, 1, 0, P_PLAIN, EV_BLOCKED, 0, S_HEALTHY, ""),
    /* UNHEALTHY */
    R(S_UNHEALTHY, 1, 1, 0, P_PLAIN, EV_START, 0, S_UNHEALTHY, ""),
    R(S_UNHEALTHY, 1, 1, 0, P_PLAIN, EV_STOP, 0, S_STOPPING, "UNHEALTHY>STOPPING sig:15 arm"),
    R(S_UNHEALTHY, 1, 1, 0, P_PLAIN, EV_RESTART, 0, S_STOPPING, "UNHEALTHY>STOPPING sig:15 arm"),
    R(S_UNHEALTHY, 1, 1, 0, P_PLAIN, EV_SPAWN_FAILED, 0, S_UNHEALTHY, ""),
    R(S_UNHEALTHY, 1, 1, 0, P_PLAIN, EV_EXIT, 1, S_BACKOFF, "end:FAILED UNHEALTHY>FAILED FAILED>BACKOFF arm"),
    R(S_UNHEALTHY, 1, 1, 0, P_PLAIN, EV_DEADLINE, 0, S_UNHEALTHY, ""),
    R(S_UNHEALTHY, 1, 1, 0, P_CHECK, EV_DEADLINE, 0, S_FAILED, "UNHEALTHY>FAILED chk- sig:15 arm"),
    R(S_UNHEALTHY, 1, 1, 0, P_CHECK, EV_CHECK_PASS, 0, S_HEALTHY, "UNHEALTHY>HEALTHY"),
    R(S_UNHEALTHY, 1, 1, 0, P_CHECK, EV_CHECK_FAIL, 0, S_UNHEALTHY, ""),
    R(S_UNHEALTHY, 1, 1, 0, P_PLAIN, EV_LOST, 0, S_UNKNOWN, "UNHEALTHY>UNKNOWN"),
    R(S_UNHEALTHY, 1, 1, 0, P_PLAIN, EV_BLOCKED, 0, S_UNHEALTHY, ""),
    /* STOPPING: the stop signal was sent; grace deadline armed */
    R(S_STOPPING, 1, 0, 1, P_PLAIN, EV_START, 0, S_STOPPING, ""),
    R(S_STOPPING, 1, 0, 1, P_PLAIN, EV_STOP, 0, S_STOPPING, ""),
    R(S_STOPPING, 1, 0, 1, P_PLAIN, EV_RESTART, 0, S_STOPPING, ""),
    R(S_STOPPING, 1, 0, 1, P_PLAIN, EV_SPAWN_FAILED, 0, S_STOPPING, ""),
    R(S_STOPPING, 1, 0, 1, P_PLAIN, EV_EXIT, -15, S_STOPPED, "end:STOPPED STOPPING>STOPPED disarm"),
    R(S_STOPPING, 1, 0, 1, P_PLAIN, EV_DEADLINE, 0, S_STOPPING, "sig:9 arm"),
    R(S_STOPPING, 1, 0, 1, P_PLAIN, EV_CHECK_PASS, 0, S_STOPPING, ""),
    R(S_STOPPING, 1, 0, 1, P_PLAIN, EV_CHECK_FAIL, 0, S_STOPPING, ""),
    R(S_STOPPING, 1, 0, 1, P_PLAIN, EV_LOST, 0, S_STOPPING, ""),
    R(S_STOPPING, 1, 0, 1, P_PLAIN, EV_BLOCKED, 0, S_STOPPING, ""),
    /* STOPPED */
    R(S_STOPPED, 0, 0, 0, P_PLAIN, EV_START, 0, S_STARTING, "spawn STOPPED>STARTING"),
    R(S_STOPPED, 0, 0, 0, P_PLAIN, EV_STOP, 0, S_STOPPED, ""),
    R(S_STOPPED, 0, 0, 0, P_PLAIN, EV_RESTART, 0, S_STARTING, "spawn STOPPED>STARTING"),
    R(S_STOPPED, 0, 0, 0, P_PLAIN, EV_SPAWN_FAILED, 0, S_STOPPED, ""),
    R(S_STOPPED, 0, 0, 0, P_PLAIN, EV_EXIT, 1, S_STOPPED, ""),
    R(S_STOPPED, 0, 0, 0, P_PLAIN, EV_DEADLINE, 0, S_STOPPED, ""),
    R(S_STOPPED, 0, 0, 0, P_PLAIN, EV_CHECK_PASS, 0, S_STOPPED, ""),
    R(S_STOPPED, 0, 0, 0, P_PLAIN, EV_CHECK_FAIL, 0, S_STOPPED, ""),
    R(S_STOPPED, 0, 0, 0, P_PLAIN, EV_LOST, 0, S_STOPPED, ""),
    R(S_STOPPED, 0, 0, 0, P_PLAIN, EV_BLOCKED, 0, S_PENDING, "STOPPED>PENDING"),
    /* FAILED at rest (restart never) */
    R(S_FAILED, 0, 1, 0, P_NEVER, EV_START, 0, S_STARTING, "spawn FAILED>STARTING"),
    R(S_FAILED, 0, 1, 0, P_NEVER, EV_STOP, 0, S_FAILED, ""),
    R(S_FAILED, 0, 1, 0, P_NEVER, EV_RESTART, 0, S_STARTING, "spawn FAILED>STARTING"),
    R(S_FAILED, 0, 1, 0, P_NEVER, EV_SPAWN_FAILED, 0, S_FAILED, ""),
    R(S_FAILED, 0, 1, 0, P_NEVER, EV_EXIT, 1, S_FAILED, ""),
    R(S_FAILED, 0, 1, 0, P_NEVER, EV_DEADLINE, 0, S_FAILED, ""),
    R(S_FAILED, 0, 1, 0, P_NEVER, EV_CHECK_PASS, 0, S_FAILED, ""),
    R(S_FAILED, 0, 1, 0, P_NEVER, EV_CHECK_FAIL, 0, S_FAILED, ""),
    R(S_FAILED, 0, 1, 0, P_NEVER, EV_LOST, 0, S_FAILED, ""),
    R(S_FAILED, 0, 1, 0, P_NEVER, EV_BLOCKED, 0, S_PENDING, "FAILED>PENDING"),
    /* FAILED while its process is being killed (unhealthy restart) */
    R(S_FAILED, 1, 1, 1, P_CHECK, EV_EXIT, -15, S_BACKOFF, "disarm end:FAILED FAILED>BACKOFF arm"),
    R(S_FAILED, 1, 1, 1, P_CHECK, EV_DEADLINE, 0, S_FAILED, "sig:9 arm"),
    /* TIMEOUT: declared over, process being killed */
    R(S_TIMEOUT, 1, 1, 1, P_CHECK, EV_START, 0, S_TIMEOUT, ""),
    R(S_TIMEOUT, 1, 1, 1, P_CHECK, EV_STOP, 0, S_TIMEOUT, ""),
    R(S_TIMEOUT, 1, 1, 1, P_CHECK, EV_RESTART, 0, S_TIMEOUT, ""),
    R(S_TIMEOUT, 1, 1, 1, P_CHECK, EV_SPAWN_FAILED, 0, S_TIMEOUT, ""),
    R(S_TIMEOUT, 1, 1, 1, P_CHECK, EV_EXIT, -15, S_BACKOFF, "disarm end:TIMEOUT TIMEOUT>BACKOFF arm"),
    R(S_TIMEOUT, 1, 1, 1, P_NEVER, EV_EXIT, -15, S_TIMEOUT, "disarm end:TIMEOUT"),
    R(S_TIMEOUT, 1, 1, 1, P_CHECK, EV_DEADLINE, 0, S_TIMEOUT, "sig:9 arm"),
    R(S_TIMEOUT, 1, 1, 1, P_CHECK, EV_CHECK_PASS, 0, S_TIMEOUT, ""),
    R(S_TIMEOUT, 1, 1, 1, P_CHECK, EV_CHECK_FAIL, 0, S_TIMEOUT, ""),
    R(S_TIMEOUT, 1, 1, 1, P_CHECK, EV_LOST, 0, S_TIMEOUT, ""),
    R(S_TIMEOUT, 1, 1, 1, P_CHECK, EV_BLOCKED, 0, S_TIMEOUT, ""),
    /* COMPLETED */
    R(S_COMPLETED, 0, 1, 0, P_ONFAIL, EV_START, 0, S_STARTING, "spawn COMPLETED>STARTING"),
    R(S_COMPLETED, 0, 1, 0, P_ONFAIL, EV_STOP, 0, S_COMPLETED, ""),
    R(S_COMPLETED, 0, 1, 0, P_ONFAIL, EV_RESTART, 0, S_STARTING, "spawn COMPLETED>STARTING"),
    R(S_COMPLETED, 0, 1, 0, P_ONFAIL, EV_SPAWN_FAILED, 0, S_COMPLETED, ""),
    R(S_COMPLETED, 0, 1, 0, P_ONFAIL, EV_EXIT, 0, S_COMPLETED, ""),
    R(S_COMPLETED, 0, 1, 0, P_ONFAIL, EV_DEADLINE, 0, S_COMPLETED, ""),
    R(S_COMPLETED, 0, 1, 0, P_ONFAIL, EV_CHECK_PASS, 0, S_COMPLETED, ""),
    R(S_COMPLETED, 0, 1, 0, P_ONFAIL, EV_CHECK_FAIL, 0, S_COMPLETED, ""),
    R(S_COMPLETED, 0, 1, 0, P_ONFAIL, EV_LOST, 0, S_COMPLETED, ""),
    R(S_COMPLETED, 0, 1, 0, P_ONFAIL, EV_BLOCKED, 0, S_PENDING, "COMPLETED>PENDING"),
    /* BACKOFF: waiting to restart */
    R(S_BACKOFF, 0, 1, 1, P_PLAIN, EV_START, 0, S_STARTING, "spawn BACKOFF>STARTING disarm"),
    R(S_BACKOFF, 0, 1, 1, P_PLAIN, EV_STOP, 0, S_STOPPED, "BACKOFF>STOPPED disarm"),
    R(S_BACKOFF, 0, 1, 1, P_PLAIN, EV_RESTART, 0, S_STARTING, "spawn BACKOFF>STARTING disarm"),
    R(S_BACKOFF, 0, 1, 1, P_PLAIN, EV_SPAWN_FAILED, 0, S_BACKOFF, ""),
    R(S_BACKOFF, 0, 1, 1, P_PLAIN, EV_EXIT, 1, S_BACKOFF, ""),
    R(S_BACKOFF, 0, 1, 1, P_PLAIN, EV_DEADLINE, 0, S_STARTING, "spawn BACKOFF>STARTING"),
    R(S_BACKOFF, 0, 1, 1, P_PLAIN, EV_CHECK_PASS, 0, S_BACKOFF, ""),
    R(S_BACKOFF, 0, 1, 1, P_PLAIN, EV_CHECK_FAIL, 0, S_BACKOFF, ""),
    R(S_BACKOFF, 0, 1, 1, P_PLAIN, EV_LOST, 0, S_BACKOFF, ""),
    R(S_BACKOFF, 0, 1, 1, P_PLAIN, EV_BLOCKED, 0, S_PENDING, "BACKOFF>PENDING disarm"),
    /* UNKNOWN: cannot observe; never restarts by itself */
    R(S_UNKNOWN, 1, 1, 0, P_PLAIN, EV_START, 0, S_UNKNOWN, ""),
    R(S_UNKNOWN, 1, 1, 0, P_PLAIN, EV_STOP, 0, S_STOPPING, "UNKNOWN>STOPPING sig:15 arm"),
    R(S_UNKNOWN, 1, 1, 0, P_PLAIN, EV_RESTART, 0, S_UNKNOWN, ""),
    R(S_UNKNOWN, 1, 1, 0, P_PLAIN, EV_SPAWN_FAILED, 0, S_UNKNOWN, ""),
    R(S_UNKNOWN, 1, 1, 0, P_PLAIN, EV_EXIT, 1, S_BACKOFF, "end:FAILED UNKNOWN>FAILED FAILED>BACKOFF arm"),
    R(S_UNKNOWN, 1, 1, 0, P_PLAIN, EV_DEADLINE, 0, S_UNKNOWN, ""),
    R(S_UNKNOWN, 1, 1, 0, P_PLAIN, EV_CHECK_PASS, 0, S_UNKNOWN, ""),
    R(S_UNKNOWN, 1, 1, 0, P_PLAIN, EV_CHECK_FAIL, 0, S_UNKNOWN, ""),
    R(S_UNKNOWN, 1, 1, 0, P_PLAIN, EV_LOST, 0, S_UNKNOWN, ""),
    R(S_UNKNOWN, 1, 1, 0, P_PLAIN, EV_BLOCKED, 0, S_UNKNOWN, ""),
    /* "ready": "notify": READY=1 makes STARTING HEALTHY (with a check: its passes too). */
    L(S_STARTING, 1, 1, 0, P_NOTIFY, EV_STARTED, 0, S_STARTING, "arm"),   /* start_timeout */
    L(S_STARTING, 1, 1, 0, P_NOTIFY, EV_NOTIFY_READY, 0, S_STARTING, ""), /* EV_STARTED decides */
    R(S_STARTING, 1, 1, 1, P_NOTIFY, EV_NOTIFY_READY, 0, S_HEALTHY, "STARTING>HEALTHY disarm"),
    R(S_STARTING, 1, 1, 1, P_NOTIFYCHK, EV_NOTIFY_READY, 0, S_STARTING, ""), /* no pass yet */
    R(S_STARTING, 1, 1, 1, P_NOTIFYCHK, EV_CHECK_PASS, 0, S_STARTING, ""),   /* no READY=1 yet */
    R(S_STARTING, 1, 1, 1, P_PLAIN, EV_NOTIFY_READY, 0, S_STARTING, ""),     /* not a notify service */
    R(S_STARTING, 1, 1, 1, P_NOTIFY, EV_DEADLINE, 0, S_TIMEOUT, "STARTING>TIMEOUT sig:15 arm"),
    R(S_SUBMITTED, 1, 1, 1, P_NOTIFY, EV_NOTIFY_READY, 0, S_SUBMITTED, ""),
    R(S_PENDING, 0, 1, 0, P_NOTIFY, EV_NOTIFY_READY, 0, S_PENDING, ""),
    R(S_HEALTHY, 1, 1, 0, P_NOTIFY, EV_NOTIFY_READY, 0, S_HEALTHY, ""),
    R(S_UNHEALTHY, 1, 1, 0, P_NOTIFYCHK, EV_NOTIFY_READY, 0, S_UNHEALTHY, ""),
    R(S_STOPPING, 1, 0, 1, P_NOTIFY, EV_NOTIFY_READY, 0, S_STOPPING, ""),
    R(S_STOPPED, 0, 0, 0, P_NOTIFY, EV_NOTIFY_READY, 0, S_STOPPED, ""),
    R(S_FAILED, 0, 1, 0, P_NOTIFY, EV_NOTIFY_READY, 0, S_FAILED, ""),
    R(S_TIMEOUT, 1, 1, 1, P_NOTIFY, EV_NOTIFY_READY, 0, S_TIMEOUT, ""),
    R(S_COMPLETED, 0, 1, 0, P_NOTIFY, EV_NOTIFY_READY, 0, S_COMPLETED, ""),
    R(S_BACKOFF, 0, 1, 1, P_NOTIFY, EV_NOTIFY_READY, 0, S_BACKOFF, ""),
    R(S_UNKNOWN, 1, 1, 0, P_NOTIFY, EV_NOTIFY_READY, 0, S_UNKNOWN, ""),
    /* "watchdog": WATCHDOG=1 moves the watchdog's deadline on while an instance runs; the one
     * timer is armed at the earlier of it and the state's deadline (test_watchdog). */
    L(S_STARTING, 1, 1, 0, P_WD, EV_STARTED, 0, S_STARTING, "arm arm"),
    L(S_STARTING, 1, 1, 0, P_WD, EV_WATCHDOG, 0, S_STARTING, ""),
    R(S_STARTING, 1, 1, 1, P_WD, EV_WATCHDOG, 0, S_STARTING, "arm"),
    R(S_STARTING, 1, 1, 1, P_PLAIN, EV_WATCHDOG, 0, S_STARTING, ""), /* no watchdog */
    R(S_HEALTHY, 1, 1, 0, P_WD, EV_WATCHDOG, 0, S_HEALTHY, "arm"),
    R(S_UNHEALTHY, 1, 1, 0, P_WD, EV_WATCHDOG, 0, S_UNHEALTHY, "arm"),
    R(S_SUBMITTED, 1, 1, 1, P_WD, EV_WATCHDOG, 0, S_SUBMITTED, ""),
    R(S_PENDING, 0, 1, 0, P_WD, EV_WATCHDOG, 0, S_PENDING, ""),
    R(S_STOPPING, 1, 0, 1, P_WD, EV_WATCHDOG, 0, S_STOPPING, ""),
    R(S_STOPPED, 0, 0, 0, P_WD, EV_WATCHDOG, 0, S_STOPPED, ""),
    R(S_FAILED, 0, 1, 0, P_WD, EV_WATCHDOG, 0, S_FAILED, ""),
    R(S_TIMEOUT, 1, 1, 1, P_WD, EV_WATCHDOG, 0, S_TIMEOUT, ""),
    R(S_COMPLETED, 0, 1, 0, P_WD, EV_WATCHDOG, 0, S_COMPLETED, ""),
    R(S_BACKOFF, 0, 1, 1, P_WD, EV_WATCHDOG, 0, S_BACKOFF, ""),
    R(S_UNKNOWN, 1, 1, 0, P_WD, EV_WATCHDOG, 0, S_UNKNOWN, ""),
};

static void fx_string(const struct svc_fx_list *l, char *out, size_t len) {
  out[0] = '\0';
  size_t n = 0;
  for (int i = 0; i < l->n; i++) {
    const struct svc_fx *x = &l->fx[i];
    char one[64];
    switch (x->type) {
    case FX_TRANSITION: snprintf(one, sizeof one, "%s>%s", svc_state_name(x->from), svc_state_name(x->to)); break;
    case FX_SPAWN: snprintf(one, sizeof one, "spawn"); break;
    case FX_SIGNAL: snprintf(one, sizeof one, "sig:%d", x->sig); break;
    case FX_ARM: snprintf(one, sizeof one, "arm"); break;
    case FX_DISARM: snprintf(one, sizeof one, "disarm"); break;
    case FX_INSTANCE_END: snprintf(one, sizeof one, "end:%s", svc_state_name(x->to)); break;
    case FX_CHECKS_START: snprintf(one, sizeof one, "chk+"); break;
    case FX_CHECKS_STOP: snprintf(one, sizeof one, "chk-"); break;
    case FX_REASON: snprintf(one, sizeof one, "reason"); break;
    default: snprintf(one, sizeof one, "?"); break;
    }
    n += (size_t)snprintf(out + n, len - n, "%s%s", n ? " " : "", one);
  }
}

static void test_table(void) {
  bool covered[S__MAX][EV__MAX] = {{false}};
  for (size_t i = 0; i < sizeof rows / sizeof rows[0]; i++) {
    const struct row *r = &rows[i];
    struct svc_policy p = policy(r->pol);
    struct svc_fsm f;
    svc_fsm_init(&f, 42);
    f.state = r->from;
    f.proc_alive = r->proc;
    f.want_up = r->want;
    f.deadline = r->deadline ? 50 : 0;
    f.attempt = 1;
    f.launching = r->launching;
    f.queued_at = 90;
    f.healthy_since = r->from == S_HEALTHY || r->from == S_UNHEALTHY ? 90 : 0;
    struct svc_event ev = {.type = r->ev, .code = r->code >= 0 ? r->code : -1, .sig = r->code < 0 ? -r->code : 0};
    if (r->ev == EV_QUEUED || r->ev == EV_BLOCKED) ev.msg = "waiting on something";
    struct svc_fx_list out;
    svc_step(&f, &p, &ev, 100, &out);
    char got[512];
    fx_string(&out, got, sizeof got);
    CHECK(f.state == r->to, "row at line %d: %s + %s: state %s, want %s", r->line, svc_state_name(r->from),
          svc_event_name(r->ev), svc_state_name(f.state), svc_state_name(r->to));
    CHECK(!strcmp(got, r->fx), "row at line %d: %s + %s: effects \"%s\", want \"%s\"", r->line, svc_state_name(r->from),
          svc_event_name(r->ev), got, r->fx);
    /* Invariants that hold after every step. */
    CHECK(!(f.state == S_STARTING) || f.proc_alive, "row %d: STARTING without a process", r->line);
    CHECK(!(r->from == S_STARTING && f.state == S_UNHEALTHY), "row %d: STARTING went UNHEALTHY", r->line);
    CHECK(!(r->from == S_UNKNOWN && out.n && out.fx[0].type == FX_SPAWN), "row %d: UNKNOWN restarted", r->line);
    CHECK(!(r->ev == EV_PAUSE) || f.want_up == r->want, "row %d: a pause changed the wanted state", r->line);
    CHECK(!(r->ev == EV_SHUTDOWN) || !f.want_up, "row %d: still wanted up after the shutdown began", r->line);
    for (int k = 0; k < out.n; k++) /* no signal can reach an instance whose start is not answered */
      CHECK(!(f.launching && out.fx[k].type == FX_SIGNAL), "row %d: signal while launching", r->line);
    covered[r->from][r->ev] = true;
  }
  for (int s = 0; s < S__MAX; s++)
    for (int e = 0; e < EV__MAX; e++)
      CHECK(covered[s][e], "no table row for %s x %s", svc_state_name(s), svc_event_name(e));
}

static void test_backoff(void) {
  struct svc_backoff b = {.initial = 1, .max = 10, .multiplier = 2, .jitter = 0, .reset_after = 60};
  CHECK(svc_backoff_delay(&b, 1) == 1, "first delay is initial");
  CHECK(svc_backoff_delay(&b, 2) == 2, "second doubles");
  CHECK(svc_backoff_delay(&b, 4) == 8, "fourth is 8");
  CHECK(svc_backoff_delay(&b, 9) == 10, "capped at max");
  struct svc_backoff z = {.initial = 0, .max = 0, .multiplier = 2, .jitter = 0, .reset_after = 60};
  CHECK(svc_backoff_delay(&z, 1) == 0, "initial 0: first restart immediate");
  CHECK(svc_backoff_delay(&z, 2) >= 0.1, "initial 0: second waits at least 100ms (no busy loop)");
  CHECK(svc_backoff_delay(&z, 3) >= 0.2, "initial 0: third waits at least 200ms");
  CHECK(svc_backoff_delay(&z, 50) >= 1.0, "initial 0: a long crash loop waits at least 1s");
}

/* A crash loop through svc_step: delays grow, jitter stays in bounds, reset_after resets. */
static void test_crash_loop(void) {
  struct svc_policy p = policy(P_PLAIN);
  p.ready_after = 0;
  p.backoff.jitter = 0.5;
  struct svc_fsm f;
  svc_fsm_init(&f, 7);
  struct svc_fx_list out;
  struct svc_event start = {.type = EV_START}, crash = {.type = EV_EXIT, .code = 1}, tick = {.type = EV_DEADLINE},
                   up = {.type = EV_STARTED};
  double now = 1000;
  svc_step(&f, &p, &start, now, &out);
  svc_step(&f, &p, &up, now, &out);
  CHECK(f.state == S_STARTING && f.deadline == now, "ready_after 0: STARTING with a deadline of now");
  svc_step(&f, &p, &tick, now, &out);
  CHECK(f.state == S_HEALTHY, "ready_after 0: HEALTHY on the next turn, got %s", svc_state_name(f.state));
  double prev = 0;
  for (unsigned i = 1; i <= 8; i++) {
    now += 0.01; /* crashes right away: never healthy long enough to reset */
    svc_step(&f, &p, &crash, now, &out);
    CHECK(f.state == S_BACKOFF, "crash %u: BACKOFF, got %s", i, svc_state_name(f.state));
    double delay = f.deadline - now;
    double base = svc_backoff_delay(&p.backoff, i);
    CHECK(delay <= base + 1e-9 && delay >= base * 0.5 - 1e-9, "crash %u: delay %.3f outside [%.3f, %.3f]", i, delay,
          base * 0.5, base);
    CHECK(i < 3 || delay > prev * 0.5, "crash %u: delays keep growing (%.3f after %.3f)", i, delay, prev);
    prev = delay;
    now = f.deadline;
    svc_step(&f, &p, &tick, now, &out);
    CHECK(f.state == S_STARTING && f.attempt == i + 1, "after backoff %u: new instance, attempt %u", i, f.attempt);
    svc_step(&f, &p, &up, now, &out);
    svc_step(&f, &p, &tick, now, &out);
    CHECK(f.state == S_HEALTHY, "after backoff %u: HEALTHY", i);
  }
  CHECK(f.restarts == 8, "8 restarts counted, got %u", f.restarts);
  /* Healthy for reset_after: the next failure starts the backoff over. */
  now += p.backoff.reset_after + 1;
  svc_step(&f, &p, &crash, now, &out);
  CHECK(f.fails == 1 && f.deadline - now <= p.backoff.initial + 1e-9, "reset_after resets the backoff (fails=%u)",
        f.fails);
}

/* `ready_after: 0` and `reset_after: 0`: HEALTHY at once, then exit at once, again and
 * again. The crash-loop floor must still hold (it once restarted every 2 ms). */
static void test_crash_loop_zero_reset(void) {
  struct svc_policy p = policy(P_PLAIN);
  p.ready_after = 0;
  p.backoff.initial = 0;
  p.backoff.reset_after = 0;
  struct svc_fsm f;
  svc_fsm_init(&f, 9);
  struct svc_fx_list out;
  struct svc_event start = {.type = EV_START}, done = {.type = EV_EXIT, .code = 1}, tick = {.type = EV_DEADLINE},
                   up = {.type = EV_STARTED};
  double now = 50, t0 = now;
  svc_step(&f, &p, &start, now, &out);
  unsigned n = 0;
  while (now - t0 < 10 && n < 10000) {
    svc_step(&f, &p, &up, now, &out);   /* the spawn answered */
    svc_step(&f, &p, &tick, now, &out); /* ready_after 0: HEALTHY */
    now += 0.002;
    svc_step(&f, &p, &done, now, &out);
    if (f.state != S_BACKOFF) break;
    now = f.deadline;
    svc_step(&f, &p, &tick, now, &out); /* backoff over: STARTING */
    n++;
  }
  CHECK(n < 30, "10 s of a program failing at once: %u restarts (the floor allows ~15)", n);
  CHECK(f.fails >= 10, "the failures count on (fails=%u): the backoff was not reset", f.fails);
}

static void test_restart_and_stop(void) {
  struct svc_policy p = policy(P_PLAIN);
  struct svc_fsm f;
  svc_fsm_init(&f, 1);
  struct svc_fx_list out;
  struct svc_event ev = {.type = EV_START}, up = {.type = EV_STARTED};
  svc_step(&f, &p, &ev, 0, &out);
  svc_step(&f, &p, &up, 0, &out);
  ev.type = EV_DEADLINE;
  svc_step(&f, &p, &ev, 1, &out);
  CHECK(f.state == S_HEALTHY, "up after ready_after");
  ev.type = EV_RESTART;
  svc_step(&f, &p, &ev, 2, &out);
  CHECK(f.state == S_STOPPING && f.restart_pending, "restart: STOPPING with a restart pending");
  struct svc_event ex = {.type = EV_EXIT, .code = -1, .sig = 15};
  svc_step(&f, &p, &ex, 2.1, &out);
  char got[512];
  fx_string(&out, got, sizeof got);
  CHECK(!strcmp(got, "end:STOPPED STOPPING>STOPPED disarm spawn STOPPED>STARTING"), "restart sequence: %s", got);
  svc_step(&f, &p, &up, 2.1, &out);
  CHECK(f.attempt == 2 && f.restarts == 1, "restart counts: attempt %u restarts %u", f.attempt, f.restarts);
  /* Stop wins over a pending restart. */
  ev.type = EV_RESTART;
  svc_step(&f, &p, &ev, 3, &out);
  ev.type = EV_STOP;
  svc_step(&f, &p, &ev, 3.1, &out);
  svc_step(&f, &p, &ex, 3.2, &out);
  CHECK(f.state == S_STOPPED && !f.want_up, "stop cancels the pending restart: %s", svc_state_name(f.state));
  /* The stop deadline escalates to SIGKILL, then keeps re-sending. */
  ev.type = EV_START;
  svc_step(&f, &p, &ev, 4, &out);
  svc_step(&f, &p, &up, 4, &out);
  ev.type = EV_STOP;
  svc_step(&f, &p, &ev, 5, &out);
  ev.type = EV_DEADLINE;
  svc_step(&f, &p, &ev, 15, &out);
  CHECK(f.killed_hard && out.n == 2 && out.fx[0].sig == 9, "grace over: SIGKILL");
  svc_step(&f, &p, &ex, 15.1, &out);
  CHECK(f.state == S_STOPPED, "killed: STOPPED");
  CHECK(svc_fsm_at_rest(&f), "at rest after stop");
}

/* A job: STARTING until it exits (never HEALTHY), its timeout per attempt (TIMEOUT, the
 * group stopped), its retries bounded by max_attempts. */
static void test_job(void) {
  struct svc_policy p = policy(P_ONFAIL);
  p.job = true;
  p.run_timeout = 30;
  p.max_attempts = 2;
  struct svc_fsm f;
  svc_fsm_init(&f, 1);
  struct svc_fx_list out;
  struct svc_event ev = {.type = EV_START}, up = {.type = EV_STARTED};
  svc_step(&f, &p, &ev, 0, &out);
  svc_step(&f, &p, &up, 0, &out);
  CHECK(f.state == S_STARTING && f.deadline == 30, "a job runs in STARTING, its timeout armed: %g", f.deadline);
  ev.type = EV_DEADLINE;
  svc_step(&f, &p, &ev, 30, &out);
  char got[512];
  fx_string(&out, got, sizeof got);
  CHECK(f.state == S_TIMEOUT && f.proc_alive, "past its timeout: TIMEOUT, still being stopped (%s)", got);
  CHECK(out.n >= 2 && out.fx[out.n - 2].type == FX_SIGNAL && out.fx[out.n - 2].sig == 15, "the stop signal: %s", got);
  struct svc_event ex = {.type = EV_EXIT, .code = -1, .sig = 15};
  svc_step(&f, &p, &ex, 30.1, &out);
  CHECK(f.state == S_BACKOFF, "a retry follows: %s", svc_state_name(f.state));
  ev.type = EV_DEADLINE;
  svc_step(&f, &p, &ev, 40, &out);
  svc_step(&f, &p, &up, 40, &out);
  CHECK(f.state == S_STARTING && f.attempt == 2, "attempt 2 runs");
  struct svc_event fail = {.type = EV_EXIT, .code = 3};
  svc_step(&f, &p, &fail, 41, &out);
  CHECK(f.state == S_FAILED && svc_fsm_at_rest(&f), "retries spent: FAILED at rest (%s)", svc_state_name(f.state));
  bool said = false;
  for (int i = 0; i < out.n; i++) said |= out.fx[i].type == FX_TRANSITION && strstr(out.fx[i].reason, "while starting");
  CHECK(!said, "a job's exit is not 'while starting'");
  /* Success ends it whatever retries remain. */
  ev.type = EV_START;
  svc_step(&f, &p, &ev, 50, &out);
  svc_step(&f, &p, &up, 50, &out);
  struct svc_event ok = {.type = EV_EXIT, .code = 0};
  svc_step(&f, &p, &ok, 51, &out);
  CHECK(f.state == S_COMPLETED && svc_fsm_at_rest(&f), "exit 0: COMPLETED");
}

/* A Slurm job's whole life through svc_step. */
static void test_batch(void) {
  struct svc_policy p = policy(P_BATCH);
  p.restart = RESTART_ON_FAILURE;
  struct svc_fsm f;
  svc_fsm_init(&f, 3);
  struct svc_fx_list out;
  struct svc_event ev = {.type = EV_START};
  svc_step(&f, &p, &ev, 0, &out);
  CHECK(f.state == S_PENDING && f.launching && out.fx[0].type == FX_SPAWN, "start: PENDING, submitting");
  ev = (struct svc_event){.type = EV_START};
  svc_step(&f, &p, &ev, 0.1, &out);
  CHECK(out.n == 0, "a second start while submitting does nothing (no duplicate job)");
  ev = (struct svc_event){.type = EV_STARTED, .msg = "job 7"};
  svc_step(&f, &p, &ev, 0.2, &out);
  CHECK(f.state == S_SUBMITTED && !f.launching && f.deadline == 30, "accepted: SUBMITTED, queue deadline from 0");
  ev = (struct svc_event){.type = EV_QUEUED, .msg = "Priority"};
  svc_step(&f, &p, &ev, 1, &out);
  CHECK(f.state == S_PENDING && f.deadline == 30, "queued: PENDING, same queue deadline");
  ev = (struct svc_event){.type = EV_RUNNING};
  svc_step(&f, &p, &ev, 20, &out);
  CHECK(f.state == S_STARTING && f.deadline == 25, "running: STARTING, start deadline counts from the job's start");
  ev = (struct svc_event){.type = EV_CHECK_PASS};
  svc_step(&f, &p, &ev, 21, &out);
  CHECK(f.state == S_HEALTHY, "check passes: HEALTHY");
  ev = (struct svc_event){.type = EV_LOST, .msg = "slurmrestd: connection refused"};
  svc_step(&f, &p, &ev, 22, &out);
  CHECK(f.state == S_UNKNOWN && f.proc_alive && f.lost_from == S_HEALTHY, "control plane lost: UNKNOWN");
  ev = (struct svc_event){.type = EV_RUNNING};
  svc_step(&f, &p, &ev, 30, &out);
  char got[512];
  fx_string(&out, got, sizeof got);
  CHECK(f.state == S_UNKNOWN && f.rechecking && !strncmp(got, "chk+", 4),
        "back in sight: still UNKNOWN, checks on (%s)", got);
  ev = (struct svc_event){.type = EV_CHECK_PASS};
  svc_step(&f, &p, &ev, 30.5, &out);
  fx_string(&out, got, sizeof got);
  CHECK(f.state == S_HEALTHY && !f.rechecking && !strcmp(got, "UNKNOWN>HEALTHY"), "a check passes: HEALTHY (%s)", got);
  ev = (struct svc_event){.type = EV_EXIT, .code = -1, .sig = 15, .end = S_TIMEOUT, .msg = "TIMEOUT"};
  svc_step(&f, &p, &ev, 40, &out);
  CHECK(f.state == S_BACKOFF && f.restarts == 1, "Slurm TIMEOUT: restarted by on-failure (%s)",
        svc_state_name(f.state));
  CHECK(out.fx[0].type == FX_INSTANCE_END && out.fx[0].to == S_TIMEOUT, "the instance ended in TIMEOUT");
  ev = (struct svc_event){.type = EV_DEADLINE};
  svc_step(&f, &p, &ev, 41, &out);
  CHECK(f.state == S_PENDING && f.launching && f.attempt == 2, "backoff over: submitting attempt 2");
  ev = (struct svc_event){.type = EV_STOP};
  svc_step(&f, &p, &ev, 41.1, &out);
  fx_string(&out, got, sizeof got);
  CHECK(f.state == S_STOPPING && !strstr(got, "sig:"), "stop while submitting: no job to cancel yet (%s)", got);
  ev = (struct svc_event){.type = EV_SPAWN_FAILED, .code = -1, .msg = "rejected"};
  svc_step(&f, &p, &ev, 41.2, &out);
  CHECK(f.state == S_STOPPED && !f.proc_alive, "the submit failed while stopping: STOPPED");
  /* A job cancelled behind herd's back is a failure; one herd cancelled is STOPPED. */
  ev = (struct svc_event){.type = EV_START};
  svc_step(&f, &p, &ev, 50, &out);
  ev = (struct svc_event){.type = EV_RUNNING};
  svc_step(&f, &p, &ev, 50.5, &out);
  ev = (struct svc_event){.type = EV_EXIT, .code = -1, .sig = 15, .end = S_STOPPED, .msg = "CANCELLED"};
  svc_step(&f, &p, &ev, 51, &out);
  CHECK(out.fx[0].to == S_FAILED && strstr(out.fx[0].reason, "not by herd"), "cancelled outside herd: FAILED (%s)",
        out.fx[0].reason);
  ev = (struct svc_event){.type = EV_STOP};
  svc_step(&f, &p, &ev, 52, &out);
  ev = (struct svc_event){.type = EV_START};
  svc_step(&f, &p, &ev, 53, &out);
  ev = (struct svc_event){.type = EV_STARTED};
  svc_step(&f, &p, &ev, 53.1, &out);
  ev = (struct svc_event){.type = EV_STOP};
  svc_step(&f, &p, &ev, 54, &out);
  ev = (struct svc_event){.type = EV_EXIT, .code = -1, .sig = 15, .end = S_STOPPED, .msg = "CANCELLED"};
  svc_step(&f, &p, &ev, 54.2, &out);
  CHECK(f.state == S_STOPPED && out.fx[0].to == S_STOPPED, "cancelled by herd: STOPPED");
  /* Resume after a daemon restart: a PENDING job stays ours, nothing is submitted. */
  struct svc_fsm g;
  svc_fsm_init(&g, 4);
  struct svc_resume rs = {.stored = S_PENDING, .want_up = true, .attempt = 3, .alive = true};
  svc_resume(&g, &p, &rs, 100, &out);
  CHECK(g.proc_alive && g.state == S_PENDING && out.n == 0 && g.attempt == 3 && g.want_up,
        "resume PENDING batch: the job is kept, no spawn");
  /* Resumed while being stopped, its submission never answered: the cancel waits for the job. */
  svc_fsm_init(&g, 5);
  rs = (struct svc_resume){.stored = S_STOPPING, .alive = true, .launching = true};
  svc_resume(&g, &p, &rs, 100, &out);
  CHECK(g.launching && out.n == 0, "resume STOPPING, job unknown: nothing to signal yet");
  ev = (struct svc_event){.type = EV_STARTED, .msg = "job 9 found by its tag"};
  svc_step(&g, &p, &ev, 101, &out);
  fx_string(&out, got, sizeof got);
  CHECK(!strcmp(got, "sig:15 arm"), "its job found: cancelled now (%s)", got);
  /* Resumed HEALTHY: the job's state and node are the scheduler's word, so UNKNOWN (no check
   * against a node or tunnel not known yet) until its listing says it runs. */
  struct svc_policy pc = p;
  pc.has_check = true;
  svc_fsm_init(&g, 6);
  rs = (struct svc_resume){.stored = S_HEALTHY, .want_up = true, .attempt = 1, .alive = true};
  svc_resume(&g, &pc, &rs, 100, &out);
  CHECK(g.state == S_UNKNOWN && g.proc_alive, "resume HEALTHY batch: UNKNOWN until the listing");
  for (int i = 0; i < out.n; i++) CHECK(out.fx[i].type != FX_CHECKS_START, "no check yet");
  ev = (struct svc_event){.type = EV_RUNNING, .msg = "job 1 RUNNING on n1"};
  svc_step(&g, &pc, &ev, 101, &out);
  bool chk = false;
  for (int i = 0; i < out.n; i++) chk |= out.fx[i].type == FX_CHECKS_START;
  CHECK(chk, "the listing says it runs: checks start");
}

/* A local start: STARTING at once, its clock and checks only from the spawn's answer; a
 * stop asked meanwhile is signalled then, with its grace counted from the signal. */
/* Out of sight and back (an ssh host lost, then reconnected): checks that failed while the
 * path was going down may have failed for the path. The first verdict after the return
 * decides; no restart for the outage itself. */
static void test_back_in_sight(void) {
  struct svc_policy p = policy(P_CHECK);
  p.unhealthy_grace = 0;
  struct svc_fsm f;
  svc_fsm_init(&f, 9);
  struct svc_fx_list out;
  char got[512];
  struct svc_event ev = {.type = EV_START}, ok = {.type = EV_CHECK_PASS}, bad = {.type = EV_CHECK_FAIL};
  svc_step(&f, &p, &ev, 0, &out);
  ev = (struct svc_event){.type = EV_STARTED};
  svc_step(&f, &p, &ev, 0.1, &out);
  svc_step(&f, &p, &ok, 0.2, &out);
  CHECK(f.state == S_HEALTHY, "HEALTHY");
  svc_step(&f, &p, &bad, 1, &out);
  svc_step(&f, &p, &bad, 1.2, &out);
  CHECK(f.state == S_UNHEALTHY && f.deadline == 1.2, "two failures (the path going down): UNHEALTHY, grace armed");
  ev = (struct svc_event){.type = EV_LOST, .msg = "ssh host lost"};
  svc_step(&f, &p, &ev, 1.2, &out);
  fx_string(&out, got, sizeof got);
  CHECK(f.state == S_UNKNOWN && f.lost_from == S_UNHEALTHY && !f.deadline && strstr(got, "disarm") &&
            strstr(got, "chk-"),
        "lost: UNKNOWN, no restart pending, checks off (%s)", got);
  ev = (struct svc_event){.type = EV_RUNNING, .msg = "ssh host back"};
  svc_step(&f, &p, &ev, 5, &out);
  fx_string(&out, got, sizeof got);
  CHECK(f.state == S_UNKNOWN && f.rechecking && !strncmp(got, "chk+", 4), "back: UNKNOWN until a verdict (%s)", got);
  svc_step(&f, &p, &bad, 5.2, &out);
  CHECK(f.state == S_UNKNOWN, "one failure is not the verdict (threshold 2)");
  svc_step(&f, &p, &ok, 5.4, &out);
  fx_string(&out, got, sizeof got);
  CHECK(f.state == S_HEALTHY && f.restarts == 0 && !strcmp(got, "UNKNOWN>HEALTHY"),
        "it answers: HEALTHY, never restarted for the outage (%s)", got);
  /* Lost again, back, and this time it is truly down: UNHEALTHY by the same threshold. */
  ev = (struct svc_event){.type = EV_LOST, .msg = "ssh host lost"};
  svc_step(&f, &p, &ev, 6, &out);
  ev = (struct svc_event){.type = EV_RUNNING};
  svc_step(&f, &p, &ev, 7, &out);
  ev = (struct svc_event){.type = EV_LOST, .msg = "lost again"};
  svc_step(&f, &p, &ev, 7.1, &out);
  fx_string(&out, got, sizeof got);
  CHECK(f.state == S_UNKNOWN && !f.rechecking && !strncmp(got, "chk-", 4),
        "lost again before a verdict: checks off (%s)", got);
  svc_step(&f, &p, &bad, 7.2, &out);
  CHECK(f.state == S_UNKNOWN && out.n == 0, "a late result while out of sight counts for nothing");
  ev = (struct svc_event){.type = EV_RUNNING};
  svc_step(&f, &p, &ev, 8, &out);
  svc_step(&f, &p, &bad, 8.2, &out);
  svc_step(&f, &p, &bad, 8.4, &out);
  CHECK(f.state == S_UNHEALTHY && f.deadline == 8.4, "back and failing: UNHEALTHY, the policy's grace armed");
  /* A stop while re-checking turns the checks off. */
  svc_fsm_init(&f, 9);
  f.state = S_UNKNOWN;
  f.proc_alive = f.want_up = f.rechecking = true;
  ev = (struct svc_event){.type = EV_STOP};
  svc_step(&f, &p, &ev, 9, &out);
  fx_string(&out, got, sizeof got);
  CHECK(f.state == S_STOPPING && !f.rechecking && strstr(got, "chk-"), "stop while re-checking: checks off (%s)", got);
}

static void test_local_launch(void) {
  struct svc_policy p = policy(P_CHECK);
  struct svc_fsm f;
  svc_fsm_init(&f, 11);
  struct svc_fx_list out;
  char got[512];
  struct svc_event ev = {.type = EV_START};
  svc_step(&f, &p, &ev, 0, &out);
  fx_string(&out, got, sizeof got);
  CHECK(f.state == S_STARTING && f.launching && !strcmp(got, "spawn STOPPED>STARTING"), "spawn asked: %s", got);
  ev = (struct svc_event){.type = EV_STARTED};
  svc_step(&f, &p, &ev, 2, &out);
  CHECK(!f.launching && f.deadline == 2 + p.start_timeout, "start_timeout counts from the process (deadline %g)",
        f.deadline);
  ev = (struct svc_event){.type = EV_STOP};
  svc_step(&f, &p, &ev, 3, &out);
  ev = (struct svc_event){.type = EV_EXIT, .code = -1, .sig = 15};
  svc_step(&f, &p, &ev, 3.1, &out);
  /* Restart during the spawn: STOPPING now, signalled on the answer, started again after. */
  ev = (struct svc_event){.type = EV_START};
  svc_step(&f, &p, &ev, 4, &out);
  ev = (struct svc_event){.type = EV_RESTART};
  svc_step(&f, &p, &ev, 4.1, &out);
  CHECK(f.state == S_STOPPING && f.restart_pending && f.deadline == 0,
        "restart while spawning: STOPPING, no grace yet");
  ev = (struct svc_event){.type = EV_STARTED};
  svc_step(&f, &p, &ev, 5, &out);
  fx_string(&out, got, sizeof got);
  CHECK(!strcmp(got, "sig:15 arm") && f.deadline == 5 + p.stop_grace, "signalled once it exists (%s)", got);
  ev = (struct svc_event){.type = EV_EXIT, .code = -1, .sig = 15};
  svc_step(&f, &p, &ev, 5.5, &out);
  CHECK(f.state == S_STARTING && f.launching && f.attempt == 3, "started again: attempt %u", f.attempt);
  /* The spawn fails while a stop is pending: it never began, STOPPED, not FAILED. */
  ev = (struct svc_event){.type = EV_STOP};
  svc_step(&f, &p, &ev, 6, &out);
  ev = (struct svc_event){.type = EV_SPAWN_FAILED, .code = -1, .msg = "cannot start x: ENOENT"};
  svc_step(&f, &p, &ev, 6.1, &out);
  CHECK(f.state == S_STOPPED && !f.proc_alive && !f.launching, "spawn failed while stopping: STOPPED (%s)",
        svc_state_name(f.state));
}

static void test_names(void) {
  for (int s = 0; s < S__MAX; s++) CHECK(svc_state_parse(svc_state_name(s)) == s, "state name round trip %d", s);
  CHECK(svc_state_parse("healthy") == S_HEALTHY, "state names parse case-insensitively");
  CHECK(svc_state_parse("nope") == -1, "unknown state");
}

/* "ready": "notify" and "watchdog" through svc_step: READY=1 before the pid, READY=1 and a
 * check (either order), the watchdog's deadline sharing the one timer with the state's. */
static void test_notify_watchdog(void) {
  struct svc_fx_list out;
  struct svc_event start = {.type = EV_START}, up = {.type = EV_STARTED}, ready = {.type = EV_NOTIFY_READY},
                   pet = {.type = EV_WATCHDOG}, tick = {.type = EV_DEADLINE}, pass = {.type = EV_CHECK_PASS},
                   gone = {.type = EV_EXIT, .code = -1, .sig = 15};
  /* READY=1 read before the spawn was answered: HEALTHY as soon as it is. */
  struct svc_policy p = policy(P_NOTIFY);
  struct svc_fsm f;
  svc_fsm_init(&f, 1);
  svc_step(&f, &p, &start, 10, &out);
  svc_step(&f, &p, &ready, 10.001, &out);
  CHECK(f.state == S_STARTING && f.ready_seen, "READY=1 while launching is kept");
  svc_step(&f, &p, &up, 10.002, &out);
  CHECK(f.state == S_HEALTHY, "READY=1 then the pid: HEALTHY, got %s", svc_state_name(f.state));
  /* No READY=1 within start_timeout: TIMEOUT, and the reason says so. */
  svc_fsm_init(&f, 1);
  svc_step(&f, &p, &start, 10, &out);
  svc_step(&f, &p, &up, 10, &out);
  CHECK(f.deadline == 10 + p.start_timeout, "notify: STARTING's deadline is start_timeout");
  svc_step(&f, &p, &tick, f.deadline, &out);
  CHECK(f.state == S_TIMEOUT && strstr(out.fx[0].reason, "READY=1"), "no READY=1: TIMEOUT (%s)", out.fx[0].reason);
  /* With a check: both must say so, whichever comes last decides. */
  struct svc_policy pc = policy(P_NOTIFYCHK);
  svc_fsm_init(&f, 1);
  svc_step(&f, &pc, &start, 10, &out);
  svc_step(&f, &pc, &up, 10, &out);
  svc_step(&f, &pc, &pass, 11, &out);
  CHECK(f.state == S_STARTING, "check passed, no READY=1: still STARTING");
  svc_step(&f, &pc, &ready, 12, &out);
  CHECK(f.state == S_HEALTHY, "then READY=1: HEALTHY, got %s", svc_state_name(f.state));
  svc_fsm_init(&f, 1);
  svc_step(&f, &pc, &start, 10, &out);
  svc_step(&f, &pc, &up, 10, &out);
  svc_step(&f, &pc, &ready, 11, &out);
  CHECK(f.state == S_STARTING, "READY=1, no pass: still STARTING");
  svc_step(&f, &pc, &pass, 12, &out);
  CHECK(f.state == S_HEALTHY, "then a pass: HEALTHY, got %s", svc_state_name(f.state));

  /* The watchdog: armed at the start, moved on by each WATCHDOG=1, the earlier deadline wins. */
  struct svc_policy pw = policy(P_WD); /* ready_after 1, watchdog 5 */
  svc_fsm_init(&f, 1);
  svc_step(&f, &pw, &start, 100, &out);
  svc_step(&f, &pw, &up, 100, &out);
  CHECK(f.wd_at == 105 && out.n && out.fx[out.n - 1].type == FX_ARM && out.fx[out.n - 1].at == 101,
        "started: timer at ready_after (101), watchdog at 105");
  svc_step(&f, &pw, &tick, 101, &out);
  CHECK(f.state == S_HEALTHY && out.fx[out.n - 1].type == FX_ARM && out.fx[out.n - 1].at == 105,
        "HEALTHY: timer at the watchdog's deadline");
  svc_step(&f, &pw, &pet, 104, &out);
  CHECK(f.wd_at == 109 && out.n == 1 && out.fx[0].at == 109, "WATCHDOG=1 moves it to 109");
  svc_step(&f, &pw, &tick, 109, &out);
  CHECK(f.state == S_FAILED && strstr(out.fx[0].reason, "watchdog"), "silent for 5s: FAILED (%s)",
        out.n ? out.fx[0].reason : "");
  bool sig = false;
  for (int i = 0; i < out.n; i++) sig |= out.fx[i].type == FX_SIGNAL && out.fx[i].sig == pw.stop_signal;
  CHECK(sig && f.wd_at == 0, "the instance is stopped and the watchdog is off");
  svc_step(&f, &pw, &pet, 110, &out);
  CHECK(f.wd_at == 0 && out.n == 0, "WATCHDOG=1 from a failed instance changes nothing");
  svc_step(&f, &pw, &gone, 110.5, &out);
  CHECK(f.state == S_BACKOFF && f.restarts == 1, "once gone, the restart policy: BACKOFF, got %s",
        svc_state_name(f.state));
  bool why = false;
  for (int i = 0; i < out.n; i++) why |= out.fx[i].type == FX_INSTANCE_END && strstr(out.fx[i].reason, "watchdog");
  CHECK(why, "the instance's end says watchdog");
  /* A stop turns the watchdog off: its timer must not fire as a stale SIGKILL. */
  svc_fsm_init(&f, 1);
  svc_step(&f, &pw, &start, 100, &out);
  svc_step(&f, &pw, &up, 100, &out);
  svc_step(&f, &pw, &tick, 101, &out);
  struct svc_event stop = {.type = EV_STOP};
  svc_step(&f, &pw, &stop, 102, &out);
  CHECK(f.state == S_STOPPING && f.wd_at == 0 && f.deadline == 102 + pw.stop_grace &&
            out.fx[out.n - 1].type == FX_ARM && out.fx[out.n - 1].at == f.deadline,
        "stopping: the timer is the grace's only");
  /* A resumed running instance gets a fresh watchdog. */
  svc_fsm_init(&f, 1);
  struct svc_resume rs = {.stored = S_HEALTHY, .want_up = true, .attempt = 1, .alive = true, .started = 50};
  svc_resume(&f, &pw, &rs, 200, &out);
  CHECK(f.wd_at == 205 && out.n && out.fx[out.n - 1].type == FX_ARM, "resumed HEALTHY: watchdog armed afresh");
}

int main(void) {
  test_notify_watchdog();
  test_table();
  test_backoff();
  test_crash_loop();
  test_crash_loop_zero_reset();
  test_restart_and_stop();
  test_batch();
  test_back_in_sight();
  test_local_launch();
  test_names();
  test_job();
  printf("%d passed, %d failed\n", checks - failures, failures);
  return failures ? 1 : 0;
}
