/* The notify socket herd offers its services (notify.h). */
#include "herd/notify.h"

#include "herd/daemon.h"
#include "herd/ident.h"
#include "herd/log.h"
#include "herd/run.h"

#include <errno.h>
#include <fcntl.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <sys/stat.h>
#include <sys/un.h>
#include <unistd.h>

/* systemd's own limit on one notification (NOTIFY_BUFFER_MAX). */
#define NOTIFY_MAX 4096
/* Descriptors read with one message (systemd-notify sends one, for BARRIER=1). */
#define NOTIFY_FDS 16
/* Messages read per readable callback, so that a flood cannot hold the loop. */
#define NOTIFY_BATCH 64

struct notifier {
  struct daemon *d;
  uv_poll_t poll;
  int fd;
  char *path;
  char *marker; /* "HERD_INSTANCE=<herd id>:" */
};

const char *notify_path(const struct daemon *d) { return d->notifier ? d->notifier->path : NULL; }

/* The instance the environment of `pid` names (HERD_INSTANCE), or 0. */
static int64_t instance_of(const struct notifier *n, int pid) {
  char path[64];
  snprintf(path, sizeof path, "/proc/%d/environ", pid);
  int fd = open(path, O_RDONLY | O_CLOEXEC);
  if (fd < 0) return 0;
  static char buf[65536]; /* the loop thread only */
  size_t len = 0;
  ssize_t r;
  while (len < sizeof buf - 1 && (r = read(fd, buf + len, sizeof buf - 1 - len)) != 0) {
    if (r < 0) {
      if (errno == EINTR) continue;
      break;
    }
    len += (size_t)r;
  }
  close(fd);
  buf[len] = '\0';
  size_t ml = strlen(n->marker);
  for (size_t i = 0; i < len; i += strlen(buf + i) + 1)
    if (!strncmp(buf + i, n->marker, ml)) return strtoll(buf + i + ml, NULL, 10);
  return 0;
}

/* Whose message is it: the service whose current instance sent it. */
static struct service *sender(struct daemon *d, int pid) {
  if (pid <= 0) return NULL;
  pid_t pg = getpgid(pid), sid = getsid(pid);
  struct list *pos, *tmp;
  list_for_each_safe(pos, tmp, &d->services) {
    struct service *s = container_of(pos, struct service, link);
    if (s->pid > 0 && s->fsm.proc_alive && (s->pid == pid || s->pid == pg || s->pid == sid)) return s;
  }
  /* Not (yet) known by its pid: the instance's pid is recorded when the spawn is answered,
   * and a quick program says READY=1 before that; or a child left the process group. */
  int64_t inst = instance_of(d->notifier, pid);
  if (inst <= 0) return NULL;
  list_for_each_safe(pos, tmp, &d->services) {
    struct service *s = container_of(pos, struct service, link);
    if (s->instance == inst && s->fsm.proc_alive) return s;
  }
  return NULL;
}

void notify_message(struct daemon *d, int pid, const char *msg, size_t len) {
  struct service *s = sender(d, pid);
  if (!s) {
    log_debug("notify socket: a message from pid %d, which is no instance of a service; ignored", pid);
    return;
  }
  bool ready = false, watchdog = false;
  const char *status = NULL;
  size_t status_len = 0;
  for (const char *p = msg, *end = msg + len; p < end;) {
    const char *nl = memchr(p, '\n', (size_t)(end - p));
    size_t l = nl ? (size_t)(nl - p) : (size_t)(end - p);
    if (l == 7 && !memcmp(p, "READY=1", 7))
      ready = true;
    else if (l == 10 && !memcmp(p, "WATCHDOG=1", 10))
      watchdog = true;
    else if (l >= 7 && !memcmp(p, "STATUS=", 7))
      status = p + 7, status_len = l - 7;
    /* MAINPID=, RELOADING=1, STOPPING=1, ERRNO=, WATCHDOG_USEC=, FDSTORE=1 ...: ignored. */
    p += l + 1;
  }
  if (status) {
    size_t n = status_len < sizeof s->notify_status - 1 ? status_len : sizeof s->notify_status - 1;
    memcpy(s->notify_status, status, n);
    s->notify_status[n] = '\0';
    for (char *c = s->notify_status; *c; c++) /* one line in a table: no control characters */
      if ((unsigned char)*c < 0x20) *c = ' ';
    s->notify_instance = s->instance;
  }
  if (ready) run_post_event(s, EV_NOTIFY_READY, 0, 0, status ? s->notify_status : NULL);
  if (watchdog) run_post_event(s, EV_WATCHDOG, 0, 0, NULL);
}

static void on_readable(uv_poll_t *h, int status, int events) {
  struct notifier *n = container_of(h, struct notifier, poll);
  (void)events;
  if (status < 0) return;
  for (int k = 0; k < NOTIFY_BATCH; k++) {
    char buf[NOTIFY_MAX + 1];
    union {
      struct cmsghdr align;
      char b[CMSG_SPACE(sizeof(struct ucred)) + CMSG_SPACE(sizeof(int) * NOTIFY_FDS)];
    } ctl;
    struct iovec iov = {.iov_base = buf, .iov_len = sizeof buf - 1};
    struct msghdr mh = {.msg_iov = &iov, .msg_iovlen = 1, .msg_control = ctl.b, .msg_controllen = sizeof ctl.b};
    ssize_t r = recvmsg(n->fd, &mh, MSG_DONTWAIT | MSG_CMSG_CLOEXEC | MSG_TRUNC);
    if (r < 0) {
      if (errno == EINTR) continue;
      if (errno != EAGAIN && errno != EWOULDBLOCK) log_warn("notify socket %s: %s", n->path, strerror(errno));
      return;
    }
    int pid = 0;
    int fds[NOTIFY_FDS];
    size_t nfds = 0;
    for (struct cmsghdr *c = CMSG_FIRSTHDR(&mh); c; c = CMSG_NXTHDR(&mh, c)) {
      if (c->cmsg_level != SOL_SOCKET) continue;
      if (c->cmsg_type == SCM_CREDENTIALS && c->cmsg_len == CMSG_LEN(sizeof(struct ucred))) {
        struct ucred u;
        memcpy(&u, CMSG_DATA(c), sizeof u);
        pid = u.pid;
      } else if (c->cmsg_type == SCM_RIGHTS) {
        size_t m = (c->cmsg_len - CMSG_LEN(0)) / sizeof(int);
        for (size_t i = 0; i < m && nfds < NOTIFY_FDS; i++)
          memcpy(&fds[nfds++], CMSG_DATA(c) + i * sizeof(int), sizeof(int));
      }
    }
    if ((size_t)r > sizeof buf - 1)
      log_warn("notify socket: a message of %zd bytes from pid %d (at most %d); ignored", r, pid, NOTIFY_MAX);
    else
      notify_message(n->d, pid, buf, (size_t)r);
    /* Handled: closing what came with it answers a BARRIER=1 (systemd-notify waits on it). */
    for (size_t i = 0; i < nfds; i++) close(fds[i]);
  }
}

int notify_open(struct daemon *d) {
  struct notifier *n = xcalloc(1, sizeof *n);
  n->d = d;
  n->path = xasprintf("%s/notify.sock", d->run_dir);
  n->marker = xasprintf(IDENT_ENV "=%s:", d->herd_id);
  struct sockaddr_un sa = {.sun_family = AF_UNIX};
  int rc = 0;
  n->fd = -1;
  if (strlen(n->path) >= sizeof sa.sun_path) {
    rc = -ENAMETOOLONG;
    goto fail;
  }
  memcpy(sa.sun_path, n->path, strlen(n->path) + 1);
  n->fd = socket(AF_UNIX, SOCK_DGRAM | SOCK_CLOEXEC | SOCK_NONBLOCK, 0);
  int one = 1;
  if (n->fd < 0 || setsockopt(n->fd, SOL_SOCKET, SO_PASSCRED, &one, sizeof one) < 0) {
    rc = -errno;
    goto fail;
  }
  /* We hold the state dir's lock: a socket file left here is a dead daemon's. */
  unlink(n->path);
  mode_t old = umask(0177); /* private to herd's user, as everything in the state dir */
  int brc = bind(n->fd, (struct sockaddr *)&sa, sizeof sa);
  umask(old);
  if (brc < 0) {
    rc = -errno;
    goto fail;
  }
  /* Big enough for a burst of a thousand services' WATCHDOG=1 between two loop turns. */
  int sz = 1 << 20;
  setsockopt(n->fd, SOL_SOCKET, SO_RCVBUF, &sz, sizeof sz);
  if ((rc = uv_poll_init(d->loop, &n->poll, n->fd)) < 0) goto fail;
  uv_poll_start(&n->poll, UV_READABLE, on_readable);
  d->notifier = n;
  return 0;
fail:
  log_warn("notify socket %s: %s; services with \"ready\": \"notify\" or \"watchdog\" get no NOTIFY_SOCKET", n->path,
           rc == -ENAMETOOLONG ? "path too long" : strerror(-rc));
  if (n->fd >= 0) close(n->fd);
  free(n->path);
  free(n->marker);
  free(n);
  return rc;
}

static void on_close(uv_handle_t *h) {
  struct notifier *n = container_of((uv_poll_t *)h, struct notifier, poll);
  close(n->fd);
  free(n->path);
  free(n->marker);
  free(n);
}

void notify_close(struct daemon *d) {
  struct notifier *n = d->notifier;
  if (!n) return;
  d->notifier = NULL;
  /* Left for the next daemon when services keep running: they still hold its path, and
   * the next daemon binds it again. Removing it is harmless either way. */
  unlink(n->path);
  uv_close((uv_handle_t *)&n->poll, on_close);
}
