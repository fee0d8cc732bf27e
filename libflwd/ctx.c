/* libflwd: the context, its options and the jobs path. */
#include <dirent.h>
#include <errno.h>
#include <stdio.h>
#include <string.h>
#include <sys/stat.h>

#include <event2/event.h>

#include "internal.h"

#ifndef FLWD_SYSTEM_JOBS_DIR
#define FLWD_SYSTEM_JOBS_DIR "/etc/flwd/jobs"
#endif
#ifndef FLWD_INIT_DEFAULT
#define FLWD_INIT_DEFAULT "/usr/local/libexec/flwd/flwd-init"
#endif

void
ctx_log(flwd_ctx *ctx, flwd_log_level level, const char *fmt, ...)
{
  if (ctx->log_cb == NULL)
    return;
  char *message = NULL;
  va_list ap;
  va_start(ap, fmt);
  int n = vasprintf(&message, fmt, ap);
  va_end(ap);
  if (n < 0)
    return;
  ctx->log_cb(level, message, ctx->log_user);
  free(message);
}

/* The state directory follows the XDG base directory rules for an ordinary
 * user and the FHS for root. */
static char *
default_state_dir(void)
{
  if (geteuid() == 0)
    return strdup("/var/lib/flwd");
  const char *xdg = getenv("XDG_STATE_HOME");
  if (xdg && *xdg == '/')
    return xasprintf("%s/flwd", xdg);
  const char *home = getenv("HOME");
  if (home && *home == '/')
    return xasprintf("%s/.local/state/flwd", home);
  return xasprintf("/tmp/flwd-%u", (unsigned)geteuid());
}

static char *
env_or(const char *name, const char *fallback)
{
  const char *value = getenv(name);
  return strdup(value && *value ? value : fallback);
}

static int validate_option(flwd_option opt, const char *value,
                           flwd_error **err);

int
flwd_ctx_new(struct event_base *base, flwd_ctx **out, flwd_error **err)
{
  flwd_ctx *ctx = calloc(1, sizeof(*ctx));
  if (ctx == NULL)
    return set_error(err, FLWD_E_INTERNAL, "out of memory");

  ctx->base = base;
  if (ctx->base == NULL) {
    ctx->base = event_base_new();
    ctx->owns_base = true;
  }

  const char *state = getenv("FLWD_STATE_DIR");
  ctx->state_dir = state && *state ? strdup(state) : default_state_dir();
  ctx->jobs_path = env_or("FLWD_JOBS_PATH", "./jobs:" FLWD_SYSTEM_JOBS_DIR);
  ctx->runtime_choice = env_or("FLWD_RUNTIME", "auto");
  ctx->pull_policy = strdup("missing");
  ctx->init_path = env_or("FLWD_INIT", FLWD_INIT_DEFAULT);
  ctx->max_runs_text = strdup("0");
  ctx->log_max_text = strdup("67108864");
  ctx->store_mode = strdup("on");
  ctx->run_mode = env_or("FLWD_RUN_MODE", "attached");
  ctx->policy_path = strdup("");
  ctx->secrets_dir = env_or("FLWD_SECRETS_DIR", "");
  ctx->secrets_env_mode = strdup("off");
  ctx->log_max_bytes = 64LL * 1024 * 1024;

  if (ctx->base == NULL || ctx->state_dir == NULL || ctx->jobs_path == NULL
      || ctx->runtime_choice == NULL || ctx->pull_policy == NULL
      || ctx->init_path == NULL || ctx->max_runs_text == NULL
      || ctx->log_max_text == NULL || ctx->store_mode == NULL
      || ctx->run_mode == NULL || ctx->policy_path == NULL
      || ctx->secrets_dir == NULL || ctx->secrets_env_mode == NULL) {
    flwd_ctx_free(ctx);
    return set_error(err, FLWD_E_INTERNAL,
                     "cannot create a context: out of "
                     "memory");
  }

  /* Invalid values from the environment are reported now rather than at
   * the first run. */
  static const struct {
    const char *variable;
    flwd_option option;
  } from_env[] = {
      {"FLWD_RUNTIME", FLWD_OPT_RUNTIME},
      {"FLWD_RUN_MODE", FLWD_OPT_RUN_MODE},
      {"FLWD_STATE_DIR", FLWD_OPT_STATE_DIR},
      {"FLWD_INIT", FLWD_OPT_INIT_PATH},
  };
  int ret = 0;
  for (size_t i = 0; i < ARRAY_SIZE(from_env) && ret == 0; i++) {
    ret = validate_option(from_env[i].option,
                          flwd_ctx_get_option(ctx, from_env[i].option), err);
    if (ret < 0)
      wrap_error(err, ret, "%s", from_env[i].variable);
  }
  const char *policy = getenv("FLWD_POLICY");
  if (ret == 0 && policy && *policy
      && (ret = flwd_ctx_set_option(ctx, FLWD_OPT_POLICY_FILE, policy, err))
             < 0)
    wrap_error(err, ret, "FLWD_POLICY");
  if (ret < 0) {
    flwd_ctx_free(ctx);
    return ret;
  }
  *out = ctx;
  return 0;
}

struct event_base *
flwd_ctx_event_base(flwd_ctx *ctx)
{
  return ctx->base;
}

void
flwd_ctx_set_log_cb(flwd_ctx *ctx, flwd_log_cb cb, void *user)
{
  ctx->log_cb = cb;
  ctx->log_user = user;
}

static char **
option_slot(flwd_ctx *ctx, flwd_option opt)
{
  switch (opt) {
    case FLWD_OPT_JOBS_PATH:
      return &ctx->jobs_path;
    case FLWD_OPT_RUNTIME:
      return &ctx->runtime_choice;
    case FLWD_OPT_STATE_DIR:
      return &ctx->state_dir;
    case FLWD_OPT_PULL_POLICY:
      return &ctx->pull_policy;
    case FLWD_OPT_INIT_PATH:
      return &ctx->init_path;
    case FLWD_OPT_MAX_RUNS:
      return &ctx->max_runs_text;
    case FLWD_OPT_LOG_MAX_BYTES:
      return &ctx->log_max_text;
    case FLWD_OPT_STORE:
      return &ctx->store_mode;
    case FLWD_OPT_RUN_MODE:
      return &ctx->run_mode;
    case FLWD_OPT_POLICY_FILE:
      return &ctx->policy_path;
    case FLWD_OPT_SECRETS_DIR:
      return &ctx->secrets_dir;
    case FLWD_OPT_SECRETS_FROM_ENV:
      return &ctx->secrets_env_mode;
  }
  return NULL;
}

static int
parse_count(const char *value, long long min, long long *out)
{
  char *end = NULL;
  errno = 0;
  long long n = strtoll(value, &end, 10);
  if (errno || end == value || *end || n < min)
    return -1;
  *out = n;
  return 0;
}

static int
validate_option(flwd_option opt, const char *value, flwd_error **err)
{
  pull_policy policy;
  long long count;
  switch (opt) {
    case FLWD_OPT_MAX_RUNS:
      if (parse_count(value, 0, &count) < 0)
        return set_error(err, FLWD_E_CONFIG_INVALID,
                         "invalid maximum of runs '%s': use a whole number, "
                         "0 for no limit",
                         value);
      return 0;
    case FLWD_OPT_LOG_MAX_BYTES:
      if (parse_count(value, 1024, &count) < 0)
        return set_error(err, FLWD_E_CONFIG_INVALID,
                         "invalid log size '%s': use a number of bytes of at "
                         "least 1024",
                         value);
      return 0;
    case FLWD_OPT_RUN_MODE:
      if (strcmp(value, "attached") && strcmp(value, "detached"))
        return set_error(err, FLWD_E_CONFIG_INVALID,
                         "invalid run mode '%s': use attached or detached",
                         value);
      return 0;
    case FLWD_OPT_POLICY_FILE:
    case FLWD_OPT_SECRETS_DIR:
      return 0;
    case FLWD_OPT_SECRETS_FROM_ENV:
      if (strcmp(value, "on") && strcmp(value, "off"))
        return set_error(err, FLWD_E_CONFIG_INVALID,
                         "invalid value '%s' for secrets from the "
                         "environment: use on or off",
                         value);
      return 0;
    case FLWD_OPT_STORE:
      if (strcmp(value, "on") && strcmp(value, "off"))
        return set_error(err, FLWD_E_CONFIG_INVALID,
                         "invalid store mode '%s': use on or off", value);
      return 0;
    case FLWD_OPT_RUNTIME:
      if (strcmp(value, "auto") && strcmp(value, "podman")
          && strcmp(value, "docker"))
        return set_error(err, FLWD_E_CONFIG_INVALID,
                         "invalid runtime '%s': use auto, podman or docker",
                         value);
      return 0;
    case FLWD_OPT_PULL_POLICY:
      if (pull_policy_parse(value, &policy) < 0)
        return set_error(err, FLWD_E_CONFIG_INVALID,
                         "invalid pull policy '%s': use missing, always or "
                         "never",
                         value);
      return 0;
    case FLWD_OPT_STATE_DIR:
    case FLWD_OPT_INIT_PATH:
      if (*value != '/')
        return set_error(err, FLWD_E_CONFIG_INVALID,
                         "invalid path '%s': an absolute path is required",
                         value);
      return 0;
    case FLWD_OPT_JOBS_PATH:
      return 0;
  }
  return set_error(err, FLWD_E_CONFIG_INVALID, "unknown option %d", (int)opt);
}

int
flwd_ctx_set_option(flwd_ctx *ctx, flwd_option opt, const char *value,
                    flwd_error **err)
{
  char **slot = option_slot(ctx, opt);
  if (slot == NULL)
    return set_error(err, FLWD_E_CONFIG_INVALID, "unknown option %d", (int)opt);
  if (value == NULL)
    return set_error(err, FLWD_E_CONFIG_INVALID, "option %d needs a value",
                     (int)opt);
  int ret = validate_option(opt, value, err);
  if (ret < 0)
    return ret;

  /* A policy is loaded when it is set, so that a broken one is reported
   * at once and the context keeps the last good one. */
  if (opt == FLWD_OPT_POLICY_FILE) {
    struct policy *policy = NULL;
    if (*value && (ret = policy_load(value, &policy, err)) < 0)
      return ret;
    policy_free(ctx->policy);
    ctx->policy = policy;
  }

  char *copy = strdup(value);
  if (copy == NULL)
    return set_error(err, FLWD_E_INTERNAL, "out of memory");
  free(*slot);
  *slot = copy;

  if (opt == FLWD_OPT_MAX_RUNS)
    parse_count(value, 0, &ctx->max_runs);
  if (opt == FLWD_OPT_LOG_MAX_BYTES)
    parse_count(value, 1024, &ctx->log_max_bytes);
  /* A store opened under the old state directory stays with it. */
  if (opt == FLWD_OPT_STATE_DIR || opt == FLWD_OPT_STORE) {
    store_close(ctx->store);
    ctx->store = NULL;
  }

  /* A new runtime choice takes effect at the next selection. */
  if (opt == FLWD_OPT_RUNTIME) {
    ctx->runtime = NULL;
    free(ctx->runtime_path);
    ctx->runtime_path = NULL;
  }
  return 0;
}

const char *
flwd_ctx_get_option(flwd_ctx *ctx, flwd_option opt)
{
  char **slot = option_slot(ctx, opt);
  return slot ? *slot : NULL;
}

void
flwd_ctx_free(flwd_ctx *ctx)
{
  if (ctx == NULL)
    return;
  run_cancel_all_blocking(ctx);
  if (ctx->owns_base && ctx->base)
    event_base_free(ctx->base);
  free(ctx->jobs_path);
  free(ctx->runtime_choice);
  free(ctx->state_dir);
  free(ctx->pull_policy);
  free(ctx->init_path);
  free(ctx->runtime_path);
  free(ctx->max_runs_text);
  free(ctx->log_max_text);
  free(ctx->store_mode);
  free(ctx->run_mode);
  free(ctx->policy_path);
  policy_free(ctx->policy);
  free(ctx->secrets_dir);
  free(ctx->secrets_env_mode);
  store_close(ctx->store);
  free(ctx);
}

/* ---- Jobs path -------------------------------------------------------- */

typedef int (*dir_fn)(flwd_ctx *ctx, const char *dir, void *user);

/* Calls FN for each directory of the jobs path in order until it returns
 * non-zero; returns that value, or 0. */
static int
foreach_jobs_dir(flwd_ctx *ctx, dir_fn fn, void *user)
{
  const char *p = ctx->jobs_path;
  while (*p) {
    const char *end = strchrnul(p, ':');
    if (end > p) {
      cleanup_free char *dir = strndup(p, (size_t)(end - p));
      int ret = dir ? fn(ctx, dir, user) : -1;
      if (ret)
        return ret;
    }
    p = *end ? end + 1 : end;
  }
  return 0;
}

struct find_state {
  const char *id;
  flwd_job *job;
  flwd_error **err;
  int ret;
};

static int
find_in_dir(flwd_ctx *ctx, const char *dir, void *user)
{
  struct find_state *state = user;
  static const char *const suffixes[] = {".yaml", ".yml"};
  for (size_t i = 0; i < ARRAY_SIZE(suffixes); i++) {
    cleanup_free char *path = xasprintf("%s/%s%s", dir, state->id, suffixes[i]);
    if (path == NULL || access(path, F_OK) < 0)
      continue;
    state->ret = flwd_job_load(ctx, path, &state->job, state->err);
    if (state->ret == 0 && strcmp(state->job->id, state->id) != 0) {
      state->ret = set_error(state->err, FLWD_E_SPEC_INVALID,
                             "%s: the spec's id '%s' does not match its file "
                             "name",
                             path, state->job->id);
      flwd_job_free(state->job);
      state->job = NULL;
    }
    return 1;
  }
  return 0;
}

static bool
job_id_is_safe(const char *id)
{
  return *id && strchr(id, '/') == NULL && strcmp(id, ".") != 0
         && strcmp(id, "..") != 0;
}

int
flwd_job_find(flwd_ctx *ctx, const char *id, flwd_job **out, flwd_error **err)
{
  if (!job_id_is_safe(id))
    return set_error(err, FLWD_E_JOB_NOT_FOUND, "invalid job id '%s'", id);

  struct find_state state = {.id = id, .err = err};
  if (foreach_jobs_dir(ctx, find_in_dir, &state) == 0)
    return set_error(err, FLWD_E_JOB_NOT_FOUND,
                     "job '%s' not found in the jobs path '%s'; set --jobs "
                     "or FLWD_JOBS_PATH",
                     id, ctx->jobs_path);
  if (state.ret < 0)
    return state.ret;
  *out = state.job;
  return 0;
}

struct flwd_job_list {
  flwd_job **jobs;
  size_t len;
};

static bool
list_has(const struct flwd_job_list *list, const char *id)
{
  for (size_t i = 0; i < list->len; i++) {
    if (strcmp(list->jobs[i]->id, id) == 0)
      return true;
  }
  return false;
}

static bool
has_spec_suffix(const char *name)
{
  size_t len = strlen(name);
  return (len > 5 && strcmp(name + len - 5, ".yaml") == 0)
         || (len > 4 && strcmp(name + len - 4, ".yml") == 0);
}

static int
compare_names(const struct dirent **a, const struct dirent **b)
{
  return strcmp((*a)->d_name, (*b)->d_name);
}

static int
list_dir(flwd_ctx *ctx, const char *dir, void *user)
{
  struct flwd_job_list *list = user;
  struct dirent **entries = NULL;
  int n = scandir(dir, &entries, NULL, compare_names);
  if (n < 0)
    return 0;

  for (int i = 0; i < n; i++) {
    const char *name = entries[i]->d_name;
    cleanup_free char *path
        = has_spec_suffix(name) ? xasprintf("%s/%s", dir, name) : NULL;
    free(entries[i]);
    if (path == NULL)
      continue;

    cleanup_error flwd_error *load_err = NULL;
    flwd_job *job = NULL;
    if (flwd_job_load(ctx, path, &job, &load_err) < 0) {
      ctx_log(ctx, FLWD_LOG_WARNING, "skipping %s", load_err->message);
      continue;
    }
    if (list_has(list, job->id)) {
      ctx_log(ctx, FLWD_LOG_WARNING,
              "skipping %s: job '%s' is already defined earlier in the jobs "
              "path",
              path, job->id);
      flwd_job_free(job);
      continue;
    }
    flwd_job **grown = realloc(list->jobs, (list->len + 1) * sizeof(*grown));
    if (grown == NULL) {
      flwd_job_free(job);
      continue;
    }
    list->jobs = grown;
    list->jobs[list->len++] = job;
  }
  free(entries);
  return 0;
}

int
flwd_job_list_load(flwd_ctx *ctx, flwd_job_list **out, flwd_error **err)
{
  struct flwd_job_list *list = calloc(1, sizeof(*list));
  if (list == NULL)
    return set_error(err, FLWD_E_INTERNAL, "out of memory");
  foreach_jobs_dir(ctx, list_dir, list);
  *out = list;
  return 0;
}

size_t
flwd_job_list_count(const flwd_job_list *list)
{
  return list->len;
}

flwd_job *
flwd_job_list_get(const flwd_job_list *list, size_t i)
{
  return i < list->len ? list->jobs[i] : NULL;
}

void
flwd_job_list_free(flwd_job_list *list)
{
  if (list == NULL)
    return;
  for (size_t i = 0; i < list->len; i++)
    flwd_job_free(list->jobs[i]);
  free(list->jobs);
  free(list);
}
