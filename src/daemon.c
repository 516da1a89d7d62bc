/* The daemon: start-up, the loop, reload, signals and an orderly shutdown. */
#include "herd/daemon.h"
#include "herd/job.h"
#include "herd/work.h"

#include "herd/check.h"
#include "herd/ctl.h"
#include "herd/log.h"
#include "herd/notify.h"
#include "herd/cgroup.h"
#include "herd/prio.h"
#include "herd/slurm.h"
#include "herd/spawner.h"
#include "herd/store.h"
#include "herd/sshx.h"
#include "herd/tunnel.h"

#include <dirent.h>
#include <errno.h>
#include <math.h>
#include <fcntl.h>
#include <grp.h>
#include <signal.h>
#include <stdlib.h>
#include <string.h>
#include <sys/file.h>
#include <sys/resource.h>
#include <sys/stat.h>
#include <unistd.h>

struct delayed_stop {
  struct list link;
  char *name;
  double at; /* monotonic */
};

static bool finishing;

static int mkdirs(const char *path, mode_t mode) {
  char tmp[4096];
  snprintf(tmp, sizeof tmp, "%s", path);
  for (char *p = tmp + 1; *p; p++) {
    if (*p != '/') continue;
    *p = '\0';
    if (mkdir(tmp, 0755) < 0 && errno != EEXIST) return -1;
    *p = '/';
  }
  if (mkdir(tmp, mode) < 0 && errno != EEXIST) return -1;
  return 0;
}

/* Drop the group and other bits of one of herd's own paths (a regular file, FIFO or
 * directory; never a symlink, never a socket: ctl sets the socket's mode). Returns 1 when
 * it changed the mode (the first change is described in `was`), 0 when there was nothing
 * to do, -1 on an error. */
static int tighten(const char *path, char *was, size_t wlen) {
  struct stat st;
  if (lstat(path, &st) < 0) return errno == ENOENT ? 0 : -1;
  if (!S_ISREG(st.st_mode) && !S_ISDIR(st.st_mode) && !S_ISFIFO(st.st_mode)) return 0;
  mode_t mode = st.st_mode & 07777;
  if (!(mode & 077)) return 0;
  if (chmod(path, mode & ~077) < 0) return -1;
  if (!*was) snprintf(was, wlen, "%s was %04o", path, (unsigned)mode);
  return 1;
}

/* The state dir holds every spec (its env: secrets) in herd.db and every service's output
 * in logs/: owner only (0700, files 0600). With --read-group and the socket inside it, the
 * group may pass through to reach the socket (0710), never list or read. A state dir made
 * by an older herd (0755, herd.db 0644, logs 0640) is tightened here, in one log line.
 * Only herd's own names are touched: services run in the state dir by default and what
 * they write there is theirs. */
static void tighten_state_dir(struct daemon *d) {
  static const char *const top[] = {"herd.db",   "herd.db-wal", "herd.db-shm", "herd.db-journal",
                                    "herd.lock", "logs",        "run"};
  struct stat st;
  char was[4200] = "";
  int n = 0, failed = 0;
  size_t sdl = strlen(d->state_dir);
  bool sock_inside = !strncmp(d->socket_path, d->state_dir, sdl) && d->socket_path[sdl] == '/';
  mode_t dirmode = d->has_read_gid && sock_inside ? 0710 : 0700;
  if (lstat(d->state_dir, &st) < 0 || !S_ISDIR(st.st_mode)) return;
  if (st.st_uid != geteuid() || (st.st_mode & S_ISVTX)) {
    /* Not a directory of herd's own (/tmp, another user's): never change its mode. */
    if (st.st_mode & 077 & ~dirmode)
      log_warn("state dir %s is not private (mode %04o, owner uid %u): herd.db and logs/ hold secrets; give herd a "
               "directory of its own",
               d->state_dir, (unsigned)(st.st_mode & 07777), (unsigned)st.st_uid);
  } else {
    /* Exactly dirmode: a dir made 0700 by a run without --read-group opens to 0710 for one with it. */
    mode_t mode = st.st_mode & 07777;
    if (dirmode == 0710 && st.st_gid != d->read_gid && chown(d->state_dir, (uid_t)-1, d->read_gid) < 0) failed++;
    if ((mode & 0777) != dirmode) {
      if (chmod(d->state_dir, (mode & 07000) | dirmode) < 0)
        failed++;
      else if (mode & 077 & ~dirmode)
        n++, snprintf(was, sizeof was, "%s was %04o", d->state_dir, (unsigned)mode);
    }
  }
  for (size_t i = 0; i < sizeof top / sizeof top[0]; i++) {
    char *p = xasprintf("%s/%s", d->state_dir, top[i]);
    int rc = tighten(p, was, sizeof was);
    n += rc > 0, failed += rc < 0;
    free(p);
  }
  const char *subs[] = {d->log_dir, d->run_dir};
  for (size_t i = 0; i < 2; i++) {
    DIR *dir = opendir(subs[i]);
    struct dirent *e;
    while (dir && (e = readdir(dir))) {
      if (e->d_name[0] == '.') continue;
      char *p = xasprintf("%s/%s", subs[i], e->d_name);
      int rc = tighten(p, was, sizeof was);
      n += rc > 0, failed += rc < 0;
      free(p);
    }
    if (dir) closedir(dir);
  }
  if (n || failed)
    log_warn("state dir %s: made %d path(s) private to herd's user (first: %s)%s; herd.db and logs hold secrets",
             d->state_dir, n, was[0] ? was : "none", failed ? ", could not change some" : "");
}

static void on_close_noop(uv_handle_t *h) {}

/* --http: the status page's listener, with its token when one is given (api.c's web_dispatch). */
static int http_open(struct daemon *d, char **err) {
  if (!d->o.http) return 0;
  char *token = NULL;
  if (d->o.http_token_file) {
    FILE *f = fopen(d->o.http_token_file, "re");
    char buf[512] = "";
    if (!f || !fgets(buf, sizeof buf, f)) {
      *err = xasprintf("--http-token-file %s: %s", d->o.http_token_file, f ? "empty" : strerror(errno));
      if (f) fclose(f);
      return -1;
    }
    fclose(f);
    buf[strcspn(buf, "\r\n")] = '\0';
    if (strlen(buf) < 16) {
      *err = xasprintf("--http-token-file %s: the token must be at least 16 characters", d->o.http_token_file);
      return -1;
    }
    token = xstrdup(buf);
  }
  int rc = ctl_open_http(d, d->o.http, token, web_dispatch, d, &d->http, err);
  free(token);
  if (rc == 0)
    log_info("status page: --http %s, on port %d%s", d->o.http, ctl_http_port(d->http),
             d->o.http_token_file ? "; start/stop/restart with the token" : "; read-only (no --http-token-file)");
  return rc;
}

static void finish(struct daemon *d) {
  if (finishing) return;
  finishing = true;
  log_info(services_idle(d) ? "all services stopped; exiting" : "exiting; services left running");
  ctl_close(d->ctl);
  d->ctl = NULL;
  ctl_close(d->http);
  d->http = NULL;
  uv_close((uv_handle_t *)&d->sig_term, on_close_noop);
  uv_close((uv_handle_t *)&d->sig_int, on_close_noop);
  uv_close((uv_handle_t *)&d->sig_hup, on_close_noop);
  uv_close((uv_handle_t *)&d->sig_chld, on_close_noop);
  uv_close((uv_handle_t *)&d->reap_check, on_close_noop);
  uv_close((uv_handle_t *)&d->poll_timer, on_close_noop);
  uv_close((uv_handle_t *)&d->flush, on_close_noop);
  uv_close((uv_handle_t *)&d->delay_timer, on_close_noop);
  work_close(d); /* its lease timer; parked withdrawals answered */
  jobs_close(d);
  heartbeat_close(d);
  notify_close(d);
  while (!list_empty(&d->delayed)) {
    struct delayed_stop *x = container_of(d->delayed.next, struct delayed_stop, link);
    list_del(&x->link);
    free(x->name);
    free(x);
  }
  struct list *pos, *tmp;
  list_for_each_safe(pos, tmp, &d->watches) list_del(pos);
  d->idle_cursor = NULL;
  list_for_each_safe(pos, tmp, &d->services) {
    struct service *s = container_of(pos, struct service, link);
    list_del(&s->link);
    list_add_tail(&d->dying, &s->link);
    service_close_handles(s);
  }
  d->nservices = 0;
  spawner_close(d->spawner); /* after every service let go: spawns still running come back to them */
  d->spawner = NULL;
  slurm_close(d);              /* after every service let go of its job */
  tunnel_close(d, d->leaving); /* after every service let go of its endpoint */
  sshx_close(d);
  check_global_close(d); /* after every checker and cluster let go of its easy handle */
}

void daemon_shutdown(struct daemon *d) {
  if (d->shutting_down) return;
  d->shutting_down = true;
  d->shutdown_at = now_mono();
  log_info("shutting down: stopping %zu services (dependents first)", d->nservices);
  char st[64];
  snprintf(st, sizeof st, "shutting down: stopping %zu services", d->nservices);
  heartbeat_stopping(d, st);
  /* In memory only: the persisted wanted state stays, so they come back next start.
   * deps_reconcile sends the stops: a service stops once nothing that depends on it runs.
   * Nothing restarts from here on, even a service that crashes while it waits for its
   * dependents to stop first. */
  struct list *pos, *tmp;
  list_for_each_safe(pos, tmp, &d->services)
      service_event(container_of(pos, struct service, link), EV_SHUTDOWN, 0, 0, NULL);
  d->deps_dirty = true;
  deps_reconcile(d);
  service_check_idle(d);
}

static void on_delay_timer(uv_timer_t *t);

static void delay_rearm(struct daemon *d) {
  if (list_empty(&d->delayed)) {
    uv_timer_stop(&d->delay_timer);
    return;
  }
  timer_arm(d->loop, &d->delay_timer, on_delay_timer, container_of(d->delayed.next, struct delayed_stop, link)->at);
}

void daemon_cancel_stop_later(struct daemon *d, struct service *s) {
  struct list *pos, *tmp;
  list_for_each_safe(pos, tmp, &d->delayed) {
    struct delayed_stop *x = container_of(pos, struct delayed_stop, link);
    if (strcmp(x->name, s->spec->name)) continue;
    list_del(&x->link);
    free(x->name);
    free(x);
  }
  delay_rearm(d);
}

void daemon_stop_later(struct daemon *d, struct service *s, double delay) {
  daemon_cancel_stop_later(d, s);
  struct delayed_stop *x = xcalloc(1, sizeof *x);
  x->name = xstrdup(s->spec->name);
  x->at = now_mono() + delay;
  struct list *pos = d->delayed.next;
  while (pos != &d->delayed && container_of(pos, struct delayed_stop, link)->at <= x->at) pos = pos->next;
  list_add_tail(pos, &x->link); /* before the first later one */
  log_msg(LOG_INFO, s->spec->name, NULL, NULL, "will stop in %.3gs", delay);
  delay_rearm(d);
}

static void on_delay_timer(uv_timer_t *t) {
  struct daemon *d = container_of(t, struct daemon, delay_timer);
  double now = now_mono();
  while (!list_empty(&d->delayed)) {
    struct delayed_stop *x = container_of(d->delayed.next, struct delayed_stop, link);
    if (x->at > now) break;
    list_del(&x->link);
    struct service *s = daemon_find(d, x->name); /* by name: it may have been removed */
    if (s && !s->removing) service_stop(s);
    free(x->name);
    free(x);
  }
  delay_rearm(d);
}

void daemon_boot_begin(struct daemon *d) { d->booting = true; }

void daemon_boot_end(struct daemon *d) {
  d->booting = false;
  struct list *pos, *tmp;
  list_for_each_safe(pos, tmp, &d->services) {
    struct service *s = container_of(pos, struct service, link);
    if (!s->boot_start) continue;
    s->boot_start = false;
    service_want_up(s, "herd started it");
  }
}

void daemon_leave(struct daemon *d) {
  if (d->shutting_down) return;
  d->shutting_down = d->leaving = true;
  log_info("leaving %zu services running for the next daemon to re-adopt", d->nservices);
  char st[80];
  snprintf(st, sizeof st, "exiting: leaving %zu services running", d->nservices);
  heartbeat_stopping(d, st);
  d->finish_pending = true; /* at the end of this loop turn: close our handles, not the services */
}

static void on_signal(uv_signal_t *h, int signum) {
  struct daemon *d = h->data;
  if (signum == SIGHUP) {
    struct cfg_errors errs = {0};
    json_t *summary = NULL;
    if (daemon_reload(d, &errs, &summary) < 0) {
      for (size_t i = 0; i < errs.n; i++) {
        char *m = cfg_error_str(&errs.v[i]);
        log_error("reload: %s", m);
        free(m);
      }
      if (errs.n) log_error("reload: %zu error(s); nothing changed", errs.n);
    }
    json_decref(summary);
    cfg_errors_free(&errs);
    return;
  }
  if (++d->nsignals > 1) {
    log_warn("second SIG%s: exiting now; services left running", signal_name(signum));
    store_flush(d->store);
    _exit(1);
  }
  log_info("SIG%s received", signal_name(signum));
  if (d->o.leave_running)
    daemon_leave(d);
  else
    daemon_shutdown(d);
}

/* Once per loop turn, before the loop blocks: settle dependencies, then commit the store. */
static void on_flush(uv_prepare_t *h) {
  struct daemon *d = h->data;
  if (d->deps_dirty) deps_reconcile(d);
  jobs_reconcile(d); /* the jobs whose turn came (slots given back this turn) */
  store_flush(d->store);
  if (d->finish_pending) finish(d);
}

/* Every spec the daemon would run: the config's (new) plus the services added over the API,
 * with `replace` standing in for the one of the same name. */
static size_t union_specs(struct daemon *d, struct spec_set *cfg, struct spec **extra, size_t nextra,
                          struct spec ***out) {
  size_t n = 0;
  struct spec **v = xcalloc(d->nservices + (cfg ? cfg->n : 0) + nextra + 1, sizeof *v);
  for (size_t i = 0; cfg && i < cfg->n; i++) v[n++] = cfg->v[i];
  struct list *pos, *tmp;
  list_for_each_safe(pos, tmp, &d->services) {
    struct service *s = container_of(pos, struct service, link);
    if (s->removing || (cfg && strcmp(s->spec->source, "api"))) continue;
    bool replaced = false;
    for (size_t i = 0; i < nextra; i++) replaced |= !strcmp(extra[i]->name, s->spec->name);
    if (!replaced) v[n++] = s->spec;
  }
  for (size_t i = 0; i < nextra; i++) v[n++] = extra[i];
  *out = v;
  return n;
}

int daemon_validate_deps(struct daemon *d, struct spec **extra, size_t nextra, struct cfg_errors *errs) {
  struct spec **v;
  size_t n = union_specs(d, NULL, extra, nextra, &v);
  int k = cfg_validate_deps(v, n, errs);
  free(v);
  /* Slurm services added over the API run on the clusters of the config. */
  if (nextra) k += slurm_check_specs(d, extra, nextra, errs);
  if (nextra) k += tunnel_check_specs(d, extra, nextra, errs);
  return k;
}

/* ---- config and store merge ---- */

static bool from_config(const struct service *s) { return strcmp(s->spec->source, "api") != 0; }

static const char *stored_wanted(struct daemon *d, const char *name, json_t *rows) {
  json_t *r = json_object_get(rows, name);
  return r ? json_string_value(json_object_get(r, "wanted")) : NULL;
}

static void collect_row(void *arg, const struct store_service *row) {
  json_object_set_new(arg, row->name,
                      json_pack("{s:s,s:s,s:s,s:s?,s:i}", "source", row->source, "spec", row->spec, "wanted",
                                row->wanted, "state", row->state, "restarts", (int)row->restarts));
}

static void add_conflict(struct cfg_errors *errs, const struct spec *sp) {
  cfg_error_add(errs, sp->source, 1, 1, "name",
                "service \"%s\" was added over the API; `herd rm %s` it first or rename this one", sp->name, sp->name);
}

/*
 * Grow the descriptor table once, to what nservices will need, before the first spawn.
 * Growing it later, while other threads share it, makes the kernel wait for an RCU grace
 * period at each doubling (expand_files): measured here at 90-420 ms in pidfd_open while
 * 1,000 services started. At start-up nothing shares the table yet (the spawner threads
 * have their own; the store's checkpointer starts later); a reload that adds services
 * grows it once. The memory is 8 bytes and 2 bits a slot.
 */
static void reserve_fds(size_t nservices) {
  struct rlimit rl;
  if (getrlimit(RLIMIT_NOFILE, &rl) < 0) return;
  rlim_t want = 64 + (rlim_t)nservices * (HERD_FDS_PER_SERVICE + 1);
  if (want > rl.rlim_cur) want = rl.rlim_cur;
  int tmp = open("/dev/null", O_RDONLY | O_CLOEXEC);
  if (tmp < 0) return;
  if (want > (rlim_t)tmp + 1) {
    /* The lowest free slot at or above want - 1 (never one in use, unlike dup2). */
    int fd = fcntl(tmp, F_DUPFD_CLOEXEC, (int)want - 1);
    if (fd >= 0) close(fd);
  }
  close(tmp);
}

int daemon_reload(struct daemon *d, struct cfg_errors *errs, json_t **summary) {
  if (!d->o.config_dir || d->shutting_down) return -1;
  struct spec_set set = {0};
  if (cfg_load_dir(d->o.config_dir, &set, errs) < 0) return -1;
  for (size_t i = 0; i < set.n; i++) {
    struct service *s = daemon_find(d, set.v[i]->name);
    if (s && !from_config(s)) add_conflict(errs, set.v[i]);
  }
  slurm_check_reload(d, &set, errs);
  if (!errs->n) {
    struct spec **v;
    size_t n = union_specs(d, &set, NULL, 0, &v);
    cfg_validate_deps(v, n, errs);
    free(v);
  }
  if (errs->n) {
    spec_set_free(&set);
    return -1;
  }
  json_t *added = json_array(), *changed = json_array(), *removed = json_array();
  int unchanged = 0;
  /* Removed first, so a name moved between files is not both added and removed. */
  struct list *pos, *tmp;
  list_for_each_safe(pos, tmp, &d->services) {
    struct service *s = container_of(pos, struct service, link);
    if (!from_config(s) || s->removing) continue;
    bool keep = spec_set_find(&set, s->spec->name) >= 0; /* a hash: 10,000 services, not 10,000^2 */
    if (!keep) {
      json_array_append_new(removed, json_string(s->spec->name));
      service_remove(s);
    }
  }
  slurm_reload(d, set.clusters, set.nclusters);
  set.nclusters = 0;
  tunnel_reload(d, set.hosts, set.nhosts); /* (takes the array) */
  set.hosts = NULL;
  set.nhosts = 0;
  jobs_configure(d, set.queues, set.nqueues);
  reserve_fds(d->nservices + set.n); /* new services: one growth, not one per doubling */
  daemon_boot_begin(d);
  for (size_t i = 0; i < set.n; i++) {
    struct spec *sp = set.v[i];
    set.v[i] = NULL;
    struct service *s = daemon_find(d, sp->name);
    if (s && s->removing) {
      /* Still stopping after an earlier removal: it comes back by the next reload. */
      log_warn("reload: %s is still being removed; not re-added this time", sp->name);
      spec_free(sp);
      continue;
    }
    const char *wanted = s ? (s->fsm.want_up ? "up" : "down") : "up";
    store_put_service(d->store, sp->name, sp->source, sp->canon, wanted);
    if (!s) {
      json_array_append_new(added, json_string(sp->name));
      service_create(d, sp, true, NULL, 0);
    } else if (!strcmp(s->spec->canon, sp->canon)) {
      free(s->spec->source);
      s->spec->source = xstrdup(sp->source);
      spec_free(sp);
      unchanged++;
    } else {
      json_array_append_new(changed, json_string(sp->name));
      service_replace(s, sp);
    }
  }
  daemon_boot_end(d);
  set.n = 0;
  spec_set_free(&set);
  log_info("reload: %zu added, %zu changed, %zu removed, %d unchanged", json_array_size(added),
           json_array_size(changed), json_array_size(removed), unchanged);
  *summary =
      json_pack("{s:o,s:o,s:o,s:i}", "added", added, "changed", changed, "removed", removed, "unchanged", unchanged);
  return 0;
}

static void raise_nofile(void) {
  struct rlimit rl;
  if (getrlimit(RLIMIT_NOFILE, &rl) == 0 && rl.rlim_cur < rl.rlim_max) {
    rl.rlim_cur = rl.rlim_max;
    if (setrlimit(RLIMIT_NOFILE, &rl) < 0) log_warn("cannot raise RLIMIT_NOFILE: %s", strerror(errno));
  }
}

static int lock_state_dir(struct daemon *d) {
  char *path = xasprintf("%s/herd.lock", d->state_dir);
  d->lock_fd = open(path, O_RDWR | O_CREAT | O_CLOEXEC, 0600);
  if (d->lock_fd < 0) {
    fprintf(stderr, "herd: cannot open %s: %s\n", path, strerror(errno));
    free(path);
    return -1;
  }
  if (flock(d->lock_fd, LOCK_EX | LOCK_NB) < 0) {
    char pid[32] = "";
    ssize_t n = pread(d->lock_fd, pid, sizeof pid - 1, 0);
    pid[n > 0 ? n : 0] = '\0';
    pid[strcspn(pid, "\n")] = '\0';
    fprintf(stderr, "herd: state dir %s is in use by another herd daemon (pid %s)\n", d->state_dir, *pid ? pid : "?");
    free(path);
    return -1;
  }
  char buf[32];
  int n = snprintf(buf, sizeof buf, "%d\n", (int)getpid());
  if (ftruncate(d->lock_fd, 0) < 0 || pwrite(d->lock_fd, buf, (size_t)n, 0) < 0) { /* the lock is what matters */
  }
  free(path);
  return 0;
}

static void on_sigchld(uv_signal_t *h, int sig) { proc_reap(h->data); }

static void report_handle(uv_handle_t *h, void *arg) {
  log_error("leaked handle: %s%s", uv_handle_type_name(uv_handle_get_type(h)), uv_is_closing(h) ? " (closing)" : "");
}

/* Start-up, before any service exists: where the services' cgroups live, and every process
 * that carries this herd's identity (ident.h), for service_create to adopt. */
static void find_own_processes(struct daemon *d) {
  char *stored = store_meta_get(d->store, "cgroup_root");
  if (d->o.no_cgroups)
    snprintf(d->cg_why, sizeof d->cg_why, "--cgroups off");
  else
    d->cg_root = cg_root(stored, d->herd_id, d->cg_why, sizeof d->cg_why);
  if (d->cg_root && (!stored || strcmp(stored, d->cg_root))) store_meta_put(d->store, "cgroup_root", d->cg_root);
  free(stored);
  if (d->cg_root)
    log_info("services run in cgroups under %s", d->cg_root);
  else
    log_warn("no cgroups (%s): a process that leaves its service's process group (setsid, double fork) is "
             "not tracked",
             d->cg_why);
  double t0 = now_mono();
  ident_scan(d->herd_id, &d->found);
  log_debug("identity scan: %zu processes read, %zu of ours, %.1f ms", d->found.nread, d->found.n,
            (now_mono() - t0) * 1e3);
}

static bool cg_is_service(void *arg, const char *name) { return daemon_find(arg, name) != NULL; }

/* Once every service has resumed: a process of ours that no service took over belongs to no
 * live instance (a spawn the last daemon never recorded, a leftover of an instance that
 * ended, a service gone from the config): it must not run on unsupervised. */
static void kill_orphans(struct daemon *d) {
  for (size_t i = 0; i < d->found.n; i++) {
    struct ident_proc *p = &d->found.v[i];
    if (p->claimed || proc_starttime(p->pid) != p->starttime) continue;
    if (kill(p->pid, SIGKILL) == 0)
      log_warn("killed pid %d (instance %lld): no live instance of any service owns it (left by a daemon that "
               "died)",
               p->pid, (long long)p->instance);
  }
  ident_free(&d->found);
  if (d->cg_root) {
    int n = cg_sweep(d->cg_root, cg_is_service, d);
    if (n > 0) log_warn("killed %d process%s in the cgroups of services that no longer exist", n, n == 1 ? "" : "es");
  }
}

int daemon_run(const struct daemon_opts *o) {
  static struct daemon dd; /* one daemon per process; static keeps it off the stack */
  struct daemon *d = &dd;
  memset(d, 0, sizeof *d);
  d->o = *o;
  d->exit_code = HERD_EXIT_OK;
  d->lock_fd = -1;
  srand((unsigned)(now_wall() * 1e6) ^ (unsigned)getpid()); /* remote ports, backoff jitter */
  list_init(&d->services);
  list_init(&d->dying);
  list_init(&d->watches);
  list_init(&d->clusters);
  list_init(&d->runq);
  list_init(&d->hosts);
  list_init(&d->sshx);
  list_init(&d->delayed);
  list_init(&d->logfds);
  list_init(&d->polled);
  d->start_mono = now_mono();
  d->start_wall = now_wall();
  d->seed = (uint64_t)getpid() * 0x9e3779b97f4a7c15ULL ^ (uint64_t)(d->start_wall * 1e6);
  log_setup((enum log_level)o->log_level, (enum log_format)o->log_format);
  heartbeat_take_env(d);
  signal(SIGPIPE, SIG_IGN);
  /* A file-size limit (ulimit -f) then fails the write with EFBIG, which the store reports
   * (GET /v1/health), instead of killing the daemon. Children get the default back (child.c). */
  signal(SIGXFSZ, SIG_IGN);
  raise_nofile();

  if (o->read_group) { /* first: it decides the state dir's mode */
    struct group *g = getgrnam(o->read_group);
    if (!g) {
      fprintf(stderr, "herd: --read-group: no such group \"%s\"\n", o->read_group);
      return HERD_EXIT_USAGE;
    }
    d->read_gid = g->gr_gid;
    d->has_read_gid = true;
  }
  if (mkdirs(o->state_dir, 0700) < 0) {
    fprintf(stderr, "herd: cannot create state dir %s: %s\n", o->state_dir, strerror(errno));
    return HERD_EXIT_STARTUP;
  }
  char *real = realpath(o->state_dir, NULL);
  d->state_dir = real ? real : xstrdup(o->state_dir);
  d->log_dir = xasprintf("%s/logs", d->state_dir);
  d->run_dir = xasprintf("%s/run", d->state_dir);
  d->socket_path = o->socket_path ? xstrdup(o->socket_path) : xasprintf("%s/herd.sock", d->state_dir);
  if (mkdirs(d->log_dir, 0700) < 0 || mkdirs(d->run_dir, 0700) < 0) {
    fprintf(stderr, "herd: cannot create %s/{logs,run}: %s\n", d->state_dir, strerror(errno));
    return HERD_EXIT_STARTUP;
  }
  tighten_state_dir(d);
  /* Before the daemon's own descriptors (lock, store, socket): the spawner threads'
   * private tables start from what is open now. */
  prio_setup(!o->normal_priority);
  d->spawner = spawner_new();
  if (lock_state_dir(d) < 0) return HERD_EXIT_STARTUP;

  char *err = NULL;
  char *dbpath = xasprintf("%s/herd.db", d->state_dir);
  if (store_open(dbpath, &d->store, &err) < 0) {
    fprintf(stderr, "herd: %s\n", err);
    free(err);
    free(dbpath);
    return HERD_EXIT_STARTUP;
  }
  free(dbpath);

  /* Config files, then the services added over the API (from the store). */
  struct spec_set cfgset = {0};
  struct cfg_errors errs = {0};
  json_t *rows = json_object();
  store_each_service(d->store, collect_row, rows);
  if (o->config_dir) cfg_load_dir(o->config_dir, &cfgset, &errs);
  for (size_t i = 0; i < cfgset.n; i++) {
    json_t *r = json_object_get(rows, cfgset.v[i]->name);
    if (r && !strcmp(json_string_value(json_object_get(r, "source")), "api")) add_conflict(&errs, cfgset.v[i]);
  }
  struct spec_set apiset = {0};
  if (!errs.n) {
    /* Dependencies are checked across config files and stored API services together. */
    const char *name;
    json_t *r;
    json_object_foreach(rows, name, r) {
      if (strcmp(json_string_value(json_object_get(r, "source")), "api")) continue;
      const char *spec = json_string_value(json_object_get(r, "spec"));
      struct cfg_errors ignore = {0};
      char *label = xasprintf("store:%s", name);
      cfg_parse_text(label, spec, strlen(spec), &apiset, &ignore);
      free(label);
      cfg_errors_free(&ignore);
    }
    struct spec **v = xcalloc(cfgset.n + apiset.n + 1, sizeof *v);
    for (size_t i = 0; i < cfgset.n; i++) v[i] = cfgset.v[i];
    for (size_t i = 0; i < apiset.n; i++) v[cfgset.n + i] = apiset.v[i];
    cfg_validate_deps(v, cfgset.n + apiset.n, &errs);
    free(v);
  }
  if (!errs.n) reserve_fds(cfgset.n + apiset.n);
  spec_set_free(&apiset);
  if (errs.n) {
    for (size_t i = 0; i < errs.n; i++) {
      char *m = cfg_error_str(&errs.v[i]);
      fprintf(stderr, "%s\n", m);
      free(m);
    }
    fprintf(stderr, "herd: %zu config error(s); not starting\n", errs.n);
    cfg_errors_free(&errs);
    spec_set_free(&cfgset);
    json_decref(rows);
    store_close(d->store);
    return HERD_EXIT_CONFIG;
  }

  d->loop = uv_default_loop();
  d->loop->data = d; /* for loop_alloc */
  uv_signal_init(d->loop, &d->sig_term);
  uv_signal_init(d->loop, &d->sig_int);
  uv_signal_init(d->loop, &d->sig_hup);
  d->sig_term.data = d->sig_int.data = d->sig_hup.data = d;
  uv_signal_start(&d->sig_term, on_signal, SIGTERM);
  uv_signal_start(&d->sig_int, on_signal, SIGINT);
  uv_signal_start(&d->sig_hup, on_signal, SIGHUP);
  uv_signal_init(d->loop, &d->sig_chld);
  d->sig_chld.data = d;
  uv_signal_start(&d->sig_chld, on_sigchld, SIGCHLD);
  uv_check_init(d->loop, &d->reap_check);
  d->reap_check.data = d;
  uv_timer_init(d->loop, &d->poll_timer);
  d->poll_timer.data = d;
  check_global_init(d);
  /* This state dir's identity, in every Slurm job's tag: a restarted daemon finds its jobs
   * by it, and another herd's jobs (another state dir) are never taken for ours. */
  char *hid = store_meta_get(d->store, "herd_id");
  if (!hid) {
    hid = xasprintf("%08llx", (unsigned long long)(d->seed >> 16) & 0xffffffffULL);
    store_meta_put(d->store, "herd_id", hid);
    store_flush(d->store);
  }
  snprintf(d->herd_id, sizeof d->herd_id, "%s", hid);
  free(hid);
  find_own_processes(d);
  slurm_init(d, cfgset.clusters, cfgset.nclusters);
  cfgset.nclusters = 0;
  tunnel_init(d, cfgset.hosts, cfgset.nhosts); /* (takes the array) */
  cfgset.hosts = NULL;
  cfgset.nhosts = 0;
  jobs_init(d, cfgset.queues, cfgset.nqueues);
  work_init(d); /* (without it, the work API answers 503) */
  if (spawner_attach(d->spawner, d->loop) < 0) {
    /* No threads: instances are spawned on the loop (uv_spawn), slower but the same. */
    log_warn("no spawner threads; spawning on the loop");
    spawner_close(d->spawner);
    d->spawner = NULL;
  }
  uv_timer_init(d->loop, &d->delay_timer);
  uv_prepare_init(d->loop, &d->flush);
  d->flush.data = d;
  uv_prepare_start(&d->flush, on_flush);

  if (heartbeat_init(d, o->liveness_file, &err) < 0 || ctl_open(d, api_dispatch, d, &err) < 0 ||
      http_open(d, &err) < 0) {
    fprintf(stderr, "herd: %s\n", err);
    free(err);
    d->shutting_down = true;
    d->exit_code = HERD_EXIT_STARTUP;
    finish(d);
  } else {
    log_info("herd %s listening on %s (state %s, config %s, pid %d)", HERD_VERSION, d->socket_path, d->state_dir,
             o->config_dir ? o->config_dir : "none", (int)getpid());
    if (prio_rt())
      log_info("priority: herd's spawner threads run SCHED_FIFO 2, its loop too while spawning, its services "
               "SCHED_OTHER (--priority realtime)");
    else
      log_info("priority: normal (%s)", prio_why_not());
    notify_open(d); /* before any service starts: their NOTIFY_SOCKET (a failure is logged) */
    daemon_boot_begin(d);
    for (size_t i = 0; i < cfgset.n; i++) {
      struct spec *sp = cfgset.v[i];
      cfgset.v[i] = NULL;
      const char *w = stored_wanted(d, sp->name, rows);
      bool up = !w || strcmp(w, "down");
      store_put_service(d->store, sp->name, sp->source, sp->canon, up ? "up" : "down");
      json_t *row = json_object_get(rows, sp->name);
      service_create(d, sp, up, row ? json_string_value(json_object_get(row, "state")) : NULL,
                     row ? (unsigned)json_integer_value(json_object_get(row, "restarts")) : 0);
      json_object_del(rows, sp->name);
    }
    const char *name;
    json_t *r;
    void *iter_tmp;
    json_object_foreach_safe(rows, iter_tmp, name, r) {
      const char *source = json_string_value(json_object_get(r, "source"));
      bool gone_from_config = strcmp(source, "api") != 0;
      const char *spec = json_string_value(json_object_get(r, "spec"));
      struct spec_set one = {0};
      struct cfg_errors e2 = {0};
      char *label = xasprintf("store:%s", name);
      if (cfg_parse_text(label, spec, strlen(spec), &one, &e2) || one.n != 1) {
        /* Keep the row: a newer herd may understand it. Say so loudly. */
        char *m = e2.n ? cfg_error_str(&e2.v[0]) : xstrdup("unreadable spec");
        log_error("%s: stored spec not loaded: %s", name, m);
        free(m);
        /* Its processes are not orphans: they are left alone, as its row is. */
        struct store_instance li;
        if (store_last_instance(d->store, name, &li) == 0) ident_claim(&d->found, li.id, NULL, NULL);
      } else if (gone_from_config) {
        /* Removed from the config while no daemon ran: if its instance still runs, stop
         * it properly (with its stop signal and grace); then forget it. */
        log_info("%s: no longer in the config; stopping and forgetting it", name);
        struct service *s = service_create(d, one.v[0], false, json_string_value(json_object_get(r, "state")),
                                           (unsigned)json_integer_value(json_object_get(r, "restarts")));
        one.v[0] = NULL;
        one.n = 0;
        service_remove(s);
      } else {
        free(one.v[0]->source);
        one.v[0]->source = xstrdup("api");
        service_create(d, one.v[0], strcmp(json_string_value(json_object_get(r, "wanted")), "down") != 0,
                       json_string_value(json_object_get(r, "state")),
                       (unsigned)json_integer_value(json_object_get(r, "restarts")));
        one.v[0] = NULL;
        one.n = 0;
      }
      free(label);
      spec_set_free(&one);
      cfg_errors_free(&e2);
    }
  }
  if (d->ctl) kill_orphans(d);
  if (d->booting) daemon_boot_end(d);
  spec_set_free(&cfgset);
  json_decref(rows);
  /* The store is open and the socket listens: READY=1 (systemd), and the ticks begin. */
  if (d->ctl) heartbeat_ready(d);

  uv_run(d->loop, UV_RUN_DEFAULT);

  jobs_free(d); /* after every service (and its job) was freed */
  work_free(d);
  tunnel_free(d);
  sshx_free(d);
  store_close(d->store);
  int rc = uv_loop_close(d->loop);
  if (rc != 0) {
    log_error("loop closed with open handles: %s", uv_strerror(rc));
    uv_walk(d->loop, report_handle, NULL);
    if (d->exit_code == 0) d->exit_code = HERD_EXIT_FAIL;
  }
  /* Every service let go of its cgroup; the tree goes too unless services were left running. */
  if (d->cg_root) rmdir(d->cg_root);
  free(d->cg_root);
  ident_free(&d->found);
  free(d->htab);
  free(d->kids);
  free(d->state_dir);
  free(d->log_dir);
  free(d->run_dir);
  free(d->socket_path);
  if (d->lock_fd >= 0) close(d->lock_fd);
  return d->exit_code;
}
