/* The control socket server (see ctl.h). */
#include "herd/ctl.h"

#include "herd/log.h"

#include <arpa/inet.h>
#include <assert.h>
#include <errno.h>
#include <fcntl.h>
#include <llhttp.h>
#include <poll.h>
#include <stdarg.h>
#include <stdlib.h>
#include <string.h>
#include <sys/file.h>
#include <sys/socket.h>
#include <sys/stat.h>
#include <sys/un.h>
#include <unistd.h>

#define IDLE_MS 60000    /* an idle keep-alive connection is closed after this */
#define REQUEST_MS 10000 /* a started request must be complete within this */

/* Connections held by one uid other than root and the daemon's own. */
struct uid_count {
  uid_t uid;
  unsigned n;
};

struct ctl {
  struct daemon *d;
  ctl_dispatch_fn dispatch; /* routes a request: the API's, given by the daemon */
  void *dispatch_arg;
  union {
    uv_pipe_t pipe;
    uv_tcp_t tcp;
  } server;
  bool tcp;    /* ctl_open_http: a TCP listener (the status page), not the control socket */
  char *token; /* ...and the token that lets its requests change anything, or NULL */
  int lock_fd;
  char *lock_path;
  struct list conns;
  size_t nconns;
  struct uid_count *uids; /* a few distinct uids at most: a linear scan */
  size_t nuids;
  bool closing;
  bool probe; /* ctl_probe_open: no listener, no lock file */
};

enum conn_mode { C_READ, C_BUSY, C_PARKED, C_STREAM, C_DONE };

struct conn {
  union {
    uv_pipe_t pipe;
    uv_tcp_t tcp;
  } h;
  uv_timer_t timer;
  int nhandles;
  struct ctl *ctl;
  struct list link;
  llhttp_t parser;
  enum conn_mode mode;
  bool closing, keepalive, in_process, in_request, too_big;
  uid_t uid;
  gid_t gid;
  bool can_write, can_read;
  bool privileged; /* root or the daemon's uid: exempt from the per-uid cap and the reserve */
  bool counted;    /* counted in ctl->uids */
  bool throttled;  /* reading stopped until its unsent replies drain */
  bool eof;        /* the peer shut down its side: answer what it sent, then close */
  struct buf url, body, pending;
  struct buf hfield, auth; /* the header being read, and the Authorization header's value */
  size_t header_bytes;
  /* parked */
  void *park_arg;
  void (*on_gone)(struct conn *, void *);
  void (*on_timeout)(struct conn *, void *);
  /* a probe connection (ctl_probe_conn): no socket, what would be sent goes here */
  ctl_out_fn out;
  void *out_arg;
};

struct wreq {
  uv_write_t req;
  struct conn *c;
  bool close_after;
  char *owned; /* a body written after data without a copy (conn_reply_take), freed once written */
  char data[];
};

static void conn_close(struct conn *c);
static void conn_process(struct conn *c);
static void conn_check_eof(struct conn *c);
static void on_read(uv_stream_t *st, ssize_t n, const uv_buf_t *b);
static void on_timer(uv_timer_t *t);

static struct uid_count *uid_find(struct ctl *ctl, uid_t uid) {
  for (size_t i = 0; i < ctl->nuids; i++)
    if (ctl->uids[i].uid == uid) return &ctl->uids[i];
  return NULL;
}

static void uid_add(struct ctl *ctl, uid_t uid, int delta) {
  struct uid_count *u = uid_find(ctl, uid);
  if (!u) {
    assert(delta > 0);
    ctl->uids = xrealloc(ctl->uids, (ctl->nuids + 1) * sizeof *ctl->uids);
    u = &ctl->uids[ctl->nuids++];
    *u = (struct uid_count){.uid = uid};
  }
  u->n += delta;
  if (u->n == 0) *u = ctl->uids[--ctl->nuids]; /* the last one takes its place */
}

static size_t conn_unsent(const struct conn *c) { return uv_stream_get_write_queue_size((const uv_stream_t *)&c->h); }

static const char *status_text(int s) {
  switch (s) {
  case 200: return "OK";
  case 201: return "Created";
  case 202: return "Accepted";
  case 400: return "Bad Request";
  case 401: return "Unauthorized";
  case 403: return "Forbidden";
  case 404: return "Not Found";
  case 405: return "Method Not Allowed";
  case 408: return "Request Timeout";
  case 409: return "Conflict";
  case 413: return "Payload Too Large";
  case 422: return "Unprocessable Entity";
  case 431: return "Request Header Fields Too Large";
  case 500: return "Internal Server Error";
  case 503: return "Service Unavailable";
  case 504: return "Gateway Timeout";
  default: return "Status";
  }
}

static void on_conn_handle_close(uv_handle_t *h) {
  struct conn *c = h->data;
  if (--c->nhandles > 0) return;
  buf_free(&c->url);
  buf_free(&c->body);
  buf_free(&c->pending);
  buf_free(&c->hfield);
  buf_free(&c->auth);
  free(c);
}

static void conn_close(struct conn *c) {
  if (c->closing) return;
  c->closing = true;
  if (c->on_gone) {
    void (*gone)(struct conn *, void *) = c->on_gone;
    c->on_gone = NULL;
    c->on_timeout = NULL;
    gone(c, c->park_arg);
  }
  list_del(&c->link);
  c->ctl->nconns--;
  if (c->counted) uid_add(c->ctl, c->uid, -1);
  uv_close((uv_handle_t *)&c->h, on_conn_handle_close);
  uv_close((uv_handle_t *)&c->timer, on_conn_handle_close);
}

bool conn_closing(const struct conn *c) { return c->closing; }

static void on_write(uv_write_t *req, int status) {
  struct wreq *w = container_of(req, struct wreq, req);
  struct conn *c = w->c;
  bool close_after = w->close_after;
  free(w->owned);
  free(w);
  if (c->closing) return;
  if (status < 0 || close_after) {
    conn_close(c);
    return;
  }
  /* A throttled client that reads is not idle: only one that reads nothing for IDLE_MS goes. */
  if (c->throttled && c->mode == C_READ) uv_timer_start(&c->timer, on_timer, IDLE_MS, 0);
  if (c->throttled && conn_unsent(c) <= CTL_MAX_UNSENT / 2) {
    /* The client reads again: take its waiting requests, then read more. */
    c->throttled = false;
    if (!c->eof) uv_read_start((uv_stream_t *)&c->h, loop_alloc, on_read);
    if (c->mode == C_READ) {
      uv_timer_start(&c->timer, on_timer, IDLE_MS, 0);
      if (!c->in_process) conn_process(c);
    }
  }
  conn_check_eof(c);
}

/* Write data (copied), then `owned` (n2 bytes, taken: freed once written) in the same request. */
static int conn_write_own(struct conn *c, const char *data, size_t n, char *owned, size_t n2, bool close_after) {
  if (c->closing) {
    free(owned);
    return -1;
  }
  if (c->out) { /* a probe: sent at once, in full */
    c->out(c->out_arg, data, n);
    if (owned) c->out(c->out_arg, owned, n2);
    free(owned);
    if (close_after) conn_close(c);
    return 0;
  }
  struct wreq *w = xmalloc(sizeof *w + n);
  memcpy(w->data, data, n);
  w->c = c;
  w->close_after = close_after;
  w->owned = owned;
  uv_buf_t b[2] = {uv_buf_init(w->data, (unsigned)n), uv_buf_init(owned, (unsigned)n2)};
  int rc = uv_write(&w->req, (uv_stream_t *)&c->h, b, owned ? 2 : 1, on_write);
  if (rc < 0) {
    free(w->owned);
    free(w);
    conn_close(c);
    return -1;
  }
  return 0;
}

static int conn_write(struct conn *c, const char *data, size_t n, bool close_after) {
  return conn_write_own(c, data, n, NULL, 0, close_after);
}

static void on_timer(uv_timer_t *t) {
  struct conn *c = t->data;
  if (c->mode == C_PARKED && c->on_timeout) {
    void (*cb)(struct conn *, void *) = c->on_timeout;
    c->on_timeout = NULL;
    cb(c, c->park_arg);
    return;
  }
  if (c->mode == C_READ && c->in_request) {
    c->keepalive = false;
    conn_error(c, 408, "request_timeout", NULL, "request not complete within %d s", REQUEST_MS / 1000);
    return;
  }
  if (c->mode == C_READ) conn_close(c);
}

/* Answer with body (copied after the head), or with `owned` (taken, not copied: a large page). */
static void respond_own(struct conn *c, int status, const char *ctype, const char *body, char *owned, size_t n) {
  /* A half-closed peer sends nothing more: its last answer closes the connection. */
  if (c->eof && !c->pending.len) c->keepalive = false;
  struct buf b = {0};
  buf_printf(&b, "HTTP/1.1 %d %s\r\nContent-Type: %s\r\nContent-Length: %zu\r\nConnection: %s\r\n\r\n", status,
             status_text(status), ctype, n, c->keepalive ? "keep-alive" : "close");
  if (!owned) buf_append(&b, body, n);
  /* The request is answered: whoever parked the connection lets go of it now. */
  c->on_gone = NULL;
  c->on_timeout = NULL;
  conn_write_own(c, b.data, b.len, owned, n, !c->keepalive);
  buf_free(&b);
  if (!c->keepalive) {
    /* The last reply on this connection: nothing after it is parsed. */
    c->mode = C_DONE;
    c->pending.len = 0;
    uv_timer_stop(&c->timer);
    return;
  }
  c->mode = C_READ;
  if (!c->closing) {
    uv_timer_start(&c->timer, on_timer, IDLE_MS, 0);
    /* A client that sends requests and does not read the replies: past CTL_MAX_UNSENT
     * unsent bytes, stop reading it (its requests wait in the kernel, then in the
     * client) until half of that is sent. Memory per connection stays bounded. */
    if (!c->throttled && conn_unsent(c) > CTL_MAX_UNSENT) {
      c->throttled = true;
      uv_read_stop((uv_stream_t *)&c->h);
    }
    if (!c->in_process) conn_process(c); /* pipelined requests that waited */
    conn_check_eof(c);
  }
}

static void respond(struct conn *c, int status, const char *ctype, const char *body, size_t n) {
  respond_own(c, status, ctype, body, NULL, n);
}

void conn_reply(struct conn *c, int status, json_t *obj) {
  if (c->closing) {
    json_decref(obj);
    return;
  }
  json_object_set_new(obj, "api", json_integer(HERD_API_VERSION));
  /* Insertion order (jansson keeps it): sorting every object's keys cost more than the rest. */
  char *s = obj ? json_dumps(obj, JSON_COMPACT) : NULL;
  json_decref(obj);
  if (!s) { /* a json_pack that failed (a string not UTF-8): an answer all the same */
    status = 500;
    s = xasprintf("{\"error\":{\"code\":\"internal\",\"message\":\"the reply could not be encoded\"},\"api\":%d}",
                  HERD_API_VERSION);
  }
  size_t n = strlen(s);
  s = xrealloc(s, n + 2);
  s[n++] = '\n';
  respond(c, status, "application/json", s, n);
  free(s);
}

void conn_reply_raw(struct conn *c, int status, const char *content_type, const char *data, size_t n) {
  if (!c->closing) respond(c, status, content_type, data, n);
}

void conn_reply_take(struct conn *c, int status, const char *content_type, struct buf *body) {
  char *data = body->data;
  size_t n = body->len;
  *body = (struct buf){0};
  if (c->closing || !data) {
    if (!c->closing) respond(c, status, content_type, "", 0);
    free(data);
    return;
  }
  respond_own(c, status, content_type, NULL, data, n);
}

void conn_stream_end(struct conn *c) {
  if (!c->closing) conn_write(c, "0\r\n\r\n", 5, true);
}

void conn_error(struct conn *c, int status, const char *code, json_t *extra, const char *fmt, ...) {
  char msg[1024];
  va_list ap;
  va_start(ap, fmt);
  vsnprintf(msg, sizeof msg, fmt, ap);
  va_end(ap);
  utf8_sanitize(msg); /* it may quote the request's bytes (or be cut inside a character): JSON needs UTF-8 */
  json_t *e = json_pack("{s:s,s:s}", "code", code, "message", msg);
  if (extra) {
    json_object_update(e, extra);
    json_decref(extra);
  }
  conn_reply(c, status, json_pack("{s:o}", "error", e));
}

void conn_park(struct conn *c, void *arg, void (*on_gone)(struct conn *, void *),
               void (*on_timeout)(struct conn *, void *), uint64_t ms) {
  if (c->mode != C_STREAM) c->mode = C_PARKED;
  c->park_arg = arg;
  c->on_gone = on_gone;
  c->on_timeout = on_timeout;
  if (ms)
    uv_timer_start(&c->timer, on_timer, ms, 0);
  else
    uv_timer_stop(&c->timer);
}

void conn_stream_begin(struct conn *c, int status, const char *content_type) {
  char head[256];
  int n =
      snprintf(head, sizeof head,
               "HTTP/1.1 %d %s\r\nContent-Type: %s\r\nTransfer-Encoding: chunked\r\nCache-Control: no-cache\r\n\r\n",
               status, status_text(status), content_type);
  conn_write(c, head, (size_t)n, false);
  c->mode = C_STREAM;
  c->keepalive = false; /* a stream ends with the connection */
  uv_timer_stop(&c->timer);
}

int conn_stream_write(struct conn *c, const char *data, size_t n) {
  if (c->closing) return -1;
  if (n == 0) return 0;
  if (uv_stream_get_write_queue_size((uv_stream_t *)&c->h) > CTL_MAX_BACKLOG) {
    log_warn("control: a follower fell %d MiB behind; closing its stream", CTL_MAX_BACKLOG >> 20);
    conn_close(c);
    return -1;
  }
  struct buf b = {0};
  buf_printf(&b, "%zx\r\n", n);
  buf_append(&b, data, n);
  buf_append(&b, "\r\n", 2);
  int rc = conn_write(c, b.data, b.len, false);
  buf_free(&b);
  return rc;
}

/* ---- llhttp callbacks ---- */

static int on_message_begin(llhttp_t *p) {
  struct conn *c = p->data;
  c->url.len = c->body.len = c->hfield.len = c->auth.len = 0;
  c->header_bytes = 0;
  c->too_big = false;
  c->in_request = true;
  uv_timer_start(&c->timer, on_timer, REQUEST_MS, 0);
  return 0;
}

static int on_url(llhttp_t *p, const char *at, size_t n) {
  struct conn *c = p->data;
  c->header_bytes += n;
  if (c->header_bytes > CTL_MAX_HEADER) return -1;
  buf_append(&c->url, at, n);
  return 0;
}

static int on_header_bytes(llhttp_t *p, const char *at, size_t n) {
  struct conn *c = p->data;
  c->header_bytes += n;
  return c->header_bytes > CTL_MAX_HEADER ? -1 : 0;
}

/* The status page's listener reads one header: Authorization (its token). */
static int on_header_field(llhttp_t *p, const char *at, size_t n) {
  struct conn *c = p->data;
  if (c->ctl->tcp) buf_append(&c->hfield, at, n);
  return on_header_bytes(p, at, n);
}

static int on_header_value(llhttp_t *p, const char *at, size_t n) {
  struct conn *c = p->data;
  if (c->ctl->tcp && c->hfield.len == 13 && !strncasecmp(c->hfield.data, "authorization", 13))
    buf_append(&c->auth, at, n);
  return on_header_bytes(p, at, n);
}

static int on_header_value_complete(llhttp_t *p) {
  struct conn *c = p->data;
  c->hfield.len = 0;
  return 0;
}

/* Whether the request carries "Authorization: Bearer <the token>" (compared in constant time). */
static bool token_ok(const struct conn *c) {
  const char *t = c->ctl->token;
  if (!t || c->auth.len < 7 || strncasecmp(c->auth.data, "Bearer ", 7)) return false;
  size_t n = strlen(t);
  if (c->auth.len - 7 != n) return false;
  unsigned char diff = 0;
  for (size_t i = 0; i < n; i++) diff |= (unsigned char)(c->auth.data[7 + i] ^ t[i]);
  return diff == 0;
}

static int on_headers_complete(llhttp_t *p) {
  struct conn *c = p->data;
  if ((p->flags & F_CONTENT_LENGTH) && p->content_length > CTL_MAX_BODY) {
    c->too_big = true;
    return -1;
  }
  return 0;
}

static int on_body(llhttp_t *p, const char *at, size_t n) {
  struct conn *c = p->data;
  if (c->body.len + n > CTL_MAX_BODY) {
    c->too_big = true;
    return -1;
  }
  buf_append(&c->body, at, n);
  return 0;
}

static int on_message_complete(llhttp_t *p) {
  struct conn *c = p->data;
  c->in_request = false;
  return HPE_PAUSED; /* one request at a time: dispatch, then resume */
}

static llhttp_settings_t settings;

static int hexval(char ch) {
  if (ch >= '0' && ch <= '9') return ch - '0';
  if (ch >= 'a' && ch <= 'f') return ch - 'a' + 10;
  if (ch >= 'A' && ch <= 'F') return ch - 'A' + 10;
  return -1;
}

static void pct_decode(char *s, bool plus) {
  char *o = s;
  for (; *s; s++) {
    if (*s == '%' && hexval(s[1]) >= 0 && hexval(s[2]) >= 0) {
      *o++ = (char)(hexval(s[1]) * 16 + hexval(s[2]));
      s += 2;
    } else if (plus && *s == '+') {
      *o++ = ' ';
    } else {
      *o++ = *s;
    }
  }
  *o = '\0';
}

const char *req_query(const struct request *r, const char *key, char *buf, size_t len) {
  size_t kl = strlen(key);
  for (const char *p = r->query; p && *p;) {
    const char *amp = strchr(p, '&');
    size_t seg = amp ? (size_t)(amp - p) : strlen(p);
    if (seg >= kl && !strncmp(p, key, kl) && (seg == kl || p[kl] == '=')) {
      size_t vl = seg == kl ? 0 : seg - kl - 1;
      if (vl >= len) vl = len - 1;
      memcpy(buf, p + kl + (seg == kl ? 0 : 1), vl);
      buf[vl] = '\0';
      pct_decode(buf, true);
      return buf;
    }
    p = amp ? amp + 1 : NULL;
  }
  return NULL;
}

/* The key of the first query parameter that holds an encoded NUL, into key; NULL if none. */
static const char *nul_param(const char *query, char *key, size_t len) {
  for (const char *p = query; p && *p;) {
    const char *amp = strchr(p, '&');
    size_t seg = amp ? (size_t)(amp - p) : strlen(p);
    const char *nul = strstr(p, "%00");
    if (nul && nul < p + seg) {
      size_t kl = strcspn(p, "=&");
      if (kl >= len) kl = len - 1;
      memcpy(key, p, kl);
      key[kl] = '\0';
      pct_decode(key, true);
      return key;
    }
    p = amp ? amp + 1 : NULL;
  }
  return NULL;
}

static void dispatch(struct conn *c) {
  struct request r = {0};
  r.method = llhttp_method_name((llhttp_method_t)c->parser.method);
  r.path = xstrdup(c->url.data ? c->url.data : "/");
  char *q = strchr(r.path, '?');
  if (q) *q++ = '\0';
  r.query = xstrdup(q ? q : "");
  /* An encoded NUL would cut the decoded path (or value) short and act on the prefix. */
  bool nul_path = strstr(r.path, "%00") != NULL;
  char nul_key[64];
  const char *nul_q = nul_param(r.query, nul_key, sizeof nul_key);
  pct_decode(r.path, false);
  r.body = c->body.data ? c->body.data : "";
  r.body_len = c->body.len;
  r.uid = c->uid;
  r.can_write = c->can_write || (c->ctl->tcp && token_ok(c));
  /* A half-closed peer's last request: answer with Connection: close. */
  c->keepalive = llhttp_should_keep_alive(&c->parser) && !(c->eof && !c->pending.len);
  c->mode = C_BUSY;
  uv_timer_stop(&c->timer);
  if (nul_path)
    conn_error(c, 400, "bad_path", NULL, "the path holds an encoded NUL (%%00)");
  else if (nul_q)
    conn_error(c, 400, "bad_query", json_pack("{s:s}", "param", nul_q),
               "query parameter \"%s\" holds an encoded NUL (%%00)", nul_q);
  else if (!c->can_read)
    conn_error(c, 403, "forbidden", NULL, "uid %u may not use this daemon (owner uid %u)", (unsigned)c->uid,
               (unsigned)geteuid());
  else
    c->ctl->dispatch(c->ctl->dispatch_arg, c, &r);
  free(r.path);
  free(r.query);
}

/* Feed pending bytes to the parser while the connection is free to take a request. */
static void conn_process(struct conn *c) {
  c->in_process = true;
  while (!c->closing && c->mode == C_READ && !c->throttled && c->pending.len) {
    struct buf in = c->pending;
    c->pending = (struct buf){0};
    llhttp_errno_t e = llhttp_execute(&c->parser, in.data, in.len);
    if (e == HPE_PAUSED) {
      const char *stop = llhttp_get_error_pos(&c->parser);
      size_t used = stop ? (size_t)(stop - in.data) : in.len;
      if (used < in.len) buf_append(&c->pending, in.data + used, in.len - used);
      llhttp_resume(&c->parser);
      buf_free(&in);
      dispatch(c);
      continue;
    }
    buf_free(&in);
    if (e != HPE_OK) {
      c->keepalive = false;
      if (c->too_big)
        conn_error(c, 413, "too_large", NULL, "request body over %d bytes", CTL_MAX_BODY);
      else if (c->header_bytes > CTL_MAX_HEADER)
        conn_error(c, 431, "headers_too_large", NULL, "request line and headers over %d bytes", CTL_MAX_HEADER);
      else
        conn_error(c, 400, "bad_request", NULL, "malformed HTTP request: %s", llhttp_get_error_reason(&c->parser));
      break;
    }
  }
  c->in_process = false;
  conn_check_eof(c);
}

/* Whether the peer closed its socket (POLLHUP), not just shut down its sending side. */
static bool peer_gone(struct conn *c) {
  if (c->out) return false; /* a probe's end of input is a shutdown(SHUT_WR) */
  int fd;
  if (uv_fileno((uv_handle_t *)&c->h, &fd) < 0) return true;
  struct pollfd pf = {.fd = fd, .events = POLLOUT};
  return poll(&pf, 1, 0) < 0 || (pf.revents & (POLLHUP | POLLERR));
}

/* A half-closed peer: once everything it sent is answered and sent, close. */
static void conn_check_eof(struct conn *c) {
  if (!c->eof || c->closing || c->mode != C_READ || c->in_process || c->pending.len) return;
  /* Nothing more will come: an unfinished request never completes. */
  if (c->in_request || conn_unsent(c) == 0) conn_close(c);
  /* else on_write comes back here once the replies are sent */
}

static void on_read(uv_stream_t *st, ssize_t n, const uv_buf_t *b) {
  struct conn *c = st->data;
  if (n < 0) {
    if (n != UV_EOF || peer_gone(c)) {
      conn_close(c);
      return;
    }
    /* shutdown(SHUT_WR) after its requests: it still reads. Answer, then close. */
    c->eof = true;
    if (c->mode == C_READ && !c->in_process) conn_process(c);
    conn_check_eof(c);
    return;
  }
  if (n == 0) return;
  if (c->mode == C_STREAM || c->mode == C_DONE) return; /* nothing more is read from this peer */
  if (c->pending.len + (size_t)n > CTL_MAX_HEADER + CTL_MAX_BODY) {
    conn_close(c); /* flooding while a request is pending */
    return;
  }
  buf_append(&c->pending, b->base, (size_t)n);
  if (c->mode == C_READ && !c->in_process) conn_process(c);
}

static struct conn *conn_new(struct ctl *ctl) {
  struct conn *c = xcalloc(1, sizeof *c);
  c->ctl = ctl;
  if (ctl->tcp)
    uv_tcp_init(ctl->d->loop, &c->h.tcp);
  else
    uv_pipe_init(ctl->d->loop, &c->h.pipe, 0);
  uv_timer_init(ctl->d->loop, &c->timer);
  c->h.pipe.data = c->timer.data = c; /* (data is the handle's first field in both) */
  c->nhandles = 2;
  list_add_tail(&ctl->conns, &c->link);
  ctl->nconns++;
  return c;
}

static void on_connection(uv_stream_t *server, int status) {
  struct ctl *ctl = server->data;
  if (status < 0) {
    /* Out of descriptors (libuv closed the client to drain the backlog): say so, once a
     * minute at most, rather than refuse without a word. */
    static double said;
    if (now_mono() - said > 60) {
      said = now_mono();
      log_error("control socket: cannot accept a client: %s (services are held back to keep 256 descriptors "
                "free: something else holds them)",
                uv_strerror(status));
    }
    return;
  }
  struct conn *c = conn_new(ctl);
  if (uv_accept(server, (uv_stream_t *)&c->h) < 0) {
    conn_close(c);
    return;
  }
  int fd;
  struct ucred cred;
  socklen_t len = sizeof cred;
  if (ctl->tcp) {
    /* The status page: anyone who reaches it may read; a change needs the token (dispatch).
     * Its connections count as one uid of their own, under the same caps. */
    c->uid = CTL_HTTP_UID;
    c->can_read = true;
    uv_tcp_nodelay(&c->h.tcp, 1);
  } else if (uv_fileno((uv_handle_t *)&c->h, &fd) == 0 && getsockopt(fd, SOL_SOCKET, SO_PEERCRED, &cred, &len) == 0) {
    c->uid = cred.uid;
    c->gid = cred.gid;
    c->can_write = cred.uid == 0 || cred.uid == geteuid();
    c->can_read = c->can_write || (ctl->d->has_read_gid && cred.gid == ctl->d->read_gid);
    c->privileged = c->can_write;
  } else {
    c->uid = (uid_t)-1; /* unknown: no access, and counted as another uid */
  }
  llhttp_init(&c->parser, HTTP_REQUEST, &settings);
  c->parser.data = c;
  c->keepalive = true;
  if (ctl->nconns > CTL_MAX_CONNS) {
    c->keepalive = false;
    conn_error(c, 503, "busy", NULL, "too many connections (%d)", CTL_MAX_CONNS);
    return;
  }
  if (!c->privileged) {
    /* Root and the daemon's uid always find room: others stop short of the reserve, and
     * one uid cannot take all of what is left. */
    struct uid_count *u = uid_find(ctl, c->uid);
    if (ctl->nconns > CTL_MAX_CONNS - CTL_RESERVED_CONNS) {
      c->keepalive = false;
      conn_error(c, 503, "busy", NULL, "too many connections (%d; the last %d are kept for root and uid %u)",
                 CTL_MAX_CONNS - CTL_RESERVED_CONNS, CTL_RESERVED_CONNS, (unsigned)geteuid());
      return;
    }
    if (u && u->n >= CTL_MAX_CONNS_PER_UID) {
      c->keepalive = false;
      conn_error(c, 503, "busy", NULL, "uid %u already holds %d connections (the most one uid may hold)",
                 (unsigned)c->uid, CTL_MAX_CONNS_PER_UID);
      return;
    }
    uid_add(ctl, c->uid, 1);
    c->counted = true;
  }
  uv_timer_start(&c->timer, on_timer, IDLE_MS, 0);
  uv_read_start((uv_stream_t *)&c->h, loop_alloc, on_read);
}

static void on_server_close(uv_handle_t *h) {
  struct ctl *ctl = h->data;
  free(ctl->uids);
  free(ctl->lock_path);
  free(ctl->token);
  free(ctl);
}

static bool lock_file_ours(int fd) {
  struct stat st;
  if (fstat(fd, &st) < 0 || !S_ISREG(st.st_mode) || st.st_size > 24) return false;
  char buf[32];
  ssize_t n = pread(fd, buf, sizeof buf - 1, 0);
  if (n < 0) return false;
  for (ssize_t i = 0; i < n; i++)
    if (!(buf[i] >= '0' && buf[i] <= '9') && !(buf[i] == '\n' && i == n - 1)) return false;
  return true;
}

static void settings_init(void) {
  llhttp_settings_init(&settings);
  settings.on_message_begin = on_message_begin;
  settings.on_url = on_url;
  settings.on_header_field = on_header_field;
  settings.on_header_value = on_header_value;
  settings.on_header_value_complete = on_header_value_complete;
  settings.on_headers_complete = on_headers_complete;
  settings.on_body = on_body;
  settings.on_message_complete = on_message_complete;
}

int ctl_open(struct daemon *d, ctl_dispatch_fn route, void *arg, char **err) {
  settings_init();

  /* libuv would cut a longer path short and bind somewhere else. */
  const size_t max_path = sizeof((struct sockaddr_un *)0)->sun_path - 1;
  if (strlen(d->socket_path) > max_path) {
    *err = xasprintf("socket path %s is %zu bytes long; a Unix socket path has at most %zu", d->socket_path,
                     strlen(d->socket_path), max_path);
    return -1;
  }
  /* Only ever a stale socket is removed: never a file that happens to have the name. */
  struct stat st;
  if (lstat(d->socket_path, &st) == 0 && !S_ISSOCK(st.st_mode)) {
    *err = xasprintf("%s exists and is not a socket; refusing to replace it (choose another --socket)", d->socket_path);
    return -1;
  }
  struct ctl *ctl = xcalloc(1, sizeof *ctl);
  ctl->d = d;
  ctl->dispatch = route;
  ctl->dispatch_arg = arg;
  list_init(&ctl->conns);
  ctl->lock_path = xasprintf("%s.lock", d->socket_path);
  ctl->lock_fd = open(ctl->lock_path, O_RDWR | O_CREAT | O_CLOEXEC | O_NOFOLLOW, 0600);
  if (ctl->lock_fd < 0) {
    *err = xasprintf("cannot open %s: %s", ctl->lock_path, strerror(errno));
    goto fail;
  }
  /* Only ever our own lock file is rewritten: empty, or a pid and a newline. A user's file
   * that happens to have the name is left as it is. */
  if (!lock_file_ours(ctl->lock_fd)) {
    *err = xasprintf("%s exists and is not a herd lock file; refusing to overwrite it (choose another --socket)",
                     ctl->lock_path);
    goto fail;
  }
  if (flock(ctl->lock_fd, LOCK_EX | LOCK_NB) < 0) {
    char pid[32] = "";
    ssize_t n = pread(ctl->lock_fd, pid, sizeof pid - 1, 0);
    pid[n > 0 ? n : 0] = '\0';
    pid[strcspn(pid, "\n")] = '\0';
    *err = xasprintf("socket %s is in use by another herd daemon (pid %s)", d->socket_path, *pid ? pid : "?");
    goto fail;
  }
  char pidbuf[32];
  int pn = snprintf(pidbuf, sizeof pidbuf, "%d\n", (int)getpid());
  if (ftruncate(ctl->lock_fd, 0) == 0 && pwrite(ctl->lock_fd, pidbuf, (size_t)pn, 0) < 0) { /* best effort */
  }
  /* We hold the lock, so a socket here is stale: remove it (and nothing else). */
  if (lstat(d->socket_path, &st) == 0) {
    if (!S_ISSOCK(st.st_mode)) {
      *err =
          xasprintf("%s exists and is not a socket; refusing to replace it (choose another --socket)", d->socket_path);
      goto fail;
    }
    unlink(d->socket_path);
  }
  uv_pipe_init(d->loop, &ctl->server.pipe, 0);
  ctl->server.pipe.data = ctl;
  mode_t old = umask(0177);
  int rc = uv_pipe_bind(&ctl->server.pipe, d->socket_path);
  umask(old);
  if (rc == 0) rc = uv_listen((uv_stream_t *)&ctl->server, SOMAXCONN, on_connection);
  if (rc < 0) {
    *err = xasprintf("cannot listen on %s: %s", d->socket_path, uv_strerror(rc));
    close(ctl->lock_fd);
    ctl->lock_fd = -1;
    ctl->closing = true;
    uv_close((uv_handle_t *)&ctl->server, on_server_close); /* frees ctl */
    return -1;
  }
  if (d->has_read_gid) {
    /* Members of --read-group may connect (and read); writes stay owner-only (403). */
    if (chown(d->socket_path, (uid_t)-1, d->read_gid) == 0) chmod(d->socket_path, 0660);
  } else {
    chmod(d->socket_path, 0600);
  }
  d->ctl = ctl;
  return 0;
fail:
  if (ctl->lock_fd >= 0) close(ctl->lock_fd);
  free(ctl->lock_path);
  free(ctl);
  return -1;
}

void ctl_close(struct ctl *ctl) {
  if (!ctl || ctl->closing) return;
  ctl->closing = true;
  struct list *pos, *tmp;
  list_for_each_safe(pos, tmp, &ctl->conns) conn_close(container_of(pos, struct conn, link));
  if (ctl->probe) { /* no listener: nothing of it is on the loop */
    free(ctl->uids);
    free(ctl);
    return;
  }
  if (ctl->tcp) {
    uv_close((uv_handle_t *)&ctl->server, on_server_close);
    return;
  }
  unlink(ctl->d->socket_path);
  if (ctl->lock_fd >= 0) {
    unlink(ctl->lock_path);
    close(ctl->lock_fd);
    ctl->lock_fd = -1;
  }
  uv_close((uv_handle_t *)&ctl->server, on_server_close);
}

size_t ctl_nconns(struct ctl *ctl) { return ctl ? ctl->nconns : 0; }

int ctl_open_http(struct daemon *d, const char *addr, const char *token, ctl_dispatch_fn route, void *arg,
                  struct ctl **out, char **err) {
  settings_init();
  /* PORT, HOST:PORT or [V6]:PORT; the host defaults to loopback. */
  char host[256] = "127.0.0.1";
  const char *port = addr;
  const char *colon = strrchr(addr, ':');
  if (colon) {
    size_t hl = (size_t)(colon - addr);
    if (addr[0] == '[' && hl >= 2 && addr[hl - 1] == ']') addr++, hl -= 2;
    if (hl == 0 || hl >= sizeof host) {
      *err = xasprintf("--http %s: expected PORT, HOST:PORT or [V6]:PORT", addr);
      return -1;
    }
    memcpy(host, addr, hl);
    host[hl] = '\0';
    port = colon + 1;
  }
  char *end;
  long p = strtol(port, &end, 10);
  if (!*port || *end || p < 0 || p > 65535) {
    *err = xasprintf("--http %s: the port must be a number from 0 (any free one) to 65535", addr);
    return -1;
  }
  struct sockaddr_storage ss;
  if (uv_ip4_addr(host, (int)p, (struct sockaddr_in *)&ss) < 0 &&
      uv_ip6_addr(host, (int)p, (struct sockaddr_in6 *)&ss) < 0) {
    *err = xasprintf("--http: \"%s\" is not an IP address (a name is not resolved: give 127.0.0.1 or ::1)", host);
    return -1;
  }
  struct ctl *ctl = xcalloc(1, sizeof *ctl);
  ctl->d = d;
  ctl->dispatch = route;
  ctl->dispatch_arg = arg;
  ctl->tcp = true;
  ctl->lock_fd = -1;
  ctl->token = token ? xstrdup(token) : NULL;
  list_init(&ctl->conns);
  uv_tcp_init(d->loop, &ctl->server.tcp);
  ctl->server.tcp.data = ctl;
  int rc = uv_tcp_bind(&ctl->server.tcp, (struct sockaddr *)&ss, 0);
  if (rc == 0) rc = uv_listen((uv_stream_t *)&ctl->server, SOMAXCONN, on_connection);
  if (rc < 0) {
    *err = xasprintf("--http: cannot listen on %s port %ld: %s", host, p, uv_strerror(rc));
    ctl->closing = true;
    uv_close((uv_handle_t *)&ctl->server, on_server_close); /* frees ctl */
    return -1;
  }
  *out = ctl;
  return 0;
}

int ctl_http_port(struct ctl *ctl) {
  struct sockaddr_storage ss;
  int len = sizeof ss;
  if (!ctl || !ctl->tcp || uv_tcp_getsockname(&ctl->server.tcp, (struct sockaddr *)&ss, &len) < 0) return 0;
  return ntohs(ss.ss_family == AF_INET6 ? ((struct sockaddr_in6 *)&ss)->sin6_port
                                        : ((struct sockaddr_in *)&ss)->sin_port);
}

/* ---- probes: the same connections without a socket (tests, fuzzing) ---- */

struct ctl *ctl_probe_open(struct daemon *d, ctl_dispatch_fn route, void *arg) {
  settings_init();
  struct ctl *ctl = xcalloc(1, sizeof *ctl);
  ctl->d = d;
  ctl->dispatch = route;
  ctl->dispatch_arg = arg;
  ctl->lock_fd = -1;
  ctl->probe = true;
  list_init(&ctl->conns);
  return ctl;
}

struct conn *ctl_probe_conn(struct ctl *ctl, uid_t uid, bool can_write, bool can_read, ctl_out_fn out, void *out_arg) {
  assert(ctl->probe && out);
  struct conn *c = conn_new(ctl);
  c->out = out;
  c->out_arg = out_arg;
  c->uid = uid;
  c->can_write = can_write;
  c->can_read = can_read || can_write;
  c->privileged = true;
  llhttp_init(&c->parser, HTTP_REQUEST, &settings);
  c->parser.data = c;
  c->keepalive = true;
  uv_timer_start(&c->timer, on_timer, IDLE_MS, 0);
  return c;
}

void ctl_probe_read(struct conn *c, const char *data, size_t n) {
  if (c->closing) return;
  uv_buf_t b = uv_buf_init((char *)data, (unsigned)n);
  on_read((uv_stream_t *)&c->h, n ? (ssize_t)n : UV_EOF, &b);
}
