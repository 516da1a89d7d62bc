/* The job queue's order and limit (queue.c): priority first, FIFO within a priority, the
 * concurrency limit never exceeded, removal from any place, ranks; then a randomized run
 * against a plain reference (a sorted scan). */
#include "herd/queue.h"

#include <stdlib.h>
#include <string.h>

#include "check.h"

#define N 2000

static struct queue_item items[N];

/* The reference: the best waiting item by a linear scan. */
static int ref_best(const bool *waiting) {
  int best = -1;
  for (int i = 0; i < N; i++) {
    if (!waiting[i]) continue;
    if (best < 0 || items[i].prio > items[best].prio ||
        (items[i].prio == items[best].prio && items[i].seq < items[best].seq))
      best = i;
  }
  return best;
}

int main(void) {
  struct queue q;
  /* Order: priority 5 before 3 before 1; FIFO within each. */
  queue_init(&q, 2);
  int prios[] = {3, 1, 5, 3, 5, 1, 3};
  for (int i = 0; i < 7; i++) {
    queue_item_init(&items[i], prios[i]);
    queue_push(&q, &items[i]);
  }
  CHECK(queue_rank(&q, &items[2]) == 1 && queue_rank(&q, &items[4]) == 2 && queue_rank(&q, &items[0]) == 3 &&
            queue_rank(&q, &items[5]) == 7,
        "ranks %zu %zu %zu %zu", queue_rank(&q, &items[2]), queue_rank(&q, &items[4]), queue_rank(&q, &items[0]),
        queue_rank(&q, &items[5]));
  int want[] = {2, 4, 0, 3, 6, 1, 5};
  int got[7], ngot = 0;
  /* The limit: two slots; a third admit waits for a release. */
  got[ngot++] = (int)(queue_admit(&q) - items);
  got[ngot++] = (int)(queue_admit(&q) - items);
  CHECK(queue_admit(&q) == NULL && q.running == 2, "a third admission with max_running 2");
  CHECK(!queue_take_now(&q, 5), "no slot: take_now refuses");
  while (ngot < 7) {
    queue_release(&q);
    struct queue_item *it = queue_admit(&q);
    CHECK(it != NULL, "admitted after a release");
    if (!it) break;
    got[ngot++] = (int)(it - items);
    CHECK(q.running <= 2, "running %u <= 2", q.running);
  }
  CHECK(!memcmp(got, want, sizeof want), "order %d %d %d %d %d %d %d", got[0], got[1], got[2], got[3], got[4], got[5],
        got[6]);
  CHECK(queue_peek(&q) == NULL && !queue_waiting(&items[0]), "empty after all admitted");
  /* take_now: a free slot and nothing better waiting. */
  queue_release(&q);
  queue_release(&q);
  queue_item_init(&items[10], 3);
  queue_push(&q, &items[10]);
  CHECK(!queue_take_now(&q, 3), "an equal priority that waits goes first");
  CHECK(queue_take_now(&q, 4), "a higher priority may start at once");
  queue_release(&q);
  queue_remove(&q, &items[10]);
  CHECK(!queue_waiting(&items[10]) && q.n == 0, "removed");
  queue_remove(&q, &items[10]); /* twice: nothing */
  queue_free(&q);

  /* Unlimited. */
  queue_init(&q, 0);
  for (int i = 0; i < 100; i++) {
    queue_item_init(&items[i], 3);
    queue_push(&q, &items[i]);
  }
  int k = 0;
  while (queue_admit(&q)) k++;
  CHECK(k == 100 && q.running == 100, "max_running 0: all %d admitted", k);
  queue_free(&q);

  /* Randomized: pushes, removals from anywhere and admissions, against the scan. */
  srand(42);
  queue_init(&q, 0);
  static bool waiting[N];
  memset(waiting, 0, sizeof waiting);
  int bad = 0;
  for (int step = 0; step < 200000; step++) {
    int i = rand() % N, op = rand() % 3;
    if (op == 0 && !waiting[i]) {
      queue_item_init(&items[i], 1 + rand() % 5);
      queue_push(&q, &items[i]);
      waiting[i] = true;
    } else if (op == 1 && waiting[i]) {
      queue_remove(&q, &items[i]);
      waiting[i] = false;
    } else if (op == 2) {
      int r = ref_best(waiting);
      struct queue_item *it = queue_admit(&q);
      if ((r < 0) != (it == NULL) || (it && it != &items[r])) bad++;
      if (it) waiting[it - items] = false;
    }
  }
  CHECK(bad == 0, "randomized: %d admissions differ from the reference", bad);
  queue_free(&q);

  printf("test_queue: %d checks, %d failures\n", checks, failures);
  return failures ? 1 : 0;
}
