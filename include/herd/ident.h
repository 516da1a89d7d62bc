/*
 * Where herd's processes are found again: an identity every instance carries from birth.
 *
 * Each process herd starts gets HERD_INSTANCE=<herd id>:<instance id> in its environment
 * (the herd id names the state dir, the instance id its row in the store); its children
 * inherit it. /proc/PID/environ shows a process's initial environment to its owner and to
 * root, so a daemon that starts after another one died can find every process of its own,
 * even those whose pid the dead daemon never recorded (killed between the spawn and the
 * store commit): it adopts the ones the store knows as live instances and kills the rest.
 */
#ifndef HERD_IDENT_H
#define HERD_IDENT_H

#include "herd/herd.h"

#define IDENT_ENV "HERD_INSTANCE"

struct ident_proc {
  int pid, sid;
  int64_t instance;
  uint64_t starttime; /* field 22 of /proc/PID/stat */
  bool claimed;       /* part of an instance the daemon took over */
};

/** The processes found carrying one herd's identity, ordered by instance then pid. */
struct ident_scan {
  struct ident_proc *v;
  size_t n;
  size_t nread; /* processes whose environment was read (for the log) */
};

/** The marker for an instance ("HERD_INSTANCE=<herd_id>:<instance>"), malloc'd. */
char *ident_env(const char *herd_id, int64_t instance);
/** Find every live process (not a zombie) whose environment carries herd_id's marker. */
void ident_scan(const char *herd_id, struct ident_scan *out);
/** The instance's session leader (the process herd spawned), or NULL. */
struct ident_proc *ident_leader(struct ident_scan *sc, int64_t instance);
/** Mark every process of the instance as taken over, calling fn (when not NULL) on each;
 *  returns how many there are. */
size_t ident_claim(struct ident_scan *sc, int64_t instance, void (*fn)(struct ident_proc *p, void *arg), void *arg);
void ident_free(struct ident_scan *sc);

#endif
