/* The SQLite store (see store.h). */
#include "herd/store.h"

#include "herd/log.h"

#include <fcntl.h>
#include <pthread.h>
#include <sqlite3.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

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

struct store {
  sqlite3 *db;
  struct checkpointer *ck; /* NULL: SQLite checkpoints inside commits (no threads) */
  bool in_txn;
  int64_t next_event, next_instance;
  int reset_changes; /* sqlite3_total_changes at the last store_reset */
  char last_error[256];
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
  log_error("store: %s", st->last_error);
}

static void begin(struct store *st) {
  if (st->in_txn) return;
  if (sqlite3_exec(st->db, "BEGIN", NULL, NULL, NULL) != SQLITE_OK)
    note_error(st, "begin");
  else
    st->in_txn = true;
}

sqlite3 *store_db(struct store *st) { return st->db; }
void store_begin(struct store *st) { begin(st); }
void store_note_error(struct store *st, const char *what) { note_error(st, what); }

void store_flush(struct store *st) {
  if (!st || !st->in_txn) return;
  st->in_txn = false;
  if (sqlite3_exec(st->db, "COMMIT", NULL, NULL, NULL) != SQLITE_OK) {
    note_error(st, "commit");
    sqlite3_exec(st->db, "ROLLBACK", NULL, NULL, NULL);
    return;
  }
  /* Written: whatever failed before has not stopped the store from writing. */
  st->stats.commits++;
  st->stats.failing = false;
  st->stats.last_commit_at = now_mono();
}

void store_reset(struct store *st) {
  store_flush(st);
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
  *out = st;
  return 0;
fail:
  store_close(st);
  return -1;
}

void store_close(struct store *st) {
  if (!st) return;
  if (st->db) store_flush(st);
  sqlite3_stmt **all[] = {&st->set_state, &st->put_service, &st->set_wanted, &st->del_service, &st->inst_start,
                          &st->inst_end,  &st->last_inst,   &st->ev_add,     &st->ev_list,     &st->ev_list_svc,
                          &st->ev_newest, &st->inst_job,    &st->inst_pid,   &st->meta_get,    &st->meta_put,
                          &st->inst_each, &st->inst_del};
  for (size_t i = 0; i < ARRAY_LEN(all); i++) sqlite3_finalize(*all[i]);
  checkpointer_stop(st);
  if (st->db) sqlite3_close(st->db); /* the last connection: SQLite checkpoints the rest */
  free(st);
}

static void run(struct store *st, sqlite3_stmt *s, const char *what) {
  if (sqlite3_step(s) != SQLITE_DONE) note_error(st, what);
  sqlite3_reset(s);
  sqlite3_clear_bindings(s);
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
  begin(st);
  sqlite3_bind_text(st->put_service, 1, name, -1, SQLITE_STATIC);
  sqlite3_bind_text(st->put_service, 2, source, -1, SQLITE_STATIC);
  sqlite3_bind_text(st->put_service, 3, spec, -1, SQLITE_STATIC);
  sqlite3_bind_text(st->put_service, 4, wanted, -1, SQLITE_STATIC);
  run(st, st->put_service, "put service");
}

void store_set_state(struct store *st, const char *name, const char *state, unsigned restarts) {
  begin(st);
  sqlite3_bind_text(st->set_state, 1, state, -1, SQLITE_STATIC);
  sqlite3_bind_int(st->set_state, 2, (int)restarts);
  sqlite3_bind_text(st->set_state, 3, name, -1, SQLITE_STATIC);
  run(st, st->set_state, "set state");
}

void store_set_wanted(struct store *st, const char *name, const char *wanted) {
  begin(st);
  sqlite3_bind_text(st->set_wanted, 1, wanted, -1, SQLITE_STATIC);
  sqlite3_bind_text(st->set_wanted, 2, name, -1, SQLITE_STATIC);
  run(st, st->set_wanted, "set wanted");
}

void store_del_service(struct store *st, const char *name) {
  begin(st);
  sqlite3_bind_text(st->del_service, 1, name, -1, SQLITE_STATIC);
  run(st, st->del_service, "delete service");
}

int64_t store_instance_start(struct store *st, const char *service, unsigned attempt, int pid, uint64_t starttime,
                             double started_at, const char *cmdline, int port) {
  begin(st);
  int64_t id = st->next_instance++;
  sqlite3_stmt *s = st->inst_start;
  sqlite3_bind_int64(s, 1, id);
  sqlite3_bind_text(s, 2, service, -1, SQLITE_STATIC);
  sqlite3_bind_int(s, 3, (int)attempt);
  if (pid > 0) sqlite3_bind_int(s, 4, pid);
  if (starttime) sqlite3_bind_int64(s, 5, (int64_t)starttime);
  sqlite3_bind_double(s, 6, started_at);
  if (cmdline) sqlite3_bind_text(s, 7, cmdline, -1, SQLITE_STATIC);
  if (port > 0) sqlite3_bind_int(s, 8, port);
  run(st, s, "instance start");
  return id;
}

void store_instance_end(struct store *st, int64_t id, const char *end_state, int code, int sig, const char *reason,
                        double ended_at) {
  begin(st);
  sqlite3_stmt *s = st->inst_end;
  sqlite3_bind_text(s, 1, end_state, -1, SQLITE_STATIC);
  if (code >= 0) sqlite3_bind_int(s, 2, code);
  if (sig > 0) sqlite3_bind_int(s, 3, sig);
  sqlite3_bind_text(s, 4, reason, -1, SQLITE_STATIC);
  sqlite3_bind_double(s, 5, ended_at);
  sqlite3_bind_int64(s, 6, id);
  run(st, s, "instance end");
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
  begin(st);
  sqlite3_bind_text(st->inst_del, 1, service, -1, SQLITE_STATIC);
  run(st, st->inst_del, "delete instances");
}

int64_t store_event_add(struct store *st, double ts, const char *service, int64_t instance, const char *from,
                        const char *to, const char *reason) {
  begin(st);
  int64_t id = st->next_event++;
  sqlite3_stmt *s = st->ev_add;
  sqlite3_bind_int64(s, 1, id);
  sqlite3_bind_double(s, 2, ts);
  sqlite3_bind_text(s, 3, service, -1, SQLITE_STATIC);
  if (instance > 0) sqlite3_bind_int64(s, 4, instance);
  sqlite3_bind_text(s, 5, from, -1, SQLITE_STATIC);
  sqlite3_bind_text(s, 6, to, -1, SQLITE_STATIC);
  sqlite3_bind_text(s, 7, reason, -1, SQLITE_STATIC);
  run(st, s, "event");
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
  begin(st);
  sqlite3_stmt *s = st->inst_job;
  sqlite3_bind_text(s, 1, cluster, -1, SQLITE_STATIC);
  if (job_id > 0) sqlite3_bind_int64(s, 2, job_id);
  sqlite3_bind_int64(s, 3, id);
  run(st, s, "instance job");
}

void store_instance_pid(struct store *st, int64_t id, int pid, uint64_t starttime) {
  begin(st);
  sqlite3_stmt *s = st->inst_pid;
  sqlite3_bind_int(s, 1, pid);
  if (starttime) sqlite3_bind_int64(s, 2, (int64_t)starttime);
  sqlite3_bind_int64(s, 3, id);
  run(st, s, "instance pid");
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
  begin(st);
  sqlite3_bind_text(st->meta_put, 1, key, -1, SQLITE_STATIC);
  sqlite3_bind_text(st->meta_put, 2, value, -1, SQLITE_STATIC);
  run(st, st->meta_put, "meta");
}

const struct store_stats *store_stats(struct store *st) { return &st->stats; }

const char *store_last_error(struct store *st) { return st->last_error[0] ? st->last_error : NULL; }
