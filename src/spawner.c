/*
 * Spawner threads: where local instances are started.
 *
 * posix_spawn blocks its caller until the child has exec'd, and the clone inside it
 * copies the caller's whole descriptor table, only for the child to close it again
 * before exec. On the loop thread that is twice bad at scale: 1,000 services hold three
 * descriptors each, so every spawn copies and closes some 3,000 entries, one spawn after
 * the other, with the loop stuck behind each.
 *
 * So spawns run on a few threads of our own, each with a private descriptor table
 * (unshare(CLONE_FILES)) emptied once at start. A spawn there copies a handful of
 * entries, the threads spawn side by side, and the loop carries on. The children are
 * still the daemon's children (threads share the process), reaped as before. The
 * threads are made before the daemon opens anything of its own (the store, its lock), so
 * no such descriptor ever sits in their tables.
 *
 * Jobs come back to the loop in the order they finished, through an eventfd made before
 * the threads (so it is in their tables too: uv_async_send would write to a descriptor
 * of the daemon's table, which the threads no longer have). Jobs submitted during a loop
 * turn reach the threads together, once, before the loop next waits (a uv_prepare_t): a
 * config of 1,000 services wakes the threads once, not 1,000 times, and a woken thread
 * never preempts the loop in the middle of its turn.
 *
 * When herd runs real-time (prio.c) the threads do too, and a spawn's child execs at a
 * real-time priority just below theirs before the thread sets it back to SCHED_OTHER; the
 * loop runs real-time from the first job handed over until 2 s after the last one is back.
 */
#include "herd/spawner.h"

#include "herd/log.h"
#include "herd/prio.h"

#include <errno.h>
#include <pthread.h>
#include <sched.h>
#include <signal.h>
#include <stdlib.h>
#include <string.h>
#include <sys/eventfd.h>
#include <sys/syscall.h>
#include <unistd.h>

#define SPAWNER_MAX_THREADS 4

struct spawner {
  uv_poll_t poll; /* on efd */
  int efd;
  pthread_mutex_t mu;
  pthread_cond_t cv;
  struct spawner_job *todo, **todo_tail; /* waiting for a thread */
  struct spawner_job *done, **done_tail; /* finished, waiting for the loop */
  bool quit;
  int ready;                               /* threads past their set-up */
  bool private_fds;                        /* every thread got a table of its own */
  bool attached;                           /* the uv handles are initialised */
  int nopen;                               /* of them, not yet closed (spawner_close) */
  uv_prepare_t flush;                      /* hands the loop's batch to the threads, once per loop turn */
  struct spawner_job *batch, **batch_tail; /* submitted this turn (loop only) */
  int nthreads;
  pthread_t threads[SPAWNER_MAX_THREADS];
  size_t inflight;  /* submitted, not yet back on the loop (loop only) */
  uv_timer_t relax; /* the loop leaves real-time SPAWNER_RT_HOLD_MS after the last spawn */
};

/* The programs a burst started initialise right after it, each in an autogroup of its own:
 * a loop back at SCHED_OTHER then gets a thousandth of the CPU and answers nothing for a
 * second or more (measured: 1.4 s after 1,000 starts). So it keeps its priority a while. */
#define SPAWNER_RT_HOLD_MS 2000

static void *thread_main(void *arg) {
  struct spawner *sp = arg;
  prio_thread_start();
  /* Signals are the loop's business. */
  sigset_t all;
  sigfillset(&all);
  pthread_sigmask(SIG_BLOCK, &all, NULL);
  bool own = unshare(CLONE_FILES) == 0;
  if (own) {
    /* Our own table now: what the daemon opens later never enters it. 0-2 stay (a child
     * gets its own 0-2 from the spawn's file actions anyway). */
    if (sp->efd > 3) syscall(SYS_close_range, 3U, (unsigned)sp->efd - 1, 0U);
    syscall(SYS_close_range, (unsigned)sp->efd + 1, ~0U, 0U);
  }
  pthread_mutex_lock(&sp->mu);
  if (!own) sp->private_fds = false;
  sp->ready++;
  pthread_cond_broadcast(&sp->cv);
  for (;;) {
    while (!sp->todo && !sp->quit) pthread_cond_wait(&sp->cv, &sp->mu);
    if (sp->quit) break;
    struct spawner_job *j = sp->todo;
    sp->todo = j->next;
    if (!sp->todo) sp->todo_tail = &sp->todo;
    pthread_mutex_unlock(&sp->mu);
    j->work(j);
    pthread_mutex_lock(&sp->mu);
    j->next = NULL;
    *sp->done_tail = j;
    sp->done_tail = &j->next;
    pthread_mutex_unlock(&sp->mu);
    uint64_t one = 1;
    while (write(sp->efd, &one, sizeof one) < 0 && errno == EINTR) {
    }
    pthread_mutex_lock(&sp->mu);
  }
  pthread_mutex_unlock(&sp->mu);
  return NULL;
}

static void on_relax(uv_timer_t *t) {
  struct spawner *sp = t->data;
  if (sp->inflight == 0) prio_loop_boost(false);
}

/* Hand finished jobs back on the loop. */
static void take_done(struct spawner *sp) {
  uint64_t n;
  while (read(sp->efd, &n, sizeof n) < 0 && errno == EINTR) {
  }
  pthread_mutex_lock(&sp->mu);
  struct spawner_job *j = sp->done;
  sp->done = NULL;
  sp->done_tail = &sp->done;
  pthread_mutex_unlock(&sp->mu);
  while (j) {
    struct spawner_job *next = j->next;
    sp->inflight--;
    j->done(j, false);
    j = next;
  }
  if (sp->inflight == 0) uv_timer_start(&sp->relax, on_relax, SPAWNER_RT_HOLD_MS, 0);
}

struct spawner *spawner_new(void) {
  struct spawner *sp = xcalloc(1, sizeof *sp);
  pthread_mutex_init(&sp->mu, NULL);
  pthread_cond_init(&sp->cv, NULL);
  sp->todo_tail = &sp->todo;
  sp->done_tail = &sp->done;
  sp->batch_tail = &sp->batch;
  sp->private_fds = true;
  sp->efd = eventfd(0, EFD_CLOEXEC | EFD_NONBLOCK);
  if (sp->efd < 0) return sp; /* no threads: spawner_attach says so */
  long ncpu = sysconf(_SC_NPROCESSORS_ONLN);
  int want = ncpu < 2 ? 2 : ncpu > SPAWNER_MAX_THREADS ? SPAWNER_MAX_THREADS : (int)ncpu;
  for (int i = 0; i < want; i++) {
    if (pthread_create(&sp->threads[sp->nthreads], NULL, thread_main, sp) != 0) break;
    sp->nthreads++;
  }
  /* Their tables are copied when they start: wait, so that nothing the daemon opens next
   * (its lock, the store) is ever in them. */
  pthread_mutex_lock(&sp->mu);
  while (sp->ready < sp->nthreads) pthread_cond_wait(&sp->cv, &sp->mu);
  pthread_mutex_unlock(&sp->mu);
  return sp;
}

static void on_poll(uv_poll_t *h, int status, int events) { take_done(h->data); }

int spawner_attach(struct spawner *sp, uv_loop_t *loop) {
  if (sp->nthreads == 0) return UV_EAGAIN;
  sp->poll.data = sp;
  int rc = uv_poll_init(loop, &sp->poll, sp->efd);
  if (rc < 0) return rc;
  sp->attached = true;
  uv_prepare_init(loop, &sp->flush);
  sp->flush.data = sp;
  uv_timer_init(loop, &sp->relax);
  sp->relax.data = sp;
  rc = uv_poll_start(&sp->poll, UV_READABLE, on_poll);
  if (rc == 0 && !sp->private_fds)
    log_warn("spawner threads share the daemon's descriptor table (unshare: not permitted): spawns are slower");
  return rc;
}

static void flush_batch(struct spawner *sp) {
  if (!sp->batch) return;
  pthread_mutex_lock(&sp->mu);
  *sp->todo_tail = sp->batch;
  sp->todo_tail = sp->batch_tail;
  pthread_cond_broadcast(&sp->cv);
  pthread_mutex_unlock(&sp->mu);
  sp->batch = NULL;
  sp->batch_tail = &sp->batch;
}

static void on_flush(uv_prepare_t *h) {
  uv_prepare_stop(h);
  flush_batch(h->data);
}

void spawner_submit(struct spawner *sp, struct spawner_job *j) {
  j->next = NULL;
  if (sp->inflight++ == 0) {
    uv_timer_stop(&sp->relax);
    prio_loop_boost(true); /* until a while after the last spawn is back */
  }
  if (!sp->batch) uv_prepare_start(&sp->flush, on_flush);
  *sp->batch_tail = j;
  sp->batch_tail = &j->next;
}

static void spawner_free(struct spawner *sp) {
  if (sp->efd >= 0) close(sp->efd);
  pthread_mutex_destroy(&sp->mu);
  pthread_cond_destroy(&sp->cv);
  free(sp);
}

/* Freed with the last of its three handles (libuv does not promise their order). */
static void on_handle_close(uv_handle_t *h) {
  struct spawner *sp = h->data;
  if (--sp->nopen == 0) spawner_free(sp);
}

void spawner_close(struct spawner *sp) {
  if (!sp) return;
  /* Jobs no thread has taken yet are cancelled; the ones running finish first. */
  flush_batch(sp);
  pthread_mutex_lock(&sp->mu);
  sp->quit = true;
  struct spawner_job *cancelled = sp->todo;
  sp->todo = NULL;
  sp->todo_tail = &sp->todo;
  pthread_cond_broadcast(&sp->cv);
  pthread_mutex_unlock(&sp->mu);
  for (int i = 0; i < sp->nthreads; i++) pthread_join(sp->threads[i], NULL);
  if (!sp->attached) { /* nothing was ever submitted */
    spawner_free(sp);
    return;
  }
  take_done(sp); /* the finished ones */
  while (cancelled) {
    struct spawner_job *next = cancelled->next;
    cancelled->done(cancelled, true);
    cancelled = next;
  }
  sp->nopen = 3;
  uv_close((uv_handle_t *)&sp->flush, on_handle_close);
  uv_close((uv_handle_t *)&sp->relax, on_handle_close);
  uv_close((uv_handle_t *)&sp->poll, on_handle_close);
}
