/* OpenSSH's mux protocol, client side (sshmux.c): the packet parser on every kind of answer
 * and on malformed ones; then the client on the loop against a stand-in master on a real
 * Unix socket (the real OpenSSH master is in tests/e2e/test_tunnel.py): hello, pipelined
 * requests answered in order, a refusal's reason, the connection lost with requests
 * pending, a master of another protocol version, a socket nobody listens on. */
#include "herd/sshmux.h"

#include "herd/herd.h"

#include <signal.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "check.h"

static void put32(struct buf *b, uint32_t v) {
  uint8_t x[4] = {(uint8_t)(v >> 24), (uint8_t)(v >> 16), (uint8_t)(v >> 8), (uint8_t)v};
  buf_append(b, x, 4);
}

static uint32_t get32(const uint8_t *p) {
  return (uint32_t)p[0] << 24 | (uint32_t)p[1] << 16 | (uint32_t)p[2] << 8 | (uint32_t)p[3];
}

/* A packet: its length patched in once the body is there. */
static void pkt_end(struct buf *b, size_t start) {
  uint32_t len = (uint32_t)(b->len - start - 4);
  uint8_t *d = (uint8_t *)b->data + start;
  d[0] = (uint8_t)(len >> 24), d[1] = (uint8_t)(len >> 16), d[2] = (uint8_t)(len >> 8), d[3] = (uint8_t)len;
}

static void parse_tests(void) {
  struct sshmux_msg g;
  struct buf b = {0};
  /* hello with the "info" extension, as OpenSSH 9 sends it */
  put32(&b, 0), put32(&b, SSHMUX_HELLO), put32(&b, 4), put32(&b, 4), buf_append(&b, "info", 4), put32(&b, 1),
      buf_append(&b, "0", 1);
  pkt_end(&b, 0);
  for (size_t k = 0; k < b.len; k++) CHECK(sshmux_parse((uint8_t *)b.data, k, &g) == 0, "a prefix of %zu: more", k);
  CHECK(sshmux_parse((uint8_t *)b.data, b.len, &g) == (long)b.len && g.type == SSHMUX_HELLO && g.value == 4, "hello");
  b.len = 0;
  put32(&b, 0), put32(&b, SSHMUX_S_FAILURE), put32(&b, 7), put32(&b, 24),
      buf_append(&b, "Port forwarding failed\r\n", 24);
  pkt_end(&b, 0);
  CHECK(sshmux_parse((uint8_t *)b.data, b.len, &g) == (long)b.len && g.rid == 7 &&
            !strcmp(g.text, "Port forwarding failed"),
        "failure: rid %u text '%s'", g.rid, g.text);
  b.len = 0;
  put32(&b, 0), put32(&b, SSHMUX_S_ALIVE), put32(&b, 3), put32(&b, 4242);
  pkt_end(&b, 0);
  CHECK(sshmux_parse((uint8_t *)b.data, b.len, &g) == (long)b.len && g.rid == 3 && g.value == 4242, "alive");
  /* malformed: a string longer than its packet; an alive without its pid; a huge length;
   * a length shorter than a type */
  b.len = 0;
  put32(&b, 0), put32(&b, SSHMUX_S_PERMISSION_DENIED), put32(&b, 1), put32(&b, 100), buf_append(&b, "x", 1);
  pkt_end(&b, 0);
  CHECK(sshmux_parse((uint8_t *)b.data, b.len, &g) == -1, "string past the packet");
  b.len = 0;
  put32(&b, 0), put32(&b, SSHMUX_S_ALIVE), put32(&b, 1);
  pkt_end(&b, 0);
  CHECK(sshmux_parse((uint8_t *)b.data, b.len, &g) == -1, "alive without a pid");
  b.len = 0;
  put32(&b, 1u << 30), put32(&b, SSHMUX_S_OK);
  CHECK(sshmux_parse((uint8_t *)b.data, b.len, &g) == -1, "a packet over the limit");
  b.len = 0;
  put32(&b, 2), put32(&b, 0);
  CHECK(sshmux_parse((uint8_t *)b.data, b.len, &g) == -1, "a packet shorter than its type");
  /* a control byte and invalid UTF-8 in a reason come out printable */
  b.len = 0;
  put32(&b, 0), put32(&b, SSHMUX_S_FAILURE), put32(&b, 2), put32(&b, 4),
      buf_append(&b,
                 "a\x01\xff"
                 "b",
                 4);
  pkt_end(&b, 0);
  CHECK(sshmux_parse((uint8_t *)b.data, b.len, &g) == (long)b.len && !strcmp(g.text, "a ?b"), "reason '%s'", g.text);
  buf_free(&b);
}

/* ---- a stand-in master ---- */

static uv_loop_t loop;
static uv_pipe_t server, peer;
static struct buf got; /* what the client sent */
static int version = 4;
static bool hang_up_after_hello; /* the master goes away with requests pending */
static int accepted;

static void peer_write(struct buf *b) {
  uv_buf_t x = uv_buf_init(b->data, (unsigned)b->len);
  (void)uv_try_write((uv_stream_t *)&peer, &x, 1); /* (the client may have gone: it is tested for) */
}

static void on_peer_read(uv_stream_t *st, ssize_t n, const uv_buf_t *b) {
  if (n < 0) {
    uv_read_stop(st);
    free(b->base);
    return;
  }
  buf_append(&got, b->base, (size_t)n);
  free(b->base);
  /* answer each whole packet after the hello */
  struct buf out = {0};
  size_t off = 0;
  while (got.len - off >= 4 && got.len - off - 4 >= get32((uint8_t *)got.data + off)) {
    uint32_t len = get32((uint8_t *)got.data + off);
    const uint8_t *p = (uint8_t *)got.data + off + 4;
    uint32_t type = get32(p), rid = len >= 8 ? get32(p + 4) : 0;
    off += 4 + len;
    if (type == SSHMUX_HELLO) {
      if (hang_up_after_hello) {
        uv_close((uv_handle_t *)&peer, NULL);
        break;
      }
      continue;
    }
    size_t start = out.len;
    put32(&out, 0);
    if (type == SSHMUX_C_ALIVE_CHECK) {
      put32(&out, SSHMUX_S_ALIVE), put32(&out, rid), put32(&out, 4242);
    } else if (type == SSHMUX_C_OPEN_FWD && get32(p + 8) == 1) {
      /* listen port at p+12+4+len(listen host): refuse port 1 */
      uint32_t hl = get32(p + 12);
      uint32_t lport = get32(p + 16 + hl);
      if (lport == 1) {
        put32(&out, SSHMUX_S_FAILURE), put32(&out, rid), put32(&out, 22);
        buf_append(&out, "Port forwarding failed", 22);
      } else {
        put32(&out, SSHMUX_S_OK), put32(&out, rid);
      }
    } else {
      put32(&out, SSHMUX_S_OK), put32(&out, rid);
    }
    pkt_end(&out, start);
  }
  if (out.len && !uv_is_closing((uv_handle_t *)&peer)) peer_write(&out);
  buf_free(&out);
  memmove(got.data, got.data + off, got.len - off);
  got.len -= off;
}

static void alloc_cb(uv_handle_t *h, size_t n, uv_buf_t *b) {
  (void)h;
  *b = uv_buf_init(malloc(n), (unsigned)n);
}

static void on_connection(uv_stream_t *srv, int status) {
  CHECK(status == 0, "accept");
  uv_pipe_init(&loop, &peer, 0);
  uv_accept(srv, (uv_stream_t *)&peer);
  accepted++;
  struct buf b = {0};
  put32(&b, 0), put32(&b, SSHMUX_HELLO), put32(&b, (uint32_t)version);
  pkt_end(&b, 0);
  peer_write(&b);
  buf_free(&b);
  got.len = 0;
  uv_read_start((uv_stream_t *)&peer, alloc_cb, on_peer_read);
}

/* ---- the client ---- */

struct answer {
  int status;
  uint32_t value;
  char msg[128];
};
static struct answer answers[16];
static int nanswers;
static char dead_why[256];
static int dead_calls;
static struct sshmux *m;

static void on_answer(void *arg, int status, uint32_t value, const char *msg) {
  CHECK((intptr_t)arg == nanswers, "answers in order: #%d answered as #%d", (int)(intptr_t)arg, nanswers);
  struct answer *a = &answers[nanswers++ % 16];
  a->status = status;
  a->value = value;
  snprintf(a->msg, sizeof a->msg, "%s", msg);
}

static void on_dead(void *arg, const char *why) {
  (void)arg;
  dead_calls++;
  snprintf(dead_why, sizeof dead_why, "%s", why);
  sshmux_close(m);
  m = NULL;
}

static void run_until(int n) {
  for (int i = 0; i < 2000 && nanswers < n && (m || n > 100); i++) uv_run(&loop, UV_RUN_ONCE);
}

int main(void) {
  signal(SIGPIPE, SIG_IGN); /* as in the daemon */
  parse_tests();

  char dir[] = "/tmp/herd-test-sshmux-XXXXXX", path[128];
  CHECK(mkdtemp(dir) != NULL, "temp dir");
  snprintf(path, sizeof path, "%s/m.sock", dir);
  uv_loop_init(&loop);

  /* nobody listens: the requests fail, then the connection */
  m = sshmux_open(&loop, path, on_dead, NULL);
  CHECK(sshmux_alive(m, on_answer, (void *)0), "a request while connecting is queued");
  run_until(1);
  CHECK(nanswers == 1 && answers[0].status < 0 && dead_calls == 1 && strstr(dead_why, "cannot connect"),
        "no master: %d answers, status %d, dead %d: %s", nanswers, answers[0].status, dead_calls, dead_why);

  uv_pipe_init(&loop, &server, 0);
  CHECK(uv_pipe_bind(&server, path) == 0 && uv_listen((uv_stream_t *)&server, 8, on_connection) == 0, "listen");

  /* pipelined: alive, a forward, a refused forward, a cancel; answered in order */
  nanswers = 0, dead_calls = 0;
  m = sshmux_open(&loop, path, on_dead, NULL);
  CHECK(sshmux_alive(m, on_answer, (void *)0), "alive");
  CHECK(sshmux_forward(m, true, "127.0.0.1", 8800, "node1", 8080, on_answer, (void *)1), "forward");
  CHECK(sshmux_forward(m, true, "127.0.0.1", 1, "node1", 8080, on_answer, (void *)2), "forward of port 1");
  CHECK(sshmux_forward(m, false, "127.0.0.1", 8800, "node1", 8080, on_answer, (void *)3), "cancel");
  run_until(4);
  CHECK(nanswers == 4, "4 answers: %d", nanswers);
  CHECK(answers[0].status == 0 && answers[0].value == 4242, "alive: pid %u", answers[0].value);
  CHECK(answers[1].status == 0 && answers[3].status == 0, "forward and cancel done");
  CHECK(answers[2].status == SSHMUX_REFUSED && !strcmp(answers[2].msg, "Port forwarding failed"), "refused: %d %s",
        answers[2].status, answers[2].msg);
  CHECK(sshmux_ok(m) && dead_calls == 0, "still up");
  sshmux_close(m);
  m = NULL;
  uv_close((uv_handle_t *)&peer, NULL);
  uv_run(&loop, UV_RUN_NOWAIT);

  /* the master hangs up with a request pending: it fails, then the connection */
  hang_up_after_hello = true;
  nanswers = 0, dead_calls = 0;
  m = sshmux_open(&loop, path, on_dead, NULL);
  sshmux_forward(m, true, "127.0.0.1", 8800, "node1", 8080, on_answer, (void *)0);
  run_until(1);
  CHECK(nanswers == 1 && answers[0].status < 0 && dead_calls == 1, "hung up: %d answers, status %d, dead %d (%s)",
        nanswers, answers[0].status, dead_calls, dead_why);
  CHECK(!strcmp(dead_why, "the master closed the control connection"), "why: %s", dead_why);
  hang_up_after_hello = false;

  /* another protocol version: refused */
  version = 3;
  nanswers = 0, dead_calls = 0;
  m = sshmux_open(&loop, path, on_dead, NULL);
  sshmux_alive(m, on_answer, (void *)0);
  run_until(1);
  CHECK(dead_calls == 1 && strstr(dead_why, "version 3"), "version 3: dead %d: %s", dead_calls, dead_why);
  CHECK(!sshmux_alive(m, on_answer, NULL), "no request on a failed or closed connection");
  if (m) sshmux_close(m);
  uv_close((uv_handle_t *)&peer, NULL);

  uv_close((uv_handle_t *)&server, NULL);
  uv_run(&loop, UV_RUN_DEFAULT);
  CHECK(uv_loop_close(&loop) == 0, "no handle left");
  buf_free(&got);
  unlink(path);
  rmdir(dir);
  printf("test_sshmux: %d checks, %d failures\n", checks, failures);
  return failures != 0;
}
