/*
 * slurmrestd replies, every API version (v0.0.36 ... v0.0.46), into version-independent
 * structs, and herd's reading of a Slurm job. Pure: no libuv, no I/O, no clock.
 *
 * The schema changes at v0.0.39 and v0.0.40 (job_state string -> array, times and
 * exit_code int -> objects, meta.Slurm -> meta.slurm); the parser goes by the JSON type
 * it finds, so an old-style field in a newer reply (or the reverse) still reads right.
 * Unknown fields are ignored and a field of an unexpected type counts as absent.
 * Facts: the project reference notes slurm-rest-api.md and slurm-state-mappings.md.
 */
#ifndef HERD_SLURM_PARSE_H
#define HERD_SLURM_PARSE_H

#include "herd/svc.h" /* svc_state */

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

/* The API versions slurm_parse_reply accepts (v0.0.36/37 share v0.0.38's shape). */
#define SLURM_API_OLDEST 36
#define SLURM_API_NEWEST 46

/* Base job states: exactly one per job. All but PENDING, RUNNING, SUSPENDED are terminal. */
enum slurm_base {
  SJ_PENDING,
  SJ_RUNNING,
  SJ_SUSPENDED,
  SJ_COMPLETED,
  SJ_CANCELLED,
  SJ_FAILED,
  SJ_TIMEOUT,
  SJ_NODE_FAIL,
  SJ_PREEMPTED,
  SJ_BOOT_FAIL,
  SJ_DEADLINE,
  SJ_OUT_OF_MEMORY,
  SJ_UNKNOWN, /* hidden by a flag (v0.0.38/39 one-word form), missing, or a word we do not know */
  SJ__MAX
};

/* State flags, one bit each (v0.0.40+ array entries after the base; v0.0.38/39 show at most one). */
enum slurm_flag {
  SJF_COMPLETING = 1u << 0,
  SJF_CONFIGURING = 1u << 1,
  SJF_REQUEUED = 1u << 2,
  SJF_REQUEUE_HOLD = 1u << 3,
  SJF_SPECIAL_EXIT = 1u << 4,
  SJF_REQUEUE_FED = 1u << 5,
  SJF_RESIZING = 1u << 6,
  SJF_STOPPED = 1u << 7,
  SJF_SIGNALING = 1u << 8,
  SJF_STAGE_OUT = 1u << 9,
  SJF_RESV_DEL_HOLD = 1u << 10,
  SJF_REVOKED = 1u << 11,
  SJF_LAUNCH_FAILED = 1u << 12,
  SJF_RECONFIG_FAIL = 1u << 13,
  SJF_POWER_UP_NODE = 1u << 14,
  SJF_UPDATE_DB = 1u << 15,
  SJF_EXPEDITING = 1u << 16,
};
#define SJF__COUNT 17

struct slurm_job {
  uint64_t job_id;
  enum slurm_base base; /* SJ_UNKNOWN when v0.0.38/39's one word is a flag that hides the base */
  uint32_t flags;       /* SJF_* */
  char state[32];       /* the word(s) as reported, e.g. "RUNNING" or "FAILED+COMPLETING" */
  char reason[64];      /* state_reason, "" if None/absent */
  char description[256];
  char batch_host[128], nodes[256], partition[64], user[64];
  char name[256], comment[512];
  char std_out[256];                         /* stdout_expanded (v0.0.43+) if set, else standard_output */
  int64_t submit_time, start_time, end_time; /* unix s, 0 = unset/infinite */
  int64_t time_limit;                        /* minutes, 0 = unset/infinite */
  /* Decoded exit: a raw wait status (v0.0.38, v0.0.39's number) via WIFEXITED/WEXITSTATUS/
   * WTERMSIG; v0.0.40+ from return_code/signal.id. exit_known is false when unset, PENDING or
   * INVALID. Killed by a signal: exit_code -1, exit_signal N (proc.c's convention). */
  bool exit_known;
  int exit_code;
  int exit_signal;
};

struct slurm_reply {
  int status;      /* HTTP status given by the caller */
  char error[512]; /* all errors[] joined with "; " ("error: description"), "" if none */
  int error_code;  /* first non-zero error_code or error_number, 0 if none (-1 counts) */
  int nerrors;
  char warning[512]; /* all warnings[] descriptions joined with "; " */
  int nwarnings;
  bool unchanged;      /* update_time said: no changes (v0.0.39 warning / v0.0.40+ last_update 0), or HTTP 304 */
  int64_t last_update; /* v0.0.40+ last_update.number (send back as update_time), else 0 */
  struct slurm_job *jobs;
  size_t njobs;
  int64_t job_id;       /* submit reply: job_id (top level, else result.job_id), 0 if absent */
  char submit_msg[256]; /* submit reply: job_submit_user_msg */
  char release[32];     /* meta Slurm/slurm release, e.g. "22.05.8" */
  bool ping_up;         /* ping reply: at least one controller, and all of them UP/responding */
  int npings;
};

enum slurm_req_kind { SR_JOBS, SR_SUBMIT, SR_PING, SR_OTHER };

/** "v0.0.38" -> 38, "0.0.42" -> 42; anything else -1. */
int slurm_api_version(const char *s);

/**
 * Parse a reply body of API version `ver` (SLURM_API_OLDEST..SLURM_API_NEWEST) to a request
 * of `kind` (SR_JOBS also reads GET job/{id} and jobs/state). Returns 0 when the body is a
 * JSON object: errors[] and warnings[] are reported in `out`, whatever the status. Returns -1
 * with `err` set for an unsupported version, or a body that is empty, text/plain or not a JSON
 * object; err then quotes the first 200 bytes of the body, made printable (also in out->error).
 * HTTP 304 (v0.0.38's "unchanged") with an empty body returns 0 with out->unchanged set.
 * `out` is always initialised; release it with slurm_reply_free. `err` may be NULL.
 */
int slurm_parse_reply(int ver, enum slurm_req_kind kind, int http_status, const char *body, size_t len,
                      struct slurm_reply *out, char *err, size_t errlen);

/** Free what slurm_parse_reply allocated; `r` may be reused afterwards. */
void slurm_reply_free(struct slurm_reply *r);
/** Job listings are slimmed to the keys herd reads before they are parsed: mode 1 (the
 *  default) for replies over 4 KiB, 2 always, 0 never (tests compare the ways). */
void slurm_parse_set_slim(int mode);

/* herd's reading of one job. */
enum slurm_phase {
  SP_QUEUED,  /* PENDING, or being requeued (REQUEUED, REQUEUE_HOLD, SPECIAL_EXIT, RESV_DEL_HOLD,
                 REQUEUE_FED, EXPEDITING): not a failure */
  SP_RUNNING, /* RUNNING, SUSPENDED, STOPPED, CONFIGURING, RESIZING, SIGNALING: not a failure */
  SP_ENDING,  /* COMPLETING/STAGE_OUT with the base unknown (v0.0.38/39): wait for the final state */
  SP_ENDED,   /* a terminal base state: see `end` */
  SP_UNKNOWN, /* no base state and no flag we understand: herd cannot tell (treat as S_UNKNOWN) */
};

struct slurm_outcome {
  enum slurm_phase phase;
  svc_state end; /* SP_ENDED: COMPLETED -> S_COMPLETED, TIMEOUT -> S_TIMEOUT, CANCELLED -> S_STOPPED,
                    FAILED, NODE_FAIL, OUT_OF_MEMORY, BOOT_FAIL, PREEMPTED, DEADLINE, REVOKED -> S_FAILED;
                    S_UNKNOWN for the other phases */
  int code, sig; /* SP_ENDED with a known exit: exit code (-1 if signalled) / signal (COMPLETED: 0 / 0); else -1 / 0 */
  char msg[192]; /* for people: "PENDING (Priority)", "FAILED: exit code 3", "SUSPENDED (not a failure)" */
};

/** Map a job to herd's view. Never fails: an unreadable job is SP_UNKNOWN. */
void slurm_job_outcome(const struct slurm_job *j, struct slurm_outcome *o);

/** The name of a base state ("PENDING"), "UNKNOWN" for SJ_UNKNOWN, "?" out of range. */
const char *slurm_base_name(enum slurm_base b);
/** The name of one flag bit ("COMPLETING"), NULL when `flag` is not exactly one known bit. */
const char *slurm_flag_name(uint32_t flag);

#endif
