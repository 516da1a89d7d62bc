/*
 * ssh hosts and tunnels: one OpenSSH ControlMaster child per configured host, supervised
 * like a service (connecting, up, backoff with jitter, down, with the reason), and each
 * service that names the host ("ssh") reached at a fixed local port: a local forward of
 * the master (what `ssh -O forward` / `-O cancel` ask, said by herd itself over the control
 * socket: sshmux.h; never a process per tunnel), re-added after every reconnect. A host lost makes its services UNKNOWN
 * (never restarted for it); its forwards come back with it. Measured facts: ../shared/reference/ssh-tunnels.md.
 */
#ifndef HERD_TUNNEL_H
#define HERD_TUNNEL_H

#include "herd/daemon.h"

/** The hosts of the config (taking ownership): their masters start, staggered. */
void tunnel_init(struct daemon *d, struct host_spec **specs, size_t n);
/** A reloaded set (taking ownership): new hosts start, changed ones reconnect with the new
 *  spec, removed ones stop once no service uses them. */
void tunnel_reload(struct daemon *d, struct host_spec **specs, size_t n);
/** Daemon exit: stop every master (leaving: let them run for the next daemon) and close. */
void tunnel_close(struct daemon *d, bool leaving);
/** Free what is left, once the loop has closed every handle. */
void tunnel_free(struct daemon *d);
/** Check services about to be added over the API against the configured hosts. */
int tunnel_check_specs(struct daemon *d, struct spec **specs, size_t n, struct cfg_errors *errs);

/** The runner, after each event: make the service's endpoint point at target:port through
 *  its host (want), or at nothing. Re-pointing cancels the old forward first. */
void tunnel_sync(struct service *s, bool want, const char *target, int port);
/** The service goes away (or the daemon leaves it running): forget its forward; cancel it
 *  unless leaving. */
void tunnel_release(struct service *s, bool cancel);
/** The local port the service's endpoint has (fixed, or allocated once and kept), 0 when it
 *  has no ssh host. */
int tunnel_local_port(struct service *s);
/** The configured host named so, or NULL. */
const struct host_spec *tunnel_host_spec(struct daemon *d, const char *name);
/** How long a dead path through the service's ssh host can go unnoticed (its ServerAlive
 *  window, and a second): the least unhealthy grace of a service checked through it, so that
 *  a cut path is found as the host's loss (UNKNOWN) before the service is restarted for it. 0
 *  without an ssh host. */
double tunnel_dead_window(struct service *s);
/** Why a check through the tunnel cannot pass now ("ssh host login is down: ..."), or NULL. */
const char *tunnel_blocker(struct service *s, char *buf, size_t len);
/** The service's endpoint as status shows it, or NULL when it has no ssh host. */
json_t *tunnel_service_json(struct service *s);
/** The hosts: state, pid, forwards, last error, reconnects. */
json_t *tunnel_hosts_json(struct daemon *d);

#endif
