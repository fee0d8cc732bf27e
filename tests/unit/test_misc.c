/* Unit tests of the error table, the small helpers and the run store. */
#include <fcntl.h>
#include <stdio.h>
#include <string.h>
#include <sys/stat.h>

#include <sqlite3.h>

#include "unit.h"

START_TEST(errors_names_are_stable)
{
  ck_assert_str_eq(flwd_code_name(FLWD_E_SPEC_INVALID), "spec.invalid");
  ck_assert_str_eq(flwd_code_name(FLWD_E_RUNTIME_UNAVAILABLE),
                   "container.runtime.unavailable");
  ck_assert_str_eq(flwd_code_name(FLWD_E_OCI), "E_OCI");
  ck_assert_str_eq(flwd_code_name(FLWD_E_INTERNAL), "internal");
  ck_assert_str_eq(flwd_code_name((flwd_code)9999), "internal");
  ck_assert_int_eq(FLWD_E_SPEC_INVALID, 1);
  ck_assert_int_eq(FLWD_E_INTERNAL, 13);
}
END_TEST

START_TEST(errors_set_and_wrap)
{
  flwd_error *err = NULL;
  ck_assert_int_eq(set_error(&err, FLWD_E_OCI, "pull of '%s' failed", "x"),
                   -FLWD_E_OCI);
  /* The first error wins; later ones do not overwrite it. */
  set_error(&err, FLWD_E_INTERNAL, "later");
  wrap_error(&err, -1, "run %d", 5);
  ck_assert_str_eq(flwd_error_name(err), "E_OCI");
  ck_assert_str_eq(flwd_error_message(err), "run 5: pull of 'x' failed");
  flwd_error_free(err);
  ck_assert_int_eq(set_error(NULL, FLWD_E_OCI, "ignored"), -FLWD_E_OCI);
}
END_TEST

START_TEST(util_durations_and_sizes)
{
  long long v;
  ck_assert_int_eq(parse_duration_ms("1.5s", &v), 0);
  ck_assert_int_eq(v, 1500);
  ck_assert_int_eq(parse_duration_ms("10m", &v), 0);
  ck_assert_int_eq(v, 600000);
  ck_assert_int_eq(parse_duration_ms("10", &v), -1);
  ck_assert_int_eq(parse_duration_ms("-1s", &v), -1);
  ck_assert_int_eq(parse_size_bytes("256Mi", &v), 0);
  ck_assert_int_eq(v, 268435456);
  ck_assert_int_eq(parse_size_bytes("1G", &v), 0);
  ck_assert_int_eq(v, 1000000000);
  ck_assert_int_eq(parse_size_bytes("1Q", &v), -1);
}
END_TEST

START_TEST(util_rm_rf_keeps_link_targets)
{
  char dir[] = "/tmp/flwd-unit-XXXXXX";
  ck_assert_ptr_nonnull(mkdtemp(dir));
  char *outside = xasprintf("%s-outside", dir);
  char *tree = xasprintf("%s/tree/a/b", dir);
  char *link = xasprintf("%s/tree/link", dir);
  ck_assert_int_eq(mkdir_p(tree, 0700), 0);
  ck_assert_int_eq(mkdir(outside, 0700), 0);
  ck_assert_int_eq(symlink(outside, link), 0);
  ck_assert_int_eq(rm_rf(dir), 0);
  ck_assert_int_ne(access(dir, F_OK), 0);
  ck_assert_int_eq(access(outside, F_OK), 0);
  rmdir(outside);
  free(outside);
  free(tree);
  free(link);
}
END_TEST

START_TEST(util_write_file_mode)
{
  char path[] = "/tmp/flwd-unit-file-XXXXXX";
  int fd = mkstemp(path);
  close(fd);
  ck_assert_int_eq(write_file_atomic(path, "k=v\n", 4, 0600), 0);
  struct stat st;
  ck_assert_int_eq(stat(path, &st), 0);
  ck_assert_int_eq(st.st_mode & 0777, 0600);
  ck_assert_int_eq(st.st_size, 4);
  unlink(path);
}
END_TEST

static flwd_ctx *
store_ctx(char *dir)
{
  ck_assert_ptr_nonnull(mkdtemp(dir));
  flwd_ctx *ctx = NULL;
  ck_assert_int_eq(flwd_ctx_new(NULL, &ctx, NULL), 0);
  ck_assert_int_eq(flwd_ctx_set_option(ctx, FLWD_OPT_STATE_DIR, dir, NULL), 0);
  return ctx;
}

START_TEST(store_put_and_query)
{
  char dir[] = "/tmp/flwd-unit-store-XXXXXX";
  flwd_ctx *ctx = store_ctx(dir);
  struct store *store = NULL;
  ck_assert_int_eq(store_get(ctx, &store, NULL), 0);
  ck_assert_int_eq(store_put_run(store, "r1", "j", "running", "2026-01-01",
                                 "{\"id\":\"r1\",\"metadata\":{\"k\":\"v\"}}",
                                 NULL),
                   0);
  ck_assert_int_eq(
      store_add_event(store, "r1", 1, "run.created", "{\"seq\":1}", NULL), 0);
  char *out = NULL;
  ck_assert_int_eq(flwd_store_runs_json(ctx, "j", NULL, 10, 0, &out, NULL), 0);
  ck_assert_str_eq(out, "[{\"id\":\"r1\",\"metadata\":{\"k\":\"v\"}}]");
  flwd_free(out);
  ck_assert_int_eq(flwd_store_events_json(ctx, "r1", 0, &out, NULL), 0);
  ck_assert_str_eq(out, "[{\"seq\":1}]");
  flwd_free(out);
  ck_assert_int_eq(flwd_store_find_by_metadata(ctx, "k", "v", &out, NULL), 0);
  flwd_free(out);
  ck_assert_int_eq(flwd_store_count_json(ctx, &out, NULL), 0);
  ck_assert_ptr_nonnull(strstr(out, "\"running\":1"));
  flwd_free(out);
  flwd_error *err = NULL;
  ck_assert_int_eq(flwd_store_run_json(ctx, "nope", &out, &err),
                   -FLWD_E_RUN_NOT_FOUND);
  flwd_error_free(err);
  flwd_ctx_free(ctx);
  rm_rf(dir);
}
END_TEST

START_TEST(store_newer_schema_rejected)
{
  char dir[] = "/tmp/flwd-unit-store-XXXXXX";
  flwd_ctx *ctx = store_ctx(dir);
  char *path = xasprintf("%s/flwd.db", dir);
  sqlite3 *db = NULL;
  ck_assert_int_eq(sqlite3_open(path, &db), SQLITE_OK);
  ck_assert_int_eq(
      sqlite3_exec(db, "PRAGMA user_version = 99", NULL, NULL, NULL),
      SQLITE_OK);
  sqlite3_close(db);

  struct store *store = NULL;
  flwd_error *err = NULL;
  ck_assert_int_eq(store_get(ctx, &store, &err), -FLWD_E_STORE_FAILED);
  ck_assert_ptr_nonnull(
      strstr(flwd_error_message(err), "schema version 99, newer"));
  flwd_error_free(err);
  free(path);
  flwd_ctx_free(ctx);
  rm_rf(dir);
}
END_TEST

Suite *
errors_suite(void)
{
  Suite *s = suite_create("errors");
  TCase *tc = tcase_create("table");
  tcase_add_test(tc, errors_names_are_stable);
  tcase_add_test(tc, errors_set_and_wrap);
  suite_add_tcase(s, tc);
  return s;
}

Suite *
util_suite(void)
{
  Suite *s = suite_create("util");
  TCase *tc = tcase_create("helpers");
  tcase_add_test(tc, util_durations_and_sizes);
  tcase_add_test(tc, util_rm_rf_keeps_link_targets);
  tcase_add_test(tc, util_write_file_mode);
  suite_add_tcase(s, tc);
  return s;
}

Suite *
store_suite(void)
{
  Suite *s = suite_create("store");
  TCase *tc = tcase_create("sqlite");
  tcase_add_test(tc, store_put_and_query);
  tcase_add_test(tc, store_newer_schema_rejected);
  suite_add_tcase(s, tc);
  return s;
}
