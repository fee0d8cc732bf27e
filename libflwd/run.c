/* libflwd: runs and their life on the event loop.
 *
 * A run is a small state machine driven by the exits of its child
 * processes: inspect the image, pull it when needed, run the container
 * attached, then clean up. Only one child runs for a run at a time, except
 * the stop command, which runs beside the attached container.
 *
 * flwd-init, a static helper mounted into the container as its entrypoint,
 * records whether the job itself ran: it writes a marker just before it
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

#include "run-internal.h"

long long
monotonic_ms(void)
{
  struct timespec ts;
  clock_gettime(CLOCK_MONOTONIC, &ts);
  return (long long)ts.tv_sec * 1000 + ts.tv_nsec / 1000000;
}

/* ---- Life cycle ------------------------------------------------------- */

flwd_run *
run_alloc(flwd_ctx *ctx, flwd_job *job, flwd_args *args, const char *id)
{
  flwd_run *run = calloc(1, sizeof(*run));
  if (run == NULL) {
    flwd_job_free(job);
    flwd_args_free(args);
    return NULL;
  }
  run->ctx = ctx;
  run->job = job;
  run->args = args;
  run->exit_status = -1;
  run->log_fd = -1;
  run->pull_lock_fd = -1;
  run->create_lock_fd = -1;
  run->owner_lock_fd = -1;
  run->userns_lock_fd = -1;
  run->events = json_object_new_array();
  run->metadata = json_object_new_object();
  format_utc_now(run->created_at);
  strv_init(&run->command);
  if (id)
    snprintf(run->id, sizeof(run->id), "%s", id);
  else if (random_hex(run->id, 8) < 0)
    run->id[0] = '\0';
  run->container_name = xasprintf("flwd-%s", run->id);
  run->host_dir = xasprintf("%s/runs/%s", ctx->state_dir, run->id);
  run->env_file = xasprintf("%s/env", run->host_dir);
  if (!run->args || !run->id[0] || !run->container_name || !run->host_dir
      || !run->env_file || !run->events || !run->metadata) {
    flwd_run_free(run);
    return NULL;
  }
  return run;
}

int
flwd_run_create(flwd_ctx *ctx, const flwd_job *job, const flwd_args *args,
                flwd_run **out, flwd_error **err)
{
  if (args->job != job)
    return set_error(err, FLWD_E_ARGS_INVALID,
                     "the arguments were bound to job '%s', not '%s'",
                     args->job->id, job->id);

  flwd_run *run
      = run_alloc(ctx, job_ref((flwd_job *)job), args_copy(args), NULL);
  if (run == NULL)
    return set_error(err, FLWD_E_INTERNAL,
                     "cannot create a run: out of "
                     "memory");

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

static bool
metadata_key_is_valid(const char *key)
{
  size_t len = strlen(key);
  if (len < 1 || len > 64)
    return false;
  for (const char *p = key; *p; p++) {
    if (!(isalnum((unsigned char)*p) || strchr("._-", *p)))
      return false;
  }
  return true;
}

int
flwd_run_set_metadata(flwd_run *run, const char *key, const char *value,
                      flwd_error **err)
{
  if (!metadata_key_is_valid(key))
    return set_error(err, FLWD_E_REQUEST_INVALID,
                     "invalid metadata key '%s': use 1 to 64 letters, "
                     "digits, '.', '_' or '-'",
                     key);
  if (run->state != FLWD_RUN_QUEUED || run->active)
    return set_error(err, FLWD_E_REQUEST_INVALID,
                     "run %s has started; set metadata before starting it",
                     run->id);
  json_object_object_add(run->metadata, key, json_object_new_string(value));
  record_run(run);
  return 0;
}

int
flwd_ctx_cancel_run(flwd_ctx *ctx, const char *id, flwd_error **err)
{
  flwd_run *run = flwd_ctx_find_run(ctx, id);
  if (run)
    return flwd_run_cancel(run, err);

  cleanup_free char *doc = NULL;
  int ret = flwd_store_run_json(ctx, id, &doc, err);
  if (ret < 0)
    return ret;
  cleanup_json json_object *obj = json_tokener_parse(doc);
  json_object *state = NULL;
  const char *name = obj && json_object_object_get_ex(obj, "state", &state)
                         ? json_object_get_string(state)
                         : "";
  static const char *const final_states[]
      = {"succeeded", "failed", "cancelled", "timed_out", "error"};
  for (size_t i = 0; i < ARRAY_SIZE(final_states); i++) {
    if (strcmp(name, final_states[i]) == 0)
      return set_error(err, FLWD_E_RUN_FINISHED,
                       "run %s has already finished as %s", id, name);
  }
  return set_error(err, FLWD_E_REQUEST_INVALID,
                   "run %s is %s in another flwd process; cancel it there", id,
                   name);
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
    cb(run,
       json_object_to_json_string_ext(json_object_array_get_idx(run->events, i),
                                      JSON_PLAIN),
       user);
}

void
flwd_run_set_done_cb(flwd_run *run, flwd_done_cb cb, void *user)
{
  run->done_cb = cb;
  run->done_user = user;
}

static char *
owner_lock_path(flwd_run *run)
{
  return xasprintf("%s/locks/%s.lock", run->ctx->state_dir, run->id);
}

int
run_take_owner_lock(flwd_run *run)
{
  cleanup_free char *dir = xasprintf("%s/locks", run->ctx->state_dir);
  cleanup_free char *path = owner_lock_path(run);
  if (dir == NULL || path == NULL || mkdir_p(dir, 0700) < 0)
    return -1;
  return lock_file_try(path, &run->owner_lock_fd);
}

static void
release_owner_lock(flwd_run *run)
{
  if (run->owner_lock_fd < 0)
    return;
  cleanup_free char *path = owner_lock_path(run);
  if (path)
    unlink(path);
  close(run->owner_lock_fd);
  run->owner_lock_fd = -1;
}

void
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
  if (run->metadata)
    json_object_put(run->metadata);
  free(run->image_user);
  if (run->result)
    json_object_put(run->result);
  free(run->result_error);
  if (run->follow_grace_ev)
    event_free(run->follow_grace_ev);
  if (run->watchdog_ev)
    event_free(run->watchdog_ev);
  if (run->stop_deadline_ev)
    event_free(run->stop_deadline_ev);
  if (run->rm_retry_ev)
    event_free(run->rm_retry_ev);
  if (run->create_ev)
    event_free(run->create_ev);
  if (run->create_lock_fd >= 0)
    close(run->create_lock_fd);
  if (run->owner_lock_fd >= 0)
    close(run->owner_lock_fd);
  if (run->userns_lock_fd >= 0)
    close(run->userns_lock_fd);
  child_free(run->child);
  child_free(run->follower);
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

int
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
      return set_error_errno(err, FLWD_E_INTERNAL, errno, "cannot create '%s'",
                             path ? path : "");
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
  if (ret == 0)
    ret = secrets_write(run, &env, err);
  if (ret == 0 && write_file_atomic(run->env_file, env.data, env.len, 0600) < 0)
    ret = set_error_errno(err, FLWD_E_INTERNAL, errno,
                          "cannot write the env file of run %s", run->id);
  if (env.data)
    explicit_bzero(env.data, env.cap);
  buf_clear(&env);
  return ret;
}

void
remove_run_files(flwd_run *run)
{
  static const char *const transient[]
      = {"env", "secrets", "args.json", "status", "work"};
  for (size_t i = 0; i < ARRAY_SIZE(transient); i++) {
    cleanup_free char *path = xasprintf("%s/%s", run->host_dir, transient[i]);
    if (path)
      run_remove_tree(run, path);
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
int
read_init_marker(flwd_run *run, char **reason)
{
  cleanup_free char *path = xasprintf("%s/status/exec", run->host_dir);
  cleanup_close int fd
      = path ? open(path, O_RDONLY | O_CLOEXEC | O_NOFOLLOW) : -1;
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

/* ---- Child plumbing --------------------------------------------------- */

void
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

void
on_capture_output(struct child *child, flwd_stream stream, const char *data,
                  size_t len, void *user)
{
  flwd_run *run = user;
  if (stream == FLWD_STREAM_STDERR)
    keep_tail(&run->stderr_tail, data, len);
  else if (run->captured.len + len <= CAPTURE_MAX_BYTES)
    buf_append(&run->captured, data, len);
}

static void
on_watchdog(evutil_socket_t fd, short what, void *arg)
{
  flwd_run *run = arg;
  const char *note = "the runtime command did not finish in time";
  ctx_log(run->ctx, FLWD_LOG_ERROR, "run %s: %s (%d s); ending it", run->id,
          note, QUICK_STEP_TIMEOUT_MS / 1000);
  keep_tail(&run->stderr_tail, note, strlen(note));
  child_terminate(run->child, RUNTIME_KILL_GRACE_MS);
}

int
spawn_step(flwd_run *run, run_step step, struct strv *argv,
           child_output_fn output_fn, child_exit_fn exit_fn, flwd_error **err)
{
  buf_clear(&run->captured);
  buf_clear(&run->stderr_tail);
  run->step = step;
  int ret
      = child_spawn(run->ctx, argv, output_fn, exit_fn, run, &run->child, err);
  /* Inspecting and removing take a moment; one that hangs (a runtime stuck
   * on a lock, say) ends with an error instead of holding the run. */
  if (ret == 0 && (step == STEP_INSPECT || step == STEP_CLEANUP)) {
    if (run->watchdog_ev == NULL)
      run->watchdog_ev = evtimer_new(run->ctx->base, on_watchdog, run);
    struct timeval tv = {QUICK_STEP_TIMEOUT_MS / 1000, 0};
    if (run->watchdog_ev)
      evtimer_add(run->watchdog_ev, &tv);
  }
  return ret;
}

/* Returns the runtime's stderr, trimmed, for an E_OCI message. */
const char *
stderr_text(flwd_run *run)
{
  if (run->stderr_tail.data == NULL)
    return "no output";
  while (run->stderr_tail.len
         && strchr(" \t\r\n", run->stderr_tail.data[run->stderr_tail.len - 1]))
    run->stderr_tail.data[--run->stderr_tail.len] = '\0';
  return run->stderr_tail.len ? run->stderr_tail.data : "no output";
}

void
finish_after_child(flwd_run *run)
{
  if (run->watchdog_ev)
    evtimer_del(run->watchdog_ev);
  child_free(run->child);
  run->child = NULL;
  run->step = STEP_NONE;
}

/* Ends a run that was cancelled or timed out before its container. */
bool
stopped_before_container(flwd_run *run)
{
  if (!run->cancel_requested)
    return false;
  run_finish(run, run->timed_out ? FLWD_RUN_TIMED_OUT : FLWD_RUN_CANCELLED);
  return true;
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

  size_t n_decisions = json_object_array_length(run->plan.decisions);
  for (size_t i = 0; i < n_decisions; i++) {
    json_object *decision = json_object_array_get_idx(run->plan.decisions, i);
    json_object *granted = NULL, *request = NULL;
    json_object_object_get_ex(decision, "granted", &granted);
    json_object_object_get_ex(decision, "request", &request);
    emit(run, "policy.decision", json_object_get(decision));
    ctx_log(run->ctx,
            json_object_get_boolean(granted) ? FLWD_LOG_INFO : FLWD_LOG_WARNING,
            "run %s: policy %s %s for job %s", run->id,
            json_object_get_boolean(granted) ? "granted" : "denied",
            json_object_get_string(request), run->job->id);
  }

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
  if (run->plan.denial) {
    flwd_error *denied = NULL;
    set_error(&denied, FLWD_E_POLICY_DENIED, "%s", run->plan.denial);
    run_fail(run, denied);
    return;
  }

  if (write_run_files(run, &err) < 0) {
    run_fail(run, steal_pointer(&err));
    return;
  }
  struct store *store = NULL;
  if (store_get(run->ctx, &store, &err) < 0
      || (store
          && (run->log_fd = store_log_open(run->ctx, run->id, false, &err))
                 < 0)) {
    run_fail(run, steal_pointer(&err));
    return;
  }
  step_image(run);
}

int
flwd_run_start(flwd_run *run, flwd_error **err)
{
  if (run->state >= FLWD_RUN_SUCCEEDED)
    return set_error(err, FLWD_E_RUN_FINISHED,
                     "run %s has already finished as %s", run->id,
                     flwd_run_state_name(run->state));
  if (run->state != FLWD_RUN_QUEUED || run->active || run->start_ev)
    return set_error(err, FLWD_E_REQUEST_INVALID,
                     "run %s has already been started", run->id);
  run->start_ev = evtimer_new(run->ctx->base, on_start, run);
  if (run->start_ev == NULL)
    return set_error(err, FLWD_E_INTERNAL, "out of memory");
  if (run_take_owner_lock(run) < 0)
    ctx_log(run->ctx, FLWD_LOG_WARNING,
            "run %s: cannot take its owner lock; another process "
            "reconciling this state directory may take it over",
            run->id);
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
void
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
  emit(run, "run.cancel_requested",
       data_of("state", flwd_run_state_name(run->state)));

  if (!run->active || run->waiting_for_slot) {
    run_finish(run, FLWD_RUN_CANCELLED);
    return 0;
  }
  switch (run->step) {
    case STEP_NONE:
      /* Not started yet: the start callback finds the request and ends. */
      break;
    case STEP_CREATE_WAIT:
      evtimer_del(run->create_ev);
      run->step = STEP_NONE;
      run_finish(run, run->timed_out ? FLWD_RUN_TIMED_OUT : FLWD_RUN_CANCELLED);
      break;
    case STEP_PULL_WAIT:
      evtimer_del(run->pull_wait_ev);
      run->step = STEP_NONE;
      run_finish(run, run->timed_out ? FLWD_RUN_TIMED_OUT : FLWD_RUN_CANCELLED);
      break;
    case STEP_INSPECT:
    case STEP_PULL:
      /* Nothing of the run exists in the runtime yet; end its command. */
      child_terminate(run->child, RUNTIME_KILL_GRACE_MS);
      break;
    case STEP_CONTAINER:
      run->stop_sent_ms = monotonic_ms();
      arm_stop_deadline(run);
      json_object *data = data_of("container", run->container_name);
      json_object_object_add(data, "grace_ms",
                             json_object_new_int64(run->job->stop_timeout_ms));
      emit(run, "stop.sent", data);
      send_stop(run);
      break;
    case STEP_CLEANUP:
      break;
  }
  return 0;
}

/* ---- End -------------------------------------------------------------- */

void
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

void
run_finish(flwd_run *run, flwd_run_state state)
{
  run->state = state;
  if (run->timeout_ev)
    evtimer_del(run->timeout_ev);
  if (run->stop_retry_ev)
    evtimer_del(run->stop_retry_ev);
  if (run->stop_deadline_ev)
    evtimer_del(run->stop_deadline_ev);
  if (run->start_ev)
    evtimer_del(run->start_ev);
  release_pull_lock(run);
  release_create_lock(run);
  release_owner_lock(run);
  if (run->userns_lock_fd >= 0) {
    close(run->userns_lock_fd);
    run->userns_lock_fd = -1;
  }
  if (run->create_ev)
    evtimer_del(run->create_ev);
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
    const char *code = flwd_error_name(run->error);
    json_object_object_add(data, "error_code", json_object_new_string(code));
    json_object_object_add(data, "error_message",
                           json_object_new_string(run->error->message));
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
  /* The callback may free a run of the caller's, so nothing touches the
   * run after it but for one that the context owns. */
  bool ctx_owned = run->ctx_owned;
  if (run->done_cb)
    run->done_cb(run, run->done_user);
  if (ctx_owned)
    free_run_memory(run);
}

void
flwd_ctx_abandon(flwd_ctx *ctx)
{
  if (ctx == NULL)
    return;
  while (ctx->runs) {
    flwd_run *run = ctx->runs;
    unlink_active(run);
    free_run_memory(run);
  }
  flwd_ctx_free(ctx);
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
      free(tmp.image_user);
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
  if (geteuid() == 0 && strcmp(plan->runtime->name, "podman") == 0)
    layout.userns_base = userns_preview_base(id);
  return plan_build_argv(plan, &layout, argv, err);
}
