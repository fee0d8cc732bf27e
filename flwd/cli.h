/* flwd CLI: declarations shared by the subcommand files. */
#ifndef FLWD_CLI_H
#define FLWD_CLI_H

#include <stdbool.h>

#include <flwd/flwd.h>

/* Exit statuses of flwd itself. A run passes the job's own status through,
 * so these follow `podman run` and timeout(1) where they can. */
enum {
  EXIT_USAGE = 2,
  EXIT_TIMED_OUT = 124,
  EXIT_FLWD_ERROR = 125,
};

struct cli {
  flwd_ctx *ctx;
  struct event_base *base;
  bool events;   /* print events as JSON lines on stderr */
  int verbosity; /* 0: errors and warnings, -1: errors, 1: info, 2: debug */
};

/* Prints "flwd: CODE: message" on stderr and returns EXIT_FLWD_ERROR. */
int cli_report(const flwd_error *err);

int cmd_run(struct cli *cli, int argc, char **argv);
int cmd_plan(struct cli *cli, int argc, char **argv);
int cmd_jobs(struct cli *cli, int argc, char **argv);
int cmd_validate(struct cli *cli, int argc, char **argv);
int cmd_runs(struct cli *cli, int argc, char **argv);
int cmd_show(struct cli *cli, int argc, char **argv);
int cmd_logs(struct cli *cli, int argc, char **argv);

/* Prints the help of JOB, generated from its declared arguments. */
void print_job_help(const flwd_job *job);

#endif /* FLWD_CLI_H */
