/* A batch job's output, here or through an ssh host (see joblog.h). */
#include "herd/joblog.h"

#include "herd/log.h"
#include "herd/loop.h"
#include "herd/sshx.h"
#include "herd/tunnel.h"

#include <errno.h>
#include <fcntl.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#define FOLLOW_EVERY 1.0        /* seconds between looks for appended output */
#define CHUNK_MAX (1024 * 1024) /* bytes read per look */

struct joblog {
  struct daemon *d;
  struct conn *c; /* NULL once the client has gone */
  char *path, *host;
  long lines;
  bool follow, remote, started; /* started: the first part was sent */
  int64_t off;                  /* following: the bytes of the file sent so far */
  uv_work_t w;
  bool working;
  struct sshx_req *sx;
  uv_timer_t timer;
  bool timer_open;
  /* a local read's result */
  char *data;
  size_t len;
  int err;
  int64_t size;
};

static void next_read(struct joblog *j);

static void on_timer_close(uv_handle_t *h);

/* Free once nothing is in flight and the client is gone. */
static void maybe_free(struct joblog *j) {
  if (j->c || j->working || j->sx) return;
  if (j->timer_open) {
    j->timer_open = false;
    uv_close((uv_handle_t *)&j->timer, on_timer_close);
    return;
  }
  free(j->path);
  free(j->host);
  free(j->data);
  free(j);
}

static void on_timer_close(uv_handle_t *h) { maybe_free(container_of((uv_timer_t *)h, struct joblog, timer)); }

static void on_gone(struct conn *c, void *arg) {
  (void)c;
  struct joblog *j = arg;
  j->c = NULL;
  if (j->sx) sshx_cancel(j->sx);
  if (j->timer_open) uv_timer_stop(&j->timer);
  maybe_free(j);
}

static void on_tick(uv_timer_t *t) { next_read(container_of(t, struct joblog, timer)); }

static void schedule(struct joblog *j) {
  if (!j->timer_open) {
    uv_timer_init(j->d->loop, &j->timer);
    j->timer_open = true;
  }
  uv_timer_start(&j->timer, on_tick, (uint64_t)(FOLLOW_EVERY * 1000), 0);
}

/* What was read: the first part answers (or starts the stream), the next ones continue it. */
static void deliver(struct joblog *j, const char *data, size_t len) {
  if (!j->c) return;
  if (!j->follow) {
    conn_reply_raw(j->c, 200, "text/plain; charset=utf-8", data ? data : "", len);
    j->c = NULL;
    return;
  }
  if (!j->started) {
    conn_stream_begin(j->c, 200, "text/plain; charset=utf-8");
    j->started = true;
  }
  if (len && conn_stream_write(j->c, data, len) < 0) return; /* gone: on_gone follows */
  if (!conn_closing(j->c)) schedule(j);
}

static void fail(struct joblog *j, int status, const char *code, const char *msg) {
  if (!j->c) return;
  if (j->started) { /* following: a look that failed is tried again */
    schedule(j);
    return;
  }
  conn_error(j->c, status, code, NULL, "%s", msg);
  j->c = NULL;
}

/* ---- over the ssh host ---- */

static void on_remote(void *arg, const struct sshx_result *res) {
  struct joblog *j = arg;
  j->sx = NULL;
  if (!j->c) {
    maybe_free(j);
    return;
  }
  char msg[600];
  if (!res->ran) {
    snprintf(msg, sizeof msg, "the job's output %s cannot be read here, nor through ssh host %s: %s", j->path, j->host,
             res->error ? res->error : "session lost");
    fail(j, 503, "job_output_unreachable", msg);
  } else if (res->status != 0) {
    size_t l = res->errlen;
    while (l && (res->err[l - 1] == '\n' || res->err[l - 1] == '\r')) l--;
    snprintf(msg, sizeof msg, "the job's output %s cannot be read on ssh host %s: %.*s", j->path, j->host,
             (int)(l > 300 ? 300 : l), res->err);
    fail(j, 404, "job_output_unreadable", msg);
  } else if (j->follow && !j->started) {
    /* "SIZE\n" then the tail of the file's first SIZE bytes: following goes on from SIZE */
    const char *nl = memchr(res->out, '\n', res->outlen);
    j->off = nl ? strtoll(res->out, NULL, 10) : 0;
    size_t skip = nl ? (size_t)(nl - res->out) + 1 : res->outlen;
    deliver(j, res->out + skip, res->outlen - skip);
  } else {
    j->off += (int64_t)res->outlen;
    deliver(j, res->out, res->outlen);
  }
  maybe_free(j);
}

static void remote_read(struct joblog *j) {
  const struct host_spec *h = tunnel_host_spec(j->d, j->host);
  struct buf cmd = {0};
  if (j->follow && j->started) {
    buf_printf(&cmd, "tail -c +%lld ", (long long)j->off + 1);
    buf_shquote(&cmd, j->path);
    buf_printf(&cmd, " | head -c %d", CHUNK_MAX);
  } else if (j->follow) {
    buf_lit(&cmd, "F=");
    buf_shquote(&cmd, j->path);
    buf_printf(&cmd, "; S=$(stat -c %%s \"$F\") && echo \"$S\" && head -c \"$S\" \"$F\" | tail -n %ld", j->lines);
  } else if (j->lines < 0) {
    buf_lit(&cmd, "cat ");
    buf_shquote(&cmd, j->path);
  } else {
    buf_printf(&cmd, "tail -n %ld ", j->lines);
    buf_shquote(&cmd, j->path);
  }
  buf_append(&cmd, "", 1);
  j->sx = h ? sshx_exec(j->d, h, cmd.data, NULL, 0, on_remote, j) : NULL;
  buf_free(&cmd);
  if (!j->sx) {
    char msg[300];
    snprintf(msg, sizeof msg, "no ssh host %s to read the job's output through", j->host);
    fail(j, 503, "job_output_unreachable", msg);
  }
}

/* ---- here, on the thread pool ---- */

static void local_work(uv_work_t *w) {
  struct joblog *j = container_of(w, struct joblog, w);
  errno = 0;
  j->err = 0;
  if (!j->started) {
    if (access(j->path, R_OK) < 0) {
      j->err = errno;
      return;
    }
    j->data = j->lines ? file_tail(j->path, j->lines, &j->size, &j->len) : NULL;
    if (!j->data && j->lines && errno) j->err = errno;
    if (!j->data) j->len = 0;
    return;
  }
  int fd = open(j->path, O_RDONLY | O_CLOEXEC);
  if (fd < 0) {
    j->err = errno;
    return;
  }
  j->data = xmalloc(CHUNK_MAX);
  ssize_t n = pread(fd, j->data, CHUNK_MAX, (off_t)j->off);
  j->len = n > 0 ? (size_t)n : 0;
  close(fd);
}

static void local_done(uv_work_t *w, int status) {
  (void)status;
  struct joblog *j = container_of(w, struct joblog, w);
  j->working = false;
  char *data = j->data;
  size_t len = j->len;
  j->data = NULL;
  if (j->c && j->err && !j->started && j->host) {
    j->remote = true; /* not on a filesystem this host shares: through the ssh host */
    log_msg(LOG_DEBUG, NULL, NULL, NULL, "job output %s: %s here: reading it through ssh host %s", j->path,
            strerror(j->err), j->host);
    remote_read(j);
  } else if (j->c && j->err) {
    char msg[600];
    snprintf(msg, sizeof msg, "the job's output %s cannot be read here: %s (is it on a filesystem this host shares?)",
             j->path, strerror(j->err));
    fail(j, 404, "job_output_unreadable", msg);
  } else if (j->c) {
    if (!j->started) {
      j->off = j->size;
      if (j->lines == 0) { /* nothing asked of the past: follow from the end */
        struct stat st;
        j->off = stat(j->path, &st) == 0 ? (int64_t)st.st_size : 0;
      }
    } else {
      j->off += (int64_t)len;
    }
    deliver(j, data, len);
  }
  free(data);
  maybe_free(j);
}

static void next_read(struct joblog *j) {
  if (!j->c) return;
  if (j->remote) {
    remote_read(j);
    return;
  }
  j->working = true;
  uv_queue_work(j->d->loop, &j->w, local_work, local_done);
}

void joblog_serve(struct daemon *d, struct conn *c, char *path, const char *host, long lines, bool follow) {
  struct joblog *j = xcalloc(1, sizeof *j);
  j->d = d;
  j->c = c;
  j->path = path;
  j->host = host ? xstrdup(host) : NULL;
  j->lines = lines;
  j->follow = follow;
  conn_park(c, j, on_gone, NULL, 0);
  next_read(j);
}
