/*
 * The control request path: llhttp framing and limits (ctl.c), routing and every handler
 * with its query and JSON body (api.c, cfg.c for added specs), through the real dispatch.
 * Each input gets a fresh daemon with an empty in-memory store whose services run on a backend
 * that starts nothing (a start is never answered), and one probe connection (ctl.h): no
 * socket, the replies go to a buffer, the loop only runs to close what the input left.
 *
 * Input: one byte of flags (bit 0: the peer may only read, bit 1: it does not shut down
 * its side at the end, bits 2-7: where to cut the bytes in two reads), then the bytes the
 * peer sends.
 */
#include "herd/ctl.h"
#include "herd/daemon.h"
#include "herd/log.h"
#include "herd/run.h"
#include "herd/store.h"

#include <dirent.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

/* ---- a backend that starts nothing ---- */

static void q_attach(struct service *s) {}
static void q_detach(struct service *s) {}
static int q_start(struct service *s, char *err, size_t len) { return 0; /* never answered */ }
static void q_signal(struct service *s, int sig) {}
static void q_resume(struct service *s, const struct store_instance *last, struct run_resume *out) {}
static void q_release(struct service *s) {}
static bool q_busy(struct service *s) { return false; }

static const struct backend_ops quiet = {
    .name = "quiet",
    .attach = q_attach,
    .detach = q_detach,
    .start = q_start,
    .signal = q_signal,
    .resume = q_resume,
    .release = q_release,
    .busy = q_busy,
};

static uv_loop_t loop;
static char *state_dir, *log_dir, *run_dir;
static struct store *store; /* emptied after each input: opening one cost 70% of a run */

static void empty_dir(const char *path);

static void remove_state_dir(void) {
  empty_dir(log_dir);
  empty_dir(run_dir);
  rmdir(log_dir);
  rmdir(run_dir);
  rmdir(state_dir);
}

int LLVMFuzzerInitialize(int *argc, char ***argv) {
  log_setup(LOG_LEVEL_MAX, LOG_TEXT);
  run_backend_only(&quiet);
  uv_loop_init(&loop);
  char tmpl[] = "/tmp/herd-fuzz-ctl.XXXXXX";
  if (!mkdtemp(tmpl)) abort();
  state_dir = xstrdup(tmpl);
  log_dir = xasprintf("%s/logs", tmpl);
  run_dir = xasprintf("%s/run", tmpl);
  mkdir(log_dir, 0700);
  mkdir(run_dir, 0700);
  atexit(remove_state_dir);
  char *err = NULL;
  if (store_open(":memory:", &store, &err) < 0) {
    fprintf(stderr, "store: %s\n", err ? err : "?");
    abort();
  }
  return 0;
}

static void empty_dir(const char *path) {
  DIR *dir = opendir(path);
  struct dirent *e;
  while (dir && (e = readdir(dir))) {
    if (e->d_name[0] == '.') continue;
    char *p = xasprintf("%s/%s", path, e->d_name);
    unlink(p);
    free(p);
  }
  if (dir) closedir(dir);
}

static struct daemon *daemon_new(void) {
  struct daemon *d = xcalloc(1, sizeof *d);
  d->loop = &loop;
  d->state_dir = state_dir;
  d->log_dir = log_dir;
  d->run_dir = run_dir;
  d->socket_path = "/nonexistent/herd.sock";
  list_init(&d->services);
  list_init(&d->dying);
  list_init(&d->watches);
  list_init(&d->clusters);
  list_init(&d->hosts);
  list_init(&d->runq);
  list_init(&d->logfds);
  list_init(&d->polled);
  list_init(&d->delayed);
  d->seed = 1;
  d->start_mono = now_mono();
  d->start_wall = now_wall();
  uv_timer_init(&loop, &d->delay_timer);
  d->store = store;
  d->ctl = ctl_probe_open(d, api_dispatch, d);
  return d;
}

/* As the daemon's own teardown does: connections, then services, then the loop's leftovers. */
static void daemon_free(struct daemon *d) {
  ctl_close(d->ctl);
  d->ctl = NULL;
  struct list *pos, *tmp;
  list_for_each_safe(pos, tmp, &d->watches) list_del(pos);
  list_for_each_safe(pos, tmp, &d->services) {
    struct service *s = container_of(pos, struct service, link);
    daemon_cancel_stop_later(d, s); /* stop --delay: one entry per service at most */
    list_del(&s->link);
    list_add_tail(&d->dying, &s->link);
    service_close_handles(s);
  }
  d->nservices = 0;
  uv_close((uv_handle_t *)&d->delay_timer, NULL);
  /* Only closes are left: a handle still active would make this wait (the harness's fault). */
  uv_run(&loop, UV_RUN_NOWAIT);
  service_check_idle(d);
  if (!list_empty(&d->dying) || uv_loop_alive(&loop)) {
    fprintf(stderr, "fuzz_ctl: something is left on the loop after the teardown\n");
    abort();
  }
  store_reset(d->store);
  free(d->htab);
  free(d);
  empty_dir(log_dir);
  empty_dir(run_dir);
}

struct sent {
  size_t n;
  bool head_ok, internal;
};

static void on_out(void *arg, const char *data, size_t n) {
  struct sent *o = arg;
  if (o->n == 0) o->head_ok = n >= 9 && !memcmp(data, "HTTP/1.1 ", 9);
  o->n += n;
  /* conn_reply's answer to a reply it could not encode (a json_pack that failed): a bug. */
  if (memmem(data, n, "\"code\":\"internal\"", 17)) o->internal = true;
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size) {
  if (size < 1) return 0;
  uint8_t flags = data[0];
  const char *in = (const char *)data + 1;
  size_t n = size - 1;
  struct daemon *d = daemon_new();
  struct sent out = {0};
  struct conn *c = ctl_probe_conn(d->ctl, getuid(), !(flags & 1), true, on_out, &out);
  size_t cut = n ? (size_t)(flags >> 2) * n / 64 : 0;
  if (cut) ctl_probe_read(c, in, cut);
  if (n > cut) ctl_probe_read(c, in + cut, n - cut);
  if (!(flags & 2)) ctl_probe_read(c, NULL, 0);
  if (out.n && !out.head_ok) abort(); /* whatever it answers is HTTP */
  if (out.internal) abort();
  daemon_free(d);
  return 0;
}
