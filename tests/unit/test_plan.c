/* Unit tests of plans: the runtime command line, the env file and the
 * placeholders of a command. */
#include <string.h>

#include "unit.h"

static const char spec[] = "id: p\n"
                           "executor: container\n"
                           "interpreter: \"container:localhost/img:1\"\n"
                           "command: [\"run\", \"--who=${args.who}\", "
                           "\"${run.id}\", \"${args.n}\"]\n"
                           "args:\n"
                           "  - name: who\n"
                           "    type: string\n"
                           "  - name: n\n"
                           "    type: integer\n"
                           "  - name: flag\n"
                           "    type: boolean\n"
                           "    default: false\n";

struct fixture {
  flwd_ctx *ctx;
  flwd_job *job;
  flwd_args *args;
  struct plan plan;
};

static void
fixture_setup(struct fixture *f, const char *runtime, bool detached)
{
  ck_assert_int_eq(flwd_ctx_new(NULL, &f->ctx, NULL), 0);
  ck_assert_int_eq(
      flwd_ctx_set_option(f->ctx, FLWD_OPT_STATE_DIR, "/var/tmp/st", NULL), 0);
  ck_assert_int_eq(
      flwd_ctx_set_option(f->ctx, FLWD_OPT_INIT_PATH, "/opt/flwd-init", NULL),
      0);
  if (detached)
    flwd_ctx_set_option(f->ctx, FLWD_OPT_RUN_MODE, "detached", NULL);
  /* A fixed runtime, so that the test needs no runtime on the machine. */
  f->ctx->runtime
      = strcmp(runtime, "docker") == 0 ? &runtime_docker : &runtime_podman;
  f->ctx->runtime_path = strdup(runtime);
  f->ctx->runtime_caps.rootless = false;
  f->ctx->runtime_caps.userns = true;
  f->ctx->runtime_caps.resource_limits = true;

  f->job = load_spec(spec);
  char *argv[] = {"--who", "a b", "--n", "7"};
  ck_assert_int_eq(flwd_args_from_argv(f->job, 4, argv, &f->args, NULL), 0);
  ck_assert_int_eq(plan_resolve(f->ctx, f->job, f->args, &f->plan, NULL), 0);
}

static void
fixture_teardown(struct fixture *f)
{
  plan_clear(&f->plan);
  flwd_args_free(f->args);
  flwd_job_free(f->job);
  flwd_ctx_free(f->ctx);
}

static bool
has_item(const struct strv *v, const char *item)
{
  for (size_t i = 0; i < v->len; i++) {
    if (strcmp(v->items[i], item) == 0)
      return true;
  }
  return false;
}

static void
build(struct fixture *f, struct strv *argv)
{
  struct strv command;
  strv_init(&command);
  ck_assert_int_eq(plan_expand_command(&f->plan, "r1", &command, NULL), 0);
  struct run_layout layout = {
      .run_id = "r1",
      .job_id = "p",
      .container_name = "flwd-r1",
      .image = "localhost/img:1",
      .host_dir = "/var/tmp/st/runs/r1",
      .env_file = "/var/tmp/st/runs/r1/env",
      .init_path = "/opt/flwd-init",
      .state_dir = "/var/tmp/st",
      .command = &command,
  };
  strv_init(argv);
  ck_assert_int_eq(plan_build_argv(&f->plan, &layout, argv, NULL), 0);
  strv_clear(&command);
}

START_TEST(plan_podman_secure_flags)
{
  struct fixture f;
  fixture_setup(&f, "podman", false);
  struct strv argv;
  build(&f, &argv);
  static const char *const required[] = {
      "run",
      "--rm",
      "--sig-proxy=false",
      "--pull=never",
      "--name=flwd-r1",
      "--label=io.flwd.run-id=r1",
      "--label=io.flwd.job-id=p",
      "--env-file=/var/tmp/st/runs/r1/env",
      "--read-only",
      "--cap-drop=ALL",
      "--security-opt=no-new-privileges",
      "--network=none",
      "--pids-limit=256",
      "--read-only-tmpfs=false",
      "--tmpfs=/tmp:rw,nosuid,nodev,size=64m,mode=1777",
      "--entrypoint=/run/flwd/init",
      "--mount=type=bind,source=/var/tmp/st/runs/r1/args.json,"
      "destination=/run/flwd/args.json,readonly",
  };
  for (size_t i = 0; i < sizeof(required) / sizeof(required[0]); i++)
    ck_assert_msg(has_item(&argv, required[i]), "missing %s", required[i]);
  ck_assert_int_eq(has_item(&argv, "--userns=auto"), geteuid() == 0);

  /* The image and the expanded command close the line, each element one
   * argument. */
  ck_assert_str_eq(argv.items[argv.len - 5], "localhost/img:1");
  ck_assert_str_eq(argv.items[argv.len - 4], "run");
  ck_assert_str_eq(argv.items[argv.len - 3], "--who=a b");
  ck_assert_str_eq(argv.items[argv.len - 2], "r1");
  ck_assert_str_eq(argv.items[argv.len - 1], "7");
  strv_clear(&argv);
  fixture_teardown(&f);
}
END_TEST

START_TEST(plan_docker_detached_flags)
{
  struct fixture f;
  fixture_setup(&f, "docker", true);
  struct strv argv;
  build(&f, &argv);
  ck_assert(has_item(&argv, "--detach"));
  ck_assert(!has_item(&argv, "--rm"));
  ck_assert(!has_item(&argv, "--userns=auto"));
  ck_assert(!has_item(&argv, "--read-only-tmpfs=false"));
  ck_assert(has_item(&argv, "--read-only"));
  ck_assert(has_item(&argv, "--cap-drop=ALL"));
  strv_clear(&argv);
  fixture_teardown(&f);
}
END_TEST

START_TEST(plan_no_limits_is_reported)
{
  struct fixture f;
  fixture_setup(&f, "podman", false);
  plan_clear(&f.plan);
  f.ctx->runtime_caps.resource_limits = false;
  ck_assert_int_eq(plan_resolve(f.ctx, f.job, f.args, &f.plan, NULL), 0);
  ck_assert_uint_eq(json_object_array_length(f.plan.guarantees_missing), 1);
  struct strv argv;
  build(&f, &argv);
  ck_assert(!has_item(&argv, "--pids-limit=256"));
  strv_clear(&argv);
  fixture_teardown(&f);
}
END_TEST

START_TEST(plan_env_file_lines)
{
  struct fixture f;
  fixture_setup(&f, "podman", false);
  struct buf env = {0};
  ck_assert_int_eq(plan_env_text(&f.plan, "r1", &env, NULL), 0);
  ck_assert_ptr_nonnull(strstr(env.data, "FLWD_RUN_ID=r1\n"));
  ck_assert_ptr_nonnull(strstr(env.data, "FLWD_JOB_ID=p\n"));
  ck_assert_ptr_nonnull(strstr(env.data, "FLWD_ARG_WHO=a b\n"));
  ck_assert_ptr_nonnull(strstr(env.data, "FLWD_ARG_N=7\n"));
  ck_assert_ptr_nonnull(strstr(env.data, "FLWD_ARG_FLAG=false\n"));
  ck_assert_ptr_nonnull(
      strstr(env.data, "FLWD_ARGS_FILE=/run/flwd/args.json\n"));
  buf_clear(&env);
  fixture_teardown(&f);
}
END_TEST

START_TEST(plan_unknown_placeholder)
{
  flwd_job *job = load_spec("id: u\nexecutor: container\n"
                            "interpreter: \"container:img\"\n"
                            "command: [\"${args.nope}\"]\n");
  flwd_args *args = NULL;
  ck_assert_int_eq(flwd_args_from_json(job, "{}", &args, NULL), 0);
  struct plan plan = {.job = job, .args = args};
  struct strv out;
  strv_init(&out);
  flwd_error *err = NULL;
  ck_assert_int_eq(plan_expand_command(&plan, "r", &out, &err),
                   -FLWD_E_SPEC_INVALID);
  ck_assert_ptr_nonnull(strstr(flwd_error_message(err), "${args.nope}"));
  flwd_error_free(err);
  strv_clear(&out);
  flwd_args_free(args);
  flwd_job_free(job);
}
END_TEST

Suite *
plan_suite(void)
{
  Suite *s = suite_create("plan");
  TCase *tc = tcase_create("argv");
  tcase_add_test(tc, plan_podman_secure_flags);
  tcase_add_test(tc, plan_docker_detached_flags);
  tcase_add_test(tc, plan_no_limits_is_reported);
  tcase_add_test(tc, plan_env_file_lines);
  tcase_add_test(tc, plan_unknown_placeholder);
  suite_add_tcase(s, tc);
  return s;
}
