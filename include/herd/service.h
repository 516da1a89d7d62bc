/*
 * The service object and the runner's API: a service owns its state machine, its one
 * timer, its log and its backend's state; the runner (service.c, run.c) feeds events to
 * svc_step() and carries out the effects through the service's backend (run.h).
 */
#ifndef HERD_SERVICE_H
#define HERD_SERVICE_H

#include "herd/herd.h"
#include "herd/spec.h"
#include "herd/svc.h"

#include <jansson.h>
#include <uv.h>

struct daemon;
struct service;
struct backend_ops;

/** An observer of one service (or of all, on the daemon's list). Callbacks may be NULL.
 *  A callback may remove its own watch from the list, and nothing else. */
struct svc_watch {
  struct list link;
  void (*on_transition)(struct svc_watch *w, struct service *s, svc_state from, svc_state to, const char *reason,
                        int64_t event_id, double ts);
  void (*on_log)(struct svc_watch *w, struct service *s, const char *data, size_t n);
  void (*on_gone)(struct svc_watch *w, struct service *s);
};

/** Why an instance ended, as counted for metrics (the end state, FAILED split by cause). */
enum service_end {
  END_COMPLETED,    /* exited 0 */
  END_STOPPED,      /* stopped by herd (a request, a restart, a shutdown) */
  END_EXIT_CODE,    /* FAILED: exited with a non-zero code */
  END_SIGNAL,       /* FAILED: killed by a signal herd did not send */
  END_SPAWN_FAILED, /* FAILED: could not be started (or its job submitted) */
  END_TIMEOUT,      /* not healthy (or not running) before its deadline */
  END_OTHER,        /* FAILED otherwise: unhealthy, lost, status unknown, a job's own failure */
  END__MAX
};
/** The label value of an end cause ("exit_code"). */
const char *service_end_name(enum service_end e);

struct service {
  struct daemon *d;
  struct list link;
  struct service *hnext;
  struct spec *spec;
  struct spec *next_spec; /* replacement waiting for the current instance to stop */
  bool start_at_rest;     /* paused by service_pause: start again once at rest */
  const char *start_at_rest_why;
  struct svc_policy pol;
  struct svc_fsm fsm;
  const struct backend_ops *be; /* how its instances run (run.h), chosen by spec->backend */
  void *run;                    /* the backend's own state for this service (the runner never looks) */
  void *tun;                    /* its endpoint's forward through its ssh host (tunnel.c), or NULL */
  uv_timer_t timer;             /* the service's one deadline timer */
  int nhandles;                 /* handles and work in flight that hold the service: service_ref/unref */
  bool closed;                  /* its handles are closed: events change nothing any more */
  /* The current (or last) instance, as the runner recorded it from its backend's events. */
  int64_t instance; /* 0 = none */
  int pid;          /* its process on this host, 0 = none */
  uint64_t starttime;
  int64_t job_id; /* its batch job, 0 = none (yet) */
  char host[128]; /* where it runs, when not on this host ("" = here) */
  double started_wall, started_mono;
  bool has_exit;
  int last_code, last_sig;
  bool last_spawn_failed;  /* the instance's last event was EV_SPAWN_FAILED */
  uint64_t ends[END__MAX]; /* instances ended by this daemon, by cause (metrics) */
  double last_exit_wall;
  char last_error[256];
  char reason[128]; /* why the current state was entered */
  int port;         /* the endpoint port of the current/last instance (0 = none) */
  int last_port;    /* the port used last time, preferred when allocating */
  /* Its log (logpipe.c). */
  struct logreader *reader; /* the log FIFO's reader while an instance runs, or NULL */
  int log_fd;               /* the log file while it is in the daemon's cache, or -1 */
  struct list logfd_link;   /* in the daemon's cache of open log files, least recent first */
  bool log_error_said;      /* the log file cannot be opened, and the daemon's log said so */
  uint64_t log_lost;        /* output bytes the log file could not take (disk full, read-only) */
  char log_error[160];      /* why, while bytes are being lost ("" once the log writes again) */
  uint64_t log_size;
  bool log_at_bol; /* the log file ends with a newline (or is empty) */
  char *fifo_path, *log_path;
  struct checker *checker; /* health checks (check.c), or NULL */
  char notify_status[128]; /* the last STATUS= its instance sent on the notify socket (notify.c) */
  int64_t notify_instance; /* ...and which instance sent it (shown only while that one is current) */
  struct job *job;         /* a job: its place in its queue (job.c), or NULL */
  bool removing, destroyed;
  bool stop_sent;  /* shutdown: the stop was sent (dependents first) */
  bool needed;     /* shutdown: a running service depends on it (deps.c, per pass) */
  bool boot_start; /* wanted up while the daemon was creating services: start after */
  struct list watches;
};

/**
 * Create a service from a spec (taking ownership) and register it. With no stored
 * state it starts if want_up. With the state an earlier daemon recorded, it resumes:
 * a live instance whose identity its backend proves is re-adopted (same pid or job,
 * instance, attempt), a dead one ends and the restart policy applies.
 */
struct service *service_create(struct daemon *d, struct spec *spec, bool want_up, const char *stored_state,
                               unsigned restarts);
/** Feed one event to the service's state machine and carry out the effects (the runner's
 *  own callers: requests, dependencies, the timer). Backends post instead (run_post). */
void service_event(struct service *s, svc_event_type type, int code, int sig, const char *msg);
/** A service reached through an ssh host: point its fixed local endpoint at the instance
 *  (its node, its port) while it runs, at nothing otherwise. After each step, and when the
 *  backend learns where a running instance is reached. */
void service_endpoint_sync(struct service *s);
void service_feed(struct service *s, const struct svc_event *ev);
/** Start/stop/restart on a user's request: the wanted state is persisted. */
void service_start(struct service *s);
void service_stop(struct service *s);
void service_restart(struct service *s);
/** Stop the instance for now (spec change, dependency down) and start again once it is at
 *  rest, if still wanted. The wanted state, in memory and in the store, does not change. */
void service_pause(struct service *s, const char *stop_why, const char *start_why /* static */);
/** Stop and remove; the object is freed when its instance is gone and handles are closed. */
void service_remove(struct service *s);
/** Replace the spec (taking ownership). Returns false (and frees spec) when unchanged. */
bool service_replace(struct service *s, struct spec *spec);
/** Close the service's uv handles and let go of its instance; it is freed (service_free)
 *  when the last reference goes. */
void service_close_handles(struct service *s);
void service_free(struct service *s);
/** The STATUS= text its current instance sent on the notify socket, or NULL. */
const char *service_notify_status(const struct service *s);
/** The service as the API shows it. */
json_t *service_json(struct service *s);
/** full = false: the summary (no spec, tags, log path or dependencies), for listings. */
json_t *service_json_view(struct service *s, bool full);
/** Append the summary view as JSON text (same keys and values as service_json_view(s, false)). */
void service_summary_append(struct buf *b, struct service *s);
void service_add_watch(struct service *s, struct svc_watch *w);
/** Seconds the current instance has run (a batch job: since it started running), or -1. */
double service_uptime(struct service *s);
/** Start a service that is wanted up, or park it in PENDING while its dependencies are not met. */
void service_want_up(struct service *s, const char *why);
/** Free removed services whose last reference is gone; during a shutdown, note when
 *  every service is at rest (the daemon finishes at the end of the loop turn). */
void service_check_idle(struct daemon *d);
/** Whether no service has an instance the daemon must still see end. */
bool services_idle(struct daemon *d);
/** A handle or a piece of work now holds the service (it is not freed before service_unref). */
void service_ref(struct service *s);
/** ...and lets go of it: the last one frees a removed service, and may end a shutdown. */
void service_unref(struct service *s);

/* logpipe.c: the service's log FIFO and log files (backends may use these) */
/** Make the FIFO and note where the log file stands; no descriptor is kept. 0 or -errno. */
int logpipe_open(struct service *s, char *err, size_t errlen);
/** An instance is about to run (or is adopted): open its FIFO's reader, the descriptor it
 *  costs. 0 or a negative UV_E* code (UV_EMFILE: the daemon is at its limit). */
int logpipe_attach(struct service *s);
/** Start copying the FIFO into the log: once herd's "started" note is written, so that the
 *  instance's first output comes after it. 0 or a negative UV_E* code. */
int logpipe_read(struct service *s);
/** The instance is gone (or let go): drain the FIFO and close the reader. */
void logpipe_detach(struct service *s);
/** Read whatever is buffered in the FIFO now (used when an instance exits). */
void logpipe_drain(struct service *s);
/** Close the FIFO reader (if any) and the log file. */
void logpipe_close(struct service *s);
/** Open a fresh descriptor on a service's FIFO for a child's stdout/stderr (any thread:
 *  it touches no daemon state). Returns it or a negative errno. */
int logpipe_child_fd(const char *fifo_path);
/** Append text to the service's log (herd's own notes, e.g. "[herd] started pid 12"). */
void logpipe_note(struct service *s, const char *fmt, ...) __attribute__((format(printf, 2, 3)));

#endif
