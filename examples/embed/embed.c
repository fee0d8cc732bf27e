/* embed: runs one flwd job from a C program through libflwd.
 *
 * Usage: embed JOB_FILE [ARGS_JSON]
 *
 * Loads the job spec JOB_FILE, binds the arguments in ARGS_JSON (a JSON
 * object such as '{"name":"Alice"}', default '{}'), runs the job to its
 * end and prints the final state. The job's output goes to this program's
 * stdout and stderr, and every event of the run goes to stderr as a line
 * of JSON. Exits 0 when the run succeeded and 1 otherwise.
 */
#include <stdio.h>
#include <stdlib.h>

#include <flwd/flwd.h>

static void
on_log(flwd_log_level level, const char *message, void *user)
{
  (void)user;
  if (level <= FLWD_LOG_WARNING)
    fprintf(stderr, "embed: flwd: %s\n", message);
}

/* DATA is a chunk of the job's output, not necessarily a whole line. */
static void
on_output(flwd_run *run, flwd_stream stream, const char *data, size_t len,
          void *user)
{
  (void)run;
  (void)user;
  fwrite(data, 1, len, stream == FLWD_STREAM_STDOUT ? stdout : stderr);
}

static void
on_event(flwd_run *run, const char *event, void *user)
{
  (void)run;
  (void)user;
  fprintf(stderr, "embed: event: %s\n", event);
}

static int
report(const char *what, flwd_error *err)
{
  fprintf(stderr, "embed: %s: %s: %s\n", what, flwd_error_name(err),
          flwd_error_message(err));
  flwd_error_free(err);
  return 1;
}

int
main(int argc, char **argv)
{
  if (argc < 2 || argc > 3) {
    fprintf(stderr, "usage: %s JOB_FILE [ARGS_JSON]\n", argv[0]);
    return 2;
  }
  if (flwd_version() != FLWD_VERSION_HEX)
    fprintf(stderr, "embed: warning: built against libflwd %s, running %s\n",
            FLWD_VERSION_STRING, flwd_version_string());

  /* Each error pointer starts as NULL: the library fills only an empty
   * one, and the caller frees what it filled. */
  flwd_error *err = NULL;
  flwd_ctx *ctx = NULL;
  flwd_job *job = NULL;
  flwd_args *args = NULL;
  flwd_run *run = NULL;
  int status = 1;

  /* NULL: the context creates and owns its own libevent loop. */
  if (flwd_ctx_new(NULL, &ctx, &err) < 0)
    return report("cannot create a context", err);
  flwd_ctx_set_log_cb(ctx, on_log, NULL);

  if (flwd_job_load(ctx, argv[1], &job, &err) < 0) {
    status = report("cannot load the job", err);
    goto out;
  }
  if (flwd_args_from_json(job, argc == 3 ? argv[2] : "{}", &args, &err) < 0) {
    status = report("invalid arguments", err);
    goto out;
  }
  if (flwd_run_create(ctx, job, args, &run, &err) < 0) {
    status = report("cannot create the run", err);
    goto out;
  }
  flwd_run_set_output_cb(run, on_output, NULL);
  flwd_run_set_event_cb(run, on_event, NULL);

  /* Starts the run and dispatches the context's loop until it ends. */
  if (flwd_run_wait(run, &err) < 0) {
    status = report("the run failed", err);
    goto out;
  }

  flwd_run_state state = flwd_run_get_state(run);
  printf("run %s: state %s, exit status %d\n", flwd_run_id(run),
         flwd_run_state_name(state), flwd_run_exit_status(run));
  const flwd_error *run_err = flwd_run_error(run);
  if (run_err)
    printf("run %s: error %s: %s\n", flwd_run_id(run), flwd_error_name(run_err),
           flwd_error_message(run_err));
  status = state == FLWD_RUN_SUCCEEDED ? 0 : 1;

out:
  flwd_run_free(run);
  flwd_args_free(args);
  flwd_job_free(job);
  flwd_ctx_free(ctx);
  return status;
}
