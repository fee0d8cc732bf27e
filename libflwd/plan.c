/* libflwd: resolving a job and its arguments into a plan, and a plan into
 * the runtime's command line. */
#include <errno.h>
#include <string.h>

#include "internal.h"

/* Limits of the secure profile when the spec sets none. They bound what a
 * runaway job can take from the host, and are generous enough for the
 * kind of program a job usually is. */
#define DEFAULT_PIDS 256
#define DEFAULT_MEMORY_BYTES (1024LL * 1024 * 1024)

static void
add_missing(struct plan *plan, const char *text)
{
  json_object_array_add(plan->guarantees_missing, json_object_new_string(text));
}

/* Records each guarantee of the secure profile that this runtime cannot
 * give on this host, so that the plan, the log and the events report it. */
static void
note_missing_guarantees(struct plan *plan)
{
  if (plan->profile == PROFILE_DISABLED)
    return;
  const struct runtime_caps *caps = &plan->caps;
  if (!caps->rootless && !caps->userns)
    add_missing(plan,
                "rootless: the runtime runs containers as host root and "
                "without a user namespace, so container root is host root");
  if (!caps->resource_limits)
    add_missing(plan,
                "resource limits: this runtime cannot set memory, cpu or "
                "pids limits here (rootless on cgroups v1), so none apply");
}

int
plan_resolve(flwd_ctx *ctx, const flwd_job *job, const flwd_args *args,
             struct plan *out, flwd_error **err)
{
  memset(out, 0, sizeof(*out));
  if (args->job != job)
    return set_error(err, FLWD_E_ARGS_INVALID,
                     "the arguments were bound to job '%s', not '%s'",
                     args->job->id, job->id);

  int ret = runtime_select(ctx, err);
  if (ret < 0)
    return ret;

  out->job = job_ref((flwd_job *)job);
  out->args = args_copy(args);
  out->runtime = ctx->runtime;
  out->runtime_path = strdup(ctx->runtime_path);
  out->caps = ctx->runtime_caps;
  out->profile = job->profile;
  out->detached = strcmp(ctx->run_mode, "detached") == 0;
  out->state_dir = ctx->state_dir;
  out->pids = job->pids ? job->pids : DEFAULT_PIDS;
  out->memory_bytes
      = job->memory_bytes ? job->memory_bytes : DEFAULT_MEMORY_BYTES;
  out->cpus = job->cpus;
  out->guarantees_missing = json_object_new_array();
  out->decisions = json_object_new_array();
  strv_init(&out->caps_add);
  strv_init(&out->secrets_env);
  if (job->has_pull)
    out->pull = job->pull;
  else
    pull_policy_parse(ctx->pull_policy, &out->pull);

  if (out->args == NULL || out->runtime_path == NULL
      || out->guarantees_missing == NULL || out->decisions == NULL) {
    plan_clear(out);
    return set_error(err, FLWD_E_INTERNAL, "out of memory");
  }
  note_missing_guarantees(out);
  policy_decide(ctx->policy, job, out, DEFAULT_MEMORY_BYTES, DEFAULT_PIDS);
  return 0;
}

void
plan_clear(struct plan *plan)
{
  flwd_job_free(plan->job);
  flwd_args_free(plan->args);
  free(plan->runtime_path);
  if (plan->guarantees_missing)
    json_object_put(plan->guarantees_missing);
  if (plan->decisions)
    json_object_put(plan->decisions);
  free(plan->denial);
  strv_clear(&plan->caps_add);
  strv_clear(&plan->secrets_env);
  memset(plan, 0, sizeof(*plan));
}

int
plan_build_argv(const struct plan *plan, const struct run_layout *layout,
                struct strv *argv, flwd_error **err)
{
  if (strv_push(argv, plan->runtime_path) < 0)
    return set_error(err, FLWD_E_INTERNAL, "out of memory");
  int ret = plan->runtime->run_argv(plan, layout, argv, err);
  if (ret < 0)
    return ret;
  if (strv_push(argv, layout->image) < 0)
    return set_error(err, FLWD_E_INTERNAL, "out of memory");
  for (size_t i = 0; layout->command && i < layout->command->len; i++) {
    if (strv_push(argv, layout->command->items[i]) < 0)
      return set_error(err, FLWD_E_INTERNAL, "out of memory");
  }
  return 0;
}

/* Expands the placeholders of one command element into OUT. */
static int
expand_element(const struct plan *plan, const char *run_id, const char *in,
               struct buf *out, flwd_error **err)
{
  const char *p = in;
  while (*p) {
    const char *start = strstr(p, "${");
    if (start == NULL) {
      buf_append(out, p, strlen(p));
      break;
    }
    buf_append(out, p, (size_t)(start - p));
    const char *end = strchr(start, '}');
    if (end == NULL)
      return set_error(err, FLWD_E_SPEC_INVALID,
                       "%s: command: unterminated placeholder in '%s'",
                       plan->job->path, in);

    cleanup_free char *name = strndup(start + 2, (size_t)(end - start - 2));
    if (name && strcmp(name, "run.id") == 0) {
      buf_append(out, run_id, strlen(run_id));
    } else if (name && strncmp(name, "args.", 5) == 0) {
      json_object *value = NULL;
      bool declared = false;
      for (size_t i = 0; i < plan->job->n_args; i++)
        declared |= strcmp(plan->job->args[i].name, name + 5) == 0;
      if (!declared)
        return set_error(err, FLWD_E_SPEC_INVALID,
                         "%s: command: placeholder '${%s}' names no declared "
                         "argument",
                         plan->job->path, name);
      /* An optional argument without a value expands to nothing. */
      if (json_object_object_get_ex(plan->args->values, name + 5, &value)) {
        cleanup_free char *text = arg_env_text(value);
        if (text)
          buf_append(out, text, strlen(text));
      }
    } else {
      return set_error(err, FLWD_E_SPEC_INVALID,
                       "%s: command: unknown placeholder '${%s}'; use "
                       "${args.NAME} or ${run.id}",
                       plan->job->path, name ? name : "");
    }
    p = end + 1;
  }
  return 0;
}

int
plan_expand_command(const struct plan *plan, const char *run_id,
                    struct strv *out, flwd_error **err)
{
  for (size_t i = 0; i < plan->job->command.len; i++) {
    struct buf element = {0};
    buf_append(&element, "", 0);
    int ret = expand_element(plan, run_id, plan->job->command.items[i],
                             &element, err);
    if (ret == 0 && strv_push(out, element.data) < 0)
      ret = set_error(err, FLWD_E_INTERNAL, "out of memory");
    buf_clear(&element);
    if (ret < 0)
      return ret;
  }
  return 0;
}

static int
env_line(struct buf *out, const char *key, const char *value)
{
  int ret = buf_append(out, key, strlen(key));
  ret |= buf_append(out, "=", 1);
  ret |= buf_append(out, value, strlen(value));
  ret |= buf_append(out, "\n", 1);
  return ret;
}

int
plan_env_text(const struct plan *plan, const char *run_id, struct buf *out,
              flwd_error **err)
{
  int ret = 0;
  ret |= env_line(out, "FLWD_RUN_ID", run_id);
  ret |= env_line(out, "FLWD_JOB_ID", plan->job->id);
  ret |= env_line(out, "FLWD_ARGS_FILE", "/run/flwd/args.json");
  ret |= env_line(out, "FLWD_WORKDIR", "/work");
  ret |= env_line(out, "FLWD_OUTPUT_DIR", "/run/flwd/out");
  ret |= env_line(out, "FLWD_SECRETS_DIR", "/run/secrets");

  json_object_object_foreach(plan->args->values, name, value)
  {
    cleanup_free char *key = arg_env_name(name);
    cleanup_free char *text = arg_env_text(value);
    if (key == NULL || text == NULL)
      return set_error(err, FLWD_E_INTERNAL, "out of memory");
    ret |= env_line(out, key, text);
  }
  if (ret)
    return set_error(err, FLWD_E_INTERNAL, "out of memory");
  return 0;
}

json_object *
plan_to_json(const struct plan *plan, const struct strv *argv)
{
  json_object *obj = json_object_new_object();
  json_object *args = NULL;
  json_object_deep_copy(plan->args->values, &args, NULL);

  json_object_object_add(obj, "job", json_object_new_string(plan->job->id));
  json_object_object_add(obj, "runtime",
                         json_object_new_string(plan->runtime->name));
  json_object_object_add(obj, "runtime_path",
                         json_object_new_string(plan->runtime_path));
  json_object_object_add(obj, "image",
                         json_object_new_string(plan->job->image));
  json_object_object_add(obj, "pull",
                         json_object_new_string(pull_policy_name(plan->pull)));
  json_object_object_add(obj, "profile",
                         json_object_new_string(profile_name(plan->profile)));
  json_object_object_add(obj, "args", args);

  json_object *guarantees = json_object_new_object();
  json_object_object_add(guarantees, "rootless",
                         json_object_new_boolean(plan->caps.rootless));
  json_object_object_add(guarantees, "user_namespace",
                         json_object_new_boolean(plan->caps.userns));
  json_object_object_add(guarantees, "resource_limits",
                         json_object_new_boolean(plan->caps.resource_limits));
  json_object_object_add(obj, "guarantees", guarantees);
  json_object_object_add(obj, "guarantees_missing",
                         json_object_get(plan->guarantees_missing));

  json_object *resources = json_object_new_object();
  json_object_object_add(resources, "pids", json_object_new_int64(plan->pids));
  json_object_object_add(resources, "memory_bytes",
                         json_object_new_int64(plan->memory_bytes));
  if (plan->cpus > 0)
    json_object_object_add(resources, "cpus",
                           json_object_new_double(plan->cpus));
  json_object_object_add(obj, "resources", resources);
  json_object_object_add(obj, "timeout_ms",
                         plan->job->timeout_ms
                             ? json_object_new_int64(plan->job->timeout_ms)
                             : NULL);
  json_object_object_add(obj, "stop_timeout_ms",
                         json_object_new_int64(plan->job->stop_timeout_ms));
  json_object_object_add(obj, "policy", json_object_get(plan->decisions));
  json_object_object_add(obj, "allowed",
                         json_object_new_boolean(plan->denial == NULL));
  json_object *network = json_object_new_object();
  json_object_object_add(
      network, "mode",
      json_object_new_string(plan->network_limited ? "limited" : "none"));
  json_object_object_add(network, "runtime_network",
                         json_object_new_string(runtime_network(plan)));
  json_object_object_add(obj, "network", network);
  json_object_object_add(obj, "secrets", strv_to_json(&plan->job->secrets));
  json_object_object_add(obj, "secrets_as_env",
                         strv_to_json(&plan->secrets_env));
  if (argv)
    json_object_object_add(obj, "argv", strv_to_json(argv));
  return obj;
}

/* ---- Public plan ------------------------------------------------------ */

int
flwd_plan_create(flwd_ctx *ctx, const flwd_job *job, const flwd_args *args,
                 flwd_plan **out, flwd_error **err)
{
  flwd_plan *plan = calloc(1, sizeof(*plan));
  if (plan == NULL)
    return set_error(err, FLWD_E_INTERNAL, "out of memory");
  strv_init(&plan->argv);

  int ret = plan_resolve(ctx, job, args, &plan->plan, err);
  if (ret == 0)
    ret = run_layout_argv(ctx, &plan->plan, &plan->argv, err);
  if (ret < 0) {
    flwd_plan_free(plan);
    return ret;
  }
  *out = plan;
  return 0;
}

char *
flwd_plan_to_json(const flwd_plan *plan)
{
  cleanup_json json_object *obj = plan_to_json(&plan->plan, &plan->argv);
  return json_to_string_owned(obj, JSON_C_TO_STRING_PRETTY
                                       | JSON_C_TO_STRING_NOSLASHESCAPE);
}

void
flwd_plan_free(flwd_plan *plan)
{
  if (plan == NULL)
    return;
  plan_clear(&plan->plan);
  strv_clear(&plan->argv);
  free(plan);
}
