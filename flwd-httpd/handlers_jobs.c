/* flwd-httpd: jobs, plans, health and metrics. */
#include <ctype.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "server.h"

/* Job ids are 1 to 63 of lower-case letters, digits, '.', '_' and '-'. */
static bool
job_id_valid(const char *id)
{
  size_t len = strlen(id);
  if (len == 0 || len > 63 || !isalnum((unsigned char)id[0]))
    return false;
  for (size_t i = 0; i < len; i++) {
    char c = id[i];
    if (!(islower((unsigned char)c) || isdigit((unsigned char)c) || c == '.'
          || c == '_' || c == '-'))
      return false;
  }
  return true;
}

/* Returns the jobs of LIST as a JSON array text; free with free(). */
static char *
jobs_array(const flwd_job_list *list)
{
  char *text = NULL;
  size_t len = 0;
  FILE *out = open_memstream(&text, &len);
  if (out == NULL)
    return NULL;
  fputc('[', out);
  size_t count = flwd_job_list_count(list);
  for (size_t i = 0; i < count; i++) {
    char *job = flwd_job_to_json(flwd_job_list_get(list, i));
    fprintf(out, "%s%s", i ? "," : "", job ? job : "null");
    flwd_free(job);
  }
  fputc(']', out);
  if (fclose(out) != 0) {
    free(text);
    return NULL;
  }
  return text;
}

void
handle_jobs_list(struct request *r)
{
  flwd_job_list *list = NULL;
  flwd_error *err = NULL;
  if (flwd_job_list_load(r->srv->ctx, &list, &err) < 0) {
    reply_flwd_error(r, err);
    flwd_error_free(err);
    return;
  }
  char *array = jobs_array(list);
  flwd_job_list_free(list);
  if (array == NULL) {
    reply_error(r, 500, FLWD_E_INTERNAL, "out of memory");
    return;
  }
  reply_wrapped(r, 200, "jobs", array);
  free(array);
}

void
handle_job_get(struct request *r)
{
  if (!job_id_valid(r->id)) {
    reply_error(r, 404, FLWD_E_JOB_NOT_FOUND,
                "no job '%s': a job id is 1 to 63 lower-case letters, "
                "digits, '.', '_' and '-'",
                r->id);
    return;
  }
  flwd_job *job = NULL;
  flwd_error *err = NULL;
  if (flwd_job_find(r->srv->ctx, r->id, &job, &err) < 0) {
    reply_flwd_error(r, err);
    flwd_error_free(err);
    return;
  }
  char *json = flwd_job_to_json(job);
  flwd_job_free(job);
  if (json == NULL) {
    reply_error(r, 500, FLWD_E_INTERNAL, "out of memory");
    return;
  }
  reply_json(r, 200, json);
  flwd_free(json);
}

void
handle_plans_create(struct request *r)
{
  flwd_job *job = NULL;
  flwd_args *args = NULL;
  if (parse_job_request(r, &job, &args) < 0)
    return;
  flwd_plan *plan = NULL;
  flwd_error *err = NULL;
  int ret = flwd_plan_create(r->srv->ctx, job, args, &plan, &err);
  flwd_args_free(args);
  flwd_job_free(job);
  if (ret < 0) {
    reply_flwd_error(r, err);
    flwd_error_free(err);
    return;
  }
  char *json = flwd_plan_to_json(plan);
  flwd_plan_free(plan);
  if (json == NULL) {
    reply_error(r, 500, FLWD_E_INTERNAL, "out of memory");
    return;
  }
  reply_json(r, 200, json);
  flwd_free(json);
}

void
handle_healthz(struct request *r)
{
  reply_json(r, 200, "{\"status\":\"ok\"}");
}

void
handle_metrics(struct request *r)
{
  char *counts = NULL;
  flwd_error *err = NULL;
  if (flwd_store_count_json(r->srv->ctx, &counts, &err) < 0) {
    log_msg(FLWD_LOG_ERROR, "metrics: cannot count the stored runs: %s: %s",
            flwd_error_name(err), flwd_error_message(err));
    flwd_error_free(err);
  }
  char *text = metrics_render(&r->srv->metrics, counts);
  flwd_free(counts);
  if (text == NULL) {
    reply_error(r, 500, FLWD_E_INTERNAL, "out of memory");
    return;
  }
  reply_send(r, 200, "text/plain; version=0.0.4; charset=utf-8", text,
             strlen(text));
  free(text);
}
