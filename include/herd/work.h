/*
 * Work queues for external workers (CHIME's deposit/withdraw): items with an opaque JSON
 * payload, a priority, retries and a timeout wait in a named queue; a worker withdraws the
 * best one and holds it under a lease (its timeout) until it reports success or failure.
 * A failure or an expired lease counts an attempt and requeues the item until its retries
 * are spent. Every item lives in the store (table work): a deposit, a withdrawal and a
 * report are committed before they are answered, so a kill -9 of the daemon loses none and
 * hands none out twice. See README "Work queues".
 */
#ifndef HERD_WORK_H
#define HERD_WORK_H

#include <jansson.h>

struct daemon;
struct conn;
struct request;

/** Create the table (if new) and arm the lease timer for the leases the store holds.
 *  0, or -1 when the store cannot hold the table. */
int work_init(struct daemon *d);
/** Close the lease timer and let go of parked withdrawals (shutdown). */
void work_close(struct daemon *d);
void work_free(struct daemon *d);

/** Forget the queue's finished items that ended more than `age` seconds ago (retention). */
/** For metrics: {"QUEUE": {"queued": N, "running": N, "success": N, "failure": N}, ...}. */
json_t *work_counts(struct daemon *d);
void work_expire(struct daemon *d, const char *queue, double age);

void api_work_deposit(struct daemon *d, struct conn *c, struct request *r, const char *queue);
void api_work_withdraw(struct daemon *d, struct conn *c, struct request *r, const char *queue);
void api_work_list(struct daemon *d, struct conn *c, struct request *r, const char *queue);
void api_work_get(struct daemon *d, struct conn *c, struct request *r, const char *id);
void api_work_done(struct daemon *d, struct conn *c, struct request *r, const char *id);
void api_work_prune(struct daemon *d, struct conn *c, struct request *r, const char *queue);

#endif
