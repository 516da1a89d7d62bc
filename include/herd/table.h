/*
 * The status table `herd status` prints. The daemon renders it from its services
 * (GET /v1/services?format=table), the CLI from the API's JSON (herd status with
 * several patterns): one formatter, so both print the same columns.
 */
#ifndef HERD_TABLE_H
#define HERD_TABLE_H

#include "herd/herd.h"

/** One line of `herd status`. */
struct status_row {
  const char *name, *state, *last_error, *reason, *check_msg;
  int pid;          /* 0: none */
  long long job_id; /* Slurm job (when there is no pid), 0: none */
  double uptime;    /* < 0: none */
  unsigned restarts;
  int check_ok;              /* -1: no result */
  const char *notify_status; /* STATUS= of the running instance ("ready": "notify"), or NULL */
};

/** Append the status table (a header line, then one line per row, in the order given) to
 *  out; colour: ANSI colours on the state column, for a terminal. */
void status_table(struct buf *out, const struct status_row *rows, size_t n, bool colour);

#endif
