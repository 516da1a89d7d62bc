/* The Slurm backend (see slurm.h). */
#include "slurm_int.h"

#include "herd/curlx.h"
#include "herd/jwt.h"
#include "herd/log.h"
#include "herd/run.h"
#include "herd/slurm_cmd.h"
#include "herd/slurm_parse.h"
#include "herd/sshx.h"
#include "herd/tunnel.h"

#include <errno.h>
#include <signal.h>
#include <stdarg.h>
#include <math.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <time.h>
#include <unistd.h>

#define MAX_INFLIGHT 8
#define BODY_MAX (64u * 1024 * 1024)
#define POLL_BACKOFF_MAX 30.0
#define PROBE_OLDEST 38 /* version probing stops here: older ones (22.05's v0.0.36/37) add nothing */
static const char *const rq_names[] = {
    [RQ_PING] = "ping",     [RQ_JOBS] = "jobs", [RQ_JOB] = "job",    [RQ_SUBMIT] = "submit",
    [RQ_CANCEL] = "cancel", [RQ_NODE] = "node", [RQ_TOKEN] = "token"};
static_assert(sizeof rq_names / sizeof rq_names[0] == RQ__MAX, "request names");

static struct list *clusters_of(struct daemon *d);
/* "api": "ssh": Slurm's commands over the host's libssh2 session. */
static bool is_ssh(const struct cluster *cl);
void slurm_dispatch(struct cluster *cl);
void slurm_poll_schedule(struct cluster *cl, double at);

/* ---- small helpers ---- */

static bool is_ssh(const struct cluster *cl) { return cl->spec->api == CLUSTER_SSH; }

static struct cluster *cluster_named(struct daemon *d, const char *name) {
  struct list *pos, *tmp;
  list_for_each_safe(pos, tmp, clusters_of(d)) {
    struct cluster *cl = container_of(pos, struct cluster, link);
    if (!strcmp(cl->spec->name, name)) return cl;
  }
  return NULL;
}

/* Report to the runner (run.h): the only way this backend changes a service. */
static void feed(struct service *s, svc_event_type type, int code, int sig, svc_state end, const char *msg) {
  struct run_event ev = {.type = type, .code = code, .sig = sig, .end = end, .msg = msg};
  run_post(s, &ev);
}

/* This backend's state of a service, or NULL (a service of another backend, or one whose
 * cluster is not configured). */
static struct sjob *SJ(const struct service *s) { return s && s->be == &slurm_backend ? s->run : NULL; }

/* The address a job's service is reached at: its node's, else the node's name. */
static const char *job_host(struct sjob *j);

void slurm_set_error(struct cluster *cl, const char *fmt, ...) __attribute__((format(printf, 2, 3)));
void slurm_set_error(struct cluster *cl, const char *fmt, ...) {
  char msg[256];
  va_list ap;
  va_start(ap, fmt);
  vsnprintf(msg, sizeof msg, fmt, ap);
  va_end(ap);
  if (strcmp(msg, cl->error)) log_msg(LOG_WARN, NULL, NULL, NULL, "cluster %s: %s", cl->spec->name, msg);
  if (!cl->error[0]) cl->error_since = now_wall();
  snprintf(cl->error, sizeof cl->error, "%s", msg);
  cl->errors++;
}

void slurm_clear_error(struct cluster *cl) {
  if (cl->error[0]) log_msg(LOG_INFO, NULL, NULL, NULL, "cluster %s: reachable again", cl->spec->name);
  cl->error[0] = '\0';
  cl->fails = 0;
}

/* ---- requests ---- */

static size_t on_body(char *p, size_t size, size_t n, void *arg) {
  struct sreq *r = arg;
  size_t len = size * n;
  if (r->body.len + len > BODY_MAX) return 0; /* abort: no sane reply is this big */
  buf_append(&r->body, p, len);
  return len;
}

static void sreq_free(struct sreq *r) {
  json_decref(r->post_json);
  if (r->easy) CX.easy_cleanup(r->easy);
  if (r->hdrs) CX.slist_free_all(r->hdrs);
  free(r->path);
  free(r->post);
  buf_free(&r->body);
  buf_free(&r->errout);
  free(r);
}

struct sreq *slurm_sreq_new(struct cluster *cl, enum rq_kind kind, const char *method, char *path, char *post,
                            sreq_cb done) {
  struct sreq *r = xcalloc(1, sizeof *r);
  r->cl = cl;
  r->kind = kind;
  r->method = method;
  r->path = path;
  r->post = post;
  r->done = done;
  list_init(&r->link);
  return r;
}

void slurm_enqueue(struct cluster *cl, struct sreq *r, bool front) {
  if (front)
    list_add_tail(cl->queue.next, &r->link); /* before the first */
  else
    list_add_tail(&cl->queue, &r->link);
  slurm_dispatch(cl);
}

static void on_req_done(struct curlx_req *cx, CURLcode res) {
  struct sreq *r = container_of(cx, struct sreq, cx);
  struct cluster *cl = r->cl;
  list_del(&r->link);
  cl->inflight--;
  r->elapsed = now_mono() - r->t0;
  CX.easy_getinfo(r->easy, CURLINFO_RESPONSE_CODE, &r->status);
  cl->bytes_in += r->body.len;
  char terr[CURL_ERROR_SIZE + 64];
  bool ok = res == CURLE_OK;
  r->never_sent =
      res == CURLE_COULDNT_CONNECT || res == CURLE_COULDNT_RESOLVE_HOST || res == CURLE_COULDNT_RESOLVE_PROXY;
  if (!ok) snprintf(terr, sizeof terr, "%s", r->errbuf[0] ? r->errbuf : CX.easy_strerror(res));
  r->done(r, ok, ok ? NULL : terr);
  sreq_free(r);
  if (!cl->closing) slurm_dispatch(cl);
}

static void on_pace(uv_timer_t *t) { slurm_dispatch(t->data); }

/* ---- a cluster with "api": "ssh": Slurm's commands over the host's libssh2 session ---- */

static const char *const cmd_names[RQ__MAX] = {
    [RQ_PING] = "ping",      [RQ_JOBS] = "squeue", [RQ_JOB] = "scontrol/sacct", [RQ_SUBMIT] = "sbatch",
    [RQ_CANCEL] = "scancel", [RQ_NODE] = "sinfo",  [RQ_TOKEN] = "token"};

static void on_ssh_done(void *arg, const struct sshx_result *res) {
  struct sreq *r = arg;
  r->sx = NULL;
  if (r->orphan) { /* its cluster is gone */
    sreq_free(r);
    return;
  }
  struct cluster *cl = r->cl;
  list_del(&r->link);
  cl->inflight--;
  r->elapsed = now_mono() - r->t0;
  char terr[400];
  if (res->ran) {
    buf_append(&r->body, res->out, res->outlen);
    buf_append(&r->errout, res->err, res->errlen);
    r->exit_status = res->status;
    if (res->status == 124 && !res->errlen) /* timeout(1) ended it */
      buf_printf(&r->errout, "%s timed out after %.0f s (request_timeout)", cmd_names[r->kind],
                 cl->spec->request_timeout);
    cl->bytes_in += res->outlen + res->errlen;
  } else {
    snprintf(terr, sizeof terr, "ssh host %s: %.360s", cl->spec->ssh, res->error ? res->error : "session lost");
    r->never_sent = !res->maybe_ran;
  }
  r->done(r, res->ran, res->ran ? NULL : terr);
  sreq_free(r);
  if (!cl->closing) slurm_dispatch(cl);
}

/* r->path is the command line, r->post its standard input (a batch script). */
static bool send_ssh(struct cluster *cl, struct sreq *r) {
  const struct host_spec *h = tunnel_host_spec(cl->d, cl->spec->ssh);
  if (!h) {
    slurm_set_error(cl, "no ssh host %s", cl->spec->ssh);
    return false;
  }
  /* timeout(1) on the login node: a command stuck on an unresponsive slurmctld ends there,
   * and its channel with it (a dead session is found by the session's own timer). */
  struct buf cmd = {0};
  buf_printf(&cmd, "timeout -k 5 %.0f sh -c ", ceil(cl->spec->request_timeout));
  buf_shquote(&cmd, r->path);
  buf_append(&cmd, "", 1);
  size_t inlen = r->post ? strlen(r->post) : 0;
  r->t0 = now_mono();
  r->sent = true;
  r->cx.done = NULL;
  cl->requests[r->kind]++;
  cl->bytes_out += cmd.len - 1 + inlen;
  r->sx = sshx_exec(cl->d, h, cmd.data, r->post, inlen, on_ssh_done, r);
  buf_free(&cmd);
  if (!r->sx) {
    slurm_set_error(cl, "ssh host %s: cannot run a command (the daemon is shutting down)", cl->spec->ssh);
    return false;
  }
  list_add_tail(&cl->sent, &r->link);
  cl->inflight++;
  return true;
}

/* Read a reply: slurmrestd's JSON, or what a command printed. For a command, r->status
 * becomes what slurmrestd would have answered (200 done, 404 no such job, 400 refused, 500
 * no decision), so both kinds of cluster take the same paths below. */
static int reply_parse(struct sreq *r, enum slurm_req_kind kind, struct slurm_reply *rep, char *perr, size_t len) {
  if (!is_ssh(r->cl)) return slurm_parse_reply(r->ver, kind, (int)r->status, r->body.data, r->body.len, rep, perr, len);
  static const enum slurm_cmd_kind sc[RQ__MAX] = {
      [RQ_PING] = SC_LIST,     [RQ_JOBS] = SC_LIST, [RQ_JOB] = SC_JOB,   [RQ_SUBMIT] = SC_SUBMIT,
      [RQ_CANCEL] = SC_CANCEL, [RQ_NODE] = SC_NODE, [RQ_TOKEN] = SC_LIST};
  static const int http[] = {[SCV_OK] = 200, [SCV_REFUSED] = 400, [SCV_GONE] = 404, [SCV_TROUBLE] = 500};
  enum slurm_verdict v =
      slurm_cmd_parse(sc[r->kind], r->exit_status, r->body.data, r->body.len, r->errout.data, r->errout.len, rep);
  r->status = http[v];
  rep->status = (int)r->status;
  if (perr && len) snprintf(perr, len, "%.*s", (int)(len - 1), rep->error);
  return 0;
}

static bool send_one(struct cluster *cl, struct sreq *r) {
  if (is_ssh(cl)) return send_ssh(cl, r);
  char err[256];
  if (curlx_open(err, sizeof err) < 0) {
    slurm_set_error(cl, "%s", err);
    return false;
  }
  const struct cluster_spec *k = cl->spec;
  r->easy = CX.easy_init();
  r->cx.done = on_req_done;
  CURL *e = r->easy;
  char *url = r->kind == RQ_TOKEN ? xstrdup(r->path) : xasprintf("%s/slurm/v0.0.%d/%s", k->base, r->ver, r->path);
  CX.easy_setopt(e, CURLOPT_URL, url);
  free(url);
  if (k->unix_path && r->kind != RQ_TOKEN) CX.easy_setopt(e, CURLOPT_UNIX_SOCKET_PATH, k->unix_path);
  CX.easy_setopt(e, CURLOPT_WRITEFUNCTION, on_body);
  CX.easy_setopt(e, CURLOPT_WRITEDATA, r);
  CX.easy_setopt(e, CURLOPT_ERRORBUFFER, r->errbuf);
  CX.easy_setopt(e, CURLOPT_NOSIGNAL, 1L);
  CX.easy_setopt(e, CURLOPT_USERAGENT, "herd/" HERD_VERSION);
  CX.easy_setopt(e, CURLOPT_TIMEOUT_MS, (long)(k->request_timeout * 1000));
  CX.easy_setopt(e, CURLOPT_CONNECTTIMEOUT_MS, 10000L);
  CX.easy_setopt(e, CURLOPT_PROTOCOLS_STR, "http,https");
  CX.easy_setopt(e, CURLOPT_ACCEPT_ENCODING, ""); /* gzip when the server offers it */
  if (r->kind != RQ_TOKEN) {
    char *h = xasprintf("X-SLURM-USER-NAME: %s", r->job && r->job->s->spec->user ? r->job->s->spec->user : k->user);
    r->hdrs = CX.slist_append(r->hdrs, h);
    free(h);
    if (cl->token) {
      h = xasprintf("X-SLURM-USER-TOKEN: %s", cl->token);
      r->hdrs = CX.slist_append(r->hdrs, h);
      memset(h, 0, strlen(h));
      free(h);
    }
  }
  if (r->post_json && !r->post) {
    json_t *job = json_object_get(r->post_json, "job");
    json_t *gres = json_object_get(job, "gres");
    if (gres && r->ver >= 39) { /* v0.0.39 on take GRES as tres_per_node */
      json_object_set(job, "tres_per_node", gres);
      json_object_del(job, "gres");
    }
    r->post = json_dumps(r->post_json, JSON_COMPACT);
  }
  if (r->post) {
    r->hdrs = CX.slist_append(r->hdrs, r->kind == RQ_TOKEN ? "Content-Type: application/x-www-form-urlencoded"
                                                           : "Content-Type: application/json");
    CX.easy_setopt(e, CURLOPT_POSTFIELDS, r->post);
  } else if (strcmp(r->method, "GET")) {
    CX.easy_setopt(e, CURLOPT_CUSTOMREQUEST, r->method);
  }
  r->hdrs = CX.slist_append(r->hdrs, "Accept: application/json");
  CX.easy_setopt(e, CURLOPT_HTTPHEADER, r->hdrs);
  r->t0 = now_mono();
  r->sent = true;
  cl->requests[r->kind]++;
  if (r->post) cl->bytes_out += strlen(r->post);
  if (curlx_add(e, &r->cx) != CURLM_OK) return false;
  list_add_tail(&cl->sent, &r->link);
  cl->inflight++;
  return true;
}

static void fail_queued(struct cluster *cl, const char *why) {
  while (!list_empty(&cl->queue)) {
    struct sreq *r = container_of(cl->queue.next, struct sreq, link);
    list_del(&r->link);
    r->never_sent = true; /* it waited here: nothing of it left */
    r->done(r, false, why);
    sreq_free(r);
  }
}

static void probe_next(struct cluster *cl);

/* Send what the rate limit, the in-flight cap, the version and the token allow. */
void slurm_dispatch(struct cluster *cl) {
  if (cl->closing) return;
  while (!list_empty(&cl->queue) && cl->inflight < MAX_INFLIGHT) {
    struct sreq *r = container_of(cl->queue.next, struct sreq, link);
    if (r->kind != RQ_TOKEN && !is_ssh(cl)) {
      if (!slurm_auth_ready(cl)) {
        if (!cl->token_busy && cl->error[0]) fail_queued(cl, cl->error);
        return; /* waits for the token */
      }
      if (!cl->ver && r->kind != RQ_PING) {
        if (cl->probe) return; /* waits for the version */
        probe_next(cl);
        continue;
      }
    }
    /* Token bucket: rate_limit per second, bursts up to one second's worth. */
    double now = now_mono(), rate = cl->spec->rate_limit;
    cl->bucket = fmin(rate, cl->bucket + (now - cl->bucket_at) * rate);
    cl->bucket_at = now;
    if (cl->bucket < 1) {
      timer_arm(cl->d->loop, &cl->pace_timer, on_pace, now + (1 - cl->bucket) / rate);
      return;
    }
    cl->bucket -= 1;
    list_del(&r->link);
    if (!r->ver) r->ver = cl->ver;
    if (!send_one(cl, r)) {
      r->never_sent = true;
      r->done(r, false, cl->error[0] ? cl->error : "cannot start the request");
      sreq_free(r);
    }
  }
}

/* Describe a failed reply for people (never including a secret). */
/* Whether a Slurm error number means the request never got to a decision: -1 (what 22.05
 * says for a rejected token and for an unreachable slurmctld alike), the protocol errors
 * (1000s, e.g. 1007 "Protocol authentication error") and the socket errors (5000s, e.g.
 * 5005 "Zero Bytes were transmitted or received", a token slurmctld refused on submit).
 * ESLURM_* job errors (2000 and up) and slurmrestd's parsing errors (9000s) are answers. */
static bool no_decision(int code) {
  return code <= 0 || (code >= 1000 && code < 2000) || (code >= 5000 && code < 6000);
}

static void describe(struct sreq *r, bool ok, const char *terr, const struct slurm_reply *rep, char *out, size_t len) {
  if (is_ssh(r->cl) && ok) {
    snprintf(out, len, "%s on %s: %.300s", cmd_names[r->kind], r->cl->spec->ssh,
             rep && rep->error[0] ? rep->error : "failed");
  } else if (!ok) {
    snprintf(out, len, "%.*s", (int)(len - 1), terr);
  } else if (r->status == 401) {
    snprintf(out, len, "authentication failed: slurmrestd refused the request (HTTP 401): check auth and user");
  } else if (r->status >= 500 && (!rep || no_decision(rep->error_code))) {
    /* slurmrestd 22.05 answers a rejected token and an unreachable slurmctld alike (500,
     * "Unspecified error"); only the time tells them apart: slurmctld's connect timeout is ~9 s. */
    if (r->elapsed < 5)
      snprintf(out, len,
               "HTTP %ld in %.0f ms: slurmctld rejected the request at once: the token is probably bad or expired "
               "(%.200s)",
               r->status, r->elapsed * 1e3, rep && rep->error[0] ? rep->error : "no detail");
    else
      snprintf(out, len, "HTTP %ld after %.1f s: slurmctld unreachable (%.200s)", r->status, r->elapsed,
               rep && rep->error[0] ? rep->error : "no detail");
  } else {
    snprintf(out, len, "HTTP %ld: %.300s", r->status, rep && rep->error[0] ? rep->error : "unexpected reply");
  }
}

/* ---- version discovery ---- */

static void on_probe(struct sreq *r, bool ok, const char *terr) {
  struct cluster *cl = r->cl;
  cl->probe = 0;
  if (ok && r->status == 404) { /* not served: try the next older one */
    if (r->ver > PROBE_OLDEST) {
      cl->probe = r->ver - 1;
      struct sreq *n = slurm_sreq_new(cl, RQ_PING, "GET", xstrdup("ping"), NULL, on_probe);
      n->ver = cl->probe;
      slurm_enqueue(cl, n, true);
      return;
    }
    slurm_set_error(cl, "slurmrestd serves no API version herd knows (v0.0.38 to v0.0.%d)", SLURM_API_NEWEST);
  } else if (ok && r->status != 401 && r->status < 600 && r->status >= 200) {
    cl->ver = r->ver; /* served (a 500 here means slurmctld trouble, not a missing version) */
    log_msg(LOG_INFO, NULL, NULL, NULL, "cluster %s: slurmrestd serves API v0.0.%d", cl->spec->name, cl->ver);
  } else {
    char why[300];
    describe(r, ok, terr, NULL, why, sizeof why);
    slurm_set_error(cl, "cannot find the API version: %s", why);
  }
  if (!cl->ver) {
    fail_queued(cl, cl->error);
    cl->fails++;
  }
  slurm_dispatch(cl);
}

static void probe_next(struct cluster *cl) {
  cl->probe = SLURM_API_NEWEST;
  struct sreq *r = slurm_sreq_new(cl, RQ_PING, "GET", xstrdup("ping"), NULL, on_probe);
  r->ver = cl->probe;
  list_add_tail(cl->queue.next, &r->link);
}

/* ---- job state -> events ---- */

static bool job_is_live(const struct slurm_job *j) {
  struct slurm_outcome o;
  slurm_job_outcome(j, &o);
  return o.phase != SP_ENDED;
}

static void node_lookup(struct cluster *cl, const char *name);

static const char *node_addr(struct cluster *cl, const char *name) {
  for (size_t i = 0; i < cl->nnodes; i++)
    if (!strcmp(cl->nodes[i].name, name)) return cl->nodes[i].addr[0] ? cl->nodes[i].addr : NULL;
  return NULL;
}

/* What one listing (or GET job) says of a service's job. */
static void job_seen(struct sjob *j, const struct slurm_job *sj) {
  struct service *s = j->s;
  if (!s->fsm.proc_alive) return; /* its end was reported already */
  snprintf(j->state, sizeof j->state, "%s", sj->state);
  snprintf(j->reason, sizeof j->reason, "%s", sj->reason);
  snprintf(j->host, sizeof j->host, "%s", sj->batch_host);
  snprintf(j->desc, sizeof j->desc, "%.159s", sj->description);
  j->submit_time = sj->submit_time;
  j->start_time = sj->start_time;
  j->end_time = sj->end_time;
  struct slurm_outcome o;
  slurm_job_outcome(sj, &o);
  char msg[256];
  switch (o.phase) {
  case SP_QUEUED:
    if (sj->start_time > 0 && sj->start_time > (int64_t)now_wall()) {
      char when[32];
      time_t t = (time_t)sj->start_time;
      strftime(when, sizeof when, "%Y-%m-%dT%H:%M:%S", localtime(&t));
      snprintf(msg, sizeof msg, "job %lld %s, expected start %s", (long long)j->job_id, o.msg, when);
    } else {
      snprintf(msg, sizeof msg, "job %lld %s", (long long)j->job_id, o.msg);
    }
    feed(s, EV_QUEUED, 0, 0, 0, msg); /* still PENDING: only the queue's reason changes */
    break;
  case SP_RUNNING: {
    if (sj->batch_host[0] && !node_addr(j->cl, sj->batch_host)) node_lookup(j->cl, sj->batch_host);
    snprintf(msg, sizeof msg, "job %lld %.120s on %.100s", (long long)j->job_id, o.msg,
             sj->batch_host[0] ? sj->batch_host : "?");
    struct run_event ev = {.type = EV_RUNNING, .msg = msg, .facts = RUN_HOST, .host = job_host(j)};
    if (s->fsm.state == S_SUBMITTED || s->fsm.state == S_PENDING || s->fsm.state == S_UNKNOWN) {
      ev.facts |= RUN_RUNNING; /* its uptime counts from the job's start */
      ev.since = sj->start_time > 0 ? (double)sj->start_time : now_wall();
    }
    run_post(s, &ev);
    break;
  }
  case SP_ENDING: break; /* COMPLETING: the final state follows */
  case SP_UNKNOWN:
    snprintf(msg, sizeof msg, "job %lld in a state herd does not know: %s", (long long)j->job_id, sj->state);
    feed(s, EV_LOST, 0, 0, 0, msg);
    break;
  case SP_ENDED:
    snprintf(msg, sizeof msg, "job %lld %s", (long long)j->job_id, o.msg);
    logpipe_note(s, "%s", msg);
    feed(s, EV_EXIT, o.code, o.sig, o.end, msg);
    break;
  }
}

static void job_gone(struct sjob *j, const char *why) {
  if (!j->s->fsm.proc_alive) return;
  char msg[256];
  snprintf(msg, sizeof msg, "job %lld %s", (long long)j->job_id, why);
  logpipe_note(j->s, "%s", msg);
  feed(j->s, EV_EXIT, -1, 0, j->s->fsm.state == S_STOPPING ? S_STOPPED : S_FAILED, msg);
}

static void on_job_get(struct sreq *r, bool ok, const char *terr) {
  struct sjob *j = r->job;
  if (!j) return;
  j->confirming = false;
  if (j->job_id != r->job_id || !j->s->fsm.proc_alive) return;
  struct slurm_reply rep;
  char perr[256];
  int prc = ok ? reply_parse(r, SR_JOBS, &rep, perr, sizeof perr) : -1;
  if (prc == 0 && rep.error_code == 2017) {
    job_gone(j, "is gone from Slurm (ended longer ago than MinJobAge, or purged)");
  } else if (prc == 0 && r->status == 200) {
    for (size_t i = 0; i < rep.njobs; i++)
      if ((int64_t)rep.jobs[i].job_id == j->job_id) job_seen(j, &rep.jobs[i]);
  }
  if (prc == 0 || ok) slurm_reply_free(&rep);
}

static void confirm_missing(struct sjob *j) {
  if (j->confirming || !j->s->fsm.proc_alive) return;
  j->confirming = true;
  char *path = is_ssh(j->cl) ? slurm_cmd_job(j->job_id) : xasprintf("job/%lld", (long long)j->job_id);
  struct sreq *r = slurm_sreq_new(j->cl, RQ_JOB, "GET", path, NULL, on_job_get);
  r->job = j;
  r->job_id = j->job_id;
  slurm_enqueue(j->cl, r, false);
}

static void on_node(struct sreq *r, bool ok, const char *terr) {
  (void)terr;
  struct cluster *cl = r->cl;
  if (!ok || (!is_ssh(cl) && r->status != 200) || (is_ssh(cl) && r->exit_status != 0)) return;
  json_t *root = NULL;
  const char *name = NULL;
  if (is_ssh(cl)) { /* the node's line in sinfo's text */
    for (size_t i = 0; i < cl->nnodes; i++)
      if (!cl->nodes[i].addr[0] && slurm_cmd_node_addr(r->body.data, r->body.len, cl->nodes[i].name, cl->nodes[i].addr,
                                                       sizeof cl->nodes[i].addr))
        name = cl->nodes[i].name;
  } else {
    root = json_loadb(r->body.data ? r->body.data : "", r->body.len, 0, NULL);
    json_t *n = json_array_get(json_object_get(root, "nodes"), 0);
    name = json_string_value(json_object_get(n, "name"));
    const char *addr = json_string_value(json_object_get(n, "address"));
    for (size_t i = 0; name && addr && i < cl->nnodes; i++)
      if (!strcmp(cl->nodes[i].name, name)) snprintf(cl->nodes[i].addr, sizeof cl->nodes[i].addr, "%s", addr);
  }
  /* The services whose jobs run there are now reached at its address. */
  struct list *pos, *tmp;
  list_for_each_safe(pos, tmp, &cl->jobs) {
    struct sjob *j = container_of(pos, struct sjob, link);
    if (!name || strcmp(j->host, name) || !j->s->fsm.proc_alive) continue;
    struct run_event ev = {.type = EV__MAX, .facts = RUN_HOST, .host = job_host(j)};
    run_post(j->s, &ev);
  }
  json_decref(root);
}

static void node_lookup(struct cluster *cl, const char *name) {
  for (size_t i = 0; i < cl->nnodes; i++)
    if (!strcmp(cl->nodes[i].name, name)) return; /* asked already */
  cl->nodes = xrealloc(cl->nodes, (cl->nnodes + 1) * sizeof *cl->nodes);
  struct node_addr *n = &cl->nodes[cl->nnodes++];
  memset(n, 0, sizeof *n);
  snprintf(n->name, sizeof n->name, "%s", name);
  slurm_enqueue(
      cl,
      slurm_sreq_new(cl, RQ_NODE, "GET", is_ssh(cl) ? slurm_cmd_node(name) : xasprintf("node/%s", name), NULL, on_node),
      false);
}

/* ---- cancel ---- */

static void on_cancel(struct sreq *r, bool ok, const char *terr) {
  struct cluster *cl = r->cl;
  struct slurm_reply rep;
  char perr[256], why[400];
  int prc = ok ? reply_parse(r, SR_OTHER, &rep, perr, sizeof perr) : -1;
  if (ok && r->status == 200 && prc == 0 && !rep.nerrors) {
    /* Accepted; the next poll confirms the end. */
  } else if (prc == 0 && rep.error_code == 2017) {
    /* Already gone: the poll (and GET job) will say so. */
  } else {
    describe(r, ok, terr, prc == 0 ? &rep : NULL, why, sizeof why);
    log_msg(LOG_WARN, r->job ? r->job->s->spec->name : NULL, NULL, NULL, "cancel of job %lld failed: %s",
            (long long)r->job_id, why);
    if (!ok || r->status >= 500) slurm_set_error(cl, "cancel: %s", why);
  }
  if (prc == 0 || ok) slurm_reply_free(&rep);
  if (!(ok && r->status == 200) && cl->d->shutting_down && r->job) {
    /* Its stop may now be left to the next daemon (may_leave): the runner looks again. */
    struct run_event ev = {.type = EV__MAX};
    run_post(r->job->s, &ev);
  }
  cl->need_full = true;
  slurm_poll_schedule(cl, now_mono() + fmin(cl->spec->poll_interval, 0.2));
}

static void cancel_job(struct cluster *cl, struct sjob *j, int64_t job_id) {
  char *path = is_ssh(cl) ? slurm_cmd_cancel(job_id) : xasprintf("job/%lld", (long long)job_id);
  struct sreq *r = slurm_sreq_new(cl, RQ_CANCEL, "DELETE", path, NULL, on_cancel);
  r->job = j;
  r->job_id = job_id;
  slurm_enqueue(cl, r, true);
}

static void slurm_signal(struct service *s, int sig) {
  (void)sig; /* a stop signal or the grace's SIGKILL: either way the job is cancelled */
  struct sjob *j = SJ(s);
  if (!j) return;
  if (!j->job_id) {
    j->cancel_wanted = true; /* the submission is in flight or unconfirmed */
    return;
  }
  logpipe_note(s, "cancelling job %lld", (long long)j->job_id);
  cancel_job(j->cl, j, j->job_id);
}

/* ---- polling ---- */

/* The next tick's length: short while anything of ours is changing (submitted, queued,
 * starting, stopping, unknown, being looked for), long when every job is steady or there is
 * none (stray herd jobs are still looked for, rarely), doubling after failures. */
static double tick_length(struct cluster *cl) {
  if (cl->fails) return fmin(cl->spec->poll_interval * pow(2, cl->fails), POLL_BACKOFF_MAX);
  struct list *pos, *tmp;
  list_for_each_safe(pos, tmp, &cl->jobs) {
    struct sjob *j = container_of(pos, struct sjob, link);
    svc_state st = j->s->fsm.state;
    if (j->searching || (j->s->fsm.proc_alive && st != S_HEALTHY && st != S_UNHEALTHY)) return cl->spec->poll_interval;
  }
  return cl->spec->steady_interval;
}

static void on_poll_timer(uv_timer_t *t);

void slurm_poll_schedule(struct cluster *cl, double at) {
  if (cl->closing) return;
  if (cl->poll) { /* after the one in flight */
    if (at < cl->next_poll) cl->next_poll = at;
    return;
  }
  if (uv_is_active((uv_handle_t *)&cl->poll_timer) && cl->next_poll <= at) return;
  cl->next_poll = at;
  timer_arm(cl->d->loop, &cl->poll_timer, on_poll_timer, at);
}

static void poll_next(struct cluster *cl) {
  /* A tick counts from the previous poll's start, so a slow listing does not stretch it. */
  slurm_poll_schedule(cl, fmin(cl->next_poll, cl->poll_t0 + tick_length(cl)));
}

static int cmp_job_id(const void *a, const void *b) {
  uint64_t x = ((const struct slurm_job *)a)->job_id, y = ((const struct slurm_job *)b)->job_id;
  return x < y ? -1 : x > y;
}

/* "herd:<id>:<service>:<attempt>": the service and attempt of one of our jobs. */
static bool parse_tag(struct cluster *cl, const char *comment, char *svc, size_t len, unsigned *attempt) {
  size_t tl = strlen(cl->tag);
  if (strncmp(comment, cl->tag, tl)) return false;
  const char *p = comment + tl, *colon = strrchr(p, ':');
  if (!colon || (size_t)(colon - p) >= len) return false;
  memcpy(svc, p, (size_t)(colon - p));
  svc[colon - p] = '\0';
  *attempt = (unsigned)strtoul(colon + 1, NULL, 10);
  return true;
}

static void stray(struct cluster *cl, const struct slurm_job *sj, const char *why) {
  double now = now_mono();
  size_t slot = 0;
  for (size_t i = 0; i < ARRAY_LEN(cl->stray_id); i++) {
    if (cl->stray_id[i] == (int64_t)sj->job_id) {
      if (now - cl->stray_at[i] < 30) return; /* asked recently */
      slot = i;
      break;
    }
    if (cl->stray_at[i] < cl->stray_at[slot]) slot = i;
  }
  cl->stray_id[slot] = (int64_t)sj->job_id;
  cl->stray_at[slot] = now;
  log_msg(LOG_INFO, NULL, NULL, NULL, "cluster %s: cancelling job %llu (%s): %s", cl->spec->name,
          (unsigned long long)sj->job_id, sj->comment, why);
  cancel_job(cl, NULL, (int64_t)sj->job_id);
}

static void process_listing(struct cluster *cl, struct slurm_reply *rep) {
  struct daemon *d = cl->d;
  /* Ours only: the listing has every user's jobs. */
  size_t n = 0;
  for (size_t i = 0; i < rep->njobs; i++)
    if (!strncmp(rep->jobs[i].comment, cl->tag, strlen(cl->tag))) rep->jobs[n++] = rep->jobs[i];
  rep->njobs = n;
  if (n) qsort(rep->jobs, n, sizeof *rep->jobs, cmp_job_id); /* (jobs is NULL in an empty listing) */
  bool *claimed = xcalloc(n + 1, sizeof *claimed);
  struct list *pos, *tmp;
  list_for_each_safe(pos, tmp, &cl->jobs) {
    struct sjob *j = container_of(pos, struct sjob, link);
    if (j->job_id) {
      struct slurm_job key = {.job_id = (uint64_t)j->job_id};
      struct slurm_job *sj = n ? bsearch(&key, rep->jobs, n, sizeof *rep->jobs, cmp_job_id) : NULL;
      if (sj) {
        claimed[sj - rep->jobs] = true;
        if (is_ssh(cl) && !sj->exit_known && !job_is_live(sj) && j->s->fsm.proc_alive)
          confirm_missing(j); /* ended: squeue has no exit code, scontrol has */
        else
          job_seen(j, sj);
      } else if (j->s->fsm.proc_alive) {
        confirm_missing(j); /* missing from the listing: ask for it before concluding anything */
      }
    } else if (j->searching && !j->submit) {
      /* Did our unconfirmed submission make it? Look for its tag. */
      struct sjob *found = NULL;
      for (size_t i = 0; i < n && !found; i++) {
        char name[128];
        unsigned att;
        if (parse_tag(cl, rep->jobs[i].comment, name, sizeof name, &att) && !strcmp(name, j->s->spec->name) &&
            att == j->s->fsm.attempt) {
          claimed[i] = true;
          j->searching = false;
          j->job_id = (int64_t)rep->jobs[i].job_id;
          char msg[160];
          snprintf(msg, sizeof msg, "job %lld found by its tag on cluster %s", (long long)j->job_id, cl->spec->name);
          logpipe_note(j->s, "%s", msg);
          found = j;
          struct run_event ev = {
              .type = EV_STARTED, .msg = msg, .facts = RUN_JOB, .job_id = j->job_id, .job_where = cl->spec->name};
          run_post(j->s, &ev);
          if (j->cancel_wanted) cancel_job(cl, j, j->job_id);
          job_seen(j, &rep->jobs[i]);
        }
      }
      if (!found) {
        j->searching = false;
        feed(j->s, EV_SPAWN_FAILED, -1, 0, 0, "the submission never reached Slurm (no job carries its tag)");
      }
    }
  }
  /* Herd's jobs that no service claims: left over from a removed service or an old attempt. */
  for (size_t i = 0; i < n; i++) {
    if (claimed[i] || !job_is_live(&rep->jobs[i])) continue;
    char name[128];
    unsigned att;
    if (!parse_tag(cl, rep->jobs[i].comment, name, sizeof name, &att)) continue;
    struct service *s = daemon_find(d, name);
    struct sjob *j = SJ(s);
    if (j && !j->job_id && att == s->fsm.attempt) continue; /* its submit reply is still on its way */
    if (!s || s->be != &slurm_backend)
      stray(cl, &rep->jobs[i], "its service no longer exists");
    else if (strcmp(s->spec->slurm->cluster, cl->spec->name))
      stray(cl, &rep->jobs[i], "its service moved to another cluster");
    else
      stray(cl, &rep->jobs[i], "not the service's current job (a leftover attempt)");
  }
  free(claimed);
}

static void on_poll(struct sreq *r, bool ok, const char *terr) {
  struct cluster *cl = r->cl;
  cl->poll = NULL;
  cl->poll_t0 = r->t0;
  cl->polls++;
  cl->poll_seconds += r->elapsed;
  struct slurm_reply rep;
  char perr[256];
  int prc = ok ? reply_parse(r, SR_JOBS, &rep, perr, sizeof perr) : -1;
  bool good = ok && prc == 0 && (r->status == 200 || r->status == 304) && !(r->status == 200 && rep.nerrors);
  if (good) {
    slurm_clear_error(cl);
    if (rep.unchanged) {
      cl->polls_unchanged++;
    } else {
      cl->update_time = rep.last_update > 0 ? rep.last_update : r->sent_second;
      cl->last_full = r->t0;
      cl->need_full = false;
      process_listing(cl, &rep);
    }
  } else {
    char why[400];
    describe(r, ok, terr, prc == 0 ? &rep : NULL, why, sizeof why);
    if (ok && prc != 0) snprintf(why, sizeof why, "HTTP %ld: %s", r->status, perr);
    slurm_set_error(cl, "%s", why);
    cl->fails++;
    cl->need_full = true;
    char msg[300];
    snprintf(msg, sizeof msg, "Slurm unreachable: %.270s", why);
    struct list *pos, *tmp;
    list_for_each_safe(pos, tmp, &cl->jobs) {
      struct sjob *j = container_of(pos, struct sjob, link);
      /* (a submission still waiting for its answer has no job to lose sight of) */
      if (j->s->fsm.proc_alive && (j->job_id || j->searching)) feed(j->s, EV_LOST, 0, 0, 0, msg);
    }
  }
  if (prc == 0 || ok) slurm_reply_free(&rep);
  /* Not reset here: an earlier poll asked for while this one was in flight (a cancel, a
   * submit) is kept in next_poll and wins over the regular tick. */
  poll_next(cl);
}

static void on_poll_timer(uv_timer_t *t) {
  struct cluster *cl = t->data;
  if (cl->poll || cl->closing) return;
  cl->next_poll = INFINITY;
  double now = now_mono();
  bool searching = false;
  struct list *pos, *tmp;
  list_for_each_safe(pos, tmp, &cl->jobs) {
    struct sjob *j = container_of(pos, struct sjob, link);
    searching |= j->searching && !j->submit;
  }
  bool full = cl->need_full || !cl->update_time || searching || now - cl->last_full >= cl->spec->full_refresh;
  char *path = is_ssh(cl) ? slurm_cmd_list() /* squeue has no "changed since": always the whole listing */
               : full     ? xstrdup("jobs")
                          : xasprintf("jobs?update_time=%lld", (long long)cl->update_time);
  struct sreq *r = slurm_sreq_new(cl, RQ_JOBS, "GET", path, NULL, on_poll);
  r->sent_second = (int64_t)now_wall(); /* the next update_time, if this listing is full */
  cl->poll = r;
  slurm_enqueue(cl, r, true);
}

/* ---- submit ---- */

static void on_submit(struct sreq *r, bool ok, const char *terr) {
  struct cluster *cl = r->cl;
  struct sjob *j = r->job;
  struct slurm_reply rep;
  char perr[256], why[400];
  int prc = ok ? reply_parse(r, SR_SUBMIT, &rep, perr, sizeof perr) : -1;
  if (j) j->submit = NULL;
  int64_t job_id = prc == 0 ? rep.job_id : 0;
  if (!j) { /* the service went away meanwhile */
    if (job_id > 0) cancel_job(cl, NULL, job_id);
  } else if (ok && prc == 0 && r->status == 200 && job_id > 0 && !rep.nerrors) {
    j->job_id = job_id;
    char msg[200];
    snprintf(msg, sizeof msg, "job %lld on cluster %.60s%s%.100s", (long long)job_id, cl->spec->name,
             rep.submit_msg[0] ? ": " : "", rep.submit_msg);
    logpipe_note(j->s, "submitted %s", msg);
    if (j->cancel_wanted) cancel_job(cl, j, job_id);
    struct run_event ev = {
        .type = EV_STARTED, .msg = msg, .facts = RUN_JOB, .job_id = job_id, .job_where = cl->spec->name};
    run_post(j->s, &ev);
  } else if (ok && prc == 0 &&
             (job_id > 0 || (r->status >= 400 && r->status < 500 && r->status != 401) ||
              (r->status >= 500 && !no_decision(rep.error_code)))) {
    /* Slurm said no (a job it created anyway, as with error 2015, is cancelled). */
    snprintf(why, sizeof why, "Slurm refused the job: %.340s%s", rep.error[0] ? rep.error : "no reason given",
             job_id > 0 ? " (its job was cancelled)" : "");
    if (job_id > 0) cancel_job(cl, NULL, job_id);
    logpipe_note(j->s, "%s", why);
    feed(j->s, EV_SPAWN_FAILED, -1, 0, 0, why);
  } else if (!ok && r->never_sent) {
    /* It never left: nothing to look for. Submitted again once the cluster answers. */
    slurm_set_error(cl, "submit: %s", terr);
    snprintf(why, sizeof why, "not submitted: %.300s (submitted when the cluster answers)", terr);
    logpipe_note(j->s, "%s", why);
    run_post_event(j->s, EV_DEFERRED, 0, 0, why);
  } else {
    /* No answer we can trust: the job may exist. Never submit again blindly: the next
     * listing looks for this attempt's tag. */
    describe(r, ok, terr, prc == 0 ? &rep : NULL, why, sizeof why);
    if (ok && prc != 0 && r->status < 500) snprintf(why, sizeof why, "HTTP %ld: %s", r->status, perr);
    slurm_set_error(cl, "submit: %s", why);
    j->searching = true;
    char msg[460];
    snprintf(msg, sizeof msg, "submission not confirmed: %s", why);
    cl->need_full = true;
    feed(j->s, EV_LOST, 0, 0, 0, msg);
  }
  if (prc == 0 || ok) slurm_reply_free(&rep);
  slurm_poll_schedule(cl, now_mono() + cl->spec->poll_interval);
}

static void json_env(json_t *env, const char *kv) {
  const char *eq = strchr(kv, '=');
  if (!eq) return;
  char *k = strndup(kv, (size_t)(eq - kv));
  json_object_set_new(env, k, json_string(eq + 1));
  free(k);
}

/* The job's stdout path as given to Slurm (%j, %x unexpanded). Caller frees. */
static char *output_pattern(struct cluster *cl, const struct spec *sp) {
  if (sp->slurm->output) return xstrdup(sp->slurm->output);
  return xasprintf("%s/%s.%s-%%j.out", sp->cwd ? sp->cwd : cl->spec->cwd, cl->spec->job_prefix, sp->name);
}

/* Expand %j, %x and %% as Slurm does for the common cases (for people to find the file). */
static char *output_path(struct sjob *j) {
  const struct spec *sp = j->s->spec;
  char *pat = output_pattern(j->cl, sp);
  struct buf b = {0};
  for (const char *p = pat; *p; p++) {
    if (p[0] == '%' && p[1] == 'j') {
      buf_printf(&b, "%lld", (long long)j->job_id);
      p++;
    } else if (p[0] == '%' && p[1] == 'x') {
      buf_printf(&b, "%s.%s", j->cl->spec->job_prefix, sp->name);
      p++;
    } else if (p[0] == '%' && p[1] == '%') {
      buf_lit(&b, "%");
      p++;
    } else {
      buf_append(&b, p, 1);
    }
  }
  buf_append(&b, "", 1);
  free(pat);
  return b.data;
}

static void slurm_plan(struct service *s, struct run_plan *p) {
  struct sjob *j = SJ(s);
  if (j) p->job_where = j->cl->spec->name; /* recorded as being submitted (job 0) */
}

/* sbatch on the login node: the script on its standard input, the job's settings and
 * environment on its command line (the login user's environment, plus these). */
static int ssh_submit(struct service *s, struct sjob *j, char *err, size_t errlen) {
  struct cluster *cl = j->cl;
  const struct spec *sp = s->spec;
  const struct slurm_spec *k = sp->slurm;
  size_t ne = 0;
  for (char **e = sp->env; e && *e; e++) ne++;
  const char **env = xcalloc(ne + 5, sizeof *env);
  char *own[4] = {0};
  size_t n = 0;
  bool has_port = false;
  for (char **e = sp->env; e && *e; e++) {
    env[n++] = *e;
    has_port |= !strncmp(*e, "PORT=", 5);
  }
  env[n++] = own[0] = xasprintf("HERD_SERVICE=%s", sp->name);
  env[n++] = own[1] = xasprintf("HERD_ATTEMPT=%u", s->fsm.attempt);
  if (s->port) {
    env[n++] = own[2] = xasprintf("HERD_PORT=%d", s->port);
    if (!has_port) env[n++] = own[3] = xasprintf("PORT=%d", s->port);
  }
  char *name = xasprintf("%s.%s", cl->spec->job_prefix, sp->name);
  char *tag = xasprintf("%s%s:%u", cl->tag, sp->name, s->fsm.attempt);
  char *out = output_pattern(cl, sp);
  struct slurm_cmd_submit sub = {.name = name,
                                 .comment = tag,
                                 .cwd = sp->cwd ? sp->cwd : cl->spec->cwd,
                                 .output = out,
                                 .error = k->error,
                                 .partition = k->partition,
                                 .nodes = k->nodes,
                                 .gres = k->gres,
                                 .account = k->account,
                                 .qos = k->qos,
                                 .time_limit = k->time_limit,
                                 .cpus_per_task = k->cpus_per_task,
                                 .memory_mb = k->memory_mb,
                                 .mcs_label = cl->spec->mcs_label,
                                 .env = env};
  char *cmd = slurm_cmd_submit(&sub, err, errlen);
  free(env);
  for (size_t i = 0; i < ARRAY_LEN(own); i++) free(own[i]);
  free(name);
  free(tag);
  free(out);
  if (!cmd) return UV_EINVAL;
  logpipe_note(s, "submitting attempt %u to cluster %s (sbatch on %s)", s->fsm.attempt, cl->spec->name, cl->spec->ssh);
  struct sreq *r = slurm_sreq_new(cl, RQ_SUBMIT, "POST", cmd, xstrdup(k->script), on_submit);
  r->job = j;
  j->submit = r;
  slurm_enqueue(cl, r, false);
  return 0;
}

static int slurm_start(struct service *s, char *err, size_t errlen) {
  struct sjob *j = SJ(s);
  if (!j) {
    snprintf(err, errlen, "no such cluster: %s", s->spec->slurm->cluster);
    return UV_EINVAL;
  }
  struct cluster *cl = j->cl;
  const struct spec *sp = s->spec;
  const struct slurm_spec *k = sp->slurm;
  j->job_id = 0;
  j->searching = j->cancel_wanted = false;
  j->state[0] = j->reason[0] = j->host[0] = '\0';

  if (is_ssh(cl)) return ssh_submit(s, j, err, errlen);
  json_t *env = json_object();
  json_object_set_new(env, "PATH", json_string("/usr/local/bin:/usr/bin:/bin"));
  for (char **e = sp->env; e && *e; e++) json_env(env, *e);
  json_object_set_new(env, "HERD_SERVICE", json_string(sp->name));
  json_object_set_new(env, "HERD_ATTEMPT", json_integer(s->fsm.attempt));
  if (s->port) {
    json_object_set_new(env, "HERD_PORT", json_integer(s->port));
    if (!json_object_get(env, "PORT")) json_object_set_new(env, "PORT", json_integer(s->port));
  }
  const char *cwd = sp->cwd ? sp->cwd : cl->spec->cwd;
  char *name = xasprintf("%s.%s", cl->spec->job_prefix, sp->name);
  char *tag = xasprintf("%s%s:%u", cl->tag, sp->name, s->fsm.attempt);
  json_t *job = json_pack("{s:s,s:s,s:s,s:o,s:i}", "name", name, "comment", tag, "current_working_directory", cwd,
                          "environment", env, "tasks", 1);
  if (cl->spec->mcs_label) json_object_set_new(job, "mcs_label", json_string(tag));
  if (k->partition) json_object_set_new(job, "partition", json_string(k->partition));
  if (k->time_limit) json_object_set_new(job, "time_limit", json_integer(k->time_limit));
  json_object_set_new(job, "nodes", json_string(k->nodes ? k->nodes : "1"));
  if (k->cpus_per_task) json_object_set_new(job, "cpus_per_task", json_integer(k->cpus_per_task));
  if (k->memory_mb) json_object_set_new(job, "memory_per_node", json_integer((json_int_t)k->memory_mb));
  if (k->gres) json_object_set_new(job, "gres", json_string(k->gres)); /* renamed at send time for v0.0.39+ */
  if (k->account) json_object_set_new(job, "account", json_string(k->account));
  if (k->qos) json_object_set_new(job, "qos", json_string(k->qos));
  char *out = output_pattern(cl, sp);
  json_object_set_new(job, "standard_output", json_string(out));
  if (k->error) json_object_set_new(job, "standard_error", json_string(k->error));
  json_t *body = json_pack("{s:s,s:o}", "script", k->script, "job", job);
  free(out);
  free(name);
  free(tag);
  logpipe_note(s, "submitting attempt %u to cluster %s", s->fsm.attempt, cl->spec->name);
  struct sreq *r = slurm_sreq_new(cl, RQ_SUBMIT, "POST", xstrdup("job/submit"), NULL, on_submit);
  r->post_json = body; /* serialized when sent: the API version may not be known yet */
  r->job = j;
  j->submit = r;
  slurm_enqueue(cl, r, false);
  return 0;
}

/* ---- services ---- */

static void slurm_attach(struct service *s) {
  struct sjob *j = s->run;
  struct cluster *cl = cluster_named(s->d, s->spec->slurm->cluster);
  if (j && j->cl == cl) return;
  if (j) { /* its cluster changed (a spec swap at rest) */
    list_del(&j->link);
    if (!cl) {
      free(j);
      s->run = NULL;
      return;
    }
  }
  if (!cl) return; /* no such cluster: its starts fail and say so */
  if (!j) {
    j = xcalloc(1, sizeof *j);
    j->s = s;
    s->run = j;
  }
  j->cl = cl;
  list_add_tail(&cl->jobs, &j->link);
}

static void drop_refs(struct list *l, struct sjob *j) {
  struct list *pos, *tmp;
  list_for_each_safe(pos, tmp, l) {
    struct sreq *r = container_of(pos, struct sreq, link);
    if (r->job == j) r->job = NULL;
  }
}

/* Forget the service: requests in flight are dropped on arrival, polls no longer see it. */
static void slurm_release(struct service *s) {
  struct sjob *j = s->run;
  if (!j) return;
  drop_refs(&j->cl->queue, j);
  drop_refs(&j->cl->sent, j);
  list_del(&j->link);
  free(j);
  s->run = NULL;
}

/* A submission put off (EV_DEFERRED) goes again once the cluster answered a poll. */
static bool slurm_ready(struct service *s) {
  struct sjob *j = SJ(s);
  return !j || !j->cl->error[0];
}

static bool slurm_busy(struct service *s) {
  (void)s;
  return false; /* no handle of its own: a job is watched by its cluster's polls */
}

static void slurm_resume(struct service *s, const struct store_instance *last, struct run_resume *out) {
  struct sjob *j = s->run;
  if (!last) return;
  if (!j) {
    snprintf(out->why, sizeof out->why, "its cluster is no longer configured");
    return;
  }
  /* A job outlives the daemon; the next poll confirms it, or finds its tag (a submission
   * whose answer never came), or reports it gone. */
  out->alive = true;
  out->launching = last->job_id == 0;
  j->job_id = last->job_id;
  j->searching = last->job_id == 0;
  j->cl->need_full = true;
  slurm_poll_schedule(j->cl, now_mono());
  logpipe_note(s, "watching job %lld again after a daemon restart", (long long)last->job_id);
}

/* Shutdown: whether the daemon may exit without this service's job confirmed cancelled
 * (its cluster cannot be reached and its stop grace is over; the store keeps it STOPPING
 * with its job id, and the next daemon cancels it). */
static bool slurm_may_leave(struct service *s) {
  struct sjob *j = s->run;
  if (!j || !j->cl->error[0] || s->fsm.state != S_STOPPING || now_mono() - s->d->shutdown_at < s->spec->stop_grace)
    return false;
  if (!j->left_behind) {
    j->left_behind = true;
    log_msg(LOG_WARN, s->spec->name, NULL, "STOPPING",
            "job %lld: cannot confirm its cancel (%s); leaving it to the next daemon", (long long)j->job_id,
            j->cl->error);
  }
  return true;
}

static const char *job_host(struct sjob *j) {
  if (!j->host[0]) return "";
  const char *a = node_addr(j->cl, j->host);
  return a ? a : j->host;
}

static char *slurm_output_path(struct service *s) {
  struct sjob *j = s->run;
  return j && j->job_id ? output_path(j) : NULL;
}

static const char *slurm_output_host(struct service *s) {
  struct sjob *j = s->run;
  return j ? j->cl->spec->ssh : NULL;
}

static json_t *slurm_describe(struct service *s, bool full) {
  (void)full;
  struct sjob *j = s->run;
  json_t *o = json_pack("{s:s}", "backend", "slurm");
  if (!j) {
    json_object_set_new(o, "slurm", json_null());
    return o;
  }
  json_t *k = json_pack("{s:s}", "cluster", j->cl->spec->name);
  if (j->job_id) json_object_set_new(k, "job_id", json_integer(j->job_id));
  if (j->state[0]) json_object_set_new(k, "job_state", json_string(j->state));
  if (j->reason[0]) json_object_set_new(k, "reason", json_string(j->reason));
  if (j->desc[0]) json_object_set_new(k, "description", json_string(j->desc));
  if (j->host[0]) {
    json_object_set_new(k, "node", json_string(j->host));
    json_object_set_new(k, "host", json_string(job_host(j)));
  }
  if (j->submit_time) json_object_set_new(k, "submit_time", json_integer(j->submit_time));
  if (j->start_time) json_object_set_new(k, "start_time", json_integer(j->start_time));
  if (j->end_time) json_object_set_new(k, "end_time", json_integer(j->end_time));
  if (j->searching) json_object_set_new(k, "searching", json_true());
  if (j->job_id) {
    char *out = output_path(j);
    json_object_set_new(k, "output", json_string(out)); /* on the node's filesystem */
    free(out);
  }
  json_object_set_new(o, "slurm", k);
  return o;
}

static void slurm_detach(struct service *s) { slurm_release(s); }

const struct backend_ops slurm_backend = {
    .name = "slurm",
    .batch = true,
    .attach = slurm_attach,
    .detach = slurm_detach,
    .plan = slurm_plan,
    .start = slurm_start,
    .signal = slurm_signal,
    .resume = slurm_resume,
    .release = slurm_release,
    .busy = slurm_busy,
    .ready = slurm_ready,
    .may_leave = slurm_may_leave,
    .describe = slurm_describe,
    .output_path = slurm_output_path,
    .output_host = slurm_output_host,
};

/* ---- config ---- */

int slurm_check_specs(struct daemon *d, struct spec **specs, size_t n, struct cfg_errors *errs) {
  size_t nk = 0;
  struct list *pos, *tmp;
  list_for_each_safe(pos, tmp, &d->clusters) nk++;
  struct cluster_spec **ks = xcalloc(nk + 1, sizeof *ks);
  nk = slurm_cluster_specs(d, ks, nk);
  struct spec **sl = xcalloc(n + 1, sizeof *sl);
  size_t ns = 0;
  for (size_t i = 0; i < n; i++)
    if (specs[i]->slurm) sl[ns++] = specs[i];
  int k = ns ? cfg_validate_clusters(sl, ns, ks, nk, errs) : 0;
  free(sl);
  free(ks);
  return k;
}

void slurm_check_reload(struct daemon *d, const struct spec_set *set, struct cfg_errors *errs) {
  struct list *pos, *tmp;
  list_for_each_safe(pos, tmp, &d->services) {
    struct service *s = container_of(pos, struct service, link);
    if (!s->spec->slurm || s->removing || strcmp(s->spec->source, "api")) continue;
    bool kept = false;
    for (size_t i = 0; i < set->nclusters; i++) kept |= !strcmp(set->clusters[i]->name, s->spec->slurm->cluster);
    if (!kept)
      cfg_error_add(errs, "reload", 1, 1, s->spec->name,
                    "service %s (added over the API) runs on cluster %s, which the new config lacks", s->spec->name,
                    s->spec->slurm->cluster);
  }
}

/* ---- clusters ---- */

static struct list *clusters_of(struct daemon *d) { return &d->clusters; }

void slurm_on_handle_close(uv_handle_t *h) {
  struct cluster *cl = h->data;
  if (--cl->nhandles == 0) {
    cluster_spec_free(cl->spec);
    cluster_spec_free(cl->next_spec);
    free(cl->token);
    free(cl->nodes);
    free(cl);
  }
}

static struct cluster *cluster_new(struct daemon *d, struct cluster_spec *k) {
  struct cluster *cl = xcalloc(1, sizeof *cl);
  cl->d = d;
  cl->spec = k;
  cl->ver = k->api_version;
  list_init(&cl->jobs);
  list_init(&cl->queue);
  list_init(&cl->sent);
  uv_timer_init(d->loop, &cl->poll_timer);
  uv_timer_init(d->loop, &cl->pace_timer);
  uv_timer_init(d->loop, &cl->tok_timer);
  cl->poll_timer.data = cl->pace_timer.data = cl->tok_timer.data = cl;
  cl->nhandles = 3;
  cl->bucket = k->rate_limit;
  cl->bucket_at = now_mono();
  cl->next_poll = INFINITY;
  snprintf(cl->tag, sizeof cl->tag, "herd:%s:", d->herd_id);
  list_add_tail(&d->clusters, &cl->link);
  slurm_poll_schedule(cl, now_mono());
  return cl;
}

void slurm_init(struct daemon *d, struct cluster_spec **specs, size_t n) {
  for (size_t i = 0; i < n; i++) {
    cluster_new(d, specs[i]);
    specs[i] = NULL;
  }
}

void slurm_reload(struct daemon *d, struct cluster_spec **specs, size_t n) {
  for (size_t i = 0; i < n; i++) {
    struct cluster *cl = cluster_named(d, specs[i]->name);
    if (!cl) {
      cluster_new(d, specs[i]);
    } else if (strcmp(cl->spec->canon, specs[i]->canon)) {
      /* New settings take effect for the next request; jobs and their watch go on. */
      cluster_spec_free(cl->next_spec);
      cl->next_spec = cl->spec;
      cl->spec = specs[i];
      cl->ver = specs[i]->api_version;
      free(cl->token);
      cl->token = NULL;
      cl->token_exp = 0;
      cl->need_full = true;
      log_info("cluster %s: settings changed", cl->spec->name);
    } else {
      cluster_spec_free(specs[i]);
    }
    specs[i] = NULL;
  }
}

size_t slurm_cluster_specs(struct daemon *d, struct cluster_spec **out, size_t max) {
  size_t n = 0;
  struct list *pos, *tmp;
  list_for_each_safe(pos, tmp, &d->clusters) {
    if (n < max) out[n++] = container_of(pos, struct cluster, link)->spec;
  }
  return n;
}

const struct cluster_spec *slurm_cluster_find(struct daemon *d, const char *name) {
  struct cluster *cl = cluster_named(d, name);
  return cl ? cl->spec : NULL;
}

void slurm_close(struct daemon *d) {
  struct list *pos, *tmp;
  list_for_each_safe(pos, tmp, &d->clusters) {
    struct cluster *cl = container_of(pos, struct cluster, link);
    cl->closing = true;
    list_del(&cl->link);
    struct list *p2, *t2;
    list_for_each_safe(p2, t2, &cl->sent) {
      struct sreq *r = container_of(p2, struct sreq, link);
      list_del(&r->link);
      list_init(&r->link);
      if (r->sx) { /* a command: its callback comes later and frees it */
        r->orphan = true;
        sshx_cancel(r->sx);
        continue;
      }
      curlx_remove(r->easy);
      sreq_free(r);
    }
    list_for_each_safe(p2, t2, &cl->queue) {
      struct sreq *r = container_of(p2, struct sreq, link);
      list_del(&r->link);
      sreq_free(r);
    }
    list_for_each_safe(p2, t2, &cl->jobs) {
      struct sjob *j = container_of(p2, struct sjob, link);
      list_del(&j->link);
      list_init(&j->link);
    }
    if (cl->token_busy && cl->spec->auth == AUTH_TOKEN_COMMAND) {
      /* Not waited for: its group is killed and its handles go now (the exit is not needed). */
      slurm_tok_kill(cl);
      cl->token_busy = false;
      buf_free(&cl->tokbuf);
      uv_close((uv_handle_t *)&cl->tokproc, slurm_on_handle_close);
      uv_close((uv_handle_t *)&cl->tokout, slurm_on_handle_close);
    }
    uv_close((uv_handle_t *)&cl->poll_timer, slurm_on_handle_close);
    uv_close((uv_handle_t *)&cl->pace_timer, slurm_on_handle_close);
    uv_close((uv_handle_t *)&cl->tok_timer, slurm_on_handle_close);
  }
}

json_t *slurm_clusters_json(struct daemon *d) {
  static const char *const auth_names[] = {[AUTH_NONE] = "none",
                                           [AUTH_TOKEN] = "token",
                                           [AUTH_TOKEN_COMMAND] = "token_command",
                                           [AUTH_JWT_KEY] = "jwt_key",
                                           [AUTH_OAUTH] = "oauth_client_credentials"};
  json_t *a = json_array();
  struct list *pos, *tmp;
  list_for_each_safe(pos, tmp, &d->clusters) {
    struct cluster *cl = container_of(pos, struct cluster, link);
    json_t *req = json_object();
    uint64_t total = 0;
    for (int i = 0; i < RQ__MAX; i++) {
      json_object_set_new(req, rq_names[i], json_integer((json_int_t)cl->requests[i]));
      total += cl->requests[i];
    }
    json_object_set_new(req, "total", json_integer((json_int_t)total));
    size_t njobs = 0;
    json_t *jobs = json_object(); /* by Slurm's job state: a few services' jobs, counted on request */
    struct list *p2, *t2;
    list_for_each_safe(p2, t2, &cl->jobs) {
      struct sjob *j = container_of(p2, struct sjob, link);
      njobs++;
      if (!j->job_id) continue;
      const char *st = j->state[0] ? j->state : "UNKNOWN";
      json_object_set_new(jobs, st, json_integer(json_integer_value(json_object_get(jobs, st)) + 1));
    }
    char ver[16] = "";
    if (cl->ver) snprintf(ver, sizeof ver, "v0.0.%d", cl->ver);
    json_t *o = json_pack("{s:s,s:s,s:s,s:s,s:s,s:i,s:o,s:I,s:I,s:I,s:I,s:f}", "name", cl->spec->name, "url",
                          cl->spec->url, "user", cl->spec->user, "auth", auth_names[cl->spec->auth], "api_version",
                          cl->ver ? ver : "auto (not known yet)", "services", (int)njobs, "requests", req, "polls",
                          (json_int_t)cl->polls, "polls_unchanged", (json_int_t)cl->polls_unchanged, "bytes_in",
                          (json_int_t)cl->bytes_in, "errors", (json_int_t)cl->errors, "poll_seconds", cl->poll_seconds);
    json_object_set_new(o, "bytes_out", json_integer((json_int_t)cl->bytes_out));
    json_object_set_new(o, "api", json_string(is_ssh(cl) ? "ssh" : "rest"));
    if (cl->spec->ssh) json_object_set_new(o, "ssh", json_string(cl->spec->ssh));
    if (is_ssh(cl)) {
      /* Slurm's commands over the host's session: how many a tick costs (1 when steady) */
      char url[160];
      snprintf(url, sizeof url, "ssh://%s", cl->spec->ssh);
      json_object_set_new(o, "url", json_string(url));
      json_object_del(o, "user");
      json_object_set_new(o, "api_version", json_string("commands (squeue, sbatch, scancel, scontrol, sacct)"));
      json_object_set_new(o, "commands_per_tick", json_real(cl->polls ? (double)total / (double)cl->polls : 0));
      json_t *ss = sshx_host_json(d, cl->spec->ssh);
      json_object_set_new(o, "session", ss ? ss : json_null());
    }
    json_object_set_new(o, "jobs", jobs);
    json_object_set_new(o, "reachable", json_boolean(!cl->error[0]));
    if (cl->error[0]) {
      json_object_set_new(o, "error", json_string(cl->error));
      json_object_set_new(o, "error_since", json_real(cl->error_since));
    }
    json_array_append_new(a, o);
  }
  return a;
}
