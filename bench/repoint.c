/*
 * A fixed local endpoint re-pointed at a new target, measured (bench/tunnels.py runs it):
 * how long new connections to the local port are refused while an OpenSSH ControlMaster
 * moves its forward from one target to another, two ways:
 *
 *   mux  herd's way (src/sshmux.c, the code tunnel.c uses): a cancel and an add sent back
 *        to back on one kept control connection;
 *   ssh  `ssh -O cancel` then `ssh -O forward`, one process each.
 *
 * A prober thread connects to the local port in a tight loop from just before each re-point
 * until it is reachable once the re-point is done; the refused window is the time from its
 * first refused connect to its first connect that succeeded after the last refused one. A connection made before the
 * first re-point must still answer after the last one (it drains on its old path).
 *
 *   bench_repoint SOCK LPORT PORT_A PORT_B ROUNDS mux|ssh [ssh options...]
 */
#include "herd/sshmux.h"

#include <arpa/inet.h>
#include <signal.h>
#include <errno.h>
#include <netinet/in.h>
#include <pthread.h>
#include <sched.h>
#include <spawn.h>
#include <stdatomic.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <sys/wait.h>
#include <time.h>
#include <unistd.h>

extern char **environ;

static double now(void) {
  struct timespec ts;
  clock_gettime(CLOCK_MONOTONIC, &ts);
  return (double)ts.tv_sec + (double)ts.tv_nsec / 1e9;
}

static int lport;
static atomic_bool done, probing;
static double first_refused, back_at;
static long probes, refused, other;

static int probe(void) {
  struct sockaddr_in sa = {.sin_family = AF_INET, .sin_port = htons((uint16_t)lport)};
  sa.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
  int fd = socket(AF_INET, SOCK_STREAM, 0);
  int ok = connect(fd, (struct sockaddr *)&sa, sizeof sa) == 0;
  int e = errno;
  struct linger lg = {1, 0}; /* closed with a reset: no TIME_WAIT piling up over the probes */
  setsockopt(fd, SOL_SOCKET, SO_LINGER, &lg, sizeof lg);
  close(fd);
  return ok ? 0 : e;
}

/* From just before a re-point until the port is reachable once it is done (or 5 s). */
static void *prober(void *arg) {
  (void)arg;
  double t0 = now();
  while (now() - t0 < 5) {
    double t = now();
    int e = probe();
    probes++;
    if (!e) atomic_store(&probing, true);
    if (e == ECONNREFUSED) {
      if (!refused++) first_refused = t;
      back_at = 0;
    } else if (!e) {
      if (refused && !back_at) back_at = now();
      if (atomic_load(&done)) break;
    } else {
      other++;
    }
    struct timespec pause = {0, 100000}; /* 0.1 ms between probes */
    nanosleep(&pause, NULL);
  }
  return NULL;
}

/* ---- mux ---- */

static int answered, failed_answers;
static uv_loop_t loop;

static void on_answer(void *arg, int status, uint32_t value, const char *msg) {
  (void)value;
  answered++;
  if (status) {
    failed_answers++;
    fprintf(stderr, "repoint: %s refused: %d %s\n", (const char *)arg, status, msg);
  }
}

static void on_dead(void *arg, const char *why) {
  (void)arg;
  fprintf(stderr, "repoint: control connection lost: %s\n", why);
  exit(1);
}

/* ---- ssh -O ---- */

static char **ssh_opts;
static int nssh_opts;
static const char *sock;

static int ssh_o(const char *op, int from_port) {
  char spec[96];
  snprintf(spec, sizeof spec, "127.0.0.1:%d:127.0.0.1:%d", lport, from_port);
  char *av[64];
  int n = 0;
  av[n++] = "ssh";
  av[n++] = "-S";
  av[n++] = (char *)sock;
  for (int i = 0; i < nssh_opts && n < 56; i++) av[n++] = ssh_opts[i];
  av[n++] = "-O";
  av[n++] = (char *)op;
  av[n++] = "-L";
  av[n++] = spec;
  av[n++] = "root@127.0.0.1";
  av[n] = NULL;
  pid_t pid;
  if (posix_spawnp(&pid, "ssh", NULL, NULL, av, environ)) return -1;
  int st;
  waitpid(pid, &st, 0);
  return WIFEXITED(st) ? WEXITSTATUS(st) : -1;
}

static int cmp(const void *a, const void *b) {
  double x = *(const double *)a, y = *(const double *)b;
  return x < y ? -1 : x > y;
}

int main(int argc, char **argv) {
  if (argc < 7) {
    fprintf(stderr, "usage: bench_repoint SOCK LPORT PORT_A PORT_B ROUNDS mux|ssh [ssh options...]\n");
    return 2;
  }
  sock = argv[1];
  lport = atoi(argv[2]);
  int ports[2] = {atoi(argv[3]), atoi(argv[4])}, rounds = atoi(argv[5]);
  bool mux = !strcmp(argv[6], "mux");
  ssh_opts = argv + 7;
  nssh_opts = argc - 7;
  signal(SIGPIPE, SIG_IGN);
  uv_loop_init(&loop);
  struct sshmux *m = mux ? sshmux_open(&loop, sock, on_dead, NULL) : NULL;

  /* a connection made before: it must still answer after every re-point */
  struct sockaddr_in sa = {.sin_family = AF_INET, .sin_port = htons((uint16_t)lport)};
  sa.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
  int kept = socket(AF_INET, SOCK_STREAM, 0);
  char buf[16];
  if (connect(kept, (struct sockaddr *)&sa, sizeof sa) || write(kept, "ping\n", 5) != 5 ||
      read(kept, buf, sizeof buf) != 5) {
    fprintf(stderr, "repoint: the endpoint does not answer before the first re-point\n");
    return 1;
  }

  double *span = calloc((size_t)rounds, sizeof *span), *req = calloc((size_t)rounds, sizeof *req);
  long total_refused = 0, total_probes = 0, rounds_refused = 0;
  for (int r = 0; r < rounds; r++) {
    int from = ports[r % 2], to = ports[(r + 1) % 2];
    atomic_store(&done, false);
    refused = probes = 0;
    back_at = 0;
    pthread_t th;
    atomic_store(&probing, false);
    pthread_create(&th, NULL, prober, NULL);
    while (!atomic_load(&probing)) sched_yield(); /* the prober is at work (and the port answers) */
    double t0 = now();
    if (mux) {
      answered = 0;
      sshmux_forward(m, false, "127.0.0.1", lport, "127.0.0.1", from, on_answer, "cancel");
      sshmux_forward(m, true, "127.0.0.1", lport, "127.0.0.1", to, on_answer, "forward");
      while (answered < 2) uv_run(&loop, UV_RUN_ONCE);
    } else if (ssh_o("cancel", from) || ssh_o("forward", to)) {
      fprintf(stderr, "repoint: ssh -O failed in round %d\n", r);
      return 1;
    }
    req[r] = now() - t0;
    atomic_store(&done, true);
    pthread_join(th, NULL);
    span[r] = refused ? back_at - first_refused : 0;
    total_refused += refused;
    total_probes += probes;
    rounds_refused += refused > 0;
    if (getenv("REPOINT_DEBUG"))
      fprintf(stderr, "round %d: probes %ld refused %ld other %ld req %.3f ms\n", r, probes, refused, other,
              1e3 * req[r]);
    usleep(20000); /* (a bench, not a test: let the master settle between rounds) */
  }
  bool still = write(kept, "ping\n", 5) == 5 && read(kept, buf, sizeof buf) == 5 && !memcmp(buf, "pong\n", 5);
  close(kept);
  qsort(span, (size_t)rounds, sizeof *span, cmp);
  qsort(req, (size_t)rounds, sizeof *req, cmp);
  printf("%s rounds %d refused_rounds %ld refused %ld probes %ld span_p50_ms %.3f span_max_ms %.3f "
         "request_p50_ms %.3f request_max_ms %.3f kept %s failures %d\n",
         mux ? "mux" : "ssh", rounds, rounds_refused, total_refused, total_probes, 1e3 * span[rounds / 2],
         1e3 * span[rounds - 1], 1e3 * req[rounds / 2], 1e3 * req[rounds - 1], still ? "yes" : "no", failed_answers);
  if (m) sshmux_close(m);
  uv_run(&loop, UV_RUN_DEFAULT);
  uv_loop_close(&loop);
  free(span);
  free(req);
  return 0;
}
