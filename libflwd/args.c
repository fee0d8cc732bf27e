/* libflwd: binding argument values to a job's declared arguments. */
#include <ctype.h>
#include <errno.h>
#include <math.h>
#include <string.h>

#include "internal.h"

#define ENV_VALUE_MAX_BYTES 60000

/* Values reach the job through an env file of KEY=VALUE lines, which
 * cannot carry a line break or a NUL byte; they are rejected when bound, so
 * that a run never starts with a value the job would see cut short. */
static int
check_env_safe(const struct arg_spec *arg, const char *text, size_t len,
               flwd_error **err)
{
  /* Podman and Docker read env files with a line limit of 64 KiB. */
  if (len > ENV_VALUE_MAX_BYTES)
    return set_error(err, FLWD_E_ARGS_INVALID,
                     "argument '%s': the value is %zu bytes long, more than "
                     "the %d that flwd can pass through the environment; "
                     "pass it in a file under the job's /work instead",
                     arg->name, len, ENV_VALUE_MAX_BYTES);
  if (strlen(text) != len)
    return set_error(err, FLWD_E_ARGS_INVALID,
                     "argument '%s': the value contains a NUL byte", arg->name);
  if (strpbrk(text, "\r\n"))
    return set_error(err, FLWD_E_ARGS_INVALID,
                     "argument '%s': the value contains a line break, "
                     "which flwd cannot pass through the environment",
                     arg->name);
  return 0;
}

static bool
enum_allows(const struct arg_spec *arg, const char *text)
{
  size_t n = json_object_array_length(arg->values);
  for (size_t i = 0; i < n; i++) {
    json_object *v = json_object_array_get_idx(arg->values, i);
    if (strcmp(json_object_get_string(v), text) == 0)
      return true;
  }
  return false;
}

int
arg_bind_text(const struct arg_spec *arg, const char *text, json_object **out,
              flwd_error **err)
{
  char *end = NULL;
  int ret = check_env_safe(arg, text, strlen(text), err);
  if (ret < 0)
    return ret;

  switch (arg->type) {
    case ARG_STRING:
      *out = json_object_new_string(text);
      return 0;

    case ARG_INTEGER: {
      errno = 0;
      long long value = strtoll(text, &end, 10);
      if (errno || end == text || *end || isspace((unsigned char)*text))
        return set_error(err, FLWD_E_ARGS_INVALID,
                         "argument '%s': expected an integer, got '%s'",
                         arg->name, text);
      *out = json_object_new_int64(value);
      return 0;
    }

    case ARG_NUMBER: {
      errno = 0;
      double value = strtod(text, &end);
      if (errno || end == text || *end || !isfinite(value)
          || isspace((unsigned char)*text))
        return set_error(err, FLWD_E_ARGS_INVALID,
                         "argument '%s': expected a number, got '%s'",
                         arg->name, text);
      /* Keep the text as given, so that 0.1 reaches the job as 0.1. */
      *out = json_object_new_double_s(value, text);
      return 0;
    }

    case ARG_BOOLEAN:
      if (strcmp(text, "true") == 0)
        *out = json_object_new_boolean(1);
      else if (strcmp(text, "false") == 0)
        *out = json_object_new_boolean(0);
      else
        return set_error(err, FLWD_E_ARGS_INVALID,
                         "argument '%s': expected true or false, got '%s'",
                         arg->name, text);
      return 0;

    case ARG_ENUM:
      if (!enum_allows(arg, text))
        return set_error(err, FLWD_E_ARGS_INVALID,
                         "argument '%s': '%s' is not one of %s", arg->name,
                         text, arg->values_text);
      *out = json_object_new_string(text);
      return 0;

    case ARG_LIST:
      *out = json_object_new_array();
      json_object_array_add(*out, json_object_new_string(text));
      return 0;
  }
  return set_error(err, FLWD_E_INTERNAL, "argument '%s': unknown type",
                   arg->name);
}

/* Matches NAME against the declared names, treating '-' and '_' alike so
 * that --dry-run and --dry_run both reach an argument named dry_run. */
static const struct arg_spec *
find_arg(const flwd_job *job, const char *name, size_t len)
{
  for (size_t i = 0; i < job->n_args; i++) {
    const char *declared = job->args[i].name;
    if (strlen(declared) != len)
      continue;
    size_t k = 0;
    while (k < len
           && (declared[k] == name[k]
               || (strchr("-_", declared[k]) && strchr("-_", name[k]))))
      k++;
    if (k == len)
      return &job->args[i];
  }
  return NULL;
}

static flwd_args *
args_new(const flwd_job *job)
{
  flwd_args *args = calloc(1, sizeof(*args));
  if (args == NULL)
    return NULL;
  args->job = job_ref((flwd_job *)job);
  args->values = json_object_new_object();
  return args;
}

/* Applies defaults and checks that every required argument is present. */
static int
args_finish(flwd_args *args, flwd_error **err)
{
  const flwd_job *job = args->job;
  for (size_t i = 0; i < job->n_args; i++) {
    const struct arg_spec *arg = &job->args[i];
    if (json_object_object_get_ex(args->values, arg->name, NULL))
      continue;
    if (arg->required)
      return set_error(err, FLWD_E_ARGS_INVALID,
                       "missing required argument '%s' of job '%s'", arg->name,
                       job->id);
    if (arg->default_value)
      json_object_object_add(args->values, arg->name,
                             json_object_get(arg->default_value));
  }
  return 0;
}

/* Stores VALUE under ARG, appending to an existing list. */
static int
args_store(flwd_args *args, const struct arg_spec *arg, json_object *value,
           flwd_error **err)
{
  json_object *existing = NULL;
  if (!json_object_object_get_ex(args->values, arg->name, &existing)) {
    json_object_object_add(args->values, arg->name, value);
    return 0;
  }
  if (arg->type != ARG_LIST) {
    json_object_put(value);
    return set_error(err, FLWD_E_ARGS_INVALID,
                     "argument '%s' given more than once", arg->name);
  }
  json_object_array_add(existing,
                        json_object_get(json_object_array_get_idx(value, 0)));
  json_object_put(value);
  return 0;
}

static int
bind_option(flwd_args *args, int argc, char *const argv[], int *index,
            flwd_error **err)
{
  const char *option = argv[*index];
  if (strncmp(option, "--", 2) != 0 || option[2] == '\0')
    return set_error(err, FLWD_E_ARGS_INVALID,
                     "unexpected argument '%s': job arguments are given as "
                     "--NAME VALUE",
                     option);

  const char *name = option + 2;
  const char *eq = strchr(name, '=');
  size_t name_len = eq ? (size_t)(eq - name) : strlen(name);
  const struct arg_spec *arg = find_arg(args->job, name, name_len);
  const char *text = eq ? eq + 1 : NULL;

  /* --no-NAME sets a boolean to false. */
  if (arg == NULL && eq == NULL && strncmp(name, "no-", 3) == 0) {
    const struct arg_spec *negated
        = find_arg(args->job, name + 3, name_len - 3);
    if (negated && negated->type == ARG_BOOLEAN) {
      arg = negated;
      text = "false";
    }
  }
  if (arg == NULL)
    return set_error(err, FLWD_E_ARGS_INVALID,
                     "unknown argument '--%.*s' for job '%s'", (int)name_len,
                     name, args->job->id);

  if (text == NULL && arg->type == ARG_BOOLEAN)
    text = "true";
  if (text == NULL) {
    if (*index + 1 >= argc)
      return set_error(err, FLWD_E_ARGS_INVALID,
                       "argument '--%s' needs a value", arg->name);
    text = argv[++*index];
  }

  json_object *value = NULL;
  int ret = arg_bind_text(arg, text, &value, err);
  if (ret < 0)
    return ret;
  return args_store(args, arg, value, err);
}

int
flwd_args_from_argv(const flwd_job *job, int argc, char *const argv[],
                    flwd_args **out, flwd_error **err)
{
  flwd_args *args = args_new(job);
  if (args == NULL)
    return set_error(err, FLWD_E_INTERNAL, "out of memory");

  int ret = 0;
  for (int i = 0; i < argc && ret == 0; i++)
    ret = bind_option(args, argc, argv, &i, err);
  if (ret == 0)
    ret = args_finish(args, err);
  if (ret < 0) {
    flwd_args_free(args);
    return ret;
  }
  *out = args;
  return 0;
}

static const char *
json_type_label(json_object *value)
{
  switch (json_object_get_type(value)) {
    case json_type_null:
      return "null";
    case json_type_boolean:
      return "a boolean";
    case json_type_double:
    case json_type_int:
      return "a number";
    case json_type_object:
      return "an object";
    case json_type_array:
      return "a list";
    case json_type_string:
      return "a string";
  }
  return "a value";
}

static int
type_error(const struct arg_spec *arg, json_object *value, const char *want,
           flwd_error **err)
{
  return set_error(err, FLWD_E_ARGS_INVALID,
                   "argument '%s': expected %s, got %s", arg->name, want,
                   json_type_label(value));
}

static int
check_json_string(const struct arg_spec *arg, json_object *value,
                  flwd_error **err)
{
  if (!json_object_is_type(value, json_type_string))
    return type_error(arg, value, "a string", err);
  return check_env_safe(arg, json_object_get_string(value),
                        (size_t)json_object_get_string_len(value), err);
}

/* Checks a JSON VALUE against ARG and returns the value to store (a new
 * reference), normalising integral numbers for integer arguments. */
static int
bind_json_value(const struct arg_spec *arg, json_object *value,
                json_object **out, flwd_error **err)
{
  int ret;
  switch (arg->type) {
    case ARG_STRING:
    case ARG_ENUM:
      ret = check_json_string(arg, value, err);
      if (ret < 0)
        return ret;
      if (arg->type == ARG_ENUM
          && !enum_allows(arg, json_object_get_string(value)))
        return set_error(err, FLWD_E_ARGS_INVALID,
                         "argument '%s': '%s' is not one of %s", arg->name,
                         json_object_get_string(value), arg->values_text);
      break;

    case ARG_INTEGER:
      if (!json_object_is_type(value, json_type_int))
        return type_error(arg, value, "an integer", err);
      break;

    case ARG_NUMBER:
      if (!json_object_is_type(value, json_type_int)
          && !json_object_is_type(value, json_type_double))
        return type_error(arg, value, "a number", err);
      break;

    case ARG_BOOLEAN:
      if (!json_object_is_type(value, json_type_boolean))
        return type_error(arg, value, "true or false", err);
      break;

    case ARG_LIST: {
      if (!json_object_is_type(value, json_type_array))
        return type_error(arg, value, "a list of strings", err);
      size_t n = json_object_array_length(value);
      for (size_t i = 0; i < n; i++) {
        ret = check_json_string(arg, json_object_array_get_idx(value, i), err);
        if (ret < 0)
          return ret;
      }
      break;
    }
  }
  *out = json_object_get(value);
  return 0;
}

int
flwd_args_from_json(const flwd_job *job, const char *json, flwd_args **out,
                    flwd_error **err)
{
  json_tokener *tok = json_tokener_new();
  if (tok == NULL)
    return set_error(err, FLWD_E_INTERNAL, "out of memory");
  cleanup_json json_object *input
      = json_tokener_parse_ex(tok, json, (int)strlen(json));
  enum json_tokener_error jerr = json_tokener_get_error(tok);
  size_t consumed = tok->char_offset;
  json_tokener_free(tok);
  if (input == NULL || jerr != json_tokener_success
      || json[consumed + strspn(json + consumed, " \t\r\n")] != '\0')
    return set_error(
        err, FLWD_E_ARGS_INVALID, "the arguments are not valid JSON: %s",
        jerr == json_tokener_success ? "unexpected data after the object"
                                     : json_tokener_error_desc(jerr));
  if (!json_object_is_type(input, json_type_object))
    return set_error(err, FLWD_E_ARGS_INVALID,
                     "the arguments must be a JSON object of name to value");

  flwd_args *args = args_new(job);
  if (args == NULL)
    return set_error(err, FLWD_E_INTERNAL, "out of memory");

  int ret = 0;
  json_object_object_foreach(input, name, value)
  {
    const struct arg_spec *arg = NULL;
    for (size_t i = 0; i < job->n_args && arg == NULL; i++) {
      if (strcmp(job->args[i].name, name) == 0)
        arg = &job->args[i];
    }
    if (arg == NULL) {
      ret = set_error(err, FLWD_E_ARGS_INVALID,
                      "unknown argument '%s' for job '%s'", name, job->id);
      break;
    }
    json_object *bound = NULL;
    ret = bind_json_value(arg, value, &bound, err);
    if (ret < 0)
      break;
    json_object_object_add(args->values, arg->name, bound);
  }
  if (ret == 0)
    ret = args_finish(args, err);
  if (ret < 0) {
    flwd_args_free(args);
    return ret;
  }
  *out = args;
  return 0;
}

char *
flwd_args_to_json(const flwd_args *args)
{
  return json_to_string_owned(args->values, JSON_PLAIN);
}

void
flwd_args_free(flwd_args *args)
{
  if (args == NULL)
    return;
  json_object_put(args->values);
  flwd_job_free(args->job);
  free(args);
}

flwd_args *
args_copy(const flwd_args *args)
{
  flwd_args *copy = args_new(args->job);
  if (copy == NULL)
    return NULL;
  json_object_put(copy->values);
  copy->values = NULL;
  if (json_object_deep_copy(args->values, &copy->values, NULL) < 0) {
    flwd_args_free(copy);
    return NULL;
  }
  return copy;
}

char *
arg_env_text(json_object *value)
{
  switch (json_object_get_type(value)) {
    case json_type_string:
      return strdup(json_object_get_string(value));
    case json_type_boolean:
      return strdup(json_object_get_boolean(value) ? "true" : "false");
    default:
      return json_to_string_owned(value, JSON_PLAIN);
  }
}

char *
arg_env_name(const char *name)
{
  char *env = xasprintf("FLWD_ARG_%s", name);
  if (env == NULL)
    return NULL;
  for (char *p = env + 9; *p; p++)
    *p = isalnum((unsigned char)*p) ? (char)toupper((unsigned char)*p) : '_';
  return env;
}
