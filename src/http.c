/* The CLI's HTTP client (see http.h). */
#include "herd/http.h"

#include <ctype.h>
#include <errno.h>
#include <llhttp.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <sys/un.h>
#include <unistd.h>

struct hctx {
  struct http_resp *r;
  http_data_cb on_data;
  void *arg;
  bool done, in_ctype;
  struct buf hfield;
};

static int on_status_complete(llhttp_t *p) {
  struct hctx *h = p->data;
  h->r->status = llhttp_get_status_code(p);
  return 0;
}

static int on_header_field(llhttp_t *p, const char *at, size_t n) {
  struct hctx *h = p->data;
  buf_append(&h->hfield, at, n);
  return 0;
}

static int on_header_value(llhttp_t *p, const char *at, size_t n) {
  struct hctx *h = p->data;
  if (h->hfield.data && !strcasecmp(h->hfield.data, "content-type")) {
    size_t have = strlen(h->r->content_type);
    if (have + n < sizeof h->r->content_type) {
      memcpy(h->r->content_type + have, at, n);
      h->r->content_type[have + n] = '\0';
    }
  }
  return 0;
}

static int on_header_value_complete(llhttp_t *p) {
  struct hctx *h = p->data;
  h->hfield.len = 0;
  if (h->hfield.data) h->hfield.data[0] = '\0';
  return 0;
}

static int on_body(llhttp_t *p, const char *at, size_t n) {
  struct hctx *h = p->data;
  if (h->on_data && h->r->status >= 200 && h->r->status < 300)
    h->on_data(h->arg, at, n);
  else
    buf_append(&h->r->body, at, n);
  return 0;
}

static int on_message_complete(llhttp_t *p) {
  struct hctx *h = p->data;
  h->done = true;
  return HPE_PAUSED;
}

int http_request(const char *socket_path, const char *method, const char *target, const char *body, size_t body_len,
                 struct http_resp *out, http_data_cb on_data, void *arg) {
  memset(out, 0, sizeof *out);
  struct sockaddr_un sa = {.sun_family = AF_UNIX};
  if (strlen(socket_path) >= sizeof sa.sun_path) return -ENAMETOOLONG;
  strcpy(sa.sun_path, socket_path);
  int fd = socket(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC, 0);
  if (fd < 0) return -errno;
  if (connect(fd, (struct sockaddr *)&sa, sizeof sa) < 0) {
    int e = errno;
    close(fd);
    return -e;
  }
  struct buf req = {0};
  buf_printf(&req, "%s %s HTTP/1.1\r\nHost: herd\r\nUser-Agent: herd/%s\r\nConnection: close\r\n", method, target,
             HERD_VERSION);
  if (body) buf_printf(&req, "Content-Type: application/json\r\nContent-Length: %zu\r\n", body_len);
  buf_append(&req, "\r\n", 2);
  if (body) buf_append(&req, body, body_len);
  /* MSG_NOSIGNAL: a daemon that answers early and closes (413, 503) must not kill us
   * with SIGPIPE; its answer is read below. */
  size_t off = 0;
  int werr = 0;
  while (off < req.len) {
    ssize_t w = send(fd, req.data + off, req.len - off, MSG_NOSIGNAL);
    if (w < 0) {
      if (errno == EINTR) continue;
      werr = errno;
      break;
    }
    off += (size_t)w;
  }
  buf_free(&req);
  if (werr && werr != EPIPE && werr != ECONNRESET) {
    close(fd);
    return -werr;
  }

  llhttp_settings_t st;
  llhttp_settings_init(&st);
  st.on_status_complete = on_status_complete;
  st.on_header_field = on_header_field;
  st.on_header_value = on_header_value;
  st.on_header_value_complete = on_header_value_complete;
  st.on_body = on_body;
  st.on_message_complete = on_message_complete;
  llhttp_t p;
  llhttp_init(&p, HTTP_RESPONSE, &st);
  struct hctx h = {.r = out, .on_data = on_data, .arg = arg};
  p.data = &h;
  char buf[65536];
  int rc = 0;
  while (!h.done) {
    ssize_t n = read(fd, buf, sizeof buf);
    if (n < 0 && errno == EINTR) continue;
    if (n < 0) {
      rc = -errno;
      break;
    }
    llhttp_errno_t e = n == 0 ? llhttp_finish(&p) : llhttp_execute(&p, buf, (size_t)n);
    if (e == HPE_PAUSED || h.done) break;
    if (e != HPE_OK) {
      rc = -EPROTO;
      break;
    }
    if (n == 0) {
      if (!h.done) rc = -EPROTO;
      break;
    }
  }
  buf_free(&h.hfield);
  close(fd);
  if (werr && !h.done) return -werr; /* closed on us, and no answer to say why */
  if (werr) rc = 0;                  /* the daemon answered before closing: that is the news */
  if (rc == 0 && out->status == 0) rc = -EPROTO;
  return rc;
}

void http_resp_free(struct http_resp *r) { buf_free(&r->body); }

char *url_encode(const char *s) {
  struct buf b = {0};
  for (; *s; s++) {
    unsigned char c = (unsigned char)*s;
    if (isalnum(c) || strchr("-._~*?[]", c))
      buf_append(&b, s, 1);
    else
      buf_printf(&b, "%%%02X", c);
  }
  if (!b.data) buf_append(&b, "", 0);
  return b.data;
}
