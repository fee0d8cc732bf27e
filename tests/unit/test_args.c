/* Unit tests of argument binding. */
#include <string.h>

#include "unit.h"

static const char spec[] = "id: a\n"
                           "executor: container\n"
                           "interpreter: \"container:img\"\n"
                           "args:\n"
                           "  - name: name\n"
                           "    type: string\n"
                           "    required: true\n"
                           "  - name: count\n"
                           "    type: integer\n"
                           "    default: 1\n"
                           "  - name: ratio\n"
                           "    type: number\n"
                           "  - name: dry_run\n"
                           "    type: boolean\n"
                           "  - name: mode\n"
                           "    type: enum\n"
                           "    values: [fast, slow]\n"
                           "  - name: tag\n"
                           "    type: list\n";

static char *
bind_argv(int argc, char *const *argv, flwd_code *code)
{
  flwd_job *job = load_spec(spec);
  flwd_args *args = NULL;
  flwd_error *err = NULL;
  char *json = NULL;
  *code = FLWD_E_OK;
  if (flwd_args_from_argv(job, argc, argv, &args, &err) < 0) {
    *code = flwd_error_code(err);
    json = strdup(flwd_error_message(err));
  } else {
    json = flwd_args_to_json(args);
  }
  flwd_error_free(err);
  flwd_args_free(args);
  flwd_job_free(job);
  return json;
}

START_TEST(args_argv_typed)
{
  char *argv[]
      = {"--name", "Alice", "--count=3", "--ratio", "0.5",   "--dry-run",
         "--mode", "fast",  "--tag",     "a",       "--tag", "b,c"};
  flwd_code code;
  char *json = bind_argv(12, argv, &code);
  ck_assert_int_eq(code, FLWD_E_OK);
  ck_assert_str_eq(json, "{\"name\":\"Alice\",\"count\":3,\"ratio\":0.5,"
                         "\"dry_run\":true,\"mode\":\"fast\",\"tag\":[\"a\","
                         "\"b,c\"]}");
  free(json);
}
END_TEST

START_TEST(args_argv_defaults)
{
  char *argv[] = {"--name=", "--no-dry_run"};
  flwd_code code;
  char *json = bind_argv(2, argv, &code);
  ck_assert_int_eq(code, FLWD_E_OK);
  ck_assert_str_eq(json, "{\"name\":\"\",\"dry_run\":false,\"count\":1}");
  free(json);
}
END_TEST

static const struct {
  int argc;
  char *argv[4];
  const char *expected;
} invalid[] = {
    {0, {NULL}, "missing required argument 'name'"},
    {2, {"--name", "x\ny"}, "contains a line break"},
    {3, {"--name", "a", "--colour"}, "unknown argument '--colour'"},
    {4, {"--name", "a", "--count", "3x"}, "expected an integer, got '3x'"},
    {4, {"--name", "a", "--ratio", "inf"}, "expected a number"},
    {4, {"--name", "a", "--mode", "medium"}, "'medium' is not one of"},
    {3, {"--name", "a", "--dry-run=yes"}, "expected true or false"},
    {1, {"--name"}, "needs a value"},
    {4, {"--name", "a", "--name", "b"}, "given more than once"},
    {1, {"stray"}, "unexpected argument 'stray'"},
};

START_TEST(args_argv_invalid)
{
  flwd_code code;
  char *message = bind_argv(invalid[_i].argc, invalid[_i].argv, &code);
  ck_assert_int_eq(code, FLWD_E_ARGS_INVALID);
  ck_assert_msg(strstr(message, invalid[_i].expected) != NULL,
                "case %d: expected '%s' in '%s'", _i, invalid[_i].expected,
                message);
  free(message);
}
END_TEST

static int
bind_json(const char *input, char **out)
{
  flwd_job *job = load_spec(spec);
  flwd_args *args = NULL;
  flwd_error *err = NULL;
  int ret = flwd_args_from_json(job, input, &args, &err);
  *out = ret == 0 ? flwd_args_to_json(args) : strdup(flwd_error_message(err));
  flwd_error_free(err);
  flwd_args_free(args);
  flwd_job_free(job);
  return ret;
}

START_TEST(args_json_typed)
{
  char *out = NULL;
  ck_assert_int_eq(bind_json("{\"name\":\"$HOME *\",\"ratio\":2,"
                             "\"tag\":[\"x\"]}",
                             &out),
                   0);
  ck_assert_str_eq(out, "{\"name\":\"$HOME *\",\"ratio\":2,\"tag\":[\"x\"],"
                        "\"count\":1}");
  free(out);
}
END_TEST

static const struct {
  const char *input;
  const char *expected;
} json_invalid[] = {
    {"[1]", "must be a JSON object"},
    {"{\"name\":", "not valid JSON"},
    {"{\"name\":\"a\"} x", "unexpected data after the object"},
    {"{\"name\":1}", "expected a string, got a number"},
    {"{\"name\":\"a\",\"count\":1.5}", "expected an integer"},
    {"{\"name\":\"a\",\"dry_run\":\"true\"}", "expected true or false"},
    {"{\"name\":\"a\",\"tag\":[1]}", "expected a string"},
    {"{\"name\":\"a\",\"extra\":1}", "unknown argument 'extra'"},
    {"{\"name\":\"a\\u0000b\"}", "NUL byte"},
    {"{}", "missing required argument 'name'"},
};

START_TEST(args_json_invalid)
{
  char *out = NULL;
  ck_assert_int_eq(bind_json(json_invalid[_i].input, &out),
                   -FLWD_E_ARGS_INVALID);
  ck_assert_msg(strstr(out, json_invalid[_i].expected) != NULL,
                "case %d: expected '%s' in '%s'", _i, json_invalid[_i].expected,
                out);
  free(out);
}
END_TEST

START_TEST(args_env_names)
{
  char *name = arg_env_name("dry-run.x");
  ck_assert_str_eq(name, "FLWD_ARG_DRY_RUN_X");
  free(name);
}
END_TEST

Suite *
args_suite(void)
{
  Suite *s = suite_create("args");
  TCase *tc = tcase_create("bind");
  tcase_add_test(tc, args_argv_typed);
  tcase_add_test(tc, args_argv_defaults);
  tcase_add_loop_test(tc, args_argv_invalid, 0,
                      (int)(sizeof(invalid) / sizeof(invalid[0])));
  tcase_add_test(tc, args_json_typed);
  tcase_add_loop_test(tc, args_json_invalid, 0,
                      (int)(sizeof(json_invalid) / sizeof(json_invalid[0])));
  tcase_add_test(tc, args_env_names);
  suite_add_tcase(s, tc);
  return s;
}
