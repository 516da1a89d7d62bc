/*
 * herd: one binary, the daemon and its CLI. main() reads the options before the command,
 * which name the state dir and the socket for both, then runs `herd daemon` itself and
 * hands every other command to the client (cli.c).
 */
#include "herd/cmd.h"
#include "herd/daemon.h"
#include "herd/log.h"

#include <errno.h>
#include <getopt.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

/* herd daemon [options]: its options over the global ones, then the daemon in the foreground. */
static int daemon_main(const struct cmd_globals *g, int argc, char **argv) {
  struct daemon_opts o = {.state_dir = g->state_dir,
                          .socket_path = g->socket_given ? g->socket : NULL, /* NULL: under its own --state-dir */
                          .log_level = LOG_INFO,
                          .normal_priority = true,
                          .finished_jobs = -1};
  static const struct option opts[] = {
      {"config", required_argument, 0, 'c'},        {"state-dir", required_argument, 0, 'd'},
      {"socket", required_argument, 0, 's'},        {"log-level", required_argument, 0, 'l'},
      {"log-format", required_argument, 0, 'F'},    {"read-group", required_argument, 0, 'g'},
      {"leave-running", no_argument, 0, 'L'},       {"cgroups", required_argument, 0, 'G'},
      {"priority", required_argument, 0, 'P'},      {"liveness-file", required_argument, 0, 'V'},
      {"http", required_argument, 0, 'H'},          {"http-token-file", required_argument, 0, 'T'},
      {"finished-jobs", required_argument, 0, 'J'}, {0, 0, 0, 0}};
  int ch;
  optind = 1;
  while ((ch = getopt_long(argc, argv, "c:d:s:l:F:g:LP:G:V:H:T:J:", opts, NULL)) != -1) {
    switch (ch) {
    case 'c': o.config_dir = optarg; break;
    case 'd': o.state_dir = optarg; break;
    case 's': o.socket_path = optarg; break;
    case 'g': o.read_group = optarg; break;
    case 'L': o.leave_running = true; break;
    case 'V': o.liveness_file = optarg; break;
    case 'H': o.http = optarg; break;
    case 'T': o.http_token_file = optarg; break;
    case 'J': {
      char *end;
      errno = 0;
      o.finished_jobs = strtol(optarg, &end, 10);
      if (!*optarg || *end || errno || o.finished_jobs < 0 || o.finished_jobs > 10000000) {
        fprintf(stderr, "herd: --finished-jobs must be a whole number from 0 to 10000000\n");
        return HERD_EXIT_USAGE;
      }
      break;
    }
    case 'G':
      if (strcmp(optarg, "auto") && strcmp(optarg, "off")) {
        fprintf(stderr, "herd: --cgroups must be auto or off\n");
        return HERD_EXIT_USAGE;
      }
      o.no_cgroups = !strcmp(optarg, "off");
      break;
    case 'P':
      if (strcmp(optarg, "realtime") && strcmp(optarg, "normal")) {
        fprintf(stderr, "herd: --priority must be realtime or normal\n");
        return HERD_EXIT_USAGE;
      }
      o.normal_priority = !strcmp(optarg, "normal");
      break;
    case 'l':
      if ((o.log_level = log_level_parse(optarg)) < 0) {
        fprintf(stderr, "herd: --log-level must be debug, info, warn or error\n");
        return HERD_EXIT_USAGE;
      }
      break;
    case 'F':
      if (!strcmp(optarg, "text"))
        o.log_format = LOG_TEXT;
      else if (!strcmp(optarg, "json"))
        o.log_format = LOG_JSON;
      else {
        fprintf(stderr, "herd: --log-format must be text or json\n");
        return HERD_EXIT_USAGE;
      }
      break;
    default: return HERD_EXIT_USAGE;
    }
  }
  if (optind != argc) return HERD_EXIT_USAGE;
  if (o.http_token_file && !o.http) {
    fprintf(stderr, "herd: --http-token-file is for the status page: give --http ADDR too\n");
    return HERD_EXIT_USAGE;
  }
  return daemon_run(&o);
}

/* `herd config check DIR`: what the daemon would say of DIR at start, without one. */
static int config_main(int argc, char **argv) {
  if (argc != 3 || strcmp(argv[1], "check")) {
    cmd_usage(&cmd_table[CMD_CONFIG], stderr);
    return HERD_EXIT_USAGE;
  }
  struct spec_set set = {0};
  struct cfg_errors errs = {0};
  if (cfg_load_dir(argv[2], &set, &errs) == 0 && !errs.n) cfg_validate_deps(set.v, set.n, &errs);
  for (size_t k = 0; k < errs.n; k++) {
    char *m = cfg_error_str(&errs.v[k]);
    fprintf(stderr, "%s\n", m);
    free(m);
  }
  int rc = errs.n ? HERD_EXIT_CONFIG : HERD_EXIT_OK;
  if (errs.n)
    fprintf(stderr, "herd: %zu error(s) in %s\n", errs.n, argv[2]);
  else
    printf("%s: %zu service(s), %zu cluster(s), %zu host(s): ok\n", argv[2], set.n, set.nclusters, set.nhosts);
  cfg_errors_free(&errs);
  spec_set_free(&set);
  return rc;
}

int main(int argc, char **argv) {
  const char *state = NULL, *sock = NULL;
  int i = 1;
  for (; i < argc && argv[i][0] == '-'; i++) {
    if (!strcmp(argv[i], "--version") || !strcmp(argv[i], "-V")) {
      printf("herd %s (API %d)\n", HERD_VERSION, HERD_API_VERSION);
      return 0;
    } else if (!strcmp(argv[i], "--help") || !strcmp(argv[i], "-h")) {
      break; /* the same as `herd help` (below) */
    } else if (!strcmp(argv[i], "--socket") && i + 1 < argc) {
      sock = argv[++i];
    } else if (!strcmp(argv[i], "--state-dir") && i + 1 < argc) {
      state = argv[++i];
    } else {
      fprintf(stderr, "herd: unknown option %s (see herd help)\n", argv[i]);
      return HERD_EXIT_USAGE;
    }
  }
  struct cmd_globals g = {.state_dir = state ? state : cmd_default_state_dir()};
  static char sockbuf[4096];
  const char *env = getenv("HERD_SOCKET");
  if (sock)
    g.socket = sock;
  else if (env && *env)
    g.socket = env;
  else {
    snprintf(sockbuf, sizeof sockbuf, "%s/herd.sock", g.state_dir);
    g.socket = sockbuf;
  }
  g.socket_given = g.socket != sockbuf;
  if (i < argc && argv[i][0] == '-') { /* --help */
    static char *help[] = {"help", NULL};
    return cli_main(&g, 1, help);
  }
  const struct cmd_entry *e = i < argc ? cmd_find(argv[i]) : NULL;
  if (e == &cmd_table[CMD_CONFIG]) return config_main(argc - i, argv + i);
  if (e == &cmd_table[CMD_DAEMON]) {
    int rc = daemon_main(&g, argc - i, argv + i);
    if (rc == HERD_EXIT_USAGE) cmd_usage(e, stderr);
    return rc;
  }
  return cli_main(&g, argc - i, argv + i);
}
