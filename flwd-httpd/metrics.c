/* flwd-httpd: Prometheus metrics in the text exposition format 0.0.4. */
#include <stdio.h>
#include <stdlib.h>

#include <json-c/json.h>

#include "server.h"

static const double duration_bounds[DURATION_BUCKET_COUNT] = {
    0.5, 1, 2.5, 5, 10, 30, 60, 120, 300, 600, 1800, 3600,
};

void
metrics_count_request(struct metrics *metrics, int status)
{
  if (status >= 100 && status < 600)
    metrics->requests_by_status[status]++;
}

void
metrics_observe_duration(struct metrics *metrics, double seconds)
{
  for (size_t i = 0; i < DURATION_BUCKET_COUNT; i++) {
    if (seconds <= duration_bounds[i])
      metrics->duration_buckets[i]++;
  }
  metrics->duration_count++;
  metrics->duration_sum += seconds;
}

static void
render_runs(FILE *out, const char *store_counts)
{
  fputs("# HELP flwd_runs Runs in the run store, by state.\n"
        "# TYPE flwd_runs gauge\n",
        out);
  json_object *counts = store_counts ? json_tokener_parse(store_counts) : NULL;
  for (int state = FLWD_RUN_QUEUED; state <= FLWD_RUN_ERROR; state++) {
    const char *name = flwd_run_state_name((flwd_run_state)state);
    json_object *value = NULL;
    if (!json_object_object_get_ex(counts, name, &value))
      continue;
    fprintf(out, "flwd_runs{state=\"%s\"} %lld\n", name,
            (long long)json_object_get_int64(value));
  }
  json_object_put(counts);
}

static void
render_durations(FILE *out, const struct metrics *metrics)
{
  fputs("# HELP flwd_run_duration_seconds Time from the creation of a run "
        "started by this server to its end.\n"
        "# TYPE flwd_run_duration_seconds histogram\n",
        out);
  for (size_t i = 0; i < DURATION_BUCKET_COUNT; i++)
    fprintf(out, "flwd_run_duration_seconds_bucket{le=\"%g\"} %llu\n",
            duration_bounds[i],
            (unsigned long long)metrics->duration_buckets[i]);
  fprintf(out,
          "flwd_run_duration_seconds_bucket{le=\"+Inf\"} %llu\n"
          "flwd_run_duration_seconds_sum %.6f\n"
          "flwd_run_duration_seconds_count %llu\n",
          (unsigned long long)metrics->duration_count, metrics->duration_sum,
          (unsigned long long)metrics->duration_count);
}

static void
render_requests(FILE *out, const struct metrics *metrics)
{
  fputs("# HELP flwd_http_requests_total HTTP requests answered, by status "
        "code.\n"
        "# TYPE flwd_http_requests_total counter\n",
        out);
  for (int status = 100; status < 600; status++) {
    if (metrics->requests_by_status[status] > 0)
      fprintf(out, "flwd_http_requests_total{code=\"%d\"} %llu\n", status,
              (unsigned long long)metrics->requests_by_status[status]);
  }
}

char *
metrics_render(const struct metrics *metrics, const char *store_counts)
{
  char *text = NULL;
  size_t len = 0;
  FILE *out = open_memstream(&text, &len);
  if (out == NULL)
    return NULL;
  render_runs(out, store_counts);
  render_durations(out, metrics);
  render_requests(out, metrics);
  fprintf(out,
          "# HELP flwd_image_pulls_total Image pulls started by runs of this "
          "server.\n"
          "# TYPE flwd_image_pulls_total counter\n"
          "flwd_image_pulls_total %llu\n",
          (unsigned long long)metrics->image_pulls);
  if (fclose(out) != 0) {
    free(text);
    return NULL;
  }
  return text;
}
