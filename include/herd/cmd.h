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

/** The entries of cmd_table, in the order `herd help` lists them: the CLI names a route by
 *  its entry (cmd_table[CMD_SHOW].route) rather than by typing it again. */
enum cmd_id {
  CMD_DAEMON,
  CMD_CONFIG,
  CMD_STATUS,
  CMD_SHOW,
  CMD_ADD,
  CMD_REPLACE,
  CMD_RM,
  CMD_START,
  CMD_STOP,
  CMD_RESTART,
  CMD_LOGS,
  CMD_EVENTS,
  CMD_RELOAD,
  CMD_INFO,
  CMD_LAG,
  CMD_METRICS,
  CMD_HEALTH,
  CMD_CLUSTERS,
  CMD_HOSTS,
  CMD_SHUTDOWN,
  CMD_HELP,
  CMD_RUN,
  CMD_JOBS,
  CMD_WAIT,
  CMD_KILL,
  CMD_PRUNE,
  CMD_WORK_DEPOSIT,
  CMD_WORK_WITHDRAW,
  CMD_WORK_LIST,
  CMD_WORK_PRUNE,
  CMD_WORK_GET,
  CMD_WORK_DONE,
  CMD_MAX
};

extern const struct cmd_entry cmd_table[CMD_MAX];
extern const size_t cmd_count; /* CMD_MAX */

/** Find the entry for a CLI command name. */
const struct cmd_entry *cmd_find(const char *name);
/** Append e's route (e->route must be set) to out with {name} replaced by name, percent-encoded
 *  as one path segment: every byte but A-Z a-z 0-9 - . _ ~ becomes %XX, so any name makes a
 *  valid request line and none starts the query. The caller appends any query ("?wait=..."). */
void cmd_path(struct buf *out, const struct cmd_entry *e, const char *name);
/** Print "usage: herd NAME USAGE" for an entry. */
void cmd_usage(const struct cmd_entry *e, FILE *f);

/** The options before the command (herd [--socket PATH] [--state-dir DIR] COMMAND), which
 *  both the daemon and the client take; main() reads them. */
struct cmd_globals {
  const char *state_dir; /* --state-dir, else cmd_default_state_dir() */
  const char *socket;    /* --socket, else $HERD_SOCKET, else <state_dir>/herd.sock */
  bool socket_given;     /* by --socket or $HERD_SOCKET: else the daemon's own --state-dir moves it */
};
/** $HERD_STATE_DIR, else /var/lib/herd for root, else $XDG_STATE_HOME/herd or ~/.local/state/herd. */
const char *cmd_default_state_dir(void);

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
void api_metrics(struct daemon *d, struct conn *c, struct request *r, const char *name);
void api_health(struct daemon *d, struct conn *c, struct request *r, const char *name);
void api_clusters(struct daemon *d, struct conn *c, struct request *r, const char *name);
void api_hosts(struct daemon *d, struct conn *c, struct request *r, const char *name);
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
int cli_hosts(struct cli *cli, int argc, char **argv);
int cli_shutdown(struct cli *cli, int argc, char **argv);
int cli_help(struct cli *cli, int argc, char **argv);
int cli_run(struct cli *cli, int argc, char **argv);
int cli_jobs(struct cli *cli, int argc, char **argv);
int cli_wait(struct cli *cli, int argc, char **argv);
int cli_kill(struct cli *cli, int argc, char **argv);
int cli_prune(struct cli *cli, int argc, char **argv);

/** The client: argv from the command on (argc 0: no command, help and exit 2). Every
 *  command but `daemon`, which main() runs itself. */
int cli_main(const struct cmd_globals *g, int argc, char **argv);

#endif
