/*
 * libcurl's multi interface on the daemon's libuv loop, shared by HTTP health checks
 * and the Slurm REST client (STYLE habit 6): one uv_poll per socket, one timer, and an
 * idle handle for curl's 0 ms timeouts.
 *
 * libcurl is loaded with dlopen at first use, not linked: the CLI is the same binary and
 * linking libcurl (with its ~35 dependent libraries) cost every `herd status` ~10 ms in
 * the dynamic loader. Only a daemon that makes HTTP requests pays.
 */
#ifndef HERD_CURLX_H
#define HERD_CURLX_H

#include <curl/curl.h>
#include <stddef.h>
#include <uv.h>

/** The libcurl functions herd uses, resolved by curlx_open(). */
struct curl_api {
  void *so;
  CURLcode (*global_init)(long);
  void (*global_cleanup)(void);
  CURL *(*easy_init)(void);
  void (*easy_cleanup)(CURL *);
  void (*easy_reset)(CURL *);
  CURLcode (*easy_setopt)(CURL *, CURLoption, ...);
  CURLcode (*easy_getinfo)(CURL *, CURLINFO, ...);
  const char *(*easy_strerror)(CURLcode);
  char *(*easy_escape)(CURL *, const char *, int);
  void (*free)(void *);
  CURLM *(*multi_init)(void);
  CURLMcode (*multi_cleanup)(CURLM *);
  CURLMcode (*multi_setopt)(CURLM *, CURLMoption, ...);
  CURLMcode (*multi_add_handle)(CURLM *, CURL *);
  CURLMcode (*multi_remove_handle)(CURLM *, CURL *);
  CURLMcode (*multi_assign)(CURLM *, curl_socket_t, void *);
  CURLMcode (*multi_socket_action)(CURLM *, curl_socket_t, int, int *);
  CURLMsg *(*multi_info_read)(CURLM *, int *);
  const char *(*multi_strerror)(CURLMcode);
  struct curl_slist *(*slist_append)(struct curl_slist *, const char *);
  void (*slist_free_all)(struct curl_slist *);
};
extern struct curl_api CX;

/** A transfer in flight. `done` runs once the transfer ends, after the easy handle was
 *  removed from the multi handle, from a loop callback (never from inside curlx_add). */
struct curlx_req {
  void (*done)(struct curlx_req *r, CURLcode res);
};

/** Remember the loop; libcurl itself is loaded later, by curlx_open(). */
void curlx_init(uv_loop_t *loop);
/** Load libcurl and set up the multi handle (once). 0, or -1 with a message in err. */
int curlx_open(char *err, size_t len);
/** Start a transfer on an easy handle (CURLOPT_PRIVATE is set to r). */
CURLMcode curlx_add(CURL *e, struct curlx_req *r);
/** Abandon a transfer: its done callback will not run. Safe when it is not running. */
void curlx_remove(CURL *e);
/** Tear down: every easy handle must have been removed first. Closes curlx's handles. */
void curlx_close(void);

#endif
