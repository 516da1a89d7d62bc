/* ssh hosts and tunnels (see tunnel.h). */
#include "herd/tunnel.h"

#include "herd/loop.h"
#include "herd/log.h"
#include "herd/run.h"
#include "herd/sshmux.h"
#include "herd/store.h"

#include <errno.h>
#include <fcntl.h>
#include <math.h>
#include <signal.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <sys/stat.h>
#include <sys/syscall.h>
#include <unistd.h>

#define CHECK_EVERY 0.01   /* while connecting: look for the control socket this often */
#define CONNECT_SLACK 5.0  /* connect_timeout plus this, then the attempt is abandoned */
#define BACKOFF_MAX 60.0   /* reconnects back off up to this */
#define BACKOFF_HARD 30.0  /* at least this after an error retrying cannot fix (host key, auth) */
#define STEADY_AFTER 30.0  /* up this long: the backoff starts over */
#define FWD_RETRY_MAX 60.0 /* a refused forward (local port taken) is retried up to this apart */
#define STAGGER 0.1        /* hosts start this far apart (sshd's MaxStartups) */
#define MUX_RETRY 0.5      /* a control connection lost while the master runs: opened again after */
#define SOCK_MAX 90        /* longer control paths make ssh fail (sockaddr_un and its suffix) */

enum host_state { H_DOWN, H_CONNECTING, H_UP, H_BACKOFF, H_STOPPING, H__MAX };
static const char *const host_state_names[] = {[H_DOWN] = "down",
                                               [H_CONNECTING] = "connecting",
                                               [H_UP] = "up",
                                               [H_BACKOFF] = "backoff",
                                               [H_STOPPING] = "stopping"};
static_assert(sizeof host_state_names / sizeof host_state_names[0] == H__MAX, "host state names");

enum fwd_state { F_WANTED, F_ADDING, F_UP, F_FAILED, F_CANCELLING, F__MAX };
static const char *const fwd_state_names[] = {
    [F_WANTED] = "wanted", [F_ADDING] = "adding", [F_UP] = "up", [F_FAILED] = "failed", [F_CANCELLING] = "cancelling"};
static_assert(sizeof fwd_state_names / sizeof fwd_state_names[0] == F__MAX, "forward state names");

struct host;

/* One local forward of a host's master: 127.0.0.1:lport -> target:rport (as the host sees it). */
struct fwd {
  struct list link; /* in the host's forwards */
  struct host *h;
  struct service *s; /* NULL once the service let go (a cancel may still be on its way) */
  char name[128];    /* the service's, for messages */
  int lport, rport;
  char target[128];
  enum fwd_state state;
  bool gone;         /* let go: freed once no request about it is in flight */
  unsigned inflight; /* requests about it the master has not answered yet */
  bool lost_posted;  /* the service was told the host was lost: tell it when the forward is back */
  bool stale;        /* an earlier daemon's, still in a re-adopted master, pointing elsewhere: cancelled */
  unsigned fails;
  double retry_at; /* F_FAILED: when to try again (monotonic) */
  char error[200];
};

struct host {
  struct host_spec *spec;
  struct daemon *d;
  struct list link;
  enum host_state state;
  char reason[256];     /* why it is in its state */
  char last_error[256]; /* the last failure, kept while up again */
  uv_process_t master;  /* the master, when it is our child */
  uv_poll_t adopted_fd; /* ...or its pidfd, when an earlier daemon started it (re-adopted) */
  int pidfd;
  bool adopted;
  bool master_running; /* its exit has not been seen */
  int pid;
  uint64_t starttime;
  uv_timer_t timer; /* connect polling, backoff, forward retries */
  int nhandles;
  bool closing, leaving;
  struct sshmux *mux;  /* the control connection to the master (OpenSSH's mux protocol) */
  double mux_retry_at; /* lost while the master runs: opened again then */
  bool checking;       /* an alive check is in flight (connecting: is the master ours and up?) */
  bool hard_failure;   /* the last attempt failed in a way retrying soon cannot fix */
  bool ever_up;
  unsigned fails, reconnects;
  double since, up_since, connect_deadline, next_at;
  char *sock, *log_path;
  off_t log_off;     /* where the current master's stderr begins in the log */
  char meta_key[96]; /* "ssh_master:NAME" in the store: "pid starttime" of the running master */
  struct list fwds;
  uint64_t forwards_added, forwards_failed;
};

static struct list *hosts_of(struct daemon *d) { return &d->hosts; }

static struct host *host_named(struct daemon *d, const char *name) {
  struct list *pos, *tmp;
  list_for_each_safe(pos, tmp, hosts_of(d)) {
    struct host *h = container_of(pos, struct host, link);
    if (!strcmp(h->spec->name, name)) return h;
  }
  return NULL;
}

static void host_connect(struct host *h);
static void host_adopt(struct host *h);
static void host_pump(struct host *h);
static void host_schedule(struct host *h);

static double jitter(double d) { return d * (0.8 + 0.2 * ((double)rand() / RAND_MAX)); }

static void host_set_state(struct host *h, enum host_state to, const char *fmt, ...)
    __attribute__((format(printf, 3, 4)));
static void host_set_state(struct host *h, enum host_state to, const char *fmt, ...) {
  enum host_state from = h->state;
  va_list ap;
  va_start(ap, fmt);
  vsnprintf(h->reason, sizeof h->reason, fmt, ap);
  va_end(ap);
  h->state = to;
  h->since = now_mono();
  if (from == to) return;
  char who[80], tr[48];
  snprintf(who, sizeof who, "host:%s", h->spec->name);
  snprintf(tr, sizeof tr, "%s -> %s", host_state_names[from], host_state_names[to]);
  log_msg(to == H_BACKOFF ? LOG_WARN : LOG_INFO, who, NULL, tr, "%s", h->reason);
  /* In the event log with the services' transitions (`herd events`). */
  store_event_add(h->d->store, now_wall(), who, 0, host_state_names[from], host_state_names[to], h->reason);
}

/* ---- the ssh command line ---- */

struct argv {
  char **v;
  size_t n, cap;
};

static void av_add(struct argv *a, char *s) {
  if (a->n + 2 > a->cap) a->v = xrealloc(a->v, (a->cap = a->cap ? a->cap * 2 : 32) * sizeof *a->v);
  a->v[a->n++] = s;
  a->v[a->n] = NULL;
}

static void av_free(struct argv *a) {
  for (size_t i = 0; i < a->n; i++) free(a->v[i]);
  free(a->v);
}

/* The options every ssh of this host gets (master and control commands alike). */
static void common_args(struct host *h, struct argv *a) {
  const struct host_spec *k = h->spec;
  av_add(a, xstrdup("ssh"));
  av_add(a, xstrdup("-F"));
  av_add(a, xstrdup("/dev/null")); /* the host's settings are herd's config, not ~/.ssh/config */
  av_add(a, xstrdup("-S"));
  av_add(a, xstrdup(h->sock));
  static const char *const fixed[] = {
      "BatchMode=yes",     "ExitOnForwardFailure=yes",       "StrictHostKeyChecking=yes",
      "ControlPersist=no", "GlobalKnownHostsFile=/dev/null", "LogLevel=ERROR"};
  for (size_t i = 0; i < sizeof fixed / sizeof fixed[0]; i++) {
    av_add(a, xstrdup("-o"));
    av_add(a, xstrdup(fixed[i]));
  }
  av_add(a, xstrdup("-o"));
  av_add(a, xasprintf("UserKnownHostsFile=%s", k->known_hosts));
  av_add(a, xstrdup("-o"));
  av_add(a, xasprintf("ServerAliveInterval=%d", (int)ceil(k->alive_interval)));
  av_add(a, xstrdup("-o"));
  av_add(a, xasprintf("ServerAliveCountMax=%d", k->alive_count));
  av_add(a, xstrdup("-o"));
  av_add(a, xasprintf("ConnectTimeout=%d", (int)ceil(k->connect_timeout)));
  if (k->host_key_alias) {
    av_add(a, xstrdup("-o"));
    av_add(a, xasprintf("HostKeyAlias=%s", k->host_key_alias));
  }
  if (k->identity_agent) {
    av_add(a, xstrdup("-o"));
    av_add(a, xasprintf("IdentityAgent=%s", k->identity_agent));
  }
  if (k->identity_file) { /* that key alone (without one: each key of the agent) */
    av_add(a, xstrdup("-o"));
    av_add(a, xstrdup("IdentitiesOnly=yes"));
    av_add(a, xstrdup("-i"));
    av_add(a, xstrdup(k->identity_file));
  }
  if (k->proxy_jump) {
    av_add(a, xstrdup("-J"));
    av_add(a, xstrdup(k->proxy_jump));
  }
  if (k->port) {
    av_add(a, xstrdup("-p"));
    av_add(a, xasprintf("%d", k->port));
  }
  for (char **o = k->options; o && *o; o++) {
    av_add(a, xstrdup("-o"));
    av_add(a, xstrdup(*o));
  }
}

/* ---- the control connection (what `ssh -O forward / cancel / check` would say) ---- */

static void fwd_answered(struct host *h, struct fwd *f, int status, const char *msg);
static void fwd_record(struct fwd *f, bool up);
static void fwd_free(struct fwd *f);

static void on_mux_dead(void *arg, const char *why) {
  struct host *h = arg;
  sshmux_close(h->mux);
  h->mux = NULL;
  h->checking = false;
  if (h->state != H_UP || h->closing) return; /* (connecting: the next tick tries again) */
  log_warn("ssh host %s: control connection to master pid %d lost (%s); opening it again", h->spec->name, h->pid, why);
  h->mux_retry_at = now_mono() + MUX_RETRY;
  host_schedule(h);
}

/* The control connection, opened when there is none (and it may be). */
static bool mux_ready(struct host *h) {
  if (sshmux_ok(h->mux)) return true;
  if (h->mux || now_mono() < h->mux_retry_at) return false; /* (a failed one is closed by on_mux_dead) */
  h->mux = sshmux_open(h->d->loop, h->sock, on_mux_dead, h);
  return sshmux_ok(h->mux);
}

static void fwd_maybe_free(struct fwd *f) {
  if (f->gone && !f->inflight) fwd_free(f);
}

static void on_added(void *arg, int status, uint32_t value, const char *msg) {
  struct fwd *f = arg;
  struct host *h = f->h;
  (void)value;
  f->inflight--;
  if (f->gone) { /* let go meanwhile: its cancel went right behind the add */
    fwd_maybe_free(f);
    return;
  }
  fwd_answered(h, f, status, msg);
  host_pump(h);
  host_schedule(h);
}

static void on_cancelled(void *arg, int status, uint32_t value, const char *msg) {
  struct fwd *f = arg;
  (void)value;
  f->inflight--;
  if (status == 0 || f->stale) fwd_record(f, false);
  if (status == SSHMUX_REFUSED && !f->stale)
    log_msg(LOG_DEBUG, f->name, NULL, NULL, "ssh host %s: cancelling the forward of local port %d: %s",
            f->h->spec->name, f->lport, msg);
  f->gone = true;
  fwd_maybe_free(f);
}

/* Ask the master to add (open) or cancel forward f. In order with every other request on
 * the connection: a cancel and then a forward of the same port re-point it at once. */
static bool fwd_request(struct host *h, struct fwd *f, bool open) {
  if (h->state != H_UP || !mux_ready(h)) return false;
  if (!sshmux_forward(h->mux, open, "127.0.0.1", f->lport, f->target, f->rport, open ? on_added : on_cancelled, f))
    return false;
  f->inflight++;
  return true;
}

/* Cancel forward f (the service let go of it): it is freed once the master answers. */
static void fwd_cancel(struct host *h, struct fwd *f) {
  if ((f->state == F_UP || f->state == F_ADDING) && fwd_request(h, f, false)) {
    f->state = F_CANCELLING;
    f->gone = true;
    return;
  }
  f->gone = true;
  fwd_maybe_free(f);
}

static void fwd_free(struct fwd *f) {
  list_del(&f->link);
  free(f);
}

/* What each local port forwards to is kept in the store, so that the next daemon, re-adopting
 * a master (a kill -9 leaves it and its forwards up), knows what to take down before it
 * points the port elsewhere (a job that moved): "target rport", or "" for none. */
static void fwd_record(struct fwd *f, bool up) {
  char key[200], val[160] = "";
  snprintf(key, sizeof key, "fwd:%s:%d", f->h->spec->name, f->lport);
  if (up) snprintf(val, sizeof val, "%s %d", f->target, f->rport);
  store_meta_put(f->h->d->store, key, val);
}

/* Before forwarding lport through a re-adopted master: the earlier daemon's forward of it, if
 * it points elsewhere, goes first (ssh refuses a second forward of a port). */
static void fwd_stale_check(struct host *h, int lport, const char *target, int rport) {
  if (!h->adopted || !lport) return;
  struct list *pos, *tmp;
  list_for_each_safe(pos, tmp, &h->fwds) {
    struct fwd *x = container_of(pos, struct fwd, link);
    if (x->lport == lport && (x->stale || x->state == F_UP || x->state == F_CANCELLING)) return;
  }
  char key[200], old[128];
  int oport;
  snprintf(key, sizeof key, "fwd:%s:%d", h->spec->name, lport);
  char *v = store_meta_get(h->d->store, key);
  bool differs = v && sscanf(v, "%127s %d", old, &oport) == 2 && (strcmp(old, target) || oport != rport);
  free(v);
  if (!differs) return;
  struct fwd *g = xcalloc(1, sizeof *g);
  g->h = h;
  g->stale = true;
  g->lport = lport;
  g->rport = oport;
  snprintf(g->target, sizeof g->target, "%s", old);
  snprintf(g->name, sizeof g->name, "(earlier daemon's forward of port %d)", lport);
  g->state = F_UP;
  list_add_tail(h->fwds.next, &g->link); /* first: host_pump cancels it before anything adds the port */
  log_info("ssh host %s: local port %d still forwarded to %s:%d by the re-adopted master: cancelling it first",
           h->spec->name, lport, old, oport);
}

/* Tell the service (through the runner) about its endpoint: only what changes its state. */
static void post(struct fwd *f, svc_event_type type, const char *msg) {
  if (f->s) run_post_event(f->s, type, 0, 0, msg);
}

static void host_up(struct host *h) {
  h->up_since = now_mono();
  if (h->ever_up) h->reconnects++; /* (the first connection is not a reconnect) */
  h->ever_up = true;
  host_set_state(h, H_UP, "master pid %d connected to %s", h->pid, h->spec->destination);
  char val[64];
  snprintf(val, sizeof val, "%d %llu", h->pid, (unsigned long long)h->starttime);
  store_meta_put(h->d->store, h->meta_key, val); /* for the next daemon, should this one die */
  /* Every forward again: the master starts with none (an adopted one keeps its own, and
   * adding one it has is answered ok). */
  struct list *pos, *tmp;
  list_for_each_safe(pos, tmp, &h->fwds) {
    struct fwd *x = container_of(pos, struct fwd, link);
    if (x->state != F_CANCELLING && !x->stale) x->state = F_WANTED, x->retry_at = 0;
  }
  host_pump(h);
}

/* The answer to adding forward f: status 0, SSHMUX_REFUSED or < 0 (connection lost). */
static void fwd_answered(struct host *h, struct fwd *f, int status, const char *msg) {
  if (status == 0) {
    f->state = F_UP;
    f->fails = 0;
    f->error[0] = '\0';
    h->forwards_added++;
    fwd_record(f, true);
    if (f->s)
      logpipe_note(f->s, "endpoint 127.0.0.1:%d -> %s:%d through ssh host %s", f->lport, f->target, f->rport,
                   h->spec->name);
    if (f->lost_posted) {
      f->lost_posted = false;
      char m[200];
      snprintf(m, sizeof m, "ssh host %s back: endpoint 127.0.0.1:%d forwarded again", h->spec->name, f->lport);
      post(f, EV_RUNNING, m);
    }
  } else if (status == SSHMUX_REFUSED && h->state == H_UP) {
    /* The master is up but refused it: the local port is taken (or the target is
     * refused by the server's policy). Retried, slowly, without a storm. */
    f->state = F_FAILED;
    f->fails++;
    h->forwards_failed++;
    f->retry_at = now_mono() + jitter(fmin(2.0 * pow(2, f->fails - 1), FWD_RETRY_MAX));
    snprintf(f->error, sizeof f->error, "forward of local port %d refused: %.120s (is the port taken?)", f->lport, msg);
    if (f->s) logpipe_note(f->s, "%s; trying again in %.0fs", f->error, f->retry_at - now_mono());
    log_msg(LOG_WARN, f->name, NULL, NULL, "ssh host %s: %s", h->spec->name, f->error);
  } else {
    f->state = F_WANTED; /* the master (or the connection to it) went away: added again later */
  }
}

/* ---- forwards ---- */

/* Add what is wanted, once the master is up. Every request is sent at once, in order: an
 * earlier daemon's forward in the way is cancelled before anything adds its port. */
static void host_pump(struct host *h) {
  if (h->state != H_UP || h->closing) return;
  double now = now_mono();
  struct list *pos, *tmp;
  list_for_each_safe(pos, tmp, &h->fwds) {
    struct fwd *f = container_of(pos, struct fwd, link);
    if (f->stale && !f->inflight && f->state == F_UP && fwd_request(h, f, false)) f->state = F_CANCELLING;
  }
  list_for_each_safe(pos, tmp, &h->fwds) {
    struct fwd *f = container_of(pos, struct fwd, link);
    if (f->gone || f->inflight || f->stale) continue;
    if (f->state == F_FAILED && f->retry_at <= now) f->state = F_WANTED;
    if (f->state == F_WANTED && fwd_request(h, f, true)) f->state = F_ADDING;
  }
}

/* ---- the master ---- */

static void on_host_timer(uv_timer_t *t);

static void host_schedule(struct host *h) {
  if (h->closing) return;
  double at = INFINITY;
  if (h->state == H_CONNECTING) at = now_mono() + CHECK_EVERY;
  if (h->state == H_BACKOFF || h->state == H_DOWN) at = h->next_at;
  if (h->state == H_UP) {
    if (!h->mux) at = h->mux_retry_at;
    struct list *pos, *tmp;
    list_for_each_safe(pos, tmp, &h->fwds) {
      struct fwd *f = container_of(pos, struct fwd, link);
      if (f->state == F_FAILED && !f->gone && f->retry_at < at) at = f->retry_at;
    }
  }
  if (isinf(at)) {
    uv_timer_stop(&h->timer);
    return;
  }
  timer_arm(h->d->loop, &h->timer, on_host_timer, at);
}

/* The last line ssh wrote to the host's log: why the master failed. */
static void last_log_line(struct host *h, char *out, size_t len) {
  out[0] = '\0';
  int fd = open(h->log_path, O_RDONLY | O_CLOEXEC);
  if (fd < 0) return;
  char buf[2048];
  off_t end = lseek(fd, 0, SEEK_END), start = end > (off_t)sizeof buf - 1 ? end - (off_t)sizeof buf + 1 : 0;
  if (start < h->log_off) start = h->log_off; /* this master's own words only */
  ssize_t n = pread(fd, buf, sizeof buf - 1, start);
  close(fd);
  if (n <= 0) return;
  buf[n] = '\0';
  while (n && (buf[n - 1] == '\n' || buf[n - 1] == '\r')) buf[--n] = '\0';
  const char *p = strrchr(buf, '\n');
  p = p ? p + 1 : buf;
  if (strstr(buf, "IDENTIFICATION HAS CHANGED"))
    /* The last line only says "Host key verification failed."; the warning above it is
     * what the user must know. */
    snprintf(out, len,
             "host key mismatch: the key of %s is not the one in %s (REMOTE HOST IDENTIFICATION HAS "
             "CHANGED): %.80s",
             h->spec->destination, h->spec->known_hosts, p);
  else
    snprintf(out, len, "%.200s", p);
  utf8_sanitize(out);
}

/* Errors a reconnect in a second will not fix. */
static bool hard_error(const char *e) {
  return strstr(e, "IDENTIFICATION HAS CHANGED") || strstr(e, "Host key verification failed") ||
         strstr(e, "Permission denied") || strstr(e, "No such file or directory") || strstr(e, "Bad ") ||
         strstr(e, "too long for Unix domain socket");
}

static void on_master_close(uv_handle_t *hd) {
  struct host *h = hd->data;
  if (hd == (uv_handle_t *)&h->adopted_fd && h->pidfd >= 0) {
    close(h->pidfd);
    h->pidfd = -1;
  }
  h->nhandles--;
}

static void host_lost(struct host *h, const char *why) {
  struct list *pos, *tmp;
  char msg[320];
  snprintf(msg, sizeof msg, "ssh host %s lost: %s", h->spec->name, why);
  list_for_each_safe(pos, tmp, &h->fwds) {
    struct fwd *f = container_of(pos, struct fwd, link);
    bool was = f->state == F_UP;
    f->state = F_WANTED;
    if (was && f->s && !f->lost_posted) {
      f->lost_posted = true;
      post(f, EV_LOST, msg);
    }
  }
}

static void forget_master(struct host *h) { store_meta_put(h->d->store, h->meta_key, ""); }

static void master_gone(struct host *h, int64_t status, int sig) {
  h->master_running = false;
  sshmux_close(h->mux); /* what was asked of the master went with it */
  h->mux = NULL;
  h->checking = false;
  struct list *pos, *tmp;
  list_for_each_safe(pos, tmp, &h->fwds) {
    struct fwd *f = container_of(pos, struct fwd, link);
    f->inflight = 0;
    if (f->gone || f->stale) fwd_free(f); /* its master is gone, and the forward with it */
  }
  int pid = h->pid;
  h->pid = 0;
  if (h->adopted) {
    uv_close((uv_handle_t *)&h->adopted_fd, on_master_close);
    h->adopted = false;
  } else {
    uv_close((uv_handle_t *)&h->master, on_master_close);
  }
  forget_master(h);
  unlink(h->sock);
  if (h->closing) return;
  char why[256];
  last_log_line(h, why, sizeof why);
  if (h->state == H_STOPPING) {
    host_set_state(h, H_DOWN, "stopped");
    return;
  }
  if (!why[0]) snprintf(why, sizeof why, "ssh exited with %s %d", sig ? "signal" : "status", sig ? sig : (int)status);
  bool was_up = h->state == H_UP;
  if (was_up && now_mono() - h->up_since >= STEADY_AFTER) h->fails = 0;
  h->fails++;
  h->hard_failure = hard_error(why);
  snprintf(h->last_error, sizeof h->last_error, "%s", why);
  double delay = jitter(fmin(1.0 * pow(2, h->fails - 1), BACKOFF_MAX));
  if (h->hard_failure && delay < BACKOFF_HARD) delay = jitter(BACKOFF_HARD);
  h->next_at = now_mono() + delay;
  host_set_state(h, H_BACKOFF, "%s master (pid %d) %s: %s; reconnecting in %.1fs",
                 was_up ? "lost:" : "cannot connect:", pid, was_up ? "exited" : "failed", why, delay);
  host_lost(h, why);
  host_schedule(h);
}

static void on_master_exit(uv_process_t *p, int64_t status, int sig) { master_gone(p->data, status, sig); }

static void on_adopted_exit(uv_poll_t *p, int status, int events) {
  uv_poll_stop(p);
  master_gone(p->data, -1, 0);
}

static void host_connect(struct host *h) {
  unlink(h->sock); /* a stale socket makes a new master run without multiplexing */
  struct argv a = {0};
  common_args(h, &a);
  av_add(&a, xstrdup("-N"));
  av_add(&a, xstrdup("-M"));
  av_add(&a, xstrdup(h->spec->destination));
  int fd = open(h->log_path, O_WRONLY | O_APPEND | O_CREAT | O_CLOEXEC, 0600);
  h->log_off = fd >= 0 ? lseek(fd, 0, SEEK_END) : 0;
  uv_stdio_container_t io[3] = {
      {.flags = UV_IGNORE}, {.flags = UV_IGNORE}, {.flags = fd >= 0 ? UV_INHERIT_FD : UV_IGNORE, .data.fd = fd}};
  /* Its own session: the master (and every forward on it) outlives a daemon killed with
   * kill -9, for the next one to find. */
  uv_process_options_t o = {.exit_cb = on_master_exit,
                            .file = a.v[0],
                            .args = a.v,
                            .flags = UV_PROCESS_DETACHED,
                            .stdio_count = 3,
                            .stdio = io};
  h->master.data = h;
  int rc = uv_spawn(h->d->loop, &h->master, &o);
  if (fd >= 0) close(fd);
  av_free(&a);
  h->nhandles++;
  if (rc < 0) {
    uv_close((uv_handle_t *)&h->master, on_master_close);
    h->fails++;
    h->next_at = now_mono() + jitter(fmin(pow(2, h->fails), BACKOFF_MAX));
    snprintf(h->last_error, sizeof h->last_error, "cannot run ssh: %s", uv_strerror(rc));
    host_set_state(h, H_BACKOFF, "%s", h->last_error);
    host_schedule(h);
    return;
  }
  h->master_running = true;
  h->pid = h->master.pid;
  h->starttime = proc_starttime(h->pid);
  h->connect_deadline = now_mono() + h->spec->connect_timeout + CONNECT_SLACK;
  host_set_state(h, H_CONNECTING, "master pid %d connecting to %s", h->pid, h->spec->destination);
  host_schedule(h);
}

static void on_alive(void *arg, int status, uint32_t pid, const char *msg) {
  struct host *h = arg;
  h->checking = false;
  if (status != 0 || h->state != H_CONNECTING || !h->master_running) return; /* (tried again next tick) */
  if ((int)pid == h->pid) {
    host_up(h);
    return;
  }
  /* Not ours (a socket left behind?): this master is given up at its deadline. */
  log_warn("ssh host %s: control socket %s answered by pid %u, not master pid %d (%s)", h->spec->name, h->sock,
           (unsigned)pid, h->pid, msg);
}

static void on_host_timer(uv_timer_t *t) {
  struct host *h = t->data;
  if (h->closing) return;
  switch (h->state) {
  case H_CONNECTING:
    if (now_mono() > h->connect_deadline && h->master_running) {
      snprintf(h->last_error, sizeof h->last_error, "not connected within %.0fs", h->connect_deadline - h->since);
      kill(h->pid, SIGTERM); /* its exit moves the host to BACKOFF */
      return;
    }
    /* ssh binds the control socket only once the connection is up and authenticated, so
     * an answer on it means ready (and, by its pid, that it is this host's master). */
    if (h->master_running && !h->checking && mux_ready(h) && sshmux_alive(h->mux, on_alive, h)) h->checking = true;
    host_schedule(h);
    break;
  case H_BACKOFF:
  case H_DOWN:
    if (!h->master_running) host_connect(h);
    break;
  case H_UP:
    host_pump(h);
    host_schedule(h);
    break;
  default: break;
  }
}

static void on_host_handle_close(uv_handle_t *hd) { ((struct host *)hd->data)->nhandles--; }

/* Whether pid is an ssh master on this control socket started at starttime. */
static bool is_our_master(int pid, uint64_t starttime, const char *sock) {
  if (pid <= 0 || proc_starttime(pid) != starttime) return false;
  char path[64], buf[4096];
  snprintf(path, sizeof path, "/proc/%d/cmdline", pid);
  int fd = open(path, O_RDONLY | O_CLOEXEC);
  if (fd < 0) return false;
  ssize_t n = read(fd, buf, sizeof buf - 1);
  close(fd);
  if (n <= 0) return false;
  buf[n] = '\0';
  bool s_next = false, sock_ok = false, master = false;
  for (char *a = buf; a < buf + n; a += strlen(a) + 1) {
    if (s_next) sock_ok = !strcmp(a, sock);
    s_next = !strcmp(a, "-S");
    master |= !strcmp(a, "-M");
  }
  return sock_ok && master;
}

/* A master an earlier daemon started (herd was killed, or left it running) is kept with
 * its forwards: the connections through them go on. It must be the same process (pid and
 * start time), on this host's control socket; an alive check on it then proves it answers. */
static void host_adopt(struct host *h) {
  char *v = store_meta_get(h->d->store, h->meta_key);
  int pid = 0;
  unsigned long long st = 0;
  if (!v || sscanf(v, "%d %llu", &pid, &st) != 2 || pid <= 0) {
    free(v);
    return;
  }
  free(v);
  if (!is_our_master(pid, st, h->sock)) {
    forget_master(h);
    return;
  }
  int fd = (int)syscall(SYS_pidfd_open, pid, 0);
  if (fd < 0) { /* no pidfd: cannot watch it; start afresh */
    kill(pid, SIGTERM);
    forget_master(h);
    return;
  }
  h->pidfd = fd;
  uv_poll_init(h->d->loop, &h->adopted_fd, fd);
  h->adopted_fd.data = h;
  uv_poll_start(&h->adopted_fd, UV_READABLE, on_adopted_exit);
  h->nhandles++;
  h->adopted = true;
  h->master_running = true;
  h->pid = pid;
  h->starttime = st;
  h->ever_up = true;
  h->connect_deadline = now_mono() + CONNECT_SLACK;
  host_set_state(h, H_CONNECTING, "re-adopting master pid %d (started by an earlier daemon)", pid);
}

static char *control_path(struct daemon *d, const char *name) {
  char *p = xasprintf("%s/h-%s.sock", d->run_dir, name);
  if (strlen(p) < SOCK_MAX - 20) return p; /* ssh adds a temporary suffix while binding */
  free(p);
  /* A long state dir: a short private directory of this herd's own. */
  char *dir = xasprintf("/tmp/herd-%s", d->herd_id);
  if (mkdir(dir, 0700) < 0 && errno != EEXIST) log_warn("cannot make %s: %s", dir, strerror(errno));
  p = xasprintf("%s/h-%s.sock", dir, name);
  free(dir);
  return p;
}

static struct host *host_new(struct daemon *d, struct host_spec *k, double start_at) {
  struct host *h = xcalloc(1, sizeof *h);
  h->d = d;
  h->spec = k;
  list_init(&h->fwds);
  h->sock = control_path(d, k->name);
  h->log_path = xasprintf("%s/host-%s.log", d->log_dir, k->name);
  uv_timer_init(d->loop, &h->timer);
  h->timer.data = h;
  h->nhandles = 1;
  h->state = H_DOWN;
  snprintf(h->reason, sizeof h->reason, "not started yet");
  h->next_at = start_at;
  h->pidfd = -1;
  snprintf(h->meta_key, sizeof h->meta_key, "ssh_master:%s", k->name);
  list_add_tail(hosts_of(d), &h->link);
  host_adopt(h);
  host_schedule(h);
  return h;
}

/* Hosts on the same server start STAGGER apart (its MaxStartups); different servers at once. */
static double stagger(struct host_spec **specs, size_t i) {
  size_t k = 0;
  for (size_t j = 0; j < i; j++)
    k += !strcmp(specs[j]->destination, specs[i]->destination) && specs[j]->port == specs[i]->port;
  return STAGGER * (double)k;
}

void tunnel_init(struct daemon *d, struct host_spec **specs, size_t n) {
  double now = now_mono();
  for (size_t i = 0; i < n; i++) host_new(d, specs[i], now + stagger(specs, i));
  free(specs);
}

static bool spec_same(const struct host_spec *a, const struct host_spec *b) {
  bool same = !strcmp(a->destination, b->destination) && a->port == b->port &&
              !strcmp(a->known_hosts, b->known_hosts) && a->alive_interval == b->alive_interval &&
              a->alive_count == b->alive_count && a->connect_timeout == b->connect_timeout;
#define SAME_STR(x) ((!a->x && !b->x) || (a->x && b->x && !strcmp(a->x, b->x)))
  same =
      same && SAME_STR(identity_file) && SAME_STR(identity_agent) && SAME_STR(host_key_alias) && SAME_STR(proxy_jump);
#undef SAME_STR
  size_t i = 0;
  for (; same && a->options && b->options && a->options[i] && b->options[i]; i++)
    same = !strcmp(a->options[i], b->options[i]);
  return same && (a->options ? a->options[i] : NULL) == (b->options ? b->options[i] : NULL);
}

static void host_stop(struct host *h) {
  if (h->master_running) {
    host_set_state(h, H_STOPPING, "stopping");
    kill(h->pid, SIGTERM); /* up: exits 0 at once; connecting: killed by the signal */
  }
}

void tunnel_reload(struct daemon *d, struct host_spec **specs, size_t n) {
  struct list *pos, *tmp;
  double now = now_mono();
  for (size_t i = 0; i < n; i++) {
    struct host *h = host_named(d, specs[i]->name);
    if (!h) {
      host_new(d, specs[i], now + stagger(specs, i));
    } else if (spec_same(h->spec, specs[i])) {
      free(h->spec->source);
      h->spec->source = xstrdup(specs[i]->source);
      host_spec_free(specs[i]);
      specs[i] = h->spec; /* (named below: the hosts kept) */
    } else {              /* changed: the next master uses the new spec */
      host_spec_free(h->spec);
      h->spec = specs[i];
      h->fails = 0;
      h->next_at = now;
      if (h->master_running)
        kill(h->pid, SIGTERM); /* its exit (lost: services UNKNOWN a moment) reconnects */
      else
        host_schedule(h);
    }
  }
  /* Hosts no longer configured: stopped (their services were removed or changed). */
  list_for_each_safe(pos, tmp, hosts_of(d)) {
    struct host *h = container_of(pos, struct host, link);
    bool kept = false;
    for (size_t i = 0; i < n; i++) kept |= !strcmp(specs[i]->name, h->spec->name);
    if (!kept && h->state != H_STOPPING && h->state != H_DOWN) {
      h->next_at = INFINITY;
      host_stop(h);
    }
  }
  free(specs);
}

void tunnel_close(struct daemon *d, bool leaving) {
  struct list *pos, *tmp;
  list_for_each_safe(pos, tmp, hosts_of(d)) {
    struct host *h = container_of(pos, struct host, link);
    h->closing = true;
    h->leaving = leaving;
    sshmux_close(h->mux);
    h->mux = NULL;
    if (h->master_running && !leaving) {
      kill(h->pid, SIGTERM);
      forget_master(h);
    }
    /* Leaving: the master runs on with its forwards (closing the handle does not kill it),
     * recorded for the next daemon. */
    if (h->master_running)
      uv_close(h->adopted ? (uv_handle_t *)&h->adopted_fd : (uv_handle_t *)&h->master, on_master_close);
    uv_close((uv_handle_t *)&h->timer, on_host_handle_close);
  }
}

void tunnel_free(struct daemon *d) {
  while (!list_empty(hosts_of(d))) {
    struct host *h = container_of(hosts_of(d)->next, struct host, link);
    list_del(&h->link);
    while (!list_empty(&h->fwds)) fwd_free(container_of(h->fwds.next, struct fwd, link));
    if (!h->leaving) unlink(h->sock);
    host_spec_free(h->spec);
    free(h->sock);
    free(h->log_path);
    free(h);
  }
}

int tunnel_check_specs(struct daemon *d, struct spec **specs, size_t n, struct cfg_errors *errs) {
  size_t nh = 0;
  struct list *pos, *tmp;
  list_for_each_safe(pos, tmp, hosts_of(d)) nh++;
  struct host_spec **hs = xcalloc(nh + 1, sizeof *hs);
  nh = 0;
  list_for_each_safe(pos, tmp, hosts_of(d)) hs[nh++] = container_of(pos, struct host, link)->spec;
  /* (Duplicate host names cannot happen here: these are the daemon's own hosts.) */
  int k = cfg_validate_hosts(specs, n, hs, nh, errs);
  free(hs);
  return k;
}

/* ---- services' endpoints ---- */

int tunnel_local_port(struct service *s) {
  if (!s->spec->ssh) return 0;
  if (s->spec->endpoint.local_port) return s->spec->endpoint.local_port;
  /* Allocated once, kept in the store: the address the user bookmarks never changes. */
  char key[160], *v;
  snprintf(key, sizeof key, "local_port:%s", s->spec->name);
  if ((v = store_meta_get(s->d->store, key))) {
    int p = atoi(v);
    free(v);
    if (p > 0 && p < 65536) return p;
  }
  const struct endpoint_spec *e = &s->spec->endpoint;
  int span = e->range_hi - e->range_lo + 1, start = (int)(now_mono() * 1000) % span;
  for (int i = 0; i < span; i++) {
    int p = e->range_lo + (start + i) % span;
    struct sockaddr_in sa;
    uv_ip4_addr("127.0.0.1", p, &sa);
    int fd = socket(AF_INET, SOCK_STREAM | SOCK_CLOEXEC, 0);
    if (fd < 0) break;
    bool ok = bind(fd, (struct sockaddr *)&sa, sizeof sa) == 0;
    close(fd);
    if (!ok) continue;
    char val[16];
    snprintf(val, sizeof val, "%d", p);
    store_meta_put(s->d->store, key, val);
    return p;
  }
  return 0;
}

const struct host_spec *tunnel_host_spec(struct daemon *d, const char *name) {
  struct host *h = host_named(d, name);
  return h ? h->spec : NULL;
}

double tunnel_dead_window(struct service *s) {
  struct host *h = s->spec->ssh ? host_named(s->d, s->spec->ssh) : NULL;
  return h ? h->spec->alive_interval * (h->spec->alive_count + 1) + 1 : 0;
}

static struct fwd *fwd_of(struct service *s) { return s->tun; }

void tunnel_release(struct service *s, bool cancel) {
  struct fwd *f = fwd_of(s);
  if (!f) return;
  s->tun = NULL;
  f->s = NULL;
  struct host *h = f->h;
  if (h->closing) return; /* (tunnel_free) */
  if (cancel) {
    fwd_cancel(h, f);
  } else { /* left in the master as it is (the daemon leaves the service running) */
    f->gone = true;
    fwd_maybe_free(f);
  }
}

void tunnel_sync(struct service *s, bool want, const char *target, int port) {
  struct fwd *f = fwd_of(s);
  if (!want) {
    if (f) tunnel_release(s, true);
    return;
  }
  if (f && !strcmp(f->target, target) && f->rport == port) return; /* already there */
  struct host *h = host_named(s->d, s->spec->ssh);
  if (!h) return; /* (validated: cannot happen) */
  log_msg(LOG_DEBUG, s->spec->name, NULL, NULL, "endpoint %s to %s:%d through ssh host %s",
          f ? "re-pointed" : "pointed", target, port, s->spec->ssh);
  if (f) tunnel_release(s, true); /* re-pointed: the old forward goes first */
  f = xcalloc(1, sizeof *f);
  f->h = h;
  f->s = s;
  snprintf(f->name, sizeof f->name, "%s", s->spec->name);
  f->lport = tunnel_local_port(s);
  f->rport = port;
  snprintf(f->target, sizeof f->target, "%s", target);
  f->state = F_WANTED;
  fwd_stale_check(h, f->lport, target, port);
  list_add_tail(&h->fwds, &f->link);
  s->tun = f;
  if (!f->lport) {
    f->state = F_FAILED;
    snprintf(f->error, sizeof f->error, "no free local port in %d-%d", s->spec->endpoint.range_lo,
             s->spec->endpoint.range_hi);
    f->retry_at = now_mono() + FWD_RETRY_MAX;
    return;
  }
  host_pump(h);
}

const char *tunnel_blocker(struct service *s, char *buf, size_t len) {
  if (!s->spec->ssh) return NULL;
  struct host *h = host_named(s->d, s->spec->ssh);
  struct fwd *f = fwd_of(s);
  if (!h) {
    snprintf(buf, len, "no ssh host %s", s->spec->ssh);
  } else if (h->state != H_UP) {
    snprintf(buf, len, "ssh host %s is %s: %s", h->spec->name, host_state_names[h->state], h->reason);
  } else if (!f) {
    snprintf(buf, len, "no endpoint forward yet");
  } else if (f->state != F_UP) {
    snprintf(buf, len, "endpoint forward %s%s%s", fwd_state_names[f->state], f->error[0] ? ": " : "", f->error);
  } else {
    return NULL;
  }
  return buf;
}

json_t *tunnel_service_json(struct service *s) {
  if (!s->spec->ssh) return NULL;
  struct fwd *f = fwd_of(s);
  struct host *h = host_named(s->d, s->spec->ssh);
  int lport = f ? f->lport : s->spec->endpoint.local_port;
  json_t *o = json_pack("{s:s}", "via", s->spec->ssh);
  json_object_set_new(o, "local", lport ? json_sprintf("127.0.0.1:%d", lport) : json_null());
  json_object_set_new(o, "target", f ? json_sprintf("%s:%d", f->target, f->rport) : json_null());
  const char *st = !f                                              ? "none"
                   : h && h->state != H_UP && f->state != F_FAILED ? "host down"
                                                                   : fwd_state_names[f->state];
  json_object_set_new(o, "tunnel", json_string(st));
  if (f && f->error[0]) json_object_set_new(o, "error", json_string(f->error));
  return o;
}

json_t *tunnel_hosts_json(struct daemon *d) {
  json_t *a = json_array();
  struct list *pos, *tmp;
  double now = now_mono();
  list_for_each_safe(pos, tmp, hosts_of(d)) {
    struct host *h = container_of(pos, struct host, link);
    json_t *fw = json_array();
    struct list *p2, *t2;
    list_for_each_safe(p2, t2, &h->fwds) {
      struct fwd *f = container_of(p2, struct fwd, link);
      json_t *x = json_pack("{s:s,s:i,s:s,s:i,s:s}", "service", f->name, "local_port", f->lport, "target", f->target,
                            "port", f->rport, "state", fwd_state_names[f->state]);
      if (f->error[0]) json_object_set_new(x, "error", json_string(f->error));
      json_array_append_new(fw, x);
    }
    json_t *o = json_pack("{s:s,s:s,s:s,s:s,s:f,s:I,s:o}", "name", h->spec->name, "destination", h->spec->destination,
                          "state", host_state_names[h->state], "reason", h->reason, "for", now - h->since, "reconnects",
                          (json_int_t)h->reconnects, "forwards", fw);
    json_object_set_new(o, "pid", h->pid > 0 ? json_integer(h->pid) : json_null());
    json_object_set_new(o, "last_error", h->last_error[0] ? json_string(h->last_error) : json_null());
    json_object_set_new(o, "control_path", json_string(h->sock));
    json_object_set_new(o, "log", json_string(h->log_path));
    json_array_append_new(a, o);
  }
  return a;
}
