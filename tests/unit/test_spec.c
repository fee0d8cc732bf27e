/* Unit tests of spec loading and validation. */
#include <string.h>

#include "unit.h"

#define HEAD                                                                   \
  "id: demo\n"                                                                 \
  "executor: container\n"                                                      \
  "interpreter: \"container:localhost/img:1\"\n"

START_TEST(spec_minimal_loads)
{
  flwd_job *job = load_spec(HEAD);
  ck_assert_str_eq(flwd_job_id(job), "demo");
  ck_assert_str_eq(flwd_job_image(job), "localhost/img:1");
  ck_assert_ptr_null(flwd_job_description(job));
  ck_assert_uint_eq(flwd_job_arg_count(job), 0);
  ck_assert_int_eq(job->profile, PROFILE_SECURE);
  ck_assert_int_eq(job->stop_timeout_ms, 10000);
  ck_assert(!job->has_command);
  flwd_job_free(job);
}
END_TEST

START_TEST(spec_full_loads)
{
  flwd_job *job
      = load_spec(HEAD "description: Greets.\n"
                       "command: [\"sh\", \"-c\", \"echo ${args.name}\"]\n"
                       "args:\n"
                       "  - name: name\n"
                       "    type: string\n"
                       "    required: true\n"
                       "  - name: times\n"
                       "    type: integer\n"
                       "    default: 3\n"
                       "  - name: mode\n"
                       "    type: enum\n"
                       "    values: [fast, slow]\n"
                       "    default: slow\n"
                       "  - name: tags\n"
                       "    type: list\n"
                       "    default: [a, b]\n"
                       "profile: secure\n"
                       "resources:\n"
                       "  memory: 256Mi\n"
                       "  cpus: 1.5\n"
                       "  pids: 64\n"
                       "timeout: 10m\n"
                       "stop_timeout: 2s\n"
                       "pull: never\n"
                       "secrets: []\n"
                       "requests:\n"
                       "  writable_rootfs: false\n"
                       "  network: none\n"
                       "  capabilities: []\n");
  ck_assert_str_eq(flwd_job_description(job), "Greets.");
  ck_assert_uint_eq(job->command.len, 3);
  ck_assert_str_eq(job->command.items[2], "echo ${args.name}");
  ck_assert_uint_eq(flwd_job_arg_count(job), 4);
  ck_assert_int_eq(flwd_job_arg_required(job, 0), 1);
  ck_assert_str_eq(flwd_job_arg_default(job, 1), "3");
  ck_assert_str_eq(flwd_job_arg_values(job, 2), "[\"fast\",\"slow\"]");
  ck_assert_str_eq(flwd_job_arg_default(job, 3), "[\"a\",\"b\"]");
  ck_assert_int_eq(job->memory_bytes, 256LL * 1024 * 1024);
  ck_assert(job->cpus > 1.49 && job->cpus < 1.51);
  ck_assert_int_eq(job->pids, 64);
  ck_assert_int_eq(job->timeout_ms, 600000);
  ck_assert_int_eq(job->stop_timeout_ms, 2000);
  ck_assert_int_eq(job->pull, PULL_NEVER);
  flwd_job_free(job);
}
END_TEST

START_TEST(spec_digest_reference)
{
  flwd_job *job = load_spec(
      "id: d\nexecutor: container\ninterpreter: \"container:127.0.0.1:5000/"
      "x/y@sha256:"
      "0123456789abcdef0123456789abcdef0123456789abcdef0123456789abcdef\"\n");
  ck_assert_str_eq(flwd_job_image(job),
                   "127.0.0.1:5000/x/y@sha256:0123456789abcdef0123456789abcd"
                   "ef0123456789abcdef0123456789abcdef");
  flwd_job_free(job);
}
END_TEST

/* Each broken spec names the field and the position of the problem. */
static const struct {
  const char *text;
  const char *expected;
} broken[] = {
    {"id: [\n", "test.yaml:"},
    {"executor: container\ninterpreter: \"container:x\"\n",
     "test.yaml:1:1: id: missing required field"},
    {"id: Bad_Id\nexecutor: container\ninterpreter: \"container:x\"\n",
     "test.yaml:1:5: id: invalid id 'Bad_Id'"},
    {HEAD "colour: blue\n", "test.yaml:4:1: colour: unknown field"},
    {"id: a\nexecutor: shell\ninterpreter: \"container:x\"\n",
     "test.yaml:2:11: executor: unsupported executor 'shell'"},
    {"id: a\nexecutor: container\ninterpreter: \"docker:x\"\n",
     "test.yaml:3:14: interpreter: expected 'container:IMAGE'"},
    {"id: a\nexecutor: container\ninterpreter: \"container:-x\"\n",
     "interpreter: invalid image reference '-x'"},
    {HEAD "args:\n  - name: a\n    type: float\n",
     "test.yaml:6:11: args[0].type: unknown type 'float'"},
    {HEAD "args:\n  - name: a\n    type: enum\n",
     "args[0].values: an enum argument needs values"},
    {HEAD "args:\n  - name: a\n    type: string\n  - name: a\n"
          "    type: string\n",
     "args[1]: argument 'a' clashes with 'a' declared before it"},
    {HEAD "args:\n  - name: dry-run\n    type: string\n  - name: dry_run\n"
          "    type: string\n",
     "argument 'dry_run' clashes with 'dry-run'"},
    {HEAD "args:\n  - name: n\n    type: integer\n    default: x\n",
     "test.yaml:7:14: args[0].default: invalid default"},
    {HEAD "args:\n  - name: n\n    type: string\n    required: true\n"
          "    default: x\n",
     "args[0].default: a required argument cannot have a default"},
    {HEAD "command: \"echo hi\"\n",
     "test.yaml:4:10: command: expected a list of strings"},
    {HEAD "timeout: soon\n",
     "test.yaml:4:10: timeout: invalid duration 'soon'"},
    {HEAD "profile: open\n", "profile: unknown profile 'open'"},
    {"", "test.yaml:1:1: spec: the file is empty"},
    {"- a\n- b\n", "spec: expected a mapping of fields"},
    {HEAD "id: again\n", "test.yaml:4:1: id: field given twice"},
    {HEAD "requests:\n  network: limited\n",
     "test.yaml:5:3: requests: relaxations need 'profile: permissive'"},
    {HEAD "profile: permissive\nrequests:\n  secrets_as_env: [x]\n",
     "requests.secrets_as_env: 'x' is not listed under secrets"},
    {HEAD "profile: permissive\nrequests:\n  capabilities: [CAP_SYS_ADMIN]\n",
     "requests.capabilities[0]: invalid name 'CAP_SYS_ADMIN'"},
    {HEAD "profile: permissive\nrequests:\n  network: open\n",
     "requests.network: unknown network 'open'"},
    {HEAD "secrets:\n  - name: a/b\n", "secrets[0]: invalid name 'a/b'"},
    {HEAD "secrets: [a, a]\n", "secrets[1]: 'a' is listed twice"},
    {HEAD "resources:\n  memory: lots\n", "resources.memory: invalid memory"},
    {HEAD "args:\n  - name: 9lives\n    type: string\n",
     "args[0].name: invalid argument name '9lives'"},
    {HEAD "args:\n  - name: b\n    type: boolean\n    required: maybe\n",
     "args[0].required: expected true or false, got 'maybe'"},
};

START_TEST(spec_broken_rejected)
{
  char *message = spec_error(broken[_i].text);
  ck_assert_msg(strstr(message, broken[_i].expected) != NULL,
                "case %d: expected '%s' in '%s'", _i, broken[_i].expected,
                message);
  free(message);
}
END_TEST

START_TEST(spec_requests_and_secrets_load)
{
  flwd_job *job = load_spec(HEAD "profile: permissive\n"
                                 "secrets:\n  - api_token\n  - name: other\n"
                                 "requests:\n"
                                 "  writable_rootfs: true\n"
                                 "  capabilities: [NET_BIND_SERVICE]\n"
                                 "  network: limited\n"
                                 "  secrets_as_env: [api_token]\n");
  ck_assert_uint_eq(job->secrets.len, 2);
  ck_assert_str_eq(job->secrets.items[1], "other");
  ck_assert(job->req_writable_rootfs);
  ck_assert_str_eq(job->req_caps.items[0], "NET_BIND_SERVICE");
  ck_assert(job->req_network_limited);
  ck_assert_str_eq(job->req_secrets_env.items[0], "api_token");
  flwd_job_free(job);
}
END_TEST

START_TEST(spec_binary_garbage_rejected)
{
  char garbage[256];
  for (int i = 0; i < 256; i++)
    garbage[i] = (char)(i * 37 + 11);
  flwd_job *job = NULL;
  flwd_error *err = NULL;
  ck_assert_int_lt(flwd_job_load_buffer(NULL, "g.yaml", garbage,
                                        sizeof(garbage), &job, &err),
                   0);
  ck_assert_int_eq(flwd_error_code(err), FLWD_E_SPEC_INVALID);
  flwd_error_free(err);
}
END_TEST

START_TEST(spec_to_json_lists_args)
{
  flwd_job *job = load_spec(HEAD "args:\n  - name: n\n    type: integer\n"
                                 "    default: 2\n");
  char *json = flwd_job_to_json(job);
  ck_assert_ptr_nonnull(strstr(json, "\"id\":\"demo\""));
  ck_assert_ptr_nonnull(strstr(json, "\"name\":\"n\",\"type\":\"integer\""));
  ck_assert_ptr_nonnull(strstr(json, "\"default\":2"));
  flwd_free(json);
  flwd_job_free(job);
}
END_TEST

Suite *
spec_suite(void)
{
  Suite *s = suite_create("spec");
  TCase *tc = tcase_create("load");
  tcase_add_test(tc, spec_minimal_loads);
  tcase_add_test(tc, spec_full_loads);
  tcase_add_test(tc, spec_digest_reference);
  tcase_add_loop_test(tc, spec_broken_rejected, 0,
                      (int)(sizeof(broken) / sizeof(broken[0])));
  tcase_add_test(tc, spec_requests_and_secrets_load);
  tcase_add_test(tc, spec_binary_garbage_rejected);
  tcase_add_test(tc, spec_to_json_lists_args);
  suite_add_tcase(s, tc);
  return s;
}
