/* The daemon: the loop, the service registry, and the service objects it runs. */
#ifndef HERD_DAEMON_H
#define HERD_DAEMON_H

#include "herd/cfg.h"
#include "herd/herd.h"
#include "herd/ident.h"
#include "herd/spec.h"
#include "herd/svc.h"

#include <uv.h>

/* Descriptors the daemon holds per running local service: the log FIFO's reader (a
 * re-adopted instance adds a pidfd; none for a service that is not running; log files are
 * a shared cache). */
#define HERD_FDS_PER_SERVICE 1

struct daemon_opts {
  const char *config_dir; /* NULL: no config files, only services added over the API */
  const char *state_dir;
  const char *socket_path; /* NULL: <state_dir>/herd.sock */
  const char *read_group;  /* group whose members may read (GET) over the socket */
  int log_level, log_format;
  bool leave_running;   /* on SIGTERM/SIGINT exit without stopping services (for upgrades) */
  bool normal_priority; /* --priority normal: no real-time priority for herd's threads (prio.c) */
  bool no_cgroups;      /* --cgroups off: services are their process groups (cgroup.h) */
};

struct service;
struct ctl;
struct store;

/** An observer of one service (or of all, on the daemon's list). Callbacks may be NULL.
 *  A callback may remove its own watch from the list, and nothing else. */
struct svc_watch {
  struct list link;
  void (*on_transition)(struct svc_watch *w, struct service *s, svc_state from, svc_state to, const char *reason,
                        int64_t event_id, double ts);
  void (*on_log)(struct svc_watch *w, struct service *s, const char *data, size_t n);
  void (*on_gone)(struct svc_watch *w, struct service *s);
};

struct daemon {
  uv_loop_t *loop;
  struct daemon_opts o;
  char *state_dir, *log_dir, *run_dir, *socket_path;
  int lock_fd;
  gid_t read_gid;
  bool has_read_gid;
  struct store *store;
  struct list services; /* in order of creation */
  struct list dying;    /* removed services waiting for their handles to close */
  size_t nservices;
  size_t ndeps_services; /* services with depends_on: none, and deps_reconcile has nothing to do */
  struct service **htab; /* name -> service, chained */
  size_t hcap;
  uv_signal_t sig_term, sig_int, sig_hup;
  uv_prepare_t flush; /* commits the store once per loop turn */
  struct ctl *ctl;
  bool shutting_down;
  bool leaving; /* shutting down by leaving the services running (daemon_leave): none is stopped */
  int nsignals;
  double start_mono, start_wall;
  struct list watches; /* daemon-wide observers (event streams) */
  uint64_t seed;
  char readbuf[65536]; /* shared read buffer: reads are handled synchronously */
  int exit_code;
  bool deps_dirty;      /* some service changed state: re-evaluate dependencies */
  bool finish_pending;  /* shutting down and idle: tear down at the end of this loop turn */
  bool booting;         /* creating services (start-up, reload): starts wait until all exist */
  double shutdown_at;   /* when the shutdown began (monotonic) */
  struct list clusters; /* Slurm clusters (slurm.c) */
  struct list delayed;  /* stops asked for later (stop --delay), soonest first */
  uv_timer_t delay_timer;
  struct spawner *spawner; /* threads that start local instances (spawner.c) */
  char herd_id[17];        /* this state dir's identity: tags the Slurm jobs herd submits */
  char *cg_root;           /* the root of the services' cgroups (cgroup.h), or NULL */
  char cg_why[200];        /* why there are none */
  struct ident_scan found; /* start-up: processes carrying this herd's identity (ident.h) */
  struct list logfds;      /* services whose log file is open, least recently written first */
  size_t nlogfds;
  struct proc **kids; /* our children started on spawner threads, by pid (proc.c) */
  size_t kcap, nkids;
  uv_signal_t sig_chld;  /* SIGCHLD: proc_reap */
  uv_check_t reap_check; /* a second look at the end of the turn (proc.c) */
  bool reap_retry, reap_stuck;
  size_t npidfds;     /* pidfds held for re-adopted instances */
  struct list polled; /* re-adopted instances past the pidfd budget, polled (proc.c) */
  uv_timer_t poll_timer;
};

struct proc;      /* one spawned instance's process handle (proc.c) */
struct spawn_req; /* a spawn in progress on a spawner thread (proc.c) */
struct sjob;      /* a Slurm service's job (slurm.c) */

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
  uv_timer_t timer;           /* the service's one deadline timer */
  struct logreader *reader;   /* the log FIFO's reader while an instance runs (logpipe.c), or NULL */
  int nhandles;               /* open uv handles owned by this service (timer, reader, procs) */
  struct proc *proc;          /* the current instance's process, or NULL */
  struct spawn_req *spawning; /* a spawn on a spawner thread (proc.c), or NULL */
  struct sjob *job;           /* backend slurm: the current instance's job */
  int log_fd;                 /* the log file while it is in the daemon's cache (logpipe.c), or -1 */
  struct list logfd_link;     /* in the daemon's cache of open log files, least recent first */
  bool log_error_said;        /* the log file cannot be opened, and the daemon's log said so */
  uint64_t log_size;
  bool log_at_bol; /* the log file ends with a newline (or is empty) */
  char *fifo_path, *log_path;
  char *cg;         /* the service's cgroup (local services, where cgroups are used), or NULL */
  int64_t instance; /* current/last instance id (0 = none) */
  int pid;
  uint64_t starttime;
  double started_wall, started_mono;
  bool has_exit;
  int last_code, last_sig;
  double last_exit_wall;
  char last_error[256];
  char reason[128]; /* why the current state was entered */
  bool removing, destroyed;
  struct list watches;
  struct checker *checker; /* health checks (check.c), or NULL */
  int port;                /* the endpoint port of the current/last instance (0 = none) */
  int last_port;           /* the port used last time, preferred when allocating */
  bool stop_sent;          /* shutdown: the stop was sent (dependents first) */
  bool boot_start;         /* wanted up while the daemon was creating services: start after */
};

/** Run the daemon in the foreground until a shutdown. Returns the process exit code. */
int daemon_run(const struct daemon_opts *o);

struct service *daemon_find(struct daemon *d, const char *name);
/**
 * Create a service from a spec (taking ownership) and register it. With no stored
 * state it starts if want_up. With the state an earlier daemon recorded, it resumes:
 * a live instance whose identity is proven is re-adopted (same pid, instance, attempt),
 * a dead one ends and the restart policy applies.
 */
struct service *service_create(struct daemon *d, struct spec *spec, bool want_up, const char *stored_state,
                               unsigned restarts);
/** Feed one event to the service's state machine and carry out the effects. */
void service_event(struct service *s, svc_event_type type, int code, int sig, const char *msg);
/** The same with a whole event (a backend's end state, for one). */
void service_feed(struct service *s, const struct svc_event *ev);
/** Start/stop/restart on a user's request: the wanted state is persisted. */
void service_start(struct service *s);
void service_stop(struct service *s);
void service_restart(struct service *s);
/** Stop the instance for now (spec change, dependency down) and start again once it is at
 *  rest, if still wanted. The wanted state, in memory and in the store, does not change. */
void service_pause(struct service *s, const char *stop_why, const char *start_why /* static */);
/** Stop and remove; the object is freed when its process is gone and handles are closed. */
void service_remove(struct service *s);
/** Replace the spec (taking ownership). Returns false (and frees spec) when unchanged. */
bool service_replace(struct service *s, struct spec *spec);
/** Close the service's uv handles; it is freed (service_free) when nhandles reaches 0. */
void service_close_handles(struct service *s);
void service_free(struct service *s);
/** The service as the API shows it. */
json_t *service_json(struct service *s);
/** full = false: the summary (no spec, tags, log path or dependencies), for listings. */
json_t *service_json_view(struct service *s, bool full);
/** Append the summary view as JSON text (same keys and values as service_json_view(s, false)). */
void service_summary_append(struct buf *b, struct service *s);
void service_add_watch(struct service *s, struct svc_watch *w);
/** Seconds the current instance has run (a Slurm job: since it started running), or -1. */
double service_uptime(struct service *s);
/** Start a service that is wanted up, or park it in PENDING while its dependencies are not met. */
void service_want_up(struct service *s, const char *why);
/** The uv_read_start allocator of every stream: the daemon's one read buffer (reads are
 *  handled synchronously, so one buffer serves them all). */
void daemon_alloc(uv_handle_t *h, size_t suggested, uv_buf_t *b);
/** Start a one-shot timer that fires at `at` (monotonic seconds, as now_mono()), never early. */
void timer_arm(uv_loop_t *loop, uv_timer_t *t, uv_timer_cb cb, double at);
/** Creating many services: hold their starts (begin), then start them all (end). */
void daemon_boot_begin(struct daemon *d);
void daemon_boot_end(struct daemon *d);
/** Re-evaluate PENDING services, dependency restarts and the shutdown order (once per loop turn). */
void deps_reconcile(struct daemon *d);
/** Why `s` cannot start now ("waiting for db: STARTING"), or NULL when its dependencies are met. */
const char *deps_blocker(struct service *s, char *buf, size_t len);
/** Called when a service becomes at rest during shutdown or removal. */
void daemon_check_idle(struct daemon *d);
/** Reload config files: on errors nothing changes and errs is filled; returns 0 on success. */
int daemon_reload(struct daemon *d, struct cfg_errors *errs, json_t **summary);
/** Check depends_on across all services, with `extra` added or replacing same-named ones. */
int daemon_validate_deps(struct daemon *d, struct spec **extra, size_t nextra, struct cfg_errors *errs);
/** Stop the service `delay` seconds from now (a later request replaces it; a start or
 *  restart cancels it). */
void daemon_stop_later(struct daemon *d, struct service *s, double delay);
void daemon_cancel_stop_later(struct daemon *d, struct service *s);
/** Begin an orderly shutdown (stop all services, then exit). */
void daemon_shutdown(struct daemon *d);
/** Exit without stopping services: the next daemon re-adopts them. */
void daemon_leave(struct daemon *d);

/* proc.c: the local backend */
/** Spawn the service's instance. On failure fills err and returns a negative UV_E* code. */
int proc_spawn(struct service *s, char *err, size_t errlen);
/** How many pidfds re-adopted instances may hold (a quarter of the descriptor limit, less 256). */
size_t proc_pidfd_budget(void);
/** Reap the children of ours that have ended and end their instances (on SIGCHLD). */
void proc_reap(struct daemon *d);
/** Send sig to the instance's process group. */
void proc_signal(struct service *s, int sig);
/** Stop watching the instance's process without touching it (the daemon leaves it running). */
void proc_release(struct service *s);
/** Watch a live process an earlier daemon started (not our child). */
int proc_adopt(struct service *s, int pid, uint64_t starttime);
/** Whether pid is still the instance recorded with this start time and command line
 *  (a zombie is not alive). Fills why with the reason when it is not. */
bool proc_identity(int pid, uint64_t starttime, const char *cmdline, char *why, size_t len);
/** Read field 22 (starttime) of /proc/PID/stat; 0 when unavailable. */
uint64_t proc_starttime(int pid);

/* logpipe.c: the service's log FIFO and log files */
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
