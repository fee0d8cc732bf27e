/* libflwd: the policy file and the decisions it makes.
 *
 * The secure profile needs no permission. Everything else a job requests,
 * another profile or a relaxation of the secure baseline, is denied unless
 * a rule whose jobs match the job's id allows it. Each request gets one
 * decision, recorded with the rule that granted it, or with the rule that
 * would have to exist.
 */
#include <errno.h>
#include <fnmatch.h>
#include <string.h>

#include "yaml-reader.h"

#define POLICY_MAX_BYTES (1024 * 1024)

/* Linux capabilities by their names without CAP_, as of Linux 6.x. */
static const char *const capability_names[] = {
    "AUDIT_CONTROL",   "AUDIT_READ",   "AUDIT_WRITE",
    "BLOCK_SUSPEND",   "BPF",          "CHECKPOINT_RESTORE",
    "CHOWN",           "DAC_OVERRIDE", "DAC_READ_SEARCH",
    "FOWNER",          "FSETID",       "IPC_LOCK",
    "IPC_OWNER",       "KILL",         "LEASE",
    "LINUX_IMMUTABLE", "MAC_ADMIN",    "MAC_OVERRIDE",
    "MKNOD",           "NET_ADMIN",    "NET_BIND_SERVICE",
    "NET_BROADCAST",   "NET_RAW",      "PERFMON",
    "SETFCAP",         "SETGID",       "SETPCAP",
    "SETUID",          "SYSLOG",       "SYS_ADMIN",
    "SYS_BOOT",        "SYS_CHROOT",   "SYS_MODULE",
    "SYS_NICE",        "SYS_PACCT",    "SYS_PTRACE",
    "SYS_RAWIO",       "SYS_RESOURCE", "SYS_TIME",
    "SYS_TTY_CONFIG",  "WAKE_ALARM",
};

bool
capability_is_known(const char *name)
{
  for (size_t i = 0; i < ARRAY_SIZE(capability_names); i++) {
    if (strcmp(capability_names[i], name) == 0)
      return true;
  }
  return false;
}

struct policy_rule {
  unsigned long line;
  struct strv jobs;
  bool profile_permissive;
  bool profile_disabled;
  bool writable_rootfs;
  struct strv caps;
  bool network_limited;
  struct strv secrets_env; /* "*" allows every secret */
  long long max_memory;    /* 0: no more than the default */
  long long max_pids;
};

struct policy {
  char *path;
  struct policy_rule *rules;
  size_t n_rules;
};

void
policy_free(struct policy *policy)
{
  if (policy == NULL)
    return;
  for (size_t i = 0; i < policy->n_rules; i++) {
    strv_clear(&policy->rules[i].jobs);
    strv_clear(&policy->rules[i].caps);
    strv_clear(&policy->rules[i].secrets_env);
  }
  free(policy->rules);
  free(policy->path);
  free(policy);
}

/* ---- Reading ---------------------------------------------------------- */

static bool
any_text(const char *s)
{
  return *s != '\0';
}

static bool
profile_is_named(const char *s)
{
  return strcmp(s, "permissive") == 0 || strcmp(s, "disabled") == 0
         || strcmp(s, "secure") == 0;
}

static bool
secret_or_star(const char *s)
{
  return *s != '\0' && strlen(s) <= 64;
}

static int
read_jobs(struct yaml_reader *r, const yaml_node_t *v, const char *f, void *t)
{
  struct policy_rule *rule = t;
  return read_name_list(r, v, f, NULL, any_text,
                        "use a job id or a glob such as 'report-*'",
                        &rule->jobs);
}

static int
read_profiles(struct yaml_reader *r, const yaml_node_t *v, const char *f,
              void *t)
{
  struct policy_rule *rule = t;
  cleanup_strv struct strv names;
  strv_init(&names);
  int ret = read_name_list(r, v, f, NULL, profile_is_named,
                           "use permissive or disabled", &names);
  for (size_t i = 0; ret == 0 && i < names.len; i++) {
    rule->profile_permissive |= strcmp(names.items[i], "permissive") == 0;
    rule->profile_disabled |= strcmp(names.items[i], "disabled") == 0;
  }
  return ret;
}

static int
read_allow_writable(struct yaml_reader *r, const yaml_node_t *v, const char *f,
                    void *t)
{
  struct policy_rule *rule = t;
  return read_bool(r, v, f, &rule->writable_rootfs);
}

static int
read_allow_caps(struct yaml_reader *r, const yaml_node_t *v, const char *f,
                void *t)
{
  struct policy_rule *rule = t;
  return read_name_list(r, v, f, NULL, capability_is_known,
                        "use a Linux capability such as NET_BIND_SERVICE",
                        &rule->caps);
}

static int
read_allow_network(struct yaml_reader *r, const yaml_node_t *v, const char *f,
                   void *t)
{
  struct policy_rule *rule = t;
  int ret = want_scalar(r, v, f);
  if (ret < 0)
    return ret;
  if (strcmp(scalar_text(v), "limited") == 0)
    rule->network_limited = true;
  else if (strcmp(scalar_text(v), "none") != 0)
    return node_error(r, v, f, "unknown network '%s': use none or limited",
                      scalar_text(v));
  return 0;
}

static int
read_allow_secrets(struct yaml_reader *r, const yaml_node_t *v, const char *f,
                   void *t)
{
  struct policy_rule *rule = t;
  return read_name_list(r, v, f, NULL, secret_or_star,
                        "name a secret, or '*' for all", &rule->secrets_env);
}

static int
read_limit_memory(struct yaml_reader *r, const yaml_node_t *v, const char *f,
                  void *t)
{
  struct policy_rule *rule = t;
  int ret = want_scalar(r, v, f);
  if (ret < 0)
    return ret;
  if (parse_size_bytes(scalar_text(v), &rule->max_memory) < 0)
    return node_error(r, v, f,
                      "invalid memory size '%s': use a number with an "
                      "optional unit Ki, Mi, Gi, k, M or G",
                      scalar_text(v));
  return 0;
}

static int
read_limit_pids(struct yaml_reader *r, const yaml_node_t *v, const char *f,
                void *t)
{
  struct policy_rule *rule = t;
  int ret = want_scalar(r, v, f);
  if (ret < 0)
    return ret;
  char *end = NULL;
  errno = 0;
  rule->max_pids = strtoll(scalar_text(v), &end, 10);
  if (errno || end == scalar_text(v) || *end || rule->max_pids < 1)
    return node_error(r, v, f,
                      "invalid pids limit '%s': use a whole "
                      "number of at least 1",
                      scalar_text(v));
  return 0;
}

static int
read_allow_resources(struct yaml_reader *r, const yaml_node_t *v, const char *f,
                     void *t)
{
  static const struct field fields[] = {
      {"memory", read_limit_memory, false},
      {"pids", read_limit_pids, false},
  };
  return walk_mapping(r, v, f, fields, ARRAY_SIZE(fields), t);
}

static int
read_allow(struct yaml_reader *r, const yaml_node_t *v, const char *f, void *t)
{
  static const struct field fields[] = {
      {"writable_rootfs", read_allow_writable, false},
      {"capabilities", read_allow_caps, false},
      {"network", read_allow_network, false},
      {"secrets_as_env", read_allow_secrets, false},
      {"resources", read_allow_resources, false},
  };
  return walk_mapping(r, v, f, fields, ARRAY_SIZE(fields), t);
}

static int
read_rules(struct yaml_reader *r, const yaml_node_t *v, const char *f, void *t)
{
  static const struct field fields[] = {
      {"jobs", read_jobs, true},
      {"profiles", read_profiles, false},
      {"allow", read_allow, false},
  };
  struct policy *policy = t;
  if (v->type != YAML_SEQUENCE_NODE)
    return node_error(r, v, f, "expected a list of rules");
  size_t n
      = (size_t)(v->data.sequence.items.top - v->data.sequence.items.start);
  policy->rules = calloc(n ? n : 1, sizeof(*policy->rules));
  if (policy->rules == NULL)
    return node_error(r, v, f, "out of memory");

  for (size_t i = 0; i < n; i++) {
    yaml_node_t *element
        = yaml_document_get_node(r->doc, v->data.sequence.items.start[i]);
    struct policy_rule *rule = &policy->rules[i];
    strv_init(&rule->jobs);
    strv_init(&rule->caps);
    strv_init(&rule->secrets_env);
    rule->line = element->start_mark.line + 1;
    policy->n_rules = i + 1;
    cleanup_free char *field = xasprintf("%s[%zu]", f, i);
    int ret = walk_mapping(r, element, field, fields, ARRAY_SIZE(fields), rule);
    if (ret < 0)
      return ret;
  }
  return 0;
}

static int
read_version(struct yaml_reader *r, const yaml_node_t *v, const char *f,
             void *t)
{
  int ret = want_scalar(r, v, f);
  if (ret == 0 && strcmp(scalar_text(v), "1") != 0)
    return node_error(r, v, f, "unsupported version '%s': use 1",
                      scalar_text(v));
  return ret;
}

int
policy_load(const char *path, struct policy **out, flwd_error **err)
{
  struct buf data = {0};
  int ret = read_small_file(path, "policy", POLICY_MAX_BYTES, &data,
                            FLWD_E_CONFIG_INVALID, err);
  yaml_document_t document;
  if (ret == 0)
    ret = parse_document(path, "policy", data.data ? data.data : "", data.len,
                         &document, FLWD_E_CONFIG_INVALID, err);
  buf_clear(&data);
  if (ret < 0)
    return ret;
  __attribute__((cleanup(cleanup_documentp))) yaml_document_t *doc = &document;

  struct policy *policy = calloc(1, sizeof(*policy));
  if (policy == NULL || (policy->path = strdup(path)) == NULL) {
    free(policy);
    return set_error(err, FLWD_E_INTERNAL, "out of memory");
  }
  static const struct field fields[] = {
      {"version", read_version, false},
      {"rules", read_rules, true},
  };
  struct yaml_reader reader
      = {.file = path, .doc = doc, .err = err, .code = FLWD_E_CONFIG_INVALID};
  ret = walk_mapping(&reader, yaml_document_get_root_node(doc), "", fields,
                     ARRAY_SIZE(fields), policy);
  if (ret < 0) {
    policy_free(policy);
    return ret;
  }
  *out = policy;
  return 0;
}

int
flwd_policy_validate(flwd_ctx *ctx, const char *path, flwd_error **err)
{
  struct policy *policy = NULL;
  int ret = policy_load(path, &policy, err);
  policy_free(policy);
  return ret;
}

/* ---- Decisions -------------------------------------------------------- */

static bool
rule_matches(const struct policy_rule *rule, const char *job_id)
{
  for (size_t i = 0; i < rule->jobs.len; i++) {
    if (fnmatch(rule->jobs.items[i], job_id, 0) == 0)
      return true;
  }
  return false;
}

static bool
list_has(const struct strv *list, const char *item, bool star)
{
  for (size_t i = 0; i < list->len; i++) {
    if (strcmp(list->items[i], item) == 0
        || (star && strcmp(list->items[i], "*") == 0))
      return true;
  }
  return false;
}

typedef bool (*rule_allows_fn)(const struct policy_rule *rule, const char *item,
                               long long amount);

static bool
allows_permissive(const struct policy_rule *rule, const char *item,
                  long long amount)
{
  return rule->profile_permissive;
}

static bool
allows_disabled(const struct policy_rule *rule, const char *item,
                long long amount)
{
  return rule->profile_disabled;
}

static bool
allows_writable(const struct policy_rule *rule, const char *item,
                long long amount)
{
  return rule->writable_rootfs;
}

static bool
allows_cap(const struct policy_rule *rule, const char *item, long long amount)
{
  return list_has(&rule->caps, item, false);
}

static bool
allows_network(const struct policy_rule *rule, const char *item,
               long long amount)
{
  return rule->network_limited;
}

static bool
allows_secret_env(const struct policy_rule *rule, const char *item,
                  long long amount)
{
  return list_has(&rule->secrets_env, item, true);
}

static bool
allows_memory(const struct policy_rule *rule, const char *item,
              long long amount)
{
  return rule->max_memory >= amount;
}

static bool
allows_pids(const struct policy_rule *rule, const char *item, long long amount)
{
  return rule->max_pids >= amount;
}

struct decider {
  const struct policy *policy;
  const flwd_job *job;
  struct plan *plan;
};

/* Decides one request: granted by the first matching rule that allows it.
 * REQUEST names it in events, MISSING names the rule that would allow it. */
static bool
decide(struct decider *d, const char *request, rule_allows_fn allows,
       const char *item, long long amount, const char *missing)
{
  const struct policy_rule *granted_by = NULL;
  for (size_t i = 0; d->policy && i < d->policy->n_rules && !granted_by; i++) {
    const struct policy_rule *rule = &d->policy->rules[i];
    if (rule_matches(rule, d->job->id) && allows(rule, item, amount))
      granted_by = rule;
  }

  json_object *decision = json_object_new_object();
  json_object_object_add(decision, "job", json_object_new_string(d->job->id));
  json_object_object_add(decision, "request", json_object_new_string(request));
  json_object_object_add(decision, "granted",
                         json_object_new_boolean(granted_by != NULL));
  cleanup_free char *rule
      = granted_by ? xasprintf("%s:%lu", d->policy->path, granted_by->line)
                   : NULL;
  json_object_object_add(decision, "rule",
                         rule ? json_object_new_string(rule) : NULL);
  if (granted_by == NULL) {
    cleanup_free char *needed = xasprintf(
        "a rule in %s whose jobs match '%s' with %s",
        d->policy ? d->policy->path : "a policy file (none is configured)",
        d->job->id, missing);
    json_object_object_add(decision, "missing",
                           json_object_new_string(needed ? needed : ""));
    if (d->plan->denial == NULL)
      d->plan->denial = xasprintf("job '%s' requests %s, which the policy "
                                  "does not allow; it needs %s",
                                  d->job->id, request, needed ? needed : "");
  }
  json_object_array_add(d->plan->decisions, decision);
  return granted_by != NULL;
}

static void
decide_relaxations(struct decider *d)
{
  const flwd_job *job = d->job;
  struct plan *plan = d->plan;
  if (job->req_writable_rootfs)
    plan->writable_rootfs = decide(d, "writable_rootfs", allows_writable, NULL,
                                   0, "allow.writable_rootfs: true");
  for (size_t i = 0; i < job->req_caps.len; i++) {
    const char *cap = job->req_caps.items[i];
    cleanup_free char *request = xasprintf("capability:%s", cap);
    cleanup_free char *missing = xasprintf("%s in allow.capabilities", cap);
    if (decide(d, request, allows_cap, cap, 0, missing))
      strv_push(&plan->caps_add, cap);
  }
  if (job->req_network_limited)
    plan->network_limited = decide(d, "network:limited", allows_network, NULL,
                                   0, "allow.network: limited");
  for (size_t i = 0; i < job->req_secrets_env.len; i++) {
    const char *name = job->req_secrets_env.items[i];
    cleanup_free char *request = xasprintf("secret_as_env:%s", name);
    cleanup_free char *missing = xasprintf("%s in allow.secrets_as_env", name);
    if (decide(d, request, allows_secret_env, name, 0, missing))
      strv_push(&plan->secrets_env, name);
  }
}

void
policy_decide(const struct policy *policy, const flwd_job *job,
              struct plan *plan, long long default_memory,
              long long default_pids)
{
  struct decider d = {.policy = policy, .job = job, .plan = plan};
  switch (job->profile) {
    case PROFILE_SECURE:
      break;
    case PROFILE_PERMISSIVE:
      decide(&d, "profile:permissive", allows_permissive, NULL, 0,
             "permissive in profiles");
      decide_relaxations(&d);
      break;
    case PROFILE_DISABLED:
      decide(&d, "profile:disabled", allows_disabled, NULL, 0,
             "disabled in profiles");
      break;
  }
  if (job->memory_bytes > default_memory) {
    cleanup_free char *missing = xasprintf(
        "allow.resources.memory of at least %lld bytes", job->memory_bytes);
    decide(&d, "resources.memory", allows_memory, NULL, job->memory_bytes,
           missing);
  }
  if (job->pids > default_pids) {
    cleanup_free char *missing
        = xasprintf("allow.resources.pids of at least %lld", job->pids);
    decide(&d, "resources.pids", allows_pids, NULL, job->pids, missing);
  }
}
