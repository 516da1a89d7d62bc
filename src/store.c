/* The SQLite store (see store.h). */
#include "herd/store.h"

#include "herd/log.h"

#include <fcntl.h>
#include <pthread.h>
#include <signal.h>
#include <sqlite3.h>
#include <stdarg.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>
#include <sys/mman.h>
#include <unistd.h>

/* ---- the WAL index stops taking writes under us ----
 * SQLite maps herd.db-shm shared. If that file stops taking writes while it is mapped (made
 * immutable, its filesystem forced read-only), the next write to one of its pages is a
 * SIGBUS and the daemon would die of it. The handler makes that page a private copy, so the
 * write goes on. Every connection of this process shares the one mapping, so the daemon's
 * view of the index stays whole; what other processes read through the file goes stale until
 * herd closes the store (its last close checkpoints the WAL into herd.db) or the next daemon
 * opens it (the first opener rebuilds the index from the WAL). Any other SIGBUS goes to the
 * handler that was there before (the default: the daemon dies, as a bug should make it). */
static volatile sig_atomic_t shm_private_pages;
static struct sigaction bus_before;
static long bus_page;

/* Whether addr lies in a mapping of a "-shm" file (/proc/self/maps, async-signal-safe). */
static bool addr_in_shm(uintptr_t addr) {
  char buf[4096]; /* (on the faulting thread's stack: the checkpointer's thread may fault too) */
  int fd = open("/proc/self/maps", O_RDONLY | O_CLOEXEC);
  if (fd < 0) return false;
  size_t have = 0;
  bool found = false;
  for (;;) {
    ssize_t n = read(fd, buf + have, sizeof buf - 1 - have);
    if (n <= 0) break;
    have += (size_t)n;
    buf[have] = '\0';
    char *line = buf, *nl;
    while ((nl = memchr(line, '\n', have - (size_t)(line - buf)))) {
      *nl = '\0';
      uintptr_t lo = 0, hi = 0;
      char *p = line;
      for (; (*p >= '0' && *p <= '9') || (*p >= 'a' && *p <= 'f'); p++)
        lo = lo * 16 + (uintptr_t)(*p <= '9' ? *p - '0' : *p - 'a' + 10);
      if (*p == '-') p++;
      for (; (*p >= '0' && *p <= '9') || (*p >= 'a' && *p <= 'f'); p++)
        hi = hi * 16 + (uintptr_t)(*p <= '9' ? *p - '0' : *p - 'a' + 10);
      size_t len = (size_t)(nl - line);
      if (addr >= lo && addr < hi) {
        found = len > 4 && !memcmp(nl - 4, "-shm", 4);
        goto done;
      }
      line = nl + 1;
    }
    have -= (size_t)(line - buf); /* the part of a line not yet ended goes first */
    memmove(buf, line, have);
    if (have == sizeof buf - 1) have = 0; /* (no line is that long) */
  }
done:
  close(fd);
  return found;
}

static void on_sigbus(int sig, siginfo_t *si, void *uc) {
  (void)sig, (void)uc;
  char copy[16384];
  uintptr_t a = (uintptr_t)si->si_addr, page = a & ~((uintptr_t)bus_page - 1);
  if (bus_page > 0 && (size_t)bus_page <= sizeof copy && addr_in_shm(a)) {
    memcpy(copy, (void *)page, (size_t)bus_page); /* (reading it works: writing does not) */
    void *r =
        mmap((void *)page, (size_t)bus_page, PROT_READ | PROT_WRITE, MAP_FIXED | MAP_PRIVATE | MAP_ANONYMOUS, -1, 0);
    if (r == (void *)page) {
      memcpy((void *)page, copy, (size_t)bus_page);
      shm_private_pages++;
      return; /* the write is tried again, on the copy */
    }
  }
  sigaction(SIGBUS, &bus_before, NULL); /* not ours: the fault comes again, to the handler before */
}

static void sigbus_install(void) {
  static bool done;
  if (done) return;
  done = true;
  bus_page = sysconf(_SC_PAGESIZE);
  struct sigaction sa = {.sa_sigaction = on_sigbus, .sa_flags = SA_SIGINFO};
  sigemptyset(&sa.sa_mask);
  sigaction(SIGBUS, &sa, &bus_before);
}

#define STORE_SCHEMA 2
#define STORE_KEEP_EVENTS 200000
/* WAL frames (pages) after which the checkpointer copies them into the database. */
#define STORE_CHECKPOINT_FRAMES 1000

/*
 * Checkpoints run on a thread of their own. In WAL mode with synchronous=NORMAL a commit
 * only appends to the WAL; the fsyncs happen when the WAL is copied back into the
 * database (a checkpoint), which SQLite would otherwise do inside whichever commit
 * crossed 1,000 pages: on the loop. Measured on an ext4 disk, that one commit's
 * fdatasync held the loop for 0.6 s while 1,000 services started. Here the commit hook
 * only wakes the checkpointer, whose own connection runs PASSIVE checkpoints: they never
 * wait for, or block, the loop's reads and writes.
 */
struct checkpointer {
  char *path;
  sqlite3 *db; /* the thread's own connection, opened by the thread */
  pthread_t thread;
  bool started; /* the thread exists (from the first checkpoint due) */
  pthread_mutex_t mu;
  pthread_cond_t cv;
  bool due, quit;
  bool failed;     /* the thread could not open its connection and ended */
  char error[200]; /* the last failure, for the loop to report */
  bool error_new;
};

/*
 * The journal: every write since the last successful commit, in order, with copies of
 * its values. A commit that fails (disk full, read-only, the database locked by another
 * process, an I/O error) is rolled back, but its writes stay here; while the store fails
 * new writes only join the journal, and the whole of it is written again in one
 * transaction at most once per STORE_RETRY seconds (the heartbeat turns the loop at least
 * once a second, so a retry comes even when nothing else happens). Nothing the daemon
 * recorded is lost to a fault that goes away: the first commit that succeeds carries the
 * events, instances and states of the whole outage, in their order, with their ids.
 */
#define STORE_RETRY 1.0
/* Writes held at most; past it, events are dropped (counted and logged) and state still kept. */
#define STORE_JOURNAL_MAX 200000
/* On the loop's connection: a database locked by someone else fails the turn's commit after
 * this long (it is retried) instead of holding the loop for SQLite's usual wait. */
#define STORE_BUSY_MS 50
/* Writing the journal again: writes per transaction, and the share of a loop turn it may take. */
#define STORE_CHUNK 1000
#define STORE_DRAIN_BUDGET 0.02

enum { JV_NULL, JV_INT, JV_REAL, JV_TEXT };
struct jval {
  int type;
  int64_t i;
  double r;
  char *t;
};
struct jop {
  sqlite3_stmt *stmt;
  const char *what;
  bool event;
  int n;
  struct jval v[12];
};

struct store {
  sqlite3 *db;
  struct checkpointer *ck; /* NULL: SQLite checkpoints inside commits (no threads) */
  bool in_txn;
  bool txn_failed; /* a statement of the open transaction failed in a way that may pass */
  bool held;       /* a commit failed: the journal holds writes not yet in the database */
  struct jop *jr;  /* the journal (above): jr[jr_head..njr) not yet in the database */
  size_t jr_head, njr, jr_cap;
  uint64_t saved;   /* writes of the journal saved since it began to hold them */
  double retry_at;  /* monotonic: the next attempt while failing */
  uint64_t dropped; /* events dropped past STORE_JOURNAL_MAX */
  char said[256];   /* the last error logged (the same one is not logged again) */
  int64_t next_event, next_instance;
  int reset_changes; /* sqlite3_total_changes at the last store_reset */
  char last_error[256];
  char warning[256];    /* something the user should know that is not an error (store_warning) */
  int shm_private_seen; /* shm_private_pages when last said */
  struct store_stats stats;
  sqlite3_stmt *inst_job, *inst_pid, *meta_get, *meta_put;
  sqlite3_stmt *put_service, *set_state, *set_wanted, *del_service, *inst_start, *inst_end, *last_inst, *ev_add,
      *ev_list, *ev_list_svc, *ev_newest, *inst_each, *inst_del;
};

static const char schema[] =
    "CREATE TABLE IF NOT EXISTS meta(key TEXT PRIMARY KEY, value TEXT NOT NULL);"
    "CREATE TABLE IF NOT EXISTS services(name TEXT PRIMARY KEY, source TEXT NOT NULL, spec TEXT NOT NULL,"
    "  wanted TEXT NOT NULL, state TEXT, restarts INTEGER NOT NULL DEFAULT 0);"
    "CREATE TABLE IF NOT EXISTS instances(id INTEGER PRIMARY KEY, service TEXT NOT NULL, attempt INTEGER NOT NULL,"
    "  pid INTEGER, starttime INTEGER, cmdline TEXT, started_at REAL NOT NULL, ended_at REAL, end_state TEXT,"
    "  exit_code INTEGER, signal INTEGER, reason TEXT, port INTEGER, cluster TEXT, job_id INTEGER);"
    "CREATE INDEX IF NOT EXISTS instances_service ON instances(service, id);"
    "CREATE TABLE IF NOT EXISTS events(id INTEGER PRIMARY KEY, ts REAL NOT NULL, service TEXT NOT NULL,"
    "  instance INTEGER, from_state TEXT NOT NULL, to_state TEXT NOT NULL, reason TEXT NOT NULL);";

static void note_error(struct store *st, const char *what) {
  st->stats.errors++;
  st->stats.failing = true;
  st->stats.last_error_at = now_mono();
  snprintf(st->last_error, sizeof st->last_error, "%s: %s", what, sqlite3_errmsg(st->db));
  /* While it fails, a retry a second would log the same line a second: say each error once. */
  if (strcmp(st->said, st->last_error)) {
    log_error("store: %s%s", st->last_error,
              st->njr ? " (the writes are kept in memory and written when the store can write again)" : "");
    snprintf(st->said, sizeof st->said, "%s", st->last_error);
  }
}

/* A failure that may pass (space freed, the lock released, the file system writable again):
 * the write is kept and retried. Any other (a constraint: a bug) drops that one write. */
static bool transient(int rc) {
  switch (rc & 0xff) {
  case SQLITE_FULL:
  case SQLITE_IOERR:
  case SQLITE_BUSY:
  case SQLITE_LOCKED:
  case SQLITE_READONLY:
  case SQLITE_CANTOPEN:
  case SQLITE_PERM:
  case SQLITE_NOMEM:
  case SQLITE_PROTOCOL: return true;
  default: return false;
  }
}

static void jop_free(struct jop *o) {
  for (int k = 0; k < o->n; k++)
    if (o->v[k].type == JV_TEXT) free(o->v[k].t);
}

static void journal_clear(struct store *st) {
  for (size_t i = st->jr_head; i < st->njr; i++) jop_free(&st->jr[i]);
  st->njr = st->jr_head = 0;
  if (st->jr_cap > 1024) { /* an outage's worth is given back */
    free(st->jr);
    st->jr = NULL;
    st->jr_cap = 0;
  }
}

/* Run one journaled write in the open transaction; false when it failed and may be retried. */
static bool jop_exec(struct store *st, struct jop *o) {
  sqlite3_stmt *s = o->stmt;
  for (int k = 0; k < o->n; k++) {
    struct jval *v = &o->v[k];
    if (v->type == JV_INT)
      sqlite3_bind_int64(s, k + 1, v->i);
    else if (v->type == JV_REAL)
      sqlite3_bind_double(s, k + 1, v->r);
    else if (v->type == JV_TEXT)
      sqlite3_bind_text(s, k + 1, v->t, -1, SQLITE_STATIC);
  }
  int rc = sqlite3_step(s);
  bool ok = rc == SQLITE_DONE;
  if (!ok) {
    rc = sqlite3_reset(s); /* the statement's own error code */
    note_error(st, o->what);
  }
  sqlite3_reset(s);
  sqlite3_clear_bindings(s);
  return ok || !transient(rc);
}

static void begin(struct store *st) {
  if (st->in_txn) return;
  if (sqlite3_exec(st->db, "BEGIN", NULL, NULL, NULL) != SQLITE_OK) {
    note_error(st, "begin");
    st->held = true; /* what the journal holds waits for the next retry */
    st->retry_at = now_mono() + STORE_RETRY;
    return;
  }
  st->in_txn = true;
  st->txn_failed = false;
}

/* Commit the open transaction; false (rolled back, the journal kept) when it failed. */
static bool commit(struct store *st) {
  if (!st->in_txn) return false;
  st->in_txn = false;
  if (st->txn_failed || sqlite3_exec(st->db, "COMMIT", NULL, NULL, NULL) != SQLITE_OK) {
    if (!st->txn_failed) note_error(st, "commit");
    sqlite3_exec(st->db, "ROLLBACK", NULL, NULL, NULL);
    st->retry_at = now_mono() + STORE_RETRY;
    st->held = true;
    return false;
  }
  st->stats.commits++;
  st->stats.last_commit_at = now_mono();
  return true;
}

/* Written: whatever failed before has not stopped the store from writing. */
static void written(struct store *st) {
  journal_clear(st);
  st->held = false;
  st->dropped = 0;
  st->stats.failing = false;
}

/* While held: write the journal again, oldest first, in transactions of at most
 * STORE_CHUNK writes (a prefix of the journal is as good as all of it: the order is kept),
 * so a retry that fails costs one chunk, not the whole outage's writes; once it writes, at
 * most `budget` seconds of this loop turn go to it, the rest in the next turns. */
static void drain(struct store *st, double budget) {
  double t0 = now_mono();
  while (st->jr_head < st->njr) {
    size_t end = st->njr - st->jr_head > STORE_CHUNK ? st->jr_head + STORE_CHUNK : st->njr;
    begin(st);
    if (!st->in_txn) return; /* begin failed: retried later */
    for (size_t i = st->jr_head; i < end && !st->txn_failed; i++)
      if (!jop_exec(st, &st->jr[i])) st->txn_failed = true;
    if (!commit(st)) return;
    for (size_t i = st->jr_head; i < end; i++) jop_free(&st->jr[i]);
    st->saved += end - st->jr_head;
    st->jr_head = end;
    if (st->jr_head < st->njr && now_mono() - t0 > budget) {
      st->retry_at = 0; /* the rest in the next loop turn */
      return;
    }
  }
  log_info("store: writing again; the %llu write(s) held while it failed are saved%s", (unsigned long long)st->saved,
           st->dropped ? " (some events were dropped: see above)" : "");
  st->said[0] = '\0';
  st->saved = 0;
  written(st);
}

sqlite3 *store_db(struct store *st) { return st->db; }
bool store_begin(struct store *st) {
  if (st->held) return false;
  begin(st);
  return st->in_txn && !st->txn_failed;
}
void store_note_error(struct store *st, const char *what) {
  note_error(st, what);
  st->txn_failed = true;
}

void store_flush(struct store *st) {
  if (!st) return;
  if (st->held) {
    if (now_mono() >= st->retry_at) drain(st, STORE_DRAIN_BUDGET);
    return;
  }
  if (commit(st)) written(st);
}

/* Said once, on the loop, when the handler above has made pages of the index private. */
static void shm_note(struct store *st) {
  int n = shm_private_pages;
  if (n == st->shm_private_seen) return;
  st->shm_private_seen = n;
  snprintf(st->warning, sizeof st->warning,
           "the WAL index (herd.db-shm) stopped taking writes: %d page(s) of it are private to this daemon now; "
           "herd.db as other processes read it may be stale until herd restarts",
           n);
  log_warn("store: %s", st->warning);
}

bool store_commit(struct store *st) {
  store_flush(st);
  shm_note(st);
  return !st->held && !st->in_txn;
}

/* One write: kept in the journal until committed; run now unless the store is failing. */
static void write_op(struct store *st, struct jop *o) {
  if (st->njr - st->jr_head >= STORE_JOURNAL_MAX && o->event) {
    if (!st->dropped++)
      log_error("store: %d writes wait for the store; further events are dropped until it writes again",
                STORE_JOURNAL_MAX);
    jop_free(o);
    return;
  }
  if (st->njr == st->jr_cap) {
    st->jr_cap = st->jr_cap ? st->jr_cap * 2 : 64;
    st->jr = xrealloc(st->jr, st->jr_cap * sizeof *st->jr);
  }
  st->jr[st->njr++] = *o;
  if (st->held) return; /* the next retry writes it after the rest */
  begin(st);
  if (st->in_txn && !st->txn_failed && !jop_exec(st, &st->jr[st->njr - 1])) st->txn_failed = true;
}

static void jv_int(struct jop *o, int64_t v) { o->v[o->n++] = (struct jval){.type = JV_INT, .i = v}; }
static void jv_real(struct jop *o, double v) { o->v[o->n++] = (struct jval){.type = JV_REAL, .r = v}; }
static void jv_null(struct jop *o) { o->v[o->n++] = (struct jval){.type = JV_NULL}; }
static void jv_text(struct jop *o, const char *t) {
  if (!t) return jv_null(o);
  o->v[o->n++] = (struct jval){.type = JV_TEXT, .t = xstrdup(t)};
}

void store_write(struct store *st, sqlite3_stmt *stmt, const char *what, const char *types, ...) {
  struct jop o = {.stmt = stmt, .what = what};
  va_list ap;
  va_start(ap, types);
  for (const char *t = types; *t && o.n < (int)ARRAY_LEN(o.v); t++) {
    switch (*t) {
    case 'i': jv_int(&o, va_arg(ap, int64_t)); break;
    case 'r': jv_real(&o, va_arg(ap, double)); break;
    case 't': jv_text(&o, va_arg(ap, const char *)); break;
    case 'N': { /* an int64_t, null when negative */
      int64_t v = va_arg(ap, int64_t);
      if (v < 0)
        jv_null(&o);
      else
        jv_int(&o, v);
      break;
    }
    default: jv_null(&o); break;
    }
  }
  va_end(ap);
  write_op(st, &o);
}

void store_reset(struct store *st) {
  store_flush(st);
  journal_clear(st);
  st->held = false;
  if (sqlite3_total_changes(st->db) == st->reset_changes) return; /* nothing written since */
  if (sqlite3_exec(st->db,
                   "DELETE FROM services; DELETE FROM instances; DELETE FROM events;"
                   "DELETE FROM meta WHERE key NOT IN ('app','schema');",
                   NULL, NULL, NULL) != SQLITE_OK)
    note_error(st, "reset");
  st->next_event = st->next_instance = 1;
  st->reset_changes = sqlite3_total_changes(st->db);
}

static int prep(struct store *st, sqlite3_stmt **s, const char *sql) {
  return sqlite3_prepare_v3(st->db, sql, -1, SQLITE_PREPARE_PERSISTENT, s, NULL);
}

int store_prepare(struct store *st, sqlite3_stmt **s, const char *sql) {
  return prep(st, s, sql) == SQLITE_OK ? 0 : -1;
}

static int64_t scalar(struct store *st, const char *sql) {
  sqlite3_stmt *s;
  int64_t v = 0;
  if (sqlite3_prepare_v2(st->db, sql, -1, &s, NULL) != SQLITE_OK) return -1;
  if (sqlite3_step(s) == SQLITE_ROW) v = sqlite3_column_int64(s, 0);
  sqlite3_finalize(s);
  return v;
}

static void checkpoint_error(struct checkpointer *ck, const char *what) {
  snprintf(ck->error, sizeof ck->error, "%s: %s", what, ck->db ? sqlite3_errmsg(ck->db) : "out of memory");
  ck->error_new = true;
}

static void *checkpoint_main(void *arg) {
  struct checkpointer *ck = arg;
  /* The connection is opened here, not on the loop: opening it reads the database and may
   * wait for a lock. A new connection sees the WAL only once it has read the database. */
  bool ok = sqlite3_open_v2(ck->path, &ck->db, SQLITE_OPEN_READWRITE | SQLITE_OPEN_NOMUTEX, NULL) == SQLITE_OK &&
            sqlite3_busy_timeout(ck->db, 2000) == SQLITE_OK &&
            sqlite3_exec(ck->db, "PRAGMA journal_mode=WAL", NULL, NULL, NULL) == SQLITE_OK;
  pthread_mutex_lock(&ck->mu);
  if (!ok) {
    checkpoint_error(ck, "no checkpoint thread, checkpoints run in commits");
    ck->failed = true;
  }
  while (ok) {
    while (!ck->due && !ck->quit) pthread_cond_wait(&ck->cv, &ck->mu);
    if (ck->quit) break;
    ck->due = false;
    pthread_mutex_unlock(&ck->mu);
    int rc = sqlite3_wal_checkpoint_v2(ck->db, "main", SQLITE_CHECKPOINT_PASSIVE, NULL, NULL);
    pthread_mutex_lock(&ck->mu);
    if (rc != SQLITE_OK && rc != SQLITE_BUSY && rc != SQLITE_LOCKED) checkpoint_error(ck, "checkpoint");
  }
  pthread_mutex_unlock(&ck->mu);
  return NULL;
}

/* After each commit on the loop: nframes pages wait in the WAL. The thread starts when the
 * first checkpoint is due: a daemon whose descriptor table no other thread shares grows it
 * without waiting for an RCU grace period (see daemon.c's reserve_fds). */
static int on_wal_commit(void *arg, sqlite3 *db, const char *name, int nframes) {
  struct store *st = arg;
  struct checkpointer *ck = st->ck;
  bool due = nframes >= STORE_CHECKPOINT_FRAMES;
  if (due && !ck->started) ck->started = pthread_create(&ck->thread, NULL, checkpoint_main, ck) == 0;
  pthread_mutex_lock(&ck->mu);
  bool fallback = ck->failed || (due && !ck->started);
  if (due && !ck->due && !fallback) {
    ck->due = true;
    pthread_cond_signal(&ck->cv);
  }
  bool report = ck->error_new;
  char msg[sizeof ck->error];
  if (report) memcpy(msg, ck->error, sizeof msg);
  ck->error_new = false;
  pthread_mutex_unlock(&ck->mu);
  if (report) {
    st->stats.errors++; /* a checkpoint: commits still go on (into the WAL) */
    snprintf(st->last_error, sizeof st->last_error, "%s", msg);
    log_error("store: %s", msg);
  }
  /* No thread to do it: SQLite checkpoints in its commits again (this hook is replaced). */
  if (fallback) sqlite3_wal_autocheckpoint(db, STORE_CHECKPOINT_FRAMES);
  return SQLITE_OK;
}

/* Checkpoints move to a connection and thread of their own (made when first due). */
static void checkpointer_start(struct store *st, const char *path) {
  if (!sqlite3_threadsafe()) return;
  struct checkpointer *ck = xcalloc(1, sizeof *ck);
  pthread_mutex_init(&ck->mu, NULL);
  pthread_cond_init(&ck->cv, NULL);
  ck->path = xstrdup(path);
  st->ck = ck;
  sqlite3_exec(st->db, "PRAGMA wal_autocheckpoint=0", NULL, NULL, NULL);
  sqlite3_wal_hook(st->db, on_wal_commit, st);
}

static void checkpointer_stop(struct store *st) {
  struct checkpointer *ck = st->ck;
  if (!ck) return;
  sqlite3_wal_hook(st->db, NULL, NULL);
  if (ck->started) {
    pthread_mutex_lock(&ck->mu);
    ck->quit = true;
    pthread_cond_signal(&ck->cv);
    pthread_mutex_unlock(&ck->mu);
    pthread_join(ck->thread, NULL);
  }
  pthread_mutex_destroy(&ck->mu);
  pthread_cond_destroy(&ck->cv);
  sqlite3_close(ck->db);
  free(ck->path);
  free(ck);
  st->ck = NULL;
}

int store_open(const char *path, struct store **out, char **err) {
  sigbus_install();
  struct store *st = xcalloc(1, sizeof *st);
  /* The store holds every spec, env (secrets) included: owner only. SQLite would create it
   * 0644; it creates the -wal and -shm files with the database file's mode, so they follow. */
  int fd = *path && *path != ':' && strncmp(path, "file:", 5) ? open(path, O_RDWR | O_CREAT | O_CLOEXEC, 0600) : -1;
  if (fd >= 0) close(fd);
  int rc = sqlite3_open_v2(path, &st->db, SQLITE_OPEN_READWRITE | SQLITE_OPEN_CREATE | SQLITE_OPEN_NOMUTEX, NULL);
  if (rc != SQLITE_OK) {
    *err = xasprintf("cannot open store %s: %s", path, st->db ? sqlite3_errmsg(st->db) : sqlite3_errstr(rc));
    goto fail;
  }
  sqlite3_busy_timeout(st->db, 2000);
  /* Is this herd's store? A foreign or corrupt file is an error, never a silent reset. */
  sqlite3_stmt *s = NULL;
  rc = sqlite3_prepare_v2(st->db, "SELECT count(*) FROM sqlite_master", -1, &s, NULL);
  if (rc == SQLITE_OK) rc = sqlite3_step(s);
  int64_t ntables = rc == SQLITE_ROW ? sqlite3_column_int64(s, 0) : -1;
  sqlite3_finalize(s);
  if (ntables < 0) {
    *err = xasprintf("store %s is not a readable SQLite database (%s); move it aside to start afresh", path,
                     sqlite3_errmsg(st->db));
    goto fail;
  }
  if (ntables > 0) {
    rc = sqlite3_prepare_v2(st->db, "SELECT value FROM meta WHERE key='app'", -1, &s, NULL);
    bool ours =
        rc == SQLITE_OK && sqlite3_step(s) == SQLITE_ROW && !strcmp((const char *)sqlite3_column_text(s, 0), "herd");
    sqlite3_finalize(s);
    if (!ours) {
      *err = xasprintf("%s is a SQLite database but not herd's store; refusing to touch it", path);
      goto fail;
    }
    int64_t ver = scalar(st, "SELECT value FROM meta WHERE key='schema'");
    if (ver == 1 && sqlite3_exec(st->db,
                                 "ALTER TABLE instances ADD COLUMN cluster TEXT;"
                                 "ALTER TABLE instances ADD COLUMN job_id INTEGER;"
                                 "UPDATE meta SET value='2' WHERE key='schema';",
                                 NULL, NULL, NULL) == SQLITE_OK)
      ver = 2; /* schema 1 lacked the Slurm columns */
    if (ver != STORE_SCHEMA) {
      *err = xasprintf("store %s has schema %lld; this herd understands %d", path, (long long)ver, STORE_SCHEMA);
      goto fail;
    }
    if (sqlite3_prepare_v2(st->db, "PRAGMA quick_check", -1, &s, NULL) == SQLITE_OK) {
      rc = sqlite3_step(s);
      bool ok = rc == SQLITE_ROW && !strcmp((const char *)sqlite3_column_text(s, 0), "ok");
      sqlite3_finalize(s);
      if (!ok) {
        *err = xasprintf("store %s is corrupt (integrity check failed); move it aside to start afresh", path);
        goto fail;
      }
    }
  }
  char *msg = NULL;
  if (sqlite3_exec(st->db, "PRAGMA journal_mode=WAL; PRAGMA synchronous=NORMAL;", NULL, NULL, &msg) != SQLITE_OK ||
      sqlite3_exec(st->db, schema, NULL, NULL, &msg) != SQLITE_OK ||
      sqlite3_exec(st->db,
                   "INSERT OR IGNORE INTO meta VALUES('app','herd');"
                   "INSERT OR IGNORE INTO meta VALUES('schema','2');",
                   NULL, NULL, &msg) != SQLITE_OK) {
    *err = xasprintf("cannot initialise store %s: %s", path, msg ? msg : sqlite3_errmsg(st->db));
    sqlite3_free(msg);
    goto fail;
  }
  if (prep(st, &st->put_service,
           "INSERT INTO services(name,source,spec,wanted) VALUES(?,?,?,?) ON CONFLICT(name) DO UPDATE SET "
           "source=excluded.source, spec=excluded.spec, wanted=excluded.wanted") ||
      prep(st, &st->set_state, "UPDATE services SET state=?, restarts=? WHERE name=?") ||
      prep(st, &st->set_wanted, "UPDATE services SET wanted=? WHERE name=?") ||
      prep(st, &st->del_service, "DELETE FROM services WHERE name=?") ||
      prep(st, &st->inst_start,
           "INSERT INTO instances(id,service,attempt,pid,starttime,started_at,cmdline,port) VALUES(?,?,?,?,?,?,?,?)") ||
      prep(st, &st->inst_job, "UPDATE instances SET cluster=?, job_id=? WHERE id=?") ||
      prep(st, &st->inst_pid, "UPDATE instances SET pid=?, starttime=? WHERE id=?") ||
      prep(st, &st->meta_get, "SELECT value FROM meta WHERE key=?") ||
      prep(st, &st->meta_put, "INSERT OR REPLACE INTO meta VALUES(?,?)") ||
      prep(st, &st->inst_end, "UPDATE instances SET end_state=?,exit_code=?,signal=?,reason=?,ended_at=? WHERE id=?") ||
      prep(st, &st->last_inst,
           "SELECT id,attempt,pid,starttime,started_at,ended_at,end_state,exit_code,signal,reason,cmdline,port,cluster,"
           "job_id "
           "FROM instances WHERE service=? ORDER BY id DESC LIMIT 1") ||
      prep(st, &st->inst_each,
           "SELECT id,attempt,pid,starttime,started_at,ended_at,end_state,exit_code,signal,reason,cmdline,port,cluster,"
           "job_id FROM instances WHERE service=? ORDER BY id") ||
      prep(st, &st->inst_del, "DELETE FROM instances WHERE service=?") ||
      prep(st, &st->ev_add,
           "INSERT INTO events(id,ts,service,instance,from_state,to_state,reason) VALUES(?,?,?,?,?,?,?)") ||
      prep(st, &st->ev_list,
           "SELECT id,ts,service,instance,from_state,to_state,reason FROM events WHERE id>? ORDER BY id LIMIT ?") ||
      prep(st, &st->ev_newest,
           "SELECT * FROM (SELECT id,ts,service,instance,from_state,to_state,reason FROM events "
           "WHERE ?1 IS NULL OR service=?1 ORDER BY id DESC LIMIT ?2) ORDER BY id") ||
      prep(st, &st->ev_list_svc,
           "SELECT id,ts,service,instance,from_state,to_state,reason FROM events WHERE id>? AND service=? ORDER BY id "
           "LIMIT ?")) {
    *err = xasprintf("cannot prepare store statements: %s", sqlite3_errmsg(st->db));
    goto fail;
  }
  st->next_event = scalar(st, "SELECT coalesce(max(id),0) FROM events") + 1;
  st->next_instance = scalar(st, "SELECT coalesce(max(id),0) FROM instances") + 1;
  /* Bound the history: keep the newest events only. */
  char sql[128];
  snprintf(sql, sizeof sql, "DELETE FROM events WHERE id < %lld", (long long)(st->next_event - STORE_KEEP_EVENTS));
  sqlite3_exec(st->db, sql, NULL, NULL, NULL);
  checkpointer_start(st, path);
  sqlite3_busy_timeout(st->db, STORE_BUSY_MS);
  *out = st;
  return 0;
fail:
  store_close(st);
  return -1;
}

void store_close(struct store *st) {
  if (!st) return;
  if (st->db) {
    if (st->held)
      drain(st, 1e9); /* one last attempt, all of it */
    else
      store_flush(st);
    if (st->held) log_error("store: %zu write(s) could not be saved: %s", st->njr - st->jr_head, st->last_error);
  }
  journal_clear(st);
  free(st->jr);
  sqlite3_stmt **all[] = {&st->set_state, &st->put_service, &st->set_wanted, &st->del_service, &st->inst_start,
                          &st->inst_end,  &st->last_inst,   &st->ev_add,     &st->ev_list,     &st->ev_list_svc,
                          &st->ev_newest, &st->inst_job,    &st->inst_pid,   &st->meta_get,    &st->meta_put,
                          &st->inst_each, &st->inst_del};
  for (size_t i = 0; i < ARRAY_LEN(all); i++) sqlite3_finalize(*all[i]);
  checkpointer_stop(st);
  if (st->db) sqlite3_close(st->db); /* the last connection: SQLite checkpoints the rest */
  free(st);
}

void store_each_service(struct store *st, store_service_cb cb, void *arg) {
  sqlite3_stmt *s;
  if (sqlite3_prepare_v2(st->db, "SELECT name,source,spec,wanted,state,restarts FROM services ORDER BY name", -1, &s,
                         NULL))
    return;
  while (sqlite3_step(s) == SQLITE_ROW) {
    struct store_service r = {(const char *)sqlite3_column_text(s, 0), (const char *)sqlite3_column_text(s, 1),
                              (const char *)sqlite3_column_text(s, 2), (const char *)sqlite3_column_text(s, 3),
                              (const char *)sqlite3_column_text(s, 4), (unsigned)sqlite3_column_int(s, 5)};
    cb(arg, &r);
  }
  sqlite3_finalize(s);
}

void store_put_service(struct store *st, const char *name, const char *source, const char *spec, const char *wanted) {
  struct jop o = {.stmt = st->put_service, .what = "put service"};
  jv_text(&o, name);
  jv_text(&o, source);
  jv_text(&o, spec);
  jv_text(&o, wanted);
  write_op(st, &o);
}

void store_set_state(struct store *st, const char *name, const char *state, unsigned restarts) {
  struct jop o = {.stmt = st->set_state, .what = "set state"};
  jv_text(&o, state);
  jv_int(&o, (int)restarts);
  jv_text(&o, name);
  write_op(st, &o);
}

void store_set_wanted(struct store *st, const char *name, const char *wanted) {
  struct jop o = {.stmt = st->set_wanted, .what = "set wanted"};
  jv_text(&o, wanted);
  jv_text(&o, name);
  write_op(st, &o);
}

void store_del_service(struct store *st, const char *name) {
  struct jop o = {.stmt = st->del_service, .what = "delete service"};
  jv_text(&o, name);
  write_op(st, &o);
}

int64_t store_instance_start(struct store *st, const char *service, unsigned attempt, int pid, uint64_t starttime,
                             double started_at, const char *cmdline, int port) {
  int64_t id = st->next_instance++;
  struct jop o = {.stmt = st->inst_start, .what = "instance start"};
  jv_int(&o, id);
  jv_text(&o, service);
  jv_int(&o, (int)attempt);
  if (pid > 0)
    jv_int(&o, pid);
  else
    jv_null(&o);
  if (starttime)
    jv_int(&o, (int64_t)starttime);
  else
    jv_null(&o);
  jv_real(&o, started_at);
  jv_text(&o, cmdline);
  if (port > 0)
    jv_int(&o, port);
  else
    jv_null(&o);
  write_op(st, &o);
  return id;
}

void store_instance_end(struct store *st, int64_t id, const char *end_state, int code, int sig, const char *reason,
                        double ended_at) {
  struct jop o = {.stmt = st->inst_end, .what = "instance end"};
  jv_text(&o, end_state);
  if (code >= 0)
    jv_int(&o, code);
  else
    jv_null(&o);
  if (sig > 0)
    jv_int(&o, sig);
  else
    jv_null(&o);
  jv_text(&o, reason);
  jv_real(&o, ended_at);
  jv_int(&o, id);
  write_op(st, &o);
}

static void instance_row(sqlite3_stmt *s, const char *service, struct store_instance *o) {
  memset(o, 0, sizeof *o);
  o->id = sqlite3_column_int64(s, 0);
  o->service = service;
  o->attempt = (unsigned)sqlite3_column_int(s, 1);
  o->pid = sqlite3_column_int(s, 2);
  o->starttime = (uint64_t)sqlite3_column_int64(s, 3);
  o->started_at = sqlite3_column_double(s, 4);
  o->ended_at = sqlite3_column_double(s, 5);
  o->end_state = (const char *)sqlite3_column_text(s, 6);
  o->exit_code = sqlite3_column_type(s, 7) == SQLITE_NULL ? -1 : sqlite3_column_int(s, 7);
  o->signal = sqlite3_column_int(s, 8);
  o->reason = (const char *)sqlite3_column_text(s, 9);
  o->cmdline = (const char *)sqlite3_column_text(s, 10);
  o->port = sqlite3_column_int(s, 11);
  o->cluster = (const char *)sqlite3_column_text(s, 12);
  o->job_id = sqlite3_column_int64(s, 13);
}

int store_last_instance(struct store *st, const char *service, struct store_instance *o) {
  sqlite3_stmt *s = st->last_inst;
  sqlite3_reset(s);
  sqlite3_bind_text(s, 1, service, -1, SQLITE_TRANSIENT);
  if (sqlite3_step(s) != SQLITE_ROW) {
    sqlite3_reset(s);
    return -1;
  }
  instance_row(s, service, o);
  return 0; /* the statement stays positioned so the strings stay valid */
}

void store_each_instance(struct store *st, const char *service, store_instance_cb cb, void *arg) {
  sqlite3_stmt *s = st->inst_each;
  sqlite3_reset(s);
  sqlite3_bind_text(s, 1, service, -1, SQLITE_TRANSIENT);
  while (sqlite3_step(s) == SQLITE_ROW) {
    struct store_instance o;
    instance_row(s, service, &o);
    cb(arg, &o);
  }
  sqlite3_reset(s);
}

void store_del_instances(struct store *st, const char *service) {
  struct jop o = {.stmt = st->inst_del, .what = "delete instances"};
  jv_text(&o, service);
  write_op(st, &o);
}

int64_t store_event_add(struct store *st, double ts, const char *service, int64_t instance, const char *from,
                        const char *to, const char *reason) {
  int64_t id = st->next_event++;
  struct jop o = {.stmt = st->ev_add, .what = "event", .event = true};
  jv_int(&o, id);
  jv_real(&o, ts);
  jv_text(&o, service);
  if (instance > 0)
    jv_int(&o, instance);
  else
    jv_null(&o);
  jv_text(&o, from);
  jv_text(&o, to);
  jv_text(&o, reason);
  write_op(st, &o);
  return id;
}

int64_t store_last_event_id(struct store *st) { return st->next_event - 1; }

void store_each_event(struct store *st, int64_t since, int limit, const char *service, store_event_cb cb, void *arg) {
  sqlite3_stmt *s = since < 0 ? st->ev_newest : service ? st->ev_list_svc : st->ev_list;
  sqlite3_reset(s);
  sqlite3_clear_bindings(s);
  if (since < 0) {
    if (service) sqlite3_bind_text(s, 1, service, -1, SQLITE_TRANSIENT);
    sqlite3_bind_int(s, 2, limit);
  } else {
    sqlite3_bind_int64(s, 1, since);
  }
  if (since < 0) {
  } else if (service) {
    sqlite3_bind_text(s, 2, service, -1, SQLITE_TRANSIENT);
    sqlite3_bind_int(s, 3, limit);
  } else {
    sqlite3_bind_int(s, 2, limit);
  }
  while (sqlite3_step(s) == SQLITE_ROW) {
    struct store_event e = {sqlite3_column_int64(s, 0),
                            sqlite3_column_double(s, 1),
                            (const char *)sqlite3_column_text(s, 2),
                            sqlite3_column_int64(s, 3),
                            (const char *)sqlite3_column_text(s, 4),
                            (const char *)sqlite3_column_text(s, 5),
                            (const char *)sqlite3_column_text(s, 6)};
    cb(arg, &e);
  }
  sqlite3_reset(s);
}

void store_instance_job(struct store *st, int64_t id, const char *cluster, int64_t job_id) {
  struct jop o = {.stmt = st->inst_job, .what = "instance job"};
  jv_text(&o, cluster);
  if (job_id > 0)
    jv_int(&o, job_id);
  else
    jv_null(&o);
  jv_int(&o, id);
  write_op(st, &o);
}

void store_instance_pid(struct store *st, int64_t id, int pid, uint64_t starttime) {
  struct jop o = {.stmt = st->inst_pid, .what = "instance pid"};
  jv_int(&o, pid);
  if (starttime)
    jv_int(&o, (int64_t)starttime);
  else
    jv_null(&o);
  jv_int(&o, id);
  write_op(st, &o);
}

char *store_meta_get(struct store *st, const char *key) {
  sqlite3_stmt *s = st->meta_get;
  sqlite3_bind_text(s, 1, key, -1, SQLITE_STATIC);
  char *v = sqlite3_step(s) == SQLITE_ROW ? xstrdup((const char *)sqlite3_column_text(s, 0)) : NULL;
  sqlite3_reset(s);
  sqlite3_clear_bindings(s);
  return v;
}

void store_meta_put(struct store *st, const char *key, const char *value) {
  struct jop o = {.stmt = st->meta_put, .what = "meta"};
  jv_text(&o, key);
  jv_text(&o, value);
  write_op(st, &o);
}

const struct store_stats *store_stats(struct store *st) {
  st->stats.pending = st->held ? st->njr - st->jr_head : 0;
  st->stats.dropped = st->dropped;
  return &st->stats;
}

const char *store_last_error(struct store *st) { return st->last_error[0] ? st->last_error : NULL; }

const char *store_warning(struct store *st) {
  shm_note(st);
  return st->warning[0] ? st->warning : NULL;
}
