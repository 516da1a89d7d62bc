/*
 * The local backend: spawn an instance in its own session and process group, signal
 * the group, and turn its exit into an EV_EXIT for the state machine.
 *
 * Instances start on the spawner threads (child.c); without pidfds, through uv_spawn.
 * Each instance gets its own heap-allocated uv_process_t, so a new instance can be
 * spawned from inside the old one's exit callback while the old handle is closing.
 */
#include "herd/cgroup.h"
#include "herd/check.h"
#include "herd/child.h"
#include "herd/daemon.h"
#include "herd/log.h"
#include "herd/notify.h"
#include "herd/prio.h"
#include "herd/run.h"
#include "herd/spawner.h"

#include <errno.h>
#include <fcntl.h>
#include <signal.h>
#include <stdlib.h>
#include <string.h>
#include <sys/resource.h>
#include <sys/socket.h>
#include <sys/wait.h>
#include <sys/syscall.h>
#include <unistd.h>

extern char **environ;

/* An instance's process:
 *  - our child started on a spawner thread: no handle and no descriptor, found in the
 *    daemon's table of children when SIGCHLD says one has ended (proc_reap);
 *  - our child started by uv_spawn (kernels without pidfd): a uv_process_t;
 *  - a process re-adopted from an earlier daemon, not our child: a pidfd while pidfds
 *    stay under their budget (proc_pidfd_budget), else one shared polling timer for all
 *    (also where the kernel has no pidfd). */
enum proc_kind { PROC_REAPED, PROC_UV, PROC_PIDFD, PROC_POLLED };

/* The local backend's state of one service (service->run). */
struct local {
  struct proc *proc;          /* the current instance's process, or NULL */
  struct spawn_req *spawning; /* a spawn on a spawner thread, or NULL */
  char *cg;                   /* the service's cgroup (where cgroups are used), or NULL */
};

static struct local *LP(const struct service *s) { return s->run; }

struct proc {
  struct service *s;
  int pid;
  enum proc_kind kind;
  bool adopted;
  int pidfd;
  uint64_t starttime;
  struct proc *knext; /* PROC_REAPED: next in the daemon's table of children */
  struct list plink;  /* PROC_POLLED: in the daemon's polled list */
  union {
    uv_process_t child;
    uv_poll_t poll;
    uv_timer_t timer;
  } h;
};

static void on_proc_close(uv_handle_t *h) {
  struct proc *p = h->data;
  struct service *s = p->s;
  if (p->pidfd >= 0) {
    close(p->pidfd);
    s->d->npidfds--;
  }
  free(p);
  service_unref(s);
}

/* ---- the daemon's children, by pid ---- */

static struct proc **kid_slot(struct daemon *d, int pid) {
  struct proc **pp = &d->kids[(unsigned)pid & (d->kcap - 1)];
  while (*pp && (*pp)->pid != pid) pp = &(*pp)->knext;
  return pp;
}

static void kid_add(struct daemon *d, struct proc *p) {
  if (d->nkids + 1 > d->kcap) { /* rehash into twice the buckets */
    size_t ncap = d->kcap ? d->kcap * 2 : 256;
    struct proc **nt = xcalloc(ncap, sizeof *nt);
    for (size_t i = 0; i < d->kcap; i++)
      for (struct proc *x = d->kids[i], *next; x; x = next) {
        next = x->knext;
        x->knext = nt[(unsigned)x->pid & (ncap - 1)];
        nt[(unsigned)x->pid & (ncap - 1)] = x;
      }
    free(d->kids);
    d->kids = nt;
    d->kcap = ncap;
  }
  struct proc **pp = &d->kids[(unsigned)p->pid & (d->kcap - 1)];
  p->knext = *pp;
  *pp = p;
  d->nkids++;
}

static void kid_del(struct daemon *d, struct proc *p) {
  if (!d->kcap) return;
  struct proc **pp = kid_slot(d, p->pid);
  if (*pp != p) return;
  *pp = p->knext;
  d->nkids--;
}

/* Stop watching (the process is gone, or the daemon lets it run on). */
static void proc_drop(struct proc *p) {
  if (p->kind == PROC_REAPED || p->kind == PROC_POLLED) {
    if (p->kind == PROC_REAPED)
      kid_del(p->s->d, p);
    else
      list_del(&p->plink);
    free(p);
  } else {
    uv_close((uv_handle_t *)&p->h, on_proc_close);
  }
}

/* The instance's leader is gone (code -1: status unknown). */
static void instance_gone(struct proc *p, int code, int term_signal, const char *msg) {
  struct service *s = p->s;
  struct local *lp = LP(s);
  int pid = p->pid;
  proc_drop(p);
  if (!lp || lp->proc != p) return; /* an instance we already gave up on */
  lp->proc = NULL;
  /* The leader is gone; anything left in its process group or its cgroup belongs to this
   * instance and must not outlive it (a straggler could hold the port the next instance
   * needs). Processes still in the cgroup when the main one is gone are the ones a plain
   * process group loses: children that called setsid or double-forked. */
  int first = 0, left = lp->cg ? cg_count(lp->cg, pid, &first) : 0;
  if (left > 0) cg_signal(lp->cg, SIGKILL);
  if (kill(-pid, SIGKILL) == 0)
    log_msg(LOG_INFO, s->spec->name, NULL, NULL, "killed leftover processes of group %d", pid);
  /* Log lines written just before exit are in the FIFO: read them before the state
   * change so the log shows them ahead of herd's note; then the reader goes (a service
   * holds no descriptor while no instance runs). */
  logpipe_detach(s);
  if (term_signal)
    logpipe_note(s, "pid %d killed by signal %d (%s)", pid, term_signal, signal_name(term_signal));
  else if (code >= 0)
    logpipe_note(s, "pid %d exited with code %d", pid, code);
  else
    logpipe_note(s, "pid %d %s", pid, msg ? msg : "exited");
  struct run_event ev = {.type = EV_EXIT, .code = term_signal ? -1 : code, .sig = term_signal, .msg = msg};
  char why[160];
  if (left > 0) {
    logpipe_note(s, "killed %d process%s left in its cgroup (pid %d first)", left, left == 1 ? "" : "es", first);
    if (s->fsm.state != S_STOPPING && !term_signal && code == 0) {
      /* It exited 0 but left work running: a program that detaches (forks into the
       * background) cannot be supervised by its main process, and is not a success. */
      snprintf(why, sizeof why, "main process exited 0 leaving %d process%s running (killed): run it in the foreground",
               left, left == 1 ? "" : "es");
      ev.end = S_FAILED;
      ev.msg = why;
    }
  }
  run_post(s, &ev);
}

static void on_exit_cb(uv_process_t *h, int64_t status, int term_signal) {
  instance_gone(h->data, (int)status, term_signal, NULL);
}

bool proc_identity(int pid, uint64_t starttime, const char *cmdline, char *why, size_t len) {
  uint64_t started;
  char st = proc_stat(pid, &started);
  if (!st || st == 'Z' || st == 'X') {
    snprintf(why, len, "exited while herd was down (status unknown)");
    return false;
  }
  if (started != starttime) {
    snprintf(why, len, "gone while herd was down: pid %d now belongs to another process", pid);
    return false;
  }
  char path[64], buf[4096];
  snprintf(path, sizeof path, "/proc/%d/cmdline", pid);
  int fd = open(path, O_RDONLY | O_CLOEXEC);
  struct buf cl = {0};
  ssize_t n;
  if (fd >= 0) {
    while ((n = read(fd, buf, sizeof buf)) > 0) buf_append(&cl, buf, (size_t)n);
    close(fd);
  }
  for (size_t i = 0; i < cl.len; i++)
    if (cl.data[i] == '\0') cl.data[i] = ' ';
  while (cl.len && cl.data[cl.len - 1] == ' ') cl.data[--cl.len] = '\0';
  bool same = cl.data && cmdline && !strcmp(cl.data, cmdline);
  if (!same)
    snprintf(why, len, "gone while herd was down: pid %d runs \"%.60s\", not this service", pid,
             cl.data ? cl.data : "");
  buf_free(&cl);
  return same;
}

static void on_pidfd(uv_poll_t *h, int status, int events) {
  uv_poll_stop(h);
  instance_gone(h->data, -1, 0, "exited (status unknown, adopted)");
}

/* Reap what has ended of our own children. waitid(WNOWAIT) names an ended child without
 * reaping it: ours are reaped and handled one by one, at the cost of the ones that ended;
 * a child of libuv's (exec checks, token commands) is left to libuv, which reaps it in
 * this same loop turn, so a second look is taken at the end of the turn; only if that
 * child is still first in line are all of ours asked one by one. */
static void reap_scan(struct daemon *d);

static void on_reap_again(uv_check_t *h) {
  struct daemon *d = h->data;
  uv_check_stop(h);
  d->reap_retry = false;
  proc_reap(d);
  if (d->reap_stuck) {
    d->reap_stuck = false;
    reap_scan(d);
  }
}

static void reaped(struct proc *p, int st) {
  if (WIFSIGNALED(st))
    instance_gone(p, -1, WTERMSIG(st), NULL);
  else
    instance_gone(p, WEXITSTATUS(st), 0, NULL);
}

/* waitid(P_ALL) walks the daemon's whole list of children to find an ended one: cheap for
 * the odd exit, quadratic when thousands end together (a stop of everything). So after a
 * few, the rest are asked for by pid (waitpid on one pid costs the same whatever the
 * number of children): one pass over the table reaps them all. */
#define REAP_PEEKS 8

void proc_reap(struct daemon *d) {
  for (int n = 0;; n++) {
    if (n == REAP_PEEKS) {
      reap_scan(d);
      return;
    }
    siginfo_t si;
    si.si_pid = 0;
    if (waitid(P_ALL, 0, &si, WEXITED | WNOHANG | WNOWAIT) < 0 || si.si_pid == 0) return;
    struct proc **pp = d->kcap ? kid_slot(d, si.si_pid) : NULL;
    if (!pp || !*pp) {
      if (d->reap_retry) {
        d->reap_stuck = true; /* the same kind of stranger twice in one turn */
      } else {
        d->reap_retry = true;
        uv_check_start(&d->reap_check, on_reap_again);
      }
      return;
    }
    int st;
    if (waitpid(si.si_pid, &st, WNOHANG) != si.si_pid) return;
    reaped(*pp, st);
  }
}

static void reap_scan(struct daemon *d) {
  /* Handling an exit never adds to the table (a new instance enters it when its spawn
   * comes back, in a later turn) and frees only the process handled, so the walk goes on
   * from the next one. */
  for (size_t i = 0; i < d->kcap; i++)
    for (struct proc *x = d->kids[i], *next; x; x = next) {
      next = x->knext;
      int st;
      if (waitpid(x->pid, &st, WNOHANG) == x->pid) reaped(x, st);
    }
}

/* Does this kernel give pidfds? Asked once. */
static bool have_pidfd(void) {
  static int known = -1;
  if (known < 0) {
    int fd = (int)syscall(SYS_pidfd_open, getpid(), 0);
    known = fd >= 0;
    if (fd >= 0) close(fd);
  }
  return known;
}

/* Re-adopted processes without a pidfd, all looked at once a second (kill 0: no descriptor,
 * no /proc read). A pid taken by another process within that second would be missed:
 * with pid_max at 4 million, a wrap that fast is not a real risk. */
#define POLL_MS 1000

size_t proc_pidfd_budget(void) {
  /* A quarter of the descriptor limit, less 256: with one reader per running service the
   * daemon then holds at most 1.5 descriptors per service even with every instance
   * re-adopted, however many services fill the limit. Past it, re-adopted processes are
   * polled (kill 0: about 0.3 us each, once a second). */
  struct rlimit rl;
  if (getrlimit(RLIMIT_NOFILE, &rl) < 0 || rl.rlim_cur == RLIM_INFINITY) return 1u << 20;
  size_t quarter = (size_t)rl.rlim_cur / 4;
  return quarter > 256 ? quarter - 256 : 0;
}

static void on_poll_timer(uv_timer_t *t) {
  struct daemon *d = t->data;
  struct list dead, *pos, *tmp;
  list_init(&dead);
  list_for_each_safe(pos, tmp, &d->polled) {
    struct proc *p = container_of(pos, struct proc, plink);
    if (kill(p->pid, 0) < 0 && errno == ESRCH) {
      list_del(&p->plink);
      list_add_tail(&dead, &p->plink);
    }
  }
  /* One at a time from a list of their own: ending one may let go of another. */
  while (!list_empty(&dead))
    instance_gone(container_of(dead.next, struct proc, plink), -1, 0, "exited (status unknown, adopted)");
  if (list_empty(&d->polled)) uv_timer_stop(t);
}

static void local_release(struct service *s) {
  struct local *lp = LP(s);
  logpipe_detach(s); /* what is in the FIFO stays there for the next daemon */
  if (!lp || !lp->proc) return;
  struct proc *p = lp->proc;
  lp->proc = NULL;
  /* Closing a process handle stops watching it; the process itself runs on. */
  proc_drop(p);
}

/* Watch an adopted pid through its pidfd (readable when the process exits, child or not).
 * The handle counts in the service's. */
static struct proc *watch_pidfd(struct service *s, int pid, int pidfd) {
  struct proc *p = xcalloc(1, sizeof *p);
  p->s = s;
  p->pid = pid;
  p->kind = PROC_PIDFD;
  p->pidfd = pidfd;
  uv_poll_init(s->d->loop, &p->h.poll, pidfd);
  p->h.poll.data = p;
  uv_poll_start(&p->h.poll, UV_READABLE, on_pidfd);
  service_ref(s);
  return p;
}

/* Our own child, started on a spawner thread: into the table of children, no descriptor. */
static struct proc *watch_child(struct service *s, int pid) {
  struct proc *p = xcalloc(1, sizeof *p);
  p->s = s;
  p->pid = pid;
  p->kind = PROC_REAPED;
  p->pidfd = -1;
  kid_add(s->d, p);
  return p;
}

/* Watch a live process an earlier daemon started (not our child). */
static void adopt(struct service *s, int pid, uint64_t starttime) {
  struct daemon *d = s->d;
  struct proc *p;
  int pidfd = d->npidfds < proc_pidfd_budget() ? (int)syscall(SYS_pidfd_open, pid, 0) : -1;
  if (pidfd >= 0) {
    d->npidfds++;
    p = watch_pidfd(s, pid, pidfd);
  } else {
    p = xcalloc(1, sizeof *p);
    p->s = s;
    p->pid = pid;
    p->pidfd = -1;
    p->kind = PROC_POLLED;
    list_add_tail(&d->polled, &p->plink);
    if (!uv_is_active((uv_handle_t *)&d->poll_timer)) uv_timer_start(&d->poll_timer, on_poll_timer, POLL_MS, POLL_MS);
  }
  p->adopted = true;
  p->starttime = starttime;
  int rc = logpipe_attach(s); /* what it wrote while no daemon read is waiting in the FIFO */
  if (rc == 0) rc = logpipe_read(s);
  if (rc < 0) logpipe_note(s, "cannot read its output (log FIFO): %s", uv_strerror(rc));
  LP(s)->proc = p;
}

/* Copy argv/env strings with ${port} replaced by the instance's port. */
static char *subst_port(const char *in, int port) {
  if (!strstr(in, "${port}")) return xstrdup(in);
  struct buf b = {0};
  const char *p = in, *m;
  while ((m = strstr(p, "${port}"))) {
    buf_append(&b, p, (size_t)(m - p));
    buf_printf(&b, "%d", port);
    p = m + 7;
  }
  buf_append(&b, p, strlen(p));
  return b.data;
}

static void strv_free(char **v) {
  for (char **p = v; p && *p; p++) free(*p);
  free(v);
}

static void env_free(char **env, size_t nborrowed) {
  for (char **p = env + nborrowed; *p; p++) free(*p);
  free(env);
}

static char *join_argv(char **argv) {
  struct buf b = {0};
  for (char **a = argv; *a; a++) buf_printf(&b, "%s%s", a == argv ? "" : " ", *a);
  return b.data;
}

/* The instance runs: say so in its log (before its own output), and tell the runner. */
static void started(struct service *s, struct proc *p, uint64_t starttime) {
  LP(s)->proc = p;
  if (s->port)
    logpipe_note(s, "started pid %d (instance %lld, attempt %u, port %d)", p->pid, (long long)s->instance,
                 s->fsm.attempt, s->port);
  else
    logpipe_note(s, "started pid %d (instance %lld, attempt %u)", p->pid, (long long)s->instance, s->fsm.attempt);
  logpipe_read(s); /* its output, after the note that it started */
}

static void post_started(struct service *s, int pid, uint64_t starttime) {
  struct run_event ev = {
      .type = EV_STARTED, .facts = RUN_PID | RUN_RUNNING, .pid = pid, .starttime = starttime, .since = now_wall()};
  run_post(s, &ev);
}

static void spawn_failed(struct service *s, const char *argv0, int rc, const char *why) {
  char err[256];
  if (why)
    snprintf(err, sizeof err, "%s", why);
  else
    snprintf(err, sizeof err, "cannot start %s: %s", argv0, uv_strerror(rc));
  logpipe_note(s, "%s", err);
  if (rc == UV_EMFILE || rc == UV_ENFILE) /* the daemon's lack, not the service's */
    run_post_event(s, EV_DEFERRED, 0, 0, err);
  else
    run_post_event(s, EV_SPAWN_FAILED, -1, 0, err);
}

/* A spawn on a spawner thread (spawner.c): the result comes back to the loop in spawn_done. */
struct spawn_req {
  struct spawner_job job;
  struct service *s;
  char **args, **env;
  size_t nborrowed; /* env[0 .. nborrowed) point into environ */
  char *cwd, *fifo;
  char *cg; /* the service's cgroup, or NULL */
  bool set_uid, set_gid;
  uid_t uid;
  gid_t gid;
  int pid; /* out: the child, or a negative UV_E* code */
  uint64_t starttime;
  int cg_err;      /* out: it could not join its cgroup (errno) */
  char *spawn_err; /* out: why it did not start */
};

/* Into its service's cgroup after the fact: for the uv_spawn path only (the spawner
 * threads' children join theirs before their exec). */
static int into_cgroup(const char *cg, int pid) {
  int rc = cg_make(cg);
  return rc < 0 ? rc : cg_attach(cg, pid);
}

static void spawn_work(struct spawner_job *j) {
  struct spawn_req *r = container_of(j, struct spawn_req, job);
  /* Opened here, in the thread's own table: the child's stdout and stderr. */
  int fd = logpipe_child_fd(r->fifo);
  if (fd < 0) {
    r->pid = uv_translate_sys_error(-fd);
    r->spawn_err = xasprintf("cannot start %s: cannot open its log pipe: %s", r->args[0], strerror(-fd));
    return;
  }
  char *procs = NULL;
  if (r->cg) {
    int rc = cg_make(r->cg);
    if (rc < 0)
      r->cg_err = -rc;
    else
      procs = xasprintf("%s/cgroup.procs", r->cg);
  }
  struct child_plan plan = {.args = r->args,
                            .env = r->env,
                            .cwd = r->cwd,
                            .cg_procs = procs,
                            .logfd = fd,
                            .set_uid = r->set_uid,
                            .set_gid = r->set_gid,
                            .uid = r->uid,
                            .gid = r->gid};
  struct child_result res;
  child_spawn(&plan, &res);
  close(fd);
  free(procs);
  if (res.pid <= 0) {
    char msg[512];
    child_strerror(&plan, &res, msg, sizeof msg);
    r->spawn_err = xstrdup(msg);
    r->pid = uv_translate_sys_error(res.err);
    return;
  }
  r->pid = res.pid;
  if (res.cg_err) r->cg_err = res.cg_err;
  r->starttime = proc_starttime(r->pid);
}

static void spawn_done(struct spawner_job *j, bool cancelled) {
  struct spawn_req *r = container_of(j, struct spawn_req, job);
  struct service *s = r->s;
  if (cancelled) r->pid = UV_ECANCELED;
  LP(s)->spawning = NULL;
  if (r->pid < 0) {
    logpipe_detach(s);
    if (!s->closed) spawn_failed(s, r->args[0], r->pid, r->spawn_err);
  } else if (s->closed) {
    /* The daemon let go of its services while this spawn ran (it leaves them running for
     * the next daemon): the runner records the process so that one re-adopts it. */
    struct run_event ev = {.type = EV__MAX, .facts = RUN_PID, .pid = r->pid, .starttime = r->starttime};
    run_post(s, &ev);
  } else {
    struct proc *p = watch_child(s, r->pid);
    started(s, p, r->starttime);
    if (r->cg_err) logpipe_note(s, "pid %d is not in cgroup %s: %s", r->pid, r->cg, strerror(r->cg_err));
    /* The state machine now counts STARTING's time, starts the checks, or sends the stop
     * asked for while the spawn ran. */
    post_started(s, r->pid, r->starttime);
    /* It may have ended before it was in the table: its SIGCHLD found no owner then. */
    int st;
    if (LP(s)->proc == p && waitpid(p->pid, &st, WNOHANG) == p->pid) reaped(p, st);
  }
  strv_free(r->args);
  env_free(r->env, r->nborrowed);
  free(r->cwd);
  free(r->fifo);
  free(r->cg);
  free(r->spawn_err);
  free(r);
  service_unref(s); /* last: it may free a removed service */
}

/* The instance's arguments, ${port} replaced. */
static char **instance_args(struct service *s) {
  size_t nargs = 0;
  while (s->spec->argv[nargs]) nargs++;
  char **args = xcalloc(nargs + 1, sizeof *args);
  for (size_t j = 0; j < nargs; j++) args[j] = subst_port(s->spec->argv[j], s->port);
  return args;
}

static void local_plan(struct service *s, struct run_plan *p) {
  char **args = instance_args(s);
  p->cmdline = join_argv(args); /* as /proc/PID/cmdline will read: the proof of identity later */
  strv_free(args);
}

static int local_start(struct service *s, char *err, size_t errlen) {
  struct daemon *d = s->d;
  struct spec *sp = s->spec;
  struct local *lp = LP(s);
  /* The reader of its output first: the one descriptor a running instance costs. Out of
   * descriptors, nothing has begun: the start is put off (EV_DEFERRED), not failed. */
  int lrc = logpipe_attach(s);
  if (lrc < 0) {
    if (lrc == UV_EMFILE || lrc == UV_ENFILE) {
      struct rlimit rl = {0};
      getrlimit(RLIMIT_NOFILE, &rl);
      snprintf(err, errlen,
               "waiting for a file descriptor: herd is at its limit (RLIMIT_NOFILE %llu); trying again in 1s",
               (unsigned long long)rl.rlim_cur);
    } else {
      snprintf(err, errlen, "cannot read the log FIFO %s: %s", s->fifo_path, uv_strerror(lrc));
    }
    return lrc;
  }
  /* Environment: herd's own, then the spec's, then herd's identity variables. Entries of
   * herd's own environment are borrowed (the daemon never changes it); the rest are owned
   * by the arrays, from env[nborrowed] on: a spawn on a spawner thread outlives this call. */
  size_t nenv = 0, nspec = 0;
  while (environ[nenv]) nenv++;
  while (sp->env && sp->env[nspec]) nspec++;
  char **args = instance_args(s), **env = xcalloc(nenv + nspec + 8, sizeof *env);
  size_t k = 0;
  for (size_t i = 0; i < nenv; i++) {
    bool overridden = false;
    const char *eq = strchr(environ[i], '=');
    size_t kl = eq ? (size_t)(eq - environ[i]) : strlen(environ[i]);
    for (size_t j = 0; j < nspec && !overridden; j++)
      overridden = !strncmp(sp->env[j], environ[i], kl) && sp->env[j][kl] == '=';
    if (s->port && !strncmp(environ[i], "PORT=", 5)) overridden = true;
    if (!overridden && strncmp(environ[i], "HERD_", 5)) env[k++] = environ[i];
  }
  size_t nborrowed = k;
  bool user_port = false;
  for (size_t j = 0; j < nspec; j++) {
    user_port |= !strncmp(sp->env[j], "PORT=", 5);
    env[k++] = subst_port(sp->env[j], s->port);
  }
  /* Its identity goes with the process from birth (ident.h): a daemon that dies before
   * recording the pid does not lose it. */
  env[k++] = ident_env(d->herd_id, s->instance);
  env[k++] = xasprintf("HERD_SERVICE=%s", sp->name);
  env[k++] = xasprintf("HERD_ATTEMPT=%u", s->fsm.attempt);
  if (s->port) {
    if (!user_port) env[k++] = xasprintf("PORT=%d", s->port);
    env[k++] = xasprintf("HERD_PORT=%d", s->port);
  }
  /* The notify protocol (notify.h): herd's socket, and the watchdog's period. No
   * WATCHDOG_PID: the pid is not known before the spawn, and sd_watchdog_enabled() accepts
   * any process without it. */
  const char *nsock = notify_path(d);
  if (nsock && (sp->notify_ready || sp->watchdog > 0)) {
    env[k++] = xasprintf("NOTIFY_SOCKET=%s", nsock);
    if (sp->watchdog > 0) env[k++] = xasprintf("WATCHDOG_USEC=%llu", (unsigned long long)(sp->watchdog * 1e6));
  }
  const char *cwd = sp->cwd ? sp->cwd : d->state_dir;

  if (have_pidfd() && d->spawner) {
    /* The fast path; uv_spawn stays for kernels without pidfd. */
    struct spawn_req *r = xcalloc(1, sizeof *r);
    r->set_uid = sp->set_uid;
    r->set_gid = sp->set_gid;
    r->uid = sp->uid;
    r->gid = sp->gid;
    r->s = s;
    r->args = args;
    r->env = env;
    r->nborrowed = nborrowed;
    r->cwd = xstrdup(cwd);
    r->fifo = xstrdup(s->fifo_path);
    r->cg = lp->cg ? xstrdup(lp->cg) : NULL;
    r->job.work = spawn_work;
    r->job.done = spawn_done;
    spawner_submit(d->spawner, &r->job);
    lp->spawning = r;
    service_ref(s); /* the service lives until the spawn has come back */
    return 0;
  }

  int fd = logpipe_child_fd(s->fifo_path);
  if (fd < 0) {
    snprintf(err, errlen, "cannot open log pipe: %s", strerror(-fd));
    strv_free(args);
    env_free(env, nborrowed);
    logpipe_detach(s);
    return uv_translate_sys_error(-fd);
  }
  uv_stdio_container_t stdio[3] = {
      {.flags = UV_IGNORE},
      {.flags = UV_INHERIT_FD, .data.fd = fd},
      {.flags = UV_INHERIT_FD, .data.fd = fd},
  };
  uv_process_options_t o = {
      .exit_cb = on_exit_cb,
      .file = args[0],
      .args = args,
      .env = env,
      .cwd = cwd,
      /* Own session and process group: we signal the group, and the children survive a
       * daemon crash (they are re-adopted by the next daemon). */
      .flags = UV_PROCESS_DETACHED,
      .stdio_count = 3,
      .stdio = stdio,
  };
  if (sp->set_uid) o.flags |= UV_PROCESS_SETUID, o.uid = sp->uid;
  if (sp->set_gid) o.flags |= UV_PROCESS_SETGID, o.gid = sp->gid;
  struct proc *p = xcalloc(1, sizeof *p);
  p->s = s;
  p->pidfd = -1;
  p->h.child.data = p;
  int rc = uv_spawn(d->loop, &p->h.child, &o);
  close(fd);
  env_free(env, nborrowed);
  service_ref(s);
  if (rc < 0) {
    snprintf(err, errlen, "cannot start %s: %s", sp->argv[0], uv_strerror(rc));
    /* A failed uv_spawn still initialised the handle: it must be closed. */
    uv_close((uv_handle_t *)&p->h, on_proc_close);
    logpipe_detach(s);
    strv_free(args);
    return rc;
  }
  strv_free(args);
  p->pid = p->h.child.pid;
  uint64_t starttime = proc_starttime(p->pid);
  started(s, p, starttime);
  if (lp->cg && (rc = into_cgroup(lp->cg, p->pid)) < 0)
    logpipe_note(s, "pid %d is not in cgroup %s: %s", p->pid, lp->cg, strerror(-rc));
  post_started(s, p->pid, starttime); /* fed after the effects being applied */
  return 0;
}

static void local_signal(struct service *s, int sig) {
  struct local *lp = LP(s);
  if (!lp->proc) return;
  int pid = lp->proc->pid;
  logpipe_note(s, "sending SIG%s to process group %d", signal_name(sig), pid);
  /* The cgroup holds the process group and whatever left it (setsid, double fork): one
   * signal each. Without one (or before the spawn moved the process in), the group. */
  if (lp->cg && cg_signal(lp->cg, sig) > 0) return;
  if (kill(-pid, sig) < 0 && errno == ESRCH) kill(pid, sig);
}

/* A process of an adopted instance that is not yet in the service's cgroup (an older herd,
 * or a daemon that died before moving it): in it goes. */
static void claim_into_cgroup(struct ident_proc *p, void *arg) {
  struct service *s = arg;
  const char *cg = LP(s)->cg;
  cg_make(cg);
  int rc = cg_attach(cg, p->pid);
  if (rc < 0) logpipe_note(s, "pid %d stays out of cgroup %s: %s", p->pid, cg, strerror(-rc));
}

static void local_resume(struct service *s, const struct store_instance *last, struct run_resume *out) {
  struct daemon *d = s->d;
  struct local *lp = LP(s);
  struct ident_proc *leader;
  int pid = last ? last->pid : 0;
  uint64_t starttime = last ? last->starttime : 0;
  if (last && pid <= 0 && (leader = ident_leader(&d->found, last->id))) {
    /* The last daemon died between this instance's spawn and recording its pid: the
     * process carries the instance's identity, so it is found all the same. */
    pid = leader->pid;
    starttime = leader->starttime;
    out->pid_found = true;
    logpipe_note(s, "found pid %d of instance %lld by its identity (the last daemon died before recording it)", pid,
                 (long long)last->id);
  }
  if (last && pid > 0) {
    out->alive = proc_identity(pid, starttime, last->cmdline, out->why, sizeof out->why);
    if (!out->alive && (leader = ident_leader(&d->found, last->id)) && leader->pid == pid &&
        leader->starttime == starttime) {
      /* Its command line changed (a wrapper such as a pyenv shim exec'd the real program
       * under another argv[0]), but it carries the instance's identity from birth: it is ours. */
      out->alive = true;
      out->why[0] = '\0';
    }
    if (out->alive) {
      /* Every process of the instance is the service's: none is an orphan to kill. */
      ident_claim(&d->found, last->id, lp->cg ? claim_into_cgroup : NULL, s);
      adopt(s, pid, starttime);
      out->pid = pid;
      out->starttime = starttime;
      out->since = last->started_at;
      logpipe_note(s, "re-adopted pid %d (instance %lld, attempt %u) after a daemon restart", pid, (long long)last->id,
                   last->attempt);
      log_msg(LOG_INFO, s->spec->name, NULL, NULL, "re-adopted pid %d (instance %lld)", pid, (long long)last->id);
    } else {
      logpipe_note(s, "instance %lld (pid %d): %s", (long long)last->id, pid, out->why);
    }
  } else if (last) {
    snprintf(out->why, sizeof out->why, "exited while herd was down (status unknown)");
  }
  if (!out->alive && lp->cg) {
    /* No live instance: whatever its cgroup still holds was left behind by a dead one. */
    int n = cg_signal(lp->cg, SIGKILL);
    if (n > 0)
      logpipe_note(s, "killed %d process%s left in its cgroup by an instance that is gone", n, n == 1 ? "" : "es");
  }
}

static void local_attach(struct service *s) {
  if (s->run) return;
  struct local *lp = xcalloc(1, sizeof *lp);
  if (s->d->cg_root) lp->cg = cg_service_path(s->d->cg_root, s->spec->name);
  s->run = lp;
}

static void local_detach(struct service *s) {
  struct local *lp = LP(s);
  if (!lp) return;
  /* Empty once its processes are gone (a daemon leaving them running keeps it, busy). */
  if (lp->cg) cg_remove(lp->cg);
  free(lp->cg);
  free(lp);
  s->run = NULL;
}

static bool local_busy(struct service *s) {
  struct local *lp = LP(s);
  return lp && (lp->proc || lp->spawning);
}

/* A start put off for a descriptor (EV_DEFERRED): is there one now? (Kept for the start.) */
static bool local_ready(struct service *s) { return logpipe_attach(s) != UV_EMFILE; }

static json_t *local_describe(struct service *s, bool full) {
  if (!full) return NULL;
  const char *cg = LP(s) ? LP(s)->cg : NULL;
  return json_pack("{s:o}", "cgroup", cg ? json_string(cg) : json_null());
}

const struct backend_ops local_backend = {
    .name = "local",
    .local_ports = true,
    .attach = local_attach,
    .detach = local_detach,
    .plan = local_plan,
    .start = local_start,
    .signal = local_signal,
    .resume = local_resume,
    .release = local_release,
    .busy = local_busy,
    .ready = local_ready,
    .describe = local_describe,
};
