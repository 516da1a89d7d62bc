/* The daemon's heartbeat: loop lag, the liveness file, systemd's STATUS= and watchdog (heartbeat.h). */
#include "herd/heartbeat.h"

#include "herd/daemon.h"
#include "herd/log.h"

#include <errno.h>
#include <fcntl.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

static int liveness_touch(const char *path) {
  /* utimensat with NULL: both times now, without writing the file (a probe reads its mtime). */
  if (utimensat(AT_FDCWD, path, NULL, 0) == 0) return 0;
  if (errno != ENOENT) return -errno;
  int fd = open(path, O_WRONLY | O_CREAT | O_CLOEXEC | O_NOCTTY, 0644); /* removed meanwhile: again */
  if (fd < 0) return -errno;
  close(fd);
  return 0;
}

void heartbeat_status_text(struct daemon *d, char *buf, size_t len) {
  size_t counts[S__MAX] = {0}, n = 0;
  struct list *pos, *tmp;
  list_for_each_safe(pos, tmp, &d->services) {
    counts[container_of(pos, struct service, link)->fsm.state]++;
    n++;
  }
  int k = snprintf(buf, len, "%zu service%s", n, n == 1 ? "" : "s");
  const char *sep = ": ";
  for (int i = 0; i < S__MAX && k > 0 && (size_t)k < len; i++) {
    if (!counts[i]) continue;
    char lower[16];
    const char *name = svc_state_name(i);
    size_t j = 0;
    for (; name[j] && j < sizeof lower - 1; j++) lower[j] = (char)(name[j] | 0x20); /* A-Z only */
    lower[j] = '\0';
    k += snprintf(buf + k, len - (size_t)k, "%s%zu %s", sep, counts[i], lower);
    sep = ", ";
  }
}

static void send_status(struct daemon *d, bool ready) {
  struct heartbeat *hb = &d->hb;
  if (!sdnotify_on(&hb->notify)) return;
  char st[sizeof hb->status];
  heartbeat_status_text(d, st, sizeof st);
  if (!ready && !strcmp(st, hb->status)) return; /* rate: at most one a tick, only on a change */
  char msg[sizeof st + 32];
  snprintf(msg, sizeof msg, "%sSTATUS=%s", ready ? "READY=1\n" : "", st);
  int rc = sdnotify_send(&hb->notify, msg);
  if (rc < 0)
    log_warn("sd_notify %s: %s", ready ? "READY=1" : "STATUS", strerror(-rc));
  else
    memcpy(hb->status, st, sizeof st);
}

static void on_tick(uv_timer_t *t) {
  struct daemon *d = t->data;
  struct heartbeat *hb = &d->hb;
  uint64_t now = uv_hrtime();
  if (hb->last_ns) {
    /* Due HB_INTERVAL after the previous tick: anything later is time the loop was busy. */
    double late = ((double)(now - hb->last_ns) - HB_INTERVAL * 1e9) / 1e9;
    if (late < 0) late = 0;
    static const double bounds[HB_LAG_NB] = HB_LAG_BOUNDS;
    size_t i = 0;
    while (i < HB_LAG_NB && late > bounds[i]) i++;
    if (i < HB_LAG_NB) hb->lag[i]++;
    hb->lag_sum += late;
    if (late > hb->lag_max) hb->lag_max = late;
    if (late > HB_STALLED) {
      hb->stall = late;
      hb->stall_at = now_mono();
      log_warn("the loop stood still for %.1fs (a heartbeat tick came that late)", late);
    }
    hb->ticks++;
  }
  hb->last_ns = now;
  hb->last_tick = now_mono();
  if (hb->liveness) {
    int rc = liveness_touch(hb->liveness);
    if (rc < 0 && hb->liveness_errno != -rc)
      log_error("liveness file %s: %s (a probe that reads it will fail)", hb->liveness, strerror(-rc));
    else if (rc == 0 && hb->liveness_errno)
      log_info("liveness file %s: touched again", hb->liveness);
    hb->liveness_errno = -rc;
  }
  if (!d->shutting_down) send_status(d, false);
}

static void on_watchdog(uv_timer_t *t) {
  struct daemon *d = t->data;
  int rc = sdnotify_send(&d->hb.notify, "WATCHDOG=1");
  if (rc < 0)
    log_warn("sd_notify WATCHDOG=1: %s", strerror(-rc));
  else
    d->hb.watchdogs++;
}

void heartbeat_take_env(struct daemon *d) {
  struct heartbeat *hb = &d->hb;
  const char *ns = getenv("NOTIFY_SOCKET");
  hb->notify_path = ns && *ns ? xstrdup(ns) : NULL;
  const char *wu = getenv("WATCHDOG_USEC"), *wp = getenv("WATCHDOG_PID");
  if (hb->notify_path && wu && *wu) {
    char *end;
    errno = 0;
    unsigned long long usec = strtoull(wu, &end, 10);
    bool ours = !wp || !*wp || strtol(wp, NULL, 10) == (long)getpid(); /* set for another process: not ours */
    if (errno || *end || usec == 0)
      log_warn("WATCHDOG_USEC=%s is not a number of microseconds; no watchdog", wu);
    else if (ours) {
      hb->wd_on = true;
      hb->wd_interval = (double)usec / 2e6;
    }
  }
  /* Ours alone: a service herd starts must not take herd's manager for its own. Before any
   * thread runs: the environment is not changed again (proc.c borrows its strings). */
  unsetenv("NOTIFY_SOCKET");
  unsetenv("WATCHDOG_USEC");
  unsetenv("WATCHDOG_PID");
}

int heartbeat_init(struct daemon *d, const char *liveness_file, char **err) {
  struct heartbeat *hb = &d->hb;
  uv_timer_init(d->loop, &hb->tick);
  uv_timer_init(d->loop, &hb->wd);
  hb->tick.data = hb->wd.data = d;
  hb->last_tick = now_mono();
  int rc = sdnotify_open(&hb->notify, hb->notify_path);
  if (rc < 0) {
    log_warn("NOTIFY_SOCKET=%s: %s; not telling the service manager anything", hb->notify_path, strerror(-rc));
    hb->wd_on = false;
  }
  if (liveness_file) {
    hb->liveness = xstrdup(liveness_file);
    int lrc = liveness_touch(hb->liveness);
    if (lrc < 0) {
      *err = xasprintf("--liveness-file %s: %s", liveness_file, strerror(-lrc));
      return -1;
    }
  }
  return 0;
}

void heartbeat_ready(struct daemon *d) {
  struct heartbeat *hb = &d->hb;
  uint64_t ms = (uint64_t)(HB_INTERVAL * 1000);
  uv_timer_start(&hb->tick, on_tick, ms, ms);
  hb->last_tick = now_mono();
  send_status(d, true);
  if (hb->wd_on) {
    uint64_t wms = (uint64_t)(hb->wd_interval * 1000);
    if (wms < 1) wms = 1;
    on_watchdog(&hb->wd); /* the first at once: READY=1 may come long after the exec */
    uv_timer_start(&hb->wd, on_watchdog, wms, wms);
    log_info("systemd watchdog: WATCHDOG=1 every %.3gs", hb->wd_interval);
  }
}

void heartbeat_stopping(struct daemon *d, const char *status) {
  if (!sdnotify_on(&d->hb.notify)) return;
  char msg[300];
  snprintf(msg, sizeof msg, "STOPPING=1\nSTATUS=%s", status);
  int rc = sdnotify_send(&d->hb.notify, msg);
  if (rc < 0) log_warn("sd_notify STOPPING=1: %s", strerror(-rc));
}

static void on_close_noop(uv_handle_t *h) {}

void heartbeat_close(struct daemon *d) {
  struct heartbeat *hb = &d->hb;
  uv_close((uv_handle_t *)&hb->tick, on_close_noop);
  uv_close((uv_handle_t *)&hb->wd, on_close_noop);
  sdnotify_close(&hb->notify);
  free(hb->liveness);
  hb->liveness = NULL;
  free(hb->notify_path);
  hb->notify_path = NULL;
}
