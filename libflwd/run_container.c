/* libflwd: running a run's container, stopping it and removing it. */
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

static void mark_running(flwd_run *run);
static bool retry_start(flwd_run *run);
static void fail_to_run(flwd_run *run, int marker, const char *reason);

/* ---- Container -------------------------------------------------------- */

void
on_container_output(struct child *child, flwd_stream stream, const char *data,
                    size_t len, void *user)
{
  flwd_run *run = user;
  if (stream == FLWD_STREAM_STDERR)
    keep_tail(&run->stderr_tail, data, len);
  log_output(run, stream, data, len);
  if (run->output_cb)
    run->output_cb(run, stream, data, len, run->output_user);
}

static void
on_rm_retry(evutil_socket_t fd, short what, void *arg)
{
  flwd_run *run = arg;
  cleanup_then_finish(run, run->final_state);
}

static void
on_rm_exit(struct child *child, int status, void *user)
{
  flwd_run *run = user;
  finish_after_child(run);
  bool ok = WIFEXITED(status) && WEXITSTATUS(status) == 0;
  /* Podman 4.3 can fail a removal that follows the container's exit too
   * closely ("device or resource busy" on its shm mount); a moment later
   * the same removal works. */
  if (!ok && run->rm_attempts < RM_ATTEMPTS) {
    struct timeval tv = {0, RM_RETRY_MS * 1000};
    if (run->rm_retry_ev == NULL)
      run->rm_retry_ev = evtimer_new(run->ctx->base, on_rm_retry, run);
    if (run->rm_retry_ev && evtimer_add(run->rm_retry_ev, &tv) == 0)
      return;
  }
  if (!ok)
    ctx_log(run->ctx, FLWD_LOG_WARNING,
            "run %s: removing container %s failed: %s", run->id,
            run->container_name, stderr_text(run));
  /* A stop command still running is waited for, never killed. */
  if (run->stopper) {
    run->finish_pending = true;
    return;
  }
  run_finish(run, run->final_state);
}

/* Removes the container, then ends the run in STATE. The runtime's --rm
 * has removed it after a normal exit; this covers every other way out. */
void
cleanup_then_finish(flwd_run *run, flwd_run_state state)
{
  run->final_state = state;
  run->rm_attempts++;
  cleanup_strv struct strv argv;
  strv_init(&argv);
  strv_push(&argv, run->plan.runtime_path);
  run->plan.runtime->rm_argv(run->container_name, &argv);
  cleanup_error flwd_error *err = NULL;
  if (spawn_step(run, STEP_CLEANUP, &argv, on_capture_output, on_rm_exit, &err)
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

/* Returns the io.flwd.run-id label of the container holding the run's name (an
 * empty string for a container without it), or NULL when the runtime command
 * failed. Blocks for one short runtime command. */
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

/* Ends a run whose job never ran: MARKER and REASON come from
 * read_init_marker(). A name conflict leaves the other container alone. */
static void
fail_to_run(flwd_run *run, int marker, const char *reason)
{
  flwd_error *err = NULL;
  if (marker < 0)
    set_error(&err, FLWD_E_OCI,
              "cannot execute the job's command in image "
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
  if (flwd_error_code(err) == FLWD_E_NAME_CONFLICT) {
    run_finish(run, FLWD_RUN_ERROR);
    return;
  }
  cleanup_then_finish(run, FLWD_RUN_ERROR);
}

/* Ends the run after its container stopped with exit CODE (EXITED: the runtime
 * process exited rather than died of a signal). REMOVED is true when the
 * runtime has already removed the container. */
static void
container_ended(flwd_run *run, int code, bool exited, bool removed)
{
  if (run->stopper == NULL && run->stop_retry_ev)
    event_del(run->stop_retry_ev);

  cleanup_free char *reason = NULL;
  int marker = read_init_marker(run, &reason);
  json_object *data = data_of("container", run->container_name);
  json_object_object_add(data, "exit_code", json_object_new_int(code));
  json_object_object_add(data, "job_started",
                         json_object_new_boolean(marker == 1));
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
    flwd_run_state state = code == 0 ? FLWD_RUN_SUCCEEDED : FLWD_RUN_FAILED;
    if (removed)
      run_finish(run, state);
    else
      cleanup_then_finish(run, state);
    return;
  }

  if (marker == 0 && is_name_conflict(run) && retry_after_leftover(run))
    return;
  fail_to_run(run, marker, reason);
}

static void
on_container_exit(struct child *child, int status, void *user)
{
  flwd_run *run = user;
  finish_after_child(run);
  release_create_lock(run);
  if (retry_start(run))
    return;
  bool exited = WIFEXITED(status);
  int code = exited ? WEXITSTATUS(status) : 128 + WTERMSIG(status);
  container_ended(run, code, exited, exited);
}

/* ---- Detached mode ---------------------------------------------------- */

/* In detached mode two commands follow the container: the runtime's wait,
 * which returns its exit code, and its logs, which stream its output. The
 * run ends once both are done. */
static void
detached_maybe_done(flwd_run *run)
{
  if (!run->waiter_done || run->follower)
    return;
  if (run->follow_grace_ev)
    evtimer_del(run->follow_grace_ev);
  container_ended(run, run->waiter_code, run->waiter_code >= 0, false);
}

static void
on_follower_exit(struct child *child, int status, void *user)
{
  flwd_run *run = user;
  child_free(run->follower);
  run->follower = NULL;
  detached_maybe_done(run);
}

static void
on_follow_grace(evutil_socket_t fd, short what, void *arg)
{
  flwd_run *run = arg;
  child_terminate(run->follower, RUNTIME_KILL_GRACE_MS);
}

static void
on_waiter_exit(struct child *child, int status, void *user)
{
  flwd_run *run = user;
  run->waiter_code = -1;
  if (WIFEXITED(status) && WEXITSTATUS(status) == 0 && run->captured.data) {
    char *end = NULL;
    long code = strtol(run->captured.data, &end, 10);
    if (end != run->captured.data && code >= 0 && code <= 255)
      run->waiter_code = (int)code;
  }
  finish_after_child(run);
  run->waiter_done = true;

  /* The logs command ends by itself when the container stops; give it a
   * moment to drain, then stop waiting for it. */
  if (run->follower) {
    struct timeval tv = {5, 0};
    if (run->follow_grace_ev == NULL)
      run->follow_grace_ev = evtimer_new(run->ctx->base, on_follow_grace, run);
    if (run->follow_grace_ev)
      evtimer_add(run->follow_grace_ev, &tv);
  }
  detached_maybe_done(run);
}

/* Starts following a detached container: its exit and its output. */
void
follow_container(flwd_run *run)
{
  cleanup_error flwd_error *err = NULL;
  cleanup_strv struct strv logs;
  strv_init(&logs);
  strv_push(&logs, run->plan.runtime_path);
  run->plan.runtime->logs_argv(run->container_name, &logs);
  if (child_spawn(run->ctx, &logs, on_container_output, on_follower_exit, run,
                  &run->follower, &err)
      < 0) {
    run_fail(run, steal_pointer(&err));
    return;
  }

  cleanup_strv struct strv wait;
  strv_init(&wait);
  strv_push(&wait, run->plan.runtime_path);
  run->plan.runtime->wait_argv(run->container_name, &wait);
  run->waiter_done = false;
  if (spawn_step(run, STEP_CONTAINER, &wait, on_capture_output, on_waiter_exit,
                 &err)
      < 0)
    run_fail(run, steal_pointer(&err));
}

static void
on_detached_start_exit(struct child *child, int status, void *user)
{
  flwd_run *run = user;
  finish_after_child(run);
  release_create_lock(run);
  if (run->create_ev)
    evtimer_del(run->create_ev);
  if (retry_start(run))
    return;
  if (run->cancel_requested) {
    cleanup_then_finish(run, run->timed_out ? FLWD_RUN_TIMED_OUT
                                            : FLWD_RUN_CANCELLED);
    return;
  }
  if (!(WIFEXITED(status) && WEXITSTATUS(status) == 0)) {
    if (is_name_conflict(run) && retry_after_leftover(run))
      return;
    cleanup_free char *reason = NULL;
    fail_to_run(run, read_init_marker(run, &reason), reason);
    return;
  }
  mark_running(run);
  follow_container(run);
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

int
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
  layout->state_dir = ctx->state_dir;
  layout->userns_base = 0;
  layout->command = command;
  return 0;
}

/* Moves the run to running: the container exists and its process has
 * been started by the runtime. */
static void
mark_running(flwd_run *run)
{
  run->state = FLWD_RUN_RUNNING;
  format_utc_now(run->started_at);
  record_run(run);
  emit(run, "container.started", data_of("container", run->container_name));

  if (run->job->timeout_ms > 0) {
    struct timeval tv
        = {run->job->timeout_ms / 1000, (run->job->timeout_ms % 1000) * 1000};
    run->timeout_ev = evtimer_new(run->ctx->base, on_timeout, run);
    if (run->timeout_ev)
      evtimer_add(run->timeout_ev, &tv);
  }
}

/* ---- Create lock ----------------------------------------------------- */

static char *
create_lock_path(void)
{
  if (geteuid() == 0)
    return strdup("/run/flwd/create.lock");
  const char *dir = getenv("XDG_RUNTIME_DIR");
  if (dir && *dir == '/')
    return xasprintf("%s/flwd/create.lock", dir);
  return xasprintf("/tmp/flwd-%u/create.lock", (unsigned)geteuid());
}

/* Returns 1 when the run holds the create lock, 0 when another run holds
 * it, and -1 when locking is impossible (the run goes on unserialized). */
static int
try_create_lock(flwd_run *run)
{
  cleanup_free char *path = create_lock_path();
  char *slash = path ? strrchr(path, '/') : NULL;
  if (slash == NULL)
    return -1;
  *slash = '\0';
  int made = mkdir_p(path, 0700);
  *slash = '/';
  return made == 0 ? lock_file_try(path, &run->create_lock_fd) : -1;
}

void
release_create_lock(flwd_run *run)
{
  if (run->create_lock_fd >= 0) {
    close(run->create_lock_fd);
    run->create_lock_fd = -1;
  }
}

static void
on_create_retry(evutil_socket_t fd, short what, void *arg)
{
  flwd_run *run = arg;
  run->step = STEP_NONE;
  step_container(run);
}

static void
arm_create_timer(flwd_run *run, event_callback_fn fn)
{
  if (run->create_ev)
    event_free(run->create_ev);
  run->create_ev = evtimer_new(run->ctx->base, fn, run);
  struct timeval tv = {0, CREATE_POLL_MS * 1000};
  if (run->create_ev)
    evtimer_add(run->create_ev, &tv);
}

/* Watches a container's start: the create lock is released once flwd-init
 * has left its marker, and a runtime that has not started the job's
 * process in time is ended. Podman 4.3 can deadlock between a container
 * being created with --userns=auto and another container's cleanup, and a
 * Podman waiting on a lock ignores SIGTERM; ending the waiting process
 * frees the locks it holds, and the run starts its container once more. */
static void
on_start_watch(evutil_socket_t fd, short what, void *arg)
{
  flwd_run *run = arg;
  if (run->step != STEP_CONTAINER || run->child == NULL)
    return;
  cleanup_free char *marker = xasprintf("%s/status/exec", run->host_dir);
  if (marker && access(marker, F_OK) == 0) {
    release_create_lock(run);
    return;
  }
  if (monotonic_ms() - run->create_started_ms > START_TIMEOUT_MS) {
    ctx_log(run->ctx, FLWD_LOG_ERROR,
            "run %s: %s did not start container %s within %d s; ending it",
            run->id, run->plan.runtime->name, run->container_name,
            START_TIMEOUT_MS / 1000);
    static const char note[] = "the runtime did not start the container in "
                               "time";
    keep_tail(&run->stderr_tail, note, sizeof(note) - 1);
    release_create_lock(run);
    run->start_timed_out = true;
    child_terminate(run->child, START_KILL_GRACE_MS);
    return;
  }
  arm_create_timer(run, on_start_watch);
}

/* Starts the container once more after a start that timed out: removes
 * what the first attempt left, by name, and clears its marker. */
static bool
retry_start(flwd_run *run)
{
  if (!run->start_timed_out || run->start_retried || run->cancel_requested)
    return false;
  run->start_retried = true;
  run->start_timed_out = false;
  emit(run, "container.start_retried",
       data_of("container", run->container_name));
  cleanup_strv struct strv argv;
  strv_init(&argv);
  strv_push(&argv, run->plan.runtime_path);
  run->plan.runtime->rm_argv(run->container_name, &argv);
  int status = 0;
  child_run_sync(run->ctx, &argv, 65536, NULL, NULL, &status, NULL);
  cleanup_free char *marker = xasprintf("%s/status/exec", run->host_dir);
  if (marker)
    unlink(marker);
  step_container(run);
  return true;
}

void
step_container(flwd_run *run)
{
  cleanup_error flwd_error *err = NULL;
  if (run->plan.runtime->serialize_create && run->create_lock_fd < 0
      && try_create_lock(run) == 0) {
    run->step = STEP_CREATE_WAIT;
    arm_create_timer(run, on_create_retry);
    return;
  }
  if (run->job->has_command) {
    strv_clear(&run->command);
    if (plan_expand_command(&run->plan, run->id, &run->command, &err) < 0) {
      run_fail(run, steal_pointer(&err));
      return;
    }
  }

  if (secrets_chown_for_image(run, &err) < 0) {
    release_create_lock(run);
    run_fail(run, steal_pointer(&err));
    return;
  }

  /* As root with Podman, the run reserves a range of host ids of its own. */
  if (geteuid() == 0 && run->userns_lock_fd < 0
      && strcmp(run->plan.runtime->name, "podman") == 0
      && run->plan.profile != PROFILE_DISABLED
      && userns_take_range(run->id, &run->userns_lock_fd, &run->userns_base)
             < 0)
    ctx_log(run->ctx, FLWD_LOG_WARNING,
            "run %s: no free range in the \"containers\" entries of "
            "/etc/subuid and /etc/subgid; using --userns=auto",
            run->id);

  struct run_layout layout;
  cleanup_strv struct strv argv;
  strv_init(&argv);
  bool detached = run->plan.detached;
  int ret = run_layout_fill(run->ctx, &run->plan, run->id, run->container_name,
                            run->host_dir, run->env_file, &run->command,
                            &layout, &err);
  layout.userns_base = run->userns_base;
  if (ret == 0)
    ret = plan_build_argv(&run->plan, &layout, &argv, &err);
  if (ret == 0)
    ret = spawn_step(run, STEP_CONTAINER, &argv,
                     detached ? on_capture_output : on_container_output,
                     detached ? on_detached_start_exit : on_container_exit,
                     &err);
  if (ret < 0) {
    release_create_lock(run);
    run_fail(run, steal_pointer(&err));
    return;
  }
  run->container_spawned = true;
  run->create_started_ms = monotonic_ms();
  json_object *data = data_of("container", run->container_name);
  json_object_object_add(data, "argv", strv_to_json(&argv));
  emit(run, "container.created", data);
  arm_create_timer(run, on_start_watch);

  /* Attached, the runtime starts the container right away; detached, the
   * start is known once the run command returns. */
  if (!detached)
    mark_running(run);
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
  if (run->finish_pending) {
    run_finish(run, run->final_state);
    return;
  }
  if (run->step != STEP_CONTAINER)
    return;

  /* The container is still attached: either the stop came before the
   * runtime had created it, or the stop itself failed. Try again until
   * the attached command ends, and after the grace and a margin, kill. */
  long long waited = monotonic_ms() - run->stop_sent_ms;
  if (waited > run->job->stop_timeout_ms + STOP_SLACK_MS) {
    ctx_log(run->ctx, FLWD_LOG_WARNING,
            "run %s: the runtime did not stop container %s; ending the "
            "attached runtime process, then removing the container",
            run->id, run->container_name);
    emit(run, "kill.sent", data_of("container", run->container_name));
    child_terminate(run->child, RUNTIME_KILL_GRACE_MS);
    return;
  }
  if (run->stop_retry_ev == NULL)
    run->stop_retry_ev = evtimer_new(run->ctx->base, on_stop_retry, run);
  struct timeval tv = {0, STOP_RETRY_MS * 1000};
  if (run->stop_retry_ev)
    evtimer_add(run->stop_retry_ev, &tv);
}

/* Ends the runtime's commands of a stop that has not finished by the grace
 * period and a margin: a runtime stuck on a lock would otherwise hold the
 * run forever. The removal that follows kills the container. */
static void
on_stop_deadline(evutil_socket_t fd, short what, void *arg)
{
  flwd_run *run = arg;
  if (run->step != STEP_CONTAINER)
    return;
  ctx_log(run->ctx, FLWD_LOG_WARNING,
          "run %s: container %s did not stop within its grace period and "
          "%d s more; ending the runtime's commands and removing it",
          run->id, run->container_name, STOP_SLACK_MS / 1000);
  emit(run, "kill.sent", data_of("container", run->container_name));
  child_terminate(run->stopper, RUNTIME_KILL_GRACE_MS);
  child_terminate(run->child, RUNTIME_KILL_GRACE_MS);
}

void
arm_stop_deadline(flwd_run *run)
{
  long long ms = run->job->stop_timeout_ms + STOP_SLACK_MS;
  struct timeval tv = {ms / 1000, (ms % 1000) * 1000};
  if (run->stop_deadline_ev == NULL)
    run->stop_deadline_ev = evtimer_new(run->ctx->base, on_stop_deadline, run);
  if (run->stop_deadline_ev)
    evtimer_add(run->stop_deadline_ev, &tv);
}

void
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
  if (child_spawn(run->ctx, &argv, NULL, on_stop_exit, run, &run->stopper, &err)
      < 0) {
    ctx_log(run->ctx, FLWD_LOG_ERROR, "run %s: %s", run->id,
            flwd_error_message(err));
    child_terminate(run->child, RUNTIME_KILL_GRACE_MS);
  }
}
