/* GET /metrics (Prometheus text format 0.0.4) and GET /v1/health: metrics.c. */
#ifndef HERD_METRICS_H
#define HERD_METRICS_H

#include "herd/herd.h"

/** Append s as a label value of the text format: backslash, double quote and newline escaped
 *  (\\, \", \n); every other byte as it is. */
void metrics_label(struct buf *b, const char *s);

#endif
