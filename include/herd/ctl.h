/*
 * The control channel: HTTP/1.1 over a Unix socket, parsed by llhttp. A connection
 * handles one request at a time (pipelined requests wait their turn); a handler
 * answers at once, or parks the connection (wait=, follow=) and answers later.
 */
#ifndef HERD_CTL_H
#define HERD_CTL_H

#include "herd/daemon.h"

#include <jansson.h>

#define CTL_MAX_HEADER (16 * 1024)
#define CTL_MAX_BODY (1024 * 1024)
#define CTL_MAX_CONNS 4096                /* connections in all */
#define CTL_RESERVED_CONNS 256            /* of CTL_MAX_CONNS, kept for root and the daemon's own uid */
#define CTL_MAX_CONNS_PER_UID 256         /* connections one other uid may hold */
#define CTL_MAX_UNSENT (1024 * 1024)      /* unsent reply bytes before a connection's requests wait */
#define CTL_MAX_BACKLOG (8 * 1024 * 1024) /* unsent bytes before a slow follower is cut off */
#define CTL_MAX_WAIT_S (30 * 86400.0)     /* ?timeout= saturates here */

struct conn;

struct request {
  const char *method; /* "GET", "POST", ... */
  char *path;         /* decoded path, without the query */
  char *query;        /* raw query string or "" */
  const char *body;
  size_t body_len;
  uid_t uid;
  bool can_write;
};

/** Answer one complete request on c: at once, or later after conn_park or conn_stream_begin.
 *  arg is what was given to ctl_open. */
typedef void (*ctl_dispatch_fn)(void *arg, struct conn *c, struct request *r);

/** Open the control socket (lock, stale-socket removal, umask, listen). Each request that
 *  passes the socket's own checks (framing, limits, the peer's uid) goes to route(arg, ...):
 *  ctl knows nothing of the routes behind it. */
int ctl_open(struct daemon *d, ctl_dispatch_fn route, void *arg, char **err);
/* The uid the status page's connections are counted as (they have none). */
#define CTL_HTTP_UID ((uid_t)-2)

/** The status page's listener (herd daemon --http ADDR): the same HTTP/1.1 connections on
 *  TCP at ADDR (PORT, HOST:PORT or [V6]:PORT; the host defaults to 127.0.0.1). Every
 *  request may read; it may change something (request.can_write) only with
 *  "Authorization: Bearer TOKEN" when a token is given. *out is its ctl (ctl_close it). */
int ctl_open_http(struct daemon *d, const char *addr, const char *token, ctl_dispatch_fn route, void *arg,
                  struct ctl **out, char **err);
/** The port it listens on (0: none). */
int ctl_http_port(struct ctl *ctl);
/** Close the listener and every connection. */
void ctl_close(struct ctl *ctl);
size_t ctl_nconns(struct ctl *ctl);

/** Value of a query parameter, percent-decoded into buf; NULL when absent. */
const char *req_query(const struct request *r, const char *key, char *buf, size_t len);

/** Answer with a JSON object (stolen); adds "api": 1. */
void conn_reply(struct conn *c, int status, json_t *obj);
/** Answer {"api":1,"error":{"code":...,"message":...}}; `extra` (stolen, may be NULL) is merged into error. */
void conn_error(struct conn *c, int status, const char *code, json_t *extra, const char *fmt, ...)
    __attribute__((format(printf, 5, 6)));

/** Answer with raw bytes of the given content type. */
void conn_reply_raw(struct conn *c, int status, const char *content_type, const char *data, size_t n);
/** The same with a body it takes (and frees once written): a large page is not copied. */
void conn_reply_take(struct conn *c, int status, const char *content_type, struct buf *body);
/** End a chunked stream and close the connection once it is sent. */
void conn_stream_end(struct conn *c);
/** Park the connection: the handler will answer later. on_gone runs if the peer goes
 *  away first or the daemon shuts down; on_timeout after ms (0: no timeout). */
void conn_park(struct conn *c, void *arg, void (*on_gone)(struct conn *c, void *arg),
               void (*on_timeout)(struct conn *c, void *arg), uint64_t ms);
/** Start a chunked streaming response. */
void conn_stream_begin(struct conn *c, int status, const char *content_type);
/** Send one chunk. Returns -1 when the peer is too slow or gone (the connection is then closing). */
int conn_stream_write(struct conn *c, const char *data, size_t n);
/** Whether the connection is going away. */
bool conn_closing(const struct conn *c);

/* Probes, for tests and fuzzing: a control channel with no socket. A probe connection parses
 * what ctl_probe_read gives it exactly as a peer's bytes read from the socket (framing,
 * limits, pipelining, a half-close), and what it would send goes to `out` at once. Its
 * handles (an unopened pipe and a timer) are on d->loop, which need not run: its timers are
 * armed, never fired. ctl_close closes a probe's connections and frees it; running the loop
 * afterwards frees the connections. */
typedef void (*ctl_out_fn)(void *arg, const char *data, size_t n);
/** A control channel without a listener or a lock file; requests go to route(arg, ...). */
struct ctl *ctl_probe_open(struct daemon *d, ctl_dispatch_fn route, void *arg);
/** A connection of a peer with `uid`: may it write (owner), may it read (--read-group). */
struct conn *ctl_probe_conn(struct ctl *ctl, uid_t uid, bool can_write, bool can_read, ctl_out_fn out, void *out_arg);
/** Bytes from the peer (n == 0: it shut down its sending side). Nothing once it is closing. */
void ctl_probe_read(struct conn *c, const char *data, size_t n);

/** The API's dispatcher (api.c; arg: the struct daemon), which the daemon hands to ctl_open.
 *  Declared here, not in cmd.h, only because daemon.c includes this header and not that one. */
void api_dispatch(void *daemon, struct conn *c, struct request *r);
/** The status page's dispatcher (api.c): the page, GET routes, and start/stop/restart with the token. */
void web_dispatch(void *daemon, struct conn *c, struct request *r);

#endif
