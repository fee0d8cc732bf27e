/* flwd-httpd: the HTTP server over libflwd.
 *
 * One event loop runs everything: the listener, the requests, and every
 * run with its container processes. Runs use the library's detached mode,
 * so their containers outlive the server; at start the server reconciles
 * the run store with the runtime and adopts the runs still going. */
#include <errno.h>
#include <netinet/in.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>

#include <event2/event.h>

#include "server.h"

/* Maximum time a shutdown waits for open connections to close. */
static const struct timeval drain_max = {5, 0};
static const struct timeval drain_check = {0, 100 * 1000};

/* ---- Set-up ----------------------------------------------------------- */

static int
set_options(struct server *srv)
{
  const struct config *cfg = &srv->cfg;
  const struct {
    flwd_option option;
    const char *value;
  } options[] = {
      {FLWD_OPT_JOBS_PATH, cfg->jobs_dir},
      {FLWD_OPT_STATE_DIR, cfg->state_dir},
      {FLWD_OPT_RUNTIME, cfg->runtime},
      {FLWD_OPT_MAX_RUNS, cfg->max_runs},
      {FLWD_OPT_POLICY_FILE, cfg->policy},
      {FLWD_OPT_SECRETS_DIR, cfg->secrets_dir},
      /* Containers keep running when the server stops or crashes, and the
       * next start adopts them. */
      {FLWD_OPT_RUN_MODE, "detached"},
  };
  for (size_t i = 0; i < sizeof(options) / sizeof(options[0]); i++) {
    flwd_error *err = NULL;
    if (options[i].value == NULL
        || flwd_ctx_set_option(srv->ctx, options[i].option, options[i].value,
                               &err)
               == 0)
      continue;
    log_msg(FLWD_LOG_ERROR, "%s: %s", flwd_error_name(err),
            flwd_error_message(err));
    flwd_error_free(err);
    return -1;
  }
  return 0;
}

static int
setup_context(struct server *srv)
{
  flwd_error *err = NULL;
  if (flwd_ctx_new(srv->base, &srv->ctx, &err) < 0) {
    log_msg(FLWD_LOG_ERROR, "cannot create the flwd context: %s: %s",
            flwd_error_name(err), flwd_error_message(err));
    flwd_error_free(err);
    return -1;
  }
  flwd_ctx_set_log_cb(srv->ctx, log_library_cb, srv);
  if (set_options(srv) < 0)
    return -1;
  log_msg(FLWD_LOG_INFO,
          "flwd-httpd %s: runtime %s, state directory %s, jobs path %s, "
          "max runs %s",
          flwd_version_string(),
          flwd_ctx_get_option(srv->ctx, FLWD_OPT_RUNTIME),
          flwd_ctx_get_option(srv->ctx, FLWD_OPT_STATE_DIR),
          flwd_ctx_get_option(srv->ctx, FLWD_OPT_JOBS_PATH),
          flwd_ctx_get_option(srv->ctx, FLWD_OPT_MAX_RUNS));
  return 0;
}

/* Adopts the runs that a previous server left running. A failure is logged
 * and the server still starts, because the store stays readable. */
static void
reconcile(struct server *srv)
{
  flwd_error *err = NULL;
  int ret = flwd_ctx_reconcile(srv->ctx, &err);
  if (ret < 0) {
    log_msg(FLWD_LOG_ERROR, "reconciling the run store failed: %s: %s",
            flwd_error_name(err), flwd_error_message(err));
    flwd_error_free(err);
    return;
  }
  log_msg(FLWD_LOG_INFO, "reconciled the run store with the runtime "
                         "(flwd_ctx_reconcile returned 0)");
}

static void
log_listening(struct server *srv)
{
  struct sockaddr_storage addr;
  socklen_t len = sizeof(addr);
  int port = srv->cfg.listen_port;
  evutil_socket_t fd = evhttp_bound_socket_get_fd(srv->listener);
  if (getsockname(fd, (struct sockaddr *)&addr, &len) == 0) {
    if (addr.ss_family == AF_INET)
      port = ntohs(((struct sockaddr_in *)&addr)->sin_port);
    else if (addr.ss_family == AF_INET6)
      port = ntohs(((struct sockaddr_in6 *)&addr)->sin6_port);
  }
  bool v6 = strchr(srv->cfg.listen_host, ':') != NULL;
  log_msg(FLWD_LOG_INFO, "listening on %s%s%s:%d", v6 ? "[" : "",
          srv->cfg.listen_host, v6 ? "]" : "", port);
}

static int
setup_http(struct server *srv)
{
  const struct config *cfg = &srv->cfg;
  srv->http = evhttp_new(srv->base);
  if (srv->http == NULL)
    return -1;
  /* NOTE: evhttp itself replies to a body over the limit with 413, and to
   * a request line or headers over theirs with 400. libevent 2.1 calls no
   * handler for them, so those replies have its HTML page, not JSON. */
  evhttp_set_max_body_size(srv->http, (ev_ssize_t)cfg->max_body);
  evhttp_set_max_headers_size(srv->http, (ev_ssize_t)cfg->max_headers);
  evhttp_set_timeout(srv->http, cfg->request_timeout);
  /* Every method reaches the router, which replies 405 with JSON. */
  evhttp_set_allowed_methods(srv->http,
                             EVHTTP_REQ_GET | EVHTTP_REQ_POST | EVHTTP_REQ_HEAD
                                 | EVHTTP_REQ_PUT | EVHTTP_REQ_DELETE
                                 | EVHTTP_REQ_OPTIONS | EVHTTP_REQ_PATCH);
  evhttp_set_gencb(srv->http, router_dispatch, srv);

  srv->listener = evhttp_bind_socket_with_handle(srv->http, cfg->listen_host,
                                                 (ev_uint16_t)cfg->listen_port);
  if (srv->listener == NULL) {
    log_msg(FLWD_LOG_ERROR, "cannot listen on %s port %d: %s", cfg->listen_host,
            cfg->listen_port, strerror(errno));
    return -1;
  }
  log_listening(srv);
  return 0;
}

/* ---- Shutdown --------------------------------------------------------- */

static void
on_drain_check(evutil_socket_t fd, short what, void *arg)
{
  struct server *srv = arg;
  if (srv->conn_count == 0)
    event_base_loopbreak(srv->base);
}

static void
on_drain_timeout(evutil_socket_t fd, short what, void *arg)
{
  struct server *srv = arg;
  log_msg(FLWD_LOG_WARNING,
          "%d connections still open after the shutdown "
          "grace period; closing them",
          srv->conn_count);
  event_base_loopbreak(srv->base);
}

/* Stops accepting connections and runs, ends the follow streams, and lets
 * open connections finish for at most drain_max. Runs keep going. */
static void
begin_shutdown(struct server *srv, int sig)
{
  srv->shutting_down = true;
  log_msg(FLWD_LOG_INFO,
          "received %s: stopping; active runs keep running and are adopted "
          "at the next start",
          strsignal(sig));
  if (srv->listener)
    evhttp_del_accept_socket(srv->http, srv->listener);
  srv->listener = NULL;
  stream_end_all(srv);

  srv->drain_event = event_new(srv->base, -1, EV_PERSIST, on_drain_check, srv);
  struct event *timeout = evtimer_new(srv->base, on_drain_timeout, srv);
  srv->drain_timeout_event = timeout;
  if (srv->drain_event == NULL || timeout == NULL) {
    event_base_loopbreak(srv->base);
    return;
  }
  event_add(srv->drain_event, &drain_check);
  event_add(timeout, &drain_max);
}

static void
on_stop_signal(evutil_socket_t sig, short what, void *arg)
{
  struct server *srv = arg;
  if (!srv->shutting_down) {
    begin_shutdown(srv, (int)sig);
    return;
  }
  log_msg(FLWD_LOG_WARNING, "received %s again: stopping now",
          strsignal((int)sig));
  event_base_loopbreak(srv->base);
}

static int
setup_signals(struct server *srv)
{
  static const int stop_signals[2] = {SIGTERM, SIGINT};
  signal(SIGPIPE, SIG_IGN);
  for (size_t i = 0; i < 2; i++) {
    srv->signal_events[i]
        = evsignal_new(srv->base, stop_signals[i], on_stop_signal, srv);
    if (srv->signal_events[i] == NULL
        || event_add(srv->signal_events[i], NULL) < 0)
      return -1;
  }
  return 0;
}

/* Releases what the server holds. Active runs are left running in their
 * containers: flwd_ctx_abandon() frees the context without stopping them,
 * and the next start adopts them. */
static void
teardown(struct server *srv)
{
  if (srv->http)
    evhttp_free(srv->http);
  srv->http = NULL;
  for (size_t i = 0; i < 2; i++) {
    if (srv->signal_events[i])
      event_free(srv->signal_events[i]);
  }
  if (srv->drain_event)
    event_free(srv->drain_event);
  if (srv->drain_timeout_event)
    event_free(srv->drain_timeout_event);
  /* Adopted runs are not in the server's own list, so the context is
   * always abandoned rather than freed, which would cancel them. */
  if (srv->ctx && runs_any_active(srv))
    log_msg(FLWD_LOG_INFO, "leaving the active runs to the next start");
  flwd_ctx_abandon(srv->ctx);
  srv->ctx = NULL;
  runs_forget_all(srv);
  if (srv->base)
    event_base_free(srv->base);
  srv->base = NULL;
  auth_clear(&srv->tokens);
  config_clear(&srv->cfg);
}

/* ---- Main ------------------------------------------------------------- */

static int
start(struct server *srv)
{
  if (srv->cfg.dev && !config_host_is_loopback(srv->cfg.listen_host)) {
    log_msg(FLWD_LOG_ERROR,
            "--dev is only allowed on a loopback address, not on '%s'; "
            "listen on 127.0.0.1 or configure a real token",
            srv->cfg.listen_host);
    return EXIT_USAGE;
  }
  if (auth_load(&srv->tokens, &srv->cfg) < 0)
    return EXIT_USAGE;
  srv->base = event_base_new();
  if (srv->base == NULL) {
    log_msg(FLWD_LOG_ERROR, "cannot create the event loop");
    return EXIT_RUNTIME_FAILURE;
  }
  if (setup_context(srv) < 0)
    return EXIT_USAGE;
  reconcile(srv);
  if (setup_http(srv) < 0 || setup_signals(srv) < 0)
    return EXIT_RUNTIME_FAILURE;
  return 0;
}

int
main(int argc, char **argv)
{
  struct server srv = {0};
  int status = 0;
  if (config_parse(&srv.cfg, argc, argv, &status) < 0) {
    config_clear(&srv.cfg);
    return status;
  }
  status = start(&srv);
  if (status == 0 && event_base_dispatch(srv.base) < 0) {
    log_msg(FLWD_LOG_ERROR, "the event loop failed");
    status = EXIT_RUNTIME_FAILURE;
  }
  teardown(&srv);
  log_msg(FLWD_LOG_INFO, "stopped");
  return status;
}
