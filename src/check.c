/* Health checks (see check.h). */
#include "herd/check.h"

#include "herd/curlx.h"
#include "herd/log.h"
#include "herd/loop.h"
#include "herd/run.h"
#include "herd/sshx.h"
#include "herd/tunnel.h"

#include <curl/curl.h>
#include <errno.h>
#include <llhttp.h>
#include <math.h>
#include <signal.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>
#include <unistd.h>

#define EXEC_OUTPUT_MAX 4096
static double glue_epoch; /* the origin of every service's check slots (monotonic) */

struct run;
struct hconn;

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
  struct check_stats stats;
  /* http without curl (plain http:// to an address): one kept-alive connection */
  struct hconn *conn; /* the connection, or NULL */
  struct buf wr;      /* the request being sent */
  char host[64];      /* the target of the run in flight, as written in messages */
  int port;
  struct sockaddr_storage addr;
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
  bool native;   /* http: our own client, not curl */
  bool retried;  /* native http: already retried once on a fresh connection */
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
  struct sshx_req *sreq; /* exec on an ssh host: the request in flight (it counts as a handle) */
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
  ck->stats.runs++;
  if (ok) ck->stats.passes++;
  static const double bounds[CHECK_LAT_NB] = CHECK_LAT_BOUNDS;
  size_t i = 0;
  while (i < CHECK_LAT_NB && res->duration > bounds[i]) i++;
  if (i < CHECK_LAT_NB) ck->stats.lat[i]++;
  ck->stats.lat_sum += res->duration;
  struct service *s = ck->s;
  log_msg(LOG_DEBUG, s->spec->name, NULL, NULL, "check %s: %s (%.1fms)", ok ? "passed" : "failed", res->msg,
          res->duration * 1e3);
  schedule_next(ck);
  /* Last: this may stop the checks (and bump gen) or even start a stop of the service. */
  run_post_event(s, ok ? EV_CHECK_PASS : EV_CHECK_FAIL, 0, 0, res->msg);
}

/* ---- HTTP ---- */

static size_t on_body(char *p, size_t size, size_t n, void *arg) {
  struct checker *ck = arg;
  size_t len = size * n;
  if (ck->body.len < CHECK_BODY_MAX)
    buf_append(&ck->body, p, ck->body.len + len > CHECK_BODY_MAX ? CHECK_BODY_MAX - ck->body.len : len);
  return len;
}

/* The endpoint's host: as configured, or where the instance runs (a job's node), or here;
 * through an ssh host, its fixed local end (HEALTHY means "answers where the user is"). */
static const char *service_host(struct service *s) {
  if (s->spec->ssh) return "127.0.0.1";
  const char *h = s->spec->endpoint.host;
  return h && *h ? h : s->host[0] ? s->host : "127.0.0.1";
}

static int service_port(struct service *s) { return s->spec->ssh ? tunnel_local_port(s) : s->port; }

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
  snprintf(buf, len, "%s://%s%s%s:%d%s", scheme, v6 ? "[" : "", host, v6 ? "]" : "", service_port(s), k->path);
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

/* An HTTP answer arrived (curl's or our client's): judge its status and body, deliver. */
static void http_verdict(struct checker *ck, struct run *r, int code) {
  const struct check_spec *k = ck->s->spec->check;
  if (code < k->status_lo || code > k->status_hi)
    deliver(ck, r, false, "HTTP %d (want %d-%d)", code, k->status_lo, k->status_hi);
  else if (k->body_contains &&
           (!ck->body.data || !memmem(ck->body.data, ck->body.len, k->body_contains, strlen(k->body_contains))))
    deliver(ck, r, false, "HTTP %d but the body lacks \"%s\"", code, k->body_contains);
  else
    deliver(ck, r, true, "HTTP %d", code);
  run_release(r);
}

static void http_done(struct curlx_req *req, CURLcode res) {
  struct checker *ck = container_of(req, struct checker, req);
  struct run *r = ck->run;
  if (!r) return;
  long code = 0;
  CX.easy_getinfo(ck->easy, CURLINFO_RESPONSE_CODE, &code);
  if (res != CURLE_OK) {
    deliver(ck, r, false, "%s", ck->errbuf[0] ? ck->errbuf : CX.easy_strerror(res));
    run_release(r);
  } else {
    http_verdict(ck, r, (int)code);
  }
}

/* ---- HTTP without curl ----
 *
 * Most checks are plain http:// to an address on this host or the cluster's network:
 * for those, curl's generality (per-transfer setup, option parsing, re-registering the
 * socket with the loop, a liveness poll before each reuse) costs several times what the
 * check itself does. This client keeps one connection per checker open across runs,
 * writes the request in one call and parses the answer with llhttp. Anything else (https,
 * a host name to resolve, credentials in the URL) goes to curl.
 */

struct hconn {
  uv_tcp_t tcp;
  struct checker *ck; /* NULL once let go (the handle is closing) */
  struct service *s;  /* the handle counts in its nhandles */
  uv_connect_t creq;
  uv_write_t wreq;
  struct check_answer ans; /* the answer being read */
  char *unsent;            /* the part of the request uv_try_write could not write now */
  struct sockaddr_storage addr;
  unsigned nreq; /* requests sent on this connection */
  bool connected, busy;
};

static void on_hconn_close(uv_handle_t *h) {
  struct hconn *c = h->data;
  struct service *s = c->s;
  free(c->unsent);
  free(c);
  service_unref(s);
}

static void hconn_drop(struct hconn *c) {
  if (c->ck && c->ck->conn == c) c->ck->conn = NULL;
  c->ck = NULL;
  if (!uv_is_closing((uv_handle_t *)&c->tcp)) uv_close((uv_handle_t *)&c->tcp, on_hconn_close);
}

/* ---- an answer's framing: pure, no loop (fuzzed: tests/fuzz/fuzz_check.c) ---- */

static int on_a_headers_complete(llhttp_t *p) {
  struct check_answer *a = container_of(p, struct check_answer, parser);
  a->status = llhttp_get_status_code(p);
  return a->head ? 1 : 0; /* a HEAD answer announces a body it does not carry */
}

static int on_a_body(llhttp_t *p, const char *at, size_t n) {
  struct check_answer *a = container_of(p, struct check_answer, parser);
  if (a->body && a->body->len < CHECK_BODY_MAX)
    buf_append(a->body, at, a->body->len + n > CHECK_BODY_MAX ? CHECK_BODY_MAX - a->body->len : n);
  return 0;
}

static int on_a_message_complete(llhttp_t *p) {
  struct check_answer *a = container_of(p, struct check_answer, parser);
  a->complete = true;
  a->keep = llhttp_should_keep_alive(p);
  return HPE_PAUSED; /* one answer per request: anything after it is not ours */
}

static const llhttp_settings_t answer_settings = {
    .on_headers_complete = on_a_headers_complete,
    .on_body = on_a_body,
    .on_message_complete = on_a_message_complete,
};

void check_answer_begin(struct check_answer *a, bool head, struct buf *body) {
  *a = (struct check_answer){.head = head, .body = body};
  llhttp_init(&a->parser, HTTP_RESPONSE, &answer_settings);
  if (body) body->len = 0;
}

int check_answer_read(struct check_answer *a, const char *data, size_t n) {
  if (a->complete) return 1;
  a->got_bytes = true;
  llhttp_errno_t e = llhttp_execute(&a->parser, data, n);
  if (a->complete) {
    /* More than the one answer: the connection is out of step; do not reuse it. */
    if (e == HPE_PAUSED && llhttp_get_error_pos(&a->parser) != data + n) a->keep = false;
    return 1;
  }
  if (e == HPE_OK) return 0;
  snprintf(a->error, sizeof a->error, "invalid HTTP answer: %s", llhttp_get_error_reason(&a->parser));
  return -1;
}

int check_answer_eof(struct check_answer *a) {
  /* An answer delimited by the end of the connection ends here. */
  if (a->got_bytes && !a->complete) llhttp_finish(&a->parser); /* completes it (our callback pauses: not HPE_OK) */
  if (a->complete) {
    a->keep = false;
    return 1;
  }
  snprintf(a->error, sizeof a->error, "%s",
           a->got_bytes ? "connection closed in the middle of the answer" : "Empty reply from server");
  return -1;
}

/* The answer is complete: judge it as http_done judges curl's. */
static void hconn_finish(struct hconn *c) {
  struct checker *ck = c->ck;
  struct run *r = ck->run;
  c->busy = false;
  int code = c->ans.status;
  if (!c->ans.keep) hconn_drop(c);
  if (r) http_verdict(ck, r, code);
}

static void hconn_connect(struct checker *ck, struct run *r);

/* The connection failed under the run in flight: a kept-alive connection the server had
 * already closed gets one retry on a fresh one (nothing of the answer had arrived). */
static void hconn_failed(struct hconn *c, const char *fmt, ...) __attribute__((format(printf, 2, 3)));

static void hconn_failed(struct hconn *c, const char *fmt, ...) {
  struct checker *ck = c->ck;
  struct run *r = ck ? ck->run : NULL;
  bool stale = c->nreq > 1 && !c->ans.got_bytes;
  hconn_drop(c);
  if (!r) return;
  if (stale && !r->retried) {
    r->retried = true;
    hconn_connect(ck, r);
    return;
  }
  char msg[200];
  va_list ap;
  va_start(ap, fmt);
  vsnprintf(msg, sizeof msg, fmt, ap);
  va_end(ap);
  deliver(ck, r, false, "%s", msg);
  run_release(r);
}

static void on_h_write(uv_write_t *w, int status) {
  struct hconn *c = w->data;
  free(c->unsent);
  c->unsent = NULL;
  if (status < 0 && c->ck && c->busy) hconn_failed(c, "Send failure: %s", strerror(-status));
}

static void hconn_send(struct hconn *c) {
  struct checker *ck = c->ck;
  const struct check_spec *k = ck->s->spec->check;
  check_answer_begin(&c->ans, !strcmp(k->method, "HEAD"), k->body_contains ? &ck->body : NULL);
  ck->body.len = 0;
  c->busy = true;
  c->nreq++;
  uv_buf_t b = uv_buf_init(ck->wr.data, (unsigned)ck->wr.len);
  int n = uv_try_write((uv_stream_t *)&c->tcp, &b, 1);
  if (n == (int)ck->wr.len) return;
  if (n < 0 && n != UV_EAGAIN) {
    hconn_failed(c, "Send failure: %s", strerror(-n));
    return;
  }
  if (n < 0) n = 0;
  c->unsent = xmalloc(ck->wr.len - (size_t)n);
  memcpy(c->unsent, ck->wr.data + n, ck->wr.len - (size_t)n);
  b = uv_buf_init(c->unsent, (unsigned)(ck->wr.len - (size_t)n));
  c->wreq.data = c;
  int rc = uv_write(&c->wreq, (uv_stream_t *)&c->tcp, &b, 1, on_h_write);
  if (rc < 0) {
    free(c->unsent);
    c->unsent = NULL;
    hconn_failed(c, "Send failure: %s", strerror(-rc));
  }
}

static void on_h_read(uv_stream_t *st, ssize_t n, const uv_buf_t *b) {
  struct hconn *c = st->data;
  if (!c->ck) return;
  if (n > 0) {
    if (!c->busy) { /* nothing was asked: not an HTTP server we understand */
      hconn_drop(c);
      return;
    }
    int rc = check_answer_read(&c->ans, b->base, (size_t)n);
    if (rc > 0)
      hconn_finish(c);
    else if (rc < 0)
      hconn_failed(c, "%s", c->ans.error);
    return;
  }
  if (n == 0) return;
  if (!c->busy) { /* the server closed an idle connection */
    hconn_drop(c);
    return;
  }
  if (n == UV_EOF) {
    if (check_answer_eof(&c->ans) > 0)
      hconn_finish(c);
    else
      hconn_failed(c, "%s", c->ans.error);
    return;
  }
  hconn_failed(c, "Recv failure: %s", strerror((int)-n));
}

static void on_h_connect(uv_connect_t *req, int status) {
  struct hconn *c = req->data;
  struct checker *ck = c->ck;
  if (!ck) return; /* let go while connecting (the handle is closing) */
  struct run *r = ck->run;
  if (status < 0) { /* nothing was sent on it: hconn_failed does not retry */
    long ms = r ? lround((now_mono() - r->started) * 1000) : 0;
    hconn_failed(c, "Failed to connect to %s port %d after %ld ms: %s", ck->host, ck->port, ms, strerror(-status));
    return;
  }
  c->connected = true;
  uv_read_start((uv_stream_t *)&c->tcp, loop_alloc, on_h_read);
  if (r && !r->finished) hconn_send(c);
}

static void hconn_connect(struct checker *ck, struct run *r) {
  struct service *s = ck->s;
  struct hconn *c = xcalloc(1, sizeof *c);
  c->ck = ck;
  c->s = s;
  c->addr = ck->addr;
  uv_tcp_init(s->d->loop, &c->tcp);
  c->tcp.data = c;
  service_ref(s);
  ck->conn = c;
  uv_tcp_nodelay(&c->tcp, 1);
  c->creq.data = c;
  int rc = uv_tcp_connect(&c->creq, &c->tcp, (struct sockaddr *)&ck->addr, on_h_connect);
  if (rc < 0) {
    hconn_failed(c, "Failed to connect to %s port %d after 0 ms: %s", ck->host, ck->port, strerror(-rc));
  }
}

static bool same_addr(const struct sockaddr_storage *a, const struct sockaddr_storage *b) {
  if (a->ss_family != b->ss_family) return false;
  size_t n = a->ss_family == AF_INET6 ? sizeof(struct sockaddr_in6) : sizeof(struct sockaddr_in);
  return !memcmp(a, b, n);
}

/* Whether this run can go without curl: plain http to an address (or localhost). Fills the
 * checker's target and the request text. */
static bool native_target(struct checker *ck) {
  struct service *s = ck->s;
  const struct check_spec *k = s->spec->check;
  char host[300], pathbuf[2048];
  int port;
  const char *path;
  if (k->url) {
    if (strncasecmp(k->url, "http://", 7)) return false;
    const char *a = k->url + 7, *end = a + strcspn(a, "/?#");
    if (memchr(a, '@', (size_t)(end - a))) return false; /* credentials: curl's business */
    const char *colon = NULL;
    if (*a == '[') {
      const char *rb = memchr(a, ']', (size_t)(end - a));
      if (!rb || rb - a - 1 >= (long)sizeof host) return false;
      snprintf(host, sizeof host, "%.*s", (int)(rb - a - 1), a + 1);
      if (rb + 1 < end && rb[1] == ':')
        colon = rb + 1;
      else if (rb + 1 != end)
        return false;
    } else {
      colon = memchr(a, ':', (size_t)(end - a));
      size_t hl = (size_t)((colon ? colon : end) - a);
      if (hl == 0 || hl >= sizeof host) return false;
      snprintf(host, sizeof host, "%.*s", (int)hl, a);
    }
    port = 80;
    if (colon) {
      char *e;
      long v = strtol(colon + 1, &e, 10);
      if (e != end || v < 1 || v > 65535) return false;
      port = (int)v;
    }
    /* The path and query as sent: up to a fragment, "/" when there is none. */
    size_t pl = strcspn(end, "#");
    if (pl >= sizeof pathbuf - 1) return false;
    snprintf(pathbuf, sizeof pathbuf, "%s%.*s", *end == '/' ? "" : "/", (int)pl, end);
    for (const char *q = pathbuf; *q; q++)
      if ((unsigned char)*q <= ' ' || *q == 0x7f) return false; /* curl says what is wrong with it */
    path = pathbuf;
  } else {
    if (s->spec->endpoint.protocol == PROTO_HTTPS) return false;
    snprintf(host, sizeof host, "%s", service_host(s));
    port = service_port(s);
    path = k->path;
  }
  if (port <= 0) return false;
  if (addr_from_literal(host, port, &ck->addr) < 0) return false; /* a name to resolve: curl */
  size_t hl = strlen(host);
  if (hl >= sizeof ck->host) return false;
  memcpy(ck->host, host, hl + 1);
  ck->port = port;
  /* The request: as curl would send it. */
  bool own_host = false;
  for (char **h = k->headers; h && *h; h++) own_host |= !strncasecmp(*h, "Host:", 5);
  bool v6 = strchr(host, ':') != NULL;
  ck->wr.len = 0;
  buf_printf(&ck->wr, "%s %s HTTP/1.1\r\n", k->method, path && *path ? path : "/");
  if (!own_host) buf_printf(&ck->wr, "Host: %s%s%s:%d\r\n", v6 ? "[" : "", host, v6 ? "]" : "", port);
  buf_printf(&ck->wr, "User-Agent: herd/" HERD_VERSION " health-check\r\nAccept: */*\r\n");
  for (char **h = k->headers; h && *h; h++) buf_printf(&ck->wr, "%s\r\n", *h);
  buf_printf(&ck->wr, "\r\n");
  return true;
}

static void native_begin(struct checker *ck, struct run *r) {
  struct hconn *c = ck->conn;
  if (c && (!same_addr(&c->addr, &ck->addr) || c->busy)) {
    hconn_drop(c); /* another target (a new port), or a leftover */
    c = NULL;
  }
  if (c && c->connected)
    hconn_send(c);
  else if (!c)
    hconn_connect(ck, r);
  /* else: still connecting; on_h_connect sends */
}

static void http_cancel(struct checker *ck) {
  if (ck->easy) curlx_remove(ck->easy);
  /* An answer half read, or a connect that did not finish in time, is of no use: a
   * fresh connection for the next run. */
  if (ck->conn && (ck->conn->busy || !ck->conn->connected)) hconn_drop(ck->conn);
}

/* ---- TCP ---- */

static void on_run_handle_close(uv_handle_t *h) {
  struct run *r = h->data;
  struct service *s = r->s;
  r->nhandles--;
  run_release(r);
  service_unref(s);
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
  service_ref(s);
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
  /* The request held the service while in flight: let go of it last. */
  if (r->finished) {
    /* Timed out or cancelled while resolving. */
    uv_freeaddrinfo(res);
    r->nhandles--;
    run_release(r);
  } else if (status < 0 || !res) {
    r->nhandles--;
    deliver(r->ck, r, false, "cannot resolve host: %s", uv_strerror(status));
    uv_freeaddrinfo(res);
    run_release(r);
  } else {
    r->nhandles--;
    tcp_connect_addr(r, res->ai_addr);
    uv_freeaddrinfo(res);
  }
  service_unref(s);
}

static void tcp_begin(struct checker *ck, struct run *r) {
  struct service *s = ck->s;
  const struct check_spec *k = s->spec->check;
  const char *host = k->host ? k->host : s->spec->endpoint.set ? service_host(s) : "127.0.0.1";
  r->port = k->port ? k->port : service_port(s);
  struct sockaddr_storage ss;
  if (addr_from_literal(host, r->port, &ss) == 0) {
    tcp_connect_addr(r, (struct sockaddr *)&ss);
    return;
  }
  char port[16];
  snprintf(port, sizeof port, "%d", r->port);
  struct addrinfo hints = {.ai_family = AF_UNSPEC, .ai_socktype = SOCK_STREAM};
  r->gai.data = r;
  r->resolving = true;
  r->nhandles++;
  service_ref(s);
  int rc = uv_getaddrinfo(s->d->loop, &r->gai, on_resolved, host, port, &hints);
  if (rc < 0) {
    r->resolving = false;
    r->nhandles--;
    service_unref(s); /* (never the last reference: the checker holds the service) */
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

/* The last line of a command's output: a check's message. */
static void last_line(const char *out, size_t n, char *last, size_t len) {
  while (n && (out[n - 1] == '\n' || out[n - 1] == '\r' || out[n - 1] == ' ')) n--;
  size_t start = n;
  while (start && out[start - 1] != '\n') start--;
  snprintf(last, len, "%.*s", (int)(n - start), out + start);
}

static void on_remote_done(void *arg, const struct sshx_result *res) {
  struct run *r = arg;
  struct service *s = r->s;
  r->sreq = NULL;
  if (!r->finished) {
    const char *host = s->spec->check->ssh_host;
    char last[200];
    last_line(res->outlen ? res->out : res->err, res->outlen ? res->outlen : res->errlen, last, sizeof last);
    if (!res->ran)
      deliver(r->ck, r, false, "ssh host %s: %s", host, res->error);
    else if (res->status == 0)
      deliver(r->ck, r, true, "exit 0 on %s%s%s", host, *last ? ": " : "", last);
    else if (res->status < 0)
      deliver(r->ck, r, false, "no exit status from %s%s%s", host, *last ? ": " : "", last);
    else
      deliver(r->ck, r, false, "exit %d on %s%s%s", res->status, host, *last ? ": " : "", last);
  }
  r->nhandles--;
  run_release(r);
  service_unref(s);
}

/* On an ssh host, over its libssh2 session: the argv quoted for the remote shell, with the
 * service's name and port in its environment as a local check has them. */
static void remote_begin(struct checker *ck, struct run *r) {
  struct service *s = ck->s;
  const struct check_spec *k = s->spec->check;
  struct buf cmd = {0};
  buf_printf(&cmd, "HERD_SERVICE=%s HERD_PORT=%d", s->spec->name, s->port);
  for (char **a = k->command; *a; a++) {
    buf_lit(&cmd, " ");
    buf_shquote(&cmd, *a);
  }
  buf_append(&cmd, "", 1);
  r->sreq = sshx_exec(s->d, tunnel_host_spec(s->d, k->ssh_host), cmd.data, NULL, 0, on_remote_done, r);
  buf_free(&cmd);
  if (!r->sreq) {
    deliver(ck, r, false, "no ssh host %s", k->ssh_host);
    return;
  }
  r->nhandles++;
  service_ref(s);
}

static void exec_begin(struct checker *ck, struct run *r) {
  struct service *s = ck->s;
  if (s->spec->check->ssh_host) {
    remote_begin(ck, r);
    return;
  }
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
  service_ref(s);
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
  service_ref(s);
  if (rc < 0) {
    deliver(ck, r, false, "cannot run %s: %s", s->spec->check->command[0], uv_strerror(rc));
    run_close(r, (uv_handle_t *)&r->proc);
    run_close(r, (uv_handle_t *)&r->out);
    return;
  }
  uv_read_start((uv_stream_t *)&r->out, loop_alloc, on_exec_read);
}

static void exec_kill(struct run *r) {
  if (r->sreq) sshx_cancel(r->sreq); /* (its answer comes later and releases the run) */
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
  /* Slots are quantised: the interval has at least 40, none longer than 25 ms, and every
   * service whose slot falls in one runs its check in the same loop turn. A thousand
   * checks a second then wake the daemon some 40 times a second instead of a thousand,
   * each at most 25 ms (1/40 of the interval) off its unquantised time. */
  double nslots = fmax(40, ceil(k->interval / 0.025));
  double slot = glue_epoch + floor(ck->phase * nslots) / nslots * k->interval;
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
  char why[300];
  if (tunnel_blocker(s, why, sizeof why)) {
    /* Through an ssh host that is not carrying the endpoint now: nothing answers where the
     * user is (and whatever holds the local port is not the service). */
    arm(ck, r->started + s->spec->check->timeout);
    deliver(ck, r, false, "%s", why);
    run_release(r);
    return;
  }
  r->native = r->type == CHECK_HTTP && native_target(ck);
  /* The check timer bounds the run (curl has its own timeout too; ours is the backstop). */
  arm(ck, r->started + s->spec->check->timeout + (r->type == CHECK_HTTP && !r->native ? 0.05 : 0));
  switch (r->type) {
  case CHECK_HTTP:
    if (r->native)
      native_begin(ck, r);
    else
      http_begin(ck, r);
    break;
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
  buf_free(&ck->wr);
  free(ck);
  service_unref(s);
}

void check_attach(struct service *s) {
  if (!s->spec->check || s->checker) return;
  struct checker *ck = xcalloc(1, sizeof *ck);
  ck->req.done = http_done;
  ck->s = s;
  uv_timer_init(s->d->loop, &ck->timer);
  ck->timer.data = ck;
  service_ref(s);
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
  /* The instance is over: its server's connection goes with it. */
  if (ck->conn) hconn_drop(ck->conn);
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
  json_t *o = json_pack("{s:s,s:I,s:I}", "type", check_type_name(s->spec->check->type), "runs",
                        (json_int_t)ck->stats.runs, "passes", (json_int_t)ck->stats.passes);
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

const struct check_stats *check_stats(struct service *s) { return s->checker ? &s->checker->stats : NULL; }

bool check_last_ok(struct service *s) { return s->checker && s->checker->has_last && s->checker->last.ok; }

const char *check_last_msg(struct service *s) {
  return s->checker && s->checker->has_last ? s->checker->last.msg : NULL;
}
