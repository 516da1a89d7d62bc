/* Finding herd's processes by the identity they carry from birth (see ident.h). */
#include "herd/ident.h"

#include <dirent.h>
#include <errno.h>
#include <fcntl.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

char *ident_env(const char *herd_id, int64_t instance) {
  return xasprintf(IDENT_ENV "=%s:%lld", herd_id, (long long)instance);
}

/* Read a /proc file into *buf (grown as needed, kept across calls). Returns its length or -1. */
static ssize_t read_all(const char *path, char **buf, size_t *cap) {
  int fd = open(path, O_RDONLY | O_CLOEXEC);
  if (fd < 0) return -1;
  size_t len = 0;
  for (;;) {
    if (len + 4096 > *cap) {
      *cap = *cap ? *cap * 2 : 65536;
      *buf = xrealloc(*buf, *cap);
    }
    ssize_t n = read(fd, *buf + len, *cap - len - 1);
    if (n < 0 && errno == EINTR) continue;
    if (n <= 0) break;
    len += (size_t)n;
    if (len > (16u << 20)) break; /* no environment is that large: enough */
  }
  close(fd);
  (*buf)[len] = '\0';
  return (ssize_t)len;
}

/* State, session and start time from /proc/PID/stat (fields 3, 6, 22). */
static char stat_of(int pid, int *sid, uint64_t *starttime, char **buf, size_t *cap) {
  char path[64];
  snprintf(path, sizeof path, "/proc/%d/stat", pid);
  if (read_all(path, buf, cap) <= 0) return 0;
  char *p = strrchr(*buf, ')');
  if (!p || p[1] != ' ') return 0;
  char state = p[2];
  p += 2;
  for (int field = 3; p && field <= 22; field++) {
    if (field == 6) *sid = atoi(p);
    if (field == 22) *starttime = strtoull(p, NULL, 10);
    p = strchr(p, ' ');
    if (p) p++;
  }
  return state;
}

static int by_instance(const void *a, const void *b) {
  const struct ident_proc *x = a, *y = b;
  if (x->instance != y->instance) return x->instance < y->instance ? -1 : 1;
  return (x->pid > y->pid) - (x->pid < y->pid);
}

void ident_scan(const char *herd_id, struct ident_scan *out) {
  memset(out, 0, sizeof *out);
  DIR *dir = opendir("/proc");
  if (!dir) return;
  char *prefix = xasprintf(IDENT_ENV "=%s:", herd_id);
  size_t plen = strlen(prefix), cap = 0, alloc = 0;
  char *buf = NULL;
  int self = getpid();
  struct dirent *e;
  while ((e = readdir(dir))) {
    char *end;
    long pid = strtol(e->d_name, &end, 10);
    if (*end || pid <= 0 || pid == self) continue;
    char path[64];
    snprintf(path, sizeof path, "/proc/%ld/environ", pid);
    ssize_t n = read_all(path, &buf, &cap);
    if (n <= 0) continue; /* kernel threads, other users' processes (not root), gone */
    out->nread++;
    int64_t instance = 0;
    for (char *v = buf; v < buf + n; v += strlen(v) + 1) {
      if (!strncmp(v, prefix, plen)) {
        instance = strtoll(v + plen, NULL, 10);
        break;
      }
    }
    if (instance <= 0) continue;
    struct ident_proc p = {.pid = (int)pid, .instance = instance};
    char st = stat_of((int)pid, &p.sid, &p.starttime, &buf, &cap);
    if (!st || st == 'Z' || st == 'X') continue;
    if (out->n == alloc) {
      alloc = alloc ? alloc * 2 : 64;
      out->v = xrealloc(out->v, alloc * sizeof *out->v);
    }
    out->v[out->n++] = p;
  }
  closedir(dir);
  free(buf);
  free(prefix);
  if (out->n) qsort(out->v, out->n, sizeof *out->v, by_instance);
}

/* The first process of the instance in the (sorted) list, or NULL. */
static struct ident_proc *first_of(struct ident_scan *sc, int64_t instance) {
  size_t lo = 0, hi = sc->n;
  while (lo < hi) {
    size_t mid = lo + (hi - lo) / 2;
    if (sc->v[mid].instance < instance)
      lo = mid + 1;
    else
      hi = mid;
  }
  return lo < sc->n && sc->v[lo].instance == instance ? &sc->v[lo] : NULL;
}

struct ident_proc *ident_leader(struct ident_scan *sc, int64_t instance) {
  /* A child that called setsid leads a session too: the spawned one is the oldest. */
  struct ident_proc *p = first_of(sc, instance), *best = NULL;
  for (; p && p < sc->v + sc->n && p->instance == instance; p++)
    if (p->sid == p->pid && (!best || p->starttime < best->starttime)) best = p;
  return best;
}

size_t ident_claim(struct ident_scan *sc, int64_t instance, void (*fn)(struct ident_proc *p, void *arg), void *arg) {
  size_t n = 0;
  struct ident_proc *p = first_of(sc, instance);
  for (; p && p < sc->v + sc->n && p->instance == instance; p++, n++) {
    p->claimed = true;
    if (fn) fn(p, arg);
  }
  return n;
}

void ident_free(struct ident_scan *sc) {
  free(sc->v);
  memset(sc, 0, sizeof *sc);
}
