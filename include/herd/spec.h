/* A service spec: what the user asked for, validated. */
#ifndef HERD_SPEC_H
#define HERD_SPEC_H

#include "herd/herd.h"
#include "herd/svc.h"

#include <jansson.h>

enum check_type { CHECK_HTTP, CHECK_TCP, CHECK_EXEC, CHECK__MAX };
enum endpoint_proto { PROTO_TCP, PROTO_HTTP, PROTO_HTTPS };
enum dep_cond { DEP_STARTED, DEP_HEALTHY, DEP_COMPLETED, DEP__MAX };

/** A health check (see README "Health checks"). */
struct check_spec {
  enum check_type type;
  char *url;    /* http: absolute URL; or */
  char *path;   /* http: path relative to the endpoint */
  char *method; /* GET or HEAD */
  int status_lo, status_hi;
  char **headers; /* "Name: value", NULL-terminated */
  char *body_contains;
  char *ca_file;
  bool insecure;
  char *host;     /* tcp: default the endpoint's host */
  int port;       /* tcp: default the endpoint's port */
  char **command; /* exec: argv */
  char *ssh_host; /* exec: run it on this ssh host (a libssh2 session), not here */
  int ssh_line, ssh_col;
  double interval, timeout;
  unsigned failure_threshold, success_threshold;
  bool restart_on_unhealthy;
  double unhealthy_grace;
};

struct endpoint_spec {
  bool set;
  enum endpoint_proto protocol;
  char *host;
  int port;      /* 0: choose one from the range */
  bool allocate; /* if the port is busy, take another */
  int range_lo, range_hi;
  int local_port; /* through an ssh host: the fixed local port that reaches it (0: none) */
};

/** An ssh host: herd keeps one OpenSSH ControlMaster to it and carries services' endpoints
 *  over it as local port forwards (see README "ssh hosts and tunnels"). */
struct host_spec {
  char *name;
  char *destination; /* "user@host" or "host" */
  int port;          /* 0: ssh's default */
  char *identity_file, *known_hosts, *host_key_alias, *proxy_jump;
  char *identity_agent;  /* the ssh-agent socket (OpenSSH's IdentityAgent), or NULL: $SSH_AUTH_SOCK */
  char **options;        /* extra ssh_config options, "Key=Value", NULL-terminated */
  double alive_interval; /* ServerAliveInterval (seconds) */
  int alive_count;       /* ServerAliveCountMax */
  double connect_timeout;
  char *source; /* the file it came from */
  int line, col;
};

struct dep_spec {
  char *service;
  enum dep_cond cond;
  int line, col; /* where it was written, for errors found across files */
};

enum backend { BACKEND_LOCAL, BACKEND_SLURM, BACKEND__MAX };
enum auth_kind { AUTH_NONE, AUTH_TOKEN, AUTH_TOKEN_COMMAND, AUTH_JWT_KEY, AUTH_OAUTH, AUTH__MAX };

/** A secret given literally, from an environment variable (read at load) or a file (re-read when it changes). */
struct secret_spec {
  char *value; /* literal, or the env variable's value */
  char *file;
};

enum cluster_api { CLUSTER_REST, CLUSTER_SSH };

/** A Slurm cluster reached through slurmrestd, or through its commands on an ssh host
 *  (see README "Slurm"). */
struct cluster_spec {
  char *name;
  enum cluster_api api; /* "api": "rest" (default) or "ssh" (sbatch/squeue/... on host `ssh`) */
  char *url;            /* as given: http://host:port or unix:/path */
  char *base;           /* the HTTP base URL ("http://localhost" for a unix socket) */
  char *unix_path;      /* unix socket path, or NULL */
  int api_version;      /* 38..46, or 0 = auto */
  char *user;           /* X-SLURM-USER-NAME */
  enum auth_kind auth;
  struct secret_spec token; /* AUTH_TOKEN */
  char **token_command;     /* AUTH_TOKEN_COMMAND: argv */
  char *jwt_key;            /* AUTH_JWT_KEY: key file */
  double token_lifespan;    /* AUTH_JWT_KEY: lifetime of minted tokens */
  char *oauth_url, *oauth_client_id, *oauth_scope;
  struct secret_spec oauth_secret;
  double poll_interval, steady_interval, request_timeout, full_refresh;
  double rate_limit; /* requests per second (polls included) */
  char *job_prefix;  /* job names are <prefix>.<service> */
  char *cwd;         /* default working directory of jobs */
  bool mcs_label;    /* also tag jobs with mcs_label (clusters with an MCS plugin) */
  char *ssh;         /* the ssh host through which its compute nodes are reached (services inherit it) */
  int ssh_line, ssh_col;
  char *canon, *source;
  int line, col;
};

struct container_spec {
  char *runtime; /* apptainer, singularity or podman */
  char *image;
  char **binds;
  bool gpu;
};

/** What a Slurm service asks of the scheduler. */
struct slurm_spec {
  char *cluster;
  char *script; /* the whole batch script (given, or generated from command/container) */
  char *partition, *nodes, *gres, *account, *qos, *output, *error;
  int time_limit; /* minutes, 0 = the partition's default */
  int cpus_per_task;
  uint64_t memory_mb;
  bool has_container;
  struct container_spec container;
  int line, col; /* where "cluster" was written, for errors found across files */
};

/** A job: work that runs to completion, waiting its turn in a queue (see README "Jobs"). */
struct job_spec {
  char *queue;    /* the queue it waits in ("default") */
  int priority;   /* 1-5, higher first (default 3) */
  int retries;    /* attempts after the first one that fails (default 0) */
  double timeout; /* wall time of one attempt; past it the process group is stopped: TIMEOUT (0 = none) */
};

/** A job queue's settings ("queues" in a config file). */
struct queue_spec {
  char *name;
  unsigned max_running; /* 0: no limit */
  double retention;     /* finished jobs and work items are forgotten this long after they end (0: kept) */
};

struct spec {
  char *name;
  enum backend backend;
  struct slurm_spec *slurm; /* backend slurm */
  char **argv;              /* NULL-terminated */
  char **env;               /* "K=V", NULL-terminated; added to herd's own environment */
  char *cwd;                /* NULL: the state dir */
  char *user, *group;
  uid_t uid;
  gid_t gid;
  bool set_uid, set_gid;
  restart_policy restart;
  struct svc_backoff backoff;
  int stop_signal;
  double stop_grace;
  double start_timeout;
  double ready_after;
  char **tags; /* NULL-terminated */
  uint64_t log_max_size;
  unsigned log_keep;
  double start_period;  /* with a check: STARTING may last this long (default start_timeout) */
  double queue_timeout; /* a batch instance queued longer than this ends in TIMEOUT (0 = never) */
  char *ssh;            /* the ssh host its endpoint is reached through, or NULL */
  int ssh_line, ssh_col;
  struct check_spec *check; /* NULL: no health check */
  struct endpoint_spec endpoint;
  struct dep_spec *deps;
  size_t ndeps;
  bool restart_with_dependency;
  bool notify_ready;    /* "ready": "notify": HEALTHY comes with READY=1 on herd's notify socket */
  double watchdog;      /* > 0: WATCHDOG=1 at least this often, or the instance is FAILED (seconds) */
  struct job_spec *job; /* a job (run to completion through a queue), or NULL for a service */
  json_t *json;         /* the spec as given (owned reference) */
  char *canon;          /* canonical compact JSON with sorted keys: equal canon = same spec */
  char *source;         /* the file it came from, or "api" */
};

void spec_free(struct spec *s);
void cluster_spec_free(struct cluster_spec *c);
void host_spec_free(struct host_spec *h);
const char *backend_name(enum backend b);
/** The policy the state machine needs, derived from the spec. */
void spec_policy(const struct spec *s, struct svc_policy *p);
bool spec_has_tag(const struct spec *s, const char *tag);
const char *dep_cond_name(enum dep_cond c);
const char *check_type_name(enum check_type t);

#endif
