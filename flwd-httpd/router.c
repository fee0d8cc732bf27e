/* flwd-httpd: the route table, connection accounting, request limits and
 * authentication, applied to every request before its handler runs. */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/queue.h>

#include <event2/keyvalq_struct.h>

#include "server.h"

/* Maximum length of the {id} part of a path. */
#define ROUTE_ID_MAX 128

struct route {
  enum evhttp_cmd_type method;
  /* Literal path, where "{id}" matches one non-empty segment without ':'
   * and the text after "{id}" up to the next '/' must end that segment. */
  const char *pattern;
  handler_fn handler;
  bool public; /* served without a token */
};

static const struct route routes[] = {
    {EVHTTP_REQ_GET, "/healthz", handle_healthz, true},
    {EVHTTP_REQ_GET, "/metrics", handle_metrics, false},
    {EVHTTP_REQ_POST, "/runs", handle_runs_create, false},
    {EVHTTP_REQ_GET, "/runs", handle_runs_list, false},
    {EVHTTP_REQ_GET, "/runs/{id}", handle_run_get, false},
    {EVHTTP_REQ_GET, "/runs/{id}/events", handle_run_events, false},
    {EVHTTP_REQ_GET, "/runs/{id}/logs", handle_run_logs, false},
    {EVHTTP_REQ_POST, "/runs/{id}:cancel", handle_run_cancel, false},
    {EVHTTP_REQ_GET, "/jobs", handle_jobs_list, false},
    {EVHTTP_REQ_GET, "/jobs/{id}", handle_job_get, false},
    {EVHTTP_REQ_POST, "/plans", handle_plans_create, false},
};

#define ROUTE_COUNT (sizeof(routes) / sizeof(routes[0]))

static const char *
method_name(enum evhttp_cmd_type method)
{
  switch (method) {
    case EVHTTP_REQ_GET:
      return "GET";
    case EVHTTP_REQ_POST:
      return "POST";
    case EVHTTP_REQ_HEAD:
      return "HEAD";
    case EVHTTP_REQ_PUT:
      return "PUT";
    case EVHTTP_REQ_DELETE:
      return "DELETE";
    case EVHTTP_REQ_OPTIONS:
      return "OPTIONS";
    case EVHTTP_REQ_TRACE:
      return "TRACE";
    case EVHTTP_REQ_CONNECT:
      return "CONNECT";
    case EVHTTP_REQ_PATCH:
      return "PATCH";
  }
  return "UNKNOWN";
}

/* Matches PATH against PATTERN; on success copies the {id} part, if any,
 * into ID. */
static bool
path_matches(const char *pattern, const char *path, char id[ROUTE_ID_MAX])
{
  id[0] = '\0';
  while (*pattern) {
    if (strncmp(pattern, "{id}", 4) != 0) {
      if (*pattern++ != *path++)
        return false;
      continue;
    }
    pattern += 4;
    size_t suffix_len = strcspn(pattern, "/");
    size_t segment_len = strcspn(path, "/");
    size_t id_len = strcspn(path, "/:");
    if (id_len == 0 || id_len >= ROUTE_ID_MAX
        || id_len + suffix_len != segment_len
        || strncmp(path + id_len, pattern, suffix_len) != 0)
      return false;
    memcpy(id, path, id_len);
    id[id_len] = '\0';
    path += segment_len;
    pattern += suffix_len;
  }
  return *path == '\0';
}

/* Finds the route of R. Returns it, or NULL after replying 404 or 405. */
static const struct route *
find_route(struct request *r, enum evhttp_cmd_type method,
           char id[ROUTE_ID_MAX])
{
  char allow[64] = "";
  for (size_t i = 0; i < ROUTE_COUNT; i++) {
    if (!path_matches(routes[i].pattern, r->path, id))
      continue;
    if (routes[i].method == method)
      return &routes[i];
    if (allow[0])
      strcat(allow, ", ");
    strcat(allow, method_name(routes[i].method));
  }
  if (allow[0] == '\0') {
    reply_error(r, 404, FLWD_E_REQUEST_INVALID, "no endpoint %s %s", r->method,
                r->path);
    return NULL;
  }
  evhttp_add_header(evhttp_request_get_output_headers(r->req), "Allow", allow);
  reply_error(r, 405, FLWD_E_REQUEST_INVALID, "%s is not allowed on %s; use %s",
              r->method, r->path, allow);
  return NULL;
}

/* ---- Connections ------------------------------------------------------ */

static void
on_connection_close(struct evhttp_connection *evcon, void *arg)
{
  struct conn *conn = arg;
  struct server *srv = conn->srv;
  if (conn->stream)
    stream_drop(conn->stream);
  if (conn->prev)
    conn->prev->next = conn->next;
  else
    srv->conns = conn->next;
  if (conn->next)
    conn->next->prev = conn->prev;
  srv->conn_count--;
  free(conn);
}

/* Returns the record of R's connection, adding one at its first request.
 * Returns NULL when the server already serves --max-connections others.
 *
 * NOTE: libevent 2.1 has no hook for an accepted connection, so a
 * connection counts from its first complete request; until then only
 * --request-timeout bounds it. */
static struct conn *
track_connection(struct server *srv, struct evhttp_request *req)
{
  struct evhttp_connection *evcon = evhttp_request_get_connection(req);
  for (struct conn *c = srv->conns; c; c = c->next) {
    if (c->evcon == evcon)
      return c;
  }
  if (srv->conn_count >= srv->cfg.max_connections)
    return NULL;
  struct conn *conn = calloc(1, sizeof(*conn));
  if (conn == NULL)
    return NULL;
  conn->srv = srv;
  conn->evcon = evcon;
  conn->next = srv->conns;
  if (srv->conns)
    srv->conns->prev = conn;
  srv->conns = conn;
  srv->conn_count++;
  evhttp_connection_set_closecb(evcon, on_connection_close, conn);
  return conn;
}

/* ---- Limits and authentication ---------------------------------------- */

static bool
authorized(struct request *r)
{
  const char *header = evhttp_find_header(
      evhttp_request_get_input_headers(r->req), "Authorization");
  if (auth_check(&r->srv->tokens, header))
    return true;
  evhttp_add_header(evhttp_request_get_output_headers(r->req),
                    "WWW-Authenticate", "Bearer realm=\"flwd\"");
  reply_error(r, 401, FLWD_E_AUTH_UNAUTHORIZED,
              header ? "the bearer token is invalid"
                     : "missing Authorization header; send "
                       "'Authorization: Bearer TOKEN'");
  return false;
}

static bool
query_valid(const char *query)
{
  struct evkeyvalq params;
  TAILQ_INIT(&params);
  int ret = evhttp_parse_query_str(query, &params);
  evhttp_clear_headers(&params);
  return ret == 0;
}

/* Checks the limits of R that come before routing. Returns false after
 * replying. */
static bool
within_limits(struct request *r, const char *uri)
{
  if (r->conn == NULL) {
    evhttp_add_header(evhttp_request_get_output_headers(r->req), "Connection",
                      "close");
    reply_error(r, 503, FLWD_E_INTERNAL,
                "the server has %d connections open, its maximum; retry "
                "later",
                r->srv->cfg.max_connections);
    return false;
  }
  if (strlen(uri) > URI_MAX) {
    reply_error(r, 414, FLWD_E_REQUEST_INVALID,
                "the request URI is longer than %d bytes", URI_MAX);
    return false;
  }
  if (r->query && !query_valid(r->query)) {
    reply_error(r, 400, FLWD_E_REQUEST_INVALID,
                "the query string is not valid: expected NAME=VALUE pairs "
                "joined by '&'");
    return false;
  }
  return true;
}

void
router_dispatch(struct evhttp_request *req, void *arg)
{
  struct server *srv = arg;
  struct request r = {.srv = srv, .req = req};
  clock_gettime(CLOCK_MONOTONIC, &r.start);
  enum evhttp_cmd_type method = evhttp_request_get_command(req);
  r.method = method_name(method);
  const char *uri = evhttp_request_get_uri(req);
  const struct evhttp_uri *parsed = evhttp_request_get_evhttp_uri(req);
  r.path = parsed ? evhttp_uri_get_path(parsed) : NULL;
  r.query = parsed ? evhttp_uri_get_query(parsed) : NULL;
  if (r.path == NULL || r.path[0] == '\0')
    r.path = "/";
  r.conn = track_connection(srv, req);

  if (!within_limits(&r, uri ? uri : ""))
    return;
  char id[ROUTE_ID_MAX];
  const struct route *route = find_route(&r, method, id);
  if (route == NULL)
    return;
  if (!route->public && !authorized(&r))
    return;
  r.id = id[0] ? id : NULL;
  route->handler(&r);
}

char *
query_get(const struct request *r, const char *name)
{
  if (r->query == NULL)
    return NULL;
  struct evkeyvalq params;
  TAILQ_INIT(&params);
  if (evhttp_parse_query_str(r->query, &params) < 0)
    return NULL;
  const char *value = evhttp_find_header(&params, name);
  char *copy = value ? strdup(value) : NULL;
  evhttp_clear_headers(&params);
  return copy;
}
