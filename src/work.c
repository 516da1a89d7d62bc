/*
 * Work queues for external workers (see work.h). The store's table is the queue: a
 * deposit is a row, a withdrawal takes the best queued row of the queue (priority, then
 * age) and leases it, a report ends or requeues it. Each of them is committed before it is
 * answered. One timer, armed at the earliest lease's end, takes back expired leases; a
 * withdrawal may wait (?wait=S) for an item, parked until a deposit or a requeue.
 */
#include "herd/work.h"

#include "herd/cmd.h"
#include "herd/daemon.h"
#include "herd/log.h"
#include "herd/store.h"

#include <errno.h>
#include <math.h>
#include <sqlite3.h>
#include <stdlib.h>
#include <string.h>
#include <sys/random.h>

#define WORK_COLS                                                                                                      \
  "id,queue,payload,priority,retries,timeout,tags,state,attempt,lease_until,created_at,started_at,ended_at,result,"    \
  "error"

struct parked {
  struct list link;
  struct work *w;
  struct conn *c;
  char queue[64];
};

struct work {
  struct daemon *d;
  sqlite3_stmt *ins, *best, *lease, *get, *finish, *requeue, *expired, *next_lease, *list, *counts, *all_counts, *prune;
  uv_timer_t timer;
  bool timer_open;
  struct list parked; /* withdrawals waiting for an item, oldest first */
  /* Items by queue and state ({queue: {state: n}}), kept as they move, so a listing or a
   * scrape never counts a million rows; read again from the table after a prune or after
   * any store error (a rolled-back write's move is then not in it). */
  json_t *qc;
  bool qc_dirty;
  uint64_t qc_errors; /* the store's error count when qc was last read */
};

static const char schema[] =
    "CREATE TABLE IF NOT EXISTS work(id INTEGER PRIMARY KEY, queue TEXT NOT NULL, payload TEXT NOT NULL,"
    " priority INTEGER NOT NULL, retries INTEGER NOT NULL, timeout REAL NOT NULL, tags TEXT NOT NULL,"
    " state TEXT NOT NULL, attempt INTEGER NOT NULL, lease TEXT, lease_until REAL, created_at REAL NOT NULL,"
    " started_at REAL, ended_at REAL, result TEXT, error TEXT);"
    "CREATE INDEX IF NOT EXISTS work_take ON work(queue, state, priority DESC, id);"
    "CREATE INDEX IF NOT EXISTS work_lease ON work(state, lease_until);"
    "CREATE INDEX IF NOT EXISTS work_list ON work(queue, id);"
    "CREATE INDEX IF NOT EXISTS work_ended ON work(queue, state, ended_at);";

static json_t *qc_get(struct work *w) {
  const struct store_stats *ss = store_stats(w->d->store);
  if (w->qc && !w->qc_dirty && ss->errors == w->qc_errors) return w->qc;
  json_decref(w->qc);
  w->qc = json_object();
  sqlite3_stmt *s = w->all_counts;
  sqlite3_reset(s);
  while (sqlite3_step(s) == SQLITE_ROW) {
    const char *q = (const char *)sqlite3_column_text(s, 0);
    json_t *qo = json_object_get(w->qc, q);
    if (!qo) {
      qo = json_pack("{s:i,s:i,s:i,s:i}", "queued", 0, "running", 0, "success", 0, "failure", 0);
      json_object_set_new(w->qc, q, qo);
    }
    json_object_set_new(qo, (const char *)sqlite3_column_text(s, 1), json_integer(sqlite3_column_int64(s, 2)));
  }
  sqlite3_reset(s);
  w->qc_dirty = false;
  w->qc_errors = ss->errors;
  return w->qc;
}

/* n items of the queue went from one state to another (from NULL: new). */
static void qc_move(struct work *w, const char *queue, const char *from, const char *to, json_int_t n) {
  if (!w->qc || w->qc_dirty) return; /* read again when next needed */
  json_t *qo = json_object_get(w->qc, queue);
  if (!qo) {
    qo = json_pack("{s:i,s:i,s:i,s:i}", "queued", 0, "running", 0, "success", 0, "failure", 0);
    json_object_set_new(w->qc, queue, qo);
  }
  if (from) json_object_set_new(qo, from, json_integer(json_integer_value(json_object_get(qo, from)) - n));
  json_object_set_new(qo, to, json_integer(json_integer_value(json_object_get(qo, to)) + n));
}

static void arm(struct work *w);

int work_init(struct daemon *d) {
  sqlite3 *db = store_db(d->store);
  struct work *w = xcalloc(1, sizeof *w);
  w->d = d;
  list_init(&w->parked);
  d->work = w;
  if (sqlite3_exec(db, schema, NULL, NULL, NULL) != SQLITE_OK ||
      store_prepare(d->store, &w->ins,
                    "INSERT INTO work(queue,payload,priority,retries,timeout,tags,state,attempt,created_at) "
                    "VALUES(?,?,?,?,?,?,'queued',0,?)") ||
      store_prepare(d->store, &w->best,
                    "SELECT id FROM work WHERE queue=? AND state='queued' ORDER BY priority DESC, id LIMIT 1") ||
      store_prepare(
          d->store, &w->lease,
          "UPDATE work SET state='running', attempt=attempt+1, lease=?, lease_until=?, started_at=?, ended_at=NULL "
          "WHERE id=?") ||
      store_prepare(d->store, &w->get, "SELECT " WORK_COLS ",lease FROM work WHERE id=?") ||
      store_prepare(
          d->store, &w->finish,
          "UPDATE work SET state=?, lease=NULL, lease_until=NULL, ended_at=?, result=?, error=? WHERE id=?") ||
      store_prepare(d->store, &w->requeue,
                    "UPDATE work SET state='queued', lease=NULL, lease_until=NULL, error=? WHERE id=?") ||
      store_prepare(d->store, &w->expired, "SELECT id FROM work WHERE state='running' AND lease_until<=? LIMIT 1000") ||
      store_prepare(d->store, &w->next_lease, "SELECT min(lease_until) FROM work WHERE state='running'") ||
      store_prepare(d->store, &w->list,
                    "SELECT " WORK_COLS
                    " FROM work WHERE queue=?1 AND (?2 IS NULL OR state=?2) ORDER BY id LIMIT ?3 OFFSET ?4") ||
      store_prepare(d->store, &w->counts, "SELECT state, count(*) FROM work WHERE queue=? GROUP BY state") ||
      store_prepare(d->store, &w->all_counts, "SELECT queue, state, count(*) FROM work GROUP BY queue, state") ||
      store_prepare(d->store, &w->prune,
                    "DELETE FROM work WHERE queue=?1 AND state IN ('success','failure') AND ended_at<=?2 AND "
                    "(?3 IS NULL OR state=?3)")) {
    log_error("work queues: cannot prepare the store's work table: %s", sqlite3_errmsg(db));
    work_free(d); /* the API answers 503 */
    return -1;
  }
  uv_timer_init(d->loop, &w->timer);
  w->timer_open = true;
  arm(w); /* leases the last daemon handed out */
  return 0;
}

static void reply_none(struct conn *c) { conn_reply(c, 200, json_pack("{s:n}", "work")); }

static void parked_free(struct parked *p) {
  list_del(&p->link);
  free(p);
}

void work_close(struct daemon *d) {
  struct work *w = d->work;
  if (!w) return;
  while (!list_empty(&w->parked)) {
    struct parked *p = container_of(w->parked.next, struct parked, link);
    struct conn *c = p->c;
    conn_park(c, NULL, NULL, NULL, 0);
    parked_free(p);
    reply_none(c);
  }
  if (w->timer_open) uv_close((uv_handle_t *)&w->timer, NULL);
  w->timer_open = false;
}

void work_free(struct daemon *d) {
  struct work *w = d->work;
  if (!w) return;
  sqlite3_stmt *all[] = {w->ins,     w->best,       w->lease, w->get,    w->finish,     w->requeue,
                         w->expired, w->next_lease, w->list,  w->counts, w->all_counts, w->prune};
  for (size_t i = 0; i < ARRAY_LEN(all); i++) sqlite3_finalize(all[i]);
  json_decref(w->qc);
  free(w);
  d->work = NULL;
}

/* ---- rows ---- */

static json_t *text_json(sqlite3_stmt *s, int col) {
  const char *t = (const char *)sqlite3_column_text(s, col);
  if (!t) return json_null();
  json_t *v = json_loads(t, JSON_DECODE_ANY, NULL);
  return v ? v : json_string(t);
}

static json_t *real_or_null(sqlite3_stmt *s, int col) {
  return sqlite3_column_type(s, col) == SQLITE_NULL ? json_null() : json_real(sqlite3_column_double(s, col));
}

static json_t *row_json(sqlite3_stmt *s) {
  json_t *o = json_object();
  json_object_set_new(o, "id", json_integer(sqlite3_column_int64(s, 0)));
  json_object_set_new(o, "queue", json_string((const char *)sqlite3_column_text(s, 1)));
  json_object_set_new(o, "payload", text_json(s, 2));
  json_object_set_new(o, "priority", json_integer(sqlite3_column_int(s, 3)));
  json_object_set_new(o, "retries", json_integer(sqlite3_column_int(s, 4)));
  json_object_set_new(o, "timeout", json_real(sqlite3_column_double(s, 5)));
  json_object_set_new(o, "tags", text_json(s, 6));
  json_object_set_new(o, "state", json_string((const char *)sqlite3_column_text(s, 7)));
  json_object_set_new(o, "attempt", json_integer(sqlite3_column_int(s, 8)));
  json_object_set_new(o, "lease_expires", real_or_null(s, 9));
  json_object_set_new(o, "created_at", real_or_null(s, 10));
  json_object_set_new(o, "started_at", real_or_null(s, 11));
  json_object_set_new(o, "ended_at", real_or_null(s, 12));
  json_object_set_new(o, "result", text_json(s, 13));
  const char *e = (const char *)sqlite3_column_text(s, 14);
  json_object_set_new(o, "error", e ? json_string(e) : json_null());
  return o;
}

/* The item as JSON (and its lease token in *lease, malloc'd, when asked), or NULL. */
static json_t *item_json(struct work *w, int64_t id, char **lease) {
  sqlite3_stmt *s = w->get;
  sqlite3_reset(s);
  sqlite3_bind_int64(s, 1, id);
  json_t *o = NULL;
  if (sqlite3_step(s) == SQLITE_ROW) {
    o = row_json(s);
    if (lease) {
      const char *l = (const char *)sqlite3_column_text(s, 15);
      *lease = l ? xstrdup(l) : NULL;
    }
  }
  sqlite3_reset(s);
  return o;
}

static void step_done(struct work *w, sqlite3_stmt *s, const char *what) {
  if (sqlite3_step(s) != SQLITE_DONE) store_note_error(w->d->store, what);
  sqlite3_reset(s);
  sqlite3_clear_bindings(s);
}

/* ---- leases ---- */

static void on_lease_timer(uv_timer_t *t);

/* The timer at the earliest lease's end (wall clock, which a restart keeps). */
static void arm(struct work *w) {
  if (!w->timer_open) return;
  sqlite3_stmt *s = w->next_lease;
  sqlite3_reset(s);
  double at = 0;
  if (sqlite3_step(s) == SQLITE_ROW && sqlite3_column_type(s, 0) != SQLITE_NULL) at = sqlite3_column_double(s, 0);
  sqlite3_reset(s);
  if (!at) {
    uv_timer_stop(&w->timer);
    return;
  }
  double delay = at - now_wall();
  uint64_t ms = delay <= 0 ? 0 : (uint64_t)ceil(delay * 1000);
  uv_timer_start(&w->timer, on_lease_timer, ms + 1, 0);
}

static void serve_parked(struct work *w, const char *queue);

/* An attempt is over without success: requeue the item while retries remain, else it
 * fails. Returns 1 when it went back to its queue, 0 when it failed, -1 when the store
 * cannot write now (nothing changed). */
static int attempt_failed(struct work *w, int64_t id, const char *error, json_t *result) {
  sqlite3_stmt *g = w->get;
  sqlite3_reset(g);
  sqlite3_bind_int64(g, 1, id);
  int attempt = 0, retries = 0;
  char queue[128] = "";
  if (sqlite3_step(g) == SQLITE_ROW) {
    attempt = sqlite3_column_int(g, 8);
    retries = sqlite3_column_int(g, 4);
    snprintf(queue, sizeof queue, "%s", (const char *)sqlite3_column_text(g, 1));
  }
  sqlite3_reset(g);
  if (!store_begin(w->d->store)) return -1;
  if (attempt <= retries) {
    sqlite3_bind_text(w->requeue, 1, error, -1, SQLITE_TRANSIENT);
    sqlite3_bind_int64(w->requeue, 2, id);
    step_done(w, w->requeue, "work requeue");
    qc_move(w, queue, "running", "queued", 1);
    return 1;
  }
  char *res = result ? json_dumps(result, JSON_COMPACT | JSON_ENCODE_ANY) : NULL;
  sqlite3_bind_text(w->finish, 1, "failure", -1, SQLITE_STATIC);
  sqlite3_bind_double(w->finish, 2, now_wall());
  if (res) sqlite3_bind_text(w->finish, 3, res, -1, SQLITE_TRANSIENT);
  char msg[512];
  snprintf(msg, sizeof msg, "%s (attempt %d of %d: no retries left)", error, attempt, retries + 1);
  sqlite3_bind_text(w->finish, 4, msg, -1, SQLITE_TRANSIENT);
  sqlite3_bind_int64(w->finish, 5, id);
  step_done(w, w->finish, "work finish");
  free(res);
  qc_move(w, queue, "running", "failure", 1);
  return 0;
}

static void on_lease_timer(uv_timer_t *t) {
  struct work *w = container_of(t, struct work, timer);
  double now = now_wall();
  int64_t ids[1000];
  size_t n = 0;
  sqlite3_stmt *s = w->expired;
  sqlite3_reset(s);
  sqlite3_bind_double(s, 1, now);
  while (n < ARRAY_LEN(ids) && sqlite3_step(s) == SQLITE_ROW) ids[n++] = sqlite3_column_int64(s, 0);
  sqlite3_reset(s);
  bool requeued = false, unwritten = false;
  for (size_t i = 0; i < n && !unwritten; i++) {
    json_t *o = item_json(w, ids[i], NULL);
    double timeout = json_real_value(json_object_get(o, "timeout"));
    char why[96];
    snprintf(why, sizeof why, "lease expired (timeout %.3gs)", timeout);
    int back = attempt_failed(w, ids[i], why, NULL);
    if (back < 0)
      unwritten = true;
    else
      log_info("work item %lld in %s: %s; %s", (long long)ids[i], json_string_value(json_object_get(o, "queue")), why,
               back ? "requeued" : "failed");
    requeued |= back > 0;
    json_decref(o);
  }
  if (!store_commit(w->d->store) || unwritten) {
    /* The store cannot write now: the leases stay expired in it; taken back once it can. */
    uv_timer_start(&w->timer, on_lease_timer, 1000, 0);
    return;
  }
  if (requeued) serve_parked(w, NULL);
  arm(w);
}

/* The store cannot write now (a full disk, a read-only or locked store: see herd info):
 * 503, nothing changed. */
static bool store_down(struct daemon *d, struct conn *c) {
  const char *why = store_last_error(d->store);
  conn_error(c, 503, "store_failing", NULL, "the store cannot write now (%s): nothing was changed; try again",
             why && *why ? why : "a write failed");
  return true;
}

/* The store could not hold the work table (see work_init): 503. */
static bool unavailable(struct daemon *d, struct conn *c) {
  if (d->work) return false;
  conn_error(c, 503, "work_unavailable", NULL, "the store has no work table (see the daemon's log)");
  return true;
}

/* ---- withdraw ---- */

static char *new_lease(void) {
  unsigned char b[12];
  if (getrandom(b, sizeof b, 0) != (ssize_t)sizeof b)
    for (size_t i = 0; i < sizeof b; i++) b[i] = (unsigned char)rand();
  char *s = xcalloc(2 * sizeof b + 1, 1);
  for (size_t i = 0; i < sizeof b; i++) snprintf(s + 2 * i, 3, "%02x", b[i]);
  return s;
}

/* Lease the best queued item of the queue; its JSON (with "lease"), or NULL if none. */
static json_t *take(struct work *w, const char *queue) {
  sqlite3_stmt *s = w->best;
  sqlite3_reset(s);
  sqlite3_bind_text(s, 1, queue, -1, SQLITE_TRANSIENT);
  int64_t id = sqlite3_step(s) == SQLITE_ROW ? sqlite3_column_int64(s, 0) : 0;
  sqlite3_reset(s);
  if (!id) return NULL;
  json_t *o = item_json(w, id, NULL);
  double timeout = json_real_value(json_object_get(o, "timeout"));
  json_decref(o);
  if (!store_begin(w->d->store)) return NULL;
  char *lease = new_lease();
  double now = now_wall();
  sqlite3_bind_text(w->lease, 1, lease, -1, SQLITE_TRANSIENT);
  sqlite3_bind_double(w->lease, 2, now + timeout);
  sqlite3_bind_double(w->lease, 3, now);
  sqlite3_bind_int64(w->lease, 4, id);
  step_done(w, w->lease, "work lease");
  qc_move(w, queue, "queued", "running", 1);
  /* Committed before the worker hears of it: a daemon killed now finds it leased (the
   * lease expires and the item is requeued), never handed to two workers. A commit that
   * fails leaves it queued: no one gets it. */
  if (!store_commit(w->d->store)) {
    free(lease);
    return NULL;
  }
  o = item_json(w, id, NULL);
  json_object_set_new(o, "lease", json_string(lease));
  free(lease);
  arm(w);
  return o;
}

static void parked_gone(struct conn *c, void *arg) {
  (void)c;
  parked_free(arg);
}

static void parked_timeout(struct conn *c, void *arg) {
  parked_free(arg);
  reply_none(c);
}

/* Items became available (queue, or any when NULL): hand them to the oldest waiters. */
static void serve_parked(struct work *w, const char *queue) {
  struct list *pos, *tmp;
  list_for_each_safe(pos, tmp, &w->parked) {
    struct parked *p = container_of(pos, struct parked, link);
    if (queue && strcmp(p->queue, queue)) continue;
    json_t *o = take(w, p->queue);
    if (!o) continue;
    struct conn *c = p->c;
    conn_park(c, NULL, NULL, NULL, 0);
    parked_free(p);
    conn_reply(c, 200, json_pack("{s:o}", "work", o));
  }
}

void api_work_withdraw(struct daemon *d, struct conn *c, struct request *r, const char *queue) {
  if (unavailable(d, c)) return;
  struct work *w = d->work;
  char wb[32];
  const char *wait = req_query(r, "wait", wb, sizeof wb);
  double secs = 0;
  if (wait && duration_parse(wait, &secs) < 0) {
    conn_error(c, 400, "bad_wait", json_pack("{s:s}", "param", "wait"), "wait \"%s\" is not a duration", wait);
    return;
  }
  if (secs > CTL_MAX_WAIT_S) secs = CTL_MAX_WAIT_S;
  if (store_stats(d->store)->failing && store_down(d, c)) return;
  json_t *o = take(w, queue);
  if (o) {
    conn_reply(c, 200, json_pack("{s:o}", "work", o));
    return;
  }
  if (store_stats(d->store)->failing && store_down(d, c)) return;
  uint64_t ms = (uint64_t)ceil(secs * 1000);
  if (!ms || d->shutting_down) {
    reply_none(c);
    return;
  }
  struct parked *p = xcalloc(1, sizeof *p);
  p->w = w;
  p->c = c;
  snprintf(p->queue, sizeof p->queue, "%s", queue);
  list_add_tail(&w->parked, &p->link);
  conn_park(c, p, parked_gone, parked_timeout, ms);
}

/* ---- deposit ---- */

static int parse_item(struct conn *c, json_t *it, size_t idx, int *prio, int *retries, double *timeout, char **tags) {
  static const char *const keys[] = {"payload", "priority", "retries", "timeout", "tags", NULL};
  const char *k;
  json_t *v;
  json_object_foreach(it, k, v) {
    bool known = false;
    for (const char *const *x = keys; *x; x++) known |= !strcmp(*x, k);
    if (!known) {
      conn_error(c, 400, "unknown_key", json_pack("{s:s,s:I}", "key", k, "item", (json_int_t)idx),
                 "item %zu: unknown key \"%s\" (payload, priority, retries, timeout, tags)", idx, k);
      return -1;
    }
  }
  *prio = 3;
  *retries = 2;
  *timeout = 3600;
  *tags = NULL;
  if (!json_object_get(it, "payload")) {
    conn_error(c, 400, "bad_item", NULL, "item %zu: \"payload\" is required (any JSON)", idx);
    return -1;
  }
  if ((v = json_object_get(it, "priority"))) {
    if (!json_is_integer(v) || json_integer_value(v) < 1 || json_integer_value(v) > 5) {
      conn_error(c, 400, "bad_item", NULL, "item %zu: priority is a whole number from 1 to 5", idx);
      return -1;
    }
    *prio = (int)json_integer_value(v);
  }
  if ((v = json_object_get(it, "retries"))) {
    if (!json_is_integer(v) || json_integer_value(v) < 0 || json_integer_value(v) > 1000) {
      conn_error(c, 400, "bad_item", NULL, "item %zu: retries is a whole number from 0 to 1000", idx);
      return -1;
    }
    *retries = (int)json_integer_value(v);
  }
  if ((v = json_object_get(it, "timeout"))) {
    double t = -1;
    if (json_is_number(v))
      t = json_number_value(v);
    else if (json_is_string(v) && duration_parse(json_string_value(v), &t) < 0)
      t = -1;
    if (!(t > 0) || t > 365 * 86400.0) {
      conn_error(c, 400, "bad_item", NULL, "item %zu: timeout is a duration above 0 (seconds, or \"10m\")", idx);
      return -1;
    }
    *timeout = t;
  }
  if ((v = json_object_get(it, "tags"))) {
    size_t i;
    json_t *x;
    bool ok = json_is_array(v);
    json_array_foreach(v, i, x) ok &= json_is_string(x);
    if (!ok) {
      conn_error(c, 400, "bad_item", NULL, "item %zu: tags is an array of strings", idx);
      return -1;
    }
    *tags = json_dumps(v, JSON_COMPACT);
  }
  return 0;
}

void api_work_deposit(struct daemon *d, struct conn *c, struct request *r, const char *queue) {
  if (unavailable(d, c)) return;
  struct work *w = d->work;
  json_error_t je;
  json_t *o = json_loadb(r->body, r->body_len, JSON_REJECT_DUPLICATES, &je);
  if (!json_is_object(o)) {
    conn_error(c, 400, "bad_body", NULL, "the body is a work item {\"payload\": ...} or {\"items\": [...]}%s%s",
               o ? "" : ": ", o ? "" : je.text);
    json_decref(o);
    return;
  }
  json_t *items = json_object_get(o, "items");
  if (items && (!json_is_array(items) || json_object_size(o) != 1 || !json_array_size(items) ||
                json_array_size(items) > 10000)) {
    conn_error(c, 400, "bad_body", NULL, "\"items\" is an array of 1 to 10000 work items, alone in the body");
    json_decref(o);
    return;
  }
  if (!items) {
    items = json_array();
    json_array_append(items, o);
  } else {
    json_incref(items);
  }
  size_t i;
  json_t *it;
  json_array_foreach(items, i, it) {
    int prio, retries;
    double timeout;
    char *tags = NULL;
    if (!json_is_object(it)) {
      conn_error(c, 400, "bad_item", NULL, "item %zu is not an object", i);
      goto out;
    }
    if (parse_item(c, it, i, &prio, &retries, &timeout, &tags) < 0) goto out;
    free(tags);
  }
  /* All valid: one transaction, committed before the answer. */
  if (!store_begin(d->store) && store_down(d, c)) goto out;
  json_t *ids = json_array();
  double now = now_wall();
  json_array_foreach(items, i, it) {
    int prio, retries;
    double timeout;
    char *tags = NULL;
    parse_item(c, it, i, &prio, &retries, &timeout, &tags);
    char *payload = json_dumps(json_object_get(it, "payload"), JSON_COMPACT | JSON_ENCODE_ANY);
    sqlite3_stmt *s = w->ins;
    sqlite3_bind_text(s, 1, queue, -1, SQLITE_TRANSIENT);
    sqlite3_bind_text(s, 2, payload, -1, SQLITE_TRANSIENT);
    sqlite3_bind_int(s, 3, prio);
    sqlite3_bind_int(s, 4, retries);
    sqlite3_bind_double(s, 5, timeout);
    sqlite3_bind_text(s, 6, tags ? tags : "[]", -1, SQLITE_TRANSIENT);
    sqlite3_bind_double(s, 7, now);
    step_done(w, s, "work deposit");
    qc_move(w, queue, NULL, "queued", 1);
    json_array_append_new(ids, json_integer(sqlite3_last_insert_rowid(store_db(d->store))));
    free(payload);
    free(tags);
  }
  if (!store_commit(d->store)) {
    json_decref(ids);
    store_down(d, c);
    goto out;
  }
  serve_parked(w, queue);
  conn_reply(c, 201, json_pack("{s:s,s:o}", "queue", queue, "ids", ids));
out:
  json_decref(items);
  json_decref(o);
}

/* ---- report ---- */

static int64_t parse_id(struct conn *c, const char *id) {
  char *end;
  errno = 0;
  long long v = strtoll(id, &end, 10);
  if (!*id || *end || v <= 0 || errno) {
    conn_error(c, 400, "bad_id", NULL, "\"%s\" is not a work item id", id);
    return 0;
  }
  return v;
}

void api_work_get(struct daemon *d, struct conn *c, struct request *r, const char *id) {
  if (unavailable(d, c)) return;
  (void)r;
  int64_t n = parse_id(c, id);
  if (!n) return;
  json_t *o = item_json(d->work, n, NULL);
  if (!o) {
    conn_error(c, 404, "no_such_work", NULL, "no work item %lld", (long long)n);
    return;
  }
  conn_reply(c, 200, json_pack("{s:o}", "work", o));
}

void api_work_done(struct daemon *d, struct conn *c, struct request *r, const char *id) {
  if (unavailable(d, c)) return;
  struct work *w = d->work;
  int64_t n = parse_id(c, id);
  if (!n) return;
  json_t *o = json_loadb(r->body, r->body_len, JSON_REJECT_DUPLICATES, NULL);
  const char *lease = json_string_value(json_object_get(o, "lease"));
  const char *status = json_string_value(json_object_get(o, "status"));
  json_t *result = json_object_get(o, "result"), *error = json_object_get(o, "error");
  if (!json_is_object(o) || !lease || !status || (strcmp(status, "success") && strcmp(status, "failure")) ||
      (error && !json_is_string(error))) {
    conn_error(c, 400, "bad_body", NULL,
               "the body is {\"lease\": \"...\", \"status\": \"success\"|\"failure\", \"result\": any, \"error\": "
               "\"...\"}");
    json_decref(o);
    return;
  }
  char *held = NULL;
  json_t *item = item_json(w, n, &held);
  if (!item) {
    conn_error(c, 404, "no_such_work", NULL, "no work item %lld", (long long)n);
    goto out;
  }
  if (!held || strcmp(held, lease) || strcmp(json_string_value(json_object_get(item, "state")), "running")) {
    conn_error(c, 409, "not_leased", json_pack("{s:O}", "work", item),
               "work item %lld is not leased with this lease (it is %s, attempt %lld): its lease expired and it went "
               "back to its queue, or it was reported already",
               (long long)n, json_string_value(json_object_get(item, "state")),
               (long long)json_integer_value(json_object_get(item, "attempt")));
    goto out;
  }
  bool requeued = false;
  if (!store_begin(d->store) && store_down(d, c)) goto out;
  if (!strcmp(status, "success")) {
    char *res = result ? json_dumps(result, JSON_COMPACT | JSON_ENCODE_ANY) : NULL;
    sqlite3_bind_text(w->finish, 1, "success", -1, SQLITE_STATIC);
    sqlite3_bind_double(w->finish, 2, now_wall());
    if (res) sqlite3_bind_text(w->finish, 3, res, -1, SQLITE_TRANSIENT);
    sqlite3_bind_int64(w->finish, 5, n);
    step_done(w, w->finish, "work finish");
    free(res);
    qc_move(w, json_string_value(json_object_get(item, "queue")), "running", "success", 1);
  } else {
    requeued = attempt_failed(w, n, error ? json_string_value(error) : "failed", result) > 0;
  }
  if (!store_commit(d->store) && store_down(d, c)) goto out;
  if (requeued) serve_parked(w, json_string_value(json_object_get(item, "queue")));
  arm(w);
  conn_reply(c, 200, json_pack("{s:o}", "work", item_json(w, n, NULL)));
out:
  free(held);
  json_decref(item);
  json_decref(o);
}

/* ---- list and prune ---- */

void api_work_list(struct daemon *d, struct conn *c, struct request *r, const char *queue) {
  if (unavailable(d, c)) return;
  struct work *w = d->work;
  char sb[32], lb[32], ob[32];
  const char *state = req_query(r, "state", sb, sizeof sb);
  const char *lim = req_query(r, "limit", lb, sizeof lb), *off = req_query(r, "offset", ob, sizeof ob);
  long limit = lim ? strtol(lim, NULL, 10) : 1000, offset = off ? strtol(off, NULL, 10) : 0;
  if (limit < 1 || limit > 100000 || offset < 0) {
    conn_error(c, 400, "bad_param", NULL, "limit is from 1 to 100000, offset from 0");
    return;
  }
  json_t *a = json_array(), *counts = json_object();
  sqlite3_stmt *s = w->list;
  sqlite3_reset(s);
  sqlite3_bind_text(s, 1, queue, -1, SQLITE_TRANSIENT);
  if (state) sqlite3_bind_text(s, 2, state, -1, SQLITE_TRANSIENT);
  sqlite3_bind_int64(s, 3, limit);
  sqlite3_bind_int64(s, 4, offset);
  while (sqlite3_step(s) == SQLITE_ROW) json_array_append_new(a, row_json(s));
  sqlite3_reset(s);
  sqlite3_clear_bindings(s);
  const char *st;
  json_t *x;
  json_object_foreach(json_object_get(qc_get(w), queue), st, x) if (json_integer_value(x))
      json_object_set(counts, st, x);
  conn_reply(c, 200, json_pack("{s:s,s:o,s:o}", "queue", queue, "work", a, "counts", counts));
}

json_t *work_counts(struct daemon *d) {
  struct work *w = d->work;
  return w ? json_deep_copy(qc_get(w)) : json_object();
}

void work_expire(struct daemon *d, const char *queue, double age) {
  struct work *w = d->work;
  if (!w || !store_begin(d->store)) return;
  sqlite3_stmt *s = w->prune;
  sqlite3_bind_text(s, 1, queue, -1, SQLITE_TRANSIENT);
  sqlite3_bind_double(s, 2, now_wall() - age);
  step_done(w, s, "work retention");
  int n = sqlite3_changes(store_db(d->store));
  if (n) w->qc_dirty = true;
  if (n) log_info("work queue %s: %d finished item(s) past the retention %.3gs forgotten", queue, n, age);
}

void api_work_prune(struct daemon *d, struct conn *c, struct request *r, const char *queue) {
  if (unavailable(d, c)) return;
  struct work *w = d->work;
  char ob[32], sb[32];
  const char *older = req_query(r, "older_than", ob, sizeof ob), *state = req_query(r, "state", sb, sizeof sb);
  double age = 0;
  if (older && duration_parse(older, &age) < 0) {
    conn_error(c, 400, "bad_duration", NULL, "older_than \"%s\" is not a duration", older);
    return;
  }
  if (state && strcmp(state, "success") && strcmp(state, "failure")) {
    conn_error(c, 400, "bad_state", NULL, "state is \"success\" or \"failure\" (only finished items are pruned)");
    return;
  }
  if (!store_begin(d->store) && store_down(d, c)) return;
  sqlite3_stmt *s = w->prune;
  sqlite3_bind_text(s, 1, queue, -1, SQLITE_TRANSIENT);
  sqlite3_bind_double(s, 2, now_wall() - age);
  if (state) sqlite3_bind_text(s, 3, state, -1, SQLITE_TRANSIENT);
  step_done(w, s, "work prune");
  int64_t n = sqlite3_changes(store_db(d->store));
  if (n) w->qc_dirty = true;
  if (!store_commit(d->store) && store_down(d, c)) return;
  conn_reply(c, 200, json_pack("{s:I}", "pruned", (json_int_t)n));
}
