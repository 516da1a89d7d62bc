/* Helpers for code on the one libuv loop (any module may use them). */
#ifndef HERD_LOOP_H
#define HERD_LOOP_H

#include <stddef.h>
#include <uv.h>

/* One read buffer for every stream and FIFO: reads are handled synchronously on the loop
 * thread, so one buffer serves them all. */
#define LOOP_READBUF 65536
extern char loop_readbuf[LOOP_READBUF];

/** The uv_read_start allocator of every stream: loop_readbuf. */
void loop_alloc(uv_handle_t *h, size_t suggested, uv_buf_t *b);
/** Start a one-shot timer that fires at `at` (monotonic seconds, as now_mono()), never early. */
void timer_arm(uv_loop_t *loop, uv_timer_t *t, uv_timer_cb cb, double at);

#endif
