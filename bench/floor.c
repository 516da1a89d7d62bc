/*
 * The kernel's floor for the core bench: what starting and stopping N copies of the
 * services' command costs on this machine with no supervisor at all.
 *
 *   bench_floor N THREADS PROGRAM [ARG...]
 *
 * THREADS threads each posix_spawn their share of the N (a new process group each, as a
 * supervisor gives them; glibc's posix_spawn returns once the child has exec'd), then
 * every child gets SIGTERM and is reaped. Prints one line:
 *
 *   spawn_s=S stop_s=T
 *
 * spawn_s: from the first spawn to the last one exec'd; stop_s: from the first SIGTERM to
 * the last child reaped. No supervisor can start or stop N such processes faster here;
 * bench.py prints both beside the supervisors' figures.
 */
#include <errno.h>
#include <pthread.h>
#include <signal.h>
#include <spawn.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/wait.h>
#include <time.h>

extern char **environ;

static char **prog;
static pid_t *pids;
static int n, nthreads;

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
    int rc = posix_spawnp(&pids[i], prog[0], NULL, &at, prog, environ);
    if (rc) {
      fprintf(stderr, "bench_floor: posix_spawn %s: %s\n", prog[0], strerror(rc));
      pids[i] = 0;
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
  for (int i = 0; i < n; i++)
    if (pids[i] > 0)
      while (waitpid(pids[i], NULL, 0) < 0 && errno == EINTR) {
      }
  double t2 = now();
  printf("spawn_s=%.3f stop_s=%.3f failed=%d\n", t1 - t0, t2 - t1, failed);
  free(th);
  free(pids);
  return failed ? 1 : 0;
}
