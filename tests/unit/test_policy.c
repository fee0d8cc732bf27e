/* Unit tests of policy files and the decisions they make. */
#include <stdio.h>
#include <string.h>

#include "unit.h"

static char *
write_policy(const char *text)
{
  char *path = strdup("/tmp/flwd-unit-policy-XXXXXX");
  int fd = mkstemp(path);
  ck_assert_int_ge(fd, 0);
  ck_assert_int_eq(write(fd, text, strlen(text)), (ssize_t)strlen(text));
  close(fd);
  return path;
}

static const char policy_text[] = "rules:\n"
                                  "  - jobs: [\"rep-*\"]\n"
                                  "    profiles: [permissive]\n"
                                  "    allow:\n"
                                  "      capabilities: [NET_BIND_SERVICE]\n"
                                  "      network: limited\n"
                                  "      secrets_as_env: [\"*\"]\n"
                                  "      resources: {memory: 2Gi}\n";

static const char job_text[] = "id: rep-daily\n"
                               "executor: container\n"
                               "interpreter: \"container:img\"\n"
                               "profile: permissive\n"
                               "secrets: [tok]\n"
                               "resources: {memory: 2Gi, pids: 300}\n"
                               "requests:\n"
                               "  capabilities: [NET_BIND_SERVICE, NET_ADMIN]\n"
                               "  network: limited\n"
                               "  secrets_as_env: [tok]\n";

static const char *
decision_rule(json_object *decisions, const char *request, bool *granted)
{
  size_t n = json_object_array_length(decisions);
  for (size_t i = 0; i < n; i++) {
    json_object *d = json_object_array_get_idx(decisions, i);
    json_object *req = NULL, *ok = NULL, *rule = NULL;
    json_object_object_get_ex(d, "request", &req);
    if (strcmp(json_object_get_string(req), request) != 0)
      continue;
    json_object_object_get_ex(d, "granted", &ok);
    json_object_object_get_ex(d, "rule", &rule);
    *granted = json_object_get_boolean(ok);
    return rule ? json_object_get_string(rule) : "";
  }
  ck_abort_msg("no decision for %s", request);
  return NULL;
}

START_TEST(policy_decisions_per_request)
{
  char *path = write_policy(policy_text);
  struct policy *policy = NULL;
  ck_assert_int_eq(policy_load(path, &policy, NULL), 0);
  flwd_job *job = load_spec(job_text);
  struct plan plan = {0};
  plan.decisions = json_object_new_array();
  strv_init(&plan.caps_add);
  strv_init(&plan.secrets_env);
  policy_decide(policy, job, &plan, 1024LL * 1024 * 1024, 256);

  bool granted;
  char *rule = xasprintf("%s:2", path);
  ck_assert_str_eq(
      decision_rule(plan.decisions, "profile:permissive", &granted), rule);
  ck_assert(granted);
  decision_rule(plan.decisions, "capability:NET_BIND_SERVICE", &granted);
  ck_assert(granted);
  decision_rule(plan.decisions, "capability:NET_ADMIN", &granted);
  ck_assert(!granted);
  decision_rule(plan.decisions, "network:limited", &granted);
  ck_assert(granted);
  decision_rule(plan.decisions, "secret_as_env:tok", &granted);
  ck_assert(granted);
  decision_rule(plan.decisions, "resources.memory", &granted);
  ck_assert(granted);
  decision_rule(plan.decisions, "resources.pids", &granted);
  ck_assert(!granted);

  ck_assert_uint_eq(plan.caps_add.len, 1);
  ck_assert(plan.network_limited);
  ck_assert_ptr_nonnull(plan.denial);
  ck_assert_ptr_nonnull(strstr(plan.denial, "capability:NET_ADMIN"));
  ck_assert_ptr_nonnull(strstr(plan.denial, "NET_ADMIN in "
                                            "allow.capabilities"));

  free(rule);
  free(plan.denial);
  json_object_put(plan.decisions);
  strv_clear(&plan.caps_add);
  strv_clear(&plan.secrets_env);
  flwd_job_free(job);
  policy_free(policy);
  unlink(path);
  free(path);
}
END_TEST

START_TEST(policy_none_denies_permissive)
{
  flwd_job *job = load_spec(job_text);
  struct plan plan = {0};
  plan.decisions = json_object_new_array();
  strv_init(&plan.caps_add);
  strv_init(&plan.secrets_env);
  policy_decide(NULL, job, &plan, 1024LL * 1024 * 1024, 256);
  ck_assert_ptr_nonnull(plan.denial);
  ck_assert_ptr_nonnull(strstr(plan.denial, "none is configured"));
  ck_assert_uint_eq(plan.caps_add.len, 0);
  free(plan.denial);
  json_object_put(plan.decisions);
  strv_clear(&plan.caps_add);
  strv_clear(&plan.secrets_env);
  flwd_job_free(job);
}
END_TEST

static const struct {
  const char *text;
  const char *expected;
} bad_policies[] = {
    {"", ":1:1: policy: the file is empty"},
    {"rules: x\n", ":1:8: rules: expected a list of rules"},
    {"rules:\n  - jobs: [a]\n    colour: red\n", ":3:5: rules[0].colour: "
                                                 "unknown field"},
    {"rules:\n  - profiles: [permissive]\n", "rules[0].jobs: missing required "
                                             "field"},
    {"rules:\n  - jobs: [a]\n    profiles: [open]\n",
     "rules[0].profiles[0]: invalid name 'open'"},
    {"rules:\n  - jobs: [a]\n    allow: {capabilities: [FLY]}\n",
     "allow.capabilities[0]: invalid name 'FLY'"},
    {"rules:\n  - jobs: [a]\n    allow: {resources: {memory: lots}}\n",
     "allow.resources.memory: invalid memory size 'lots'"},
    {"version: 2\nrules: []\n", "version: unsupported version '2'"},
};

START_TEST(policy_bad_file_rejected)
{
  char *path = write_policy(bad_policies[_i].text);
  struct policy *policy = NULL;
  flwd_error *err = NULL;
  ck_assert_int_eq(policy_load(path, &policy, &err), -FLWD_E_CONFIG_INVALID);
  ck_assert_msg(strstr(flwd_error_message(err), bad_policies[_i].expected)
                    != NULL,
                "case %d: expected '%s' in '%s'", _i, bad_policies[_i].expected,
                flwd_error_message(err));
  ck_assert_msg(strncmp(flwd_error_message(err), path, strlen(path)) == 0,
                "case %d: message does not start with the file", _i);
  flwd_error_free(err);
  unlink(path);
  free(path);
}
END_TEST

Suite *
policy_suite(void)
{
  Suite *s = suite_create("policy");
  TCase *tc = tcase_create("decide");
  tcase_add_test(tc, policy_decisions_per_request);
  tcase_add_test(tc, policy_none_denies_permissive);
  tcase_add_loop_test(tc, policy_bad_file_rejected, 0,
                      (int)(sizeof(bad_policies) / sizeof(bad_policies[0])));
  suite_add_tcase(s, tc);
  return s;
}
