/*
 * The notify protocol offered to services (sd_notify(3), systemd's Type=notify and
 * WatchdogSec=): one datagram socket per daemon, <run dir>/notify.sock, given to the local
 * instances of services with "ready": "notify" or "watchdog" as $NOTIFY_SOCKET. A message's
 * sender is known by its SCM_CREDENTIALS pid: the service whose instance has that pid, or
 * leads its process group or session, or whose HERD_INSTANCE marker the sender carries (so
 * children of the main process count too, as with systemd's NotifyAccess=all).
 *
 * READY=1 and WATCHDOG=1 become events for the state machine (EV_NOTIFY_READY, EV_WATCHDOG);
 * STATUS= is kept for status and the API; file descriptors sent along (systemd-notify's
 * BARRIER=1) are closed once the message is handled, which answers the barrier.
 */
#ifndef HERD_NOTIFY_H
#define HERD_NOTIFY_H

#include <stddef.h>

struct daemon;
struct service;

/** Open the daemon's notify socket (after the spawner threads exist: see heartbeat.c).
 *  0, or a negative errno: services then get no $NOTIFY_SOCKET (logged). */
int notify_open(struct daemon *d);
/** Its path for $NOTIFY_SOCKET, or NULL when there is none. */
const char *notify_path(const struct daemon *d);
/** Close it (the daemon's finish) and remove the socket file. */
void notify_close(struct daemon *d);
/** Handle one message from `pid` (what the socket's reader does; tests call it). */
void notify_message(struct daemon *d, int pid, const char *msg, size_t len);

#endif
