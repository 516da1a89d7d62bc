/* sd_notify(3) by hand: a datagram to $NOTIFY_SOCKET (sdnotify.h). */
#include "herd/sdnotify.h"

#include <errno.h>
#include <stddef.h>
#include <string.h>
#include <unistd.h>

int sdnotify_open(struct sdnotify *n, const char *path) {
  memset(n, 0, sizeof *n);
  n->fd = -1;
  if (!path || !*path) return 0;
  /* systemd 256 also names vsock:CID:PORT here (a VM's manager); herd runs on the host. */
  if (path[0] != '/' && path[0] != '@') return -EAFNOSUPPORT;
  size_t len = strlen(path);
  if (len > sizeof n->addr.sun_path - (path[0] == '/')) return -ENAMETOOLONG;
  n->addr.sun_family = AF_UNIX;
  memcpy(n->addr.sun_path, path, len);
  /* An abstract address: a leading NUL instead of '@', and its length is exact (no NUL at
   * the end: the name is every byte the length covers). */
  if (path[0] == '@') n->addr.sun_path[0] = '\0';
  n->addrlen = (socklen_t)(offsetof(struct sockaddr_un, sun_path) + len + (path[0] == '/'));
  n->fd = socket(AF_UNIX, SOCK_DGRAM | SOCK_CLOEXEC | SOCK_NONBLOCK, 0);
  return n->fd < 0 ? -errno : 0;
}

bool sdnotify_on(const struct sdnotify *n) { return n->fd >= 0; }

int sdnotify_send(struct sdnotify *n, const char *msg) {
  if (n->fd < 0) return 0;
  /* Non-blocking: a manager that does not read its socket must not stall the loop; the
   * message is then lost (the next STATUS or WATCHDOG says it again). */
  ssize_t r = sendto(n->fd, msg, strlen(msg), MSG_NOSIGNAL | MSG_DONTWAIT, (struct sockaddr *)&n->addr, n->addrlen);
  return r < 0 ? -errno : 0;
}

void sdnotify_close(struct sdnotify *n) {
  if (n->fd >= 0) close(n->fd);
  n->fd = -1;
}
