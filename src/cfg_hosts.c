/* The config's ssh hosts ("hosts") and a service's "ssh" (see cfg.h, README "ssh hosts"). */
#include "cfg_int.h"
#include "herd/herd.h"
#include "herd/spec.h"

#include <ctype.h>
#include <stdlib.h>
#include <string.h>

static const char *const host_keys[] = {"name",
                                        "destination",
                                        "port",
                                        "identity_file",
                                        "identity_agent",
                                        "known_hosts",
                                        "host_key_alias",
                                        "proxy_jump",
                                        "ssh_options",
                                        "server_alive_interval",
                                        "server_alive_count",
                                        "connect_timeout",
                                        NULL};

/* Options herd sets itself on every ssh it runs: a host may not change them. */
static const char *const reserved[] = {"BatchMode",
                                       "ControlMaster",
                                       "ControlPath",
                                       "ControlPersist",
                                       "ExitOnForwardFailure",
                                       "StrictHostKeyChecking",
                                       "UserKnownHostsFile",
                                       "GlobalKnownHostsFile",
                                       "ServerAliveInterval",
                                       "ServerAliveCountMax",
                                       "ConnectTimeout",
                                       "IdentityFile",
                                       "IdentitiesOnly",
                                       "HostKeyAlias",
                                       "ProxyJump",
                                       "ProxyCommand",
                                       "LocalCommand",
                                       "PermitLocalCommand",
                                       "RemoteCommand",
                                       "LocalForward",
                                       "RemoteForward",
                                       "DynamicForward",
                                       "Port",
                                       NULL};

/* A word that goes on ssh's command line: no option injection, no spaces or controls. */
static bool plain_word(const char *s) {
  if (!*s || *s == '-') return false;
  for (const char *p = s; *p; p++)
    if (isspace((unsigned char)*p) || iscntrl((unsigned char)*p)) return false;
  return true;
}

static bool valid_name(const char *s) {
  size_t n = strlen(s);
  if (!n || n > 64) return false;
  for (const char *p = s; *p; p++)
    if (!isalnum((unsigned char)*p) && *p != '-' && *p != '_' && *p != '.') return false;
  return true;
}

static void get_path(struct pctx *c, const char *field, json_t *v, char **out) {
  if (cfgp_get_string(c, field, v, out) < 0) return;
  if ((*out)[0] != '/') cfgp_err_at(c, field, "expected an absolute path, got \"%s\"", *out);
}

struct host_spec *cfgp_parse_host(struct pctx *c, const char *prefix, json_t *o) {
  char f[256];
  if (!json_is_object(o)) {
    cfgp_err_at(c, prefix, "expected a host object, got %s", cfgp_type_name(o));
    return NULL;
  }
  int before = c->nerr;
  cfgp_check_keys(c, prefix, o, host_keys);
  struct host_spec *h = xcalloc(1, sizeof *h);
  h->source = xstrdup(c->file);
  h->alive_interval = 5;
  h->alive_count = 3;
  h->connect_timeout = 10;
  json_t *v;
  if (!(v = json_object_get(o, "name")))
    cfgp_err_at(c, prefix, "missing required key \"name\"");
  else if (cfgp_get_string(c, FIELD(f, prefix, "name"), v, &h->name) == 0 && !valid_name(h->name))
    cfgp_err_at(c, FIELD(f, prefix, "name"), "a host name is 1-64 of [A-Za-z0-9._-], got \"%s\"", h->name);
  cfgp_pos(c, FIELD(f, prefix, "name"), false, &h->line, &h->col);
  if (!(v = json_object_get(o, "destination")))
    cfgp_err_at(c, prefix, "missing required key \"destination\" (\"user@host\" or \"host\")");
  else if (cfgp_get_string(c, FIELD(f, prefix, "destination"), v, &h->destination) == 0 && !plain_word(h->destination))
    cfgp_err_at(c, FIELD(f, prefix, "destination"),
                "expected \"user@host\" or \"host\" (no spaces, not starting with '-'), got \"%s\"", h->destination);
  if ((v = json_object_get(o, "port"))) cfgp_get_port(c, FIELD(f, prefix, "port"), v, &h->port);
  if ((v = json_object_get(o, "identity_file"))) get_path(c, FIELD(f, prefix, "identity_file"), v, &h->identity_file);
  if ((v = json_object_get(o, "identity_agent")))
    get_path(c, FIELD(f, prefix, "identity_agent"), v, &h->identity_agent);
  if (!(v = json_object_get(o, "known_hosts")))
    cfgp_err_at(c, prefix,
                "missing required key \"known_hosts\": herd checks host keys strictly against a file of its own");
  else
    get_path(c, FIELD(f, prefix, "known_hosts"), v, &h->known_hosts);
  if ((v = json_object_get(o, "host_key_alias")) &&
      cfgp_get_string(c, FIELD(f, prefix, "host_key_alias"), v, &h->host_key_alias) == 0 &&
      !plain_word(h->host_key_alias))
    cfgp_err_at(c, FIELD(f, prefix, "host_key_alias"), "expected a plain name, got \"%s\"", h->host_key_alias);
  if ((v = json_object_get(o, "proxy_jump")) &&
      cfgp_get_string(c, FIELD(f, prefix, "proxy_jump"), v, &h->proxy_jump) == 0 && !plain_word(h->proxy_jump))
    cfgp_err_at(c, FIELD(f, prefix, "proxy_jump"), "expected \"[user@]host[:port]\", got \"%s\"", h->proxy_jump);
  if ((v = json_object_get(o, "ssh_options"))) {
    if (!json_is_object(v)) {
      cfgp_err_at(c, FIELD(f, prefix, "ssh_options"),
                  "expected an object of ssh_config options, such as "
                  "{\"Ciphers\": \"aes128-ctr\"}");
    } else {
      h->options = xcalloc(json_object_size(v) + 1, sizeof *h->options);
      size_t n = 0;
      const char *k;
      json_t *x;
      json_object_foreach(v, k, x) {
        char g[320];
        snprintf(g, sizeof g, "%s.%s", FIELD(f, prefix, "ssh_options"), k);
        bool word = *k != '\0';
        for (const char *p = k; *p; p++) word &= isalnum((unsigned char)*p) != 0;
        bool taken = false;
        for (const char *const *r = reserved; *r; r++) taken |= !strcasecmp(*r, k);
        if (!word)
          cfgp_err_at_key(c, g, "expected an ssh_config option name (letters and digits)");
        else if (taken)
          cfgp_err_at_key(c, g, "herd sets %s itself (or it has a key of its own here): not allowed in ssh_options", k);
        else if (!json_is_string(x) || !json_string_length(x) || strpbrk(json_string_value(x), "\r\n"))
          cfgp_err_at(c, g, "expected a one-line string value");
        else
          h->options[n++] = xasprintf("%s=%s", k, json_string_value(x));
      }
    }
  }
  if ((v = json_object_get(o, "server_alive_interval")) &&
      cfgp_get_duration(c, FIELD(f, prefix, "server_alive_interval"), v, &h->alive_interval) == 0 &&
      (h->alive_interval < 1 || h->alive_interval > 3600))
    cfgp_err_at(c, FIELD(f, prefix, "server_alive_interval"), "expected 1s to 1h");
  if ((v = json_object_get(o, "server_alive_count")))
    cfgp_get_int(c, FIELD(f, prefix, "server_alive_count"), v, 1, 100, &h->alive_count);
  if ((v = json_object_get(o, "connect_timeout")) &&
      cfgp_get_duration(c, FIELD(f, prefix, "connect_timeout"), v, &h->connect_timeout) == 0 &&
      (h->connect_timeout < 1 || h->connect_timeout > 600))
    cfgp_err_at(c, FIELD(f, prefix, "connect_timeout"), "expected 1s to 10m");
  if (c->nerr != before) {
    host_spec_free(h);
    return NULL;
  }
  return h;
}

void cfgp_parse_ssh(struct pctx *c, const char *field, json_t *v, struct spec *s) {
  if (cfgp_get_string(c, field, v, &s->ssh) < 0) return;
  if (!valid_name(s->ssh)) cfgp_err_at(c, field, "expected the name of a host in \"hosts\", got \"%s\"", s->ssh);
  cfgp_pos(c, field, false, &s->ssh_line, &s->ssh_col);
}

/* What libssh2 1.10 cannot do is said at load, not at run time. */
static void libssh2_usable(struct cfg_errors *errs, const char *src, int line, int col, const char *field,
                           const struct host_spec *hs, const char *what, const char *instead) {
  if (!hs->identity_file && !hs->identity_agent && !getenv("SSH_AUTH_SOCK"))
    cfg_error_add(errs, src, line, col, field,
                  "%s runs over libssh2, which needs the host's \"identity_file\" (an ed25519 or ECDSA key: "
                  "libssh2 1.10 has no rsa-sha2), or an ssh-agent: the host's \"identity_agent\" or "
                  "SSH_AUTH_SOCK in herd's environment",
                  what);
  else if (hs->proxy_jump || (hs->options && hs->options[0]))
    cfg_error_add(errs, src, line, col, field, "%s runs over libssh2, which cannot use host \"%s\"'s %s (%s)", what,
                  hs->name, hs->proxy_jump ? "proxy_jump" : "ssh_options", instead);
}

int cfg_validate_cluster_hosts(struct cluster_spec *const *k, size_t nk, struct host_spec *const *h, size_t nh,
                               struct cfg_errors *errs) {
  size_t before = errs->n;
  for (size_t i = 0; i < nk; i++) {
    if (!k[i]->ssh) continue;
    const struct host_spec *hs = NULL;
    for (size_t j = 0; j < nh; j++)
      if (!strcmp(h[j]->name, k[i]->ssh)) hs = h[j];
    if (!hs) {
      struct buf known = {0};
      for (size_t j = 0; j < nh; j++) buf_printf(&known, "%s%s", j ? ", " : "", h[j]->name);
      cfg_error_add(errs, k[i]->source, k[i]->ssh_line, k[i]->ssh_col, "clusters.ssh", "no host named \"%s\" (%s%s)",
                    k[i]->ssh, nh ? "known: " : "no \"hosts\" are configured", known.data ? known.data : "");
      buf_free(&known);
    } else if (k[i]->api == CLUSTER_SSH) {
      libssh2_usable(errs, k[i]->source, k[i]->ssh_line, k[i]->ssh_col, "clusters.ssh", hs,
                     "a cluster with \"api\": \"ssh\"",
                     "give the login node its own host entry without it, reachable directly");
    }
  }
  return (int)(errs->n - before);
}

int cfg_validate_hosts(struct spec *const *v, size_t n, struct host_spec *const *h, size_t nh,
                       struct cfg_errors *errs) {
  size_t before = errs->n;
  for (size_t i = 0; i < nh; i++)
    for (size_t j = 0; j < i; j++)
      if (!strcmp(h[i]->name, h[j]->name))
        cfg_error_add(errs, h[i]->source, h[i]->line, h[i]->col, "hosts.name",
                      "duplicate host name \"%s\" (also defined in %s)", h[i]->name, h[j]->source);
  for (size_t i = 0; i < n; i++) {
    const struct check_spec *k = v[i]->check;
    if (!k || !k->ssh_host) continue;
    char field[160];
    snprintf(field, sizeof field, "%s.check.host", v[i]->name);
    const struct host_spec *hs = NULL;
    for (size_t j = 0; j < nh; j++)
      if (!strcmp(h[j]->name, k->ssh_host)) hs = h[j];
    if (!hs)
      cfg_error_add(errs, v[i]->source, k->ssh_line, k->ssh_col, field, "no host named \"%s\"", k->ssh_host);
    else
      libssh2_usable(errs, v[i]->source, k->ssh_line, k->ssh_col, field, hs, "a remote check",
                     "run the check through the service's endpoint instead, or use a host without it");
  }
  for (size_t i = 0; i < n; i++) {
    const struct spec *s = v[i];
    if (!s->ssh) continue;
    char field[160];
    snprintf(field, sizeof field, "%s.ssh", s->name);
    bool found = false;
    for (size_t j = 0; j < nh; j++) found |= !strcmp(h[j]->name, s->ssh);
    if (!found) {
      struct buf known = {0};
      for (size_t j = 0; j < nh; j++) buf_printf(&known, "%s%s", j ? ", " : "", h[j]->name);
      cfg_error_add(errs, s->source, s->ssh_line, s->ssh_col, field, "no host named \"%s\" (%s%s)", s->ssh,
                    nh ? "known: " : "no \"hosts\" are configured", known.data ? known.data : "");
      buf_free(&known);
    } else if (!s->endpoint.set || (!s->endpoint.port && s->backend == BACKEND_LOCAL)) {
      cfg_error_add(errs, s->source, s->ssh_line, s->ssh_col, field,
                    "a service reached through ssh host \"%s\" needs an \"endpoint\" with its \"port\" (and a "
                    "\"local_port\" for the fixed local address)",
                    s->ssh);
    }
  }
  return (int)(errs->n - before);
}
