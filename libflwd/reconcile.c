/* libflwd: bringing the store and the runtime back in line after a
 * restart.
 *
 * A process that ran containers in detached mode may die without
 * recording how its runs ended. The store still lists those runs as
 * unfinished, and the runtime still has their containers, labelled with
 * the run id and the state directory. Reconciling adopts each container
 * whose run is unfinished, ends each unfinished run whose container is
 * gone, and removes each labelled container that no unfinished run owns.
 */
#include <errno.h>
#include <fcntl.h>
#include <string.h>
#include <sys/file.h>
#include <sys/wait.h>

#include "run-internal.h"

#define ORPHAN_STOP_GRACE_MS 10000

static const char *
doc_string(json_object *doc, const char *key)
{
  json_object *value = NULL;
  if (!json_object_object_get_ex(doc, key, &value)
      || !json_object_is_type(value, json_type_string))
    return NULL;
  return json_object_get_string(value);
}

/* Returns the job of a stored run: its spec when the jobs path still has
 * it, or a stand-in that carries only the id, so that a run whose spec was
 * removed can still be waited on and stopped. */
static flwd_job *
job_for(flwd_ctx *ctx, const char *job_id)
{
  flwd_job *job = NULL;
  cleanup_error flwd_error *err = NULL;
  if (flwd_job_find(ctx, job_id, &job, &err) == 0)
    return job;

  job = calloc(1, sizeof(*job));
  if (job == NULL)
    return NULL;
  job->refcount = 1;
  job->id = strdup(job_id);
  job->image = strdup("");
  job->path = strdup("(stored run)");
  job->stop_timeout_ms = 10000;
  strv_init(&job->command);
  strv_init(&job->secrets);
  strv_init(&job->req_caps);
  strv_init(&job->req_secrets_env);
  if (!job->id || !job->image || !job->path) {
    flwd_job_free(job);
    return NULL;
  }
  return job;
}

/* Rebuilds the arguments of a stored run without checking them again: the
 * spec may have changed since, and the run already ran with them. */
static flwd_args *
args_for(flwd_job *job, json_object *doc)
{
  json_object *values = NULL;
  flwd_args *args = calloc(1, sizeof(*args));
  if (args == NULL)
    return NULL;
  args->job = job_ref(job);
  if (!json_object_object_get_ex(doc, "args", &values)
      || json_object_deep_copy(values, &args->values, NULL) < 0)
    args->values = json_object_new_object();
  return args;
}

/* Returns 1 when the runtime has the run's container, 0 when it has not,
 * and -1 when it could not tell. */
static int
container_exists(flwd_ctx *ctx, const char *name)
{
  cleanup_strv struct strv argv;
  strv_init(&argv);
  strv_push(&argv, ctx->runtime_path);
  ctx->runtime->labels_argv(name, &argv);
  struct buf errout = {0};
  int status = 0;
  int ret = child_run_sync(ctx, &argv, 65536, NULL, &errout, &status, NULL);
  bool missing
      = errout.data
        && (strstr(errout.data, "no such") || strstr(errout.data, "No such"));
  buf_clear(&errout);
  if (ret < 0)
    return -1;
  if (WIFEXITED(status) && WEXITSTATUS(status) == 0)
    return 1;
  return missing ? 0 : -1;
}

static void
copy_times(flwd_run *run, json_object *doc)
{
  const char *created = doc_string(doc, "created_at");
  const char *started = doc_string(doc, "started_at");
  if (created)
    snprintf(run->created_at, sizeof(run->created_at), "%s", created);
  if (started)
    snprintf(run->started_at, sizeof(run->started_at), "%s", started);
}

/* Takes over a run whose container still exists: waits for its exit and
 * reads its whole output again into a fresh log. */
static void
adopt(flwd_run *run)
{
  flwd_ctx *ctx = run->ctx;
  cleanup_error flwd_error *err = NULL;
  if (plan_resolve(ctx, run->job, run->args, &run->plan, &err) < 0) {
    run_fail(run, steal_pointer(&err));
    return;
  }
  run->planned = true;
  run->container_spawned = true;
  run->state = FLWD_RUN_RUNNING;
  if (run->started_at[0] == '\0')
    format_utc_now(run->started_at);
  run->log_fd = store_log_open(ctx, run->id, true, &err);
  if (run->log_fd < 0)
    ctx_log(ctx, FLWD_LOG_ERROR, "run %s: %s", run->id,
            flwd_error_message(err));

  link_active(run);
  record_run(run);
  emit(run, "run.adopted", data_of("container", run->container_name));
  ctx_log(ctx, FLWD_LOG_INFO, "run %s: adopted container %s", run->id,
          run->container_name);
  follow_container(run);
}

static void
reconcile_run(flwd_ctx *ctx, const char *id, const char *text)
{
  if (flwd_ctx_find_run(ctx, id))
    return;

  cleanup_json json_object *doc = json_tokener_parse(text);
  const char *job_id = doc ? doc_string(doc, "job") : NULL;
  flwd_job *job = job_id ? job_for(ctx, job_id) : NULL;
  if (job == NULL) {
    ctx_log(ctx, FLWD_LOG_ERROR, "run %s: the stored run cannot be read", id);
    return;
  }
  flwd_run *run = run_alloc(ctx, job, args_for(job, doc), id);
  if (run == NULL)
    return;
  /* A run whose owner lock is held belongs to a live process. */
  if (run_take_owner_lock(run) == 0) {
    ctx_log(ctx, FLWD_LOG_INFO, "run %s: left to the process running it", id);
    flwd_run_free(run);
    return;
  }
  copy_times(run, doc);
  struct store *store = NULL;
  if (store_get(ctx, &store, NULL) == 0 && store)
    run->seq = (unsigned long long)store_last_seq(store, id);
  /* The context owns the run from here; it frees itself after its done
   * callback, so callers may follow it without freeing it. */
  run->ctx_owned = true;

  int exists = container_exists(ctx, run->container_name);
  if (exists == 1) {
    adopt(run);
    return;
  }
  set_error(&run->error, FLWD_E_INTERNAL,
            exists == 0 ? "the container %s of this run is gone: the flwd "
                          "process that ran it stopped before it recorded "
                          "the end"
                        : "the runtime could not say whether the container "
                          "%s of this run exists",
            run->container_name);
  ctx_log(ctx, FLWD_LOG_WARNING, "run %s: %s", id, run->error->message);
  remove_run_files(run);
  run_finish(run, FLWD_RUN_ERROR);
}

/* Collects the unfinished runs first: ending one rewrites its row, which
 * must not happen under the query that walks the table. */
static int
collect_unfinished(const char *id, const char *doc, void *user)
{
  struct strv *pairs = user;
  strv_push(pairs, id);
  strv_push(pairs, doc);
  return 0;
}

static void
remove_orphan(flwd_ctx *ctx, const char *name)
{
  cleanup_strv struct strv stop;
  strv_init(&stop);
  strv_push(&stop, ctx->runtime_path);
  ctx->runtime->stop_argv(name, ORPHAN_STOP_GRACE_MS, &stop);
  int status = 0;
  child_run_sync(ctx, &stop, 65536, NULL, NULL, &status, NULL);

  cleanup_strv struct strv rm;
  strv_init(&rm);
  strv_push(&rm, ctx->runtime_path);
  ctx->runtime->rm_argv(name, &rm);
  child_run_sync(ctx, &rm, 65536, NULL, NULL, &status, NULL);
  bool ok = WIFEXITED(status) && WEXITSTATUS(status) == 0;
  ctx_log(ctx, ok ? FLWD_LOG_WARNING : FLWD_LOG_ERROR,
          "container %s has no unfinished run in this store: %s", name,
          ok ? "stopped and removed" : "removal failed");
}

/* Returns whether another live process holds the owner lock of RUN_ID. */
static bool
owner_is_alive(flwd_ctx *ctx, const char *run_id)
{
  cleanup_free char *path
      = xasprintf("%s/locks/%s.lock", ctx->state_dir, run_id);
  cleanup_close int fd = path ? open(path, O_RDWR | O_CLOEXEC) : -1;
  if (fd < 0)
    return false;
  if (flock(fd, LOCK_EX | LOCK_NB) == 0) {
    flock(fd, LOCK_UN);
    return false;
  }
  return errno == EWOULDBLOCK;
}

/* Removes containers of this state directory that no active run owns. */
static void
remove_orphans(flwd_ctx *ctx)
{
  cleanup_strv struct strv argv;
  strv_init(&argv);
  strv_push(&argv, ctx->runtime_path);
  ctx->runtime->list_argv("io.flwd.state-dir", ctx->state_dir, &argv);
  struct buf out = {0};
  int status = 0;
  if (child_run_sync(ctx, &argv, 1024 * 1024, &out, NULL, &status, NULL) < 0
      || !WIFEXITED(status) || WEXITSTATUS(status) != 0) {
    ctx_log(ctx, FLWD_LOG_ERROR, "cannot list the containers of %s",
            ctx->state_dir);
    buf_clear(&out);
    return;
  }

  char *save = NULL;
  for (char *name = strtok_r(out.data ? out.data : (char *)"", "\n", &save);
       name; name = strtok_r(NULL, "\n", &save)) {
    if (strncmp(name, "flwd-", 5) == 0
        && (flwd_ctx_find_run(ctx, name + 5) || owner_is_alive(ctx, name + 5)))
      continue;
    remove_orphan(ctx, name);
  }
  buf_clear(&out);
}

int
flwd_ctx_reconcile(flwd_ctx *ctx, flwd_error **err)
{
  struct store *store = NULL;
  int ret = runtime_select(ctx, err);
  if (ret == 0)
    ret = store_get(ctx, &store, err);
  if (ret < 0)
    return ret;
  if (store == NULL)
    return set_error(err, FLWD_E_STORE_FAILED,
                     "reconciling needs the run store, which is turned off");

  cleanup_strv struct strv pairs;
  strv_init(&pairs);
  ret = store_foreach_unfinished(store, collect_unfinished, &pairs, err);
  if (ret < 0)
    return ret;
  for (size_t i = 0; i + 1 < pairs.len; i += 2)
    reconcile_run(ctx, pairs.items[i], pairs.items[i + 1]);
  remove_orphans(ctx);
  return 0;
}
