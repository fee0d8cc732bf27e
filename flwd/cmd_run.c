/* flwd CLI: running a job, planning it, and a job's help. */
#include <errno.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include <event2/event.h>

#include "cli.h"

struct run_session {
  struct cli *cli;
  flwd_run *run;
  int signal_received;
  bool stdout_broken;
  bool stderr_broken;
};

static bool
write_all(int fd, const char *data, size_t len)
{
  while (len > 0) {
    ssize_t n = write(fd, data, len);
    if (n < 0 && errno == EINTR)
      continue;
    if (n < 0)
      return false;
    data += n;
    len -= (size_t)n;
  }
  return true;
}

static void
on_output(flwd_run *run, flwd_stream stream, const char *data, size_t len,
          void *user)
{
  struct run_session *session = user;
  bool *broken = stream == FLWD_STREAM_STDOUT ? &session->stdout_broken
                                              : &session->stderr_broken;
  if (!*broken)
    *broken = !write_all(stream == FLWD_STREAM_STDOUT ? 1 : 2, data, len);
}

static void
on_event(flwd_run *run, const char *event, void *user)
{
  fprintf(stderr, "%s\n", event);
}

static void
on_signal(evutil_socket_t sig, short what, void *arg)
{
  struct run_session *session = arg;
  if (session->signal_received) {
    fprintf(stderr,
            "flwd: already stopping run %s; waiting for its "
            "container to be removed\n",
            flwd_run_id(session->run));
    return;
  }
  session->signal_received = (int)sig;
  flwd_error *err = NULL;
  if (flwd_run_cancel(session->run, &err) < 0 && err
      && flwd_error_code(err) != FLWD_E_RUN_FINISHED)
    cli_report(err);
  flwd_error_free(err);
}

static bool
wants_help(int argc, char **argv)
{
  for (int i = 1; i < argc; i++) {
    if (strcmp(argv[i], "--help") == 0 || strcmp(argv[i], "-h") == 0)
      return true;
  }
  return false;
}

/* Loads the job ARGV[0] and binds ARGV[1..] to it. Returns 0, or an exit
 * status after printing the error or the job's help (HELP_SHOWN). */
static int
load_job_and_args(struct cli *cli, int argc, char **argv, flwd_job **job,
                  flwd_args **args, bool *help_shown)
{
  *help_shown = false;
  if (argc < 1) {
    fputs("flwd: missing job id; see flwd jobs\n", stderr);
    return EXIT_USAGE;
  }
  flwd_error *err = NULL;
  if (flwd_job_find(cli->ctx, argv[0], job, &err) < 0) {
    int status = cli_report(err);
    flwd_error_free(err);
    return status;
  }
  if (wants_help(argc, argv)) {
    print_job_help(*job);
    *help_shown = true;
    return 0;
  }
  if (flwd_args_from_argv(*job, argc - 1, argv + 1, args, &err) < 0) {
    int status = cli_report(err);
    fprintf(stderr, "flwd: see 'flwd %s --help'\n", argv[0]);
    flwd_error_free(err);
    return status;
  }
  return 0;
}

static int
exit_status_of(struct run_session *session)
{
  flwd_run *run = session->run;
  switch (flwd_run_get_state(run)) {
    case FLWD_RUN_SUCCEEDED:
    case FLWD_RUN_FAILED:
      return flwd_run_exit_status(run);
    case FLWD_RUN_TIMED_OUT:
      fprintf(stderr, "flwd: run %s timed out\n", flwd_run_id(run));
      return EXIT_TIMED_OUT;
    case FLWD_RUN_CANCELLED:
      return 128
             + (session->signal_received ? session->signal_received : SIGTERM);
    case FLWD_RUN_ERROR:
      return cli_report(flwd_run_error(run));
    case FLWD_RUN_QUEUED:
    case FLWD_RUN_PREPARING:
    case FLWD_RUN_RUNNING:
      break;
  }
  return EXIT_FLWD_ERROR;
}

static int
run_to_end(struct cli *cli, flwd_job *job, flwd_args *args)
{
  struct run_session session = {.cli = cli};
  flwd_error *err = NULL;
  if (flwd_run_create(cli->ctx, job, args, &session.run, &err) < 0) {
    int status = cli_report(err);
    flwd_error_free(err);
    return status;
  }
  flwd_run_set_output_cb(session.run, on_output, &session);
  if (cli->events)
    flwd_run_set_event_cb(session.run, on_event, &session);

  /* Ctrl-C, SIGTERM and a closed terminal all stop the container politely
   * before flwd exits, so that no container outlives it. */
  static const int stop_signals[] = {SIGINT, SIGTERM, SIGHUP};
  struct event *signal_events[3] = {NULL, NULL, NULL};
  for (size_t i = 0; i < 3; i++) {
    signal_events[i]
        = evsignal_new(cli->base, stop_signals[i], on_signal, &session);
    if (signal_events[i])
      event_add(signal_events[i], NULL);
  }

  int status;
  if (flwd_run_wait(session.run, &err) < 0) {
    status = cli_report(err);
    flwd_error_free(err);
  } else {
    status = exit_status_of(&session);
  }

  for (size_t i = 0; i < 3; i++) {
    if (signal_events[i])
      event_free(signal_events[i]);
  }
  flwd_run_free(session.run);
  return status;
}

int
cmd_run(struct cli *cli, int argc, char **argv)
{
  flwd_job *job = NULL;
  flwd_args *args = NULL;
  bool help_shown;
  int status = load_job_and_args(cli, argc, argv, &job, &args, &help_shown);
  if (status == 0 && !help_shown) {
    signal(SIGPIPE, SIG_IGN);
    status = run_to_end(cli, job, args);
  }
  flwd_args_free(args);
  flwd_job_free(job);
  return status;
}

int
cmd_plan(struct cli *cli, int argc, char **argv)
{
  flwd_job *job = NULL;
  flwd_args *args = NULL;
  bool help_shown;
  int status = load_job_and_args(cli, argc, argv, &job, &args, &help_shown);
  if (status == 0 && !help_shown) {
    flwd_plan *plan = NULL;
    flwd_error *err = NULL;
    if (flwd_plan_create(cli->ctx, job, args, &plan, &err) < 0) {
      status = cli_report(err);
      flwd_error_free(err);
    } else {
      char *json = flwd_plan_to_json(plan);
      puts(json ? json : "{}");
      flwd_free(json);
      flwd_plan_free(plan);
    }
  }
  flwd_args_free(args);
  flwd_job_free(job);
  return status;
}

static const char *
placeholder_of(const char *type)
{
  if (strcmp(type, "integer") == 0)
    return "INT";
  if (strcmp(type, "number") == 0)
    return "NUMBER";
  if (strcmp(type, "enum") == 0)
    return "VALUE";
  if (strcmp(type, "list") == 0)
    return "ITEM";
  return "TEXT";
}

void
print_job_help(const flwd_job *job)
{
  printf("Usage: flwd %s", flwd_job_id(job));
  size_t n = flwd_job_arg_count(job);
  for (size_t i = 0; i < n; i++) {
    const char *type = flwd_job_arg_type(job, i);
    bool boolean = strcmp(type, "boolean") == 0;
    bool required = flwd_job_arg_required(job, i);
    printf(" %s--%s%s%s%s", required ? "" : "[", flwd_job_arg_name(job, i),
           boolean ? "" : " ", boolean ? "" : placeholder_of(type),
           required ? "" : "]");
  }
  printf("\n\n");
  if (flwd_job_description(job))
    printf("%s\n\n", flwd_job_description(job));
  printf("Image: %s\n", flwd_job_image(job));
  if (n == 0) {
    printf("\nThis job takes no arguments.\n");
    return;
  }

  printf("\nArguments:\n");
  for (size_t i = 0; i < n; i++) {
    printf("  --%-20s %s", flwd_job_arg_name(job, i),
           flwd_job_arg_type(job, i));
    if (flwd_job_arg_values(job, i))
      printf(" %s", flwd_job_arg_values(job, i));
    if (flwd_job_arg_required(job, i))
      printf(", required");
    if (flwd_job_arg_default(job, i))
      printf(", default %s", flwd_job_arg_default(job, i));
    if (strcmp(flwd_job_arg_type(job, i), "list") == 0)
      printf(", repeat for more items");
    if (strcmp(flwd_job_arg_type(job, i), "boolean") == 0)
      printf(", --no-%s for false", flwd_job_arg_name(job, i));
    printf("\n");
    if (flwd_job_arg_description(job, i))
      printf("      %s\n", flwd_job_arg_description(job, i));
  }
}
