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
#include "herd/prio.h"
#include "herd/spawner.h"
#include "herd/store.h"

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
  s->nhandles--;
  daemon_check_idle(s->d);
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
  int pid = p->pid;
  proc_drop(p);
  if (s->proc != p) return; /* an instance we already gave up on */
  s->proc = NULL;
  s->pid = 0;
  /* The leader is gone; anything left in its process group or its cgroup belongs to this
   * instance and must not outlive it (a straggler could hold the port the next instance
   * needs). Processes still in the cgroup when the main one is gone are the ones a plain
   * process group loses: children that called setsid or double-forked. */
  int first = 0, left = s->cg ? cg_count(s->cg, pid, &first) : 0;
  if (left > 0) cg_signal(s->cg, SIGKILL);
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
  struct svc_event ev = {.type = EV_EXIT, .code = term_signal ? -1 : code, .sig = term_signal, .msg = msg};
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
  service_feed(s, &ev);
}

static void on_exit_cb(uv_process_t *h, int64_t status, int term_signal) {
  instance_gone(h->data, (int)status, term_signal, NULL);
}

/* The state letter of /proc/PID/stat (after the last ')'), or 0 when there is no such process. */
/* Read /proc/PID/stat once: the state letter (field 3; 0 when there is no such process)
 * and the start time (field 22, clock ticks since boot). */
static char proc_stat(int pid, uint64_t *starttime) {
  char path[64], buf[1024];
  *starttime = 0;
  snprintf(path, sizeof path, "/proc/%d/stat", pid);
  int fd = open(path, O_RDONLY | O_CLOEXEC);
  ssize_t n = fd >= 0 ? read(fd, buf, sizeof buf - 1) : -1;
  if (fd >= 0) close(fd);
  if (n <= 0) return 0;
  buf[n] = '\0';
  /* comm (field 2) may hold spaces and parentheses: fields resume after the last ')'. */
  char *p = strrchr(buf, ')');
  if (!p || p[1] != ' ') return 0;
  char state = p[2];
  p++;
  for (int field = 3; field < 22 && p; field++) p = strchr(p + 1, ' ');
  if (p) *starttime = strtoull(p + 1, NULL, 10);
  return state;
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

void proc_release(struct service *s) {
  struct proc *p = s->proc;
  logpipe_detach(s); /* what is in the FIFO stays there for the next daemon */
  if (!p) return;
  s->proc = NULL;
  s->pid = 0;
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
  s->nhandles++;
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

int proc_adopt(struct service *s, int pid, uint64_t starttime) {
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
  s->proc = p;
  s->pid = pid;
  s->starttime = starttime;
  return 0;
}

/* Whether host:port can be bound now (a TIME_WAIT leftover does not count as busy). */
static bool port_free(const char *host, int port) {
  struct sockaddr_storage ss;
  if (addr_from_literal(host, port, &ss) < 0) uv_ip4_addr("0.0.0.0", port, (struct sockaddr_in *)&ss);
  int fd = socket(ss.ss_family, SOCK_STREAM | SOCK_CLOEXEC, 0);
  if (fd < 0) return false;
  int one = 1;
  setsockopt(fd, SOL_SOCKET, SO_REUSEADDR, &one, sizeof one);
  socklen_t len = ss.ss_family == AF_INET6 ? sizeof(struct sockaddr_in6) : sizeof(struct sockaddr_in);
  bool ok = bind(fd, (struct sockaddr *)&ss, len) == 0;
  close(fd);
  return ok;
}

/* Choose the instance's port as ZenML does: the configured one if free; if it is busy
 * (or none is configured) and allocation is allowed, the last run's port if free, else
 * a free one from the range. */
static int choose_port(struct service *s, char *err, size_t errlen) {
  const struct endpoint_spec *e = &s->spec->endpoint;
  s->port = 0;
  if (!e->set) return 0;
  /* Ports our other live instances hold: a port just handed out may not be bound yet. */
  static uint8_t taken[65536 / 8];
  memset(taken, 0, sizeof taken);
  struct list *pos, *tmp;
  list_for_each_safe(pos, tmp, &s->d->services) {
    struct service *x = container_of(pos, struct service, link);
    if (x != s && x->port > 0 && x->fsm.proc_alive) taken[x->port / 8] |= (uint8_t)(1u << (x->port % 8));
  }
#define TAKEN(p) (taken[(p) / 8] & (1u << ((p) % 8)))
  if (e->port && !TAKEN(e->port) && port_free(e->host, e->port)) {
    s->port = e->port;
    return 0;
  }
  if (!e->allocate) {
    snprintf(err, errlen, "port %d on %s is in use (set endpoint.allocate to take another)", e->port, e->host);
    return -EADDRINUSE;
  }
  if (s->last_port && s->last_port != e->port && !TAKEN(s->last_port) && port_free(e->host, s->last_port)) {
    s->port = s->last_port;
    return 0;
  }
  int span = e->range_hi - e->range_lo + 1;
  int start = (int)(now_mono() * 1000) % span;
  for (int i = 0; i < span; i++) {
    int p = e->range_lo + (start + i) % span;
    if (p != e->port && !TAKEN(p) && port_free(e->host, p)) {
      s->port = p;
      return 0;
    }
  }
#undef TAKEN
  snprintf(err, errlen, "no free port on %s in %d-%d", e->host, e->range_lo, e->range_hi);
  return -EADDRINUSE;
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

/* The instance runs: watch it, record it, say so. */
static void proc_started(struct service *s, struct proc *p, uint64_t starttime) {
  s->proc = p;
  s->pid = p->pid;
  s->starttime = starttime;
  s->started_wall = now_wall();
  s->started_mono = now_mono();
  store_instance_pid(s->d->store, s->instance, s->pid, s->starttime);
  if (s->port) {
    s->last_port = s->port;
    logpipe_note(s, "started pid %d (instance %lld, attempt %u, port %d)", s->pid, (long long)s->instance,
                 s->fsm.attempt, s->port);
  } else {
    logpipe_note(s, "started pid %d (instance %lld, attempt %u)", s->pid, (long long)s->instance, s->fsm.attempt);
  }
}

static void spawn_failed(struct service *s, const char *argv0, int rc, const char *why) {
  char err[256];
  if (why)
    snprintf(err, sizeof err, "%s", why);
  else
    snprintf(err, sizeof err, "cannot start %s: %s", argv0, uv_strerror(rc));
  logpipe_note(s, "%s", err);
  if (rc == UV_EMFILE || rc == UV_ENFILE) { /* the daemon's lack, not the service's */
    store_instance_end(s->d->store, s->instance, "PENDING", 0, 0, err, now_wall());
    service_event(s, EV_DEFERRED, 0, 0, err);
  } else
    service_event(s, EV_SPAWN_FAILED, -1, 0, err); /* records code -1: the instance is alive in the machine */
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
  s->spawning = NULL;
  s->nhandles--;
  bool closing = uv_is_closing((uv_handle_t *)&s->timer);
  struct proc *p = NULL;
  if (r->pid < 0) {
    logpipe_detach(s);
    if (closing)
      daemon_check_idle(s->d);
    else
      spawn_failed(s, r->args[0], r->pid, r->spawn_err);
  } else if (closing) {
    /* The daemon let go of its services while this spawn ran (it leaves them running for
     * the next daemon): record the process so that one re-adopts it. */
    store_instance_pid(s->d->store, s->instance, r->pid, r->starttime);
    daemon_check_idle(s->d);
  } else {
    proc_started(s, p = watch_child(s, r->pid), r->starttime);
    logpipe_read(s); /* its output, after the note that it started */
    if (r->cg_err) logpipe_note(s, "pid %d is not in cgroup %s: %s", r->pid, r->cg, strerror(r->cg_err));
    /* The state machine now counts STARTING's time, starts the checks, or sends the stop
     * asked for while the spawn ran. */
    service_event(s, EV_STARTED, 0, 0, NULL);
    /* It may have ended before it was in the table: its SIGCHLD found no owner then. */
    int st;
    if (s->proc == p && waitpid(p->pid, &st, WNOHANG) == p->pid) reaped(p, st);
  }
  strv_free(r->args);
  env_free(r->env, r->nborrowed);
  free(r->cwd);
  free(r->fifo);
  free(r->cg);
  free(r->spawn_err);
  free(r);
}

int proc_spawn(struct service *s, char *err, size_t errlen) {
  struct daemon *d = s->d;
  struct spec *sp = s->spec;
  int prc = choose_port(s, err, errlen);
  if (prc < 0) {
    /* The attempt is an instance of its own, ended by this failure. */
    s->instance = store_instance_start(d->store, sp->name, s->fsm.attempt, 0, 0, now_wall(), NULL, 0);
    logpipe_note(s, "%s", err);
    return prc;
  }
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
      s->instance = store_instance_start(d->store, sp->name, s->fsm.attempt, 0, 0, now_wall(), NULL, 0);
    }
    logpipe_note(s, "%s", err);
    return lrc;
  }
  /* Environment: herd's own, then the spec's, then herd's identity variables. Entries of
   * herd's own environment are borrowed (the daemon never changes it); the rest are owned
   * by the arrays, from env[nborrowed] on: a spawn on a spawner thread outlives this call. */
  size_t nenv = 0, nspec = 0, nargs = 0;
  while (environ[nenv]) nenv++;
  while (sp->env && sp->env[nspec]) nspec++;
  while (sp->argv[nargs]) nargs++;
  char **args = xcalloc(nargs + 1, sizeof *args), **env = xcalloc(nenv + nspec + 6, sizeof *env);
  for (size_t j = 0; j < nargs; j++) args[j] = subst_port(sp->argv[j], s->port);
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
  /* The instance exists from here on (its events name it); its pid follows. Its identity
   * goes with the process from birth (ident.h): a daemon that dies before recording the
   * pid does not lose it. */
  char *cmdline = join_argv(args); /* as /proc/PID/cmdline will read: the proof of identity later */
  s->started_wall = now_wall();
  s->started_mono = now_mono();
  s->instance = store_instance_start(d->store, sp->name, s->fsm.attempt, 0, 0, s->started_wall, cmdline, s->port);
  free(cmdline);
  env[k++] = ident_env(d->herd_id, s->instance);
  env[k++] = xasprintf("HERD_SERVICE=%s", sp->name);
  env[k++] = xasprintf("HERD_ATTEMPT=%u", s->fsm.attempt);
  if (s->port) {
    if (!user_port) env[k++] = xasprintf("PORT=%d", s->port);
    env[k++] = xasprintf("HERD_PORT=%d", s->port);
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
    r->cg = s->cg ? xstrdup(s->cg) : NULL;
    r->job.work = spawn_work;
    r->job.done = spawn_done;
    spawner_submit(d->spawner, &r->job);
    s->spawning = r;
    s->nhandles++; /* the service lives until the spawn has come back */
    return 0;
  }

  int fd = logpipe_child_fd(s->fifo_path);
  if (fd < 0) {
    snprintf(err, errlen, "cannot open log pipe: %s", strerror(-fd));
    logpipe_note(s, "%s", err);
    strv_free(args);
    env_free(env, nborrowed);
    logpipe_detach(s);
    return fd;
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
  s->nhandles++;
  if (rc < 0) {
    snprintf(err, errlen, "cannot start %s: %s", sp->argv[0], uv_strerror(rc));
    /* A failed uv_spawn still initialised the handle: it must be closed. */
    uv_close((uv_handle_t *)&p->h, on_proc_close);
    logpipe_note(s, "%s", err);
    logpipe_detach(s);
    strv_free(args);
    return rc;
  }
  strv_free(args);
  p->pid = p->h.child.pid;
  proc_started(s, p, proc_starttime(p->pid));
  logpipe_read(s);
  if (s->cg && (rc = into_cgroup(s->cg, p->pid)) < 0)
    logpipe_note(s, "pid %d is not in cgroup %s: %s", p->pid, s->cg, strerror(-rc));
  return 0;
}

void proc_signal(struct service *s, int sig) {
  if (s->pid <= 0) return;
  /* The cgroup holds the process group and whatever left it (setsid, double fork): one
   * signal each. Without one (or before the spawn moved the process in), the group. */
  if (s->cg && cg_signal(s->cg, sig) > 0) return;
  if (kill(-s->pid, sig) < 0 && errno == ESRCH) kill(s->pid, sig);
}

uint64_t proc_starttime(int pid) {
  uint64_t st;
  proc_stat(pid, &st);
  return st;
}
