/*
 * The Slurm reply parser (slurm_parse.c), every API version and request kind. The first
 * byte picks the version, the kind, the HTTP status and the slimming mode; the rest is the
 * body. Every job read is mapped to herd's view (slurm_job_outcome), as slurm.c does.
 */
#include "herd/slurm_parse.h"

#include <stdint.h>
#include <stdlib.h>
#include <string.h>

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size) {
  if (size < 1) return 0;
  static const int statuses[] = {200, 201, 304, 400, 401, 404, 500, 502};
  uint8_t sel = data[0];
  int ver = SLURM_API_OLDEST + sel % (SLURM_API_NEWEST - SLURM_API_OLDEST + 1);
  enum slurm_req_kind kind = (enum slurm_req_kind)(sel / 11 % 4);
  int status = statuses[sel / 44 % 8];
  slurm_parse_set_slim(sel & 0x80 ? 2 : 1);
  struct slurm_reply r;
  char err[256];
  int rc = slurm_parse_reply(ver, kind, status, (const char *)data + 1, size - 1, &r, err, sizeof err);
  if (rc == 0) {
    for (size_t i = 0; i < r.njobs; i++) {
      struct slurm_outcome o;
      slurm_job_outcome(&r.jobs[i], &o);
      if (!memchr(o.msg, '\0', sizeof o.msg)) abort();
      (void)slurm_base_name(r.jobs[i].base);
      for (uint32_t f = 1; f && f <= r.jobs[i].flags; f <<= 1)
        if (r.jobs[i].flags & f) (void)slurm_flag_name(f);
    }
  } else if (!memchr(err, '\0', sizeof err)) {
    abort();
  }
  slurm_reply_free(&r);
  return 0;
}
