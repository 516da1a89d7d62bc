/* A job queue's order and concurrency limit (see queue.h): a binary heap with each item's
 * index kept in the item, so that a job killed while it waits leaves in O(log n). */
#include "herd/queue.h"

#include "herd/herd.h"

#include <stdlib.h>

void queue_init(struct queue *q, unsigned max_running) { *q = (struct queue){.max_running = max_running}; }

void queue_free(struct queue *q) {
  for (size_t i = 0; i < q->n; i++) q->heap[i]->idx = QUEUE_NONE;
  free(q->heap);
  q->heap = NULL;
  q->n = q->cap = 0;
}

void queue_item_init(struct queue_item *it, int prio) { *it = (struct queue_item){.prio = prio, .idx = QUEUE_NONE}; }

bool queue_waiting(const struct queue_item *it) { return it->idx != QUEUE_NONE; }

/* a goes before b */
static bool before(const struct queue_item *a, const struct queue_item *b) {
  return a->prio != b->prio ? a->prio > b->prio : a->seq < b->seq;
}

static void put(struct queue *q, size_t i, struct queue_item *it) {
  q->heap[i] = it;
  it->idx = i;
}

static void sift_up(struct queue *q, size_t i) {
  struct queue_item *it = q->heap[i];
  while (i > 0) {
    size_t p = (i - 1) / 2;
    if (!before(it, q->heap[p])) break;
    put(q, i, q->heap[p]);
    i = p;
  }
  put(q, i, it);
}

static void sift_down(struct queue *q, size_t i) {
  struct queue_item *it = q->heap[i];
  for (;;) {
    size_t l = 2 * i + 1, best = i;
    const struct queue_item *b = it;
    if (l < q->n && before(q->heap[l], b)) best = l, b = q->heap[l];
    if (l + 1 < q->n && before(q->heap[l + 1], b)) best = l + 1;
    if (best == i) break;
    put(q, i, q->heap[best]);
    i = best;
  }
  put(q, i, it);
}

void queue_push(struct queue *q, struct queue_item *it) {
  if (queue_waiting(it)) return;
  if (q->n == q->cap) q->heap = xrealloc(q->heap, (q->cap = q->cap ? q->cap * 2 : 64) * sizeof *q->heap);
  it->seq = q->next_seq++;
  q->heap[q->n] = it;
  it->idx = q->n++;
  sift_up(q, it->idx);
}

void queue_remove(struct queue *q, struct queue_item *it) {
  if (!queue_waiting(it) || it->idx >= q->n || q->heap[it->idx] != it) return;
  size_t i = it->idx;
  it->idx = QUEUE_NONE;
  struct queue_item *last = q->heap[--q->n];
  if (i == q->n) return;
  put(q, i, last);
  sift_down(q, i);
  sift_up(q, last->idx);
}

struct queue_item *queue_peek(const struct queue *q) {
  return q->n ? q->heap[0] : NULL;
}

static bool slot_free(const struct queue *q) { return !q->max_running || q->running < q->max_running; }

struct queue_item *queue_admit(struct queue *q) {
  if (!q->n || !slot_free(q)) return NULL;
  struct queue_item *it = q->heap[0];
  queue_remove(q, it);
  q->running++;
  return it;
}

bool queue_take_now(struct queue *q, int prio) {
  if (!slot_free(q)) return false;
  if (q->n && q->heap[0]->prio >= prio) return false; /* one that waits goes first */
  q->running++;
  return true;
}

void queue_take(struct queue *q) { q->running++; }

void queue_release(struct queue *q) {
  if (q->running) q->running--;
}

size_t queue_rank(const struct queue *q, const struct queue_item *it) {
  if (!queue_waiting(it)) return 0;
  size_t r = 1;
  for (size_t i = 0; i < q->n; i++)
    if (q->heap[i] != it && before(q->heap[i], it)) r++;
  return r;
}
