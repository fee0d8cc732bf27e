/* libflwd: choosing a container runtime, and the command-line pieces that
 * Podman and Docker share. */
#include <errno.h>
#include <string.h>
#include <sys/statfs.h>

#include "internal.h"

#ifndef CGROUP2_SUPER_MAGIC
#define CGROUP2_SUPER_MAGIC 0x63677270
#endif

static const struct runtime *const runtimes[] = {
#ifdef FLWD_WITH_PODMAN
    &runtime_podman,
#endif
#ifdef FLWD_WITH_DOCKER
    &runtime_docker,
#endif
};

bool
host_has_cgroup2(void)
{
  struct statfs fs;
  return statfs("/sys/fs/cgroup", &fs) == 0
         && (unsigned long)fs.f_type == CGROUP2_SUPER_MAGIC;
}

static const struct runtime *
runtime_by_name(const char *name)
{
  for (size_t i = 0; i < ARRAY_SIZE(runtimes); i++) {
    if (strcmp(runtimes[i]->name, name) == 0)
      return runtimes[i];
  }
  return NULL;
}

/* Tries one runtime; on success stores it in CTX. On failure appends what
 * was tried to TRIED for the final message. */
static int
try_runtime(flwd_ctx *ctx, const struct runtime *rt, struct buf *tried,
            flwd_error **err)
{
  const char *override
      = getenv(strcmp(rt->name, "docker") == 0 ? "FLWD_DOCKER" : "FLWD_PODMAN");
  cleanup_free char *path
      = find_in_path(override && *override ? override : rt->name);
  const char *separator = tried->len ? "; " : "";
  if (path == NULL) {
    cleanup_free char *line
        = xasprintf("%s%s: not found on PATH", separator, rt->name);
    if (line)
      buf_append(tried, line, strlen(line));
    return -1;
  }

  flwd_error *probe_err = NULL;
  struct runtime_caps caps = {0};
  if (rt->probe(ctx, path, &caps, &probe_err) < 0) {
    cleanup_free char *line = xasprintf("%s%s (%s): %s", separator, rt->name,
                                        path, flwd_error_message(probe_err));
    flwd_error_free(probe_err);
    if (line)
      buf_append(tried, line, strlen(line));
    return -1;
  }

  ctx->runtime = rt;
  ctx->runtime_caps = caps;
  free(ctx->runtime_path);
  ctx->runtime_path = steal_pointer(&path);
  ctx_log(ctx, FLWD_LOG_DEBUG, "runtime %s at %s", rt->name, ctx->runtime_path);
  return 0;
}

int
runtime_select(flwd_ctx *ctx, flwd_error **err)
{
  if (ctx->runtime)
    return 0;

  struct buf tried = {0};
  int ret = -1;
  if (strcmp(ctx->runtime_choice, "auto") == 0) {
    for (size_t i = 0; i < ARRAY_SIZE(runtimes) && ret < 0; i++)
      ret = try_runtime(ctx, runtimes[i], &tried, err);
  } else {
    const struct runtime *rt = runtime_by_name(ctx->runtime_choice);
    if (rt == NULL) {
      buf_clear(&tried);
      return set_error(err, FLWD_E_RUNTIME_UNAVAILABLE,
                       "runtime '%s' is not built into this flwd",
                       ctx->runtime_choice);
    }
    ret = try_runtime(ctx, rt, &tried, err);
  }

  if (ret < 0) {
    const char *how = strcmp(ctx->runtime_choice, "auto") == 0
                          ? "tried"
                          : "the chosen runtime is unusable:";
    ret = set_error(err, FLWD_E_RUNTIME_UNAVAILABLE,
                    "no usable container runtime; %s %s; install Podman or "
                    "Docker, or set --runtime",
                    how, tried.data ? tried.data : "nothing");
  }
  buf_clear(&tried);
  return ret;
}

/* ---- Shared command-line pieces --------------------------------------- */

const char *
runtime_network(const struct plan *plan)
{
  if (plan->profile == PROFILE_DISABLED)
    return "default";
  return plan->network_limited ? plan->runtime->limited_network : "none";
}

int
runtime_push_mounts(const struct plan *plan, const struct run_layout *layout,
                    struct strv *argv)
{
  int ret = 0;
  /* Secrets stay files: read-only, one per name, never in the image's
   * environment unless a policy grants that secret as a variable. */
  if (plan->job->secrets.len)
    ret |= strv_pushf(argv,
                      "--mount=type=bind,source=%s/secrets,"
                      "destination=/run/secrets,readonly%s",
                      layout->host_dir, plan->runtime->secrets_mount_options);
  ret |= strv_pushf(argv, "--mount=type=bind,source=%s/work,destination=/work",
                    layout->host_dir);
  ret |= strv_pushf(argv,
                    "--mount=type=bind,source=%s/out,"
                    "destination=/run/flwd/out",
                    layout->host_dir);
  ret |= strv_pushf(argv,
                    "--mount=type=bind,source=%s/status,"
                    "destination=/run/flwd/status",
                    layout->host_dir);
  ret |= strv_pushf(argv,
                    "--mount=type=bind,source=%s/args.json,"
                    "destination=/run/flwd/args.json,readonly",
                    layout->host_dir);
  ret |= strv_pushf(argv,
                    "--mount=type=bind,source=%s,"
                    "destination=/run/flwd/init,readonly",
                    layout->init_path);
  return ret;
}

int
runtime_push_mode(const struct plan *plan, struct strv *argv)
{
  if (plan->detached)
    return strv_push(argv, "--detach");
  /* Attached: the runtime removes the container when it exits, and
   * signals to flwd decide how the run stops, so the runtime must not
   * pass them on to the container by itself. */
  int ret = strv_push(argv, "--rm");
  ret |= strv_push(argv, "--sig-proxy=false");
  return ret;
}

int
runtime_push_identity(const struct run_layout *layout, struct strv *argv)
{
  int ret = 0;
  ret |= strv_pushf(argv, "--name=%s", layout->container_name);
  ret |= strv_pushf(argv, "--label=io.flwd.run-id=%s", layout->run_id);
  ret |= strv_pushf(argv, "--label=io.flwd.job-id=%s", layout->job_id);
  ret |= strv_pushf(argv, "--label=io.flwd.state-dir=%s", layout->state_dir);
  ret |= strv_pushf(argv, "--env-file=%s", layout->env_file);
  return ret;
}

/* The secure profile's flags that both runtimes spell alike. Each one
 * closes a door that a job has no business opening. */
int
runtime_push_secure(const struct plan *plan, struct strv *argv)
{
  int ret = 0;
  /* The image cannot be modified, so a compromised job cannot plant
   * anything for the next process in the container. */
  if (!plan->writable_rootfs)
    ret |= strv_push(argv, "--read-only");
  /* Every capability goes, including the ones runtimes grant by default
   * (CHOWN, SETUID, NET_RAW, ...); only those a policy granted return. */
  ret |= strv_push(argv, "--cap-drop=ALL");
  for (size_t i = 0; i < plan->caps_add.len; i++)
    ret |= strv_pushf(argv, "--cap-add=%s", plan->caps_add.items[i]);
  /* setuid binaries in the image cannot regain what was dropped. */
  ret |= strv_push(argv, "--security-opt=no-new-privileges");
  /* No interfaces but loopback: nothing in, nothing out. The limited
   * network adds outbound access only, with no port published. */
  ret |= strv_pushf(argv, "--network=%s", runtime_network(plan));
  if (plan->caps.resource_limits) {
    ret |= strv_pushf(argv, "--pids-limit=%lld", plan->pids);
    if (plan->memory_bytes > 0)
      ret |= strv_pushf(argv, "--memory=%lld", plan->memory_bytes);
    if (plan->cpus > 0)
      ret |= strv_pushf(argv, "--cpus=%g", plan->cpus);
  }
  return ret;
}

/* ---- Commands both runtimes spell alike ------------------------------- */

/* Appends WORDS, then "--" and NAME, so that a name can never be read as
 * an option. */
static int
push_command(struct strv *argv, const char *const *words, const char *name)
{
  int ret = 0;
  for (const char *const *w = words; *w; w++)
    ret |= strv_push(argv, *w);
  ret |= strv_push(argv, "--");
  ret |= strv_push(argv, name);
  return ret;
}

int
cli_image_inspect_argv(const char *image, struct strv *argv)
{
  static const char *const words[]
      = {"image", "inspect", "--format={{json .Config}}", NULL};
  return push_command(argv, words, image);
}

int
cli_pull_argv(const char *image, struct strv *argv)
{
  static const char *const words[] = {"pull", "--quiet", NULL};
  return push_command(argv, words, image);
}

int
cli_kill_argv(const char *name, struct strv *argv)
{
  static const char *const words[] = {"kill", "--signal=KILL", NULL};
  return push_command(argv, words, name);
}

int
cli_labels_argv(const char *name, struct strv *argv)
{
  static const char *const words[]
      = {"container", "inspect", "--format={{json .Config.Labels}}", NULL};
  return push_command(argv, words, name);
}

int
cli_wait_argv(const char *name, struct strv *argv)
{
  static const char *const words[] = {"wait", NULL};
  return push_command(argv, words, name);
}

int
cli_logs_argv(const char *name, struct strv *argv)
{
  static const char *const words[] = {"logs", "--follow", NULL};
  return push_command(argv, words, name);
}

int
cli_list_argv(const char *key, const char *value, struct strv *argv)
{
  int ret = strv_push(argv, "ps");
  ret |= strv_push(argv, "--all");
  ret |= strv_pushf(argv, "--filter=label=%s=%s", key, value);
  ret |= strv_push(argv, "--format={{.Names}}");
  return ret;
}
