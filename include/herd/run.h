/*
 * The run boundary: how the runner starts, stops and watches a service's instances
 * through its backend, and the one way a backend reports back. See src/README.md.
 *
 * A backend is one source file with one `struct backend_ops` (a row of the table in
 * run.c, chosen by spec->backend) and private state behind `service->run`. It may read
 * the service (spec, instance id, attempt, port, pid, fifo/log paths), write herd's notes
 * into its log (logpipe_note and the FIFO calls), hold it with service_ref/unref, and use
 * the loop helpers of herd.h. It reports only by run_post(): the runner records the facts
 * (pid, start time, job id, host) in the service and the store, and feeds the event to
 * svc_step() after the effects being applied now (never re-entrantly, in order). A
 * backend never writes the service's fields, its state machine or the store's instance
 * rows, and never calls up into the daemon.
 */
#ifndef HERD_RUN_H
#define HERD_RUN_H

#include "herd/service.h"
#include "herd/store.h"

/* Facts a run_event carries (bits of run_event.facts). */
enum {
  RUN_PID = 1 << 0,     /* pid, starttime: the instance's process on this host */
  RUN_JOB = 1 << 1,     /* job_id, job_where: its batch job (0: being submitted) */
  RUN_HOST = 1 << 2,    /* host: the address it is reached at (its node) */
  RUN_RUNNING = 1 << 3, /* since: when it began running (wall clock) */
};

/** What a backend reports: an event for the state machine, facts about the instance, or
 *  both. Strings are copied by run_post. */
struct run_event {
  svc_event_type type; /* EV__MAX: facts only */
  int code, sig;       /* EV_EXIT */
  svc_state end;       /* EV_EXIT: the end state the backend determined, or 0 (see svc_event) */
  const char *msg;
  unsigned facts;
  int pid;
  uint64_t starttime;
  int64_t job_id;
  const char *job_where; /* the cluster the job runs on */
  const char *host;
  double since;
};

/** Report to the runner: queued, and fed once the effects being applied are done (at once
 *  when none are). Safe from any loop callback, including inside the backend's own ops. */
void run_post(struct service *s, const struct run_event *ev);
/** The same for a bare event. */
void run_post_event(struct service *s, svc_event_type type, int code, int sig, const char *msg);

/** What a backend says of an instance before it starts (written with its instance row). */
struct run_plan {
  char *cmdline;         /* malloc'd: what /proc/PID/cmdline will read (the local identity proof) */
  const char *job_where; /* a batch job: the cluster it is submitted to */
};

/** What a backend found of the last instance an earlier daemon recorded. */
struct run_resume {
  bool alive;         /* it is still there, and it is ours */
  bool launching;     /* alive, but its start was never answered (a submission in flight) */
  int pid;            /* its process, when it has one (0: none) */
  uint64_t starttime; /* ...and the process's start time */
  bool pid_found;     /* the pid was not recorded: found by the identity the process carries */
  double since;       /* when it began running (wall clock), or 0: counted from now */
  char why[200];      /* why it is not alive (or "" ) */
};

struct backend_ops {
  const char *name;
  bool batch;       /* instances are scheduler jobs: SUBMITTED, then queued (svc_policy.batch) */
  bool local_ports; /* the endpoint's port is allocated on this host before each start */
  /** The service now runs on this backend (creation, or a spec swap at rest): set up
   *  service->run for its spec. Called again after each spec swap that keeps the backend. */
  void (*attach)(struct service *s);
  /** Free service->run (the service is freed, or moves to another backend at rest). */
  void (*detach)(struct service *s);
  /** Optional: facts of the instance about to start, before it is recorded. */
  void (*plan)(struct service *s, struct run_plan *p);
  /** FX_SPAWN: begin starting instance s->instance (attempt s->fsm.attempt, port s->port).
   *  Asynchronous: answered by a posted EV_STARTED (with its facts), EV_SPAWN_FAILED or
   *  EV_DEFERRED. Returns 0, or a negative UV_E* code when it cannot even begin (err
   *  says why; UV_EMFILE/UV_ENFILE: the daemon's own lack, retried later). */
  int (*start)(struct service *s, char *err, size_t errlen);
  /** FX_SIGNAL: stop signal (or 9 after the grace) to the instance. Never called before
   *  the start was answered. */
  void (*signal)(struct service *s, int sig);
  /** After a daemon restart: is the last instance (recorded by an earlier daemon, not
   *  ended) still there? Watch it again if so. */
  void (*resume)(struct service *s, const struct store_instance *last, struct run_resume *out);
  /** Stop watching without touching the instance (the daemon leaves it running, or the
   *  service goes away): no event is posted for it after this. */
  void (*release)(struct service *s);
  /** Whether a handle or a start in flight still holds the instance (a spec swap or a
   *  removal waits for it). */
  bool (*busy)(struct service *s);
  /** Optional, shutdown: whether the daemon may exit with this instance not confirmed gone. */
  bool (*may_leave)(struct service *s);
  /** Optional: whether a start put off by EV_DEFERRED can go ahead now. */
  bool (*ready)(struct service *s);
  /** Optional: the backend's keys of the service's JSON ({"backend": ..., ...}), or NULL. */
  json_t *(*describe)(struct service *s, bool full);
  /** Optional: where the instance's own output is (a batch job's stdout), malloc'd, or NULL. */
  char *(*output_path)(struct service *s);
  /** Optional: the ssh host through which that output is read when this host cannot read it
   *  (NULL: here only). */
  const char *(*output_host)(struct service *s);
};

/** The backend of that kind. */
const struct backend_ops *run_backend(enum backend b);
/** Tests and fuzzing: services created from now on run on `ops` whatever their kind (a mock
 *  that starts nothing); NULL: the table again. */
void run_backend_only(const struct backend_ops *ops);

/* The rows of the table (one file each). */
extern const struct backend_ops local_backend; /* proc.c */
extern const struct backend_ops slurm_backend; /* slurm.c */

/** The runner's side (run.c): carry out FX_SPAWN through the backend (port, instance row,
 *  start). A start that cannot begin is posted as EV_SPAWN_FAILED or EV_DEFERRED. */
void run_start(struct service *s);
/** Feed the events posted while effects were applied (service.c calls it when done). */
void run_drain(struct daemon *d);
/** Forget the events still queued for a service that is being freed. */
void run_forget(struct service *s);

#endif
