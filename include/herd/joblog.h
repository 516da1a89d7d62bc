/*
 * A batch job's own output for `herd logs --job [-f]`: read here when this host can (a shared
 * filesystem; on the thread pool, never on the loop), else through the cluster's ssh host over
 * its libssh2 session (`tail` on the login node). Following polls once a second for what was
 * appended (from the byte it got to), here or over the session, until the client leaves.
 */
#ifndef HERD_JOBLOG_H
#define HERD_JOBLOG_H

#include "herd/ctl.h"
#include "herd/daemon.h"

/** Answer c with the last `lines` lines (-1: all) of `path` (taken), and with `follow` what is
 *  appended after them. `host`: the ssh host to read through when `path` is not readable here
 *  (NULL: here only). */
void joblog_serve(struct daemon *d, struct conn *c, char *path, const char *host, long lines, bool follow);

#endif
