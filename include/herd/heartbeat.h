/*
 * The daemon's heartbeat: a loop timer that ticks every second while the daemon runs. Each
 * tick measures how late it fired (the loop's lag, for metrics), touches the liveness file
 * (--liveness-file, for a Kubernetes-style probe) and, under systemd (Type=notify), updates
 * STATUS= when the counts by state change. A second timer sends WATCHDOG=1 at half
 * WATCHDOG_USEC. Both fire only while the loop turns: a stalled loop stops them all.
 */
#ifndef HERD_HEARTBEAT_H
#define HERD_HEARTBEAT_H

#include "herd/sdnotify.h"

#include <stdint.h>
#include <uv.h>

#define HB_INTERVAL 1.0     /* seconds between ticks */
#define HB_STALLED 5.0      /* a tick this late, or none for this long: the loop stood still (GET /v1/health) */
#define HB_STALL_SHOWN 10.0 /* ...and health says so for this long after */
/* The lag histogram's bucket bounds (seconds); +Inf is implied. */
#define HB_LAG_BOUNDS                                                                                                  \
  { 0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10 }
#define HB_LAG_NB 13

struct daemon;

struct heartbeat {
  uv_timer_t tick, wd;
  bool wd_on;         /* the watchdog timer runs */
  double wd_interval; /* seconds between WATCHDOG=1 (half WATCHDOG_USEC) */
  uint64_t last_ns;   /* the previous tick (uv_hrtime), 0 before the first */
  double last_tick;   /* monotonic: the previous tick, or the start */
  uint64_t ticks;
  uint64_t lag[HB_LAG_NB]; /* ticks that were at most HB_LAG_BOUNDS[i] late (not cumulative) */
  double lag_sum, lag_max;
  double stall, stall_at; /* the last tick later than HB_STALLED: by how much, and when (monotonic) */
  uint64_t watchdogs;     /* WATCHDOG=1 sent */
  struct sdnotify notify;
  char *notify_path;  /* $NOTIFY_SOCKET as herd found it, or NULL */
  char status[200];   /* the last STATUS= sent */
  char *liveness;     /* --liveness-file, or NULL */
  int liveness_errno; /* the last touch failed (said once in the log), 0 when fine */
};

/** First thing at start-up, before any thread: take the manager's environment
 *  ($NOTIFY_SOCKET, $WATCHDOG_USEC, $WATCHDOG_PID) and unset it, so services do not inherit it. */
void heartbeat_take_env(struct daemon *d);
/** Set up the timers and the notification socket; create the liveness file.
 *  -1 with *err set (the caller frees) when the liveness file cannot be made. */
int heartbeat_init(struct daemon *d, const char *liveness_file, char **err);
/** The store is open and the socket listens: start ticking and send READY=1. */
void heartbeat_ready(struct daemon *d);
/** A shutdown began: send STOPPING=1 (and what is left to do as STATUS=). */
void heartbeat_stopping(struct daemon *d, const char *status);
/** Close the timers (the daemon's finish). */
void heartbeat_close(struct daemon *d);
/** The STATUS= line for the counts by state now: "12 services: 10 healthy, 1 failed, 1 stopped". */
void heartbeat_status_text(struct daemon *d, char *buf, size_t len);

#endif
