/* flwd-httpd: the runs this server started, and their callbacks.
 *
 * The library keeps one event, output and done callback per run, so the
 * server sets them once per run and fans out to the run's follow streams
 * from here.
 *
 * Runs adopted by flwd_ctx_reconcile() have no entry here: the library
 * owns them, so their follow streams poll the store like those of runs of
 * another process. */
#include <stdlib.h>
#include <string.h>

#include <json-c/json.h>

#include "server.h"

static struct run_entry *
entry_new(struct server *srv, flwd_run *run)
{
  struct run_entry *entry = calloc(1, sizeof(*entry));
  if (entry == NULL)
    return NULL;
  entry->id = strdup(flwd_run_id(run));
  if (entry->id == NULL) {
    free(entry);
    return NULL;
  }
  entry->srv = srv;
  entry->run = run;
  clock_gettime(CLOCK_MONOTONIC, &entry->created);
  entry->next = srv->runs;
  if (srv->runs)
    srv->runs->prev = entry;
  srv->runs = entry;
  return entry;
}

static void
entry_free(struct run_entry *entry)
{
  struct server *srv = entry->srv;
  if (entry->prev)
    entry->prev->next = entry->next;
  else
    srv->runs = entry->next;
  if (entry->next)
    entry->next->prev = entry->prev;
  free(entry->id);
  free(entry);
}

static bool
event_has_type(const char *event, const char *type)
{
  json_object *doc = json_tokener_parse(event);
  json_object *value = NULL;
  bool match = json_object_object_get_ex(doc, "type", &value)
               && strcmp(json_object_get_string(value), type) == 0;
  json_object_put(doc);
  return match;
}

static void
on_event(flwd_run *run, const char *event, void *user)
{
  struct run_entry *entry = user;
  if (event_has_type(event, "image.pull_started"))
    entry->srv->metrics.image_pulls++;
  stream_pump_all(entry, STREAM_EVENTS, false);
}

static void
on_output(flwd_run *run, flwd_stream stream, const char *data, size_t len,
          void *user)
{
  stream_pump_all(user, STREAM_LOGS, false);
}

/* Ends ENTRY's streams, frees its run and removes the entry. */
static void
entry_finish(struct run_entry *entry)
{
  struct server *srv = entry->srv;
  log_msg(FLWD_LOG_INFO, "run %s ended %s", entry->id,
          flwd_run_state_name(flwd_run_get_state(entry->run)));
  metrics_observe_duration(&srv->metrics, elapsed_ms(&entry->created) / 1e3);
  stream_pump_all(entry, STREAM_EVENTS, true);
  flwd_run_free(entry->run);
  entry_free(entry);
}

static void
on_done(flwd_run *run, void *user)
{
  struct run_entry *entry = user;
  /* A run can end inside flwd_run_start(); runs_start() finishes it
   * after it has read the run. */
  if (entry->starting) {
    entry->ended_while_starting = true;
    return;
  }
  entry_finish(entry);
}

static void
set_callbacks(struct run_entry *entry)
{
  flwd_run_set_output_cb(entry->run, on_output, entry);
  flwd_run_set_done_cb(entry->run, on_done, entry);
  flwd_run_set_event_cb(entry->run, on_event, entry);
}

static int
set_idempotency(flwd_run *run, const char *key, const char *hash,
                flwd_error **err)
{
  if (key == NULL)
    return 0;
  int ret = flwd_run_set_metadata(run, "idempotency_key", key, err);
  if (ret == 0)
    ret = flwd_run_set_metadata(run, "request_hash", hash, err);
  return ret;
}

int
runs_start(struct server *srv, const flwd_job *job, const flwd_args *args,
           const char *idempotency_key, const char *request_hash,
           char **run_json, char **run_id, flwd_error **err)
{
  flwd_run *run = NULL;
  int ret = flwd_run_create(srv->ctx, job, args, &run, err);
  if (ret == 0)
    ret = set_idempotency(run, idempotency_key, request_hash, err);
  struct run_entry *entry = ret == 0 ? entry_new(srv, run) : NULL;
  if (entry == NULL) {
    flwd_run_free(run);
    return ret < 0 ? ret : -FLWD_E_INTERNAL;
  }
  set_callbacks(entry);

  entry->starting = true;
  ret = flwd_run_start(run, err);
  entry->starting = false;
  if (ret < 0) {
    entry_free(entry);
    flwd_run_free(run);
    return ret;
  }
  log_msg(FLWD_LOG_INFO, "run %s of job %s started", flwd_run_id(run),
          flwd_job_id(job));
  *run_json = flwd_run_to_json(run);
  *run_id = strdup(flwd_run_id(run));
  if (entry->ended_while_starting)
    entry_finish(entry);
  return 0;
}

struct run_entry *
runs_find(struct server *srv, const char *id)
{
  for (struct run_entry *entry = srv->runs; entry; entry = entry->next) {
    if (strcmp(entry->id, id) == 0)
      return entry;
  }
  return NULL;
}

int
runs_stored_final(flwd_ctx *ctx, const char *id, flwd_error **err)
{
  char *text = NULL;
  if (flwd_store_run_json(ctx, id, &text, err) < 0)
    return -1;
  json_object *run = json_tokener_parse(text);
  flwd_free(text);
  json_object *state = NULL;
  int final = 0;
  if (json_object_object_get_ex(run, "state", &state)) {
    const char *name = json_object_get_string(state);
    for (int i = FLWD_RUN_SUCCEEDED; i <= FLWD_RUN_ERROR; i++)
      final |= strcmp(name, flwd_run_state_name((flwd_run_state)i)) == 0;
  }
  json_object_put(run);
  return final;
}

/* Returns true when a run of the JSON array TEXT is active in CTX. */
static bool
any_listed_run_active(flwd_ctx *ctx, const char *text)
{
  json_object *runs = json_tokener_parse(text);
  bool active = false;
  size_t count = json_object_is_type(runs, json_type_array)
                     ? json_object_array_length(runs)
                     : 0;
  for (size_t i = 0; i < count && !active; i++) {
    json_object *id = NULL;
    json_object_object_get_ex(json_object_array_get_idx(runs, i), "id", &id);
    active = id && flwd_ctx_find_run(ctx, json_object_get_string(id));
  }
  json_object_put(runs);
  return active;
}

bool
runs_any_active(struct server *srv)
{
  if (srv->runs)
    return true;
  /* Runs adopted at start are active without an entry; the store lists
   * every unfinished run. */
  static const char *const unfinished[] = {"queued", "preparing", "running"};
  bool active = false;
  for (size_t i = 0; i < 3 && !active; i++) {
    char *text = NULL;
    flwd_error *err = NULL;
    if (flwd_store_runs_json(srv->ctx, NULL, unfinished[i], 1000, 0, &text,
                             &err)
        < 0) {
      /* Unknown counts as active: the caller then leaves runs alone. */
      flwd_error_free(err);
      return true;
    }
    active = any_listed_run_active(srv->ctx, text);
    flwd_free(text);
  }
  return active;
}

/* Forgets every run entry; for shutdown, after the context was abandoned
 * and with it the runs the entries point to. */
void
runs_forget_all(struct server *srv)
{
  while (srv->runs)
    entry_free(srv->runs);
}
