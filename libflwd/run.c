/* libflwd: runs and their life on the event loop.
 *
 * A run is a small state machine driven by the exits of its child
 * processes: inspect the image, pull it when needed, run the container
 * attached, then clean up. Only one child runs for a run at a time, except
 * the stop command, which runs beside the attached container.
 *
 * Whether the job itself ran is told by flwd-init, a static helper mounted
 * into the container as its entrypoint: it writes a marker just before it
 * executes the job's command. An exit without the marker is the runtime's
 * failure (E_OCI); with it, the exit status is the job's own, 125 to 127
 * included.
 */
#include <ctype.h>
#include <errno.h>
#include <fcntl.h>
#include <signal.h>
#include <stdio.h>
#include <string.h>
#include <sys/file.h>
#include <sys/stat.h>
#include <sys/uio.h>
#include <sys/wait.h>
#include <time.h>

#include <event2/event.h>

#include "internal.h"

#define STDERR_TAIL_BYTES 4096
#define CAPTURE_MAX_BYTES (1024 * 1024)
/* Retry interval for a stop that found no container yet: the attached run
 * command may not have created it when the cancel arrived. */
#define STOP_RETRY_MS 250
/* How long a stop command may take beyond the grace period before flwd
 * kills the container itself. */
#define STOP_SLACK_MS 10000
/* A result.json larger than this is recorded as invalid, not read. */
#define RESULT_MAX_BYTES (1024 * 1024)
/* How often a run waiting for another run's pull of its image checks
 * whether that pull has ended. */
#define PULL_WAIT_MS 200

typedef enum {
  STEP_NONE,
  STEP_INSPECT,
  STEP_PULL_WAIT,
  STEP_PULL,
  STEP_CONTAINER,
  STEP_CLEANUP,
} run_step;

struct flwd_run {
  flwd_ctx *ctx;
  struct flwd_run *prev, *next; /* the context's active runs */
  bool active;

  char id[17];
  char *container_name;
  char *host_dir;
  char *env_file;

  flwd_job *job;
  flwd_args *args;
  struct plan plan;
  bool planned;
  struct strv command; /* resolved command, after the image's entrypoint */

  flwd_run_state state;
  int exit_status;
  flwd_error *error;
  unsigned long long seq;

  flwd_output_cb output_cb;
  void *output_user;
  flwd_event_cb event_cb;
  void *event_user;
  flwd_done_cb done_cb;
  void *done_user;

  run_step step;
  struct child *child; /* the step's process */
  struct child *stopper; /* podman/docker stop, beside the container */
  struct buf captured;   /* stdout of inspect steps */
  struct buf stderr_tail;
  bool pulled;
  bool name_retry_done;

  bool cancel_requested;
  bool timed_out;
  bool user_freed;
  bool container_spawned;
  flwd_run_state final_state;
  struct event *timeout_ev;
  struct event *stop_retry_ev;
  struct event *start_ev;
  long long stop_sent_ms;

  json_object *events; /* every event so far, for late subscribers */
  char created_at[32];
  char started_at[32];
  char finished_at[32];
  bool waiting_for_slot; /* queued behind the context's maximum */
  unsigned long long ticket; /* start order among queued runs */

  int log_fd;
  long long log_bytes;
  long long log_dropped;
  struct buf partial[2]; /* stdout, stderr: the line not yet ended */
  json_object *result;
  char *result_error;

  int pull_lock_fd;
  bool inspected_locked; /* the last inspect ran with the pull lock held */
  bool pull_waited; /* another run's pull of the image was waited for */
  struct event *pull_wait_ev;
};

static void step_image(flwd_run *run);
static void record_run(flwd_run *run);
static void start_queued_runs(flwd_ctx *ctx);
static void step_pull(flwd_run *run);
static void step_container(flwd_run *run);
static void run_finish(flwd_run *run, flwd_run_state state);
static void run_fail(flwd_run *run, flwd_error *err);
static void send_stop(flwd_run *run);

static long long
monotonic_ms(void)
{
  struct timespec ts;
  clock_gettime(CLOCK_MONOTONIC, &ts);
  return (long long)ts.tv_sec * 1000 + ts.tv_nsec / 1000000;
}

/* ---- Events ----------------------------------------------------------- */

/* Emits event TYPE with DATA (a new reference, or NULL for {}). */
static void
emit(flwd_run *run, const char *type, json_object *data)
{
  char when[32];
  format_utc_now(when);
  cleanup_json json_object *event = json_object_new_object();
  json_object_object_add(event, "seq", json_object_new_int64(
                                           (int64_t)++run->seq));
  json_object_object_add(event, "time", json_object_new_string(when));
  json_object_object_add(event, "type", json_object_new_string(type));
  json_object_object_add(event, "data",
                         data ? data : json_object_new_object());
  const char *text = json_object_to_json_string_ext(
      event, JSON_C_TO_STRING_PLAIN | JSON_C_TO_STRING_NOSLASHESCAPE);
  if (run->events)
    json_object_array_add(run->events, json_object_get(event));

  struct store *store = NULL;
  cleanup_error flwd_error *err = NULL;
  if (store_get(run->ctx, &store, &err) < 0
      || (store && store_add_event(store, run->id, (long long)run->seq, type,
                                   text, &err)
                       < 0))
    ctx_log(run->ctx, FLWD_LOG_ERROR, "run %s: event %s not stored: %s",
            run->id, type, flwd_error_message(err));

  if (run->event_cb && !run->user_freed)
    run->event_cb(run, text, run->event_user);
}

static json_object *
data_of(const char *key, const char *value)
{
  json_object *data = json_object_new_object();
  json_object_object_add(data, key, json_object_new_string(value));
  return data;
}

/* ---- Life cycle ------------------------------------------------------- */

int
flwd_run_create(flwd_ctx *ctx, const flwd_job *job, const flwd_args *args,
                flwd_run **out, flwd_error **err)
{
  if (args->job != job)
    return set_error(err, FLWD_E_ARGS_INVALID,
                     "the arguments were bound to job '%s', not '%s'",
                     args->job->id, job->id);

  flwd_run *run = calloc(1, sizeof(*run));
  if (run == NULL)
    return set_error(err, FLWD_E_INTERNAL, "out of memory");
  run->ctx = ctx;
  run->job = job_ref((flwd_job *)job);
  run->args = args_copy(args);
  run->exit_status = -1;
  run->log_fd = -1;
  run->pull_lock_fd = -1;
  run->events = json_object_new_array();
  format_utc_now(run->created_at);
  strv_init(&run->command);
  if (random_hex(run->id, 8) < 0 || run->args == NULL) {
    flwd_run_free(run);
    return set_error(err, FLWD_E_INTERNAL, "cannot create a run id");
  }
  run->container_name = xasprintf("flwd-%s", run->id);
  run->host_dir = xasprintf("%s/runs/%s", ctx->state_dir, run->id);
  run->env_file = xasprintf("%s/env", run->host_dir);
  if (!run->container_name || !run->host_dir || !run->env_file) {
    flwd_run_free(run);
    return set_error(err, FLWD_E_INTERNAL, "out of memory");
  }

  /* A run that cannot be recorded is not created: nothing is lost. */
  struct store *store = NULL;
  cleanup_free char *doc = flwd_run_to_json(run);
  int ret = store_get(ctx, &store, err);
  if (ret == 0 && store)
    ret = store_put_run(store, run->id, job->id, "queued", run->created_at,
                        doc ? doc : "{}", err);
  if (ret < 0) {
    flwd_run_free(run);
    return ret;
  }

  json_object *data = data_of("job", job->id);
  json_object_object_add(data, "run", json_object_new_string(run->id));
  emit(run, "run.created", data);
  *out = run;
  return 0;
}

void
flwd_run_set_output_cb(flwd_run *run, flwd_output_cb cb, void *user)
{
  run->output_cb = cb;
  run->output_user = user;
}

/* A subscriber that arrives late first receives the events so far. */
void
flwd_run_set_event_cb(flwd_run *run, flwd_event_cb cb, void *user)
{
  run->event_cb = cb;
  run->event_user = user;
  size_t n = run->events ? json_object_array_length(run->events) : 0;
  for (size_t i = 0; cb && i < n; i++)
    cb(run, json_object_to_json_string_ext(
                json_object_array_get_idx(run->events, i),
                JSON_C_TO_STRING_PLAIN | JSON_C_TO_STRING_NOSLASHESCAPE),
       user);
}

void
flwd_run_set_done_cb(flwd_run *run, flwd_done_cb cb, void *user)
{
  run->done_cb = cb;
  run->done_user = user;
}

static void
link_active(flwd_run *run)
{
  flwd_ctx *ctx = run->ctx;
  run->active = true;
  run->prev = NULL;
  run->next = ctx->runs;
  if (ctx->runs)
    ctx->runs->prev = run;
  ctx->runs = run;
}

static void
unlink_active(flwd_run *run)
{
  if (!run->active)
    return;
  if (run->prev)
    run->prev->next = run->next;
  else
    run->ctx->runs = run->next;
  if (run->next)
    run->next->prev = run->prev;
  run->active = false;
  run->prev = run->next = NULL;
}

static void
free_run_memory(flwd_run *run)
{
  if (run->timeout_ev)
    event_free(run->timeout_ev);
  if (run->stop_retry_ev)
    event_free(run->stop_retry_ev);
  if (run->start_ev)
    event_free(run->start_ev);
  if (run->pull_wait_ev)
    event_free(run->pull_wait_ev);
  if (run->pull_lock_fd >= 0)
    close(run->pull_lock_fd);
  if (run->log_fd >= 0)
    close(run->log_fd);
  buf_clear(&run->partial[0]);
  buf_clear(&run->partial[1]);
  if (run->events)
    json_object_put(run->events);
  if (run->result)
    json_object_put(run->result);
  free(run->result_error);
  child_free(run->child);
  child_free(run->stopper);
  if (run->planned)
    plan_clear(&run->plan);
  strv_clear(&run->command);
  buf_clear(&run->captured);
  buf_clear(&run->stderr_tail);
  flwd_error_free(run->error);
  flwd_job_free(run->job);
  flwd_args_free(run->args);
  free(run->container_name);
  free(run->host_dir);
  free(run->env_file);
  free(run);
}

void
flwd_run_free(flwd_run *run)
{
  if (run == NULL)
    return;
  if (run->active) {
    /* The run goes on inside the context until its container is gone;
     * it frees itself when it ends. */
    run->user_freed = true;
    run->output_cb = NULL;
    run->event_cb = NULL;
    run->done_cb = NULL;
    flwd_run_cancel(run, NULL);
    return;
  }
  free_run_memory(run);
}

/* ---- Host directory --------------------------------------------------- */

static int
write_run_files(flwd_run *run, flwd_error **err)
{
  cleanup_free char *runs_dir = xasprintf("%s/runs", run->ctx->state_dir);
  if (runs_dir == NULL || mkdir_p(runs_dir, 0700) < 0)
    return set_error_errno(err, FLWD_E_INTERNAL, errno,
                           "cannot create the state directory '%s'",
                           runs_dir ? runs_dir : run->ctx->state_dir);
  if (mkdir(run->host_dir, 0700) < 0)
    return set_error_errno(err, FLWD_E_INTERNAL, errno,
                           "cannot create the run directory '%s'",
                           run->host_dir);

  /* The container may run as any uid of its user namespace, so the
   * directories it writes to are open to all; the 0700 run directory
   * above keeps every other host user out. */
  static const char *const open_dirs[] = {"work", "out", "status"};
  for (size_t i = 0; i < ARRAY_SIZE(open_dirs); i++) {
    cleanup_free char *path = xasprintf("%s/%s", run->host_dir, open_dirs[i]);
    if (path == NULL || mkdir(path, 0777) < 0 || chmod(path, 0777) < 0)
      return set_error_errno(err, FLWD_E_INTERNAL, errno,
                             "cannot create '%s'", path ? path : "");
  }

  cleanup_free char *args_json = flwd_args_to_json(run->args);
  cleanup_free char *args_path = xasprintf("%s/args.json", run->host_dir);
  if (args_json == NULL || args_path == NULL
      || write_file_atomic(args_path, args_json, strlen(args_json), 0644) < 0)
    return set_error_errno(err, FLWD_E_INTERNAL, errno,
                           "cannot write the arguments file of run %s",
                           run->id);

  /* The env file is read by the runtime on the host, never mounted; only
   * flwd's own user may read it. */
  struct buf env = {0};
  int ret = plan_env_text(&run->plan, run->id, &env, err);
  if (ret == 0 && write_file_atomic(run->env_file, env.data, env.len, 0600)
                      < 0)
    ret = set_error_errno(err, FLWD_E_INTERNAL, errno,
                          "cannot write the env file of run %s", run->id);
  buf_clear(&env);
  return ret;
}

static void
remove_run_files(flwd_run *run)
{
  static const char *const transient[] = {"env", "args.json", "status",
                                          "work"};
  for (size_t i = 0; i < ARRAY_SIZE(transient); i++) {
    cleanup_free char *path = xasprintf("%s/%s", run->host_dir, transient[i]);
    if (path && rm_rf(path) < 0)
      ctx_log(run->ctx, FLWD_LOG_WARNING,
              "run %s: cannot remove '%s': %s", run->id, path,
              strerror(errno));
  }
  /* An empty output directory is all that is left: remove the run's
   * directory too. A non-empty one stays as the run's result. */
  cleanup_free char *out = xasprintf("%s/out", run->host_dir);
  if (out && rmdir(out) == 0)
    rmdir(run->host_dir);
}

/* Reads the marker that flwd-init leaves. Returns 1 when the job's command
 * was executed, 0 when no marker exists, and -1 with *REASON set when the
 * helper could not execute the command. */
static int
read_init_marker(flwd_run *run, char **reason)
{
  cleanup_free char *path = xasprintf("%s/status/exec", run->host_dir);
  cleanup_close int fd = path ? open(path, O_RDONLY | O_CLOEXEC | O_NOFOLLOW)
                              : -1;
  if (fd < 0)
    return 0;
  char text[512];
  ssize_t n = read(fd, text, sizeof(text) - 1);
  if (n <= 0)
    return 0;
  text[n] = '\0';
  if (strncmp(text, "exec\n", 5) == 0)
    return 1;
  if (strncmp(text, "error ", 6) == 0) {
    text[strcspn(text, "\n")] = '\0';
    *reason = strdup(text + 6);
    return -1;
  }
  return 0;
}

/* ---- Log, result and record ----------------------------------------- */

static void
write_log_line(flwd_run *run, char tag, const char *line, size_t len)
{
  if (run->log_fd < 0)
    return;
  if (run->log_bytes + (long long)len + 3 > run->ctx->log_max_bytes) {
    if (run->log_dropped == 0) {
      json_object *data = json_object_new_object();
      json_object_object_add(data, "max_bytes", json_object_new_int64(
                                                    run->ctx->log_max_bytes));
      emit(run, "log.truncated", data);
    }
    run->log_dropped += (long long)len + 1;
    return;
  }
  char prefix[2] = {tag, ' '};
  struct iovec iov[3] = {
    {prefix, 2}, {(void *)line, len}, {(void *)"\n", 1}};
  ssize_t n;
  do
    n = writev(run->log_fd, iov, 3);
  while (n < 0 && errno == EINTR);
  if (n < 0)
    ctx_log(run->ctx, FLWD_LOG_ERROR, "run %s: cannot write its log: %s",
            run->id, strerror(errno));
  else
    run->log_bytes += n;
}

/* Splits output into lines for the stored log, keeping each line's
 * stream. A line longer than the whole log cap is cut there. */
static void
log_output(flwd_run *run, flwd_stream stream, const char *data, size_t len)
{
  int index = stream == FLWD_STREAM_STDOUT ? 0 : 1;
  char tag = index == 0 ? 'O' : 'E';
  struct buf *partial = &run->partial[index];
  while (len > 0) {
    const char *newline = memchr(data, '\n', len);
    size_t take = newline ? (size_t)(newline - data) : len;
    if ((long long)(partial->len + take) <= run->ctx->log_max_bytes)
      buf_append(partial, data, take);
    else
      run->log_dropped += (long long)take;
    if (newline == NULL)
      break;
    write_log_line(run, tag, partial->data ? partial->data : "",
                   partial->len);
    partial->len = 0;
    data += take + 1;
    len -= take + 1;
  }
}

static void
flush_partial_lines(flwd_run *run)
{
  static const char tags[2] = {'o', 'e'};
  for (int i = 0; i < 2; i++) {
    if (run->partial[i].len)
      write_log_line(run, tags[i], run->partial[i].data, run->partial[i].len);
    run->partial[i].len = 0;
  }
}

/* Reads out/result.json into the run's result. A file that is not a
 * regular file, too large or not valid JSON is recorded as invalid with
 * the reason, never dropped without a word. */
static void
read_result(flwd_run *run)
{
  cleanup_free char *path = xasprintf("%s/out/result.json", run->host_dir);
  cleanup_close int fd = path ? open(path, O_RDONLY | O_CLOEXEC | O_NOFOLLOW
                                               | O_NONBLOCK)
                              : -1;
  if (fd < 0 && errno == ENOENT)
    return;

  char *reason = NULL;
  struct stat st;
  struct buf text = {0};
  if (fd < 0 || fstat(fd, &st) < 0 || !S_ISREG(st.st_mode)) {
    reason = strdup("result.json is not a regular file");
  } else if (st.st_size > RESULT_MAX_BYTES) {
    reason = xasprintf("result.json is larger than %d bytes",
                       RESULT_MAX_BYTES);
  } else {
    char chunk[16384];
    ssize_t n;
    while ((n = read(fd, chunk, sizeof(chunk))) > 0
           && text.len <= RESULT_MAX_BYTES)
      buf_append(&text, chunk, (size_t)n);
    json_tokener *tok = json_tokener_new();
    json_object *value = tok && text.data ? json_tokener_parse_ex(
                                                tok, text.data, (int)text.len)
                                          : NULL;
    bool complete = value && tok->char_offset == (int)text.len;
    if (complete)
      run->result = value;
    else {
      if (value)
        json_object_put(value);
      reason = xasprintf("result.json is not valid JSON: %s",
                         tok ? json_tokener_error_desc(
                                   json_tokener_get_error(tok))
                             : "out of memory");
    }
    if (tok)
      json_tokener_free(tok);
  }
  buf_clear(&text);
  if (reason) {
    run->result_error = reason;
    emit(run, "result.invalid", data_of("reason", reason));
  } else if (run->result) {
    emit(run, "result.recorded", NULL);
  }
}

static json_object *
nullable_string(const char *s)
{
  return s && *s ? json_object_new_string(s) : NULL;
}

char *
flwd_run_to_json(const flwd_run *run)
{
  cleanup_json json_object *obj = json_object_new_object();
  json_object_object_add(obj, "id", json_object_new_string(run->id));
  json_object_object_add(obj, "job", json_object_new_string(run->job->id));
  json_object_object_add(obj, "state", json_object_new_string(
                                           flwd_run_state_name(run->state)));
  json_object_object_add(obj, "exit_status",
                         run->exit_status >= 0
                             ? json_object_new_int(run->exit_status)
                             : NULL);
  json_object *error = NULL;
  if (run->error && run->state == FLWD_RUN_ERROR) {
    error = json_object_new_object();
    json_object_object_add(error, "code", json_object_new_string(
                                              flwd_error_name(run->error)));
    json_object_object_add(error, "message",
                           json_object_new_string(run->error->message));
  }
  json_object_object_add(obj, "error", error);
  json_object *args = NULL;
  json_object_deep_copy(run->args->values, &args, NULL);
  json_object_object_add(obj, "args", args);
  json_object_object_add(obj, "result", run->result
                                            ? json_object_get(run->result)
                                            : NULL);
  json_object_object_add(obj, "result_error",
                         nullable_string(run->result_error));
  json_object_object_add(obj, "created_at",
                         json_object_new_string(run->created_at));
  json_object_object_add(obj, "started_at", nullable_string(run->started_at));
  json_object_object_add(obj, "finished_at",
                         nullable_string(run->finished_at));
  json_object_object_add(obj, "container",
                         json_object_new_string(run->container_name));
  json_object_object_add(obj, "runtime",
                         run->planned ? json_object_new_string(
                                            run->plan.runtime->name)
                                      : NULL);
  json_object_object_add(obj, "log_truncated",
                         json_object_new_boolean(run->log_dropped > 0));
  json_object_object_add(obj, "log_dropped_bytes",
                         json_object_new_int64(run->log_dropped));
  return json_to_string_owned(obj, JSON_C_TO_STRING_PLAIN
                                       | JSON_C_TO_STRING_NOSLASHESCAPE);
}

/* Writes the run's current document to the store. A failure is logged:
 * the run itself goes on, and its events still say what happened. */
static void
record_run(flwd_run *run)
{
  struct store *store = NULL;
  cleanup_error flwd_error *err = NULL;
  cleanup_free char *doc = flwd_run_to_json(run);
  if (store_get(run->ctx, &store, &err) < 0
      || (store && doc
          && store_put_run(store, run->id, run->job->id,
                           flwd_run_state_name(run->state), run->created_at,
                           doc, &err)
                 < 0))
    ctx_log(run->ctx, FLWD_LOG_ERROR, "run %s: not recorded: %s", run->id,
            flwd_error_message(err));
}

flwd_run *
flwd_ctx_find_run(flwd_ctx *ctx, const char *id)
{
  for (flwd_run *run = ctx->runs; run; run = run->next) {
    if (strcmp(run->id, id) == 0)
      return run;
  }
  return NULL;
}

/* ---- Child plumbing --------------------------------------------------- */

static void
keep_tail(struct buf *tail, const char *data, size_t len)
{
  if (len >= STDERR_TAIL_BYTES) {
    tail->len = 0;
    buf_append(tail, data + len - STDERR_TAIL_BYTES, STDERR_TAIL_BYTES);
    return;
  }
  if (tail->len + len > STDERR_TAIL_BYTES) {
    size_t drop = tail->len + len - STDERR_TAIL_BYTES;
    memmove(tail->data, tail->data + drop, tail->len - drop);
    tail->len -= drop;
  }
  buf_append(tail, data, len);
}

static void
on_capture_output(struct child *child, flwd_stream stream, const char *data,
                  size_t len, void *user)
{
  flwd_run *run = user;
  if (stream == FLWD_STREAM_STDERR)
    keep_tail(&run->stderr_tail, data, len);
  else if (run->captured.len + len <= CAPTURE_MAX_BYTES)
    buf_append(&run->captured, data, len);
}

static int
spawn_step(flwd_run *run, run_step step, struct strv *argv,
           child_output_fn output_fn, child_exit_fn exit_fn, flwd_error **err)
{
  buf_clear(&run->captured);
  buf_clear(&run->stderr_tail);
  run->step = step;
  return child_spawn(run->ctx, argv, output_fn, exit_fn, run, &run->child,
                     err);
}

/* Returns the runtime's stderr, trimmed, for an E_OCI message. */
static const char *
stderr_text(flwd_run *run)
{
  if (run->stderr_tail.data == NULL)
    return "no output";
  while (run->stderr_tail.len
         && strchr(" \t\r\n", run->stderr_tail.data[run->stderr_tail.len - 1]))
    run->stderr_tail.data[--run->stderr_tail.len] = '\0';
  return run->stderr_tail.len ? run->stderr_tail.data : "no output";
}

static void
finish_after_child(flwd_run *run)
{
  child_free(run->child);
  run->child = NULL;
  run->step = STEP_NONE;
}

/* Ends a run that was cancelled or timed out before its container. */
static bool
stopped_before_container(flwd_run *run)
{
  if (!run->cancel_requested)
    return false;
  run_finish(run, run->timed_out ? FLWD_RUN_TIMED_OUT : FLWD_RUN_CANCELLED);
  return true;
}

/* ---- Image ------------------------------------------------------------ */

/* Sets the run's command to the image's entrypoint followed by its command,
 * from the runtime's JSON of the image config. */
static int
command_from_image(flwd_run *run, const char *config_json, flwd_error **err)
{
  cleanup_json json_object *config = json_tokener_parse(config_json);
  if (config == NULL)
    return set_error(err, FLWD_E_OCI,
                     "cannot read the config of image '%s'", run->job->image);
  static const char *const keys[] = {"Entrypoint", "Cmd"};
  strv_clear(&run->command);
  for (size_t k = 0; k < ARRAY_SIZE(keys); k++) {
    json_object *list = NULL;
    if (!json_object_object_get_ex(config, keys[k], &list)
        || !json_object_is_type(list, json_type_array))
      continue;
    size_t n = json_object_array_length(list);
    for (size_t i = 0; i < n; i++)
      strv_push(&run->command,
                json_object_get_string(json_object_array_get_idx(list, i)));
  }
  if (run->command.len == 0)
    return set_error(err, FLWD_E_SPEC_INVALID,
                     "%s: command: the image '%s' has no entrypoint or "
                     "command; set command in the spec",
                     run->job->path, run->job->image);
  return 0;
}

static void
on_image_ready(flwd_run *run)
{
  cleanup_error flwd_error *err = NULL;
  if (!run->job->has_command
      && command_from_image(run, run->captured.data ? run->captured.data : "",
                            &err) < 0) {
    run_fail(run, steal_pointer(&err));
    return;
  }
  step_container(run);
}

static void
on_pull_exit(struct child *child, int status, void *user)
{
  flwd_run *run = user;
  finish_after_child(run);
  if (stopped_before_container(run))
    return;

  bool ok = WIFEXITED(status) && WEXITSTATUS(status) == 0;
  json_object *data = data_of("image", run->job->image);
  json_object_object_add(data, "ok", json_object_new_boolean(ok));
  if (!ok)
    json_object_object_add(data, "message",
                           json_object_new_string(stderr_text(run)));
  emit(run, "image.pull_finished", data);
  ctx_log(run->ctx, ok ? FLWD_LOG_INFO : FLWD_LOG_ERROR,
          "run %s: pull of %s %s", run->id, run->job->image,
          ok ? "finished" : "failed");
  if (!ok) {
    flwd_error *err = NULL;
    set_error(&err, FLWD_E_OCI, "cannot pull image '%s': %s",
              run->job->image, stderr_text(run));
    run_fail(run, err);
    return;
  }
  run->pulled = true;
  step_image(run);
}

static void
step_pull(flwd_run *run)
{
  cleanup_strv struct strv argv;
  strv_init(&argv);
  strv_push(&argv, run->plan.runtime_path);
  run->plan.runtime->pull_argv(run->job->image, &argv);

  emit(run, "image.pull_started", data_of("image", run->job->image));
  ctx_log(run->ctx, FLWD_LOG_INFO, "run %s: pulling %s", run->id,
          run->job->image);
  cleanup_error flwd_error *err = NULL;
  if (spawn_step(run, STEP_PULL, &argv, on_capture_output, on_pull_exit, &err)
      < 0)
    run_fail(run, steal_pointer(&err));
}

/* Opens and tries the image's pull lock: a file lock in the state
 * directory, so that runs of one image share a pull whether they live in
 * this process or in another flwd. Returns 1 when held, 0 when another
 * holder has it, -1 when locking is impossible (the run pulls anyway). */
static int
try_pull_lock(flwd_run *run)
{
  if (run->pull_lock_fd >= 0)
    return 1;
  cleanup_free char *dir = xasprintf("%s/pulls", run->ctx->state_dir);
  cleanup_free char *name = strndup(run->job->image, 200);
  if (dir == NULL || name == NULL || mkdir_p(dir, 0700) < 0)
    return -1;
  for (char *p = name; *p; p++) {
    if (!(isalnum((unsigned char)*p) || *p == '.' || *p == '-'))
      *p = '_';
  }
  cleanup_free char *path = xasprintf("%s/%s.lock", dir, name);
  int fd = path ? open(path, O_RDWR | O_CREAT | O_CLOEXEC, 0600) : -1;
  if (fd < 0)
    return -1;
  if (flock(fd, LOCK_EX | LOCK_NB) < 0) {
    int saved = errno;
    close(fd);
    return saved == EWOULDBLOCK ? 0 : -1;
  }
  run->pull_lock_fd = fd;
  return 1;
}

static void
release_pull_lock(flwd_run *run)
{
  if (run->pull_lock_fd >= 0) {
    close(run->pull_lock_fd);
    run->pull_lock_fd = -1;
  }
}

static void
on_pull_wait(evutil_socket_t fd, short what, void *arg)
{
  flwd_run *run = arg;
  run->step = STEP_NONE;
  step_image(run);
}

/* Returns true when the run holds its image's pull lock (or cannot lock at
 * all); otherwise waits for the holder and calls step_image again. */
static bool
take_pull_lock(flwd_run *run)
{
  if (try_pull_lock(run) != 0)
    return true;
  if (!run->pull_waited) {
    emit(run, "image.pull_waiting", data_of("image", run->job->image));
    run->pull_waited = true;
  }
  if (run->pull_wait_ev == NULL)
    run->pull_wait_ev = evtimer_new(run->ctx->base, on_pull_wait, run);
  struct timeval tv = {0, PULL_WAIT_MS * 1000};
  if (run->pull_wait_ev == NULL || evtimer_add(run->pull_wait_ev, &tv) < 0)
    return true;
  run->step = STEP_PULL_WAIT;
  return false;
}

static void
on_inspect_exit(struct child *child, int status, void *user)
{
  flwd_run *run = user;
  finish_after_child(run);
  if (stopped_before_container(run))
    return;

  bool present = WIFEXITED(status) && WEXITSTATUS(status) == 0;
  if (present) {
    release_pull_lock(run);
    if (!run->pulled)
      emit(run, "image.cached", data_of("image", run->job->image));
    on_image_ready(run);
    return;
  }
  if (run->plan.pull == PULL_NEVER || run->pulled) {
    flwd_error *err = NULL;
    set_error(&err, FLWD_E_OCI,
              run->pulled ? "image '%s' is still missing after its pull: %s"
                          : "image '%s' is not present and the pull policy "
                            "is never; pull it first or use --pull missing "
                            "(%s)",
              run->job->image, stderr_text(run));
    run_fail(run, err);
    return;
  }
  /* Absent: take the lock, look once more in case another run pulled the
   * image meanwhile, and pull only if it is still missing. */
  if (!take_pull_lock(run))
    return;
  if (!run->inspected_locked) {
    step_image(run);
    return;
  }
  step_pull(run);
}

static void
step_image(flwd_run *run)
{
  if (run->plan.pull == PULL_ALWAYS && !run->pulled) {
    if (!take_pull_lock(run))
      return;
    /* A pull of the same image that ended while this run waited is as
     * fresh as one of its own. */
    if (!run->pull_waited) {
      step_pull(run);
      return;
    }
    run->pulled = true;
  }
  cleanup_strv struct strv argv;
  strv_init(&argv);
  strv_push(&argv, run->plan.runtime_path);
  run->plan.runtime->image_inspect_argv(run->job->image, &argv);
  run->inspected_locked = run->pull_lock_fd >= 0;
  cleanup_error flwd_error *err = NULL;
  if (spawn_step(run, STEP_INSPECT, &argv, on_capture_output,
                 on_inspect_exit, &err)
      < 0)
    run_fail(run, steal_pointer(&err));
}

/* ---- Container -------------------------------------------------------- */

static void
on_container_output(struct child *child, flwd_stream stream,
                    const char *data, size_t len, void *user)
{
  flwd_run *run = user;
  if (stream == FLWD_STREAM_STDERR)
    keep_tail(&run->stderr_tail, data, len);
  log_output(run, stream, data, len);
  if (run->output_cb)
    run->output_cb(run, stream, data, len, run->output_user);
}

static void
on_rm_exit(struct child *child, int status, void *user)
{
  flwd_run *run = user;
  finish_after_child(run);
  if (!(WIFEXITED(status) && WEXITSTATUS(status) == 0))
    ctx_log(run->ctx, FLWD_LOG_WARNING,
            "run %s: removing container %s failed: %s", run->id,
            run->container_name, stderr_text(run));
  run_finish(run, run->final_state);
}

/* Removes the container, then ends the run in STATE. The runtime's --rm
 * has removed it after a normal exit; this covers every other way out. */
static void
cleanup_then_finish(flwd_run *run, flwd_run_state state)
{
  run->final_state = state;
  cleanup_strv struct strv argv;
  strv_init(&argv);
  strv_push(&argv, run->plan.runtime_path);
  run->plan.runtime->rm_argv(run->container_name, &argv);
  cleanup_error flwd_error *err = NULL;
  if (spawn_step(run, STEP_CLEANUP, &argv, on_capture_output, on_rm_exit,
                 &err)
      < 0) {
    ctx_log(run->ctx, FLWD_LOG_ERROR, "run %s: %s", run->id,
            flwd_error_message(err));
    run_finish(run, state);
  }
}

static bool
is_name_conflict(flwd_run *run)
{
  return run->stderr_tail.data
         && (strstr(run->stderr_tail.data, "already in use")
             || strstr(run->stderr_tail.data, "is already in use"));
}

/* Returns the io.flwd.run-id label of the container holding the run's
 * name (an empty string for a container without it), or NULL when the
 * runtime could not say. Blocks for one short runtime command. */
static char *
container_run_label(flwd_run *run)
{
  cleanup_strv struct strv argv;
  strv_init(&argv);
  strv_push(&argv, run->plan.runtime_path);
  run->plan.runtime->labels_argv(run->container_name, &argv);
  struct buf out = {0};
  int status = 0;
  char *label = NULL;
  if (child_run_sync(run->ctx, &argv, 65536, &out, NULL, &status, NULL) == 0
      && WIFEXITED(status) && WEXITSTATUS(status) == 0 && out.data) {
    cleanup_json json_object *labels = json_tokener_parse(out.data);
    json_object *value = NULL;
    if (labels && json_object_object_get_ex(labels, "io.flwd.run-id", &value))
      label = strdup(json_object_get_string(value));
    else
      label = strdup("");
  }
  buf_clear(&out);
  return label;
}

/* Handles a run whose name was taken. A container that carries this run's
 * own label is a leftover of an earlier attempt: remove it and try once
 * more. Returns true when the run was retried. */
static bool
retry_after_leftover(flwd_run *run)
{
  if (run->name_retry_done)
    return false;
  run->name_retry_done = true;
  cleanup_free char *label = container_run_label(run);
  if (label == NULL || strcmp(label, run->id) != 0)
    return false;

  ctx_log(run->ctx, FLWD_LOG_WARNING,
          "run %s: removing leftover container %s of this run", run->id,
          run->container_name);
  emit(run, "container.leftover_removed",
       data_of("container", run->container_name));
  cleanup_strv struct strv argv;
  strv_init(&argv);
  strv_push(&argv, run->plan.runtime_path);
  run->plan.runtime->rm_argv(run->container_name, &argv);
  int status = 0;
  child_run_sync(run->ctx, &argv, 65536, NULL, NULL, &status, NULL);
  step_container(run);
  return true;
}

static void
on_container_exit(struct child *child, int status, void *user)
{
  flwd_run *run = user;
  finish_after_child(run);
  if (run->stopper == NULL && run->stop_retry_ev)
    event_del(run->stop_retry_ev);

  cleanup_free char *reason = NULL;
  int marker = read_init_marker(run, &reason);
  bool exited = WIFEXITED(status);
  int code = exited ? WEXITSTATUS(status) : 128 + WTERMSIG(status);

  json_object *data = data_of("container", run->container_name);
  json_object_object_add(data, "exit_code", json_object_new_int(code));
  json_object_object_add(data, "job_started", json_object_new_boolean(
                                                  marker == 1));
  emit(run, "container.exited", data);

  if (run->cancel_requested) {
    if (marker == 1 && code == 128 + SIGKILL)
      emit(run, "container.killed",
           data_of("reason", "the grace period ended"));
    cleanup_then_finish(run, run->timed_out ? FLWD_RUN_TIMED_OUT
                                            : FLWD_RUN_CANCELLED);
    return;
  }

  if (marker == 1 && exited) {
    run->exit_status = code;
    /* Removed by the runtime's --rm already. */
    run_finish(run, code == 0 ? FLWD_RUN_SUCCEEDED : FLWD_RUN_FAILED);
    return;
  }

  if (marker == 0 && is_name_conflict(run) && retry_after_leftover(run))
    return;

  flwd_error *err = NULL;
  if (marker < 0)
    set_error(&err, FLWD_E_OCI, "cannot execute the job's command in image "
                                "'%s': %s",
              run->job->image, reason ? reason : "unknown reason");
  else if (is_name_conflict(run))
    set_error(&err, FLWD_E_NAME_CONFLICT,
              "a container named '%s' already exists and flwd did not "
              "create it for this run; remove it with '%s rm -f %s'",
              run->container_name, run->plan.runtime->name,
              run->container_name);
  else
    set_error(&err, FLWD_E_OCI, "%s failed to run the container: %s",
              run->plan.runtime->name, stderr_text(run));

  flwd_error_free(run->error);
  run->error = err;
  /* A name conflict is left alone: the container belongs to someone else. */
  if (flwd_error_code(err) == FLWD_E_NAME_CONFLICT) {
    run_finish(run, FLWD_RUN_ERROR);
    return;
  }
  cleanup_then_finish(run, FLWD_RUN_ERROR);
}

static void
on_timeout(evutil_socket_t fd, short what, void *arg)
{
  flwd_run *run = arg;
  if (run->cancel_requested || !run->active)
    return;
  run->timed_out = true;
  json_object *data = json_object_new_object();
  json_object_object_add(data, "timeout_ms",
                         json_object_new_int64(run->job->timeout_ms));
  emit(run, "run.timed_out", data);
  ctx_log(run->ctx, FLWD_LOG_WARNING, "run %s: timed out after %lld ms",
          run->id, run->job->timeout_ms);
  flwd_run_cancel(run, NULL);
}

static int
run_layout_fill(flwd_ctx *ctx, const struct plan *plan, const char *run_id,
                const char *container_name, const char *host_dir,
                const char *env_file, const struct strv *command,
                struct run_layout *layout, flwd_error **err)
{
  if (strpbrk(host_dir, ",:\n") || strpbrk(ctx->init_path, ",:\n"))
    return set_error(err, FLWD_E_CONFIG_INVALID,
                     "the state directory '%s' and the init path '%s' must "
                     "not contain ',', ':' or a line break, because the "
                     "runtime's --mount option cannot quote them",
                     ctx->state_dir, ctx->init_path);
  layout->run_id = run_id;
  layout->job_id = plan->job->id;
  layout->container_name = container_name;
  layout->image = plan->job->image;
  layout->host_dir = host_dir;
  layout->env_file = env_file;
  layout->init_path = ctx->init_path;
  layout->command = command;
  return 0;
}

static void
step_container(flwd_run *run)
{
  cleanup_error flwd_error *err = NULL;
  if (run->job->has_command) {
    strv_clear(&run->command);
    if (plan_expand_command(&run->plan, run->id, &run->command, &err) < 0) {
      run_fail(run, steal_pointer(&err));
      return;
    }
  }

  struct run_layout layout;
  cleanup_strv struct strv argv;
  strv_init(&argv);
  if (run_layout_fill(run->ctx, &run->plan, run->id, run->container_name,
                      run->host_dir, run->env_file, &run->command, &layout,
                      &err)
          < 0
      || plan_build_argv(&run->plan, &layout, &argv, &err) < 0
      || spawn_step(run, STEP_CONTAINER, &argv, on_container_output,
                    on_container_exit, &err)
             < 0) {
    run_fail(run, steal_pointer(&err));
    return;
  }
  run->container_spawned = true;
  run->state = FLWD_RUN_RUNNING;
  format_utc_now(run->started_at);
  record_run(run);

  json_object *data = data_of("container", run->container_name);
  json_object_object_add(data, "argv", strv_to_json(&argv));
  emit(run, "container.started", data);

  if (run->job->timeout_ms > 0) {
    struct timeval tv = {run->job->timeout_ms / 1000,
                         (run->job->timeout_ms % 1000) * 1000};
    run->timeout_ev = evtimer_new(run->ctx->base, on_timeout, run);
    if (run->timeout_ev)
      evtimer_add(run->timeout_ev, &tv);
  }
}

/* ---- Start ------------------------------------------------------------ */

static void
emit_plan_events(flwd_run *run)
{
  cleanup_json json_object *plan = plan_to_json(&run->plan, NULL);
  emit(run, "run.planned", json_object_get(plan));

  json_object *data = data_of("runtime", run->plan.runtime->name);
  json_object_object_add(data, "path",
                         json_object_new_string(run->plan.runtime_path));
  emit(run, "runtime.chosen", data);

  size_t n = json_object_array_length(run->plan.guarantees_missing);
  for (size_t i = 0; i < n; i++) {
    const char *text = json_object_get_string(
        json_object_array_get_idx(run->plan.guarantees_missing, i));
    emit(run, "profile.guarantee_missing", data_of("guarantee", text));
    ctx_log(run->ctx, FLWD_LOG_WARNING, "run %s: %s: guarantee missing: %s",
            run->id, run->plan.runtime->name, text);
  }
}

static void
on_start(evutil_socket_t fd, short what, void *arg)
{
  flwd_run *run = arg;
  if (stopped_before_container(run))
    return;

  cleanup_error flwd_error *err = NULL;
  if (plan_resolve(run->ctx, run->job, run->args, &run->plan, &err) < 0) {
    run_fail(run, steal_pointer(&err));
    return;
  }
  run->planned = true;
  emit_plan_events(run);

  if (write_run_files(run, &err) < 0) {
    run_fail(run, steal_pointer(&err));
    return;
  }
  struct store *store = NULL;
  if (store_get(run->ctx, &store, &err) < 0
      || (store && (run->log_fd = store_log_open(run->ctx, run->id, &err))
                       < 0)) {
    run_fail(run, steal_pointer(&err));
    return;
  }
  step_image(run);
}

int
flwd_run_start(flwd_run *run, flwd_error **err)
{
  if (run->state != FLWD_RUN_QUEUED || run->active || run->start_ev)
    return set_error(err, FLWD_E_REQUEST_INVALID,
                     "run %s has already been started", run->id);
  run->start_ev = evtimer_new(run->ctx->base, on_start, run);
  if (run->start_ev == NULL)
    return set_error(err, FLWD_E_INTERNAL, "out of memory");
  link_active(run);
  run->waiting_for_slot = true;
  run->ticket = ++run->ctx->run_tickets;
  start_queued_runs(run->ctx);
  if (run->waiting_for_slot) {
    json_object *data = json_object_new_object();
    json_object_object_add(data, "max_runs",
                           json_object_new_int64(run->ctx->max_runs));
    emit(run, "run.queued", data);
  }
  return 0;
}

static size_t
count_started(flwd_ctx *ctx)
{
  size_t n = 0;
  for (flwd_run *run = ctx->runs; run; run = run->next)
    n += !run->waiting_for_slot;
  return n;
}

/* Starts waiting runs, oldest first, while the maximum allows. */
static void
start_queued_runs(flwd_ctx *ctx)
{
  while (ctx->max_runs == 0 || (long long)count_started(ctx) < ctx->max_runs) {
    flwd_run *next = NULL;
    for (flwd_run *run = ctx->runs; run; run = run->next) {
      if (run->waiting_for_slot && (next == NULL || run->ticket < next->ticket))
        next = run;
    }
    if (next == NULL)
      return;
    next->waiting_for_slot = false;
    next->state = FLWD_RUN_PREPARING;
    record_run(next);
    struct timeval now = {0, 0};
    evtimer_add(next->start_ev, &now);
  }
}

/* ---- Cancel ----------------------------------------------------------- */

static void
on_stop_retry(evutil_socket_t fd, short what, void *arg)
{
  send_stop(arg);
}

static void
on_stop_exit(struct child *child, int status, void *user)
{
  flwd_run *run = user;
  child_free(run->stopper);
  run->stopper = NULL;
  if (run->step != STEP_CONTAINER)
    return;

  /* The container is still attached: either the stop came before the
   * runtime had created it, or the stop itself failed. Try again until
   * the attached command ends, and after the grace and a margin, kill. */
  long long waited = monotonic_ms() - run->stop_sent_ms;
  if (waited > run->job->stop_timeout_ms + STOP_SLACK_MS) {
    ctx_log(run->ctx, FLWD_LOG_WARNING,
            "run %s: the runtime did not stop container %s; killing the "
            "attached runtime process",
            run->id, run->container_name);
    emit(run, "kill.sent", data_of("container", run->container_name));
    child_signal(run->child, SIGKILL);
    return;
  }
  if (run->stop_retry_ev == NULL)
    run->stop_retry_ev = evtimer_new(run->ctx->base, on_stop_retry, run);
  struct timeval tv = {0, STOP_RETRY_MS * 1000};
  if (run->stop_retry_ev)
    evtimer_add(run->stop_retry_ev, &tv);
}

static void
send_stop(flwd_run *run)
{
  if (run->stopper || run->step != STEP_CONTAINER)
    return;
  cleanup_strv struct strv argv;
  strv_init(&argv);
  strv_push(&argv, run->plan.runtime_path);
  run->plan.runtime->stop_argv(run->container_name, run->job->stop_timeout_ms,
                               &argv);
  cleanup_error flwd_error *err = NULL;
  if (child_spawn(run->ctx, &argv, NULL, on_stop_exit, run, &run->stopper,
                  &err)
      < 0) {
    ctx_log(run->ctx, FLWD_LOG_ERROR, "run %s: %s", run->id,
            flwd_error_message(err));
    child_signal(run->child, SIGKILL);
  }
}

int
flwd_run_cancel(flwd_run *run, flwd_error **err)
{
  if (run->state >= FLWD_RUN_SUCCEEDED)
    return set_error(err, FLWD_E_RUN_FINISHED,
                     "run %s has already finished as %s", run->id,
                     flwd_run_state_name(run->state));
  if (run->cancel_requested)
    return 0;
  run->cancel_requested = true;
  emit(run, "run.cancel_requested", data_of("state",
                                            flwd_run_state_name(run->state)));

  if (!run->active || run->waiting_for_slot) {
    run_finish(run, FLWD_RUN_CANCELLED);
    return 0;
  }
  switch (run->step) {
    case STEP_NONE:
      /* Not started yet: the start callback sees the request and ends. */
      break;
    case STEP_PULL_WAIT:
      evtimer_del(run->pull_wait_ev);
      run->step = STEP_NONE;
      run_finish(run, run->timed_out ? FLWD_RUN_TIMED_OUT
                                     : FLWD_RUN_CANCELLED);
      break;
    case STEP_INSPECT:
    case STEP_PULL:
      /* Nothing of the run exists in the runtime yet; end its command. */
      child_signal(run->child, SIGKILL);
      break;
    case STEP_CONTAINER:
      run->stop_sent_ms = monotonic_ms();
      json_object *data = data_of("container", run->container_name);
      json_object_object_add(data, "grace_ms", json_object_new_int64(
                                                   run->job->stop_timeout_ms));
      emit(run, "stop.sent", data);
      send_stop(run);
      break;
    case STEP_CLEANUP:
      break;
  }
  return 0;
}

/* ---- End -------------------------------------------------------------- */

static void
run_fail(flwd_run *run, flwd_error *err)
{
  flwd_error_free(run->error);
  run->error = err;
  if (run->cancel_requested) {
    flwd_error_free(run->error);
    run->error = NULL;
    run_finish(run, run->timed_out ? FLWD_RUN_TIMED_OUT : FLWD_RUN_CANCELLED);
    return;
  }
  if (run->container_spawned) {
    cleanup_then_finish(run, FLWD_RUN_ERROR);
    return;
  }
  run_finish(run, FLWD_RUN_ERROR);
}

static void
run_finish(flwd_run *run, flwd_run_state state)
{
  run->state = state;
  if (run->timeout_ev)
    evtimer_del(run->timeout_ev);
  if (run->stop_retry_ev)
    evtimer_del(run->stop_retry_ev);
  if (run->start_ev)
    evtimer_del(run->start_ev);
  release_pull_lock(run);
  flush_partial_lines(run);
  if (run->log_dropped > 0) {
    json_object *data = json_object_new_object();
    json_object_object_add(data, "dropped_bytes",
                           json_object_new_int64(run->log_dropped));
    emit(run, "log.truncated_total", data);
  }
  if (run->container_spawned)
    read_result(run);
  if (run->planned || run->step != STEP_NONE)
    remove_run_files(run);
  format_utc_now(run->finished_at);

  json_object *data = data_of("state", flwd_run_state_name(state));
  if (run->exit_status >= 0)
    json_object_object_add(data, "exit_status",
                           json_object_new_int(run->exit_status));
  if (run->error) {
    json_object_object_add(data, "error_code", json_object_new_string(
                                                   flwd_error_name(run->error)));
    json_object_object_add(data, "error_message", json_object_new_string(
                                                      run->error->message));
  }
  emit(run, "run.finished", data);
  record_run(run);
  flwd_ctx *ctx = run->ctx;
  unlink_active(run);
  start_queued_runs(ctx);

  if (run->user_freed) {
    free_run_memory(run);
    return;
  }
  if (run->done_cb)
    run->done_cb(run, run->done_user);
}

int
flwd_run_wait(flwd_run *run, flwd_error **err)
{
  if (run->state == FLWD_RUN_QUEUED && !run->cancel_requested) {
    int ret = flwd_run_start(run, err);
    if (ret < 0)
      return ret;
  }
  struct event_base *base = run->ctx->base;
  while (run->state < FLWD_RUN_SUCCEEDED) {
    if (event_base_loop(base, EVLOOP_ONCE) < 0)
      return set_error(err, FLWD_E_INTERNAL, "the event loop failed");
  }
  return 0;
}

void
run_cancel_all_blocking(flwd_ctx *ctx)
{
  for (flwd_run *run = ctx->runs; run; run = run->next)
    flwd_run_cancel(run, NULL);
  while (ctx->runs) {
    if (event_base_loop(ctx->base, EVLOOP_ONCE) < 0)
      break;
  }
}

/* ---- Accessors -------------------------------------------------------- */

flwd_run_state
flwd_run_get_state(const flwd_run *run)
{
  return run->state;
}

const char *
flwd_run_state_name(flwd_run_state state)
{
  switch (state) {
    case FLWD_RUN_QUEUED:
      return "queued";
    case FLWD_RUN_PREPARING:
      return "preparing";
    case FLWD_RUN_RUNNING:
      return "running";
    case FLWD_RUN_SUCCEEDED:
      return "succeeded";
    case FLWD_RUN_FAILED:
      return "failed";
    case FLWD_RUN_CANCELLED:
      return "cancelled";
    case FLWD_RUN_TIMED_OUT:
      return "timed_out";
    case FLWD_RUN_ERROR:
      return "error";
  }
  return "error";
}

const char *
flwd_run_id(const flwd_run *run)
{
  return run->id;
}

int
flwd_run_exit_status(const flwd_run *run)
{
  return run->exit_status;
}

const flwd_error *
flwd_run_error(const flwd_run *run)
{
  return run->state == FLWD_RUN_ERROR ? run->error : NULL;
}

/* ---- Plan preview ----------------------------------------------------- */

int
run_layout_argv(flwd_ctx *ctx, const struct plan *plan, struct strv *argv,
                flwd_error **err)
{
  char id[17];
  if (random_hex(id, 8) < 0)
    return set_error(err, FLWD_E_INTERNAL, "cannot create a run id");
  cleanup_free char *name = xasprintf("flwd-%s", id);
  cleanup_free char *host_dir = xasprintf("%s/runs/%s", ctx->state_dir, id);
  cleanup_free char *env_file = xasprintf("%s/env", host_dir);
  cleanup_strv struct strv command;
  strv_init(&command);
  if (!name || !host_dir || !env_file)
    return set_error(err, FLWD_E_INTERNAL, "out of memory");

  int ret = 0;
  if (plan->job->has_command) {
    ret = plan_expand_command(plan, id, &command, err);
  } else {
    /* The image's own command, when the image is at hand; otherwise the
     * plan ends at the image and the command comes from it after the
     * pull. */
    cleanup_strv struct strv inspect;
    strv_init(&inspect);
    strv_push(&inspect, plan->runtime_path);
    plan->runtime->image_inspect_argv(plan->job->image, &inspect);
    struct buf out = {0};
    int status = 0;
    if (child_run_sync(ctx, &inspect, CAPTURE_MAX_BYTES, &out, NULL, &status,
                       NULL)
            == 0
        && WIFEXITED(status) && WEXITSTATUS(status) == 0 && out.data) {
      flwd_run tmp = {.job = plan->job};
      strv_init(&tmp.command);
      if (command_from_image(&tmp, out.data, NULL) == 0)
        command = tmp.command;
      else
        strv_clear(&tmp.command);
    }
    buf_clear(&out);
  }
  if (ret < 0)
    return ret;

  struct run_layout layout;
  ret = run_layout_fill(ctx, plan, id, name, host_dir, env_file, &command,
                        &layout, err);
  if (ret < 0)
    return ret;
  return plan_build_argv(plan, &layout, argv, err);
}
