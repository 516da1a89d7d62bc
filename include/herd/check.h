/*
 * Health checks, run on the loop without a blocking call: HTTP(S) through the libcurl
 * multi interface driven by libuv (a uv_poll per socket, one uv_timer), TCP with
 * uv_tcp_connect, exec with uv_spawn. Each service with a check has one check timer
 * that schedules the next run and bounds the running one.
 */
#ifndef HERD_CHECK_H
#define HERD_CHECK_H

#include "herd/daemon.h"

#include <llhttp.h>

struct checker;

/** The last result, for status and the API. */
struct check_result {
  double at;       /* wall clock */
  double duration; /* seconds */
  bool ok;
  char msg[256];
};

/* The answer to a plain http:// check, read off its kept-alive connection by herd's own
 * client (curl reads the others): its status, its body when the check looks into it, and
 * whether the connection can carry the next request. Pure: bytes in, verdict out. */
#define CHECK_BODY_MAX (64 * 1024) /* of a body, only this much is kept */
struct check_answer {
  llhttp_t parser;
  int status;
  bool head;        /* the request was HEAD: no body, whatever the headers announce */
  struct buf *body; /* the body goes here, cut at CHECK_BODY_MAX; NULL: not kept */
  bool got_bytes;   /* anything arrived */
  bool complete;    /* the whole answer is in */
  bool keep;        /* complete, and the connection can be reused */
  char error[160];  /* why it is broken (-1 below) */
};
/** Expect the answer to a new request (HEAD or not); `body` (may be NULL) is emptied. */
void check_answer_begin(struct check_answer *a, bool head, struct buf *body);
/** Bytes off the connection: 1 when the answer is complete (what follows it is not read,
 *  and the connection is not kept), 0 when more is needed, -1 when it is broken. */
int check_answer_read(struct check_answer *a, const char *data, size_t n);
/** The server closed the connection: 1 when that completes the answer (an answer without a
 *  length ends so), -1 when it is broken or there was none. */
int check_answer_eof(struct check_answer *a);
/** Upper bounds (seconds) of the check latency histogram's buckets; +Inf is implied. */
#define CHECK_LAT_BOUNDS                                                                                               \
  { 0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10 }
#define CHECK_LAT_NB 13

/** Every result since the checker was made (metrics). */
struct check_stats {
  uint64_t runs, passes;
  uint64_t lat[CHECK_LAT_NB]; /* results that took at most CHECK_LAT_BOUNDS[i] (not cumulative) */
  double lat_sum;             /* seconds */
};

/** Set up the daemon-wide curl multi handle and its timer. */
int check_global_init(struct daemon *d);
/** Tear it down; every checker must be closed first. */
void check_global_close(struct daemon *d);

/** Create the service's checker (when its spec has a check). */
void check_attach(struct service *s);
/** Begin checking (first run soon, spread by a per-service offset), or stop. */
void check_start(struct service *s);
void check_stop(struct service *s);
/** Close the checker's handles (service going away). */
void check_close(struct service *s);
/** The last result as JSON, or null. */
json_t *check_json(struct service *s);
/** Only the last result's ok and message (for summaries), or null. */
json_t *check_json_brief(struct service *s);
/** One line for status: "HTTP 500 (3ms)". NULL when there is none. */
const char *check_last_msg(struct service *s);
bool check_last_ok(struct service *s);
/** The service's check counters, or NULL when it has no check. */
const struct check_stats *check_stats(struct service *s);

#endif
