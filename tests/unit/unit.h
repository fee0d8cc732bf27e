/* Helpers shared by the unit test suites. */
#ifndef FLWD_UNIT_H
#define FLWD_UNIT_H

#include <check.h>

#include "internal.h"

/* Loads a spec from TEXT; fails the test with the error message if it
 * does not load. */
flwd_job *load_spec(const char *text);

/* Loads a spec that must be rejected and returns the error message;
 * free with free(). */
char *spec_error(const char *text);

Suite *spec_suite(void);
Suite *args_suite(void);
Suite *plan_suite(void);
Suite *errors_suite(void);
Suite *util_suite(void);
Suite *store_suite(void);
Suite *policy_suite(void);

#endif /* FLWD_UNIT_H */
