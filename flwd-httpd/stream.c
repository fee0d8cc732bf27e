/* flwd-httpd: follow streams of a run's events or logs as Server-Sent
 * Events.
 *
 * A stream first sends what the store contains after the client's position,
 * then what arrives. For a run active in this process the run's callbacks
 * wake the stream; the library records each event and log line in the
 * store before it calls them, so every wake-up reads the store again past
 * the last item sent. Any other run, such as one adopted at start or one
 * of another process, is polled instead.
 * Either way the store is the one source of what is sent, which keeps the
 * order and avoids duplicates. */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <event2/buffer.h>
#include <event2/bufferevent.h>
#include <event2/keyvalq_struct.h>
#include <json-c/json.h>

#include "server.h"

/* Poll period for a run that is not active in this process. */
static const struct timeval poll_interval = {0, 500 * 1000};
/* Period of the comment lines that keep an idle stream alive and let the
 * server notice a client that went away. */
static const struct timeval heartbeat_interval = {15, 0};

struct stream {
  struct server *srv;
  struct evhttp_request *req;
  struct conn *conn;
  struct run_entry *entry; /* NULL while the stream polls the store */
  enum stream_kind kind;
  char *run_id;
  char *path;          /* for the access log line */
  long long last;      /* last sequence number or line number sent */
  struct event *timer; /* poll or heartbeat */
  size_t bytes;
  struct timespec start;
  struct stream *prev, *next;             /* in srv->streams */
  struct stream *entry_prev, *entry_next; /* in entry->streams */
};

/* ---- Lists ------------------------------------------------------------ */

static void
attach_to_entry(struct stream *s, struct run_entry *entry)
{
  s->entry = entry;
  s->entry_prev = NULL;
  s->entry_next = entry->streams;
  if (entry->streams)
    entry->streams->entry_prev = s;
  entry->streams = s;
}

static void
detach_from_entry(struct stream *s)
{
  if (s->entry == NULL)
    return;
  if (s->entry_prev)
    s->entry_prev->entry_next = s->entry_next;
  else
    s->entry->streams = s->entry_next;
  if (s->entry_next)
    s->entry_next->entry_prev = s->entry_prev;
  s->entry = NULL;
}

static void
unlink_stream(struct stream *s)
{
  detach_from_entry(s);
  if (s->prev)
    s->prev->next = s->next;
  else
    s->srv->streams = s->next;
  if (s->next)
    s->next->prev = s->prev;
  if (s->conn)
    s->conn->stream = NULL;
  if (s->timer)
    event_free(s->timer);
  s->timer = NULL;
}

static void
log_stream_end(struct stream *s)
{
  struct request r
      = {.srv = s->srv, .method = "GET", .path = s->path, .start = s->start};
  reply_log(&r, 200, s->bytes);
}

static void
stream_free(struct stream *s)
{
  free(s->run_id);
  free(s->path);
  free(s);
}

/* Sets the timeouts of S's connection. While a stream is open the client
 * sends nothing, so only a stalled write times out. Afterwards the
 * connection gets back --request-timeout for both directions. */
static void
set_stream_timeouts(struct stream *s, bool streaming)
{
  struct bufferevent *bev = evhttp_connection_get_bufferevent(
      evhttp_request_get_connection(s->req));
  struct timeval timeout = {s->srv->cfg.request_timeout, 0};
  if (bev)
    bufferevent_set_timeouts(bev, streaming ? NULL : &timeout, &timeout);
}

/* Ends S: sends the last chunk and releases it. */
static void
stream_finish(struct stream *s)
{
  unlink_stream(s);
  set_stream_timeouts(s, false);
  evhttp_send_reply_end(s->req);
  log_stream_end(s);
  stream_free(s);
}

void
stream_drop(struct stream *s)
{
  /* evhttp frees the request with its connection; only forget it. */
  s->conn = NULL;
  unlink_stream(s);
  log_msg(FLWD_LOG_INFO, "follow stream of run %s closed by the client",
          s->run_id);
  log_stream_end(s);
  stream_free(s);
}

/* ---- Sending ---------------------------------------------------------- */

static void
send_text(struct stream *s, const char *text, size_t len)
{
  struct evbuffer *buf = evbuffer_new();
  if (buf == NULL)
    return;
  evbuffer_add(buf, text, len);
  evhttp_send_reply_chunk(s->req, buf);
  evbuffer_free(buf);
  s->bytes += len;
}

static void
send_item(struct stream *s, long long id, json_object *item)
{
  char *text = NULL;
  int n = asprintf(
      &text, "id: %lld\ndata: %s\n\n", id,
      json_object_to_json_string_ext(
          item, JSON_C_TO_STRING_PLAIN | JSON_C_TO_STRING_NOSLASHESCAPE));
  if (n > 0)
    send_text(s, text, (size_t)n);
  free(text);
}

static long long
member_int(json_object *item, const char *key)
{
  json_object *value = NULL;
  json_object_object_get_ex(item, key, &value);
  return value ? (long long)json_object_get_int64(value) : -1;
}

static bool
member_is(json_object *item, const char *key, const char *expected)
{
  json_object *value = NULL;
  return json_object_object_get_ex(item, key, &value)
         && json_object_is_type(value, json_type_string)
         && strcmp(json_object_get_string(value), expected) == 0;
}

static bool
member_is_true(json_object *item, const char *key)
{
  json_object *value = NULL;
  return json_object_object_get_ex(item, key, &value)
         && json_object_get_boolean(value);
}

/* Reads the items past S's position from the store into *ITEMS. */
static int
read_items(struct stream *s, json_object **items)
{
  char *text = NULL;
  flwd_error *err = NULL;
  int ret = s->kind == STREAM_EVENTS
                ? flwd_store_events_json(s->srv->ctx, s->run_id, s->last, &text,
                                         &err)
                : flwd_store_logs_json(s->srv->ctx, s->run_id, s->last, &text,
                                       &err);
  if (ret < 0) {
    log_msg(FLWD_LOG_ERROR, "follow stream of run %s: %s: %s", s->run_id,
            flwd_error_name(err), flwd_error_message(err));
    flwd_error_free(err);
    return -1;
  }
  *items = json_tokener_parse(text);
  flwd_free(text);
  return json_object_is_type(*items, json_type_array) ? 0 : -1;
}

/* Sends what the store contains past S's position. A log line still without
 * its newline waits unless FINAL. Returns true when the stream is done:
 * after the run.finished event, after the logs of a FINAL run, or after a
 * store failure. */
static bool
pump(struct stream *s, bool final)
{
  json_object *items = NULL;
  if (read_items(s, &items) < 0) {
    json_object_put(items);
    return true;
  }
  bool done = final;
  const char *key = s->kind == STREAM_EVENTS ? "seq" : "n";
  size_t count = json_object_array_length(items);
  for (size_t i = 0; i < count; i++) {
    json_object *item = json_object_array_get_idx(items, i);
    if (s->kind == STREAM_LOGS && !final && member_is_true(item, "partial"))
      break;
    long long id = member_int(item, key);
    if (id <= s->last)
      continue;
    send_item(s, id, item);
    s->last = id;
    if (s->kind == STREAM_EVENTS && member_is(item, "type", "run.finished"))
      done = true;
  }
  json_object_put(items);
  return done;
}

/* ---- Life cycle ------------------------------------------------------- */

static void
on_poll(evutil_socket_t fd, short what, void *arg)
{
  struct stream *s = arg;
  flwd_error *err = NULL;
  int final = runs_stored_final(s->srv->ctx, s->run_id, &err);
  if (final < 0) {
    log_msg(FLWD_LOG_ERROR, "follow stream of run %s: %s: %s", s->run_id,
            flwd_error_name(err), flwd_error_message(err));
    flwd_error_free(err);
  }
  if (pump(s, final != 0))
    stream_finish(s);
}

static void
on_heartbeat(evutil_socket_t fd, short what, void *arg)
{
  static const char comment[] = ": keep-alive\n\n";
  send_text(arg, comment, sizeof(comment) - 1);
}

static struct stream *
stream_new(struct request *r, enum stream_kind kind, long long after)
{
  struct stream *s = calloc(1, sizeof(*s));
  if (s == NULL)
    return NULL;
  s->srv = r->srv;
  s->req = r->req;
  s->conn = r->conn;
  s->kind = kind;
  s->last = after;
  s->start = r->start;
  s->run_id = strdup(r->id);
  s->path = strdup(r->path);
  if (s->run_id == NULL || s->path == NULL) {
    stream_free(s);
    return NULL;
  }
  return s;
}

static void
send_headers(struct request *r)
{
  struct evkeyvalq *headers = evhttp_request_get_output_headers(r->req);
  evhttp_add_header(headers, "Content-Type", "text/event-stream");
  evhttp_add_header(headers, "Cache-Control", "no-store");
  evhttp_add_header(headers, "X-Content-Type-Options", "nosniff");
  evhttp_send_reply_start(r->req, 200, "OK");
}

/* Arms S's timer: a heartbeat while ENTRY's callbacks wake it, else the
 * store poll. */
static int
arm_timer(struct stream *s, struct run_entry *entry)
{
  bool poll = entry == NULL;
  s->timer = event_new(s->srv->base, -1, EV_PERSIST,
                       poll ? on_poll : on_heartbeat, s);
  if (s->timer == NULL)
    return -1;
  return event_add(s->timer, poll ? &poll_interval : &heartbeat_interval);
}

void
stream_start(struct request *r, enum stream_kind kind, long long after)
{
  flwd_error *err = NULL;
  int final = runs_stored_final(r->srv->ctx, r->id, &err);
  if (final < 0) {
    reply_flwd_error(r, err);
    flwd_error_free(err);
    return;
  }
  struct stream *s = stream_new(r, kind, after);
  if (s == NULL) {
    reply_error(r, 500, FLWD_E_INTERNAL, "out of memory");
    return;
  }
  send_headers(r);
  set_stream_timeouts(s, true);
  s->next = r->srv->streams;
  if (s->next)
    s->next->prev = s;
  r->srv->streams = s;
  r->conn->stream = s;

  struct run_entry *entry = final ? NULL : runs_find(r->srv, r->id);
  if (pump(s, final) || arm_timer(s, entry) < 0) {
    stream_finish(s);
    return;
  }
  if (entry)
    attach_to_entry(s, entry);
}

void
stream_pump_all(struct run_entry *entry, enum stream_kind kind, bool final)
{
  struct stream *next;
  for (struct stream *s = entry->streams; s; s = next) {
    next = s->entry_next;
    if ((final || s->kind == kind) && pump(s, final))
      stream_finish(s);
  }
}

void
stream_end_all(struct server *srv)
{
  while (srv->streams)
    stream_finish(srv->streams);
}
