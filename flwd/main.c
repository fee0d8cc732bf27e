/* flwd: the command line over libflwd. */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <event2/event.h>

#include "cli.h"

static const char usage_text[]
    = "Usage: flwd [OPTIONS] JOB [--ARG VALUE]...\n"
      "       flwd [OPTIONS] COMMAND [ARGS]...\n"
      "\n"
      "Run jobs described by YAML specs in hardened containers.\n"
      "\n"
      "Commands:\n"
      "  run JOB [--ARG VALUE]...   run a job; its exit status is flwd's\n"
      "  plan JOB [--ARG VALUE]...  print the resolved plan as JSON; runs "
      "nothing\n"
      "  jobs [--json]              list the jobs found and their arguments\n"
      "  validate FILE...           check job specs and policy files\n"
      "  runs [--job ID] [--state STATE] [--limit N] [--json]\n"
      "                             list recent runs, newest first\n"
      "  show RUN                   print a run and its events as JSON\n"
      "  logs RUN [--json]          print a run's stored output\n"
      "  JOB --help                 describe a job's arguments\n"
      "\n"
      "Options:\n"
      "  --jobs DIR         search DIR for job specs (default: "
      "FLWD_JOBS_PATH,\n"
      "                     then ./jobs and the system directory)\n"
      "  --runtime NAME     auto (default), podman or docker; also "
      "FLWD_RUNTIME\n"
      "  --pull POLICY      missing (default), always or never\n"
      "  --state-dir DIR    where runs keep their files; also FLWD_STATE_DIR\n"
      "  --max-runs N       runs preparing or running at once (0: no limit)\n"
      "  --policy FILE      policy for profiles and relaxations; also "
      "FLWD_POLICY\n"
      "  --secrets-dir DIR  one file per secret; also FLWD_SECRETS_DIR\n"
      "  --secrets-from-env take missing secrets from FLWD_SECRET_<NAME>\n"
      "  --events           print the run's events as JSON lines on stderr\n"
      "  -q, --quiet        print errors only\n"
      "  -v, --verbose      print more of flwd's log; twice for debug\n"
      "  -h, --help         print this help\n"
      "  --version          print the version\n"
      "\n"
      "Exit status: the job's own; 124 when the job timed out; 125 when flwd\n"
      "or the runtime failed; 128+N when flwd was stopped by signal N.\n";

int
cli_report(const flwd_error *err)
{
  fprintf(stderr, "flwd: %s: %s\n", flwd_error_name(err),
          flwd_error_message(err));
  return EXIT_FLWD_ERROR;
}

static void
on_log(flwd_log_level level, const char *message, void *user)
{
  struct cli *cli = user;
  static const char *const labels[] = {"error", "warning", "info", "debug"};
  if ((int)level > cli->verbosity + 1)
    return;
  fprintf(stderr, "flwd: %s: %s\n", labels[level], message);
}

struct command {
  const char *name;
  int (*fn)(struct cli *cli, int argc, char **argv);
};

static const struct command commands[] = {
    {"run", cmd_run},           {"plan", cmd_plan}, {"jobs", cmd_jobs},
    {"validate", cmd_validate}, {"runs", cmd_runs}, {"show", cmd_show},
    {"logs", cmd_logs},
};

struct global_option {
  const char *name;
  flwd_option option; /* 0: handled in parse_globals */
};

static const struct global_option value_options[] = {
    {"--jobs", FLWD_OPT_JOBS_PATH},
    {"--runtime", FLWD_OPT_RUNTIME},
    {"--pull", FLWD_OPT_PULL_POLICY},
    {"--state-dir", FLWD_OPT_STATE_DIR},
    {"--max-runs", FLWD_OPT_MAX_RUNS},
    {"--policy", FLWD_OPT_POLICY_FILE},
    {"--secrets-dir", FLWD_OPT_SECRETS_DIR},
};

/* Applies "--NAME VALUE" or "--NAME=VALUE" at ARGV[*I] if NAME is a
 * global option with a value. Returns 1 when consumed, 0 when not a value
 * option, and -1 after printing an error. */
static int
parse_value_option(struct cli *cli, int argc, char **argv, int *i)
{
  for (size_t k = 0; k < sizeof(value_options) / sizeof(value_options[0]);
       k++) {
    const char *name = value_options[k].name;
    size_t len = strlen(name);
    if (strncmp(argv[*i], name, len) != 0
        || (argv[*i][len] != '\0' && argv[*i][len] != '='))
      continue;

    const char *value = argv[*i][len] == '=' ? argv[*i] + len + 1 : NULL;
    if (value == NULL && *i + 1 >= argc) {
      fprintf(stderr, "flwd: %s needs a value\n", name);
      return -1;
    }
    if (value == NULL)
      value = argv[++*i];

    flwd_error *err = NULL;
    if (flwd_ctx_set_option(cli->ctx, value_options[k].option, value, &err)
        < 0) {
      cli_report(err);
      flwd_error_free(err);
      return -1;
    }
    return 1;
  }
  return 0;
}

/* Parses the options before the command or job. Returns the index of the
 * first other argument, or -1 after an error, or -2 when done (help or
 * version printed). */
static int
parse_globals(struct cli *cli, int argc, char **argv)
{
  int i = 1;
  for (; i < argc && argv[i][0] == '-'; i++) {
    const char *arg = argv[i];
    int consumed = parse_value_option(cli, argc, argv, &i);
    if (consumed < 0)
      return -1;
    if (consumed > 0)
      continue;
    if (strcmp(arg, "--events") == 0) {
      cli->events = true;
    } else if (strcmp(arg, "--secrets-from-env") == 0) {
      flwd_ctx_set_option(cli->ctx, FLWD_OPT_SECRETS_FROM_ENV, "on", NULL);
    } else if (strcmp(arg, "-q") == 0 || strcmp(arg, "--quiet") == 0) {
      cli->verbosity = -1;
    } else if (strcmp(arg, "-v") == 0 || strcmp(arg, "--verbose") == 0) {
      cli->verbosity++;
    } else if (strcmp(arg, "-h") == 0 || strcmp(arg, "--help") == 0) {
      fputs(usage_text, stdout);
      return -2;
    } else if (strcmp(arg, "--version") == 0) {
      printf("flwd %s\n", flwd_version_string());
      return -2;
    } else if (strcmp(arg, "--") == 0) {
      return i + 1;
    } else {
      fprintf(stderr, "flwd: unknown option '%s'; see flwd --help\n", arg);
      return -1;
    }
  }
  return i;
}

int
main(int argc, char **argv)
{
  struct cli cli = {0};
  cli.base = event_base_new();
  flwd_error *err = NULL;
  if (cli.base == NULL || flwd_ctx_new(cli.base, &cli.ctx, &err) < 0) {
    int status = err ? cli_report(err) : EXIT_FLWD_ERROR;
    flwd_error_free(err);
    if (cli.base)
      event_base_free(cli.base);
    return status;
  }
  flwd_ctx_set_log_cb(cli.ctx, on_log, &cli);

  int status;
  int first = parse_globals(&cli, argc, argv);
  if (first == -2) {
    status = 0;
  } else if (first < 0) {
    status = EXIT_USAGE;
  } else if (first >= argc) {
    fputs(usage_text, stderr);
    status = EXIT_USAGE;
  } else {
    const struct command *command = NULL;
    for (size_t k = 0; k < sizeof(commands) / sizeof(commands[0]); k++) {
      if (strcmp(argv[first], commands[k].name) == 0)
        command = &commands[k];
    }
    /* Anything else is a job id: "flwd JOB ..." is "flwd run JOB ...". */
    if (command)
      status = command->fn(&cli, argc - first - 1, argv + first + 1);
    else
      status = cmd_run(&cli, argc - first, argv + first);
  }

  flwd_ctx_free(cli.ctx);
  event_base_free(cli.base);
  return status;
}
