/*
 * One command table serves the daemon (method, route, handler) and the CLI (name,
 * usage, arguments), as tmux's cmd_entry table and Redis's commands.def do.
 */
#ifndef HERD_CMD_H
#define HERD_CMD_H

#include "herd/ctl.h"

struct cli;

typedef void (*api_fn)(struct daemon *d, struct conn *c, struct request *r, const char *name);
typedef int (*cli_fn)(struct cli *cli, int argc, char **argv);

struct cmd_entry {
  const char *name;  /* CLI command, or NULL for API-only routes */
  const char *usage; /* CLI arguments */
  const char *summary;
  const char *method; /* HTTP method, or NULL for CLI-only commands */
  const char *route;  /* "/v1/services/{name}/start": {name} captures one segment */
  bool write;         /* changes something: owner or root only */
  api_fn api;
  cli_fn cli;
};

extern const struct cmd_entry cmd_table[];
extern const size_t cmd_count;

/** Find the entry for a CLI command name. */
const struct cmd_entry *cmd_find(const char *name);

/* api.c */
void api_list(struct daemon *d, struct conn *c, struct request *r, const char *name);
void api_add(struct daemon *d, struct conn *c, struct request *r, const char *name);
void api_get(struct daemon *d, struct conn *c, struct request *r, const char *name);
void api_replace(struct daemon *d, struct conn *c, struct request *r, const char *name);
void api_delete(struct daemon *d, struct conn *c, struct request *r, const char *name);
void api_start(struct daemon *d, struct conn *c, struct request *r, const char *name);
void api_stop(struct daemon *d, struct conn *c, struct request *r, const char *name);
void api_restart(struct daemon *d, struct conn *c, struct request *r, const char *name);
void api_logs(struct daemon *d, struct conn *c, struct request *r, const char *name);
void api_events(struct daemon *d, struct conn *c, struct request *r, const char *name);
void api_reload(struct daemon *d, struct conn *c, struct request *r, const char *name);
void api_info(struct daemon *d, struct conn *c, struct request *r, const char *name);
void api_lag(struct daemon *d, struct conn *c, struct request *r, const char *name);
void api_clusters(struct daemon *d, struct conn *c, struct request *r, const char *name);
void api_shutdown(struct daemon *d, struct conn *c, struct request *r, const char *name);

/* cli.c */
int cli_status(struct cli *cli, int argc, char **argv);
int cli_add(struct cli *cli, int argc, char **argv);
int cli_show(struct cli *cli, int argc, char **argv);
int cli_replace(struct cli *cli, int argc, char **argv);
int cli_rm(struct cli *cli, int argc, char **argv);
int cli_start(struct cli *cli, int argc, char **argv);
int cli_stop(struct cli *cli, int argc, char **argv);
int cli_restart(struct cli *cli, int argc, char **argv);
int cli_logs(struct cli *cli, int argc, char **argv);
int cli_events(struct cli *cli, int argc, char **argv);
int cli_reload(struct cli *cli, int argc, char **argv);
int cli_info(struct cli *cli, int argc, char **argv);
int cli_clusters(struct cli *cli, int argc, char **argv);
int cli_shutdown(struct cli *cli, int argc, char **argv);
int cli_daemon(struct cli *cli, int argc, char **argv);
int cli_help(struct cli *cli, int argc, char **argv);

/** The CLI entry point: argv after global options. */
int cli_main(int argc, char **argv);

#endif
