/* libflwd: the run object, shared by the files that drive it. */
#ifndef FLWD_RUN_INTERNAL_H
#define FLWD_RUN_INTERNAL_H

#include <event2/event.h>

#include "internal.h"

#define STDERR_TAIL_BYTES 4096
#define CAPTURE_MAX_BYTES (1024 * 1024)
/* Retry interval for a stop that found no container yet: the attached run
 * command may not have created it when the cancel arrived. */
#define STOP_RETRY_MS 250
/* How long a stop command may take beyond the grace period before flwd
 * kills the container itself. */
#define STOP_SLACK_MS 10000
/* How long a runtime command has to exit after SIGTERM before SIGKILL. */
#define RUNTIME_KILL_GRACE_MS 10000
/* How often a run checks the create lock or its container's start, and
 * how long the runtime may take to start the job's process. */
#define CREATE_POLL_MS 50
#define START_TIMEOUT_MS 60000
/* A runtime stuck in its start gets SIGKILL this soon after SIGTERM. */
#define START_KILL_GRACE_MS 3000
/* Attempts at removing a container, and the pause between them. */
#define RM_ATTEMPTS 4
#define RM_RETRY_MS 500
/* How long an image inspection or a container removal may take. */
#define QUICK_STEP_TIMEOUT_MS 120000
/* A result.json larger than this is recorded as invalid, not read. */
#define RESULT_MAX_BYTES (1024 * 1024)
/* How often a run waiting for another run's pull of its image checks
 * whether that pull has ended. */
#define PULL_WAIT_MS 200

typedef enum {
  STEP_NONE,
  STEP_INSPECT,
  STEP_PULL_WAIT,
  STEP_CREATE_WAIT,
  STEP_PULL,
  STEP_CONTAINER,
  STEP_CLEANUP,
} run_step;

struct flwd_run {
  flwd_ctx *ctx;
  struct flwd_run *prev, *next; /* the context's active runs */
  bool active;

  char id[17];
  char *container_name;
  char *host_dir;
  char *env_file;

  flwd_job *job;
  flwd_args *args;
  struct plan plan;
  bool planned;
  struct strv command; /* resolved command, after the image's entrypoint */

  flwd_run_state state;
  int exit_status;
  flwd_error *error;
  unsigned long long seq;

  flwd_output_cb output_cb;
  void *output_user;
  flwd_event_cb event_cb;
  void *event_user;
  flwd_done_cb done_cb;
  void *done_user;

  run_step step;
  struct child *child;   /* the step's process */
  struct child *stopper; /* podman/docker stop, beside the container */
  struct buf captured;   /* stdout of inspect steps */
  struct buf stderr_tail;
  bool pulled;
  bool name_retry_done;

  bool cancel_requested;
  bool timed_out;
  bool user_freed;
  bool ctx_owned; /* adopted: freed by the context after its done callback */
  bool container_spawned;
  bool finish_pending; /* removal done, waiting for the stop command */
  flwd_run_state final_state;
  struct event *timeout_ev;
  struct event *stop_retry_ev;
  struct event *start_ev;
  long long stop_sent_ms;

  json_object *events;   /* every event so far, for late subscribers */
  json_object *metadata; /* caller's key-value pairs, stored with the run */
  char *image_user;      /* the image's USER, from its config */
  char created_at[32];
  char started_at[32];
  char finished_at[32];
  bool waiting_for_slot;     /* queued behind the context's maximum */
  unsigned long long ticket; /* start order among queued runs */

  int log_fd;
  long long log_bytes;
  long long log_dropped;
  struct buf partial[2]; /* stdout, stderr: the line not yet ended */
  json_object *result;
  char *result_error;

  struct child *follower; /* detached mode: the runtime's logs command */
  bool waiter_done;
  int waiter_code; /* the container's exit code from the runtime's wait */
  struct event *follow_grace_ev;
  struct event *watchdog_ev;
  struct event *rm_retry_ev;
  struct event *stop_deadline_ev;
  int owner_lock_fd;       /* held by the process that runs the run */
  int create_lock_fd;      /* held while the runtime creates */
  struct event *create_ev; /* lock retry, then the start watch */
  long long create_started_ms;
  int userns_lock_fd; /* reserves the run's range of host ids */
  unsigned long userns_base;
  bool start_timed_out;
  bool start_retried;
  int rm_attempts;

  int pull_lock_fd;
  bool inspected_locked; /* the last inspect ran with the pull lock held */
  bool pull_waited;      /* another run's pull of the image was waited for */
  struct event *pull_wait_ev;
};

/* run_record.c: events, the stored log, the result and the run's record. */
FLWD_HIDDEN void emit(flwd_run *run, const char *type, json_object *data);
FLWD_HIDDEN json_object *data_of(const char *key, const char *value);
FLWD_HIDDEN void record_run(flwd_run *run);
FLWD_HIDDEN void log_output(flwd_run *run, flwd_stream stream, const char *data,
                            size_t len);
FLWD_HIDDEN void flush_partial_lines(flwd_run *run);
FLWD_HIDDEN void read_result(flwd_run *run);

/* run_image.c: inspecting and pulling the image. */
FLWD_HIDDEN void step_image(flwd_run *run);
FLWD_HIDDEN void release_pull_lock(flwd_run *run);
FLWD_HIDDEN int command_from_image(flwd_run *run, const char *config_json,
                                   flwd_error **err);

/* run_container.c: running, stopping and removing the container. */
FLWD_HIDDEN void step_container(flwd_run *run);
FLWD_HIDDEN void send_stop(flwd_run *run);
FLWD_HIDDEN void arm_stop_deadline(flwd_run *run);
FLWD_HIDDEN void follow_container(flwd_run *run);
FLWD_HIDDEN void release_create_lock(flwd_run *run);
FLWD_HIDDEN int run_layout_fill(flwd_ctx *ctx, const struct plan *plan,
                                const char *run_id, const char *container_name,
                                const char *host_dir, const char *env_file,
                                const struct strv *command,
                                struct run_layout *layout, flwd_error **err);
FLWD_HIDDEN void cleanup_then_finish(flwd_run *run, flwd_run_state state);
FLWD_HIDDEN void on_container_output(struct child *child, flwd_stream stream,
                                     const char *data, size_t len, void *user);

/* Allocates a run of JOB and ARGS, taking both references, with ID or a
 * fresh id when ID is NULL; neither records nor starts it. */
FLWD_HIDDEN flwd_run *run_alloc(flwd_ctx *ctx, flwd_job *job, flwd_args *args,
                                const char *id);
FLWD_HIDDEN void link_active(flwd_run *run);

/* Takes the run's owner lock, a file lock that marks the run as run by a
 * live process. Returns 1 when taken, 0 when another process has it, and
 * -1 when locking failed. */
FLWD_HIDDEN int run_take_owner_lock(flwd_run *run);

/* secrets.c: the run's secrets. */
FLWD_HIDDEN int secrets_write(flwd_run *run, struct buf *env, flwd_error **err);
FLWD_HIDDEN int secrets_chown_for_image(flwd_run *run, flwd_error **err);
FLWD_HIDDEN void run_remove_tree(flwd_run *run, const char *dir);

/* run.c: life cycle and the plumbing of a run's child processes. */
FLWD_HIDDEN void run_finish(flwd_run *run, flwd_run_state state);
FLWD_HIDDEN void run_fail(flwd_run *run, flwd_error *err);
FLWD_HIDDEN void start_queued_runs(flwd_ctx *ctx);
FLWD_HIDDEN int write_run_files(flwd_run *run, flwd_error **err);
FLWD_HIDDEN void remove_run_files(flwd_run *run);
FLWD_HIDDEN int read_init_marker(flwd_run *run, char **reason);
FLWD_HIDDEN long long monotonic_ms(void);
FLWD_HIDDEN void keep_tail(struct buf *tail, const char *data, size_t len);
FLWD_HIDDEN void on_capture_output(struct child *child, flwd_stream stream,
                                   const char *data, size_t len, void *user);
FLWD_HIDDEN int spawn_step(flwd_run *run, run_step step, struct strv *argv,
                           child_output_fn output_fn, child_exit_fn exit_fn,
                           flwd_error **err);
FLWD_HIDDEN const char *stderr_text(flwd_run *run);
FLWD_HIDDEN void finish_after_child(flwd_run *run);
FLWD_HIDDEN bool stopped_before_container(flwd_run *run);

#endif /* FLWD_RUN_INTERNAL_H */
