/* Runs every unit test suite of libflwd. */
#include <stdlib.h>
#include <string.h>

#include "unit.h"

flwd_job *
load_spec(const char *text)
{
  flwd_job *job = NULL;
  flwd_error *err = NULL;
  int ret
      = flwd_job_load_buffer(NULL, "test.yaml", text, strlen(text), &job, &err);
  ck_assert_msg(ret == 0, "spec rejected: %s", flwd_error_message(err));
  return job;
}

char *
spec_error(const char *text)
{
  flwd_job *job = NULL;
  flwd_error *err = NULL;
  int ret
      = flwd_job_load_buffer(NULL, "test.yaml", text, strlen(text), &job, &err);
  ck_assert_msg(ret < 0, "spec accepted: %s", text);
  ck_assert_int_eq(ret, -FLWD_E_SPEC_INVALID);
  ck_assert_int_eq(flwd_error_code(err), FLWD_E_SPEC_INVALID);
  char *message = strdup(flwd_error_message(err));
  flwd_error_free(err);
  return message;
}

int
main(void)
{
  SRunner *runner = srunner_create(spec_suite());
  srunner_add_suite(runner, args_suite());
  srunner_add_suite(runner, plan_suite());
  srunner_add_suite(runner, errors_suite());
  srunner_add_suite(runner, util_suite());
  srunner_add_suite(runner, store_suite());
  srunner_add_suite(runner, policy_suite());
  srunner_run_all(runner, CK_NORMAL);
  int failed = srunner_ntests_failed(runner);
  srunner_free(runner);
  return failed == 0 ? EXIT_SUCCESS : EXIT_FAILURE;
}
