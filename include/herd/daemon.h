/* The daemon: the loop, the service registry, and the service objects it runs. */
#ifndef HERD_DAEMON_H
#define HERD_DAEMON_H

#include "herd/cfg.h"
#include "herd/heartbeat.h"
#include "herd/herd.h"
#include "herd/ident.h"
#include "herd/spec.h"
#include "herd/service.h"
#include "herd/loop.h"
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
  bool leave_running;          /* on SIGTERM/SIGINT exit without stopping services (for upgrades) */
  bool normal_priority;        /* --priority normal: no real-time priority for herd's threads (prio.c) */
  bool no_cgroups;             /* --cgroups off: services are their process groups (cgroup.h) */
  const char *liveness_file;   /* touched at every heartbeat tick (heartbeat.h), or NULL */
  const char *http;            /* --http ADDR: the status page (web.c), or NULL */
  const char *http_token_file; /* --http-token-file: the token its changes need, or NULL (read-only) */
  long finished_jobs;          /* --finished-jobs N: finished jobs kept in memory (the rest: history); < 0: 1000 */
};

struct service;
struct ctl;
struct store;

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
  int exit_code;
  bool deps_dirty;             /* some service changed state: re-evaluate dependencies */
  bool finish_pending;         /* shutting down and idle: tear down at the end of this loop turn */
  bool stops_all_sent;         /* shutting down: every service was sent its stop (deps.c) */
  struct service *idle_cursor; /* shutting down: the service that was still busy (services_idle) */
  bool booting;                /* creating services (start-up, reload): starts wait until all exist */
  double shutdown_at;          /* when the shutdown began (monotonic) */
  struct list clusters;        /* Slurm clusters (slurm.c) */
  struct list hosts;           /* ssh hosts (tunnel.c) */
  struct list sshx;            /* libssh2 sessions to them (sshx.c) */
  struct list runq;            /* events backends posted, waiting for the effects being applied (run.c) */
  int run_depth;               /* effects are being applied: posted events wait */
  bool run_draining;
  struct list delayed; /* stops asked for later (stop --delay), soonest first */
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
  struct jobs *jobs;         /* job queues (job.c) */
  struct work *work;         /* work queues for external workers (work.c) */
  struct heartbeat hb;       /* loop lag, the liveness file, systemd notifications (heartbeat.c) */
  struct notifier *notifier; /* the notify socket offered to services (notify.c), or NULL */
  struct ctl *http;          /* the status page's listener (--http), or NULL */
};

/** Run the daemon in the foreground until a shutdown. Returns the process exit code. */
int daemon_run(const struct daemon_opts *o);

struct service *daemon_find(struct daemon *d, const char *name);
/** Creating many services: hold their starts (begin), then start them all (end). */
void daemon_boot_begin(struct daemon *d);
void daemon_boot_end(struct daemon *d);
/** Re-evaluate PENDING services, dependency restarts and the shutdown order (once per loop turn). */
void deps_reconcile(struct daemon *d);
/** Why `s` cannot start now ("waiting for db: STARTING"), or NULL when its dependencies are met. */
const char *deps_blocker(struct service *s, char *buf, size_t len);
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

/* proc.c: the local backend's daemon-wide parts */
/** How many pidfds re-adopted instances may hold (a quarter of the descriptor limit, less 256). */
size_t proc_pidfd_budget(void);
/** Reap the children of ours that have ended and end their instances (on SIGCHLD). */
void proc_reap(struct daemon *d);

#endif
