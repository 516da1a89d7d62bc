/* OpenSSH's multiplexing protocol, client side, on the loop (see sshmux.h). */
#include "herd/sshmux.h"

#include "herd/herd.h"
#include "herd/loop.h"

#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/un.h>

#define MUX_VERSION 4
#define MUX_FWD_LOCAL 1
#define MAX_PACKET (256 * 1024) /* the master's own limit (CHANNEL_MUX_MAX_PACKET) */

struct req {
  struct list link;
  uint32_t rid;
  sshmux_cb cb;
  void *arg;
};

struct wr {
  uv_write_t w;
  struct sshmux *m;
  size_t len;
  char data[];
};

struct sshmux {
  uv_pipe_t pipe;
  uv_connect_t connect;
  uv_timer_t later; /* a write that failed at once is reported from here, not to its caller */
  int write_error;
  int open_handles;
  struct buf out;      /* written once connected */
  struct list pending; /* requests sent, in order, awaiting their answers */
  uint32_t rid;
  struct buf in;
  bool connected, hello, failed, closed;
  sshmux_dead_cb dead;
  void *arg;
};

static uint32_t get32(const uint8_t *p) {
  return (uint32_t)p[0] << 24 | (uint32_t)p[1] << 16 | (uint32_t)p[2] << 8 | (uint32_t)p[3];
}

long sshmux_parse(const uint8_t *p, size_t n, struct sshmux_msg *out) {
  if (n < 4) return 0;
  uint32_t len = get32(p);
  if (len < 4 || len > MAX_PACKET) return -1;
  if (n - 4 < len) return 0;
  const uint8_t *b = p + 4, *e = b + len;
  memset(out, 0, sizeof *out);
  out->type = get32(b);
  b += 4;
  if (out->type == SSHMUX_HELLO) { /* version, then extensions (name/value strings): ignored */
    if (e - b < 4) return -1;
    out->value = get32(b);
    return 4 + (long)len;
  }
  if (e - b < 4) return -1;
  out->rid = get32(b);
  b += 4;
  switch (out->type) {
  case SSHMUX_S_ALIVE:
  case SSHMUX_S_REMOTE_PORT:
    if (e - b < 4) return -1;
    out->value = get32(b);
    break;
  case SSHMUX_S_FAILURE:
  case SSHMUX_S_PERMISSION_DENIED: {
    if (e - b < 4) return -1;
    uint32_t sl = get32(b);
    b += 4;
    if (sl > (size_t)(e - b)) return -1;
    size_t k = sl < sizeof out->text - 1 ? sl : sizeof out->text - 1;
    memcpy(out->text, b, k);
    out->text[k] = '\0';
    for (size_t i = 0; i < k; i++)
      if ((unsigned char)out->text[i] < 0x20) out->text[i] = ' ';
    while (k && out->text[k - 1] == ' ') out->text[--k] = '\0';
    utf8_sanitize(out->text);
    break;
  }
  default: break; /* S_OK, and what a request of ours is never answered with */
  }
  return 4 + (long)len;
}

/* ---- the connection ---- */

static void on_close(uv_handle_t *h) {
  struct sshmux *m = h->data;
  if (--m->open_handles) return;
  buf_free(&m->in);
  buf_free(&m->out);
  free(m);
}

static void drop_pending(struct sshmux *m) {
  while (!list_empty(&m->pending)) {
    struct req *r = container_of(m->pending.next, struct req, link);
    list_del(&r->link);
    free(r);
  }
}

/* The connection is done for: each pending request hears it, then the owner. */
static void fail(struct sshmux *m, int code, const char *fmt, ...) __attribute__((format(printf, 3, 4)));
static void fail(struct sshmux *m, int code, const char *fmt, ...) {
  if (m->failed || m->closed) return;
  m->failed = true;
  uv_read_stop((uv_stream_t *)&m->pipe);
  char why[256];
  va_list ap;
  va_start(ap, fmt);
  vsnprintf(why, sizeof why, fmt, ap);
  va_end(ap);
  while (!list_empty(&m->pending) && !m->closed) {
    struct req *r = container_of(m->pending.next, struct req, link);
    list_del(&r->link);
    r->cb(r->arg, code, 0, why);
    free(r);
  }
  if (!m->closed) m->dead(m->arg, why);
}

static void on_write(uv_write_t *w, int status) {
  struct wr *x = container_of(w, struct wr, w);
  struct sshmux *m = x->m;
  free(x);
  if (status < 0 && status != UV_ECANCELED)
    fail(m, status, "cannot write to the control socket: %s", uv_strerror(status));
}

static void on_later(uv_timer_t *t) {
  struct sshmux *m = t->data;
  fail(m, m->write_error, "cannot write to the control socket: %s", uv_strerror(m->write_error));
}

static void write_out(struct sshmux *m, const char *data, size_t len) {
  struct wr *x = xmalloc(sizeof *x + len);
  x->m = m;
  x->len = len;
  memcpy(x->data, data, len);
  uv_buf_t b = uv_buf_init(x->data, (unsigned)x->len);
  int rc = uv_write(&x->w, (uv_stream_t *)&m->pipe, &b, 1, on_write);
  if (rc < 0) { /* (never fails its caller's request from inside the request) */
    free(x);
    if (!m->write_error) m->write_error = rc;
    uv_timer_start(&m->later, on_later, 0, 0);
  }
}

static void send_packet(struct sshmux *m, struct buf *p) {
  uint32_t len = (uint32_t)(p->len - 4);
  uint8_t *d = (uint8_t *)p->data;
  d[0] = (uint8_t)(len >> 24), d[1] = (uint8_t)(len >> 16), d[2] = (uint8_t)(len >> 8), d[3] = (uint8_t)len;
  if (m->connected)
    write_out(m, p->data, p->len);
  else
    buf_append(&m->out, p->data, p->len);
  buf_free(p);
}

static void put32(struct buf *b, uint32_t v) {
  uint8_t x[4] = {(uint8_t)(v >> 24), (uint8_t)(v >> 16), (uint8_t)(v >> 8), (uint8_t)v};
  buf_append(b, x, 4);
}

static void putstr(struct buf *b, const char *s) {
  put32(b, (uint32_t)strlen(s));
  buf_append(b, s, strlen(s));
}

static void answered(struct sshmux *m, const struct sshmux_msg *g) {
  if (g->type == SSHMUX_HELLO) {
    if (g->value != MUX_VERSION)
      fail(m, UV_EPROTO, "the master speaks multiplexing protocol version %u, not %d", g->value, MUX_VERSION);
    m->hello = true;
    return;
  }
  if (!m->hello) {
    fail(m, UV_EPROTO, "the master answered (0x%08x) before its hello", g->type);
    return;
  }
  struct list *pos;
  for (pos = m->pending.next; pos != &m->pending; pos = pos->next)
    if (container_of(pos, struct req, link)->rid == g->rid) break;
  if (pos == &m->pending) return; /* nothing of ours asked for it */
  struct req *r = container_of(pos, struct req, link);
  list_del(&r->link);
  char what[64];
  switch (g->type) {
  case SSHMUX_S_OK:
  case SSHMUX_S_ALIVE:
  case SSHMUX_S_REMOTE_PORT: r->cb(r->arg, 0, g->value, ""); break;
  case SSHMUX_S_FAILURE:
  case SSHMUX_S_PERMISSION_DENIED: r->cb(r->arg, SSHMUX_REFUSED, 0, g->text[0] ? g->text : "refused"); break;
  default: snprintf(what, sizeof what, "unexpected answer 0x%08x", g->type); r->cb(r->arg, SSHMUX_REFUSED, 0, what);
  }
  free(r);
}

static void on_read(uv_stream_t *st, ssize_t n, const uv_buf_t *b) {
  struct sshmux *m = st->data;
  if (n < 0) {
    fail(m, (int)n, "%s", n == UV_EOF ? "the master closed the control connection" : uv_strerror((int)n));
    return;
  }
  buf_append(&m->in, b->base, (size_t)n);
  size_t off = 0;
  while (!m->failed && !m->closed) {
    struct sshmux_msg g;
    long k = sshmux_parse((const uint8_t *)m->in.data + off, m->in.len - off, &g);
    if (k < 0) fail(m, UV_EPROTO, "a malformed answer from the master");
    if (k <= 0) break;
    off += (size_t)k;
    answered(m, &g);
  }
  if (m->closed) return; /* (its memory goes with the handle's close, later) */
  memmove(m->in.data, m->in.data + off, m->in.len - off);
  m->in.len -= off;
}

static void on_connect(uv_connect_t *c, int status) {
  struct sshmux *m = c->data;
  if (m->closed) return;
  if (status < 0) {
    fail(m, status, "cannot connect to the control socket: %s", uv_strerror(status));
    return;
  }
  m->connected = true;
  if (m->out.len) write_out(m, m->out.data, m->out.len);
  m->out.len = 0;
  uv_read_start((uv_stream_t *)&m->pipe, loop_alloc, on_read);
}

struct sshmux *sshmux_open(uv_loop_t *loop, const char *path, sshmux_dead_cb dead, void *arg) {
  if (strlen(path) >= sizeof((struct sockaddr_un *)0)->sun_path) return NULL;
  struct sshmux *m = xcalloc(1, sizeof *m);
  list_init(&m->pending);
  m->dead = dead;
  m->arg = arg;
  uv_pipe_init(loop, &m->pipe, 0);
  m->pipe.data = m;
  uv_timer_init(loop, &m->later);
  m->later.data = m;
  m->open_handles = 2;
  m->connect.data = m;
  uv_pipe_connect(&m->connect, &m->pipe, path, on_connect);
  struct buf p = {0};
  put32(&p, 0);
  put32(&p, SSHMUX_HELLO);
  put32(&p, MUX_VERSION);
  send_packet(m, &p);
  return m;
}

static bool request(struct sshmux *m, struct buf *p, sshmux_cb cb, void *arg) {
  if (!sshmux_ok(m)) {
    buf_free(p);
    return false;
  }
  struct req *r = xcalloc(1, sizeof *r);
  r->rid = m->rid;
  r->cb = cb;
  r->arg = arg;
  list_add_tail(&m->pending, &r->link);
  send_packet(m, p);
  return true;
}

bool sshmux_forward(struct sshmux *m, bool open, const char *listen_host, int lport, const char *connect_host,
                    int cport, sshmux_cb cb, void *arg) {
  if (!sshmux_ok(m)) return false;
  struct buf p = {0};
  put32(&p, 0);
  put32(&p, open ? SSHMUX_C_OPEN_FWD : SSHMUX_C_CLOSE_FWD);
  put32(&p, ++m->rid);
  put32(&p, MUX_FWD_LOCAL);
  putstr(&p, listen_host);
  put32(&p, (uint32_t)lport);
  putstr(&p, connect_host);
  put32(&p, (uint32_t)cport);
  return request(m, &p, cb, arg);
}

bool sshmux_alive(struct sshmux *m, sshmux_cb cb, void *arg) {
  if (!sshmux_ok(m)) return false;
  struct buf p = {0};
  put32(&p, 0);
  put32(&p, SSHMUX_C_ALIVE_CHECK);
  put32(&p, ++m->rid);
  return request(m, &p, cb, arg);
}

bool sshmux_ok(const struct sshmux *m) { return m && !m->failed && !m->closed; }

void sshmux_close(struct sshmux *m) {
  if (!m || m->closed) return;
  m->closed = true;
  drop_pending(m);
  uv_close((uv_handle_t *)&m->pipe, on_close);
  uv_close((uv_handle_t *)&m->later, on_close);
}
