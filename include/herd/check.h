/*
 * Health checks, run on the loop without a blocking call: HTTP(S) through the libcurl
 * multi interface driven by libuv (a uv_poll per socket, one uv_timer), TCP with
 * uv_tcp_connect, exec with uv_spawn. Each service with a check has one check timer
 * that schedules the next run and bounds the running one.
 */
#ifndef HERD_CHECK_H
#define HERD_CHECK_H

#include "herd/daemon.h"

struct checker;

/** The last result, for status and the API. */
struct check_result {
  double at;       /* wall clock */
  double duration; /* seconds */
  bool ok;
  char msg[256];
};

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
