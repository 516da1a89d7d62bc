/*
 * The config parser (cfg.c, cfg_slurm.c, cfg_hosts.c, jpos.c): file text to specs, or to
 * errors that name file:line:column:field. Every error is formatted and turned to JSON, as
 * the daemon and the API do, and the specs are checked across the set.
 */
#include "herd/cfg.h"
#include "herd/log.h"

#include <stdint.h>
#include <stdlib.h>
#include <string.h>

int LLVMFuzzerInitialize(int *argc, char ***argv) {
  log_setup(LOG_LEVEL_MAX, LOG_TEXT); /* warnings about fields would fill the output */
  return 0;
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size) {
  struct spec_set set = {0};
  struct cfg_errors errs = {0};
  int n = cfg_parse_text("fuzz.json", (const char *)data, size, &set, &errs);
  if (n != (int)errs.n && n > 0) abort();
  if (!errs.n) {
    cfg_validate_deps(set.v, set.n, &errs);
    cfg_validate_hosts(set.v, set.n, set.hosts, set.nhosts, &errs);
    cfg_validate_clusters(set.v, set.n, set.clusters, set.nclusters, &errs);
    for (size_t i = 0; i < set.n; i++) spec_set_find(&set, set.v[i]->name);
  }
  for (size_t i = 0; i < errs.n; i++) {
    if (errs.v[i].line < 1 || errs.v[i].col < 1) abort();
    free(cfg_error_str(&errs.v[i]));
  }
  json_decref(cfg_errors_json(&errs));
  spec_set_free(&set);
  cfg_errors_free(&errs);
  return 0;
}
