/*
 * libssh2 sessions on the loop: one per ssh host that something asks to run a command on
 * (a remote exec check today), non-blocking, driven by a uv_poll_t on its socket. Host keys
 * are checked against the host's known_hosts file; the key is its identity_file (ed25519 or
 * ECDSA: libssh2 1.10 has no rsa-sha2). Channel opens are queued (libssh2 allows one pending
 * open per session); many channels then run at once. A dead peer is found by herd's own
 * timer on the last bytes received (libssh2's keepalive never reports one) and
 * TCP_USER_TIMEOUT; a lost session fails what was in flight as a transport error and
 * reconnects with backoff when asked again. Measured facts: ../shared/reference/ssh-tunnels.md.
 */
#ifndef HERD_SSHX_H
#define HERD_SSHX_H

#include "herd/daemon.h"

#include <jansson.h>

struct sshx_req;

struct sshx_result {
  bool ran;          /* false: the session failed (error says why): nothing is known of the command */
  bool maybe_ran;    /* !ran: whether it may have started anyway (false: it certainly never did) */
  int status;        /* the remote exit status (-1 when the remote gave none) */
  const char *error; /* !ran: why */
  const char *out, *err;
  size_t outlen, errlen;
};

typedef void (*sshx_cb)(void *arg, const struct sshx_result *res);

/** Run command (one shell line) on ssh host `host` (its spec as configured now: a session
 *  made from other settings starts over) with `in` as its standard input; cb is called
 *  exactly once, later (never from inside this call). NULL when host is NULL or the daemon
 *  is shutting down. */
struct sshx_req *sshx_exec(struct daemon *d, const struct host_spec *host, const char *command, const void *in,
                           size_t inlen, sshx_cb cb, void *arg);
/** Give up a request: its callback comes soon (like a uv handle's close callback) with
 *  ran = false, "cancelled"; its channel is closed in the background. */
void sshx_cancel(struct sshx_req *r);
/** The sessions, as GET /v1/hosts shows them. NULL when the host has none. */
json_t *sshx_host_json(struct daemon *d, const char *host);
/** Daemon exit: fail what is queued, close every session and its handles. */
void sshx_close(struct daemon *d);
/** Free what is left once the loop closed every handle. */
void sshx_free(struct daemon *d);

#endif
