/*
 * A job queue's order and its concurrency limit, pure: no loop, no store, no clock. Items
 * wait in a binary heap ordered by priority (higher first), then by arrival (FIFO within a
 * priority); a queue lets at most max_running of them hold a slot at once. The runner
 * (job.c) embeds a queue_item in each job and asks queue_admit() for the next one to start.
 */
#ifndef HERD_QUEUE_H
#define HERD_QUEUE_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#define QUEUE_NONE ((size_t)-1)

struct queue_item {
  int prio;     /* higher first */
  uint64_t seq; /* arrival order, given by queue_push */
  size_t idx;   /* its place in the heap, or QUEUE_NONE when not waiting */
};

struct queue {
  unsigned max_running; /* 0: no limit */
  unsigned running;     /* slots held */
  struct queue_item **heap;
  size_t n, cap;
  uint64_t next_seq;
};

/** An empty queue that lets max_running items hold a slot at once (0: any number). */
void queue_init(struct queue *q, unsigned max_running);
/** Free the heap (the items are the caller's). */
void queue_free(struct queue *q);
/** An item that waits nowhere yet. */
void queue_item_init(struct queue_item *it, int prio);
/** Whether the item waits in a queue. */
bool queue_waiting(const struct queue_item *it);
/** Put the item at the back of its priority. It must not be waiting already. */
void queue_push(struct queue *q, struct queue_item *it);
/** Take a waiting item out (a job killed or removed while queued); no-op if not waiting. */
void queue_remove(struct queue *q, struct queue_item *it);
/** The best waiting item, or NULL. */
struct queue_item *queue_peek(const struct queue *q);
/** If a slot is free and an item waits, take the best one out and give it the slot;
 *  else NULL. */
struct queue_item *queue_admit(struct queue *q);
/** May an item that is not waiting take a slot now without passing any waiting one? If so
 *  it takes it (returns true). */
bool queue_take_now(struct queue *q, int prio);
/** Take a slot whatever the limit (an instance a restarted daemon finds running). */
void queue_take(struct queue *q);
/** Give a slot back. */
void queue_release(struct queue *q);
/** The item's place among the waiting ones, 1 = next (linear: for status views), 0 if not waiting. */
size_t queue_rank(const struct queue *q, const struct queue_item *it);

#endif
