/* libflwd: loading and validating job specs.
 *
 * A spec is read into a libyaml document first, so that every node keeps
 * its line and column; validation then walks the document and reports the
 * first problem as "FILE:LINE:COLUMN: FIELD: problem".
 */
#include <ctype.h>
#include <errno.h>
#include <stdio.h>
#include <string.h>
#include <sys/stat.h>

#include "yaml-reader.h"

/* Specs are small; anything larger is a mistake, not a job. */
#define SPEC_MAX_BYTES (1024 * 1024)
#define MAX_NESTING 32
#define ID_MAX_LEN 63

int node_error(struct yaml_reader *r, const yaml_node_t *node,
               const char *field, const char *fmt, ...) FLWD_PRINTF(4, 5);

int
node_error(struct yaml_reader *r, const yaml_node_t *node, const char *field,
           const char *fmt, ...)
{
  char *problem = NULL;
  va_list ap;
  va_start(ap, fmt);
  if (vasprintf(&problem, fmt, ap) < 0)
    problem = NULL;
  va_end(ap);

  /* libyaml counts lines and columns from 0; editors count from 1. */
  unsigned long line = node ? node->start_mark.line + 1 : 1;
  unsigned long column = node ? node->start_mark.column + 1 : 1;
  int ret = set_error(r->err, r->code, "%s:%lu:%lu: %s: %s", r->file, line,
                      column, field, problem ? problem : "invalid");
  free(problem);
  return ret;
}

const char *
scalar_text(const yaml_node_t *node)
{
  return (const char *)node->data.scalar.value;
}

static bool
scalar_is_plain(const yaml_node_t *node)
{
  return node->data.scalar.style == YAML_PLAIN_SCALAR_STYLE;
}

int
want_scalar(struct yaml_reader *r, const yaml_node_t *node, const char *field)
{
  if (node->type != YAML_SCALAR_NODE)
    return node_error(r, node, field, "expected a single value");
  return 0;
}

int
read_string(struct yaml_reader *r, const yaml_node_t *node, const char *field,
            char **out)
{
  int ret = want_scalar(r, node, field);
  if (ret < 0)
    return ret;
  if (strlen(scalar_text(node)) != node->data.scalar.length)
    return node_error(r, node, field, "contains a NUL byte");
  free(*out);
  *out = strdup(scalar_text(node));
  return *out ? 0 : node_error(r, node, field, "out of memory");
}

int
read_bool(struct yaml_reader *r, const yaml_node_t *node, const char *field,
          bool *out)
{
  int ret = want_scalar(r, node, field);
  if (ret < 0)
    return ret;
  const char *text = scalar_text(node);
  if (scalar_is_plain(node) && strcmp(text, "true") == 0)
    *out = true;
  else if (scalar_is_plain(node) && strcmp(text, "false") == 0)
    *out = false;
  else
    return node_error(r, node, field, "expected true or false, got '%s'", text);
  return 0;
}

static int
read_duration(struct yaml_reader *r, const yaml_node_t *node, const char *field,
              long long *out)
{
  int ret = want_scalar(r, node, field);
  if (ret < 0)
    return ret;
  if (parse_duration_ms(scalar_text(node), out) < 0)
    return node_error(r, node, field,
                      "invalid duration '%s': use a number with ms, s, m "
                      "or h, such as 30s or 10m",
                      scalar_text(node));
  return 0;
}

static bool
id_is_valid(const char *id)
{
  size_t len = strlen(id);
  if (len < 1 || len > ID_MAX_LEN)
    return false;
  for (const char *p = id; *p; p++) {
    if (!(islower((unsigned char)*p) || isdigit((unsigned char)*p) || *p == '.'
          || *p == '_' || *p == '-'))
      return false;
  }
  return true;
}

/* Argument names become FLWD_ARG_* variables and --NAME options, so they
 * are held to the shape of an identifier. */
static bool
arg_name_is_valid(const char *name)
{
  if (!(isalpha((unsigned char)name[0]) || name[0] == '_'))
    return false;
  for (const char *p = name; *p; p++) {
    if (!(isalnum((unsigned char)*p) || *p == '_' || *p == '-'))
      return false;
  }
  return strlen(name) <= 64;
}

/* ---- Mapping walk ----------------------------------------------------- */

/* Visits the keys of MAP in document order, dispatching each to its entry
 * of FIELDS; an unknown key or a duplicate is an error. PREFIX names the
 * mapping in messages ("" at the top, "args[2]" below). */
int
walk_mapping(struct yaml_reader *r, const yaml_node_t *map, const char *prefix,
             const struct field *fields, size_t n_fields, void *target)
{
  if (map->type != YAML_MAPPING_NODE)
    return node_error(r, map, *prefix ? prefix : "spec",
                      "expected a mapping of fields");

  bool seen[32] = {false};
  for (yaml_node_pair_t *pair = map->data.mapping.pairs.start;
       pair < map->data.mapping.pairs.top; pair++) {
    yaml_node_t *key = yaml_document_get_node(r->doc, pair->key);
    yaml_node_t *value = yaml_document_get_node(r->doc, pair->value);
    if (key->type != YAML_SCALAR_NODE)
      return node_error(r, key, *prefix ? prefix : "spec",
                        "field names must be plain strings");

    cleanup_free char *field
        = *prefix ? xasprintf("%s.%s", prefix, scalar_text(key))
                  : strdup(scalar_text(key));
    size_t i = 0;
    while (i < n_fields && strcmp(fields[i].key, scalar_text(key)) != 0)
      i++;
    if (i == n_fields)
      return node_error(r, key, field, "unknown field");
    if (seen[i])
      return node_error(r, key, field, "field given twice");
    seen[i] = true;

    int ret = fields[i].read(r, value, field, target);
    if (ret < 0)
      return ret;
  }

  for (size_t i = 0; i < n_fields; i++) {
    if (fields[i].required && !seen[i]) {
      cleanup_free char *field = *prefix
                                     ? xasprintf("%s.%s", prefix, fields[i].key)
                                     : strdup(fields[i].key);
      return node_error(r, map, field, "missing required field");
    }
  }
  return 0;
}

/* ---- Top-level fields ------------------------------------------------- */

static int
read_id(struct yaml_reader *r, const yaml_node_t *v, const char *f, void *t)
{
  flwd_job *job = t;
  int ret = read_string(r, v, f, &job->id);
  if (ret < 0)
    return ret;
  if (!id_is_valid(job->id))
    return node_error(r, v, f,
                      "invalid id '%s': use 1 to 63 lower-case letters, "
                      "digits, '.', '_' or '-'",
                      job->id);
  return 0;
}

static int
read_description(struct yaml_reader *r, const yaml_node_t *v, const char *f,
                 void *t)
{
  flwd_job *job = t;
  return read_string(r, v, f, &job->description);
}

static int
read_executor(struct yaml_reader *r, const yaml_node_t *v, const char *f,
              void *t)
{
  int ret = want_scalar(r, v, f);
  if (ret < 0)
    return ret;
  if (strcmp(scalar_text(v), "container") != 0)
    return node_error(r, v, f,
                      "unsupported executor '%s': only 'container' is "
                      "supported",
                      scalar_text(v));
  return 0;
}

/* Accepts NAME[:TAG][@sha256:HEX] with an optional registry host and port,
 * the grammar of the OCI distribution reference in a lenient form: the
 * runtime has the final word, but nothing that could be read as an option
 * or carry white space reaches its command line. */
static bool
image_ref_is_valid(const char *ref)
{
  if (*ref == '\0' || *ref == '-' || strlen(ref) > 512)
    return false;
  for (const char *p = ref; *p; p++) {
    if (!(isalnum((unsigned char)*p) || strchr("._-/:@", *p)))
      return false;
  }
  const char *digest = strchr(ref, '@');
  if (digest) {
    if (strncmp(digest, "@sha256:", 8) != 0 || strlen(digest + 8) != 64)
      return false;
    for (const char *p = digest + 8; *p; p++) {
      if (!isxdigit((unsigned char)*p) || isupper((unsigned char)*p))
        return false;
    }
  }
  return true;
}

static int
read_interpreter(struct yaml_reader *r, const yaml_node_t *v, const char *f,
                 void *t)
{
  flwd_job *job = t;
  int ret = want_scalar(r, v, f);
  if (ret < 0)
    return ret;
  const char *text = scalar_text(v);
  if (strncmp(text, "container:", 10) != 0)
    return node_error(r, v, f, "expected 'container:IMAGE', got '%s'", text);
  if (!image_ref_is_valid(text + 10))
    return node_error(r, v, f, "invalid image reference '%s'", text + 10);
  free(job->image);
  job->image = strdup(text + 10);
  return job->image ? 0 : node_error(r, v, f, "out of memory");
}

static int
read_command(struct yaml_reader *r, const yaml_node_t *v, const char *f,
             void *t)
{
  flwd_job *job = t;
  if (v->type != YAML_SEQUENCE_NODE)
    return node_error(r, v, f,
                      "expected a list of strings, such as [\"sh\", \"-c\", "
                      "\"echo hi\"]");
  size_t i = 0;
  for (yaml_node_item_t *item = v->data.sequence.items.start;
       item < v->data.sequence.items.top; item++, i++) {
    yaml_node_t *element = yaml_document_get_node(r->doc, *item);
    cleanup_free char *field = xasprintf("%s[%zu]", f, i);
    cleanup_free char *text = NULL;
    int ret = read_string(r, element, field, &text);
    if (ret < 0)
      return ret;
    if (strv_push(&job->command, text) < 0)
      return node_error(r, element, field, "out of memory");
  }
  if (job->command.len == 0)
    return node_error(r, v, f,
                      "must not be empty; leave it out to use the "
                      "image's own command");
  job->has_command = true;
  return 0;
}

static int
read_profile(struct yaml_reader *r, const yaml_node_t *v, const char *f,
             void *t)
{
  flwd_job *job = t;
  int ret = want_scalar(r, v, f);
  if (ret < 0)
    return ret;
  static const char *const names[] = {"secure", "permissive", "disabled"};
  for (size_t i = 0; i < ARRAY_SIZE(names); i++) {
    if (strcmp(scalar_text(v), names[i]) == 0) {
      job->profile = (profile_kind)i;
      return 0;
    }
  }
  return node_error(r, v, f,
                    "unknown profile '%s': use secure, permissive or "
                    "disabled",
                    scalar_text(v));
}

static int
read_pull(struct yaml_reader *r, const yaml_node_t *v, const char *f, void *t)
{
  flwd_job *job = t;
  int ret = want_scalar(r, v, f);
  if (ret < 0)
    return ret;
  if (pull_policy_parse(scalar_text(v), &job->pull) < 0)
    return node_error(r, v, f,
                      "unknown pull policy '%s': use missing, always or "
                      "never",
                      scalar_text(v));
  job->has_pull = true;
  return 0;
}

static int
read_timeout(struct yaml_reader *r, const yaml_node_t *v, const char *f,
             void *t)
{
  flwd_job *job = t;
  return read_duration(r, v, f, &job->timeout_ms);
}

static int
read_stop_timeout(struct yaml_reader *r, const yaml_node_t *v, const char *f,
                  void *t)
{
  flwd_job *job = t;
  return read_duration(r, v, f, &job->stop_timeout_ms);
}

/* ---- resources -------------------------------------------------------- */

static int
read_memory(struct yaml_reader *r, const yaml_node_t *v, const char *f, void *t)
{
  flwd_job *job = t;
  int ret = want_scalar(r, v, f);
  if (ret < 0)
    return ret;
  if (parse_size_bytes(scalar_text(v), &job->memory_bytes) < 0
      || job->memory_bytes < 4 * 1024 * 1024)
    return node_error(r, v, f,
                      "invalid memory size '%s': use a number of at least "
                      "4Mi with an optional unit Ki, Mi, Gi, k, M or G",
                      scalar_text(v));
  return 0;
}

static int
read_cpus(struct yaml_reader *r, const yaml_node_t *v, const char *f, void *t)
{
  flwd_job *job = t;
  int ret = want_scalar(r, v, f);
  if (ret < 0)
    return ret;
  char *end = NULL;
  errno = 0;
  double cpus = strtod(scalar_text(v), &end);
  if (errno || end == scalar_text(v) || *end || !(cpus > 0) || cpus > 1024)
    return node_error(r, v, f,
                      "invalid cpu count '%s': use a number above 0, such "
                      "as 0.5 or 2",
                      scalar_text(v));
  job->cpus = cpus;
  return 0;
}

static int
read_pids(struct yaml_reader *r, const yaml_node_t *v, const char *f, void *t)
{
  flwd_job *job = t;
  int ret = want_scalar(r, v, f);
  if (ret < 0)
    return ret;
  char *end = NULL;
  errno = 0;
  long long pids = strtoll(scalar_text(v), &end, 10);
  if (errno || end == scalar_text(v) || *end || pids < 1 || pids > 1 << 22)
    return node_error(r, v, f,
                      "invalid pids limit '%s': use a whole number "
                      "of at least 1",
                      scalar_text(v));
  job->pids = pids;
  return 0;
}

static int
read_resources(struct yaml_reader *r, const yaml_node_t *v, const char *f,
               void *t)
{
  static const struct field fields[] = {
      {"memory", read_memory, false},
      {"cpus", read_cpus, false},
      {"pids", read_pids, false},
  };
  return walk_mapping(r, v, f, fields, ARRAY_SIZE(fields), t);
}

/* ---- secrets and requests --------------------------------------------- */

static bool
secret_name_is_valid(const char *name)
{
  size_t len = strlen(name);
  if (len < 1 || len > 64 || name[0] == '.')
    return false;
  for (const char *p = name; *p; p++) {
    if (!(isalnum((unsigned char)*p) || strchr("._-", *p)))
      return false;
  }
  return true;
}

/* Reads a list of names into OUT; each element is a plain string or, when
 * KEY is set, a mapping with that single field. CHECK validates a name and
 * WHAT describes a valid one in messages. */
int
read_name_list(struct yaml_reader *r, const yaml_node_t *v, const char *f,
               const char *key, bool (*check)(const char *), const char *what,
               struct strv *out)
{
  if (v->type != YAML_SEQUENCE_NODE)
    return node_error(r, v, f, "expected a list");
  size_t i = 0;
  for (yaml_node_item_t *item = v->data.sequence.items.start;
       item < v->data.sequence.items.top; item++, i++) {
    yaml_node_t *element = yaml_document_get_node(r->doc, *item);
    cleanup_free char *field = xasprintf("%s[%zu]", f, i);
    if (key && element->type == YAML_MAPPING_NODE
        && element->data.mapping.pairs.top - element->data.mapping.pairs.start
               == 1) {
      yaml_node_pair_t *pair = element->data.mapping.pairs.start;
      yaml_node_t *k = yaml_document_get_node(r->doc, pair->key);
      if (k->type != YAML_SCALAR_NODE || strcmp(scalar_text(k), key) != 0)
        return node_error(r, k, field, "expected the single field '%s'", key);
      element = yaml_document_get_node(r->doc, pair->value);
    }
    int ret = want_scalar(r, element, field);
    if (ret < 0)
      return ret;
    const char *name = scalar_text(element);
    if (!check(name))
      return node_error(r, element, field, "invalid name '%s': %s", name, what);
    for (size_t j = 0; j < out->len; j++) {
      if (strcmp(out->items[j], name) == 0)
        return node_error(r, element, field, "'%s' is listed twice", name);
    }
    if (strv_push(out, name) < 0)
      return node_error(r, element, field, "out of memory");
  }
  return 0;
}

static int
read_secrets(struct yaml_reader *r, const yaml_node_t *v, const char *f,
             void *t)
{
  flwd_job *job = t;
  return read_name_list(r, v, f, "name", secret_name_is_valid,
                        "use 1 to 64 letters, digits, '.', '_' or '-'",
                        &job->secrets);
}

static int
read_req_writable(struct yaml_reader *r, const yaml_node_t *v, const char *f,
                  void *t)
{
  flwd_job *job = t;
  return read_bool(r, v, f, &job->req_writable_rootfs);
}

static bool
capability_name_is_valid(const char *name)
{
  return capability_is_known(name);
}

static int
read_req_caps(struct yaml_reader *r, const yaml_node_t *v, const char *f,
              void *t)
{
  flwd_job *job = t;
  return read_name_list(r, v, f, NULL, capability_name_is_valid,
                        "use a Linux capability such as NET_BIND_SERVICE",
                        &job->req_caps);
}

static int
read_req_network(struct yaml_reader *r, const yaml_node_t *v, const char *f,
                 void *t)
{
  flwd_job *job = t;
  int ret = want_scalar(r, v, f);
  if (ret < 0)
    return ret;
  if (strcmp(scalar_text(v), "none") == 0)
    job->req_network_limited = false;
  else if (strcmp(scalar_text(v), "limited") == 0)
    job->req_network_limited = true;
  else
    return node_error(r, v, f, "unknown network '%s': use none or limited",
                      scalar_text(v));
  return 0;
}

static int
read_req_secrets_env(struct yaml_reader *r, const yaml_node_t *v, const char *f,
                     void *t)
{
  flwd_job *job = t;
  return read_name_list(r, v, f, NULL, secret_name_is_valid,
                        "name a secret of the job", &job->req_secrets_env);
}

static int
read_requests(struct yaml_reader *r, const yaml_node_t *v, const char *f,
              void *t)
{
  static const struct field fields[] = {
      {"writable_rootfs", read_req_writable, false},
      {"capabilities", read_req_caps, false},
      {"network", read_req_network, false},
      {"secrets_as_env", read_req_secrets_env, false},
  };
  r->requests_node = v;
  return walk_mapping(r, v, f, fields, ARRAY_SIZE(fields), t);
}

/* Checks what spans fields: relaxations belong to the permissive profile,
 * and only a declared secret can be given as an environment variable. */
static int
check_requests(struct yaml_reader *r, const flwd_job *job)
{
  bool relaxes = job->req_writable_rootfs || job->req_caps.len
                 || job->req_network_limited || job->req_secrets_env.len;
  if (relaxes && job->profile != PROFILE_PERMISSIVE)
    return node_error(r, r->requests_node, "requests",
                      "relaxations need 'profile: permissive' (the job's "
                      "profile is %s)",
                      profile_name(job->profile));
  for (size_t i = 0; i < job->req_secrets_env.len; i++) {
    bool declared = false;
    for (size_t j = 0; j < job->secrets.len; j++)
      declared
          |= strcmp(job->secrets.items[j], job->req_secrets_env.items[i]) == 0;
    if (!declared)
      return node_error(r, r->requests_node, "requests.secrets_as_env",
                        "'%s' is not listed under secrets",
                        job->req_secrets_env.items[i]);
  }
  return 0;
}

/* ---- args ------------------------------------------------------------- */

struct arg_target {
  struct arg_spec *arg;
  const yaml_node_t *type_node;
  const yaml_node_t *default_node;
  const yaml_node_t *values_node;
};

static int
read_arg_name(struct yaml_reader *r, const yaml_node_t *v, const char *f,
              void *t)
{
  struct arg_target *target = t;
  int ret = read_string(r, v, f, &target->arg->name);
  if (ret < 0)
    return ret;
  if (!arg_name_is_valid(target->arg->name))
    return node_error(r, v, f,
                      "invalid argument name '%s': use letters, digits, '_' "
                      "and '-', starting with a letter or '_'",
                      target->arg->name);
  return 0;
}

static int
read_arg_description(struct yaml_reader *r, const yaml_node_t *v, const char *f,
                     void *t)
{
  struct arg_target *target = t;
  return read_string(r, v, f, &target->arg->description);
}

static int
read_arg_type(struct yaml_reader *r, const yaml_node_t *v, const char *f,
              void *t)
{
  struct arg_target *target = t;
  int ret = want_scalar(r, v, f);
  if (ret < 0)
    return ret;
  for (int i = ARG_STRING; i <= ARG_LIST; i++) {
    if (strcmp(scalar_text(v), arg_type_name((arg_type)i)) == 0) {
      target->arg->type = (arg_type)i;
      target->type_node = v;
      return 0;
    }
  }
  return node_error(r, v, f,
                    "unknown type '%s': use string, integer, number, "
                    "boolean, enum or list",
                    scalar_text(v));
}

static int
read_arg_required(struct yaml_reader *r, const yaml_node_t *v, const char *f,
                  void *t)
{
  struct arg_target *target = t;
  return read_bool(r, v, f, &target->arg->required);
}

static int
read_arg_default(struct yaml_reader *r, const yaml_node_t *v, const char *f,
                 void *t)
{
  struct arg_target *target = t;
  target->default_node = v;
  return 0;
}

static int
read_arg_values(struct yaml_reader *r, const yaml_node_t *v, const char *f,
                void *t)
{
  struct arg_target *target = t;
  target->values_node = v;
  return 0;
}

static int
read_enum_values(struct yaml_reader *r, const yaml_node_t *v, const char *f,
                 struct arg_spec *arg)
{
  if (v->type != YAML_SEQUENCE_NODE
      || v->data.sequence.items.start == v->data.sequence.items.top)
    return node_error(r, v, f, "expected a non-empty list of values");
  arg->values = json_object_new_array();
  size_t i = 0;
  for (yaml_node_item_t *item = v->data.sequence.items.start;
       item < v->data.sequence.items.top; item++, i++) {
    yaml_node_t *element = yaml_document_get_node(r->doc, *item);
    cleanup_free char *field = xasprintf("%s[%zu]", f, i);
    int ret = want_scalar(r, element, field);
    if (ret < 0)
      return ret;
    json_object_array_add(arg->values,
                          json_object_new_string(scalar_text(element)));
  }
  arg->values_text = json_to_string_owned(arg->values, JSON_PLAIN);
  return 0;
}

/* Converts the YAML default of ARG to a JSON value by the same rules that
 * bind a command-line value, so that a default can never hold a value that
 * the argument itself would reject. */
static int
read_default_value(struct yaml_reader *r, const yaml_node_t *v, const char *f,
                   struct arg_spec *arg)
{
  flwd_error *bind_err = NULL;
  json_object *value = NULL;

  if (arg->type == ARG_LIST) {
    if (v->type != YAML_SEQUENCE_NODE)
      return node_error(r, v, f, "expected a list of strings");
    value = json_object_new_array();
    size_t i = 0;
    for (yaml_node_item_t *item = v->data.sequence.items.start;
         item < v->data.sequence.items.top; item++, i++) {
      yaml_node_t *element = yaml_document_get_node(r->doc, *item);
      cleanup_free char *field = xasprintf("%s[%zu]", f, i);
      int ret = want_scalar(r, element, field);
      if (ret < 0) {
        json_object_put(value);
        return ret;
      }
      json_object_array_add(value,
                            json_object_new_string(scalar_text(element)));
    }
  } else {
    int ret = want_scalar(r, v, f);
    if (ret < 0)
      return ret;
    if (arg_bind_text(arg, scalar_text(v), &value, &bind_err) < 0) {
      int ret2 = node_error(r, v, f, "invalid default: %s",
                            flwd_error_message(bind_err));
      flwd_error_free(bind_err);
      return ret2;
    }
  }
  arg->default_value = value;
  arg->default_text = json_to_string_owned(value, JSON_PLAIN);
  return 0;
}

static int
read_one_arg(struct yaml_reader *r, const yaml_node_t *v, const char *f,
             struct arg_spec *arg)
{
  static const struct field fields[] = {
      {"name", read_arg_name, true},
      {"type", read_arg_type, true},
      {"description", read_arg_description, false},
      {"required", read_arg_required, false},
      {"default", read_arg_default, false},
      {"values", read_arg_values, false},
  };
  struct arg_target target = {.arg = arg};
  int ret = walk_mapping(r, v, f, fields, ARRAY_SIZE(fields), &target);
  if (ret < 0)
    return ret;

  cleanup_free char *values_field = xasprintf("%s.values", f);
  if (arg->type == ARG_ENUM && target.values_node == NULL)
    return node_error(r, v, values_field, "an enum argument needs values");
  if (arg->type != ARG_ENUM && target.values_node != NULL)
    return node_error(r, target.values_node, values_field,
                      "only enum arguments take values");
  if (target.values_node) {
    ret = read_enum_values(r, target.values_node, values_field, arg);
    if (ret < 0)
      return ret;
  }

  if (target.default_node) {
    cleanup_free char *default_field = xasprintf("%s.default", f);
    if (arg->required)
      return node_error(r, target.default_node, default_field,
                        "a required argument cannot have a default");
    ret = read_default_value(r, target.default_node, default_field, arg);
    if (ret < 0)
      return ret;
  }
  return 0;
}

static int
read_args(struct yaml_reader *r, const yaml_node_t *v, const char *f, void *t)
{
  flwd_job *job = t;
  if (v->type != YAML_SEQUENCE_NODE)
    return node_error(r, v, f, "expected a list of arguments");

  size_t n
      = (size_t)(v->data.sequence.items.top - v->data.sequence.items.start);
  job->args = calloc(n ? n : 1, sizeof(*job->args));
  if (job->args == NULL)
    return node_error(r, v, f, "out of memory");

  for (size_t i = 0; i < n; i++) {
    yaml_node_t *element
        = yaml_document_get_node(r->doc, v->data.sequence.items.start[i]);
    cleanup_free char *field = xasprintf("%s[%zu]", f, i);
    job->n_args = i + 1;
    int ret = read_one_arg(r, element, field, &job->args[i]);
    if (ret < 0)
      return ret;
    /* '-' and '_' are one character on the command line and in the
     * FLWD_ARG_ variables, so names that differ only there clash. */
    cleanup_free char *env_i = arg_env_name(job->args[i].name);
    for (size_t j = 0; j < i; j++) {
      cleanup_free char *env_j = arg_env_name(job->args[j].name);
      if (env_i && env_j && strcmp(env_i, env_j) == 0)
        return node_error(r, element, field,
                          "argument '%s' clashes with '%s' declared before "
                          "it",
                          job->args[i].name, job->args[j].name);
    }
  }
  return 0;
}

/* ---- Entry points ----------------------------------------------------- */

static const struct field top_fields[] = {
    {"id", read_id, true},
    {"description", read_description, false},
    {"executor", read_executor, true},
    {"interpreter", read_interpreter, true},
    {"command", read_command, false},
    {"args", read_args, false},
    {"secrets", read_secrets, false},
    {"profile", read_profile, false},
    {"requests", read_requests, false},
    {"resources", read_resources, false},
    {"timeout", read_timeout, false},
    {"stop_timeout", read_stop_timeout, false},
    {"pull", read_pull, false},
};

/* Walks the events of DATA and fails at the first collection nested more
 * than MAX_NESTING deep. libyaml's document loader slows down by the
 * square of the nesting depth, so a small hostile file could otherwise
 * keep flwd busy for minutes; no spec or policy needs such depth. A
 * syntax error is left to the loader, which reports it with its context. */
static int
check_nesting(const char *name, const char *what, const char *data, size_t len,
              flwd_code code, flwd_error **err)
{
  yaml_parser_t parser;
  if (!yaml_parser_initialize(&parser))
    return set_error(err, FLWD_E_INTERNAL, "%s: cannot create a YAML parser",
                     name);
  yaml_parser_set_input_string(&parser, (const unsigned char *)data, len);

  int depth = 0, ret = 0;
  for (;;) {
    yaml_event_t event;
    if (!yaml_parser_parse(&parser, &event))
      break;
    yaml_event_type_t type = event.type;
    if (type == YAML_SEQUENCE_START_EVENT || type == YAML_MAPPING_START_EVENT)
      depth++;
    if (type == YAML_SEQUENCE_END_EVENT || type == YAML_MAPPING_END_EVENT)
      depth--;
    if (depth > MAX_NESTING)
      ret = set_error(err, code, "%s:%zu:%zu: %s: nested deeper than %d levels",
                      name, event.start_mark.line + 1,
                      event.start_mark.column + 1, what, MAX_NESTING);
    yaml_event_delete(&event);
    if (ret < 0 || type == YAML_STREAM_END_EVENT)
      break;
  }
  yaml_parser_delete(&parser);
  return ret;
}

int
parse_document(const char *name, const char *what, const char *data, size_t len,
               yaml_document_t *doc, flwd_code code, flwd_error **err)
{
  int nesting = check_nesting(name, what, data, len, code, err);
  if (nesting < 0)
    return nesting;

  yaml_parser_t parser;
  if (!yaml_parser_initialize(&parser))
    return set_error(err, FLWD_E_INTERNAL, "%s: cannot create a YAML parser",
                     name);
  yaml_parser_set_input_string(&parser, (const unsigned char *)data, len);

  int ret = 0;
  if (!yaml_parser_load(&parser, doc)) {
    ret = set_error(
        err, code, "%s:%zu:%zu: %s: %s%s%s", name, parser.problem_mark.line + 1,
        parser.problem_mark.column + 1, what,
        parser.problem ? parser.problem : "invalid YAML",
        parser.context ? " " : "", parser.context ? parser.context : "");
  } else if (yaml_document_get_root_node(doc) == NULL) {
    yaml_document_delete(doc);
    ret = set_error(err, code, "%s:1:1: %s: the file is empty", name, what);
  }
  yaml_parser_delete(&parser);
  return ret;
}

int
flwd_job_load_buffer(flwd_ctx *ctx, const char *name, const char *data,
                     size_t len, flwd_job **out, flwd_error **err)
{
  if (len > SPEC_MAX_BYTES)
    return set_error(err, FLWD_E_SPEC_INVALID,
                     "%s:1:1: spec: the file is larger than %d bytes", name,
                     SPEC_MAX_BYTES);

  yaml_document_t document;
  int ret = parse_document(name, "spec", data, len, &document,
                           FLWD_E_SPEC_INVALID, err);
  if (ret < 0)
    return ret;
  __attribute__((cleanup(cleanup_documentp))) yaml_document_t *doc = &document;

  flwd_job *job = calloc(1, sizeof(*job));
  if (job == NULL)
    return set_error(err, FLWD_E_INTERNAL, "out of memory");
  job->refcount = 1;
  job->stop_timeout_ms = 10000;
  job->path = strdup(name);
  strv_init(&job->command);
  strv_init(&job->secrets);
  strv_init(&job->req_caps);
  strv_init(&job->req_secrets_env);

  struct yaml_reader reader
      = {.file = name, .doc = doc, .err = err, .code = FLWD_E_SPEC_INVALID};
  ret = walk_mapping(&reader, yaml_document_get_root_node(doc), "", top_fields,
                     ARRAY_SIZE(top_fields), job);
  if (ret == 0)
    ret = check_requests(&reader, job);
  if (ret < 0) {
    flwd_job_free(job);
    return ret;
  }
  *out = job;
  (void)ctx;
  return 0;
}

int
read_small_file(const char *path, const char *what, size_t max, struct buf *out,
                flwd_code code, flwd_error **err)
{
  FILE *f = fopen(path, "re");
  if (f == NULL)
    return set_error_errno(err, code, errno, "cannot open '%s'", path);
  char chunk[8192];
  size_t n;
  bool too_large = false;
  while (!too_large && (n = fread(chunk, 1, sizeof(chunk), f)) > 0) {
    too_large = out->len + n > max;
    if (!too_large && buf_append(out, chunk, n) < 0)
      break;
  }
  int read_failed = ferror(f);
  fclose(f);
  if (too_large)
    return set_error(err, code,
                     "%s:1:1: %s: the file is larger than %zu "
                     "bytes",
                     path, what, max);
  if (read_failed)
    return set_error(err, code, "cannot read '%s'", path);
  return 0;
}

int
flwd_job_load(flwd_ctx *ctx, const char *path, flwd_job **out, flwd_error **err)
{
  struct buf data = {0};
  flwd_code code = access(path, F_OK) < 0 && errno == ENOENT
                       ? FLWD_E_JOB_NOT_FOUND
                       : FLWD_E_SPEC_INVALID;
  int ret = read_small_file(path, "spec", SPEC_MAX_BYTES, &data, code, err);
  if (ret == 0)
    ret = flwd_job_load_buffer(ctx, path, data.data ? data.data : "", data.len,
                               out, err);
  buf_clear(&data);
  return ret;
}

flwd_job *
job_ref(flwd_job *job)
{
  job->refcount++;
  return job;
}

void
flwd_job_free(flwd_job *job)
{
  if (job == NULL || --job->refcount > 0)
    return;
  for (size_t i = 0; i < job->n_args; i++) {
    struct arg_spec *arg = &job->args[i];
    free(arg->name);
    free(arg->description);
    free(arg->default_text);
    free(arg->values_text);
    if (arg->default_value)
      json_object_put(arg->default_value);
    if (arg->values)
      json_object_put(arg->values);
  }
  free(job->args);
  strv_clear(&job->command);
  strv_clear(&job->secrets);
  strv_clear(&job->req_caps);
  strv_clear(&job->req_secrets_env);
  free(job->path);
  free(job->id);
  free(job->description);
  free(job->image);
  free(job);
}

const char *
arg_type_name(arg_type type)
{
  switch (type) {
    case ARG_STRING:
      return "string";
    case ARG_INTEGER:
      return "integer";
    case ARG_NUMBER:
      return "number";
    case ARG_BOOLEAN:
      return "boolean";
    case ARG_ENUM:
      return "enum";
    case ARG_LIST:
      return "list";
  }
  return "string";
}

const char *
profile_name(profile_kind kind)
{
  switch (kind) {
    case PROFILE_SECURE:
      return "secure";
    case PROFILE_PERMISSIVE:
      return "permissive";
    case PROFILE_DISABLED:
      return "disabled";
  }
  return "secure";
}

int
pull_policy_parse(const char *s, pull_policy *out)
{
  if (strcmp(s, "missing") == 0)
    *out = PULL_MISSING;
  else if (strcmp(s, "always") == 0)
    *out = PULL_ALWAYS;
  else if (strcmp(s, "never") == 0)
    *out = PULL_NEVER;
  else
    return -1;
  return 0;
}

const char *
pull_policy_name(pull_policy policy)
{
  switch (policy) {
    case PULL_MISSING:
      return "missing";
    case PULL_ALWAYS:
      return "always";
    case PULL_NEVER:
      return "never";
  }
  return "missing";
}

/* ---- Accessors -------------------------------------------------------- */

const char *
flwd_job_id(const flwd_job *job)
{
  return job->id;
}

const char *
flwd_job_description(const flwd_job *job)
{
  return job->description;
}

const char *
flwd_job_image(const flwd_job *job)
{
  return job->image;
}

const char *
flwd_job_path(const flwd_job *job)
{
  return job->path;
}

size_t
flwd_job_arg_count(const flwd_job *job)
{
  return job->n_args;
}

static const struct arg_spec *
arg_at(const flwd_job *job, size_t i)
{
  return i < job->n_args ? &job->args[i] : NULL;
}

const char *
flwd_job_arg_name(const flwd_job *job, size_t i)
{
  const struct arg_spec *arg = arg_at(job, i);
  return arg ? arg->name : NULL;
}

const char *
flwd_job_arg_type(const flwd_job *job, size_t i)
{
  const struct arg_spec *arg = arg_at(job, i);
  return arg ? arg_type_name(arg->type) : NULL;
}

int
flwd_job_arg_required(const flwd_job *job, size_t i)
{
  const struct arg_spec *arg = arg_at(job, i);
  return arg ? arg->required : 0;
}

const char *
flwd_job_arg_description(const flwd_job *job, size_t i)
{
  const struct arg_spec *arg = arg_at(job, i);
  return arg ? arg->description : NULL;
}

const char *
flwd_job_arg_default(const flwd_job *job, size_t i)
{
  const struct arg_spec *arg = arg_at(job, i);
  return arg ? arg->default_text : NULL;
}

const char *
flwd_job_arg_values(const flwd_job *job, size_t i)
{
  const struct arg_spec *arg = arg_at(job, i);
  return arg ? arg->values_text : NULL;
}

char *
flwd_job_to_json(const flwd_job *job)
{
  cleanup_json json_object *obj = json_object_new_object();
  json_object_object_add(obj, "id", json_object_new_string(job->id));
  json_object_object_add(
      obj, "description",
      job->description ? json_object_new_string(job->description) : NULL);
  json_object_object_add(obj, "image", json_object_new_string(job->image));
  json_object_object_add(obj, "profile",
                         json_object_new_string(profile_name(job->profile)));

  json_object *args = json_object_new_array();
  for (size_t i = 0; i < job->n_args; i++) {
    const struct arg_spec *arg = &job->args[i];
    json_object *a = json_object_new_object();
    json_object_object_add(a, "name", json_object_new_string(arg->name));
    json_object_object_add(a, "type",
                           json_object_new_string(arg_type_name(arg->type)));
    json_object_object_add(a, "required",
                           json_object_new_boolean(arg->required));
    if (arg->description)
      json_object_object_add(a, "description",
                             json_object_new_string(arg->description));
    if (arg->default_value)
      json_object_object_add(a, "default", json_object_get(arg->default_value));
    if (arg->values)
      json_object_object_add(a, "values", json_object_get(arg->values));
    json_object_array_add(args, a);
  }
  json_object_object_add(obj, "args", args);
  return json_to_string_owned(obj, JSON_PLAIN);
}
