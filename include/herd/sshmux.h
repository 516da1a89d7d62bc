/*
 * OpenSSH's multiplexing protocol (PROTOCOL.mux in OpenSSH's sources), client side, on the
 * loop: what `ssh -O forward`, `-O cancel` and `-O check` say to a ControlMaster, spoken by
 * herd itself over one kept connection to the master's control socket. A request costs a
 * write and a read instead of an ssh process (about 17 ms each here), and requests are
 * pipelined: the master reads one whole packet at a time and answers in order, so a cancel
 * followed at once by a forward of the same port re-points it with no round trip between.
 */
#ifndef HERD_SSHMUX_H
#define HERD_SSHMUX_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>
#include <uv.h>

struct sshmux;

/** A request's answer. status: 0 done (value: the master's pid for an alive check);
 *  SSHMUX_REFUSED the master refused it (msg: its reason, "Port forwarding failed"); < 0 the
 *  connection went away first (a uv error code; msg says what happened). */
typedef void (*sshmux_cb)(void *arg, int status, uint32_t value, const char *msg);
#define SSHMUX_REFUSED 1

/** The connection failed or ended: called once, from a loop callback, after each pending
 *  request's callback (status < 0). The owner then closes it with sshmux_close (a request's
 *  callback may close it too: the remaining callbacks are then dropped). */
typedef void (*sshmux_dead_cb)(void *arg, const char *why);

/** Connect to the control socket at path. Requests may be made at once (they wait for the
 *  connection). NULL when the path cannot be a Unix socket address. */
struct sshmux *sshmux_open(uv_loop_t *loop, const char *path, sshmux_dead_cb dead, void *arg);
/** Add (open) or cancel a local forward listen_host:lport -> connect_host:cport. False (and
 *  no callback, ever) when the connection is not usable: see sshmux_ok. */
bool sshmux_forward(struct sshmux *m, bool open, const char *listen_host, int lport, const char *connect_host,
                    int cport, sshmux_cb cb, void *arg);
/** Ask the master whether it is alive: value = its pid. */
bool sshmux_alive(struct sshmux *m, sshmux_cb cb, void *arg);
/** Whether the connection is still usable (not failed, not closed). */
bool sshmux_ok(const struct sshmux *m);
/** Close: pending requests are dropped without their callbacks (the owner knows them);
 *  the memory goes once the handle is closed. */
void sshmux_close(struct sshmux *m);

/* ---- the wire, for tests and the fuzzer ---- */

/** One packet from the master. */
struct sshmux_msg {
  uint32_t type, rid, value; /* value: a hello's version, an alive's pid, a remote port */
  char text[256];            /* a refusal's reason (sanitized, cut) */
};
/** Parse the packet at the head of p[0..n): its length (> 0), 0 when more bytes are needed,
 *  -1 when it is malformed (too long, or its body too short for its type). */
long sshmux_parse(const uint8_t *p, size_t n, struct sshmux_msg *out);

#define SSHMUX_HELLO 0x00000001u
#define SSHMUX_C_ALIVE_CHECK 0x10000004u
#define SSHMUX_C_OPEN_FWD 0x10000006u
#define SSHMUX_C_CLOSE_FWD 0x10000007u
#define SSHMUX_S_OK 0x80000001u
#define SSHMUX_S_PERMISSION_DENIED 0x80000002u
#define SSHMUX_S_FAILURE 0x80000003u
#define SSHMUX_S_ALIVE 0x80000005u
#define SSHMUX_S_REMOTE_PORT 0x80000007u

#endif
