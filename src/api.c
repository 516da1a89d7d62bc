/* API routes and handlers: JSON in and out over the control socket. */
#include "herd/joblog.h"
#include "herd/check.h"
#include "herd/cmd.h"
#include "herd/job.h"
#include "herd/work.h"
#include "herd/log.h"
#include "herd/prio.h"
#include "herd/slurm.h"
#include "herd/store.h"
#include "herd/sshx.h"
#include "herd/tunnel.h"
#include "herd/table.h"

#include <errno.h>
#include <fcntl.h>
#include <limits.h>
#include <math.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

/* Match "/v1/services/{name}/start" against a path; captures {name}. */
static bool route_match(const char *pattern, const char *path, char *name, size_t len) {
  while (*pattern && *path) {
    if (!strncmp(pattern, "{name}", 6)) {
      const char *slash = strchr(path, '/');
      size_t n = slash ? (size_t)(slash - path) : strlen(path);
      if (n == 0 || n >= len) return false;
      memcpy(name, path, n);
      name[n] = '\0';
      path += n;
      pattern += 6;
      continue;
    }
    if (*pattern != *path) return false;
    pattern++;
    path++;
  }
  if (*path == '/' && path[1] == '\0') path++; /* tolerate a trailing slash */
  return *pattern == '\0' && *path == '\0';
}

/* A route that takes no body accepts none, whitespace or {}: a key there would be ignored
 * (a parameter belongs in the query), so it is refused, named. 0 when the body is fine. */
static int check_no_body(struct conn *c, struct request *r) {
  size_t i = 0;
  while (i < r->body_len && strchr(" \t\r\n", r->body[i])) i++;
  if (i == r->body_len) return 0;
  json_error_t je;
  json_t *o = json_loadb(r->body, r->body_len, 0, &je);
  if (!json_is_object(o)) {
    conn_error(c, 400, "bad_body", NULL, "%s %s takes no body (or {}); this one is %s", r->method, r->path,
               o ? "not a JSON object" : "not JSON");
    json_decref(o);
    return -1;
  }
  int rc = 0;
  if (json_object_size(o)) {
    const char *key = json_object_iter_key(json_object_iter(o));
    conn_error(c, 400, "unknown_key", json_pack("{s:s}", "key", key),
               "unknown key \"%s\" in the body: %s %s takes no body (parameters go in the query)", key, r->method,
               r->path);
    rc = -1;
  }
  json_decref(o);
  return rc;
}

void api_dispatch(void *daemon, struct conn *c, struct request *r) {
  struct daemon *d = daemon;
  char name[256];
  bool path_known = false;
  for (size_t i = 0; i < cmd_count; i++) {
    const struct cmd_entry *e = &cmd_table[i];
    if (!e->route || !route_match(e->route, r->path, name, sizeof name)) continue;
    path_known = true;
    if (strcmp(e->method, r->method)) continue;
    if (e->write && !r->can_write) {
      conn_error(c, 403, "forbidden", NULL, "uid %u may read but not change this daemon", (unsigned)r->uid);
      return;
    }
    if (strstr(e->route, "{name}") && !name_valid(name)) {
      conn_error(c, 400, "bad_name", NULL, "\"%s\" is not a valid service name", name);
      return;
    }
    bool takes_body = e->api == api_add || e->api == api_replace || e->api == api_job_run ||
                      e->api == api_work_deposit || e->api == api_work_done;
    if (!takes_body && check_no_body(c, r) < 0) return;
    e->api(d, c, r, name);
    return;
  }
  if (path_known)
    conn_error(c, 405, "method_not_allowed", NULL, "%s is not allowed on %s", r->method, r->path);
  else if (strncmp(r->path, "/v1/", 4) && strncmp(r->path, "/v", 2) == 0)
    conn_error(c, 404, "api_version", NULL, "this daemon speaks API version %d (paths under /v1/)", HERD_API_VERSION);
  else
    conn_error(c, 404, "not_found", NULL, "no route for %s %s", r->method, r->path);
}

/* The named service, or NULL with a 404. A removed service still stopping is there (shown,
 * stopped, its logs read, removed again) until it is gone; what would bring it back is a 409. */
static struct service *find_svc(struct daemon *d, struct conn *c, const char *name, bool removing_ok) {
  struct service *s = daemon_find(d, name);
  if (!s) {
    conn_error(c, 404, "no_such_service", NULL, "no service named \"%s\"", name);
    return NULL;
  }
  if (s->removing && !removing_ok) {
    conn_error(c, 409, "being_removed", json_pack("{s:o}", "service", service_json(s)),
               "%s is being removed (%s): wait until it is gone, then add it again", name,
               svc_state_name(s->fsm.state));
    return NULL;
  }
  return s;
}

static struct service *find_or_404(struct daemon *d, struct conn *c, const char *name) {
  return find_svc(d, c, name, false);
}

static int cmp_svc(const void *a, const void *b) {
  return strcmp((*(struct service *const *)a)->spec->name, (*(struct service *const *)b)->spec->name);
}

/** Services sorted by name (caller frees the array). */
static struct service **sorted_services(struct daemon *d, size_t *n) {
  struct service **v = xcalloc(d->nservices + 1, sizeof *v);
  size_t k = 0;
  struct list *pos, *tmp;
  list_for_each_safe(pos, tmp, &d->services) {
    v[k++] = container_of(pos, struct service, link); /* removed ones still stopping too */
  }
  qsort(v, k, sizeof *v, cmp_svc);
  *n = k;
  return v;
}

void api_list(struct daemon *d, struct conn *c, struct request *r, const char *unused) {
  char st[64], match[256], tag[256];
  const char *state = req_query(r, "state", st, sizeof st);
  const char *glob = req_query(r, "match", match, sizeof match);
  const char *tg = req_query(r, "tag", tag, sizeof tag);
  char vb[16];
  const char *view = req_query(r, "view", vb, sizeof vb);
  if (view && strcmp(view, "summary") && strcmp(view, "full")) {
    conn_error(c, 400, "bad_view", NULL, "view must be \"summary\" or \"full\"");
    return;
  }
  bool full = !view || !strcmp(view, "full");
  char fb[16], cb[8];
  const char *format = req_query(r, "format", fb, sizeof fb);
  const char *colour = req_query(r, "color", cb, sizeof cb);
  if (format && strcmp(format, "table") && strcmp(format, "json")) {
    conn_error(c, 400, "bad_format", NULL, "format must be \"json\" or \"table\"");
    return;
  }
  bool table = format && !strcmp(format, "table");
  int want_state = -1;
  if (state && (want_state = svc_state_parse(state)) < 0) {
    conn_error(c, 400, "bad_state", NULL, "unknown state \"%s\"", state);
    return;
  }
  size_t n;
  struct service **v = sorted_services(d, &n);
  if (table) full = false;
  struct status_row *rows = table ? xcalloc(n + 1, sizeof *rows) : NULL;
  size_t nrows = 0;
  json_t *a = full ? json_array() : NULL;
  struct buf b = {0};
  if (!full) buf_lit(&b, "{\"services\":[");
  bool first = true;
  for (size_t i = 0; i < n; i++) {
    struct service *s = v[i];
    if (want_state >= 0 && (int)s->fsm.state != want_state) continue;
    if (glob && !glob_match(glob, s->spec->name)) continue;
    if (tg && !spec_has_tag(s->spec, tg)) continue;
    if (table) {
      struct status_row *row = &rows[nrows++];
      row->name = s->spec->name;
      row->state = svc_state_name(s->fsm.state);
      row->pid = s->pid;
      row->job_id = s->job_id;
      row->uptime = service_uptime(s);
      row->restarts = s->fsm.restarts;
      row->last_error = s->last_error[0] ? s->last_error : NULL;
      row->reason = s->reason;
      row->check_msg = check_last_msg(s);
      row->check_ok = row->check_msg ? check_last_ok(s) : -1;
      row->notify_status = service_notify_status(s);
    } else if (full) {
      json_array_append_new(a, service_json_view(s, true));
    } else {
      if (!first) buf_lit(&b, ",");
      service_summary_append(&b, s);
    }
    first = false;
  }
  free(v);
  if (table) {
    /* The table `herd status` prints, rendered here: the CLI then parses no JSON at all. */
    struct buf t = {0};
    status_table(&t, rows, nrows, colour && !strcmp(colour, "1"));
    conn_reply_raw(c, 200, "text/plain; charset=utf-8", t.data, t.len);
    buf_free(&t);
    buf_free(&b);
    free(rows);
    return;
  }
  if (full) {
    conn_reply(c, 200, json_pack("{s:o}", "services", a));
    return;
  }
  buf_printf(&b, "],\"api\":%d}\n", HERD_API_VERSION);
  conn_reply_raw(c, 200, "application/json", b.data, b.len);
  buf_free(&b);
}

static void reply_spec_errors(struct conn *c, struct cfg_errors *errs) {
  char *first = cfg_error_str(&errs->v[0]);
  conn_error(c, 422, "invalid_spec", json_pack("{s:o}", "errors", cfg_errors_json(errs)), "%s", first);
  free(first);
}

void api_add(struct daemon *d, struct conn *c, struct request *r, const char *unused) {
  struct spec_set set = {0};
  struct cfg_errors errs = {0};
  if (cfg_parse_text("request body", r->body, r->body_len, &set, &errs) || set.n == 0) {
    if (errs.n)
      reply_spec_errors(c, &errs);
    else
      conn_error(c, 422, "invalid_spec", NULL, "no service in the request body");
    goto out;
  }
  for (size_t i = 0; i < set.n; i++) {
    for (size_t j = 0; j < i; j++)
      if (!strcmp(set.v[i]->name, set.v[j]->name)) {
        conn_error(c, 409, "duplicate", NULL, "service \"%s\" appears twice in the request", set.v[i]->name);
        goto out;
      }
    struct service *s = daemon_find(d, set.v[i]->name);
    if (s) {
      conn_error(c, 409, "exists", NULL, "service \"%s\" already exists (from %s)%s", s->spec->name, s->spec->source,
                 s->removing ? " and is being removed" : "; use PUT to replace it");
      goto out;
    }
  }
  for (size_t i = 0; i < set.n; i++) {
    free(set.v[i]->source);
    set.v[i]->source = xstrdup("api");
  }
  if (daemon_validate_deps(d, set.v, set.n, &errs)) {
    reply_spec_errors(c, &errs);
    goto out;
  }
  json_t *a = json_array();
  char **added = xcalloc(set.n, sizeof *added);
  size_t n_added = 0;
  daemon_boot_begin(d); /* a dependency later in the same request is not "missing" */
  for (size_t i = 0; i < set.n; i++) {
    struct spec *sp = set.v[i];
    store_put_service(d->store, sp->name, "api", sp->canon, "up");
    added[n_added++] = xstrdup(sp->name);
    struct service *s = service_create(d, sp, true, NULL, 0);
    set.v[i] = NULL;
    (void)s;
  }
  daemon_boot_end(d);
  for (size_t i = 0; i < n_added; i++) json_array_append_new(a, service_json(daemon_find(d, added[i])));
  for (size_t i = 0; i < n_added; i++) free(added[i]);
  free(added);
  set.n = 0;
  conn_reply(c, 201, json_pack("{s:o}", "services", a));
out:
  spec_set_free(&set);
  cfg_errors_free(&errs);
}

void api_replace(struct daemon *d, struct conn *c, struct request *r, const char *name) {
  struct service *s = find_or_404(d, c, name);
  if (!s) return;
  if (strcmp(s->spec->source, "api")) {
    conn_error(c, 409, "from_config", NULL, "\"%s\" is defined in %s: edit that file and reload", name,
               s->spec->source);
    return;
  }
  struct spec_set set = {0};
  struct cfg_errors errs = {0};
  if (cfg_parse_text("request body", r->body, r->body_len, &set, &errs) || set.n != 1) {
    if (errs.n)
      reply_spec_errors(c, &errs);
    else
      conn_error(c, 422, "invalid_spec", NULL, "PUT takes exactly one service");
    goto out;
  }
  if (strcmp(set.v[0]->name, name)) {
    conn_error(c, 400, "name_mismatch", NULL, "the body names \"%s\" but the path names \"%s\"", set.v[0]->name, name);
    goto out;
  }
  free(set.v[0]->source);
  set.v[0]->source = xstrdup("api");
  if (daemon_validate_deps(d, set.v, 1, &errs)) {
    reply_spec_errors(c, &errs);
    goto out;
  }
  struct spec *sp = set.v[0];
  set.v[0] = NULL;
  set.n = 0;
  store_put_service(d->store, name, "api", sp->canon, s->fsm.want_up ? "up" : "down");
  bool changed = service_replace(s, sp);
  conn_reply(c, 200, json_pack("{s:b,s:o}", "changed", changed, "service", service_json(s)));
out:
  spec_set_free(&set);
  cfg_errors_free(&errs);
}

void api_delete(struct daemon *d, struct conn *c, struct request *r, const char *name) {
  struct service *s = find_svc(d, c, name, true); /* removing it again changes nothing */
  if (!s) return;
  if (strcmp(s->spec->source, "api")) {
    conn_error(c, 409, "from_config", NULL, "\"%s\" is defined in %s: remove it there and reload", name,
               s->spec->source);
    return;
  }
  struct list *pos, *tmp;
  list_for_each_safe(pos, tmp, &d->services) {
    struct service *x = container_of(pos, struct service, link);
    for (size_t i = 0; !x->removing && i < x->spec->ndeps; i++)
      if (!strcmp(x->spec->deps[i].service, name)) {
        conn_error(c, 409, "depended_on", NULL, "%s depends on %s: remove or change it first", x->spec->name, name);
        return;
      }
  }
  const char *state = svc_state_name(s->fsm.state);
  service_remove(s); /* may free s once at rest */
  conn_reply(c, 200, json_pack("{s:s,s:s}", "removed", name, "state", state));
}

/* ---- wait=healthy|stopped ---- */

enum { WAIT_HEALTHY, WAIT_STOPPED };

struct waiter {
  struct svc_watch w;
  struct conn *c;
  struct service *s;
  int target;
};

static void waiter_free(struct waiter *wt) {
  list_del(&wt->w.link);
  free(wt);
}

/* 1: reached; -1: can no longer be reached; 0: keep waiting. */
static int wait_status(struct service *s, int target, svc_state to) {
  if (target == WAIT_HEALTHY) {
    if (to == S_HEALTHY || s->fsm.state == S_HEALTHY) return 1;
    if (svc_fsm_at_rest(&s->fsm) && !s->start_at_rest && !s->fsm.restart_pending) return -1;
    return 0;
  }
  /* At rest, and not about to start again with a new spec or after a dependency. */
  return svc_fsm_at_rest(&s->fsm) && !s->start_at_rest ? 1 : 0;
}

/* Answer a wait: 200 when reached (st > 0), 409 when it never will be. */
static void answer_wait(struct conn *c, struct service *s, int st) {
  json_t *svc = service_json(s);
  if (st > 0)
    conn_reply(c, 200, json_pack("{s:o}", "service", svc));
  else
    conn_error(c, 409, "not_reached", json_pack("{s:o}", "service", svc), "%s is %s and will not become HEALTHY: %s",
               s->spec->name, svc_state_name(s->fsm.state), s->last_error[0] ? s->last_error : s->reason);
}

static void waiter_transition(struct svc_watch *w, struct service *s, svc_state from, svc_state to, const char *reason,
                              int64_t id, double ts) {
  struct waiter *wt = container_of(w, struct waiter, w);
  int st = wait_status(s, wt->target, to);
  if (!st) return;
  struct conn *c = wt->c;
  waiter_free(wt);
  answer_wait(c, s, st);
}

static void waiter_gone(struct svc_watch *w, struct service *s) {
  struct waiter *wt = container_of(w, struct waiter, w);
  struct conn *c = wt->c;
  free(wt); /* already unlinked by the service */
  conn_error(c, 409, "removed", NULL, "service %s was removed", s->spec->name);
}

static void waiter_conn_gone(struct conn *c, void *arg) { waiter_free(arg); }

static void waiter_timeout(struct conn *c, void *arg) {
  struct waiter *wt = arg;
  struct service *s = wt->s;
  int target = wt->target;
  json_t *svc = service_json(s);
  waiter_free(wt);
  conn_error(c, 504, "timeout", json_pack("{s:o}", "service", svc), "%s did not become %s in time; it is %s: %s",
             s->spec->name, target == WAIT_HEALTHY ? "HEALTHY" : "stopped", svc_state_name(s->fsm.state), s->reason);
}

/* A start or restart cancels a stop asked for later (stop --delay). */
static void start_now(struct service *s) {
  daemon_cancel_stop_later(s->d, s);
  service_start(s);
}

static void restart_now(struct service *s) {
  daemon_cancel_stop_later(s->d, s);
  service_restart(s);
}

static void act(struct daemon *d, struct conn *c, struct request *r, const char *name, void (*fn)(struct service *),
                int default_target) {
  struct service *s = find_svc(d, c, name, fn == NULL || fn == service_stop);
  if (!s) return;
  char wbuf[32], tbuf[32];
  const char *wait = req_query(r, "wait", wbuf, sizeof wbuf);
  const char *tmo = req_query(r, "timeout", tbuf, sizeof tbuf);
  int target = default_target;
  if (wait && *wait) {
    if (!strcmp(wait, "healthy"))
      target = WAIT_HEALTHY;
    else if (!strcmp(wait, "stopped"))
      target = WAIT_STOPPED;
    else if (!strcmp(wait, "1") || !strcmp(wait, "true"))
      target = default_target;
    else {
      conn_error(c, 400, "bad_wait", NULL, "wait must be \"healthy\" or \"stopped\"");
      return;
    }
  }
  double timeout = 60;
  if (tmo && duration_parse(tmo, &timeout) < 0) {
    conn_error(c, 400, "bad_timeout", json_pack("{s:s}", "param", "timeout"), "timeout \"%s\" is not a duration", tmo);
    return;
  }
  if (timeout > CTL_MAX_WAIT_S) timeout = CTL_MAX_WAIT_S; /* saturate: a wait ends some day */
  if (fn && fn != service_stop && d->shutting_down) {
    conn_error(c, 503, "shutting_down", NULL, "the daemon is shutting down");
    return;
  }
  if (fn) fn(s);
  if (!wait) {
    conn_reply(c, 200, json_pack("{s:o}", "service", service_json(s)));
    return;
  }
  int st = wait_status(s, target, s->fsm.state);
  if (st) {
    answer_wait(c, s, st);
    return;
  }
  struct waiter *wt = xcalloc(1, sizeof *wt);
  wt->c = c;
  wt->s = s;
  wt->target = target;
  wt->w.on_transition = waiter_transition;
  wt->w.on_gone = waiter_gone;
  service_add_watch(s, &wt->w);
  /* Rounded up: conn_park takes 0 for "no timeout", and timeout=0 means "do not wait". */
  uint64_t ms = (uint64_t)ceil(timeout * 1000);
  if (ms == 0) {
    waiter_timeout(c, wt);
    return;
  }
  conn_park(c, wt, waiter_conn_gone, waiter_timeout, ms);
}

void api_get(struct daemon *d, struct conn *c, struct request *r, const char *name) {
  json_t *old = daemon_find(d, name) ? NULL : job_archived_json(d, name);
  if (old) { /* a finished job in the history */
    conn_reply(c, 200, json_pack("{s:o}", "service", old));
    return;
  }
  act(d, c, r, name, NULL, WAIT_HEALTHY); /* ?wait=healthy|stopped waits without acting */
}

void api_start(struct daemon *d, struct conn *c, struct request *r, const char *name) {
  act(d, c, r, name, start_now, WAIT_HEALTHY);
}
void api_stop(struct daemon *d, struct conn *c, struct request *r, const char *name) {
  char dbuf[32];
  const char *delay = req_query(r, "delay", dbuf, sizeof dbuf);
  if (delay) { /* Blackfish's stop(delay): stop later, unless started again meanwhile */
    double secs;
    if (duration_parse(delay, &secs) < 0 || secs > 30 * 86400.0) {
      conn_error(c, 400, "bad_delay", NULL, "delay \"%s\" is not a duration (up to 30 days)", delay);
      return;
    }
    struct service *s = find_or_404(d, c, name);
    if (!s) return;
    daemon_stop_later(d, s, secs);
    json_t *o = json_pack("{s:o,s:f}", "service", service_json(s), "stop_at", now_wall() + secs);
    conn_reply(c, 202, o);
    return;
  }
  act(d, c, r, name, service_stop, WAIT_STOPPED);
}
void api_restart(struct daemon *d, struct conn *c, struct request *r, const char *name) {
  act(d, c, r, name, restart_now, WAIT_HEALTHY);
}

/* ---- logs ---- */

struct follower {
  struct svc_watch w;
  struct conn *c;
};

static void follower_log(struct svc_watch *w, struct service *s, const char *data, size_t n) {
  struct follower *f = container_of(w, struct follower, w);
  /* On failure the connection is closing and its on_gone hook frees us. */
  conn_stream_write(f->c, data, n);
}

static void follower_gone(struct svc_watch *w, struct service *s) {
  struct follower *f = container_of(w, struct follower, w);
  struct conn *c = f->c;
  free(f); /* already unlinked by the service */
  conn_park(c, NULL, NULL, NULL, 0);
  conn_stream_end(c);
}

static void follower_conn_gone(struct conn *c, void *arg) {
  struct follower *f = arg;
  list_del(&f->w.link);
  free(f);
}

void api_logs(struct daemon *d, struct conn *c, struct request *r, const char *name) {
  /* A job in the history has no service left: its log as it was left (it no longer grows,
   * so there is nothing to follow). */
  char *archived = !daemon_find(d, name) && job_archived(d, name) ? xasprintf("%s/%s.log", d->log_dir, name) : NULL;
  struct service *s = archived ? NULL : find_svc(d, c, name, true);
  if (!s && !archived) return;
  const char *path = s ? s->log_path : archived;
  char tb[32], fb[16];
  const char *tail = req_query(r, "tail", tb, sizeof tb);
  const char *follow = req_query(r, "follow", fb, sizeof fb);
  bool fol = !archived && follow && (!strcmp(follow, "1") || !strcmp(follow, "true") || !*follow);
  long lines = fol ? 10 : -1;
  if (tail) {
    /* Digits only; more lines than a long holds means all of them. */
    if (!*tail || strspn(tail, "0123456789") != strlen(tail)) {
      conn_error(c, 400, "bad_tail", json_pack("{s:s}", "param", "tail"),
                 "tail must be a whole number of lines, 0 or more (\"%s\")", tail);
      goto out;
    }
    errno = 0;
    lines = strtol(tail, NULL, 10);
    if (errno == ERANGE) lines = LONG_MAX;
  }
  char jb[16];
  const char *job = req_query(r, "job", jb, sizeof jb);
  if (job && (!strcmp(job, "1") || !strcmp(job, "true") || !*job)) {
    /* A Slurm job's own output: here when this host can read it, else over the ssh host. */
    char *out = s && s->be->output_path ? s->be->output_path(s) : NULL;
    if (!out) {
      conn_error(c, 404, "no_job", NULL, "%s has no Slurm job", name);
      goto out;
    }
    const char *host = s->be->output_host ? s->be->output_host(s) : NULL;
    joblog_serve(d, c, out, host, lines, fol);
    goto out;
  }
  size_t len = 0;
  char ab[16];
  const char *attempt = req_query(r, "attempt", ab, sizeof ab);
  if (attempt) {
    /* One attempt of a job (or any service): from its "started" note to the next one's. */
    unsigned long at = strtoul(attempt, NULL, 10);
    if (!*attempt || strspn(attempt, "0123456789") != strlen(attempt) || at < 1 || at > 1000000 || fol || tail) {
      conn_error(c, 400, "bad_attempt", json_pack("{s:s}", "param", "attempt"),
                 "attempt must be a whole number from 1 (and goes without follow or tail)");
      goto out;
    }
    char *all = file_tail(path, -1, NULL, &len);
    size_t start = 0, n = 0;
    if (!all || !job_log_slice(all, len, (unsigned)at, &start, &n))
      conn_error(c, 404, "no_attempt", NULL, "%s has no attempt %lu in its log", name, at);
    else
      conn_reply_raw(c, 200, "text/plain; charset=utf-8", all + start, n);
    free(all);
    goto out;
  }
  char *data = lines == 0 ? NULL : file_tail(path, lines, NULL, &len);
  if (!fol) {
    conn_reply_raw(c, 200, "text/plain; charset=utf-8", data ? data : "", len);
    free(data);
    goto out;
  }
  conn_stream_begin(c, 200, "text/plain; charset=utf-8");
  if (len) conn_stream_write(c, data, len);
  free(data);
  if (conn_closing(c)) goto out;
  struct follower *f = xcalloc(1, sizeof *f);
  f->c = c;
  f->w.on_log = follower_log;
  f->w.on_gone = follower_gone;
  service_add_watch(s, &f->w);
  conn_park(c, f, follower_conn_gone, NULL, 0);
out:
  free(archived);
}

/* ---- events ---- */

#define API_MAX_EVENTS 100000 /* ?limit= at most: one reply is built in memory */

static json_t *event_json(int64_t id, double ts, const char *svc, int64_t inst, const char *from, const char *to,
                          const char *reason) {
  return json_pack("{s:I,s:f,s:s,s:o,s:s,s:s,s:s}", "id", (json_int_t)id, "time", ts, "service", svc, "instance",
                   inst > 0 ? json_integer(inst) : json_null(), "from", from, "to", to, "reason", reason);
}

static void append_line(struct buf *b, json_t *o) {
  char *s = json_dumps(o, JSON_COMPACT);
  buf_printf(b, "%s\n", s);
  free(s);
  json_decref(o);
}

struct ev_collect {
  struct buf b;
};

static void collect_event(void *arg, const struct store_event *e) {
  struct ev_collect *ec = arg;
  append_line(&ec->b, event_json(e->id, e->ts, e->service, e->instance, e->from, e->to, e->reason));
}

struct ev_follower {
  struct svc_watch w;
  struct conn *c;
  char service[64];
  bool sse; /* format=sse: server-sent events, each with the service's summary as it is now */
};

/* One server-sent event: the event (a line of NDJSON, without its newline) and the
 * service's summary now (null once it is gone), for a page that redraws its row. */
static void sse_frame(struct buf *b, struct service *s, const char *line, size_t n, long long id) {
  buf_printf(b, "id: %lld\ndata: {\"event\":", id);
  buf_append(b, line, n);
  buf_lit(b, ",\"service\":");
  if (s)
    service_summary_append(b, s);
  else
    buf_lit(b, "null");
  buf_lit(b, "}\n\n");
}

/* The NDJSON lines of a backlog as server-sent events. */
static void sse_lines(struct buf *out, struct daemon *d, const struct buf *nd) {
  const char *p = nd->data, *end = nd->data + nd->len;
  while (p && p < end) {
    const char *nl = memchr(p, '\n', (size_t)(end - p));
    size_t n = nl ? (size_t)(nl - p) : (size_t)(end - p);
    json_t *o = json_loadb(p, n, 0, NULL);
    const char *name = json_string_value(json_object_get(o, "service"));
    sse_frame(out, name ? daemon_find(d, name) : NULL, p, n, (long long)json_integer_value(json_object_get(o, "id")));
    json_decref(o);
    p += n + 1;
  }
}

static void ev_follower_transition(struct svc_watch *w, struct service *s, svc_state from, svc_state to,
                                   const char *reason, int64_t id, double ts) {
  struct ev_follower *f = container_of(w, struct ev_follower, w);
  if (f->service[0] && strcmp(f->service, s->spec->name)) return;
  struct buf b = {0};
  append_line(&b, event_json(id, ts, s->spec->name, s->instance, svc_state_name(from), svc_state_name(to), reason));
  if (f->sse) {
    struct buf e = {0};
    sse_frame(&e, s, b.data, b.len - 1, (long long)id);
    buf_free(&b);
    b = e;
  }
  conn_stream_write(f->c, b.data, b.len);
  buf_free(&b);
}

static void ev_follower_conn_gone(struct conn *c, void *arg) {
  struct ev_follower *f = arg;
  list_del(&f->w.link);
  free(f);
}

void api_events(struct daemon *d, struct conn *c, struct request *r, const char *unused) {
  char sb[32], fb[16], lb[32], svb[128];
  const char *since = req_query(r, "since", sb, sizeof sb);
  const char *follow = req_query(r, "follow", fb, sizeof fb);
  const char *limit = req_query(r, "limit", lb, sizeof lb);
  const char *svc = req_query(r, "service", svb, sizeof svb);
  bool fol = follow && (!strcmp(follow, "1") || !strcmp(follow, "true") || !*follow);
  char fmb[16];
  const char *format = req_query(r, "format", fmb, sizeof fmb);
  if (format && strcmp(format, "ndjson") && strcmp(format, "sse")) {
    conn_error(c, 400, "bad_format", json_pack("{s:s}", "param", "format"), "format must be \"ndjson\" or \"sse\"");
    return;
  }
  bool sse = format && !strcmp(format, "sse");
  if (sse && !fol) {
    conn_error(c, 400, "bad_format", json_pack("{s:s}", "param", "format"), "format=sse is a stream: add follow=1");
    return;
  }
  long long from = 0;
  if (since) {
    errno = 0;
    from = strtoll(since, NULL, 10);
    if (!*since || strspn(since, "0123456789") != strlen(since) || errno == ERANGE) {
      conn_error(c, 400, "bad_since", json_pack("{s:s}", "param", "since"),
                 "since must be an event id, a whole number from 0 (\"%s\")", since);
      return;
    }
  } else if (fol) {
    from = store_last_event_id(d->store); /* follow without since: only new events */
  }
  long lim = 10000;
  if (limit) {
    /* Checked whole: 4294967297 must not become 1 on its way to an int. */
    errno = 0;
    lim = strtol(limit, NULL, 10);
    if (!*limit || strspn(limit, "0123456789") != strlen(limit) || errno == ERANGE || lim < 1 || lim > API_MAX_EVENTS) {
      conn_error(c, 400, "bad_limit", json_pack("{s:s}", "param", "limit"),
                 "limit must be a whole number from 1 to %d (\"%s\")", API_MAX_EVENTS, limit);
      return;
    }
  }
  /* Without since: the newest `limit` events (default 1000), oldest first. */
  if (!since && !fol) {
    if (!limit) lim = 1000;
    from = -1;
  }
  if (svc && !name_valid(svc)) {
    conn_error(c, 400, "bad_name", NULL, "\"%s\" is not a valid service name", svc);
    return;
  }
  struct ev_collect ec = {{0}};
  store_each_event(d->store, from, (int)lim, svc, collect_event, &ec);
  if (!fol) {
    conn_reply_raw(c, 200, "application/x-ndjson", ec.b.data ? ec.b.data : "", ec.b.len);
    buf_free(&ec.b);
    return;
  }
  conn_stream_begin(c, 200, sse ? "text/event-stream" : "application/x-ndjson");
  if (sse) { /* the backlog as events too, and a comment so that the page knows it is live */
    struct buf e = {0};
    buf_lit(&e, ": herd\n\n");
    if (ec.b.len) sse_lines(&e, d, &ec.b);
    buf_free(&ec.b);
    ec.b = e;
  }
  if (ec.b.len) conn_stream_write(c, ec.b.data, ec.b.len);
  buf_free(&ec.b);
  if (conn_closing(c)) return;
  struct ev_follower *f = xcalloc(1, sizeof *f);
  f->c = c;
  f->sse = sse;
  if (svc) snprintf(f->service, sizeof f->service, "%s", svc);
  f->w.on_transition = ev_follower_transition;
  list_add_tail(&d->watches, &f->w.link);
  conn_park(c, f, ev_follower_conn_gone, NULL, 0);
}

/* ---- daemon ---- */

void api_reload(struct daemon *d, struct conn *c, struct request *r, const char *unused) {
  struct cfg_errors errs = {0};
  json_t *summary = NULL;
  if (daemon_reload(d, &errs, &summary) < 0) {
    if (errs.n) {
      char *first = cfg_error_str(&errs.v[0]);
      conn_error(c, 422, "invalid_config", json_pack("{s:o}", "errors", cfg_errors_json(&errs)),
                 "config has %zu error(s); nothing changed. First: %s", errs.n, first);
      free(first);
    } else {
      conn_error(c, 409, "no_config", NULL, "the daemon was started without --config");
    }
  } else {
    conn_reply(c, 200, summary);
  }
  cfg_errors_free(&errs);
}

static void count_handle(uv_handle_t *h, void *arg) {
  size_t *n = arg;
  n[0]++;
  if (uv_is_active(h)) n[1]++;
}

void api_info(struct daemon *d, struct conn *c, struct request *r, const char *unused) {
  size_t handles[2] = {0, 0}; /* the loop's handles, and how many are active (a soak watches them) */
  uv_walk(d->loop, count_handle, handles);
  unsigned counts[S__MAX] = {0};
  struct list *pos, *tmp;
  list_for_each_safe(pos, tmp, &d->services) counts[container_of(pos, struct service, link)->fsm.state]++;
  json_t *st = json_object();
  for (int i = 0; i < S__MAX; i++)
    if (counts[i]) json_object_set_new(st, svc_state_name(i), json_integer(counts[i]));
  const char *serr = store_last_error(d->store), *swarn = store_warning(d->store);
  const struct store_stats *ss = store_stats(d->store);
  json_t *info =
      json_pack("{s:s,s:i,s:f,s:f,s:s,s:s,s:s?,s:I,s:o,s:I,s:b,s:o,s:b,s:I,s:s,s:o,s:o}", "version", HERD_VERSION,
                "pid", (int)getpid(), "uptime", now_mono() - d->start_mono, "started", d->start_wall, "state_dir",
                d->state_dir, "socket", d->socket_path, "config", d->o.config_dir, "services", (json_int_t)d->nservices,
                "states", st, "connections", (json_int_t)ctl_nconns(d->ctl), "shutting_down", d->shutting_down,
                "store_error", serr ? json_string(serr) : json_null(), "store_failing", ss->failing, "store_pending",
                (json_int_t)ss->pending, "priority", prio_rt() ? "realtime" : "normal", "cgroups",
                d->cg_root ? json_pack("{s:b,s:s}", "enabled", 1, "root", d->cg_root)
                           : json_pack("{s:b,s:s}", "enabled", 0, "why", d->cg_why),
                "handles", json_pack("{s:I,s:I}", "all", (json_int_t)handles[0], "active", (json_int_t)handles[1]));
  json_object_set_new(info, "store_warning", swarn ? json_string(swarn) : json_null());
  conn_reply(c, 200, info);
}

/* ---- the loop's own lag: a 1 ms repeating timer's lateness, measured on request ----
 * Only while a request asks: an idle daemon runs no 1 ms timer (its heartbeat, once a
 * second, samples the lag for GET /metrics: heartbeat.c). One timer
 * serves every request measuring at the time (a thousand 1 ms timers would themselves be
 * the lag), and each request keeps a fixed histogram, not every sample: a sample list
 * grew by 8 bytes a millisecond, 480 KB for one 60 s request, 400 MB for a thousand.
 * The probe is per process (one daemon per process), hence the static below. */

/* Lateness in microseconds, log-linear: exact below 32 us, then 32 buckets per power of
 * two (within 3%), up to 2^37 us (38 h, far past the 60 s a request may last). */
#define LAG_SUB 32
#define LAG_MAX_EXP 37
#define LAG_NB ((LAG_MAX_EXP - 4) * LAG_SUB)

static size_t lag_bucket(uint64_t us) {
  if (us >= (1ULL << LAG_MAX_EXP)) us = (1ULL << LAG_MAX_EXP) - 1;
  if (us < LAG_SUB) return (size_t)us;
  int e = 63 - __builtin_clzll(us); /* 5 and up */
  return (size_t)(e - 4) * LAG_SUB + (size_t)((us >> (e - 5)) - LAG_SUB);
}

/* The middle of bucket i, in microseconds. */
static double lag_bucket_us(size_t i) {
  if (i < LAG_SUB) return (double)i;
  int e = (int)(i / LAG_SUB) + 4;
  uint64_t lo = (uint64_t)(i % LAG_SUB + LAG_SUB) << (e - 5);
  return (double)lo + (double)(1ULL << (e - 5)) / 2;
}

struct lagreq {
  struct list link;
  struct lagprobe *p;
  struct conn *c;
  uint64_t start, end; /* uv_hrtime() ns */
  uint64_t n;
  double max_ms;
  uint32_t hist[LAG_NB];
};

struct lagprobe {
  uv_timer_t timer;
  struct list reqs;
  uint64_t last; /* the previous firing, ns */
  bool closing;
};

static struct lagprobe *lag_probe; /* the running probe; NULL when none */

static void lag_free(uv_handle_t *h) { free(h->data); }

/* Close the probe once no request measures. */
static void lag_release(struct lagprobe *p) {
  if (p->closing || !list_empty(&p->reqs)) return;
  p->closing = true;
  if (lag_probe == p) lag_probe = NULL;
  uv_timer_stop(&p->timer);
  uv_close((uv_handle_t *)&p->timer, lag_free);
}

static double lag_pct(const struct lagreq *q, double f) {
  if (!q->n) return 0.0;
  uint64_t rank = (uint64_t)((double)(q->n - 1) * f + 0.5), cum = 0;
  for (size_t i = 0; i < LAG_NB; i++) {
    cum += q->hist[i];
    if (cum > rank) {
      double ms = lag_bucket_us(i) / 1000.0;
      return ms < q->max_ms ? ms : q->max_ms;
    }
  }
  return q->max_ms;
}

static void lag_answer(struct lagreq *q) {
  struct conn *c = q->c;
  json_t *o = json_pack("{s:{s:s,s:I,s:f,s:f,s:f,s:f}}", "lag", "probe", "1 ms repeating timer", "samples",
                        (json_int_t)q->n, "p50_ms", lag_pct(q, 0.5), "p99_ms", lag_pct(q, 0.99), "p999_ms",
                        lag_pct(q, 0.999), "max_ms", q->max_ms);
  free(q);
  conn_reply(c, 200, o); /* lets go of the parked connection first: q is not touched again */
}

static void lag_tick(uv_timer_t *t) {
  struct lagprobe *p = t->data;
  uint64_t now = uv_hrtime();
  /* Due 1 ms after the previous firing: anything later is time the loop was busy. */
  double late = p->last ? ((double)(now - p->last) - 1e6) / 1e6 : -1;
  if (late < 0 && p->last) late = 0;
  struct list done, *pos, *tmp;
  list_init(&done);
  list_for_each_safe(pos, tmp, &p->reqs) {
    struct lagreq *q = container_of(pos, struct lagreq, link);
    if (late >= 0 && p->last >= q->start) { /* a request counts firings after its own start */
      q->hist[lag_bucket((uint64_t)(late * 1000))]++;
      q->n++;
      if (late > q->max_ms) q->max_ms = late;
    }
    if (now >= q->end) {
      list_del(&q->link);
      list_add_tail(&done, &q->link);
    }
  }
  p->last = now;
  /* Answer outside the walk: an answer may run the connection's next request (another
   * probe) or shut the daemon down (every other connection's on_gone). A request whose
   * connection goes meanwhile leaves `done` in lag_conn_gone. */
  while (!list_empty(&done)) {
    struct lagreq *q = container_of(done.next, struct lagreq, link);
    list_del(&q->link);
    lag_answer(q);
  }
  lag_release(p);
}

static void lag_conn_gone(struct conn *c, void *arg) {
  struct lagreq *q = arg;
  struct lagprobe *p = q->p;
  list_del(&q->link);
  free(q);
  lag_release(p);
}

void api_lag(struct daemon *d, struct conn *c, struct request *r, const char *unused) {
  char buf[32];
  const char *sec = req_query(r, "seconds", buf, sizeof buf);
  double seconds = 5;
  if (sec && duration_parse(sec, &seconds) < 0) seconds = -1;
  if (seconds <= 0 || seconds > 60) {
    conn_error(c, 400, "bad_seconds", json_pack("{s:s}", "param", "seconds"),
               "seconds must be a duration above 0 and at most 60 (\"%s\")", sec ? sec : "");
    return;
  }
  struct lagprobe *p = lag_probe;
  if (!p) {
    p = lag_probe = xcalloc(1, sizeof *p);
    list_init(&p->reqs);
    uv_timer_init(d->loop, &p->timer);
    p->timer.data = p;
    uv_timer_start(&p->timer, lag_tick, 1, 1);
  }
  struct lagreq *q = xcalloc(1, sizeof *q);
  q->p = p;
  q->c = c;
  q->start = uv_hrtime();
  q->end = q->start + (uint64_t)(seconds * 1e9);
  list_add_tail(&p->reqs, &q->link);
  conn_park(c, q, lag_conn_gone, NULL, 0);
}

void api_hosts(struct daemon *d, struct conn *c, struct request *r, const char *unused) {
  json_t *hosts = tunnel_hosts_json(d), *h;
  size_t i;
  json_array_foreach(hosts, i, h) { /* its libssh2 session, when something runs commands there */
    json_t *ss = sshx_host_json(d, json_string_value(json_object_get(h, "name")));
    json_object_set_new(h, "session", ss ? ss : json_null());
  }
  conn_reply(c, 200, json_pack("{s:o}", "hosts", hosts));
}

void api_clusters(struct daemon *d, struct conn *c, struct request *r, const char *unused) {
  conn_reply(c, 200, json_pack("{s:o}", "clusters", slurm_clusters_json(d)));
}

void api_shutdown(struct daemon *d, struct conn *c, struct request *r, const char *unused) {
  char lb[16];
  const char *leave = req_query(r, "leave_running", lb, sizeof lb);
  bool lv = leave && (!strcmp(leave, "1") || !strcmp(leave, "true") || !*leave);
  conn_reply(c, 202,
             json_pack("{s:s,s:I}", "shutdown", lv ? "leaving services running" : "stopping all services", "services",
                       (json_int_t)d->nservices));
  if (lv)
    daemon_leave(d);
  else
    daemon_shutdown(d);
}

/* ---- the status page (herd daemon --http: ctl_open_http's listener) ----
 *
 * GET / is the page (src/web/status.html, compiled in); GET /metrics and the GET routes of
 * the API (the page reads /v1/services and /v1/events?follow=1&format=sse) answer as on the
 * control socket; POST start, stop and restart of a service need the token
 * (--http-token-file); nothing else is served. */

extern const char web_status_html[];
extern const size_t web_status_html_len;

/* The writes the page may make: /v1/services/NAME/start, /stop, /restart. */
static bool page_action(const char *path) {
  const char *p = "/v1/services/";
  if (strncmp(path, p, strlen(p))) return false;
  const char *slash = strchr(path + strlen(p), '/');
  return slash && slash > path + strlen(p) &&
         (!strcmp(slash, "/start") || !strcmp(slash, "/stop") || !strcmp(slash, "/restart"));
}

void web_dispatch(void *daemon, struct conn *c, struct request *r) {
  if (!strcmp(r->method, "GET") && (!strcmp(r->path, "/") || !strcmp(r->path, "/index.html"))) {
    conn_reply_raw(c, 200, "text/html; charset=utf-8", web_status_html, web_status_html_len);
    return;
  }
  if (!strcmp(r->method, "GET")) {
    api_dispatch(daemon, c, r); /* read-only: request.can_write only with the token */
    return;
  }
  if (!strcmp(r->method, "POST") && page_action(r->path)) {
    if (!r->can_write) {
      conn_error(c, 401, "token_required", NULL,
                 "this needs the status page's token (Authorization: Bearer TOKEN; see --http-token-file)");
      return;
    }
    api_dispatch(daemon, c, r);
    return;
  }
  conn_error(c, 403, "not_on_status_page", NULL, "%s %s is not served on the status page (use the control socket)",
             r->method, r->path);
}
