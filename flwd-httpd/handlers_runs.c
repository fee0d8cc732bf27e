/* flwd-httpd: the /runs endpoints. */
#include <ctype.h>
#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <event2/keyvalq_struct.h>
#include <json-c/json.h>

#include "server.h"

/* Maximum length of an Idempotency-Key header value. */
#define IDEMPOTENCY_KEY_MAX 255

static const long long runs_limit_default = 50;
static const long long runs_limit_max = 1000;

/* Run ids are letters and digits; anything else cannot name a run. */
static bool
run_id_valid(const char *id)
{
  size_t len = strlen(id);
  if (len == 0 || len > 64)
    return false;
  for (size_t i = 0; i < len; i++) {
    if (!isalnum((unsigned char)id[i]))
      return false;
  }
  return true;
}

static bool
check_run_id(struct request *r)
{
  if (run_id_valid(r->id))
    return true;
  reply_error(r, 404, FLWD_E_RUN_NOT_FOUND, "no run '%s'", r->id);
  return false;
}

/* Reads integer query parameter NAME of R into *OUT, DEFAULT when absent.
 * Returns false after replying 400. */
static bool
query_int(struct request *r, const char *name, long long min, long long max,
          long long fallback, long long *out)
{
  char *text = query_get(r, name);
  *out = fallback;
  if (text == NULL)
    return true;
  char *end = NULL;
  errno = 0;
  long long value = strtoll(text, &end, 10);
  bool valid = errno == 0 && end != text && *end == '\0' && value >= min
               && value <= max;
  if (valid)
    *out = value;
  else
    reply_error(r, 400, FLWD_E_REQUEST_INVALID,
                "invalid %s '%s': expected an integer from %lld to %lld", name,
                text, min, max);
  free(text);
  return valid;
}

/* Reads boolean query parameter NAME: "true" or "1", "false" or "0". */
static bool
query_bool(struct request *r, const char *name, bool *out)
{
  char *text = query_get(r, name);
  *out = false;
  if (text == NULL)
    return true;
  bool valid = true;
  if (strcmp(text, "true") == 0 || strcmp(text, "1") == 0)
    *out = true;
  else if (strcmp(text, "false") != 0 && strcmp(text, "0") != 0)
    valid = false;
  if (!valid)
    reply_error(r, 400, FLWD_E_REQUEST_INVALID,
                "invalid %s '%s': expected true or false", name, text);
  free(text);
  return valid;
}

static bool
state_name_valid(const char *name)
{
  for (int i = FLWD_RUN_QUEUED; i <= FLWD_RUN_ERROR; i++) {
    if (strcmp(name, flwd_run_state_name((flwd_run_state)i)) == 0)
      return true;
  }
  return false;
}

/* ---- POST /runs ------------------------------------------------------- */

/* Returns the Idempotency-Key of R in *KEY (NULL without one). Returns
 * false after replying 400 for an invalid key. */
static bool
idempotency_key(struct request *r, const char **key)
{
  *key = evhttp_find_header(evhttp_request_get_input_headers(r->req),
                            "Idempotency-Key");
  if (*key == NULL)
    return true;
  size_t len = strlen(*key);
  bool valid = len > 0 && len <= IDEMPOTENCY_KEY_MAX;
  for (size_t i = 0; valid && i < len; i++)
    valid = (*key)[i] >= 0x21 && (*key)[i] <= 0x7e;
  if (!valid)
    reply_error(r, 400, FLWD_E_REQUEST_INVALID,
                "invalid Idempotency-Key: expected 1 to %d visible ASCII "
                "characters",
                IDEMPOTENCY_KEY_MAX);
  return valid;
}

/* Hashes the job id and the bound arguments, which the library writes in
 * the job's declared order with defaults applied, so that bodies that
 * differ only in member order, spacing or spelled-out defaults match. */
static void
request_hash(const flwd_job *job, const flwd_args *args, char hex[65])
{
  char *bound = flwd_args_to_json(args);
  char *canonical = NULL;
  if (asprintf(&canonical, "%s\n%s", flwd_job_id(job), bound ? bound : "") < 0)
    canonical = NULL;
  sha256_hex(canonical ? canonical : "", canonical ? strlen(canonical) : 0,
             hex);
  free(canonical);
  flwd_free(bound);
}

static void
set_location(struct request *r, const char *id)
{
  char location[128];
  snprintf(location, sizeof(location), "/runs/%s", id);
  evhttp_add_header(evhttp_request_get_output_headers(r->req), "Location",
                    location);
}

/* Replies with the run first created with KEY when there is one: 200 for
 * the same request hash, 409 for another. Returns false when there is
 * none and the request goes on. */
static bool
replay_idempotent(struct request *r, const char *key, const char *hash)
{
  char *text = NULL;
  flwd_error *err = NULL;
  if (flwd_store_find_by_metadata(r->srv->ctx, "idempotency_key", key, &text,
                                  &err)
      < 0) {
    bool missing = flwd_error_code(err) == FLWD_E_RUN_NOT_FOUND;
    if (!missing)
      reply_flwd_error(r, err);
    flwd_error_free(err);
    return !missing;
  }
  json_object *run = json_tokener_parse(text);
  json_object *metadata = NULL, *stored = NULL, *id = NULL;
  json_object_object_get_ex(run, "metadata", &metadata);
  json_object_object_get_ex(metadata, "request_hash", &stored);
  json_object_object_get_ex(run, "id", &id);
  if (stored && strcmp(json_object_get_string(stored), hash) == 0) {
    set_location(r, json_object_get_string(id));
    reply_json(r, 200, text);
  } else {
    reply_error(r, 409, FLWD_E_REQUEST_INVALID,
                "Idempotency-Key '%s' was used for run %s with a different "
                "request body; use a new key",
                key, id ? json_object_get_string(id) : "?");
  }
  json_object_put(run);
  flwd_free(text);
  return true;
}

static void
create_run(struct request *r, const flwd_job *job, const flwd_args *args,
           const char *key, const char *hash)
{
  char *json = NULL;
  char *id = NULL;
  flwd_error *err = NULL;
  if (runs_start(r->srv, job, args, key, hash, &json, &id, &err) < 0) {
    if (err)
      reply_flwd_error(r, err);
    else
      reply_error(r, 500, FLWD_E_INTERNAL,
                  "cannot start the run: out of "
                  "memory");
    flwd_error_free(err);
    return;
  }
  if (id)
    set_location(r, id);
  reply_json(r, 201, json ? json : "{}");
  flwd_free(json);
  free(id);
}

void
handle_runs_create(struct request *r)
{
  if (r->srv->shutting_down) {
    reply_error(r, 503, FLWD_E_INTERNAL,
                "the server is shutting down and starts no new runs; retry "
                "after it has restarted");
    return;
  }
  const char *key = NULL;
  if (!idempotency_key(r, &key))
    return;
  flwd_job *job = NULL;
  flwd_args *args = NULL;
  if (parse_job_request(r, &job, &args) < 0)
    return;
  char hash[65];
  request_hash(job, args, hash);
  if (key == NULL || !replay_idempotent(r, key, hash))
    create_run(r, job, args, key, hash);
  flwd_args_free(args);
  flwd_job_free(job);
}

/* ---- GET /runs, /runs/{id}, events and logs --------------------------- */

void
handle_runs_list(struct request *r)
{
  long long limit, offset;
  if (!query_int(r, "limit", 1, runs_limit_max, runs_limit_default, &limit)
      || !query_int(r, "offset", 0, 1LL << 40, 0, &offset))
    return;
  char *job = query_get(r, "job");
  char *state = query_get(r, "state");
  if (state && !state_name_valid(state)) {
    reply_error(r, 400, FLWD_E_REQUEST_INVALID,
                "invalid state '%s': expected queued, preparing, running, "
                "succeeded, failed, cancelled, timed_out or error",
                state);
  } else {
    char *text = NULL;
    flwd_error *err = NULL;
    if (flwd_store_runs_json(r->srv->ctx, job, state, (size_t)limit,
                             (size_t)offset, &text, &err)
        < 0)
      reply_flwd_error(r, err);
    else
      reply_wrapped(r, 200, "runs", text);
    flwd_error_free(err);
    flwd_free(text);
  }
  free(job);
  free(state);
}

void
handle_run_get(struct request *r)
{
  if (!check_run_id(r))
    return;
  char *text = NULL;
  flwd_error *err = NULL;
  if (flwd_store_run_json(r->srv->ctx, r->id, &text, &err) < 0)
    reply_flwd_error(r, err);
  else
    reply_json(r, 200, text);
  flwd_error_free(err);
  flwd_free(text);
}

/* Replies to GET /runs/{id}/events or /logs: the stored items after the
 * "after" position as {"KEY": [...]}, or a stream with follow=true. */
static void
answer_items(struct request *r, enum stream_kind kind, const char *key)
{
  long long after;
  bool follow;
  if (!check_run_id(r) || !query_int(r, "after", 0, 1LL << 62, 0, &after)
      || !query_bool(r, "follow", &follow))
    return;
  if (follow) {
    stream_start(r, kind, after);
    return;
  }
  char *text = NULL;
  flwd_error *err = NULL;
  int ret = kind == STREAM_EVENTS
                ? flwd_store_events_json(r->srv->ctx, r->id, after, &text, &err)
                : flwd_store_logs_json(r->srv->ctx, r->id, after, &text, &err);
  if (ret < 0)
    reply_flwd_error(r, err);
  else
    reply_wrapped(r, 200, key, text);
  flwd_error_free(err);
  flwd_free(text);
}

void
handle_run_events(struct request *r)
{
  answer_items(r, STREAM_EVENTS, "events");
}

void
handle_run_logs(struct request *r)
{
  answer_items(r, STREAM_LOGS, "lines");
}

/* ---- POST /runs/{id}:cancel ------------------------------------------- */

/* Replies to a cancel that the library rejected with ERR. A run unknown
 * to the context may still be in the store: a finished one gives 409. */
static void
reply_cancel_error(struct request *r, const flwd_error *err)
{
  flwd_code code = flwd_error_code(err);
  if (code == FLWD_E_REQUEST_INVALID) {
    reply_error(r, 409, FLWD_E_REQUEST_INVALID, "%s", flwd_error_message(err));
    return;
  }
  if (code != FLWD_E_RUN_NOT_FOUND) {
    reply_flwd_error(r, err);
    return;
  }
  flwd_error *store_err = NULL;
  int final = runs_stored_final(r->srv->ctx, r->id, &store_err);
  if (final < 0)
    reply_flwd_error(r, err);
  else if (final)
    reply_error(r, 409, FLWD_E_RUN_FINISHED, "run %s has already finished",
                r->id);
  else
    reply_error(r, 409, FLWD_E_REQUEST_INVALID,
                "run %s is not active in this server; another process runs "
                "it",
                r->id);
  flwd_error_free(store_err);
}

void
handle_run_cancel(struct request *r)
{
  if (!check_run_id(r))
    return;
  flwd_error *err = NULL;
  if (flwd_ctx_cancel_run(r->srv->ctx, r->id, &err) < 0) {
    reply_cancel_error(r, err);
    flwd_error_free(err);
    return;
  }
  log_msg(FLWD_LOG_INFO, "run %s: cancel requested", r->id);
  flwd_run *run = flwd_ctx_find_run(r->srv->ctx, r->id);
  char *text = NULL;
  if (run)
    text = flwd_run_to_json(run);
  else if (flwd_store_run_json(r->srv->ctx, r->id, &text, &err) < 0)
    flwd_error_free(err);
  reply_json(r, 202, text ? text : "{}");
  flwd_free(text);
}
