/*
 * systemd's notification protocol (sd_notify(3)) without libsystemd: one datagram of
 * NEWLINE-separated KEY=VALUE assignments to the AF_UNIX socket named by $NOTIFY_SOCKET
 * (a path, or "@name" for the abstract namespace).
 */
#ifndef HERD_SDNOTIFY_H
#define HERD_SDNOTIFY_H

#include <stdbool.h>
#include <sys/socket.h>
#include <sys/un.h>

struct sdnotify {
  int fd; /* -1: not under a notifying service manager */
  struct sockaddr_un addr;
  socklen_t addrlen;
};

/** Open a datagram socket towards `path` (the value of $NOTIFY_SOCKET). NULL or "" leaves it
 *  closed and returns 0; otherwise 0 or a negative errno (-EAFNOSUPPORT for a vsock: address,
 *  -ENAMETOOLONG for a path that does not fit). */
int sdnotify_open(struct sdnotify *n, const char *path);
/** Whether there is a manager to tell. */
bool sdnotify_on(const struct sdnotify *n);
/** Send one message ("READY=1\nSTATUS=..."); never blocks. 0, or a negative errno. A closed
 *  notifier sends nothing and returns 0. */
int sdnotify_send(struct sdnotify *n, const char *msg);
void sdnotify_close(struct sdnotify *n);

#endif
