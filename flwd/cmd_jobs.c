/* flwd CLI: listing jobs and validating spec files. */
#include <stdio.h>
#include <string.h>

#include "cli.h"

static void
print_job_line(const flwd_job *job)
{
  printf("%-24s %s\n", flwd_job_id(job),
         flwd_job_description(job) ? flwd_job_description(job) : "");
  size_t n = flwd_job_arg_count(job);
  for (size_t i = 0; i < n; i++) {
    printf("    --%s %s%s", flwd_job_arg_name(job, i),
           flwd_job_arg_type(job, i),
           flwd_job_arg_required(job, i) ? " (required)" : "");
    if (flwd_job_arg_default(job, i))
      printf(" (default %s)", flwd_job_arg_default(job, i));
    printf("\n");
  }
}

int
cmd_jobs(struct cli *cli, int argc, char **argv)
{
  bool json = false;
  for (int i = 0; i < argc; i++) {
    if (strcmp(argv[i], "--json") == 0) {
      json = true;
    } else {
      fprintf(stderr, "flwd: jobs: unknown argument '%s'\n", argv[i]);
      return EXIT_USAGE;
    }
  }

  flwd_job_list *list = NULL;
  flwd_error *err = NULL;
  if (flwd_job_list_load(cli->ctx, &list, &err) < 0) {
    int status = cli_report(err);
    flwd_error_free(err);
    return status;
  }

  size_t n = flwd_job_list_count(list);
  if (json)
    printf("[");
  for (size_t i = 0; i < n; i++) {
    const flwd_job *job = flwd_job_list_get(list, i);
    if (json) {
      char *text = flwd_job_to_json(job);
      printf("%s%s", i ? "," : "", text ? text : "{}");
      flwd_free(text);
    } else {
      print_job_line(job);
    }
  }
  if (json)
    printf("]\n");
  else if (n == 0)
    fprintf(stderr, "flwd: no jobs found in '%s'\n",
            flwd_ctx_get_option(cli->ctx, FLWD_OPT_JOBS_PATH));
  flwd_job_list_free(list);
  return 0;
}

/* Tells a policy file from a job spec: a policy has a top-level "rules:"
 * key at the start of a line. */
static bool
looks_like_policy(const char *path)
{
  FILE *f = fopen(path, "re");
  if (f == NULL)
    return false;
  char line[512];
  bool policy = false;
  while (!policy && fgets(line, sizeof(line), f))
    policy = strncmp(line, "rules:", 6) == 0;
  fclose(f);
  return policy;
}

static int
validate_policy(struct cli *cli, const char *path)
{
  flwd_error *err = NULL;
  if (flwd_policy_validate(cli->ctx, path, &err) < 0) {
    cli_report(err);
    flwd_error_free(err);
    return 1;
  }
  printf("%s: ok (policy)\n", path);
  return 0;
}

int
cmd_validate(struct cli *cli, int argc, char **argv)
{
  if (argc == 0) {
    fputs("flwd: validate: name at least one spec file\n", stderr);
    return EXIT_USAGE;
  }
  int failures = 0;
  for (int i = 0; i < argc; i++) {
    if (looks_like_policy(argv[i])) {
      failures += validate_policy(cli, argv[i]);
      continue;
    }
    flwd_job *job = NULL;
    flwd_error *err = NULL;
    if (flwd_job_load(cli->ctx, argv[i], &job, &err) < 0) {
      cli_report(err);
      flwd_error_free(err);
      failures++;
      continue;
    }
    printf("%s: ok (job %s)\n", argv[i], flwd_job_id(job));
    flwd_job_free(job);
  }
  return failures ? 1 : 0;
}
