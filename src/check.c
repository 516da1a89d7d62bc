/* Health checks (see check.h). */
#include "herd/check.h"

#include "herd/curlx.h"
#include "herd/log.h"
#include "herd/slurm.h"

#include <curl/curl.h>
#include <errno.h>
#include <math.h>
#include <signal.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#define CHECK_BODY_MAX (64 * 1024)
#define EXEC_OUTPUT_MAX 4096
static double glue_epoch; /* the origin of every service's check slots (monotonic) */

struct run;

struct checker {
  struct service *s;
  uv_timer_t timer;
  bool active;     /* between check_start and check_stop */
  unsigned gen;    /* bumped by start/stop: results of older runs are dropped */
  double next_due; /* monotonic */
  double phase;    /* per-service offset that spreads checks over the interval */
  struct run *run; /* the run in flight, or NULL */
  CURL *easy;      /* http: reused between runs (keeps the connection) */
  struct curlx_req req;
  struct curl_slist *hdrs;
  struct buf body;
  char errbuf[CURL_ERROR_SIZE];
  struct check_result last;
  bool has_last;
  unsigned long runs, passes;
};

/* One check run in flight. HTTP runs use the checker's easy handle; TCP and exec runs
 * own uv handles that are counted in the service's nhandles until closed. */
struct run {
  struct checker *ck; /* valid while !finished; the checker may be gone after */
  struct service *s;  /* lives until our handles close: they count in its nhandles */
  enum check_type type;
  unsigned gen;
  double started;
  bool finished; /* a result was delivered (or the run was cancelled) */
  int nhandles;
  /* tcp */
  uv_tcp_t tcp;
  uv_connect_t connect;
  uv_getaddrinfo_t gai;
  bool resolving;
  int port;
  /* exec */
  uv_process_t proc;
  uv_pipe_t out;
  bool exited, eof, killed;
  int64_t status;
  int sig;
  struct buf output;
};

static void schedule_next(struct checker *ck);
static void deliver(struct checker *ck, struct run *r, bool ok, const char *fmt, ...)
    __attribute__((format(printf, 4, 5)));

/* ---- global ---- */

int check_global_init(struct daemon *d) {
  glue_epoch = now_mono();
  curlx_init(d->loop); /* libcurl itself is loaded at the first HTTP request */
  return 0;
}

void check_global_close(struct daemon *d) { curlx_close(); }

/* ---- results ---- */

static void run_release(struct run *r) {
  if (r->nhandles == 0) {
    buf_free(&r->output);
    free(r);
  }
}

static void deliver(struct checker *ck, struct run *r, bool ok, const char *fmt, ...) {
  if (r->finished) return;
  r->finished = true;
  if (ck->run == r) ck->run = NULL;
  if (r->gen != ck->gen || !ck->active) return; /* a stale run: checks were stopped */
  struct check_result *res = &ck->last;
  res->at = now_wall();
  res->duration = now_mono() - r->started;
  res->ok = ok;
  va_list ap;
  va_start(ap, fmt);
  vsnprintf(res->msg, sizeof res->msg, fmt, ap);
  va_end(ap);
  utf8_sanitize(res->msg); /* an exec check's output may be anything; JSON needs UTF-8 */
  ck->has_last = true;
  ck->runs++;
  if (ok) ck->passes++;
  struct service *s = ck->s;
  log_msg(LOG_DEBUG, s->spec->name, NULL, NULL, "check %s: %s (%.1fms)", ok ? "passed" : "failed", res->msg,
          res->duration * 1e3);
  schedule_next(ck);
  /* Last: this may stop the checks (and bump gen) or even start a stop of the service. */
  service_event(s, ok ? EV_CHECK_PASS : EV_CHECK_FAIL, 0, 0, res->msg);
}

/* ---- HTTP ---- */

static size_t on_body(char *p, size_t size, size_t n, void *arg) {
  struct checker *ck = arg;
  size_t len = size * n;
  if (ck->body.len < CHECK_BODY_MAX)
    buf_append(&ck->body, p, ck->body.len + len > CHECK_BODY_MAX ? CHECK_BODY_MAX - ck->body.len : len);
  return len;
}

/* The endpoint's host: as configured, or (Slurm, none configured) the job's node. */
static const char *service_host(struct service *s) {
  const char *h = s->spec->endpoint.host;
  return h && *h ? h : s->spec->slurm ? slurm_endpoint_host(s) : "127.0.0.1";
}

static void http_url(struct service *s, char *buf, size_t len) {
  const struct check_spec *k = s->spec->check;
  if (k->url) {
    snprintf(buf, len, "%s", k->url);
    return;
  }
  const struct endpoint_spec *e = &s->spec->endpoint;
  const char *scheme = e->protocol == PROTO_HTTPS ? "https" : "http";
  const char *host = service_host(s);
  bool v6 = strchr(host, ':') != NULL;
  snprintf(buf, len, "%s://%s%s%s:%d%s", scheme, v6 ? "[" : "", host, v6 ? "]" : "", s->port, k->path);
}

static void http_begin(struct checker *ck, struct run *r) {
  struct service *s = ck->s;
  const struct check_spec *k = s->spec->check;
  char lerr[256];
  if (curlx_open(lerr, sizeof lerr) < 0) {
    deliver(ck, r, false, "%s", lerr);
    return;
  }
  if (!ck->easy) {
    ck->easy = CX.easy_init();
    CX.easy_setopt(ck->easy, CURLOPT_WRITEFUNCTION, on_body);
    CX.easy_setopt(ck->easy, CURLOPT_WRITEDATA, ck);
    CX.easy_setopt(ck->easy, CURLOPT_ERRORBUFFER, ck->errbuf);
    CX.easy_setopt(ck->easy, CURLOPT_NOSIGNAL, 1L);
    CX.easy_setopt(ck->easy, CURLOPT_USERAGENT, "herd/" HERD_VERSION " health-check");
    CX.easy_setopt(ck->easy, CURLOPT_FOLLOWLOCATION, 0L);
    CX.easy_setopt(ck->easy, CURLOPT_PROTOCOLS_STR, "http,https");
    if (!strcmp(k->method, "HEAD")) CX.easy_setopt(ck->easy, CURLOPT_NOBODY, 1L);
    for (char **h = k->headers; h && *h; h++) ck->hdrs = CX.slist_append(ck->hdrs, *h);
    if (ck->hdrs) CX.easy_setopt(ck->easy, CURLOPT_HTTPHEADER, ck->hdrs);
    if (k->ca_file) CX.easy_setopt(ck->easy, CURLOPT_CAINFO, k->ca_file);
    if (k->insecure) {
      CX.easy_setopt(ck->easy, CURLOPT_SSL_VERIFYPEER, 0L);
      CX.easy_setopt(ck->easy, CURLOPT_SSL_VERIFYHOST, 0L);
    }
  }
  char url[1024];
  http_url(s, url, sizeof url);
  CX.easy_setopt(ck->easy, CURLOPT_URL, url);
  CX.easy_setopt(ck->easy, CURLOPT_TIMEOUT_MS, (long)ceil(k->timeout * 1000));
  CX.easy_setopt(ck->easy, CURLOPT_CONNECTTIMEOUT_MS, (long)ceil(k->timeout * 1000));
  ck->body.len = 0;
  ck->errbuf[0] = '\0';
  CURLMcode rc = curlx_add(ck->easy, &ck->req);
  if (rc != CURLM_OK) deliver(ck, r, false, "cannot start the request: %s", CX.multi_strerror(rc));
}

static void http_done(struct curlx_req *req, CURLcode res) {
  struct checker *ck = container_of(req, struct checker, req);
  struct run *r = ck->run;
  if (!r) return;
  const struct check_spec *k = ck->s->spec->check;
  long code = 0;
  CX.easy_getinfo(ck->easy, CURLINFO_RESPONSE_CODE, &code);
  if (res != CURLE_OK)
    deliver(ck, r, false, "%s", ck->errbuf[0] ? ck->errbuf : CX.easy_strerror(res));
  else if (code < k->status_lo || code > k->status_hi)
    deliver(ck, r, false, "HTTP %ld (want %d-%d)", code, k->status_lo, k->status_hi);
  else if (k->body_contains &&
           (!ck->body.data || !memmem(ck->body.data, ck->body.len, k->body_contains, strlen(k->body_contains))))
    deliver(ck, r, false, "HTTP %ld but the body lacks \"%s\"", code, k->body_contains);
  else
    deliver(ck, r, true, "HTTP %ld", code);
  run_release(r);
}

static void http_cancel(struct checker *ck) {
  if (ck->easy) curlx_remove(ck->easy);
}

/* ---- TCP ---- */

static void on_run_handle_close(uv_handle_t *h) {
  struct run *r = h->data;
  struct service *s = r->s;
  r->nhandles--;
  s->nhandles--;
  run_release(r);
  daemon_check_idle(s->d);
}

static void run_close(struct run *r, uv_handle_t *h) {
  if (!uv_is_closing(h)) uv_close(h, on_run_handle_close);
}

static void on_connect(uv_connect_t *req, int status) {
  struct run *r = req->data;
  if (!r->finished) {
    if (status == 0)
      deliver(r->ck, r, true, "connected to port %d", r->port);
    else
      deliver(r->ck, r, false, "connect to port %d: %s", r->port, uv_strerror(status));
  }
  run_close(r, (uv_handle_t *)&r->tcp);
}

static void tcp_connect_addr(struct run *r, const struct sockaddr *sa) {
  struct service *s = r->s;
  uv_tcp_init(s->d->loop, &r->tcp);
  r->tcp.data = r;
  r->nhandles++;
  s->nhandles++;
  r->connect.data = r;
  int rc = uv_tcp_connect(&r->connect, &r->tcp, sa, on_connect);
  if (rc < 0) {
    deliver(r->ck, r, false, "connect to port %d: %s", r->port, uv_strerror(rc));
    run_close(r, (uv_handle_t *)&r->tcp);
  }
}

static void on_resolved(uv_getaddrinfo_t *req, int status, struct addrinfo *res) {
  struct run *r = req->data;
  struct service *s = r->s;
  r->resolving = false;
  s->nhandles--; /* the request counted as one while in flight */
  if (r->finished) {
    /* Timed out or cancelled while resolving. */
    uv_freeaddrinfo(res);
    r->nhandles--;
    run_release(r);
    daemon_check_idle(s->d);
    return;
  }
  r->nhandles--;
  if (status < 0 || !res) {
    deliver(r->ck, r, false, "cannot resolve host: %s", uv_strerror(status));
    uv_freeaddrinfo(res);
    run_release(r);
    return;
  }
  tcp_connect_addr(r, res->ai_addr);
  uv_freeaddrinfo(res);
}

static void tcp_begin(struct checker *ck, struct run *r) {
  struct service *s = ck->s;
  const struct check_spec *k = s->spec->check;
  const char *host = k->host ? k->host : s->spec->endpoint.set ? service_host(s) : "127.0.0.1";
  r->port = k->port ? k->port : s->port;
  if (!strcmp(host, "localhost")) host = "127.0.0.1";
  struct sockaddr_storage ss;
  if (uv_ip4_addr(host, r->port, (struct sockaddr_in *)&ss) == 0 ||
      uv_ip6_addr(host, r->port, (struct sockaddr_in6 *)&ss) == 0) {
    tcp_connect_addr(r, (struct sockaddr *)&ss);
    return;
  }
  char port[16];
  snprintf(port, sizeof port, "%d", r->port);
  struct addrinfo hints = {.ai_family = AF_UNSPEC, .ai_socktype = SOCK_STREAM};
  r->gai.data = r;
  r->resolving = true;
  r->nhandles++;
  s->nhandles++;
  int rc = uv_getaddrinfo(s->d->loop, &r->gai, on_resolved, host, port, &hints);
  if (rc < 0) {
    r->resolving = false;
    r->nhandles--;
    s->nhandles--;
    deliver(ck, r, false, "cannot resolve %s: %s", host, uv_strerror(rc));
  }
}

static void tcp_cancel(struct run *r) {
  if (r->resolving)
    uv_cancel((uv_req_t *)&r->gai);
  else if (r->nhandles)
    run_close(r, (uv_handle_t *)&r->tcp); /* connect callback fires with ECANCELED */
}

/* ---- exec ---- */

static void exec_maybe_done(struct run *r) {
  if (!r->exited || !r->eof) return;
  if (!r->finished) {
    /* The last line of output is the check's message. */
    char *out = r->output.data ? r->output.data : (char *)"";
    size_t n = r->output.len;
    while (n && (out[n - 1] == '\n' || out[n - 1] == '\r' || out[n - 1] == ' ')) n--;
    size_t start = n;
    while (start && out[start - 1] != '\n') start--;
    char last[200];
    snprintf(last, sizeof last, "%.*s", (int)(n - start), out + start);
    if (r->sig)
      deliver(r->ck, r, false, "killed by signal %d%s%s", r->sig, *last ? ": " : "", last);
    else if (r->status == 0)
      deliver(r->ck, r, true, "exit 0%s%s", *last ? ": " : "", last);
    else
      deliver(r->ck, r, false, "exit %d%s%s", (int)r->status, *last ? ": " : "", last);
  }
  run_close(r, (uv_handle_t *)&r->proc);
  run_close(r, (uv_handle_t *)&r->out);
}

static void on_exec_exit(uv_process_t *p, int64_t status, int sig) {
  struct run *r = p->data;
  r->exited = true;
  r->status = status;
  r->sig = sig;
  /* Whatever the check left behind in its process group goes with it. */
  kill(-p->pid, SIGKILL);
  exec_maybe_done(r);
}

static void on_exec_read(uv_stream_t *st, ssize_t n, const uv_buf_t *b) {
  struct run *r = st->data;
  if (n > 0) {
    if (r->output.len + (size_t)n > EXEC_OUTPUT_MAX) {
      /* keep the tail: the last line is what we show */
      size_t keep = EXEC_OUTPUT_MAX / 2;
      if (r->output.len > keep) {
        memmove(r->output.data, r->output.data + r->output.len - keep, keep);
        r->output.len = keep;
      }
    }
    buf_append(&r->output, b->base, (size_t)n);
  } else if (n < 0) {
    uv_read_stop(st);
    r->eof = true;
    exec_maybe_done(r);
  }
}

static void exec_begin(struct checker *ck, struct run *r) {
  struct service *s = ck->s;
  /* One pipe for stdout and stderr together: its write end goes to both. */
  uv_file fds[2];
  int prc = uv_pipe(fds, 0, 0);
  if (prc < 0) {
    deliver(ck, r, false, "cannot make a pipe: %s", uv_strerror(prc));
    return;
  }
  uv_pipe_init(s->d->loop, &r->out, 0);
  r->out.data = r;
  r->nhandles++;
  s->nhandles++;
  uv_pipe_open(&r->out, fds[0]);
  uv_stdio_container_t stdio[3] = {
      {.flags = UV_IGNORE},
      {.flags = UV_INHERIT_FD, .data.fd = fds[1]},
      {.flags = UV_INHERIT_FD, .data.fd = fds[1]},
  };
  extern char **environ;
  size_t nenv = 0;
  while (environ[nenv]) nenv++;
  char **env = xcalloc(nenv + 3, sizeof *env);
  size_t k = 0;
  for (size_t i = 0; i < nenv; i++)
    if (strncmp(environ[i], "HERD_", 5)) env[k++] = environ[i];
  char *e_port = xasprintf("HERD_PORT=%d", s->port), *e_name = xasprintf("HERD_SERVICE=%s", s->spec->name);
  env[k++] = e_port;
  env[k++] = e_name;
  uv_process_options_t o = {
      .exit_cb = on_exec_exit,
      .file = s->spec->check->command[0],
      .args = s->spec->check->command,
      .env = env,
      .cwd = s->spec->cwd ? s->spec->cwd : s->d->state_dir,
      .flags = UV_PROCESS_DETACHED,
      .stdio_count = 3,
      .stdio = stdio,
  };
  if (s->spec->set_uid) o.flags |= UV_PROCESS_SETUID, o.uid = s->spec->uid;
  if (s->spec->set_gid) o.flags |= UV_PROCESS_SETGID, o.gid = s->spec->gid;
  r->proc.data = r;
  int rc = uv_spawn(s->d->loop, &r->proc, &o);
  close(fds[1]); /* the child has it; EOF comes when the child (and its children) close it */
  free(env);
  free(e_port);
  free(e_name);
  r->nhandles++;
  s->nhandles++;
  if (rc < 0) {
    deliver(ck, r, false, "cannot run %s: %s", s->spec->check->command[0], uv_strerror(rc));
    run_close(r, (uv_handle_t *)&r->proc);
    run_close(r, (uv_handle_t *)&r->out);
    return;
  }
  uv_read_start((uv_stream_t *)&r->out, daemon_alloc, on_exec_read);
}

static void exec_kill(struct run *r) {
  if (!r->exited && r->proc.pid > 0 && !r->killed) {
    r->killed = true;
    kill(-r->proc.pid, SIGKILL);
  }
}

/* ---- scheduling ---- */

static void on_check_timer(uv_timer_t *t);

static void arm(struct checker *ck, double at) { timer_arm(ck->s->d->loop, &ck->timer, on_check_timer, at); }

static void schedule_next(struct checker *ck) {
  const struct check_spec *k = ck->s->spec->check;
  double now = now_mono();
  /* Fixed slots: each service checks at epoch + phase*interval + k*interval, so a slow
   * check does not push the later ones back, and a thousand services' checks are spread
   * evenly over the whole interval (not bunched by when they happened to start). */
  double slot = glue_epoch + ck->phase * k->interval;
  double next = slot + ceil((now + 0.001 - slot) / k->interval) * k->interval;
  ck->next_due = next;
  arm(ck, ck->next_due);
}

static void run_begin(struct checker *ck) {
  struct service *s = ck->s;
  struct run *r = xcalloc(1, sizeof *r);
  r->ck = ck;
  r->s = s;
  r->type = s->spec->check->type;
  r->gen = ck->gen;
  r->started = now_mono();
  ck->run = r;
  /* The check timer bounds the run (curl has its own timeout too; ours is the backstop). */
  arm(ck, r->started + s->spec->check->timeout + (r->type == CHECK_HTTP ? 0.05 : 0));
  switch (r->type) {
  case CHECK_HTTP: http_begin(ck, r); break;
  case CHECK_TCP: tcp_begin(ck, r); break;
  case CHECK_EXEC: exec_begin(ck, r); break;
  case CHECK__MAX: break;
  }
  if (r->finished) run_release(r);
}

/* Cancel the run in flight without a result. */
static void run_cancel(struct checker *ck) {
  struct run *r = ck->run;
  if (!r) return;
  ck->run = NULL;
  r->finished = true;
  switch (r->type) {
  case CHECK_HTTP: http_cancel(ck); break;
  case CHECK_TCP: tcp_cancel(r); break;
  case CHECK_EXEC: exec_kill(r); break;
  case CHECK__MAX: break;
  }
  run_release(r);
}

static void on_check_timer(uv_timer_t *t) {
  struct checker *ck = t->data;
  if (!ck->active) return;
  struct run *r = ck->run;
  if (r) {
    /* The run outlived its timeout. */
    const struct check_spec *k = ck->s->spec->check;
    char what[64];
    snprintf(what, sizeof what, "timed out after %gs", k->timeout);
    if (r->type == CHECK_HTTP)
      http_cancel(ck);
    else if (r->type == CHECK_TCP)
      tcp_cancel(r);
    else
      exec_kill(r);
    if (r->type == CHECK_EXEC)
      deliver(ck, r, false, "%s (killed)", what);
    else
      deliver(ck, r, false, "%s", what);
    run_release(r);
    return;
  }
  run_begin(ck);
}

static void on_check_timer_close(uv_handle_t *h) {
  struct checker *ck = h->data;
  struct service *s = ck->s;
  buf_free(&ck->body);
  free(ck);
  s->nhandles--;
  daemon_check_idle(s->d);
}

void check_attach(struct service *s) {
  if (!s->spec->check || s->checker) return;
  struct checker *ck = xcalloc(1, sizeof *ck);
  ck->req.done = http_done;
  ck->s = s;
  uv_timer_init(s->d->loop, &ck->timer);
  ck->timer.data = ck;
  s->nhandles++;
  /* A stable per-service phase in [0, 1): spreads many services' checks over the interval. */
  uint64_t h = 1469598103934665603ULL;
  for (const char *p = s->spec->name; *p; p++) h = (h ^ (unsigned char)*p) * 1099511628211ULL;
  /* FNV-1a's high bits barely change with a name's last characters (s0030..s0039 would
   * share a phase): mix with splitmix64's finalizer before taking them. */
  h ^= h >> 30;
  h *= 0xbf58476d1ce4e5b9ULL;
  h ^= h >> 27;
  h *= 0x94d049bb133111ebULL;
  h ^= h >> 31;
  ck->phase = (double)(h >> 11) * 0x1.0p-53;
  s->checker = ck;
}

void check_start(struct service *s) {
  struct checker *ck = s->checker;
  if (!ck) return;
  run_cancel(ck);
  ck->gen++;
  ck->active = true;
  /* The first run comes soon (a starting or re-adopted service wants its verdict), spread
   * by phase over at most half a second; later runs move to the service's slot. */
  double first = fmin(s->spec->check->interval, 0.5) * ck->phase + 0.01;
  ck->next_due = now_mono() + first;
  arm(ck, ck->next_due);
}

void check_stop(struct service *s) {
  struct checker *ck = s->checker;
  if (!ck) return;
  ck->active = false;
  ck->gen++;
  run_cancel(ck);
  uv_timer_stop(&ck->timer);
}

void check_close(struct service *s) {
  struct checker *ck = s->checker;
  if (!ck) return;
  check_stop(s);
  s->checker = NULL;
  if (ck->easy) {
    curlx_remove(ck->easy);
    CX.easy_cleanup(ck->easy);
    ck->easy = NULL;
  }
  if (ck->hdrs) CX.slist_free_all(ck->hdrs);
  uv_close((uv_handle_t *)&ck->timer, on_check_timer_close);
}

json_t *check_json(struct service *s) {
  struct checker *ck = s->checker;
  if (!ck) return json_null();
  json_t *o = json_pack("{s:s,s:I,s:I}", "type", check_type_name(s->spec->check->type), "runs", (json_int_t)ck->runs,
                        "passes", (json_int_t)ck->passes);
  if (ck->has_last)
    json_object_set_new(o, "last",
                        json_pack("{s:f,s:f,s:b,s:s}", "at", ck->last.at, "duration", ck->last.duration, "ok",
                                  ck->last.ok, "message", ck->last.msg));
  else
    json_object_set_new(o, "last", json_null());
  return o;
}

json_t *check_json_brief(struct service *s) {
  struct checker *ck = s->checker;
  if (!ck) return json_null();
  if (!ck->has_last) return json_pack("{s:n}", "last");
  return json_pack("{s:{s:b,s:s}}", "last", "ok", ck->last.ok, "message", ck->last.msg);
}

bool check_last_ok(struct service *s) { return s->checker && s->checker->has_last && s->checker->last.ok; }

const char *check_last_msg(struct service *s) {
  return s->checker && s->checker->has_last ? s->checker->last.msg : NULL;
}
