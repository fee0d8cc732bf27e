/* flwd CLI: the stored runs, their events and their logs. */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <json-c/json.h>

#include "cli.h"

static int
report_and_free(flwd_error *err)
{
  int status = cli_report(err);
  flwd_error_free(err);
  return status;
}

static const char *
string_field(json_object *obj, const char *key)
{
  json_object *value = NULL;
  if (!json_object_object_get_ex(obj, key, &value) || value == NULL)
    return "-";
  return json_object_get_string(value);
}

static void
print_run_line(json_object *run)
{
  printf("%-16s  %-20s  %-9s  %-6s  %s\n", string_field(run, "id"),
         string_field(run, "job"), string_field(run, "state"),
         string_field(run, "exit_status"), string_field(run, "created_at"));
}

int
cmd_runs(struct cli *cli, int argc, char **argv)
{
  const char *job = NULL, *state = NULL;
  long limit = 20;
  bool json = false;
  for (int i = 0; i < argc; i++) {
    if (strcmp(argv[i], "--json") == 0) {
      json = true;
    } else if (strcmp(argv[i], "--job") == 0 && i + 1 < argc) {
      job = argv[++i];
    } else if (strcmp(argv[i], "--state") == 0 && i + 1 < argc) {
      state = argv[++i];
    } else if (strcmp(argv[i], "--limit") == 0 && i + 1 < argc) {
      char *end = NULL;
      limit = strtol(argv[++i], &end, 10);
      if (*end || limit < 1 || limit > 1000) {
        fprintf(stderr, "flwd: runs: invalid --limit '%s': use 1 to 1000\n",
                argv[i]);
        return EXIT_USAGE;
      }
    } else {
      fprintf(stderr,
              "flwd: runs: unknown argument '%s'; use --job ID, "
              "--state STATE, --limit N or --json\n",
              argv[i]);
      return EXIT_USAGE;
    }
  }

  char *text = NULL;
  flwd_error *err = NULL;
  if (flwd_store_runs_json(cli->ctx, job, state, (size_t)limit, 0, &text, &err)
      < 0)
    return report_and_free(err);
  if (json) {
    puts(text);
  } else {
    json_object *runs = json_tokener_parse(text);
    printf("%-16s  %-20s  %-9s  %-6s  %s\n", "RUN", "JOB", "STATE", "EXIT",
           "CREATED");
    size_t n = runs ? json_object_array_length(runs) : 0;
    for (size_t i = 0; i < n; i++)
      print_run_line(json_object_array_get_idx(runs, i));
    json_object_put(runs);
  }
  flwd_free(text);
  return 0;
}

int
cmd_show(struct cli *cli, int argc, char **argv)
{
  if (argc != 1) {
    fputs("flwd: show: name one run id; see flwd runs\n", stderr);
    return EXIT_USAGE;
  }
  char *run = NULL, *events = NULL;
  flwd_error *err = NULL;
  if (flwd_store_run_json(cli->ctx, argv[0], &run, &err) < 0
      || flwd_store_events_json(cli->ctx, argv[0], 0, &events, &err) < 0) {
    flwd_free(run);
    return report_and_free(err);
  }
  json_object *obj = json_tokener_parse(run);
  json_object_object_add(obj, "events", json_tokener_parse(events));
  int flags = JSON_C_TO_STRING_PRETTY | JSON_C_TO_STRING_NOSLASHESCAPE;
  puts(json_object_to_json_string_ext(obj, flags));
  json_object_put(obj);
  flwd_free(run);
  flwd_free(events);
  return 0;
}

/* Prints the stored log of a run, each line to the stream it came from,
 * or with --json as the JSON array of lines with their streams. */
int
cmd_logs(struct cli *cli, int argc, char **argv)
{
  bool json = argc == 2 && strcmp(argv[1], "--json") == 0;
  if (argc != 1 && !json) {
    fputs("flwd: logs: name one run id, optionally with --json\n", stderr);
    return EXIT_USAGE;
  }
  char *text = NULL;
  flwd_error *err = NULL;
  if (flwd_store_logs_json(cli->ctx, argv[0], 0, &text, &err) < 0)
    return report_and_free(err);
  if (json) {
    puts(text);
    flwd_free(text);
    return 0;
  }
  json_object *lines = json_tokener_parse(text);
  size_t n = lines ? json_object_array_length(lines) : 0;
  for (size_t i = 0; i < n; i++) {
    json_object *line = json_object_array_get_idx(lines, i);
    json_object *partial = NULL;
    FILE *stream
        = strcmp(string_field(line, "stream"), "stderr") == 0 ? stderr : stdout;
    json_object *content = NULL;
    json_object_object_get_ex(line, "line", &content);
    fwrite(json_object_get_string(content), 1,
           (size_t)json_object_get_string_len(content), stream);
    if (!json_object_object_get_ex(line, "partial", &partial))
      fputc('\n', stream);
  }
  json_object_put(lines);
  flwd_free(text);
  return 0;
}
