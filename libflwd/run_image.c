/* libflwd: inspecting and pulling a run's image, one pull per image. */
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

/* ---- Image ------------------------------------------------------------ */

/* Sets the run's command to the image's entrypoint followed by its command,
 * from the runtime's JSON of the image config. */
int
command_from_image(flwd_run *run, const char *config_json, flwd_error **err)
{
  cleanup_json json_object *config = json_tokener_parse(config_json);
  if (config == NULL)
    return set_error(err, FLWD_E_OCI, "cannot read the config of image '%s'",
                     run->job->image);
  json_object *user = NULL;
  free(run->image_user);
  run->image_user = json_object_object_get_ex(config, "User", &user)
                        ? strdup(json_object_get_string(user))
                        : NULL;
  if (run->job->has_command)
    return 0;
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
  if (command_from_image(run, run->captured.data ? run->captured.data : "",
                         &err)
      < 0) {
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
    set_error(&err, FLWD_E_OCI, "cannot pull image '%s': %s", run->job->image,
              stderr_text(run));
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
  return path ? lock_file_try(path, &run->pull_lock_fd) : -1;
}

void
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

void
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
  if (spawn_step(run, STEP_INSPECT, &argv, on_capture_output, on_inspect_exit,
                 &err)
      < 0)
    run_fail(run, steal_pointer(&err));
}
