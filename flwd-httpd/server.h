/* flwd-httpd: declarations shared by the server's files. */
#ifndef FLWD_HTTPD_SERVER_H
#define FLWD_HTTPD_SERVER_H

#include <stdarg.h>
#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>
#include <time.h>

#include <event2/event.h>
#include <event2/http.h>

#include <flwd/flwd.h>

/* Exit statuses of flwd-httpd. */
enum {
  EXIT_RUNTIME_FAILURE = 1, /* the server could not start or keep running */
  EXIT_USAGE = 2,           /* invalid options or configuration */
};

/* Maximum length of one bearer token in bytes. Every comparison runs over
 * this many bytes, so its time does not depend on the token's length. */
#define TOKEN_MAX 256

/* Maximum length of a request's URI, query included; longer ones get 414. */
#define URI_MAX 4096

/* ---- Logging (log.c) -------------------------------------------------- */

void log_msg(flwd_log_level level, const char *fmt, ...)
    __attribute__((format(printf, 2, 3)));

/* Receives the library's log records and writes them with log_msg(). */
void log_library_cb(flwd_log_level level, const char *message, void *user);

/* ---- Configuration (config.c) ----------------------------------------- */

struct config {
  char *listen_host;       /* address to bind, owned */
  int listen_port;         /* 0 lets the kernel pick a free port */
  const char *jobs_dir;    /* NULL: FLWD_JOBS_PATH or the library default */
  const char *state_dir;   /* NULL: FLWD_STATE_DIR or the library default */
  const char *runtime;     /* NULL: FLWD_RUNTIME or "auto" */
  const char *token_file;  /* NULL: no token file */
  const char *max_runs;    /* decimal text handed to FLWD_OPT_MAX_RUNS */
  const char *policy;      /* NULL: FLWD_POLICY or no policy */
  const char *secrets_dir; /* NULL: FLWD_SECRETS_DIR or none */
  bool dev;                /* accept "dev-token" on a loopback address */
  size_t max_body;         /* maximum request body in bytes */
  size_t max_headers;      /* maximum request line and headers in bytes */
  int max_connections;     /* maximum connections served at once */
  int request_timeout;     /* seconds a connection may stay silent */
};

/* Parses the command line into CFG. Returns 0 to go on, -1 when the
 * server must exit with *STATUS (after printing help or an error). */
int config_parse(struct config *cfg, int argc, char **argv, int *status);

void config_clear(struct config *cfg);

/* Returns true when HOST is a loopback address (127.0.0.0/8, ::1) or
 * "localhost". */
bool config_host_is_loopback(const char *host);

/* ---- Authentication (auth.c) ------------------------------------------ */

struct token {
  unsigned char bytes[TOKEN_MAX]; /* zero-padded */
  size_t len;
};

struct tokens {
  struct token *items;
  size_t count;
};

/* Loads the tokens of CFG: the token file, FLWD_TOKEN, and "dev-token"
 * with --dev. Returns 0, or -1 after logging why the server cannot start. */
int auth_load(struct tokens *tokens, const struct config *cfg);

void auth_clear(struct tokens *tokens);

/* Returns true when HEADER, an Authorization header value or NULL, is
 * "Bearer TOKEN" with a configured TOKEN. */
bool auth_check(const struct tokens *tokens, const char *header);

/* ---- Metrics (metrics.c) ---------------------------------------------- */

/* Number of buckets of the run duration histogram, +Inf not counted. */
#define DURATION_BUCKET_COUNT 12

struct metrics {
  uint64_t requests_by_status[600];
  uint64_t duration_buckets[DURATION_BUCKET_COUNT];
  uint64_t duration_count;
  double duration_sum;
  uint64_t image_pulls;
};

void metrics_count_request(struct metrics *metrics, int status);
void metrics_observe_duration(struct metrics *metrics, double seconds);

/* Returns the Prometheus text of METRICS and of the stored runs by state
 * from STORE_COUNTS (a JSON object, or NULL when it could not be read);
 * free with free(). */
char *metrics_render(const struct metrics *metrics, const char *store_counts);

/* ---- Server state ----------------------------------------------------- */

struct stream;
struct run_entry;

enum stream_kind { STREAM_EVENTS, STREAM_LOGS };

/* One client connection that has sent at least one request. */
struct conn {
  struct server *srv;
  struct evhttp_connection *evcon;
  struct stream *stream; /* the follow stream it carries, or NULL */
  struct conn *prev, *next;
};

struct server {
  struct config cfg;
  struct tokens tokens;
  struct metrics metrics;
  struct event_base *base;
  struct evhttp *http;
  struct evhttp_bound_socket *listener;
  flwd_ctx *ctx;
  struct conn *conns;
  int conn_count;
  struct run_entry *runs; /* active runs that this server started */
  struct stream *streams; /* open follow streams */
  bool shutting_down;
  struct event *signal_events[2];
  struct event *drain_event;         /* checks for closed connections */
  struct event *drain_timeout_event; /* ends the shutdown's grace period */
};

/* One request in progress. */
struct request {
  struct server *srv;
  struct evhttp_request *req;
  struct conn *conn;
  const char *method;
  const char *path;  /* percent-encoded, without the query */
  const char *query; /* NULL when the URI has none */
  const char *id;    /* the {id} of the route, or NULL */
  struct timespec start;
};

/* ---- Replies (reply.c) ------------------------------------------------ */

double elapsed_ms(const struct timespec *start);

/* Writes the access log line of R and counts STATUS in the metrics. */
void reply_log(struct request *r, int status, size_t bytes);

/* Sends BODY (may be NULL) with STATUS and CONTENT_TYPE and logs it. */
void reply_send(struct request *r, int status, const char *content_type,
                const char *body, size_t len);

void reply_json(struct request *r, int status, const char *json);

/* Sends {"KEY":JSON}, where JSON is the text of a JSON value. */
void reply_wrapped(struct request *r, int status, const char *key,
                   const char *json);

void reply_error(struct request *r, int status, flwd_code code, const char *fmt,
                 ...) __attribute__((format(printf, 4, 5)));

/* Sends ERR with the HTTP status that matches its code. */
void reply_flwd_error(struct request *r, const flwd_error *err);

int status_of_code(flwd_code code);

const char *status_reason(int status);

/* ---- Routing (router.c) ----------------------------------------------- */

typedef void (*handler_fn)(struct request *r);

/* Receives every request: applies the limits and authentication, finds the
 * route and calls its handler. */
void router_dispatch(struct evhttp_request *req, void *arg);

/* Returns the value of query parameter NAME of R in a new string, or NULL
 * when absent; free with free(). */
char *query_get(const struct request *r, const char *name);

/* ---- Handlers --------------------------------------------------------- */

void handle_runs_create(struct request *r);
void handle_runs_list(struct request *r);
void handle_run_get(struct request *r);
void handle_run_events(struct request *r);
void handle_run_logs(struct request *r);
void handle_run_cancel(struct request *r);
void handle_jobs_list(struct request *r);
void handle_job_get(struct request *r);
void handle_plans_create(struct request *r);
void handle_healthz(struct request *r);
void handle_metrics(struct request *r);

/* Reads R's body into a new NUL-terminated string, or replies with an error
 * and returns NULL. */
char *request_body(struct request *r);

/* Parses R's body {"job": ID, "args": {...}}, finds the job and binds the
 * arguments. Returns 0, or -1 after replying with the error. */
int parse_job_request(struct request *r, flwd_job **job, flwd_args **args);

/* ---- Runs started here (runs.c) --------------------------------------- */

struct run_entry {
  struct server *srv;
  flwd_run *run;
  char *id;
  bool starting; /* inside flwd_run_start() */
  bool ended_while_starting;
  struct timespec created;
  struct stream *streams; /* follow streams of this run */
  struct run_entry *prev, *next;
};

/* Creates, records and starts a run of JOB with ARGS, with the idempotency
 * metadata when IDEMPOTENCY_KEY is not NULL. Returns the run as JSON in
 * *RUN_JSON (free with flwd_free) and its id in *RUN_ID (free with free). */
int runs_start(struct server *srv, const flwd_job *job, const flwd_args *args,
               const char *idempotency_key, const char *request_hash,
               char **run_json, char **run_id, flwd_error **err);

/* Returns the entry of run ID when this server started it and it has not
 * ended, else NULL. */
struct run_entry *runs_find(struct server *srv, const char *id);

/* Returns 1 when the stored run ID has a final state, 0 when not, and -1
 * after filling *ERR when it cannot be read. */
int runs_stored_final(flwd_ctx *ctx, const char *id, flwd_error **err);

/* Returns true when any run is still active in the server's context. */
bool runs_any_active(struct server *srv);

/* Forgets every run entry without touching the runs. */
void runs_forget_all(struct server *srv);

/* ---- Follow streams (stream.c) ---------------------------------------- */

/* Starts a Server-Sent Events reply of R's run from position AFTER. */
void stream_start(struct request *r, enum stream_kind kind, long long after);

/* Sends what the store contains past the position of each of ENTRY's streams
 * of KIND, or of every kind when FINAL. FINAL is true once the run has
 * ended, which ends the streams. */
void stream_pump_all(struct run_entry *entry, enum stream_kind kind,
                     bool final);

/* Ends every stream, for shutdown. */
void stream_end_all(struct server *srv);

/* Forgets the stream of a connection that the client closed. */
void stream_drop(struct stream *stream);

/* ---- Digest (sha256.c) ------------------------------------------------ */

/* Writes the SHA-256 digest of DATA as 64 lower-case hex digits and a NUL
 * to HEX. */
void sha256_hex(const void *data, size_t len, char hex[65]);

#endif /* FLWD_HTTPD_SERVER_H */
