/* libflwd: a run's events, stored log, result and record. */
#include <ctype.h>
#include <errno.h>
#include <fcntl.h>
#include <signal.h>
#include <stdio.h>
#include <string.h>
#include <sys/file.h>
#include <sys/stat.h>
#include <sys/uio.h>
#include <sys/wait.h>
#include <time.h>

#include "run-internal.h"

/* ---- Events ----------------------------------------------------------- */

/* Emits event TYPE with DATA (a new reference, or NULL for {}). */
void
emit(flwd_run *run, const char *type, json_object *data)
{
  char when[32];
  format_utc_now(when);
  cleanup_json json_object *event = json_object_new_object();
  json_object_object_add(event, "seq",
                         json_object_new_int64((int64_t)++run->seq));
  json_object_object_add(event, "time", json_object_new_string(when));
  json_object_object_add(event, "type", json_object_new_string(type));
  json_object_object_add(event, "data", data ? data : json_object_new_object());
  const char *text = json_object_to_json_string_ext(event, JSON_PLAIN);
  if (run->events)
    json_object_array_add(run->events, json_object_get(event));

  struct store *store = NULL;
  cleanup_error flwd_error *err = NULL;
  if (store_get(run->ctx, &store, &err) < 0
      || (store
          && store_add_event(store, run->id, (long long)run->seq, type, text,
                             &err)
                 < 0))
    ctx_log(run->ctx, FLWD_LOG_ERROR, "run %s: event %s not stored: %s",
            run->id, type, flwd_error_message(err));

  if (run->event_cb && !run->user_freed)
    run->event_cb(run, text, run->event_user);
}

json_object *
data_of(const char *key, const char *value)
{
  json_object *data = json_object_new_object();
  json_object_object_add(data, key, json_object_new_string(value));
  return data;
}

/* ---- Log, result and record ----------------------------------------- */

static void
write_log_line(flwd_run *run, char tag, const char *line, size_t len)
{
  if (run->log_fd < 0)
    return;
  if (run->log_bytes + (long long)len + 3 > run->ctx->log_max_bytes) {
    if (run->log_dropped == 0) {
      json_object *data = json_object_new_object();
      json_object_object_add(data, "max_bytes",
                             json_object_new_int64(run->ctx->log_max_bytes));
      emit(run, "log.truncated", data);
    }
    run->log_dropped += (long long)len + 1;
    return;
  }
  char prefix[2] = {tag, ' '};
  struct iovec iov[3] = {{prefix, 2}, {(void *)line, len}, {(void *)"\n", 1}};
  ssize_t n;
  do
    n = writev(run->log_fd, iov, 3);
  while (n < 0 && errno == EINTR);
  if (n < 0)
    ctx_log(run->ctx, FLWD_LOG_ERROR, "run %s: cannot write its log: %s",
            run->id, strerror(errno));
  else
    run->log_bytes += n;
}

/* Splits output into lines for the stored log, keeping each line's
 * stream. A line longer than the whole log cap is cut there. */
void
log_output(flwd_run *run, flwd_stream stream, const char *data, size_t len)
{
  int index = stream == FLWD_STREAM_STDOUT ? 0 : 1;
  char tag = index == 0 ? 'O' : 'E';
  struct buf *partial = &run->partial[index];
  while (len > 0) {
    const char *newline = memchr(data, '\n', len);
    size_t take = newline ? (size_t)(newline - data) : len;
    if ((long long)(partial->len + take) <= run->ctx->log_max_bytes)
      buf_append(partial, data, take);
    else
      run->log_dropped += (long long)take;
    if (newline == NULL)
      break;
    write_log_line(run, tag, partial->data ? partial->data : "", partial->len);
    partial->len = 0;
    data += take + 1;
    len -= take + 1;
  }
}

void
flush_partial_lines(flwd_run *run)
{
  static const char tags[2] = {'o', 'e'};
  for (int i = 0; i < 2; i++) {
    if (run->partial[i].len)
      write_log_line(run, tags[i], run->partial[i].data, run->partial[i].len);
    run->partial[i].len = 0;
  }
}

/* Reads out/result.json into the run's result. A file that is not a
 * regular file, too large or not valid JSON is recorded as invalid with
 * the reason, never dropped without a word. */
void
read_result(flwd_run *run)
{
  cleanup_free char *path = xasprintf("%s/out/result.json", run->host_dir);
  cleanup_close int fd
      = path ? open(path, O_RDONLY | O_CLOEXEC | O_NOFOLLOW | O_NONBLOCK) : -1;
  if (fd < 0 && errno == ENOENT)
    return;

  char *reason = NULL;
  struct stat st;
  struct buf text = {0};
  if (fd < 0 || fstat(fd, &st) < 0 || !S_ISREG(st.st_mode)) {
    reason = strdup("result.json is not a regular file");
  } else if (st.st_size > RESULT_MAX_BYTES) {
    reason = xasprintf("result.json is larger than %d bytes", RESULT_MAX_BYTES);
  } else {
    char chunk[16384];
    ssize_t n;
    while ((n = read(fd, chunk, sizeof(chunk))) > 0
           && text.len <= RESULT_MAX_BYTES)
      buf_append(&text, chunk, (size_t)n);
    json_tokener *tok = json_tokener_new();
    json_object *value
        = tok && text.data
              ? json_tokener_parse_ex(tok, text.data, (int)text.len)
              : NULL;
    bool complete = value && tok->char_offset == (int)text.len;
    if (complete)
      run->result = value;
    else {
      if (value)
        json_object_put(value);
      reason
          = xasprintf("result.json is not valid JSON: %s",
                      tok ? json_tokener_error_desc(json_tokener_get_error(tok))
                          : "out of memory");
    }
    if (tok)
      json_tokener_free(tok);
  }
  buf_clear(&text);
  if (reason) {
    run->result_error = reason;
    emit(run, "result.invalid", data_of("reason", reason));
  } else if (run->result) {
    emit(run, "result.recorded", NULL);
  }
}

static json_object *
nullable_string(const char *s)
{
  return s && *s ? json_object_new_string(s) : NULL;
}

char *
flwd_run_to_json(const flwd_run *run)
{
  cleanup_json json_object *obj = json_object_new_object();
  json_object_object_add(obj, "id", json_object_new_string(run->id));
  json_object_object_add(obj, "job", json_object_new_string(run->job->id));
  json_object_object_add(
      obj, "state", json_object_new_string(flwd_run_state_name(run->state)));
  json_object_object_add(
      obj, "exit_status",
      run->exit_status >= 0 ? json_object_new_int(run->exit_status) : NULL);
  json_object *error = NULL;
  if (run->error && run->state == FLWD_RUN_ERROR) {
    error = json_object_new_object();
    json_object_object_add(error, "code",
                           json_object_new_string(flwd_error_name(run->error)));
    json_object_object_add(error, "message",
                           json_object_new_string(run->error->message));
  }
  json_object_object_add(obj, "error", error);
  json_object *args = NULL;
  json_object_deep_copy(run->args->values, &args, NULL);
  json_object_object_add(obj, "args", args);
  json_object_object_add(obj, "result",
                         run->result ? json_object_get(run->result) : NULL);
  json_object_object_add(obj, "result_error",
                         nullable_string(run->result_error));
  json_object_object_add(obj, "created_at",
                         json_object_new_string(run->created_at));
  json_object_object_add(obj, "started_at", nullable_string(run->started_at));
  json_object_object_add(obj, "finished_at", nullable_string(run->finished_at));
  json_object_object_add(obj, "container",
                         json_object_new_string(run->container_name));
  json_object_object_add(
      obj, "runtime",
      run->planned ? json_object_new_string(run->plan.runtime->name) : NULL);
  json_object_object_add(obj, "metadata",
                         run->metadata ? json_object_get(run->metadata)
                                       : json_object_new_object());
  json_object_object_add(obj, "log_truncated",
                         json_object_new_boolean(run->log_dropped > 0));
  json_object_object_add(obj, "log_dropped_bytes",
                         json_object_new_int64(run->log_dropped));
  return json_to_string_owned(obj, JSON_PLAIN);
}

/* Writes the run's current document to the store. A failure is logged:
 * the run itself goes on, and its events still record what happened. */
void
record_run(flwd_run *run)
{
  struct store *store = NULL;
  cleanup_error flwd_error *err = NULL;
  cleanup_free char *doc = flwd_run_to_json(run);
  if (store_get(run->ctx, &store, &err) < 0
      || (store && doc
          && store_put_run(store, run->id, run->job->id,
                           flwd_run_state_name(run->state), run->created_at,
                           doc, &err)
                 < 0))
    ctx_log(run->ctx, FLWD_LOG_ERROR, "run %s: not recorded: %s", run->id,
            flwd_error_message(err));
}

flwd_run *
flwd_ctx_find_run(flwd_ctx *ctx, const char *id)
{
  for (flwd_run *run = ctx->runs; run; run = run->next) {
    if (strcmp(run->id, id) == 0)
      return run;
  }
  return NULL;
}
