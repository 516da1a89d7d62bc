/* libssh2 sessions on the loop (see sshx.h). */
#include "herd/sshx.h"

#include "herd/log.h"
#include "herd/loop.h"

#include <arpa/inet.h>
#include <errno.h>
#include <libssh2.h>
#include <math.h>
#include <netdb.h>
#include <netinet/in.h>
#include <netinet/tcp.h>
#include <pwd.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <dlfcn.h>
#include <unistd.h>

/* libssh2 is dlopen()ed at the first session, as libcurl and libcrypto are (src/curlx.c,
 * src/jwt.c): linked, it and its libcrypto would load with every CLI command. Each function
 * used is listed once; the names then call through the table. */
// clang-format off
#define SSH2_FUNCS(X) \
  X(libssh2_init) \
  X(libssh2_exit) \
  X(libssh2_free) \
  X(libssh2_session_init_ex) \
  X(libssh2_session_free) \
  X(libssh2_session_callback_set) \
  X(libssh2_session_set_blocking) \
  X(libssh2_session_handshake) \
  X(libssh2_session_hostkey) \
  X(libssh2_session_last_error) \
  X(libssh2_session_last_errno) \
  X(libssh2_session_block_directions) \
  X(libssh2_keepalive_config) \
  X(libssh2_keepalive_send) \
  X(libssh2_knownhost_init) \
  X(libssh2_knownhost_readfile) \
  X(libssh2_knownhost_checkp) \
  X(libssh2_knownhost_free) \
  X(libssh2_userauth_publickey_fromfile_ex) \
  X(libssh2_agent_init) \
  X(libssh2_agent_set_identity_path) \
  X(libssh2_agent_connect) \
  X(libssh2_agent_list_identities) \
  X(libssh2_agent_get_identity) \
  X(libssh2_agent_userauth) \
  X(libssh2_agent_disconnect) \
  X(libssh2_agent_free) \
  X(libssh2_channel_open_ex) \
  X(libssh2_channel_process_startup) \
  X(libssh2_channel_write_ex) \
  X(libssh2_channel_send_eof) \
  X(libssh2_channel_read_ex) \
  X(libssh2_channel_eof) \
  X(libssh2_channel_close) \
  X(libssh2_channel_wait_closed) \
  X(libssh2_channel_get_exit_status) \
  X(libssh2_channel_get_exit_signal) \
  X(libssh2_channel_free)
// clang-format on

#define SSH2_PTR(f) __typeof__(f) *f;
static struct { SSH2_FUNCS(SSH2_PTR) } L;
#undef SSH2_PTR

/* Load libssh2; NULL, or why not. */
static const char *lib_load(void) {
  static const char *why;
  static bool tried;
  if (tried) return why;
  tried = true;
  void *so = dlopen("libssh2.so.1", RTLD_NOW | RTLD_LOCAL);
  if (!so) return why = "cannot load libssh2.so.1 (apt-get install libssh2-1)";
#define SSH2_SYM(f)                                                                                                    \
  if (!(*(void **)&L.f = dlsym(so, #f))) return why = "libssh2.so.1 lacks " #f;
  SSH2_FUNCS(SSH2_SYM)
#undef SSH2_SYM
  L.libssh2_init(0);
  return NULL;
}

#define libssh2_init (L.libssh2_init)
#define libssh2_exit (L.libssh2_exit)
#define libssh2_free (L.libssh2_free)
#define libssh2_session_init_ex (L.libssh2_session_init_ex)
#define libssh2_session_free (L.libssh2_session_free)
#define libssh2_session_callback_set (L.libssh2_session_callback_set)
#define libssh2_session_set_blocking (L.libssh2_session_set_blocking)
#define libssh2_session_handshake (L.libssh2_session_handshake)
#define libssh2_session_hostkey (L.libssh2_session_hostkey)
#define libssh2_session_last_error (L.libssh2_session_last_error)
#define libssh2_session_last_errno (L.libssh2_session_last_errno)
#define libssh2_session_block_directions (L.libssh2_session_block_directions)
#define libssh2_keepalive_config (L.libssh2_keepalive_config)
#define libssh2_keepalive_send (L.libssh2_keepalive_send)
#define libssh2_knownhost_init (L.libssh2_knownhost_init)
#define libssh2_knownhost_readfile (L.libssh2_knownhost_readfile)
#define libssh2_knownhost_checkp (L.libssh2_knownhost_checkp)
#define libssh2_knownhost_free (L.libssh2_knownhost_free)
#define libssh2_userauth_publickey_fromfile_ex (L.libssh2_userauth_publickey_fromfile_ex)
#define libssh2_agent_init (L.libssh2_agent_init)
#define libssh2_agent_set_identity_path (L.libssh2_agent_set_identity_path)
#define libssh2_agent_connect (L.libssh2_agent_connect)
#define libssh2_agent_list_identities (L.libssh2_agent_list_identities)
#define libssh2_agent_get_identity (L.libssh2_agent_get_identity)
#define libssh2_agent_userauth (L.libssh2_agent_userauth)
#define libssh2_agent_disconnect (L.libssh2_agent_disconnect)
#define libssh2_agent_free (L.libssh2_agent_free)
#define libssh2_channel_open_ex (L.libssh2_channel_open_ex)
#define libssh2_channel_process_startup (L.libssh2_channel_process_startup)
#define libssh2_channel_write_ex (L.libssh2_channel_write_ex)
#define libssh2_channel_send_eof (L.libssh2_channel_send_eof)
#define libssh2_channel_read_ex (L.libssh2_channel_read_ex)
#define libssh2_channel_eof (L.libssh2_channel_eof)
#define libssh2_channel_close (L.libssh2_channel_close)
#define libssh2_channel_wait_closed (L.libssh2_channel_wait_closed)
#define libssh2_channel_get_exit_status (L.libssh2_channel_get_exit_status)
#define libssh2_channel_get_exit_signal (L.libssh2_channel_get_exit_signal)
#define libssh2_channel_free (L.libssh2_channel_free)

#define MAX_CHANNELS 8    /* at once per session (sshd's MaxSessions is 10 by default) */
#define OUT_MAX (1 << 20) /* output kept per stream (the tail) */
#define BACKOFF_MAX 60.0  /* reconnects back off up to this */
#define BACKOFF_HARD 30.0 /* at least this after a host key or authentication refusal */
#define TICK 0.5          /* liveness and keepalive timer while up */

enum ss_state { SS_IDLE, SS_RESOLVING, SS_CONNECTING, SS_HANDSHAKE, SS_AUTH, SS_UP, SS_BACKOFF, SS__MAX };
static const char *const ss_names[] = {[SS_IDLE] = "idle",
                                       [SS_RESOLVING] = "connecting",
                                       [SS_CONNECTING] = "connecting",
                                       [SS_HANDSHAKE] = "connecting",
                                       [SS_AUTH] = "connecting",
                                       [SS_UP] = "up",
                                       [SS_BACKOFF] = "backoff"};
static_assert(sizeof ss_names / sizeof ss_names[0] == SS__MAX, "session state names");

enum rq_state { RQ_QUEUED, RQ_OPEN, RQ_EXEC, RQ_WRITE, RQ_SEOF, RQ_READ, RQ_CLOSE, RQ_WAITC, RQ_FREE };

struct sess;

/* The socket of one connection attempt: the poll handle closes before the descriptor. */
struct conn {
  uv_poll_t poll;
  int fd;
  struct sess *ss;
};

struct sshx_req {
  struct list link; /* in the session's requests, in order */
  struct sess *ss;
  LIBSSH2_CHANNEL *ch;
  enum rq_state st;
  char *cmd, *in;
  size_t inlen, inoff;
  struct buf out, err;
  int status;
  bool cancelled;
  bool exec_sent; /* the exec request may have reached the server */
  sshx_cb cb;     /* NULL once called */
  void *arg;
};

struct sess {
  struct list link; /* in the daemon's sessions */
  struct daemon *d;
  char *name, *user, *hostname, *known_hosts, *identity, *alias;
  char *agent_path; /* the ssh-agent's socket when there is no identity file (NULL: $SSH_AUTH_SOCK) */
  int port;
  double alive_window, connect_timeout;
  int alive_interval;
  enum ss_state st;
  struct conn *c;
  LIBSSH2_SESSION *s;
  LIBSSH2_AGENT *agent;                /* authenticating through an ssh-agent, or NULL */
  struct libssh2_agent_publickey *aid; /* the agent's key being tried */
  unsigned agent_tried;                /* keys the server refused so far */
  uv_timer_t timer;
  uv_getaddrinfo_t gai;
  bool resolving, closing;
  int nhandles;
  double last_rx, deadline, next_at, since, up_since;
  char reason[256], last_error[256];
  unsigned fails, connects, nchannels, chan_limit;
  bool opening; /* a channel open is in flight (one at a time per session) */
  uint64_t execs, execs_failed;
  struct list reqs;
};

static bool lib_ready;

static double jitter(double d) { return d * (0.8 + 0.2 * ((double)rand() / RAND_MAX)); }

static void pump(struct sess *ss);

/* ---- requests ---- */

static void req_free(struct sshx_req *r) {
  list_del(&r->link);
  buf_free(&r->out);
  buf_free(&r->err);
  free(r->cmd);
  free(r->in);
  free(r);
}

/* Answer the request (once). It stays in the list while its channel is torn down. */
static void req_answer(struct sshx_req *r, bool ran, const char *error) {
  sshx_cb cb = r->cb;
  if (!cb) return;
  r->cb = NULL;
  struct sshx_result res = {.ran = ran,
                            .maybe_ran = ran || r->exec_sent,
                            .status = r->status,
                            .error = error,
                            .out = r->out.data ? r->out.data : "",
                            .outlen = r->out.len,
                            .err = r->err.data ? r->err.data : "",
                            .errlen = r->err.len};
  if (ran)
    r->ss->execs++;
  else
    r->ss->execs_failed++;
  cb(r->arg, &res);
}

/* ---- the session ---- */

static void set_state(struct sess *ss, enum ss_state to, const char *fmt, ...) __attribute__((format(printf, 3, 4)));
static void set_state(struct sess *ss, enum ss_state to, const char *fmt, ...) {
  enum ss_state from = ss->st;
  va_list ap;
  va_start(ap, fmt);
  vsnprintf(ss->reason, sizeof ss->reason, fmt, ap);
  va_end(ap);
  ss->st = to;
  ss->since = now_mono();
  if (!strcmp(ss_names[from], ss_names[to])) return;
  char who[80];
  snprintf(who, sizeof who, "host:%s", ss->name);
  log_msg(to == SS_BACKOFF ? LOG_WARN : LOG_INFO, who, NULL, NULL, "libssh2 session %s: %s", ss_names[to], ss->reason);
}

static void on_conn_close(uv_handle_t *h) {
  struct conn *c = h->data;
  close(c->fd);
  c->ss->nhandles--;
  free(c);
}

static void agent_drop(struct sess *ss) {
  if (!ss->agent) return;
  libssh2_agent_disconnect(ss->agent);
  libssh2_agent_free(ss->agent);
  ss->agent = NULL;
  ss->aid = NULL;
  ss->agent_tried = 0;
}

static void drop_conn(struct sess *ss) {
  agent_drop(ss); /* (it belongs to the session: freed before it) */
  if (ss->s) {
    /* Non-blocking, freeing would wait to send its channels' closes (EAGAIN, and the
     * session never freed): the socket is shut first, so those sends fail at once. */
    if (ss->c) shutdown(ss->c->fd, SHUT_RDWR);
    for (int i = 0; i < 100 && libssh2_session_free(ss->s) == LIBSSH2_ERROR_EAGAIN; i++) {
    }
    ss->s = NULL;
  }
  if (ss->c) {
    uv_close((uv_handle_t *)&ss->c->poll, on_conn_close);
    ss->c = NULL;
  }
  ss->opening = false;
  ss->nchannels = 0;
  ss->chan_limit = MAX_CHANNELS;
}

/* The session is lost (or never came up): what was in flight failed for the transport. */
static void sess_fail(struct sess *ss, bool hard, const char *fmt, ...) __attribute__((format(printf, 3, 4)));
static void sess_fail(struct sess *ss, bool hard, const char *fmt, ...) {
  va_list ap;
  va_start(ap, fmt);
  vsnprintf(ss->last_error, sizeof ss->last_error, fmt, ap);
  va_end(ap);
  drop_conn(ss);
  ss->fails++;
  double wait = fmin(pow(2, ss->fails - 1), BACKOFF_MAX);
  if (hard) wait = fmax(wait, BACKOFF_HARD);
  ss->next_at = now_mono() + jitter(wait);
  set_state(ss, SS_BACKOFF, "%s; reconnecting when asked, from %.1fs", ss->last_error, ss->next_at - now_mono());
  struct list *pos, *tmp;
  list_for_each_safe(pos, tmp, &ss->reqs) {
    struct sshx_req *r = container_of(pos, struct sshx_req, link);
    r->ch = NULL;
    req_answer(r, false, ss->last_error);
    req_free(r);
  }
}

/* libssh2 reads through this: the time of the last bytes from the peer is its liveness. */
static ssize_t recv_cb(libssh2_socket_t fd, void *buf, size_t len, int flags, void **abstract) {
  struct sess *ss = *abstract;
  ssize_t n = recv(fd, buf, len, flags);
  if (n < 0) return -errno;
  if (n > 0) ss->last_rx = now_mono();
  return n;
}

static const char *errmsg(struct sess *ss) {
  char *m = NULL;
  if (ss->s) libssh2_session_last_error(ss->s, &m, NULL, 0);
  return m && *m ? m : "unknown error";
}

static void on_poll(uv_poll_t *p, int status, int events);
static void on_timer(uv_timer_t *t);

static void watch(struct sess *ss, int events) {
  if (ss->c) uv_poll_start(&ss->c->poll, events, on_poll);
}

static void arm(struct sess *ss) {
  double at = INFINITY;
  if (ss->st >= SS_RESOLVING && ss->st <= SS_AUTH) at = ss->deadline;
  if (ss->st == SS_UP) at = now_mono() + TICK;
  if (ss->st == SS_IDLE && !list_empty(&ss->reqs)) at = now_mono();
  if (ss->st == SS_BACKOFF && !list_empty(&ss->reqs)) at = now_mono();
  if (isinf(at))
    uv_timer_stop(&ss->timer);
  else
    timer_arm(ss->d->loop, &ss->timer, on_timer, at);
}

static void connect_addr(struct sess *ss, const struct sockaddr *sa, socklen_t len) {
  int fd = socket(sa->sa_family, SOCK_STREAM | SOCK_NONBLOCK | SOCK_CLOEXEC, IPPROTO_TCP);
  if (fd < 0) {
    sess_fail(ss, false, "socket: %s", strerror(errno));
    return;
  }
  /* A peer that stops answering while data is unacknowledged: the kernel gives up. */
  unsigned ut = (unsigned)(ss->alive_window * 1000);
  setsockopt(fd, IPPROTO_TCP, TCP_USER_TIMEOUT, &ut, sizeof ut);
  if (connect(fd, sa, len) < 0 && errno != EINPROGRESS) {
    int e = errno;
    close(fd);
    sess_fail(ss, false, "connect to %s port %d: %s", ss->hostname, ss->port, strerror(e));
    return;
  }
  struct conn *c = xcalloc(1, sizeof *c);
  c->fd = fd;
  c->ss = ss;
  uv_poll_init(ss->d->loop, &c->poll, fd);
  c->poll.data = c;
  ss->nhandles++;
  ss->c = c;
  ss->st = SS_CONNECTING;
  watch(ss, UV_WRITABLE);
}

static void on_resolved(uv_getaddrinfo_t *g, int status, struct addrinfo *res) {
  struct sess *ss = g->data;
  ss->resolving = false;
  ss->nhandles--;
  if (ss->closing || ss->st != SS_RESOLVING) {
    uv_freeaddrinfo(res);
    return;
  }
  if (status < 0 || !res)
    sess_fail(ss, false, "cannot resolve %s: %s", ss->hostname, uv_strerror(status));
  else
    connect_addr(ss, res->ai_addr, res->ai_addrlen);
  uv_freeaddrinfo(res);
  arm(ss);
}

static void sess_connect(struct sess *ss) {
  const char *why = lib_load();
  if (why) {
    sess_fail(ss, true, "%s", why);
    return;
  }
  lib_ready = true;
  ss->connects++;
  ss->deadline = now_mono() + ss->connect_timeout;
  set_state(ss, SS_RESOLVING, "connecting to %s@%s port %d", ss->user, ss->hostname, ss->port);
  struct sockaddr_in6 a6;
  struct sockaddr_in a4;
  if (uv_ip4_addr(ss->hostname, ss->port, &a4) == 0) {
    connect_addr(ss, (struct sockaddr *)&a4, sizeof a4);
  } else if (uv_ip6_addr(ss->hostname, ss->port, &a6) == 0) {
    connect_addr(ss, (struct sockaddr *)&a6, sizeof a6);
  } else {
    char port[8];
    snprintf(port, sizeof port, "%d", ss->port);
    struct addrinfo hints = {.ai_socktype = SOCK_STREAM};
    ss->gai.data = ss;
    if (uv_getaddrinfo(ss->d->loop, &ss->gai, on_resolved, ss->hostname, port, &hints) == 0) {
      ss->resolving = true;
      ss->nhandles++;
    } else {
      sess_fail(ss, false, "cannot resolve %s", ss->hostname);
    }
  }
}

/* The server's key against the host's known_hosts file (and nothing else). */
static bool hostkey_ok(struct sess *ss) {
  size_t len;
  int type;
  const char *key = libssh2_session_hostkey(ss->s, &len, &type);
  if (!key) {
    sess_fail(ss, true, "no host key from %s", ss->hostname);
    return false;
  }
  int kt = type == LIBSSH2_HOSTKEY_TYPE_ED25519     ? LIBSSH2_KNOWNHOST_KEY_ED25519
           : type == LIBSSH2_HOSTKEY_TYPE_ECDSA_256 ? LIBSSH2_KNOWNHOST_KEY_ECDSA_256
           : type == LIBSSH2_HOSTKEY_TYPE_ECDSA_384 ? LIBSSH2_KNOWNHOST_KEY_ECDSA_384
           : type == LIBSSH2_HOSTKEY_TYPE_ECDSA_521 ? LIBSSH2_KNOWNHOST_KEY_ECDSA_521
           : type == LIBSSH2_HOSTKEY_TYPE_RSA       ? LIBSSH2_KNOWNHOST_KEY_SSHRSA
                                                    : LIBSSH2_KNOWNHOST_KEY_UNKNOWN;
  LIBSSH2_KNOWNHOSTS *kh = libssh2_knownhost_init(ss->s);
  if (!kh) {
    sess_fail(ss, true, "cannot check host keys: %s", errmsg(ss));
    return false;
  }
  char why[400] = "";
  if (libssh2_knownhost_readfile(kh, ss->known_hosts, LIBSSH2_KNOWNHOST_FILE_OPENSSH) < 0) {
    snprintf(why, sizeof why, "cannot read known_hosts %s: %s", ss->known_hosts, errmsg(ss));
  } else {
    struct libssh2_knownhost *ent = NULL;
    const char *name = ss->alias ? ss->alias : ss->hostname;
    int rc = libssh2_knownhost_checkp(kh, name, ss->alias ? -1 : ss->port, key, len,
                                      LIBSSH2_KNOWNHOST_TYPE_PLAIN | LIBSSH2_KNOWNHOST_KEYENC_RAW | kt, &ent);
    if (rc == LIBSSH2_KNOWNHOST_CHECK_MISMATCH)
      snprintf(why, sizeof why, "host key mismatch: the key of %s is not the one in %s", name, ss->known_hosts);
    else if (rc == LIBSSH2_KNOWNHOST_CHECK_NOTFOUND)
      snprintf(why, sizeof why, "host key of %s not found in %s", name, ss->known_hosts);
    else if (rc != LIBSSH2_KNOWNHOST_CHECK_MATCH)
      snprintf(why, sizeof why, "host key check failed: %s", errmsg(ss));
  }
  libssh2_knownhost_free(kh); /* (before a failure frees the session it belongs to) */
  if (why[0]) sess_fail(ss, true, "%s", why);
  return !why[0];
}

static bool socket_error(int rc) {
  return rc == LIBSSH2_ERROR_SOCKET_SEND || rc == LIBSSH2_ERROR_SOCKET_RECV || rc == LIBSSH2_ERROR_SOCKET_DISCONNECT ||
         rc == LIBSSH2_ERROR_SOCKET_TIMEOUT || rc == LIBSSH2_ERROR_TIMEOUT || rc == LIBSSH2_ERROR_KEX_FAILURE ||
         rc == LIBSSH2_ERROR_DECRYPT || rc == LIBSSH2_ERROR_PROTO || rc == LIBSSH2_ERROR_BAD_SOCKET;
}

static void keep_tail(struct buf *b, const char *p, ssize_t n) {
  if (b->len + (size_t)n > OUT_MAX && b->len > OUT_MAX / 2) {
    memmove(b->data, b->data + b->len - OUT_MAX / 2, OUT_MAX / 2);
    b->len = OUT_MAX / 2;
  }
  buf_append(b, p, (size_t)n);
}

/* Drive one request as far as it goes; true when it moved. A session error returns false
 * after failing the session (the request is gone then). */
static bool req_step(struct sess *ss, struct sshx_req *r, bool *lost) {
  int rc;
  char buf[16384];
  switch (r->st) {
  case RQ_QUEUED:
    if (ss->opening || ss->nchannels >= ss->chan_limit) return false;
    ss->opening = true;
    ss->nchannels++;
    r->st = RQ_OPEN;
    /* fall through */
  case RQ_OPEN:
    r->ch = libssh2_channel_open_session(ss->s);
    if (!r->ch) {
      rc = libssh2_session_last_errno(ss->s);
      if (rc == LIBSSH2_ERROR_EAGAIN) return false;
      ss->opening = false;
      ss->nchannels--;
      if (socket_error(rc)) {
        *lost = true;
        sess_fail(ss, false, "session lost: %s", errmsg(ss));
        return false;
      }
      if (ss->nchannels > 0 && !r->cancelled) {
        /* Refused while others are open: the server's limit (sshd's MaxSessions, 10 by
         * default, counts a session until its command exits, also one we gave up on). No
         * more at once than now until one opens again. */
        ss->chan_limit = ss->nchannels;
        r->st = RQ_QUEUED;
        return false;
      }
      char m[300];
      snprintf(m, sizeof m, "cannot open a channel: %s", errmsg(ss));
      req_answer(r, false, m);
      req_free(r);
      return true;
    }
    ss->opening = false;
    if (ss->chan_limit < MAX_CHANNELS) ss->chan_limit++;
    r->st = r->cancelled ? RQ_CLOSE : RQ_EXEC;
    return true;
  case RQ_EXEC:
    r->exec_sent = true;
    rc = libssh2_channel_exec(r->ch, r->cmd);
    if (rc == LIBSSH2_ERROR_EAGAIN) return false;
    if (rc < 0) goto channel_error;
    r->st = RQ_WRITE;
    return true;
  case RQ_WRITE:
    while (r->inoff < r->inlen) {
      ssize_t n = libssh2_channel_write(r->ch, r->in + r->inoff, r->inlen - r->inoff);
      if (n == LIBSSH2_ERROR_EAGAIN) return false;
      if (n < 0) {
        rc = (int)n;
        goto channel_error;
      }
      r->inoff += (size_t)n;
    }
    r->st = RQ_SEOF;
    return true;
  case RQ_SEOF:
    rc = libssh2_channel_send_eof(r->ch);
    if (rc == LIBSSH2_ERROR_EAGAIN) return false;
    if (rc < 0) goto channel_error;
    r->st = RQ_READ;
    return true;
  case RQ_READ: {
    bool moved = false;
    for (;;) {
      ssize_t a = libssh2_channel_read(r->ch, buf, sizeof buf);
      if (a > 0) keep_tail(&r->out, buf, a);
      ssize_t b = libssh2_channel_read_stderr(r->ch, buf, sizeof buf);
      if (b > 0) keep_tail(&r->err, buf, b);
      if (a > 0 || b > 0) {
        moved = true;
        continue;
      }
      if ((a < 0 && a != LIBSSH2_ERROR_EAGAIN) || (b < 0 && b != LIBSSH2_ERROR_EAGAIN)) {
        rc = (int)(a < 0 && a != LIBSSH2_ERROR_EAGAIN ? a : b);
        goto channel_error;
      }
      if (a == 0 && b == 0 && libssh2_channel_eof(r->ch)) break;
      return moved; /* (EAGAIN: more later) */
    }
    r->st = RQ_CLOSE;
    return true;
  }
  case RQ_CLOSE:
    rc = libssh2_channel_close(r->ch);
    if (rc == LIBSSH2_ERROR_EAGAIN) return false;
    if (rc < 0) goto channel_error;
    r->st = RQ_WAITC;
    return true;
  case RQ_WAITC:
    rc = libssh2_channel_wait_closed(r->ch);
    if (rc == LIBSSH2_ERROR_EAGAIN) return false;
    if (rc < 0) goto channel_error;
    r->status = libssh2_channel_get_exit_status(r->ch);
    char *sig = NULL;
    libssh2_channel_get_exit_signal(r->ch, &sig, NULL, NULL, NULL, NULL, NULL);
    if (sig) {
      r->status = -1;
      buf_printf(&r->err, "\nkilled by signal %s", sig);
      libssh2_free(ss->s, sig);
    }
    r->st = RQ_FREE;
    req_answer(r, true, NULL);
    return true;
  case RQ_FREE:
    rc = libssh2_channel_free(r->ch);
    if (rc == LIBSSH2_ERROR_EAGAIN) return false;
    r->ch = NULL;
    ss->nchannels--;
    req_free(r);
    return true;
  }
  return false;
channel_error:
  if (socket_error(rc)) {
    *lost = true;
    sess_fail(ss, false, "session lost: %s", errmsg(ss));
    return false;
  }
  {
    char m[300];
    snprintf(m, sizeof m, "channel: %s", errmsg(ss));
    req_answer(r, false, m);
  }
  r->st = RQ_FREE; /* (libssh2_channel_free closes what is left) */
  return true;
}

static void pump_up(struct sess *ss) {
  for (int pass = 0; pass < 32; pass++) {
    bool moved = false, lost = false;
    struct list *pos, *tmp;
    list_for_each_safe(pos, tmp, &ss->reqs) {
      moved |= req_step(ss, container_of(pos, struct sshx_req, link), &lost);
      if (lost) return;
    }
    if (!moved) break;
  }
  int next;
  int rc = libssh2_keepalive_send(ss->s, &next);
  if (rc < 0 && rc != LIBSSH2_ERROR_EAGAIN && socket_error(rc)) {
    sess_fail(ss, false, "session lost: %s", errmsg(ss));
    return;
  }
  int dir = libssh2_session_block_directions(ss->s);
  watch(ss, UV_READABLE | (dir & LIBSSH2_SESSION_BLOCK_OUTBOUND ? UV_WRITABLE : 0));
}

/* Authentication through an ssh-agent (the host has no identity_file): each key the agent
 * holds in turn, until the server takes one. The agent is a local socket that answers at
 * once (libssh2 talks to it blocking); the server's answers come as the session's.
 * 0: done; LIBSSH2_ERROR_EAGAIN; < 0: failed, and the session failed saying why. */
static int agent_auth(struct sess *ss) {
  const char *where = ss->agent_path ? ss->agent_path : getenv("SSH_AUTH_SOCK");
  if (!ss->agent) {
    if (!where || !*where) {
      sess_fail(ss, true, "no identity_file and no ssh-agent (no identity_agent, SSH_AUTH_SOCK not set)");
      return -1;
    }
    ss->agent = libssh2_agent_init(ss->s);
    if (!ss->agent) {
      sess_fail(ss, false, "cannot make an ssh-agent client: %s", errmsg(ss));
      return -1;
    }
    if (ss->agent_path) libssh2_agent_set_identity_path(ss->agent, ss->agent_path);
    if (libssh2_agent_connect(ss->agent) || libssh2_agent_list_identities(ss->agent)) {
      sess_fail(ss, true, "cannot use the ssh-agent at %s: %s", where, errmsg(ss));
      return -1;
    }
    if (libssh2_agent_get_identity(ss->agent, &ss->aid, NULL) != 0) {
      sess_fail(ss, true, "the ssh-agent at %s holds no key", where);
      return -1;
    }
  }
  for (;;) {
    int rc = libssh2_agent_userauth(ss->agent, ss->user, ss->aid);
    if (rc == LIBSSH2_ERROR_EAGAIN || rc == 0) return rc;
    ss->agent_tried++;
    struct libssh2_agent_publickey *prev = ss->aid;
    if (libssh2_agent_get_identity(ss->agent, &ss->aid, prev) != 0) {
      sess_fail(ss, true, "authentication as %s refused for each of the %u key(s) of the ssh-agent at %s: %s", ss->user,
                ss->agent_tried, where, errmsg(ss));
      return -1;
    }
  }
}

static void pump(struct sess *ss) {
  if (ss->closing) return;
  int rc;
  /* Cancelled: answered now, whatever the session is doing; a channel is torn down after. */
  struct list *pos, *tmp;
  list_for_each_safe(pos, tmp, &ss->reqs) {
    struct sshx_req *r = container_of(pos, struct sshx_req, link);
    if (!r->cancelled || !r->cb) continue;
    req_answer(r, false, "cancelled");
    if (r->st == RQ_QUEUED) req_free(r);
  }
  switch (ss->st) {
  case SS_IDLE:
  case SS_BACKOFF:
    if (list_empty(&ss->reqs)) break;
    if (ss->st == SS_IDLE || now_mono() >= ss->next_at) {
      sess_connect(ss);
    } else { /* asked while backing off: fail fast, saying when the next try is */
      char m[400];
      snprintf(m, sizeof m, "%s (reconnecting in %.1fs)", ss->last_error, ss->next_at - now_mono());
      list_for_each_safe(pos, tmp, &ss->reqs) {
        struct sshx_req *r = container_of(pos, struct sshx_req, link);
        req_answer(r, false, m);
        req_free(r);
      }
    }
    break;
  case SS_RESOLVING: break;
  case SS_CONNECTING: {
    int err = 0;
    socklen_t l = sizeof err;
    getsockopt(ss->c->fd, SOL_SOCKET, SO_ERROR, &err, &l);
    if (err) {
      sess_fail(ss, false, "connect to %s port %d: %s", ss->hostname, ss->port, strerror(err));
      break;
    }
    ss->s = libssh2_session_init_ex(NULL, NULL, NULL, ss);
    if (!ss->s) {
      sess_fail(ss, false, "cannot make a libssh2 session");
      break;
    }
    libssh2_session_callback_set(ss->s, LIBSSH2_CALLBACK_RECV, (void *)recv_cb);
    libssh2_session_set_blocking(ss->s, 0);
    libssh2_keepalive_config(ss->s, 1, (unsigned)ss->alive_interval);
    ss->st = SS_HANDSHAKE;
  }
    /* fall through */
  case SS_HANDSHAKE:
    rc = libssh2_session_handshake(ss->s, ss->c->fd);
    if (rc == LIBSSH2_ERROR_EAGAIN) break;
    if (rc < 0) {
      sess_fail(ss, false, "ssh handshake with %s failed: %s", ss->hostname, errmsg(ss));
      break;
    }
    if (!hostkey_ok(ss)) break;
    ss->st = SS_AUTH;
    /* fall through */
  case SS_AUTH:
    if (!ss->identity) {
      rc = agent_auth(ss);
      if (rc == LIBSSH2_ERROR_EAGAIN) break;
      if (rc < 0) break; /* (agent_auth said why) */
    } else {
      rc =
          libssh2_userauth_publickey_fromfile_ex(ss->s, ss->user, (unsigned)strlen(ss->user), NULL, ss->identity, NULL);
      if (rc == LIBSSH2_ERROR_EAGAIN) break;
      if (rc < 0) {
        sess_fail(ss, true, "authentication as %s with %s refused: %s", ss->user, ss->identity, errmsg(ss));
        break;
      }
    }
    agent_drop(ss);
    ss->fails = 0;
    ss->last_rx = ss->up_since = now_mono();
    set_state(ss, SS_UP, "session to %s@%s port %d", ss->user, ss->hostname, ss->port);
    /* fall through */
  case SS_UP: pump_up(ss); break;
  case SS__MAX: break;
  }
  if (ss->c && ss->st >= SS_CONNECTING && ss->st <= SS_AUTH) {
    int dir = ss->st == SS_CONNECTING ? 0 : libssh2_session_block_directions(ss->s);
    watch(ss, ss->st == SS_CONNECTING ? UV_WRITABLE
                                      : UV_READABLE | (dir & LIBSSH2_SESSION_BLOCK_OUTBOUND ? UV_WRITABLE : 0));
  }
  arm(ss);
}

static void on_poll(uv_poll_t *p, int status, int events) {
  struct conn *c = p->data;
  struct sess *ss = c->ss;
  (void)events;
  if (ss->c != c) return; /* an old connection's last event */
  if (status < 0 && ss->st != SS_CONNECTING) {
    sess_fail(ss, false, "session lost: %s", uv_strerror(status));
    arm(ss);
    return;
  }
  pump(ss);
}

static void on_timer(uv_timer_t *t) {
  struct sess *ss = t->data;
  if (ss->closing) return;
  double now = now_mono();
  if (ss->st >= SS_RESOLVING && ss->st <= SS_AUTH && now >= ss->deadline) {
    sess_fail(ss, false, "not connected within %.0fs (%s)", ss->connect_timeout, ss->reason);
    arm(ss);
    return;
  }
  if (ss->st == SS_UP && now - ss->last_rx > ss->alive_window) {
    sess_fail(ss, false, "no answer from %s for %.0fs", ss->hostname, now - ss->last_rx);
    arm(ss);
    return;
  }
  pump(ss);
}

static void on_timer_close(uv_handle_t *h) { ((struct sess *)h->data)->nhandles--; }

static void sess_fields_free(struct sess *ss) {
  free(ss->name);
  free(ss->user);
  free(ss->hostname);
  free(ss->known_hosts);
  free(ss->identity);
  free(ss->agent_path);
  free(ss->alias);
}

/* The host's spec as this session was made from it. */
static void sess_take_spec(struct sess *ss, const struct host_spec *k) {
  sess_fields_free(ss);
  ss->name = xstrdup(k->name);
  const char *at = strrchr(k->destination, '@');
  if (at) {
    ss->user = xasprintf("%.*s", (int)(at - k->destination), k->destination);
    ss->hostname = xstrdup(at + 1);
  } else {
    struct passwd *pw = getpwuid(geteuid());
    ss->user = xstrdup(pw ? pw->pw_name : "root");
    ss->hostname = xstrdup(k->destination);
  }
  ss->known_hosts = xstrdup(k->known_hosts);
  ss->identity = k->identity_file ? xstrdup(k->identity_file) : NULL;
  ss->agent_path = k->identity_agent ? xstrdup(k->identity_agent) : NULL;
  ss->alias = k->host_key_alias ? xstrdup(k->host_key_alias) : NULL;
  ss->port = k->port ? k->port : 22;
  ss->alive_interval = (int)fmax(1, ceil(k->alive_interval));
  ss->alive_window = k->alive_interval * (k->alive_count + 1);
  ss->connect_timeout = k->connect_timeout;
}

static bool same_spec(const struct sess *ss, const struct host_spec *k) {
  struct sess t = {0};
  sess_take_spec(&t, k);
  bool same = !strcmp(t.user, ss->user) && !strcmp(t.hostname, ss->hostname) &&
              !strcmp(t.known_hosts, ss->known_hosts) && t.port == ss->port &&
              !strcmp(t.identity ? t.identity : "", ss->identity ? ss->identity : "") &&
              !strcmp(t.agent_path ? t.agent_path : "", ss->agent_path ? ss->agent_path : "") &&
              !strcmp(t.alias ? t.alias : "", ss->alias ? ss->alias : "") && t.alive_window == ss->alive_window &&
              t.connect_timeout == ss->connect_timeout;
  sess_fields_free(&t);
  return same;
}

static struct sess *sess_get(struct daemon *d, const struct host_spec *k) {
  const char *host = k->name;
  struct list *pos, *tmp;
  list_for_each_safe(pos, tmp, &d->sshx) {
    struct sess *ss = container_of(pos, struct sess, link);
    if (strcmp(ss->name, host)) continue;
    if (!same_spec(ss, k)) { /* reloaded with other settings: a new connection */
      if (ss->st != SS_IDLE && ss->st != SS_BACKOFF) sess_fail(ss, false, "the host's settings changed");
      sess_take_spec(ss, k);
      ss->st = SS_IDLE;
      ss->fails = 0;
    }
    return ss;
  }
  struct sess *ss = xcalloc(1, sizeof *ss);
  ss->d = d;
  sess_take_spec(ss, k);
  list_init(&ss->reqs);
  uv_timer_init(d->loop, &ss->timer);
  ss->timer.data = ss;
  ss->nhandles = 1;
  ss->chan_limit = MAX_CHANNELS;
  ss->st = SS_IDLE;
  snprintf(ss->reason, sizeof ss->reason, "not connected yet");
  list_add_tail(&d->sshx, &ss->link);
  return ss;
}

struct sshx_req *sshx_exec(struct daemon *d, const struct host_spec *host, const char *command, const void *in,
                           size_t inlen, sshx_cb cb, void *arg) {
  struct sess *ss = NULL;
  if (!host) return NULL;
  if (d->shutting_down) {
    /* Stopping (a job's scancel): on a session that is up, never a new connection that
     * would hold the daemon's exit (what cannot be sent is left to the next daemon). */
    struct list *pos, *tmp;
    list_for_each_safe(pos, tmp, &d->sshx) {
      struct sess *x = container_of(pos, struct sess, link);
      if (!strcmp(x->name, host->name) && x->st == SS_UP && same_spec(x, host)) ss = x;
    }
  } else {
    ss = sess_get(d, host);
  }
  if (!ss) return NULL;
  struct sshx_req *r = xcalloc(1, sizeof *r);
  r->ss = ss;
  r->cmd = xstrdup(command);
  if (inlen) {
    r->in = xmalloc(inlen);
    memcpy(r->in, in, inlen);
    r->inlen = inlen;
  }
  r->status = -1;
  r->cb = cb;
  r->arg = arg;
  list_add_tail(&ss->reqs, &r->link);
  timer_arm(d->loop, &ss->timer, on_timer, now_mono()); /* answered from the loop, never from here */
  return r;
}

void sshx_cancel(struct sshx_req *r) {
  if (!r || r->cancelled) return;
  r->cancelled = true;
  /* Queued: answered at the next turn. With a channel: answered now-ish, torn down after. */
  if (r->st != RQ_QUEUED && r->st != RQ_OPEN && r->st != RQ_FREE) {
    r->st = RQ_CLOSE;
  }
  timer_arm(r->ss->d->loop, &r->ss->timer, on_timer, now_mono());
}

json_t *sshx_host_json(struct daemon *d, const char *host) {
  struct list *pos, *tmp;
  list_for_each_safe(pos, tmp, &d->sshx) {
    struct sess *ss = container_of(pos, struct sess, link);
    if (strcmp(ss->name, host)) continue;
    size_t nreq = 0;
    struct list *p2, *t2;
    list_for_each_safe(p2, t2, &ss->reqs) nreq++;
    json_t *o = json_pack("{s:s,s:s,s:f,s:i,s:i,s:I,s:I,s:i}", "state", ss_names[ss->st], "reason", ss->reason, "for",
                          now_mono() - ss->since, "channels", (int)ss->nchannels, "queued", (int)(nreq - ss->nchannels),
                          "commands", (json_int_t)ss->execs, "failed", (json_int_t)ss->execs_failed, "connects",
                          (int)ss->connects);
    json_object_set_new(o, "last_error", ss->last_error[0] ? json_string(ss->last_error) : json_null());
    return o;
  }
  return NULL;
}

void sshx_close(struct daemon *d) {
  struct list *pos, *tmp;
  list_for_each_safe(pos, tmp, &d->sshx) {
    struct sess *ss = container_of(pos, struct sess, link);
    /* What is still waiting is told so (the checks are being closed too). */
    struct list *p2, *t2;
    list_for_each_safe(p2, t2, &ss->reqs) {
      struct sshx_req *r = container_of(p2, struct sshx_req, link);
      req_answer(r, false, "daemon shutting down");
    }
    drop_conn(ss);
    while (!list_empty(&ss->reqs)) req_free(container_of(ss->reqs.next, struct sshx_req, link));
    ss->closing = true;
    if (ss->resolving) uv_cancel((uv_req_t *)&ss->gai);
    uv_close((uv_handle_t *)&ss->timer, on_timer_close);
  }
}

void sshx_free(struct daemon *d) {
  while (!list_empty(&d->sshx)) {
    struct sess *ss = container_of(d->sshx.next, struct sess, link);
    list_del(&ss->link);
    sess_fields_free(ss);
    free(ss);
  }
  if (lib_ready) {
    libssh2_exit();
    lib_ready = false;
  }
}
