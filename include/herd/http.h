/* A small blocking HTTP/1.1 client over a Unix socket, for the CLI. */
#ifndef HERD_HTTP_H
#define HERD_HTTP_H

#include "herd/herd.h"

struct http_resp {
  int status;
  struct buf body;
  char content_type[128];
};

typedef void (*http_data_cb)(void *arg, const char *data, size_t n);

/**
 * Send one request and read the reply. With on_data, body bytes are passed on as they
 * arrive (streams) instead of being kept. Returns 0, or a negative errno when the
 * daemon could not be reached (-ENOENT, -ECONNREFUSED) or the reply was broken (-EPROTO).
 */
int http_request(const char *socket_path, const char *method, const char *target, const char *body, size_t body_len,
                 struct http_resp *out, http_data_cb on_data, void *arg);
void http_resp_free(struct http_resp *r);

/** Percent-encode a query value. Caller frees. */
char *url_encode(const char *s);

#endif
