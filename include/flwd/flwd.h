/* flwd: run jobs described by small YAML specs in hardened containers.
 *
 * This is the whole public API of libflwd. Every type is an opaque handle
 * with its own release function; every string the library returns is either
 * borrowed (its comment gives for how long) or owned by the caller and freed
 * with flwd_free(). Fallible functions return 0 on success or a negative
 * flwd_code (-FLWD_E_...) on failure, and fill *err when err is not NULL;
 * the caller releases it with flwd_error_free().
 *
 * The library keeps no global state: everything lives in a flwd_ctx, so
 * several contexts may coexist in one process. A context and everything
 * made from it belong to one thread at a time. The library never writes to
 * stdout or stderr and never exits; it hands log records to a callback.
 */
#ifndef FLWD_FLWD_H
#define FLWD_FLWD_H

#include <stddef.h>
#include <stdint.h>

#include <flwd/errors.h>
#include <flwd/version.h>

#ifdef __cplusplus
extern "C" {
#endif

#if defined(FLWD_BUILDING_LIBRARY)
#define FLWD_API __attribute__((visibility("default")))
#else
#define FLWD_API
#endif

struct event_base;

typedef struct flwd_error flwd_error;
typedef struct flwd_ctx flwd_ctx;
typedef struct flwd_job flwd_job;
typedef struct flwd_job_list flwd_job_list;
typedef struct flwd_args flwd_args;
typedef struct flwd_plan flwd_plan;
typedef struct flwd_run flwd_run;

/* ---- Version ---------------------------------------------------------- */

/* Returns the library's version as FLWD_VERSION_HEX computes it; compare it
 * with the header's FLWD_VERSION_HEX to detect a mismatch at run time. */
FLWD_API unsigned int flwd_version(void);

/* Returns the library's version as "MAJOR.MINOR.PATCH"; static storage. */
FLWD_API const char *flwd_version_string(void);

/* Frees a string or buffer that the library returned as owned. */
FLWD_API void flwd_free(void *ptr);

/* ---- Errors ----------------------------------------------------------- */

/* Returns the stable code string of CODE ("spec.invalid", "E_OCI", ...), or
 * "internal" for a value outside the table; static storage. */
FLWD_API const char *flwd_code_name(flwd_code code);

/* Returns the default one-line description of CODE; static storage. */
FLWD_API const char *flwd_code_description(flwd_code code);

FLWD_API flwd_code flwd_error_code(const flwd_error *err);

/* Returns the code string of ERR, as flwd_code_name() does; static. */
FLWD_API const char *flwd_error_name(const flwd_error *err);

/* Returns the message of ERR, borrowed until flwd_error_free(ERR). The
 * message names the value at fault and never contains a secret. */
FLWD_API const char *flwd_error_message(const flwd_error *err);

/* Returns the errno behind ERR, or 0 when no system call failed. */
FLWD_API int flwd_error_errno(const flwd_error *err);

FLWD_API void flwd_error_free(flwd_error *err);

/* ---- Context ---------------------------------------------------------- */

typedef enum {
  FLWD_LOG_ERROR = 0,
  FLWD_LOG_WARNING = 1,
  FLWD_LOG_INFO = 2,
  FLWD_LOG_DEBUG = 3,
} flwd_log_level;

/* Receives one log record; MESSAGE is borrowed for the call only. */
typedef void (*flwd_log_cb)(flwd_log_level level, const char *message,
                            void *user);

/* Creates a context. BASE is the libevent loop that runs every child
 * process of the context; with NULL the context creates and owns one. The
 * caller keeps ownership of a BASE it passes and must keep it alive until
 * flwd_ctx_free(). Options start from the environment: FLWD_JOBS_PATH,
 * FLWD_RUNTIME, FLWD_STATE_DIR and FLWD_INIT. */
FLWD_API int flwd_ctx_new(struct event_base *base, flwd_ctx **out,
                          flwd_error **err);

/* Frees the context. Runs still active are cancelled first and their
 * containers stopped and removed, which may block for their grace period. */
FLWD_API void flwd_ctx_free(flwd_ctx *ctx);

/* Frees the context without stopping its runs: the runtime commands that
 * follow them are ended, but their containers keep running, and in
 * detached mode a later flwd_ctx_reconcile() adopts them. For a server
 * that stops and leaves its runs to the next start. */
FLWD_API void flwd_ctx_abandon(flwd_ctx *ctx);

/* Returns the context's event loop, borrowed for the context's lifetime. */
FLWD_API struct event_base *flwd_ctx_event_base(flwd_ctx *ctx);

FLWD_API void flwd_ctx_set_log_cb(flwd_ctx *ctx, flwd_log_cb cb, void *user);

typedef enum {
  /* Colon-separated directories searched for job specs, in order. */
  FLWD_OPT_JOBS_PATH = 1,
  /* "auto" (default), "podman" or "docker". */
  FLWD_OPT_RUNTIME = 2,
  /* Directory for run directories and the run store. */
  FLWD_OPT_STATE_DIR = 3,
  /* Default image pull policy: "missing" (default), "always", "never". */
  FLWD_OPT_PULL_POLICY = 4,
  /* Path of the static flwd-init helper mounted into each container. */
  FLWD_OPT_INIT_PATH = 5,
  /* Maximum number of runs preparing or running at once; runs past it
   * wait in FLWD_RUN_QUEUED. "0" (default) means no limit. */
  FLWD_OPT_MAX_RUNS = 6,
  /* Bytes of output kept in a run's stored log; past it the log is cut
   * and the cut is recorded. Default 67108864 (64 MiB). */
  FLWD_OPT_LOG_MAX_BYTES = 7,
  /* "on" (default) records runs, events and logs in the state directory's
   * run store; "off" keeps them in memory only. */
  FLWD_OPT_STORE = 8,
  /* "attached" (default): the runtime's run command stays attached to the
   * container and removes it at the end. "detached": the container starts
   * in the background and flwd follows its logs and waits for its exit,
   * so that a run outlives a crash of the process that started it and
   * flwd_ctx_reconcile() can adopt it. */
  FLWD_OPT_RUN_MODE = 9,
  /* Path of the policy file; loaded and checked when set. Without one,
   * only the secure profile without relaxations is allowed. */
  FLWD_OPT_POLICY_FILE = 10,
  /* Directory with one file per secret, named after the secret. */
  FLWD_OPT_SECRETS_DIR = 11,
  /* "on" lets a secret come from flwd's environment variable
   * FLWD_SECRET_<NAME> when the secrets directory has no file for it;
   * "off" (default) does not. */
  FLWD_OPT_SECRETS_FROM_ENV = 12,
} flwd_option;

/* Sets option OPT to VALUE (copied). Invalid values fail with
 * FLWD_E_CONFIG_INVALID and leave the option unchanged. */
FLWD_API int flwd_ctx_set_option(flwd_ctx *ctx, flwd_option opt,
                                 const char *value, flwd_error **err);

/* Returns the current value of OPT, borrowed until the option changes. */
FLWD_API const char *flwd_ctx_get_option(flwd_ctx *ctx, flwd_option opt);

/* ---- Jobs ------------------------------------------------------------- */

/* Loads and validates the spec at PATH. Errors are FLWD_E_SPEC_INVALID with
 * a message of the form "FILE:LINE:COLUMN: FIELD: problem". */
FLWD_API int flwd_job_load(flwd_ctx *ctx, const char *path, flwd_job **out,
                           flwd_error **err);

/* Loads the spec from a buffer; NAME stands for the file in messages. */
FLWD_API int flwd_job_load_buffer(flwd_ctx *ctx, const char *name,
                                  const char *data, size_t len, flwd_job **out,
                                  flwd_error **err);

/* Finds the job ID in the jobs path: the first DIR/ID.yaml or DIR/ID.yml.
 * Fails with FLWD_E_JOB_NOT_FOUND, naming the directories searched. */
FLWD_API int flwd_job_find(flwd_ctx *ctx, const char *id, flwd_job **out,
                           flwd_error **err);

FLWD_API void flwd_job_free(flwd_job *job);

/* Accessors; the strings are borrowed for the job's lifetime, and NULL
 * where the spec has no such field. */
FLWD_API const char *flwd_job_id(const flwd_job *job);
FLWD_API const char *flwd_job_description(const flwd_job *job);
FLWD_API const char *flwd_job_image(const flwd_job *job);
FLWD_API const char *flwd_job_path(const flwd_job *job);
FLWD_API size_t flwd_job_arg_count(const flwd_job *job);
FLWD_API const char *flwd_job_arg_name(const flwd_job *job, size_t i);
/* "string", "integer", "number", "boolean", "enum" or "list". */
FLWD_API const char *flwd_job_arg_type(const flwd_job *job, size_t i);
FLWD_API int flwd_job_arg_required(const flwd_job *job, size_t i);
FLWD_API const char *flwd_job_arg_description(const flwd_job *job, size_t i);
/* The default as JSON text ("1", "\"x\"", "[]"), or NULL without one. */
FLWD_API const char *flwd_job_arg_default(const flwd_job *job, size_t i);
/* The allowed values of an enum argument, as a JSON array, else NULL. */
FLWD_API const char *flwd_job_arg_values(const flwd_job *job, size_t i);

/* Returns the job and its argument schema as JSON; free with flwd_free. */
FLWD_API char *flwd_job_to_json(const flwd_job *job);

/* Loads every spec in the jobs path. A spec that fails to load is logged at
 * FLWD_LOG_WARNING and left out; a job id found twice keeps the first. */
FLWD_API int flwd_job_list_load(flwd_ctx *ctx, flwd_job_list **out,
                                flwd_error **err);
FLWD_API size_t flwd_job_list_count(const flwd_job_list *list);
/* Returns job I, borrowed for the list's lifetime. */
FLWD_API flwd_job *flwd_job_list_get(const flwd_job_list *list, size_t i);
FLWD_API void flwd_job_list_free(flwd_job_list *list);

/* Loads and checks the policy file at PATH. Errors are FLWD_E_CONFIG_INVALID
 * with a message of the form "FILE:LINE:COLUMN: FIELD: problem". */
FLWD_API int flwd_policy_validate(flwd_ctx *ctx, const char *path,
                                  flwd_error **err);

/* ---- Arguments -------------------------------------------------------- */

/* Binds command-line arguments ("--name Alice", "--name=Alice", "--flag" for
 * a boolean, "--no-flag" for false, a list argument repeated once per item)
 * to JOB's declared arguments, applying defaults and checking types
 * and required arguments. Fails with FLWD_E_ARGS_INVALID. */
FLWD_API int flwd_args_from_argv(const flwd_job *job, int argc,
                                 char *const argv[], flwd_args **out,
                                 flwd_error **err);

/* Binds a JSON object of argument values, as flwd_args_from_argv() does. */
FLWD_API int flwd_args_from_json(const flwd_job *job, const char *json,
                                 flwd_args **out, flwd_error **err);

/* Returns the bound arguments as a typed JSON object; free with flwd_free. */
FLWD_API char *flwd_args_to_json(const flwd_args *args);

FLWD_API void flwd_args_free(flwd_args *args);

/* ---- Plans ------------------------------------------------------------ */

/* Resolves what a run of JOB with ARGS would do: the runtime, the image, the
 * profile and the exact runtime command line. Nothing runs and nothing is
 * written. Fails with FLWD_E_RUNTIME_UNAVAILABLE when no runtime is usable. */
FLWD_API int flwd_plan_create(flwd_ctx *ctx, const flwd_job *job,
                              const flwd_args *args, flwd_plan **out,
                              flwd_error **err);

/* Returns the plan as JSON; free with flwd_free. */
FLWD_API char *flwd_plan_to_json(const flwd_plan *plan);

FLWD_API void flwd_plan_free(flwd_plan *plan);

/* ---- Runs ------------------------------------------------------------- */

typedef enum {
  FLWD_RUN_QUEUED = 0,
  FLWD_RUN_PREPARING = 1,
  FLWD_RUN_RUNNING = 2,
  FLWD_RUN_SUCCEEDED = 3,
  FLWD_RUN_FAILED = 4,
  FLWD_RUN_CANCELLED = 5,
  FLWD_RUN_TIMED_OUT = 6,
  FLWD_RUN_ERROR = 7,
} flwd_run_state;

typedef enum {
  FLWD_STREAM_STDOUT = 1,
  FLWD_STREAM_STDERR = 2,
} flwd_stream;

/* Receives output of the job as it arrives, in chunks that need not end at
 * a line; DATA is borrowed for the call only. */
typedef void (*flwd_output_cb)(flwd_run *run, flwd_stream stream,
                               const char *data, size_t len, void *user);

/* Receives one event as a JSON object {"seq","time","type","data"}; EVENT
 * is borrowed for the call only. */
typedef void (*flwd_event_cb)(flwd_run *run, const char *event, void *user);

/* Called once when the run reaches a final state. The run may be freed from
 * inside the callback. */
typedef void (*flwd_done_cb)(flwd_run *run, void *user);

/* Creates a run of JOB with ARGS in state FLWD_RUN_QUEUED. The run keeps its
 * own references to JOB and ARGS, so the caller may free them afterwards. */
FLWD_API int flwd_run_create(flwd_ctx *ctx, const flwd_job *job,
                             const flwd_args *args, flwd_run **out,
                             flwd_error **err);

FLWD_API void flwd_run_set_output_cb(flwd_run *run, flwd_output_cb cb,
                                     void *user);
FLWD_API void flwd_run_set_event_cb(flwd_run *run, flwd_event_cb cb,
                                    void *user);
FLWD_API void flwd_run_set_done_cb(flwd_run *run, flwd_done_cb cb, void *user);

/* Starts the run on the context's event loop and returns at once; the run
 * proceeds while the caller dispatches the loop. A failure after this call
 * returns ends the run in FLWD_RUN_ERROR rather than failing the call. */
FLWD_API int flwd_run_start(flwd_run *run, flwd_error **err);

/* Requests cancellation. Before the container starts, nothing starts;
 * while it runs, the runtime stops it with the job's grace period, kills it
 * and removes it, and only then does the run end FLWD_RUN_CANCELLED. Fails
 * with FLWD_E_RUN_FINISHED when the run has already ended. */
FLWD_API int flwd_run_cancel(flwd_run *run, flwd_error **err);

/* Dispatches the context's event loop until RUN ends; for callers that have
 * no loop of their own. Starts the run first if it is still queued. */
FLWD_API int flwd_run_wait(flwd_run *run, flwd_error **err);

FLWD_API flwd_run_state flwd_run_get_state(const flwd_run *run);

/* Returns "queued", "preparing", ..., "error"; static storage. */
FLWD_API const char *flwd_run_state_name(flwd_run_state state);

/* Returns the run id, borrowed for the run's lifetime. */
FLWD_API const char *flwd_run_id(const flwd_run *run);

/* Returns the job's exit status, or -1 when the job never ran to its end
 * (for example a runtime failure or a cancel before start). */
FLWD_API int flwd_run_exit_status(const flwd_run *run);

/* Returns the error of a run that ended FLWD_RUN_ERROR, else NULL; borrowed
 * for the run's lifetime. */
FLWD_API const flwd_error *flwd_run_error(const flwd_run *run);

/* Frees the run. A run that has not ended is cancelled first; its stop and
 * removal go on inside the context even after this call. */
FLWD_API void flwd_run_free(flwd_run *run);

/* Returns the run as JSON, as flwd_store_run_json() does, from memory;
 * free with flwd_free. */
FLWD_API char *flwd_run_to_json(const flwd_run *run);

/* Finds an active run of CTX by id, or returns NULL; borrowed until the
 * run ends. */
FLWD_API flwd_run *flwd_ctx_find_run(flwd_ctx *ctx, const char *id);

/* Sets metadata KEY to VALUE (both copied) on a run that has not started;
 * it is stored with the run under "metadata" and can be searched with
 * flwd_store_find_by_metadata(). Keys are 1 to 64 characters of letters,
 * digits, '.', '_' and '-'. */
FLWD_API int flwd_run_set_metadata(flwd_run *run, const char *key,
                                   const char *value, flwd_error **err);

/* Cancels the active run ID of CTX, as flwd_run_cancel() does. Fails with
 * FLWD_E_RUN_NOT_FOUND for an unknown id, FLWD_E_RUN_FINISHED for a run
 * that has ended, and FLWD_E_REQUEST_INVALID for a run that another
 * process is running. */
FLWD_API int flwd_ctx_cancel_run(flwd_ctx *ctx, const char *id,
                                 flwd_error **err);

/* Reconciles the store with the runtime, for a process that restarts in
 * detached mode. Runs that a live process still owns (its owner lock is
 * held) are left alone. The container of each other unfinished run is
 * waited on again and its real exit recorded: the run is then active in
 * CTX and can be found with flwd_ctx_find_run(); it belongs to the
 * context, takes callbacks, and is freed after its done callback returns.
 * A run whose container is gone ends in FLWD_RUN_ERROR with the reason; a
 * container labelled by flwd with no active run is stopped and removed.
 * Each step is logged. Blocks while it asks the runtime. */
FLWD_API int flwd_ctx_reconcile(flwd_ctx *ctx, flwd_error **err);

/* ---- Run store -------------------------------------------------------- */

/* Runs, their events and their logs are kept in a SQLite database and log
 * files under the state directory. These calls read what any process
 * sharing that directory recorded. Each returns JSON in *OUT, freed with
 * flwd_free, and fails with FLWD_E_RUN_NOT_FOUND or FLWD_E_STORE_FAILED. */

/* One run: {"id","job","state","exit_status","error":{"code","message"},
 * "args","result","result_error","created_at","started_at","finished_at",
 * "container","runtime","log_truncated"}. */
FLWD_API int flwd_store_run_json(flwd_ctx *ctx, const char *id, char **out,
                                 flwd_error **err);

/* Runs, newest first, as a JSON array. JOB and STATE filter when not NULL;
 * LIMIT (1 to 1000) and OFFSET page. */
FLWD_API int flwd_store_runs_json(flwd_ctx *ctx, const char *job,
                                  const char *state, size_t limit,
                                  size_t offset, char **out, flwd_error **err);

/* The run's events with a sequence number above AFTER_SEQ, in order, as a
 * JSON array of {"seq","time","type","data"}. */
FLWD_API int flwd_store_events_json(flwd_ctx *ctx, const char *id,
                                    long long after_seq, char **out,
                                    flwd_error **err);

/* The newest run whose metadata KEY equals VALUE, as flwd_store_run_json()
 * returns it; FLWD_E_RUN_NOT_FOUND when there is none. */
FLWD_API int flwd_store_find_by_metadata(flwd_ctx *ctx, const char *key,
                                         const char *value, char **out,
                                         flwd_error **err);

/* The number of stored runs in each state, as a JSON object
 * {"queued":N,...,"error":N} with every state present. */
FLWD_API int flwd_store_count_json(flwd_ctx *ctx, char **out, flwd_error **err);

/* The run's log lines after line AFTER_LINE (0 for all), as a JSON array
 * of {"n","stream","line"} where stream is "stdout" or "stderr"; a last
 * line without a final newline has "partial":true. */
FLWD_API int flwd_store_logs_json(flwd_ctx *ctx, const char *id,
                                  long long after_line, char **out,
                                  flwd_error **err);

#ifdef __cplusplus
}
#endif

#endif /* FLWD_FLWD_H */
