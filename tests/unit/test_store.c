/* The store: commits append to the WAL only; checkpoints (the fsyncs) run on the store's
 * own thread once 1,000 pages wait, so a commit on the loop never waits for the disk.
 * Checked on a real SQLite file: with SQLite's automatic checkpoints off, the database
 * file grows while the writer only commits (the checkpointer copied the WAL into it),
 * everything written is there after close and reopen, and a store that never reached a
 * checkpoint closes without starting any thread. */
#include "herd/store.h"

#include <sqlite3.h>
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

  /* The journal: commits that fail (here the database is locked by another connection, as
   * by another process) are rolled back but keep their writes, and while the store fails new
   * writes only join them; once the lock is gone, the retry (at most once a second) writes
   * them all, in order, in chunks: nothing is lost, the ids have no gap. */
  st = NULL;
  CHECK(store_open(db, &st, &err) == 0, "reopen for the journal: %s", err ? err : "ok");
  if (st) {
    sqlite3 *other = NULL;
    CHECK(sqlite3_open(db, &other) == SQLITE_OK, "a second connection");
    CHECK(sqlite3_exec(other, "BEGIN EXCLUSIVE", NULL, NULL, NULL) == SQLITE_OK, "BEGIN EXCLUSIVE held");
    const int K = 2500; /* past one chunk (1,000) */
    store_event_add(st, 1.0, "svc", 1, "STARTING", "HEALTHY", "in the outage");
    store_flush(st);
    CHECK(store_stats(st)->failing, "the commit failed: %s", store_last_error(st) ? store_last_error(st) : "no error");
    CHECK(store_stats(st)->pending == 1, "1 write held (%zu)", store_stats(st)->pending);
    for (int i = 1; i < K; i++) store_event_add(st, 1.0 + i, "svc", 1, "STARTING", "HEALTHY", "in the outage");
    store_flush(st);
    CHECK(store_stats(st)->pending == (size_t)K, "%d writes held (%zu)", K, store_stats(st)->pending);
    sqlite3_exec(other, "ROLLBACK", NULL, NULL, NULL);
    sqlite3_close(other);
    for (int i = 0; i < 300 && store_stats(st)->pending; i++) { /* the retry is due within 1 s */
      struct timespec ts = {0, 10 * 1000 * 1000};
      nanosleep(&ts, NULL);
      store_flush(st);
    }
    CHECK(store_stats(st)->pending == 0 && !store_stats(st)->failing, "all written once the lock is gone (%zu left)",
          store_stats(st)->pending);
    store_close(st);
    st = NULL;
    CHECK(store_open(db, &st, &err) == 0, "reopen after the journal: %s", err ? err : "ok");
    if (st) {
      int n = 0;
      store_each_event(st, 0, N + K + 10, NULL, count_event, &n);
      CHECK(n == N + K, "%d events after the outage (got %d)", N + K, n);
      CHECK(store_last_event_id(st) == N + K, "ids without a gap: last %lld", (long long)store_last_event_id(st));
      store_close(st);
    }
  }

  char cmd[600];
  snprintf(cmd, sizeof cmd, "rm -rf %s", dir);
  if (system(cmd) != 0) fprintf(stderr, "could not remove %s\n", dir);
  printf("%d checks, %d failures\n", checks, failures);
  return failures ? 1 : 0;
}
