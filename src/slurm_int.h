/*
 * The Slurm backend's own parts, shared by its files (not an interface: nothing outside
 * src/slurm*.c includes this): its requests, clusters and jobs, and what the files call of
 * each other. slurm.c: requests, polling, jobs, submit, the backend; slurm_auth.c: the
 * token (JWT signed here, a token file, a token_command, OAuth client credentials).
 */
#ifndef HERD_SLURM_INT_H
#define HERD_SLURM_INT_H

#include "herd/curlx.h"
#include "herd/daemon.h"
#include "herd/slurm.h"
#include "herd/spec.h"

#include <curl/curl.h>
#include <jansson.h>
#include <time.h>
#include <uv.h>

struct sshx_req;

enum rq_kind { RQ_PING, RQ_JOBS, RQ_JOB, RQ_SUBMIT, RQ_CANCEL, RQ_NODE, RQ_TOKEN, RQ__MAX };

struct sreq;
typedef void (*sreq_cb)(struct sreq *r, bool transport_ok, const char *terr);

struct sreq {
  struct curlx_req cx;
  struct cluster *cl;
  enum rq_kind kind;
  CURL *easy;
  struct curl_slist *hdrs;
  char *path;        /* after /slurm/v0.0.NN/ (or a full URL for RQ_TOKEN) */
  char *post;        /* body of a POST */
  json_t *post_json; /* or a JSON body, serialized for the version in use when sent */
  const char *method;
  struct buf body;
  long status;
  struct sjob *job; /* weak: NULLed when the service goes away */
  int64_t job_id;
  int64_t sent_second; /* a listing: the wall-clock second it was asked for */
  double t0, elapsed;
  int ver;
  bool sent;
  /* a cluster with "api": "ssh": the command, what it printed and how it ended */
  struct sshx_req *sx;
  struct buf errout;
  int exit_status;
  bool orphan;     /* its cluster closed while it ran: freed by its callback */
  bool never_sent; /* a transport failure before anything reached the server (refused connect,
                      a session that never came up): certainly not carried out */
  struct list link;
  sreq_cb done;
  char errbuf[CURL_ERROR_SIZE];
};

struct node_addr {
  char name[128], addr[64];
};

struct cluster {
  struct cluster_spec *spec;
  struct cluster_spec *next_spec; /* set by reload */
  struct daemon *d;
  struct list link;
  struct list jobs;  /* struct sjob of the services on this cluster */
  struct list queue; /* requests waiting to be sent */
  struct list sent;  /* requests in flight */
  int inflight;
  uv_timer_t poll_timer, pace_timer;
  int nhandles;
  bool closing;
  int ver;         /* API version in use (0 = not known yet) */
  int probe;       /* version being probed */
  char tag[64];    /* "herd:<herd id>:" */
  char error[256]; /* the last control-plane error, "" when fine */
  double error_since;
  int fails;
  /* auth */
  char *token;
  double token_exp; /* wall clock; 0 = never expires */
  time_t token_mtime;
  double token_checked; /* when the token file was last looked at (monotonic) */
  bool token_busy;      /* a token_command or OAuth request is under way */
  double token_retry_at;
  uv_process_t tokproc;
  uv_pipe_t tokout;
  uv_timer_t tok_timer; /* request_timeout for the token_command */
  bool tok_timed_out;
  struct buf tokbuf;
  bool tok_exited, tok_eof;
  int64_t tok_status;
  /* pacing */
  double bucket, bucket_at;
  /* polling */
  struct sreq *poll;
  int64_t update_time; /* unix second of the last full listing's request (0: send none) */
  double last_full;    /* monotonic */
  double next_poll;    /* monotonic */
  double poll_t0;      /* when the last poll was sent (monotonic) */
  bool need_full;
  /* cancels of stray jobs (herd's, of no current service) already sent: job id -> when */
  int64_t stray_id[64];
  double stray_at[64];
  struct node_addr *nodes;
  size_t nnodes;
  /* counters for the API and bench */
  uint64_t requests[RQ__MAX], bytes_in, bytes_out, polls, polls_unchanged, errors;
  double poll_seconds;
};

struct sjob {
  struct service *s;
  struct cluster *cl;
  struct list link;
  int64_t job_id;      /* 0: none yet */
  bool searching;      /* the submission's outcome is unknown: look for our tag */
  bool cancel_wanted;  /* stop asked before the job id was known */
  bool confirming;     /* GET job/{id} in flight after the job was missing */
  bool left_behind;    /* shutdown: its cancel could not be confirmed (logged once) */
  struct sreq *submit; /* in flight */
  char state[32], reason[64], host[128], desc[160];
  int64_t submit_time, start_time, end_time;
};

/* slurm.c */
void slurm_set_error(struct cluster *cl, const char *fmt, ...) __attribute__((format(printf, 2, 3)));
void slurm_clear_error(struct cluster *cl);
struct sreq *slurm_sreq_new(struct cluster *cl, enum rq_kind kind, const char *method, char *path, char *post,
                            sreq_cb done);
void slurm_enqueue(struct cluster *cl, struct sreq *r, bool front);
void slurm_dispatch(struct cluster *cl);
void slurm_poll_schedule(struct cluster *cl, double at);
void slurm_on_handle_close(uv_handle_t *h);

/* slurm_auth.c */
/** Whether requests may go out now (a token in hand); if not, getting one is under way. */
bool slurm_auth_ready(struct cluster *cl);
/** Kill a token_command that runs (its process group), e.g. at close. */
void slurm_tok_kill(struct cluster *cl);

#endif
