/*
 * The kernel's floor for the core bench: what starting and stopping N copies of the
 * services' command costs on this machine with no supervisor at all.
 *
 *   bench_floor N THREADS PROGRAM [ARG...]
 *   FLOOR_CGROUP=DIR bench_floor ...
 *
 * THREADS threads each posix_spawn their share of the N (a new process group each, as a
 * supervisor gives them; glibc's posix_spawn returns once the child has exec'd), then
 * every child gets SIGTERM and is reaped. With FLOOR_CGROUP (a new directory in a cgroup2
 * file system) each child also gets a cgroup of its own, as herd gives each service: made
 * before the spawn, the child moved into it right after, removed once it is reaped (the
 * stop time then includes the N removals). Prints one line:
 *
 *   spawn_s=S stop_s=T
 *
 * spawn_s: from the first spawn to the last one exec'd; stop_s: from the first SIGTERM to
 * the last child reaped. No supervisor can start or stop N such processes faster here;
 * bench.py prints both beside the supervisors' figures.
 */
#include <errno.h>
#include <fcntl.h>
#include <pthread.h>
#include <signal.h>
#include <spawn.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <sys/wait.h>
#include <time.h>
#include <unistd.h>

extern char **environ;

static char **prog;
static pid_t *pids;
static int n, nthreads;
static const char *cgdir; /* FLOOR_CGROUP, or NULL */

static void cg_path(char *buf, size_t len, int i, const char *file) {
  snprintf(buf, len, "%s/c%d%s%s", cgdir, i, file ? "/" : "", file ? file : "");
}

static void cg_join(int i, pid_t pid) {
  char path[4096], num[32];
  cg_path(path, sizeof path, i, "cgroup.procs");
  int fd = open(path, O_WRONLY | O_CLOEXEC);
  int len = snprintf(num, sizeof num, "%d", (int)pid);
  if (fd < 0 || write(fd, num, (size_t)len) != len) fprintf(stderr, "bench_floor: %s: %s\n", path, strerror(errno));
  if (fd >= 0) close(fd);
}

static double now(void) {
  struct timespec t;
  clock_gettime(CLOCK_MONOTONIC, &t);
  return (double)t.tv_sec + (double)t.tv_nsec / 1e9;
}

static void *spawner(void *arg) {
  int k = (int)(long)arg;
  posix_spawnattr_t at;
  posix_spawnattr_init(&at);
  posix_spawnattr_setflags(&at, POSIX_SPAWN_SETPGROUP);
  posix_spawnattr_setpgroup(&at, 0);
  for (int i = k; i < n; i += nthreads) {
    char path[4096];
    if (cgdir) {
      cg_path(path, sizeof path, i, NULL);
      if (mkdir(path, 0755) < 0) fprintf(stderr, "bench_floor: mkdir %s: %s\n", path, strerror(errno));
    }
    int rc = posix_spawnp(&pids[i], prog[0], NULL, &at, prog, environ);
    if (rc) {
      fprintf(stderr, "bench_floor: posix_spawn %s: %s\n", prog[0], strerror(rc));
      pids[i] = 0;
    } else if (cgdir) {
      cg_join(i, pids[i]);
    }
  }
  posix_spawnattr_destroy(&at);
  return NULL;
}

int main(int argc, char **argv) {
  if (argc < 4 || (n = atoi(argv[1])) <= 0 || (nthreads = atoi(argv[2])) <= 0) {
    fprintf(stderr, "usage: bench_floor N THREADS PROGRAM [ARG...]\n");
    return 2;
  }
  prog = argv + 3;
  cgdir = getenv("FLOOR_CGROUP");
  if (cgdir && mkdir(cgdir, 0755) < 0) {
    fprintf(stderr, "bench_floor: mkdir %s: %s\n", cgdir, strerror(errno));
    return 1;
  }
  pids = calloc((size_t)n, sizeof *pids);
  pthread_t *th = calloc((size_t)nthreads, sizeof *th);
  if (!pids || !th) return 1;
  double t0 = now();
  for (int k = 0; k < nthreads; k++) pthread_create(&th[k], NULL, spawner, (void *)(long)k);
  for (int k = 0; k < nthreads; k++) pthread_join(th[k], NULL);
  double t1 = now();
  int failed = 0;
  for (int i = 0; i < n; i++)
    if (pids[i] > 0)
      kill(pids[i], SIGTERM);
    else
      failed++;
  for (int i = 0; i < n; i++) {
    if (pids[i] > 0)
      while (waitpid(pids[i], NULL, 0) < 0 && errno == EINTR) {
      }
    if (cgdir) {
      char path[4096];
      cg_path(path, sizeof path, i, NULL);
      if (rmdir(path) < 0) fprintf(stderr, "bench_floor: rmdir %s: %s\n", path, strerror(errno));
    }
  }
  if (cgdir) rmdir(cgdir);
  double t2 = now();
  printf("spawn_s=%.3f stop_s=%.3f failed=%d\n", t1 - t0, t2 - t1, failed);
  free(th);
  free(pids);
  return failed ? 1 : 0;
}
