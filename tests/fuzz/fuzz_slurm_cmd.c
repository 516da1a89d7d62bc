/*
 * What Slurm's commands print, read by slurm_cmd.c (a cluster with "api": "ssh"): squeue's
 * listing, scontrol/sacct's job, sbatch's id, scancel, sinfo's node address. The first byte
 * picks the command and its exit status; the rest splits at the first NUL into standard
 * output and standard error. Every job read is mapped to herd's view, as slurm.c does.
 */
#include "herd/slurm_cmd.h"

#include <stdint.h>
#include <stdlib.h>
#include <string.h>

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size) {
  if (size < 1) return 0;
  static const int statuses[] = {0, 1, 2, 124, 127, -1};
  uint8_t sel = data[0];
  enum slurm_cmd_kind kind = (enum slurm_cmd_kind)(sel % SC__MAX);
  int status = statuses[sel / SC__MAX % 6];
  const char *out = (const char *)data + 1, *nul = memchr(out, '\0', size - 1);
  size_t outlen = nul ? (size_t)(nul - out) : size - 1;
  const char *err = nul ? nul + 1 : "";
  size_t errlen = nul ? size - 1 - outlen - 1 : 0;
  struct slurm_reply r;
  enum slurm_verdict v = slurm_cmd_parse(kind, status, out, outlen, err, errlen, &r);
  if (v > SCV_TROUBLE || !memchr(r.error, '\0', sizeof r.error)) abort();
  for (size_t i = 0; i < r.njobs; i++) {
    struct slurm_outcome o;
    slurm_job_outcome(&r.jobs[i], &o);
    if (!memchr(o.msg, '\0', sizeof o.msg) || !memchr(r.jobs[i].comment, '\0', sizeof r.jobs[i].comment)) abort();
  }
  slurm_reply_free(&r);
  char addr[64];
  if (slurm_cmd_node_addr(out, outlen, "vm", addr, sizeof addr) && !memchr(addr, '\0', sizeof addr)) abort();
  return 0;
}
