/*
 * Service logs. A child writes into a per-service FIFO in <state>/run, opened
 * read-write: because the child's own descriptor counts as a reader, a write never
 * raises SIGPIPE, even when herd is dead; output waits in the pipe (up to 1 MiB)
 * until the next herd opens the FIFO and carries on. herd copies what it reads into
 * <state>/logs/<name>.log, rotating by size, and to any `logs -f` followers.
 *
 * Descriptors are what bounds how many services one daemon runs, so a service holds none
 * while no instance runs: the FIFO's reader is opened when an instance starts (or is
 * re-adopted) and closed once it is gone and its output drained; the log files are
 * opened on demand and kept in a small cache shared by all services (least recently
 * written closed first), since most services write rarely.
 */
#include "herd/daemon.h"
#include "herd/log.h"

#include <errno.h>
#include <fcntl.h>
#include <stdarg.h>
#include <stdlib.h>
#include <string.h>
#include <sys/resource.h>
#include <sys/stat.h>
#include <time.h>
#include <unistd.h>

#define FIFO_SIZE (1024 * 1024)

/* Log files open at once, across all services. */
#define LOG_FD_CACHE 64

static void log_fd_close(struct service *s) {
  if (s->log_fd < 0) return;
  close(s->log_fd);
  s->log_fd = -1;
  list_del(&s->logfd_link);
  s->d->nlogfds--;
}

/* The service's log file, opened (O_APPEND) if it is not in the cache; -1 when it cannot be. */
static int log_fd(struct service *s, bool truncate) {
  struct daemon *d = s->d;
  if (s->log_fd >= 0 && !truncate) { /* most recently used at the tail */
    list_del(&s->logfd_link);
    list_add_tail(&d->logfds, &s->logfd_link);
    return s->log_fd;
  }
  log_fd_close(s);
  if (d->nlogfds >= LOG_FD_CACHE) log_fd_close(container_of(d->logfds.next, struct service, logfd_link));
  int flags = O_WRONLY | O_APPEND | O_CREAT | O_CLOEXEC | (truncate ? O_TRUNC : 0);
  /* 0600, as everything in the state dir: a service's output may carry its secrets. */
  s->log_fd = open(s->log_path, flags, 0600);
  if (s->log_fd < 0 && (errno == EMFILE || errno == ENFILE) && d->nlogfds > 0) {
    /* Out of descriptors: give back a cached one and try once more. */
    log_fd_close(container_of(d->logfds.next, struct service, logfd_link));
    s->log_fd = open(s->log_path, flags, 0600);
  }
  if (s->log_fd < 0) {
    int e = errno;
    if (!s->log_error_said)
      log_msg(LOG_ERROR, s->spec->name, NULL, NULL, "cannot open %s: %s", s->log_path, strerror(e));
    s->log_error_said = true;
    errno = e; /* for the caller's count of what is lost */
    return -1;
  }
  s->log_error_said = false;
  list_add_tail(&d->logfds, &s->logfd_link);
  d->nlogfds++;
  return s->log_fd;
}

static void log_rotate(struct service *s) {
  unsigned keep = s->spec->log_keep;
  log_fd_close(s);
  if (keep == 0) {
    unlink(s->log_path);
  } else {
    char from[4096], to[4096];
    for (unsigned k = keep; k >= 1; k--) {
      if (k == 1)
        snprintf(from, sizeof from, "%s", s->log_path);
      else
        snprintf(from, sizeof from, "%s.%u", s->log_path, k - 1);
      snprintf(to, sizeof to, "%s.%u", s->log_path, k);
      if (rename(from, to) < 0 && errno != ENOENT)
        log_msg(LOG_WARN, s->spec->name, NULL, NULL, "log rotation: rename %s: %s", from, strerror(errno));
    }
  }
  log_fd(s, true);
  s->log_size = 0;
  s->log_at_bol = true;
}

/* Output the log file could not take: counted, said once in the daemon's log and on the
 * service (log_error), and marked in the log itself by a note once it writes again, so a
 * gap is never silent. */
static void file_lost(struct service *s, size_t n, int err) {
  if (!s->log_lost)
    log_msg(LOG_ERROR, s->spec->name, NULL, NULL, "cannot write %s: %s: its output is lost until it can", s->log_path,
            strerror(err));
  s->log_lost += n;
  snprintf(s->log_error, sizeof s->log_error, "cannot write %s: %s (%llu bytes lost)", s->log_path, strerror(err),
           (unsigned long long)s->log_lost);
}

/* Write all of data; -errno when the file takes no more. */
static int write_all(struct service *s, const char *data, size_t n, size_t *done) {
  size_t off = 0;
  int rc = 0;
  while (off < n) {
    ssize_t w = write(s->log_fd, data + off, n - off);
    if (w < 0) {
      if (errno == EINTR) continue;
      rc = -errno;
      break;
    }
    off += (size_t)w;
  }
  s->log_size += off;
  if (off) s->log_at_bol = data[off - 1] == '\n';
  *done = off;
  return rc;
}

static void file_write(struct service *s, const char *data, size_t n) {
  if (n == 0) return;
  if (log_fd(s, false) < 0) return file_lost(s, n, errno);
  /* A regular file in the page cache: write(2) does not block the loop in practice. */
  size_t off;
  if (s->log_lost) { /* writable again? the gap first */
    char line[400], ts[32];
    time_t t = time(NULL);
    struct tm tm;
    gmtime_r(&t, &tm);
    strftime(ts, sizeof ts, "%Y-%m-%dT%H:%M:%SZ", &tm);
    int k = snprintf(line, sizeof line, "%s[herd %s] %llu bytes of output were lost here: %s\n",
                     s->log_at_bol ? "" : "\n", ts, (unsigned long long)s->log_lost, s->log_error);
    if (k < 0 || (size_t)k >= sizeof line) k = (int)sizeof line - 1;
    int rc = write_all(s, line, (size_t)k, &off);
    if (rc < 0) return file_lost(s, n, -rc);
    log_msg(LOG_INFO, s->spec->name, NULL, NULL, "%s writes again; %llu bytes of output were lost", s->log_path,
            (unsigned long long)s->log_lost);
    s->log_lost = 0;
    s->log_error[0] = '\0';
  }
  int rc = write_all(s, data, n, &off);
  if (rc < 0) file_lost(s, n - off, -rc); /* disk full: the bytes still reach followers */
}

static void log_write(struct service *s, const char *data, size_t n) {
  const char *p = data;
  size_t left = n;
  /* Rotate only between lines: when the next bytes would pass max_size, finish the
   * current line first (a line longer than what is left goes into this file whole). */
  while (left) {
    if (s->log_size > 0 && s->log_size + left > s->spec->log_max_size) {
      if (s->log_at_bol) {
        log_rotate(s);
      } else {
        const char *nl = memchr(p, '\n', left);
        if (nl) {
          size_t k = (size_t)(nl - p) + 1;
          file_write(s, p, k);
          p += k;
          left -= k;
          log_rotate(s);
          continue;
        }
        /* No end of line in sight and the file is full: split the line rather than grow
         * without bound (output with no newlines at all). */
        if (s->log_size >= s->spec->log_max_size) log_rotate(s);
      }
    }
    file_write(s, p, left);
    break;
  }
  struct list *pos, *tmp;
  list_for_each_safe(pos, tmp, &s->watches) {
    struct svc_watch *w = container_of(pos, struct svc_watch, link);
    if (w->on_log) w->on_log(w, s, data, n);
  }
}

void logpipe_note(struct service *s, const char *fmt, ...) {
  char msg[512], line[600];
  va_list ap;
  va_start(ap, fmt);
  vsnprintf(msg, sizeof msg, fmt, ap);
  va_end(ap);
  time_t t = time(NULL);
  struct tm tm;
  gmtime_r(&t, &tm);
  char ts[32];
  strftime(ts, sizeof ts, "%Y-%m-%dT%H:%M:%SZ", &tm);
  /* herd's notes start on a line of their own even when the service left one open. */
  int n = snprintf(line, sizeof line, "%s[herd %s] %s\n", s->log_at_bol ? "" : "\n", ts, msg);
  if (n > 0) log_write(s, line, (size_t)n < sizeof line ? (size_t)n : sizeof line - 1);
}

/* The FIFO's reader while an instance runs: its own allocation, since a new instance may
 * open the next one while this one's handle is still closing. */
struct logreader {
  uv_pipe_t pipe;
  struct service *s;
  bool reading; /* from the instance's "started" note on: its output comes after it */
};

static void on_read(uv_stream_t *st, ssize_t n, const uv_buf_t *buf) {
  struct logreader *r = container_of((uv_pipe_t *)st, struct logreader, pipe);
  if (n > 0)
    log_write(r->s, buf->base, (size_t)n);
  else if (n < 0 && n != UV_EAGAIN) {
    /* Cannot happen while we hold a write end ourselves; if it does, say so. */
    log_msg(LOG_WARN, r->s->spec->name, NULL, NULL, "log pipe: %s", uv_strerror((int)n));
    uv_read_stop(st);
  }
}

void logpipe_drain(struct service *s) {
  int fd = -1;
  if (!s->reader || uv_fileno((uv_handle_t *)&s->reader->pipe, &fd) < 0) return;
  for (int i = 0; i < 64; i++) { /* bounded: at most 4 MiB per drain */
    ssize_t n = read(fd, loop_readbuf, sizeof loop_readbuf);
    if (n <= 0) break;
    log_write(s, loop_readbuf, (size_t)n);
  }
}

int logpipe_child_fd(const char *fifo_path) {
  int fd = open(fifo_path, O_RDWR | O_CLOEXEC);
  return fd < 0 ? -errno : fd;
}

int logpipe_open(struct service *s, char *err, size_t errlen) {
  struct stat st;
  if (lstat(s->fifo_path, &st) == 0 && !S_ISFIFO(st.st_mode)) unlink(s->fifo_path);
  if (mkfifo(s->fifo_path, 0600) < 0 && errno != EEXIST) {
    snprintf(err, errlen, "mkfifo %s: %s", s->fifo_path, strerror(errno));
    return -errno;
  }
  /* Where the log stands (its size, whether it ends a line), without holding it open. */
  s->log_at_bol = true;
  s->log_size = 0;
  int fd = open(s->log_path, O_RDONLY | O_CLOEXEC);
  if (fd >= 0) {
    char last;
    if (fstat(fd, &st) == 0) {
      s->log_size = (uint64_t)st.st_size;
      if (st.st_size > 0 && pread(fd, &last, 1, st.st_size - 1) == 1) s->log_at_bol = last == '\n';
    }
    close(fd);
  }
  return 0;
}

/* Descriptors kept back from the services' readers, for what must always work: the
 * control socket's clients, the store, log files, checks. */
#define FD_RESERVE 256

int logpipe_attach(struct service *s) {
  if (s->reader) return 0;
  /* Read at every start, not once: the limit may be lowered while herd runs (prlimit). */
  struct rlimit rl;
  rlim_t limit = getrlimit(RLIMIT_NOFILE, &rl) == 0 && rl.rlim_cur != RLIM_INFINITY ? rl.rlim_cur : (1u << 20);
  /* Read-write: we are a writer too, so the reader never sees EOF between writers. Descriptors
   * are handed out lowest first: one this high means the reserve is all that is left. The
   * cached log files go first (a cache); if that is not enough the start waits (the caller
   * puts it off) and the daemon keeps answering. */
  int fd = -1;
  for (int try = 0; try < 2; try++) {
    fd = open(s->fifo_path, O_RDWR | O_NONBLOCK | O_CLOEXEC);
    if (fd >= 0 && (rlim_t)fd + FD_RESERVE < limit) break;
    int e = fd < 0 ? errno : EMFILE;
    if (fd >= 0) close(fd);
    fd = -1;
    if (e != EMFILE && e != ENFILE) return uv_translate_sys_error(e);
    if (try == 0)
      while (!list_empty(&s->d->logfds)) log_fd_close(container_of(s->d->logfds.next, struct service, logfd_link));
  }
  if (fd < 0) return UV_EMFILE;
  fcntl(fd, F_SETPIPE_SZ, FIFO_SIZE); /* best effort: fewer blocked writers while herd is down */
  struct logreader *r = xcalloc(1, sizeof *r);
  r->s = s;
  uv_pipe_init(s->d->loop, &r->pipe, 0);
  s->reader = r;
  service_ref(s);
  int rc = uv_pipe_open(&r->pipe, fd);
  if (rc < 0) {
    close(fd); /* not taken by the handle */
    logpipe_detach(s);
  }
  return rc;
}

int logpipe_read(struct service *s) {
  struct logreader *r = s->reader;
  if (!r || r->reading) return r ? 0 : UV_EBADF;
  int rc = uv_read_start((uv_stream_t *)&r->pipe, loop_alloc, on_read);
  r->reading = rc == 0;
  return rc;
}

static void on_reader_close(uv_handle_t *h) {
  struct logreader *r = container_of((uv_pipe_t *)h, struct logreader, pipe);
  struct service *s = r->s;
  free(r);
  service_unref(s);
}

void logpipe_detach(struct service *s) {
  struct logreader *r = s->reader;
  if (!r) return;
  logpipe_drain(s);
  s->reader = NULL;
  uv_close((uv_handle_t *)&r->pipe, on_reader_close);
}

void logpipe_close(struct service *s) {
  logpipe_detach(s);
  log_fd_close(s);
}
