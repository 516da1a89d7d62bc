/*
 * Slurm through its own commands, run on a login node over ssh (a cluster with "api": "ssh"):
 * the command lines herd sends and the reading of what they print into slurm_parse's structs,
 * so the Slurm backend treats a listing, a job, a submission or a cancel the same way whether
 * it came from slurmrestd or from squeue. Pure: no libuv, no I/O, no clock.
 *
 * Measured on Slurm 22.05 (Debian 12): `squeue --json` ignores -j, --me and -t and prints
 * every user's jobs at ~3.7 KB a job, so herd lists with a lean `-o` format (~90 bytes a job,
 * times as Unix seconds through SLURM_TIME_FORMAT=%s) and asks `scontrol -o show job` for
 * the exit code of a job that ended (squeue has no exit code field), then `sacct` for one
 * that left slurmctld's memory (MinJobAge). `sbatch --export=NAMES` gives the job the login
 * user's environment plus the named variables.
 */
#ifndef HERD_SLURM_CMD_H
#define HERD_SLURM_CMD_H

#include "herd/slurm_parse.h"

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

enum slurm_cmd_kind { SC_LIST, SC_JOB, SC_SUBMIT, SC_CANCEL, SC_NODE, SC__MAX };

/** What a command's result means. */
enum slurm_verdict {
  SCV_OK,      /* done; the reply holds what it printed */
  SCV_REFUSED, /* Slurm decided: no (error says why) */
  SCV_GONE,    /* no such job (slurmctld forgot it and accounting has no row) */
  SCV_TROUBLE, /* no decision: slurmctld unreachable, a command missing, output not understood */
};

/** A submission: what sbatch is told besides the script (given on its standard input). */
struct slurm_cmd_submit {
  const char *name, *comment, *cwd, *output, *error;
  const char *partition, *nodes, *gres, *account, *qos;
  int time_limit; /* minutes, 0: the partition's */
  int cpus_per_task;
  uint64_t memory_mb;
  bool mcs_label;   /* also --mcs-label=<comment> */
  const char **env; /* "K=V" for the job's environment, NULL-terminated */
};

/** One shell line for the login node (malloc'd). */
char *slurm_cmd_list(void);
char *slurm_cmd_job(int64_t job_id);
char *slurm_cmd_cancel(int64_t job_id);
char *slurm_cmd_node(const char *node);
/** NULL when an environment name is not a shell identifier (err says which). */
char *slurm_cmd_submit(const struct slurm_cmd_submit *k, char *err, size_t errlen);

/**
 * Read a command's result: its exit status (-1: none was given), standard output and error.
 * `rep` is always initialised (release it with slurm_reply_free): SC_LIST and SC_JOB fill
 * jobs[], SC_SUBMIT job_id; a failure sets rep->error (the command's own words, printable,
 * one line) and rep->error_code (2017 for SCV_GONE, -1 for SCV_TROUBLE, 1 for SCV_REFUSED).
 */
enum slurm_verdict slurm_cmd_parse(enum slurm_cmd_kind kind, int status, const char *out, size_t outlen,
                                   const char *err, size_t errlen, struct slurm_reply *rep);

/** The address of `node` in `sinfo -N -o '%N|%o'` output, into addr; false when absent. */
bool slurm_cmd_node_addr(const char *out, size_t len, const char *node, char *addr, size_t addrlen);

/** The one-word state Slurm's commands print ("RUNNING", "CANCELLED", "COMPLETING") into
 *  j->state, j->base and j->flags. */
void slurm_job_set_state(struct slurm_job *j, const char *word);

#endif
