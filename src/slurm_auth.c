/*
 * The Slurm backend's authentication (see slurm_int.h): a cluster's token, kept fresh. A JWT
 * signed here with the cluster's key, read from a token file, printed by a token_command
 * (killed after request_timeout), or an OAuth client-credentials answer.
 */
#include "slurm_int.h"

#include "herd/jwt.h"
#include "herd/log.h"

#include <errno.h>
#include <signal.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

static bool token_fresh(struct cluster *cl) {
  if (!cl->token) return false;
  if (!cl->token_exp) return true;
  double left = cl->token_exp - now_wall();
  /* Renew a command's or OAuth's token with a fifth of its life (at least a minute) left. */
  return left > 60 && left > (cl->spec->auth == AUTH_JWT_KEY ? cl->spec->token_lifespan / 2 : 0);
}

static void token_set(struct cluster *cl, char *tok) {
  free(cl->token);
  cl->token = tok;
  int64_t exp = 0;
  cl->token_exp = tok && jwt_exp(tok, &exp) == 0 ? (double)exp : 0;
}

/* A key, token or secret file (small: the first 64 KiB). */
static char *read_small(const char *path, size_t *len, char *err, size_t errlen) {
  int e;
  char *text = file_read(path, 65536, len, &e);
  if (!text) snprintf(err, errlen, "cannot read %s: %s", path, strerror(e));
  return text;
}

static void tok_finish(struct cluster *cl) {
  if (!cl->tok_exited || !cl->tok_eof) return;
  cl->token_busy = false;
  uv_timer_stop(&cl->tok_timer);
  buf_append(&cl->tokbuf, "", 1);
  char *tok = cl->tok_status == 0 && !cl->tok_timed_out ? jwt_word(cl->tokbuf.data) : NULL;
  if (!tok && cl->tok_timed_out) {
    slurm_set_error(cl, "token_command timed out after %.0f s (request_timeout): killed", cl->spec->request_timeout);
    cl->token_retry_at = now_mono() + 5;
    slurm_poll_schedule(cl, cl->token_retry_at);
  } else if (!tok) {
    char first[120];
    snprintf(first, sizeof first, "%s", cl->tokbuf.data ? cl->tokbuf.data : "");
    first[strcspn(first, "\n")] = '\0';
    slurm_set_error(cl, "token_command failed (exit status %lld)%s%s", (long long)cl->tok_status, first[0] ? ": " : "",
                    cl->tok_status ? first : "printed no token");
    cl->token_retry_at = now_mono() + 5;
    slurm_poll_schedule(cl, cl->token_retry_at);
  } else {
    token_set(cl, tok);
  }
  buf_free(&cl->tokbuf);
  uv_close((uv_handle_t *)&cl->tokproc, slurm_on_handle_close);
  uv_close((uv_handle_t *)&cl->tokout, slurm_on_handle_close);
  slurm_dispatch(cl);
}

static void on_tok_exit(uv_process_t *p, int64_t status, int sig) {
  struct cluster *cl = p->data;
  cl->tok_exited = true;
  cl->tok_status = sig ? 128 + sig : status;
  tok_finish(cl);
}

static void on_tok_read(uv_stream_t *st, ssize_t n, const uv_buf_t *b) {
  struct cluster *cl = st->data;
  if (n > 0 && cl->tokbuf.len < 65536) buf_append(&cl->tokbuf, b->base, (size_t)n);
  if (n < 0) {
    uv_read_stop(st);
    cl->tok_eof = true;
    tok_finish(cl);
  }
}

/* The command and whatever it started (its own process group): a hung one is killed, and
 * no descendant holding its output keeps the daemon waiting for an end of file. */
void slurm_tok_kill(struct cluster *cl) {
  if (cl->tokproc.pid > 0) uv_kill(-cl->tokproc.pid, SIGKILL);
  if (!cl->tok_eof) {
    uv_read_stop((uv_stream_t *)&cl->tokout);
    cl->tok_eof = true;
  }
}

static void on_tok_timeout(uv_timer_t *t) {
  struct cluster *cl = t->data;
  if (!cl->token_busy) return;
  cl->tok_timed_out = true;
  slurm_tok_kill(cl);
  tok_finish(cl); /* (or at its exit, which the kill brings) */
}

static void token_command_start(struct cluster *cl) {
  uv_pipe_init(cl->d->loop, &cl->tokout, 0);
  cl->tokout.data = cl;
  uv_stdio_container_t io[3] = {{.flags = UV_IGNORE},
                                {.flags = UV_CREATE_PIPE | UV_WRITABLE_PIPE, .data.stream = (uv_stream_t *)&cl->tokout},
                                {.flags = UV_INHERIT_FD, .data.fd = 2}};
  uv_process_options_t o = {.exit_cb = on_tok_exit,
                            .file = cl->spec->token_command[0],
                            .args = cl->spec->token_command,
                            .stdio_count = 3,
                            .stdio = io,
                            .flags = UV_PROCESS_DETACHED};
  cl->tokproc.data = cl;
  cl->nhandles++;
  int rc = uv_spawn(cl->d->loop, &cl->tokproc, &o);
  if (rc < 0) {
    slurm_set_error(cl, "token_command %s: %s", cl->spec->token_command[0], uv_strerror(rc));
    cl->nhandles++;
    uv_close((uv_handle_t *)&cl->tokproc, slurm_on_handle_close);
    uv_close((uv_handle_t *)&cl->tokout, slurm_on_handle_close);
    cl->token_retry_at = now_mono() + 5;
    slurm_poll_schedule(cl, cl->token_retry_at);
    return;
  }
  cl->nhandles++;
  cl->token_busy = true;
  cl->tok_exited = cl->tok_eof = cl->tok_timed_out = false;
  uv_read_start((uv_stream_t *)&cl->tokout, loop_alloc, on_tok_read);
  timer_arm(cl->d->loop, &cl->tok_timer, on_tok_timeout, now_mono() + cl->spec->request_timeout);
}

static void on_oauth_done(struct sreq *r, bool ok, const char *terr) {
  struct cluster *cl = r->cl;
  cl->token_busy = false;
  char why[256] = "no access_token in the reply", *tok = NULL;
  int64_t expires_in = -1;
  if (!ok)
    snprintf(why, sizeof why, "%s", terr);
  else if (r->status == 200 && r->body.data)
    jwt_from_oauth(r->body.data, r->body.len, &tok, &expires_in, why, sizeof why);
  if (!tok) {
    slurm_set_error(cl, "OAuth token request failed: %s", why);
    cl->token_retry_at = now_mono() + 5;
    slurm_poll_schedule(cl, cl->token_retry_at);
  } else {
    token_set(cl, tok);
    if (!cl->token_exp && expires_in >= 0) cl->token_exp = now_wall() + (double)expires_in;
  }
}

/* Make sure a usable token is there, or on its way. Returns true when requests can go. */
bool slurm_auth_ready(struct cluster *cl) {
  const struct cluster_spec *k = cl->spec;
  char err[300];
  switch (k->auth) {
  case AUTH_NONE: return true;
  case AUTH_TOKEN:
    if (k->token.file && (!cl->token || now_mono() - cl->token_checked >= 1)) {
      /* At most once a second: slurm_auth_ready runs for every request sent. */
      cl->token_checked = now_mono();
      struct stat st;
      if (stat(k->token.file, &st) < 0) {
        slurm_set_error(cl, "token file %s: %s", k->token.file, strerror(errno));
        return cl->token != NULL;
      }
      if (!cl->token || st.st_mtime != cl->token_mtime) {
        size_t len;
        char *text = read_small(k->token.file, &len, err, sizeof err);
        if (!text) {
          slurm_set_error(cl, "%s", err);
        } else {
          char *t = jwt_word(text);
          free(text);
          if (t) token_set(cl, t);
          cl->token_mtime = st.st_mtime;
        }
      }
    } else if (!cl->token && k->token.value) {
      token_set(cl, xstrdup(k->token.value));
    }
    return cl->token != NULL;
  case AUTH_JWT_KEY:
    if (!token_fresh(cl)) {
      size_t len;
      char *key = read_small(k->jwt_key, &len, err, sizeof err);
      if (!key) {
        slurm_set_error(cl, "jwt_key: %s", err);
        return false;
      }
      int64_t now = (int64_t)now_wall();
      char *tok = jwt_mint_hs256(key, len, k->user, now, now + (int64_t)k->token_lifespan);
      memset(key, 0, len);
      free(key);
      if (!tok) {
        /* The signature needs libcrypto, loaded on first use: say so, not just "no token". */
        slurm_set_error(cl, "jwt_key: cannot sign a token (libcrypto.so.3 could not be loaded or refused the key)");
        return false;
      }
      token_set(cl, tok);
    }
    return cl->token != NULL;
  case AUTH_TOKEN_COMMAND:
  case AUTH_OAUTH:
    if (token_fresh(cl)) return true;
    if (cl->token_busy || now_mono() < cl->token_retry_at) return cl->token != NULL && cl->token_exp > now_wall();
    if (k->auth == AUTH_TOKEN_COMMAND) {
      token_command_start(cl);
    } else {
      const char *secret = k->oauth_secret.value;
      char *fsecret = NULL;
      if (k->oauth_secret.file) {
        size_t len;
        char *t = read_small(k->oauth_secret.file, &len, err, sizeof err);
        fsecret = t ? jwt_word(t) : NULL;
        free(t);
        secret = fsecret;
      }
      if (!secret) {
        slurm_set_error(cl, "OAuth client secret unavailable");
        cl->token_retry_at = now_mono() + 5;
        return false;
      }
      CURL *e = curlx_open(err, sizeof err) == 0 ? CX.easy_init() : NULL;
      if (!e) {
        free(fsecret);
        return false;
      }
      char *id = CX.easy_escape(e, k->oauth_client_id, 0), *sec = CX.easy_escape(e, secret, 0),
           *scope = k->oauth_scope ? CX.easy_escape(e, k->oauth_scope, 0) : NULL;
      char *post = xasprintf("grant_type=client_credentials&client_id=%s&client_secret=%s%s%s", id, sec,
                             scope ? "&scope=" : "", scope ? scope : "");
      CX.free(id);
      CX.free(sec);
      if (scope) CX.free(scope);
      CX.easy_cleanup(e);
      free(fsecret);
      cl->token_busy = true;
      struct sreq *r = slurm_sreq_new(cl, RQ_TOKEN, "POST", xstrdup(k->oauth_url), post, on_oauth_done);
      slurm_enqueue(cl, r, true);
    }
    return cl->token != NULL && cl->token_exp > now_wall();
  case AUTH__MAX: break;
  }
  return false;
}
