/* libcurl's multi interface on libuv (see curlx.h). */
#include "herd/curlx.h"

#include "herd/herd.h"

#include <dlfcn.h>
#include <stdio.h>
#include <stdlib.h>

struct curl_api CX;

static struct {
  uv_loop_t *loop;
  CURLM *multi;
  uv_timer_t timer;
  uv_idle_t kick;
  struct list socks;
  bool open;
} G;

struct csock {
  uv_poll_t poll;
  curl_socket_t fd;
  struct list link;
};

static int curl_load(char *err, size_t len) {
  if (CX.so) return 0;
  void *so = dlopen("libcurl.so.4", RTLD_NOW | RTLD_LOCAL);
  if (!so) {
    snprintf(err, len, "HTTP requests need libcurl: %s", dlerror());
    return -1;
  }
#define SYM(field, name)                                                                                               \
  if (!(*(void **)&CX.field = dlsym(so, name))) {                                                                      \
    snprintf(err, len, "libcurl lacks %s", name);                                                                      \
    dlclose(so);                                                                                                       \
    return -1;                                                                                                         \
  }
  SYM(global_init, "curl_global_init")
  SYM(global_cleanup, "curl_global_cleanup")
  SYM(easy_init, "curl_easy_init")
  SYM(easy_cleanup, "curl_easy_cleanup")
  SYM(easy_reset, "curl_easy_reset")
  SYM(easy_setopt, "curl_easy_setopt")
  SYM(easy_getinfo, "curl_easy_getinfo")
  SYM(easy_strerror, "curl_easy_strerror")
  SYM(easy_escape, "curl_easy_escape")
  SYM(free, "curl_free")
  SYM(multi_init, "curl_multi_init")
  SYM(multi_cleanup, "curl_multi_cleanup")
  SYM(multi_setopt, "curl_multi_setopt")
  SYM(multi_add_handle, "curl_multi_add_handle")
  SYM(multi_remove_handle, "curl_multi_remove_handle")
  SYM(multi_assign, "curl_multi_assign")
  SYM(multi_socket_action, "curl_multi_socket_action")
  SYM(multi_info_read, "curl_multi_info_read")
  SYM(multi_strerror, "curl_multi_strerror")
  SYM(slist_append, "curl_slist_append")
  SYM(slist_free_all, "curl_slist_free_all")
#undef SYM
  CX.so = so;
  return 0;
}

/* Drain completed transfers after every curl_multi_socket_action, timer path included. */
static void multi_info(void) {
  CURLMsg *m;
  int left;
  while (G.multi && (m = CX.multi_info_read(G.multi, &left))) {
    if (m->msg != CURLMSG_DONE) continue;
    CURL *e = m->easy_handle;
    CURLcode res = m->data.result;
    struct curlx_req *r = NULL;
    CX.easy_getinfo(e, CURLINFO_PRIVATE, (char **)&r);
    /* Removed before the callback, which may re-add or clean up the handle. */
    CX.multi_remove_handle(G.multi, e);
    if (r && r->done) r->done(r, res);
  }
}

static void act(curl_socket_t fd, int flags) {
  int running;
  CX.multi_socket_action(G.multi, fd, flags, &running);
  multi_info();
}

static void on_poll(uv_poll_t *h, int status, int events) {
  struct csock *cs = container_of(h, struct csock, poll);
  int flags = 0;
  if (status < 0)
    flags = CURL_CSELECT_ERR;
  else {
    if (events & UV_READABLE) flags |= CURL_CSELECT_IN;
    if (events & UV_WRITABLE) flags |= CURL_CSELECT_OUT;
  }
  act(cs->fd, flags);
}

static void on_csock_close(uv_handle_t *h) { free(container_of((uv_poll_t *)h, struct csock, poll)); }

static int on_curl_socket(CURL *e, curl_socket_t fd, int what, void *userp, void *socketp) {
  struct csock *cs = socketp;
  if (what == CURL_POLL_REMOVE) {
    if (cs) {
      /* Stop and close the poll at once: curl may close the fd right after we return. */
      uv_poll_stop(&cs->poll);
      list_del(&cs->link);
      uv_close((uv_handle_t *)&cs->poll, on_csock_close);
      CX.multi_assign(G.multi, fd, NULL);
    }
    return 0;
  }
  if (!cs) {
    cs = xcalloc(1, sizeof *cs);
    cs->fd = fd;
    if (uv_poll_init_socket(G.loop, &cs->poll, fd) < 0) {
      free(cs);
      return -1;
    }
    list_add_tail(&G.socks, &cs->link);
    CX.multi_assign(G.multi, fd, cs);
  }
  int ev = 0;
  if (what & CURL_POLL_IN) ev |= UV_READABLE;
  if (what & CURL_POLL_OUT) ev |= UV_WRITABLE;
  uv_poll_start(&cs->poll, ev, on_poll);
  return 0;
}

static void on_curl_timer(uv_timer_t *t) { act(CURL_SOCKET_TIMEOUT, 0); }

/* curl wants to act now (a transfer was just added): do it later in this same loop turn,
 * from an idle handle, rather than from a 1 ms timer one wake-up later. */
static void on_curl_kick(uv_idle_t *h) {
  uv_idle_stop(h);
  act(CURL_SOCKET_TIMEOUT, 0);
}

static int on_curl_timeout(CURLM *m, long ms, void *userp) {
  if (ms < 0) {
    uv_timer_stop(&G.timer);
    return 0;
  }
  if (ms == 0) {
    /* Not from inside curl: the idle callback runs after this call stack unwinds. And not
     * a 0 ms timer, which libuv 1.44 would run again in the same turn, forever. */
    uv_idle_start(&G.kick, on_curl_kick);
    return 0;
  }
  /* Never move a pending deadline later: curl calls this on every curl_multi_add_handle,
   * and a burst of starts would otherwise keep pushing the shared timer back, holding
   * every request until the burst ends. Firing earlier than curl asked is harmless. */
  uv_update_time(G.loop);
  uint64_t due = uv_now(G.loop) + (uint64_t)ms;
  if (uv_is_active((uv_handle_t *)&G.timer) && uv_timer_get_due_in(&G.timer) + uv_now(G.loop) <= due) return 0;
  uv_timer_start(&G.timer, on_curl_timer, due - uv_now(G.loop), 0);
  return 0;
}

void curlx_init(uv_loop_t *loop) { G.loop = loop; }

int curlx_open(char *err, size_t len) {
  if (G.open) return 0;
  if (curl_load(err, len) < 0) return -1;
  if (CX.global_init(CURL_GLOBAL_DEFAULT) != CURLE_OK) {
    snprintf(err, len, "curl_global_init failed");
    return -1;
  }
  G.multi = CX.multi_init();
  list_init(&G.socks);
  CX.multi_setopt(G.multi, CURLMOPT_SOCKETFUNCTION, on_curl_socket);
  CX.multi_setopt(G.multi, CURLMOPT_TIMERFUNCTION, on_curl_timeout);
  CX.multi_setopt(G.multi, CURLMOPT_MAXCONNECTS, 4096L);
  uv_timer_init(G.loop, &G.timer);
  uv_idle_init(G.loop, &G.kick);
  G.open = true;
  return 0;
}

CURLMcode curlx_add(CURL *e, struct curlx_req *r) {
  CX.easy_setopt(e, CURLOPT_PRIVATE, r);
  return CX.multi_add_handle(G.multi, e);
}

void curlx_remove(CURL *e) {
  if (G.multi && e) CX.multi_remove_handle(G.multi, e);
}

void curlx_close(void) {
  if (!G.open) return;
  G.open = false;
  CX.multi_cleanup(G.multi); /* closes cached connections; may call on_curl_socket(REMOVE) */
  G.multi = NULL;
  struct list *pos, *tmp;
  list_for_each_safe(pos, tmp, &G.socks) {
    struct csock *cs = container_of(pos, struct csock, link);
    list_del(&cs->link);
    uv_close((uv_handle_t *)&cs->poll, on_csock_close);
  }
  uv_close((uv_handle_t *)&G.timer, NULL);
  uv_close((uv_handle_t *)&G.kick, NULL);
  CX.global_cleanup();
}
