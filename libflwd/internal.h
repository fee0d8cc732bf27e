/* libflwd: declarations shared by the library's own files; not installed. */
#ifndef FLWD_INTERNAL_H
#define FLWD_INTERNAL_H

#include <stdarg.h>
#include <stdbool.h>
#include <stdlib.h>
#include <sys/types.h>
#include <unistd.h>

#include <json-c/json.h>

#include <flwd/flwd.h>

#define FLWD_HIDDEN __attribute__((visibility("hidden")))
#define FLWD_PRINTF(fmt, args) __attribute__((format(printf, fmt, args)))
#define ARRAY_SIZE(a) (sizeof(a) / sizeof((a)[0]))
/* Compact JSON without escaped slashes, for every text flwd produces. */
#define JSON_PLAIN (JSON_C_TO_STRING_PLAIN | JSON_C_TO_STRING_NOSLASHESCAPE)

/* ---- Cleanup helpers -------------------------------------------------- */

static inline void
cleanup_freep(void *p)
{
  free(*(void **)p);
}

static inline void
cleanup_closep(int *fd)
{
  if (*fd >= 0)
    close(*fd);
}

static inline void
cleanup_json_putp(json_object **obj)
{
  if (*obj)
    json_object_put(*obj);
}

static inline void
cleanup_errorp(flwd_error **err)
{
  flwd_error_free(*err);
}

#define cleanup_free __attribute__((cleanup(cleanup_freep)))
#define cleanup_close __attribute__((cleanup(cleanup_closep)))
#define cleanup_json __attribute__((cleanup(cleanup_json_putp)))
#define cleanup_error __attribute__((cleanup(cleanup_errorp)))

/* Returns *P and sets it to NULL, to hand an owned pointer out of a scope
 * whose cleanup attribute would otherwise free it. */
#define steal_pointer(p)                                                       \
  ({                                                                           \
    __typeof__(*(p)) stolen_ = *(p);                                           \
    *(p) = NULL;                                                               \
    stolen_;                                                                   \
  })

/* ---- Errors (error.c) ------------------------------------------------- */

struct flwd_error {
  flwd_code code;
  int errno_value;
  char *message;
};

/* Fills *ERR (when ERR is not NULL and *ERR is still empty) with CODE and a
 * formatted message, and returns -CODE, so that a failure site is one line:
 * return set_error (err, FLWD_E_OCI, "..."). */
FLWD_HIDDEN int set_error(flwd_error **err, flwd_code code, const char *fmt,
                          ...) FLWD_PRINTF(3, 4);

/* Like set_error, and appends ": strerror(ERRNUM)" and records ERRNUM. */
FLWD_HIDDEN int set_error_errno(flwd_error **err, flwd_code code, int errnum,
                                const char *fmt, ...) FLWD_PRINTF(4, 5);

/* Prefixes the message of *ERR with a formatted context and ": ". */
FLWD_HIDDEN int wrap_error(flwd_error **err, int ret, const char *fmt, ...)
    FLWD_PRINTF(3, 4);

FLWD_HIDDEN flwd_error *error_copy(const flwd_error *err);

/* ---- Strings (util.c) ------------------------------------------------- */

/* A growable NULL-terminated array of owned strings, used for argv. */
struct strv {
  char **items;
  size_t len;
  size_t cap;
};

FLWD_HIDDEN void strv_init(struct strv *v);
FLWD_HIDDEN void strv_clear(struct strv *v);
FLWD_HIDDEN int strv_push(struct strv *v, const char *s);
FLWD_HIDDEN int strv_pushf(struct strv *v, const char *fmt, ...)
    FLWD_PRINTF(2, 3);
FLWD_HIDDEN json_object *strv_to_json(const struct strv *v);

static inline void
cleanup_strvp(struct strv *v)
{
  strv_clear(v);
}
#define cleanup_strv __attribute__((cleanup(cleanup_strvp)))

/* A growable byte buffer, always NUL-terminated. */
struct buf {
  char *data;
  size_t len;
  size_t cap;
};

FLWD_HIDDEN int buf_append(struct buf *b, const char *data, size_t len);
FLWD_HIDDEN void buf_clear(struct buf *b);

FLWD_HIDDEN char *xasprintf(const char *fmt, ...) FLWD_PRINTF(1, 2);
FLWD_HIDDEN char *json_to_string_owned(json_object *obj, int flags);
FLWD_HIDDEN int mkdir_p(const char *path, mode_t mode);
FLWD_HIDDEN int rm_rf(const char *path);
FLWD_HIDDEN int write_file_atomic(const char *path, const char *data,
                                  size_t len, mode_t mode);
FLWD_HIDDEN char *find_in_path(const char *name);
FLWD_HIDDEN int random_hex(char *out, size_t nbytes);

/* Opens PATH (creating it) and takes an exclusive file lock without
 * waiting. Returns 1 with the descriptor in *FD_OUT, 0 when another open
 * file holds the lock, and -1 on failure. */
FLWD_HIDDEN int lock_file_try(const char *path, int *fd_out);
FLWD_HIDDEN void format_utc_now(char out[32]);
FLWD_HIDDEN int parse_duration_ms(const char *s, long long *out);
FLWD_HIDDEN int parse_size_bytes(const char *s, long long *out);

/* The guarantees a runtime can enforce on this host. */
struct runtime_caps {
  bool rootless;        /* the containers run without host root */
  bool userns;          /* container root is mapped to an unprivileged uid */
  bool resource_limits; /* memory, cpu and pids limits take effect */
};

/* ---- Context (ctx.c) -------------------------------------------------- */

struct runtime;
struct image_pulls;

struct flwd_ctx {
  struct event_base *base;
  bool owns_base;
  flwd_log_cb log_cb;
  void *log_user;
  char *jobs_path;
  char *runtime_choice;
  char *state_dir;
  char *pull_policy;
  char *init_path;
  /* The runtime chosen for this context, probed once and then reused. */
  const struct runtime *runtime;
  char *runtime_path;
  struct runtime_caps runtime_caps;
  char *max_runs_text;
  char *log_max_text;
  char *store_mode;
  char *run_mode;
  char *policy_path;
  struct policy *policy; /* NULL: deny everything but the secure profile */
  char *secrets_dir;
  char *secrets_env_mode; /* "on": secrets may come from FLWD_SECRET_* */
  long long max_runs;     /* 0: no limit */
  unsigned long long run_tickets;
  long long log_max_bytes;
  struct store *store;   /* opened at first use */
  struct flwd_run *runs; /* active runs, a doubly linked list */
};

/* Stops and removes every container of CTX's active runs, blocking. */
FLWD_HIDDEN void run_cancel_all_blocking(flwd_ctx *ctx);

FLWD_HIDDEN void ctx_log(flwd_ctx *ctx, flwd_log_level level, const char *fmt,
                         ...) FLWD_PRINTF(3, 4);

/* ---- User namespace ranges (userns.c) -------------------------------- */

/* Takes a free range of 65536 host ids for RUN_ID from the "containers"
 * subordinate range and reserves it with *LOCK_FD. Returns -1 when there is
 * no such range or none is free. */
FLWD_HIDDEN int userns_take_range(const char *run_id, int *lock_fd,
                                  unsigned long *base);

/* Returns the range RUN_ID would probably get, for a plan; 0 without one. */
FLWD_HIDDEN unsigned long userns_preview_base(const char *run_id);

/* ---- Policies (policy.c) --------------------------------------------- */

struct policy;
struct plan;

FLWD_HIDDEN bool capability_is_known(const char *name);
FLWD_HIDDEN int policy_load(const char *path, struct policy **out,
                            flwd_error **err);
FLWD_HIDDEN void policy_free(struct policy *policy);

/* Decides every request of JOB under POLICY (NULL: none configured) and
 * records the decisions and the granted relaxations in PLAN. */
FLWD_HIDDEN void policy_decide(const struct policy *policy, const flwd_job *job,
                               struct plan *plan, long long default_memory,
                               long long default_pids);

/* ---- Run store (store.c) --------------------------------------------- */

struct store;

/* Returns the context's store in *OUT, opening it at first use; *OUT is
 * NULL when the store is turned off. */
FLWD_HIDDEN int store_get(flwd_ctx *ctx, struct store **out, flwd_error **err);
FLWD_HIDDEN void store_close(struct store *store);
FLWD_HIDDEN int store_put_run(struct store *store, const char *id,
                              const char *job, const char *state,
                              const char *created_at, const char *doc,
                              flwd_error **err);
FLWD_HIDDEN int store_add_event(struct store *store, const char *run_id,
                                long long seq, const char *type,
                                const char *doc, flwd_error **err);
FLWD_HIDDEN char *store_log_path(flwd_ctx *ctx, const char *run_id);
FLWD_HIDDEN int store_foreach_unfinished(struct store *store,
                                         int (*fn)(const char *id,
                                                   const char *doc, void *user),
                                         void *user, flwd_error **err);
FLWD_HIDDEN long long store_last_seq(struct store *store, const char *run_id);
FLWD_HIDDEN bool store_has_run(struct store *store, const char *run_id);

/* Opens the run's log file for appending, emptied first when TRUNCATE;
 * returns the descriptor. */
FLWD_HIDDEN int store_log_open(flwd_ctx *ctx, const char *run_id, bool truncate,
                               flwd_error **err);

/* ---- Jobs (spec.c) ---------------------------------------------------- */

typedef enum {
  ARG_STRING,
  ARG_INTEGER,
  ARG_NUMBER,
  ARG_BOOLEAN,
  ARG_ENUM,
  ARG_LIST,
} arg_type;

struct arg_spec {
  char *name;
  char *description;
  arg_type type;
  bool required;
  json_object *default_value; /* NULL when there is none */
  char *default_text;
  json_object *values; /* enum only: array of strings */
  char *values_text;
};

typedef enum {
  PROFILE_SECURE,
  PROFILE_PERMISSIVE,
  PROFILE_DISABLED,
} profile_kind;

typedef enum {
  PULL_MISSING,
  PULL_ALWAYS,
  PULL_NEVER,
} pull_policy;

struct flwd_job {
  int refcount;
  char *path;
  char *id;
  char *description;
  char *image;
  struct strv command; /* empty: the image's own entrypoint and command */
  bool has_command;
  struct arg_spec *args;
  size_t n_args;
  profile_kind profile;
  bool has_pull;
  pull_policy pull;
  long long memory_bytes; /* 0: the profile's default */
  double cpus;            /* 0: no limit */
  long long pids;         /* 0: the profile's default */
  long long timeout_ms;   /* 0: no timeout */
  long long stop_timeout_ms;
  struct strv secrets; /* names, mounted at /run/secrets/NAME */
  /* Relaxations requested under the permissive profile. */
  bool req_writable_rootfs;
  struct strv req_caps; /* upper-case names without CAP_ */
  bool req_network_limited;
  struct strv req_secrets_env;
};

FLWD_HIDDEN flwd_job *job_ref(flwd_job *job);
FLWD_HIDDEN const char *arg_type_name(arg_type type);
FLWD_HIDDEN const char *profile_name(profile_kind kind);
FLWD_HIDDEN int pull_policy_parse(const char *s, pull_policy *out);
FLWD_HIDDEN const char *pull_policy_name(pull_policy policy);

/* ---- Arguments (args.c) ----------------------------------------------- */

struct flwd_args {
  flwd_job *job;
  json_object *values; /* object: name -> typed value */
};

FLWD_HIDDEN flwd_args *args_copy(const flwd_args *args);

/* Converts TEXT to the typed JSON value of ARG, checking its type. */
FLWD_HIDDEN int arg_bind_text(const struct arg_spec *arg, const char *text,
                              json_object **out, flwd_error **err);

/* Returns the text of VALUE as the job gets it in FLWD_ARG_* variables. */
FLWD_HIDDEN char *arg_env_text(json_object *value);

/* Returns FLWD_ARG_ followed by NAME upper-cased, other characters as _. */
FLWD_HIDDEN char *arg_env_name(const char *name);

/* ---- Runtimes (runtime.c, runtime_podman.c, runtime_docker.c) --------- */

/* Everything a runtime needs to build its command lines for one run. */
struct run_layout {
  const char *run_id;
  const char *job_id;
  const char *container_name;
  const char *image;
  const char *host_dir;       /* the run's private directory on the host */
  const char *env_file;       /* KEY=VALUE lines, read by the runtime */
  const char *init_path;      /* static helper, mounted read-only */
  const char *state_dir;      /* labels the container as this store's */
  unsigned long userns_base;  /* as root: first host id of the range, or 0 */
  const struct strv *command; /* entrypoint override; NULL: the image's */
};

struct plan;

/* One container runtime. Every runtime-specific detail lives behind these
 * functions; run.c and plan.c only see this table. */
struct runtime {
  const char *name;
  /* Podman 4.3 can deadlock when two of its processes create containers
   * with --userns=auto at once (a lock-order inversion between its
   * storage and layer locks), so flwd creates one container at a time
   * per host user for runtimes that set this. */
  bool serialize_create;
  /* The --network value of the "limited" relaxation. */
  const char *limited_network;
  /* Options added to the secrets mount: the runtime's way to make the
   * mount owned by the container's user, or "" when flwd must do it. */
  const char *secrets_mount_options;
  /* Returns 0 when the runtime at PATH is usable and fills CAPS, or fills
   * ERR with what failed. Must be quick: it runs once per context. */
  int (*probe)(flwd_ctx *ctx, const char *path, struct runtime_caps *caps,
               flwd_error **err);
  /* Appends the arguments of the run command after the runtime's path. */
  int (*run_argv)(const struct plan *plan, const struct run_layout *layout,
                  struct strv *argv, flwd_error **err);
  int (*image_inspect_argv)(const char *image, struct strv *argv);
  int (*pull_argv)(const char *image, struct strv *argv);
  int (*stop_argv)(const char *name, long long grace_ms, struct strv *argv);
  int (*kill_argv)(const char *name, struct strv *argv);
  int (*rm_argv)(const char *name, struct strv *argv);
  int (*labels_argv)(const char *name, struct strv *argv);
  /* Prints the container's exit code once it has stopped. */
  int (*wait_argv)(const char *name, struct strv *argv);
  /* Streams the container's output from its start until it stops. */
  int (*logs_argv)(const char *name, struct strv *argv);
  /* Prints the names of all containers with label KEY=VALUE. */
  int (*list_argv)(const char *key, const char *value, struct strv *argv);
};

FLWD_HIDDEN extern const struct runtime runtime_podman;
FLWD_HIDDEN extern const struct runtime runtime_docker;

FLWD_HIDDEN bool host_has_cgroup2(void);
FLWD_HIDDEN int runtime_push_mounts(const struct plan *plan,
                                    const struct run_layout *layout,
                                    struct strv *argv);
/* Returns the --network value of PLAN: "none", the runtime's limited
 * network, or "default" under the disabled profile. */
FLWD_HIDDEN const char *runtime_network(const struct plan *plan);
FLWD_HIDDEN int runtime_push_mode(const struct plan *plan, struct strv *argv);
FLWD_HIDDEN int runtime_push_identity(const struct run_layout *layout,
                                      struct strv *argv);
FLWD_HIDDEN int runtime_push_secure(const struct plan *plan, struct strv *argv);

/* Command lines that Podman and Docker spell alike; each appends to ARGV
 * after the runtime's path. */
FLWD_HIDDEN int cli_image_inspect_argv(const char *image, struct strv *argv);
FLWD_HIDDEN int cli_pull_argv(const char *image, struct strv *argv);
FLWD_HIDDEN int cli_kill_argv(const char *name, struct strv *argv);
FLWD_HIDDEN int cli_labels_argv(const char *name, struct strv *argv);
FLWD_HIDDEN int cli_wait_argv(const char *name, struct strv *argv);
FLWD_HIDDEN int cli_logs_argv(const char *name, struct strv *argv);
FLWD_HIDDEN int cli_list_argv(const char *key, const char *value,
                              struct strv *argv);

/* Picks the runtime for CTX (once per context) and stores it there. */
FLWD_HIDDEN int runtime_select(flwd_ctx *ctx, flwd_error **err);

/* ---- Plans (plan.c) --------------------------------------------------- */

struct plan {
  flwd_job *job;
  flwd_args *args;
  const struct runtime *runtime;
  char *runtime_path;
  struct runtime_caps runtime_caps;
  struct runtime_caps caps;
  pull_policy pull;
  profile_kind profile;
  bool detached;         /* FLWD_OPT_RUN_MODE "detached" */
  const char *state_dir; /* borrowed from the context */
  long long memory_bytes;
  double cpus;
  long long pids;
  json_object *guarantees_missing; /* array of strings */
  json_object *decisions;          /* policy decisions, in order */
  char *denial;                    /* the first denied request, or NULL */
  bool writable_rootfs;            /* granted relaxations */
  struct strv caps_add;
  bool network_limited;
  struct strv secrets_env;
};

struct flwd_plan {
  struct plan plan;
  struct strv argv;
};

FLWD_HIDDEN int plan_resolve(flwd_ctx *ctx, const flwd_job *job,
                             const flwd_args *args, struct plan *out,
                             flwd_error **err);
FLWD_HIDDEN void plan_clear(struct plan *plan);
FLWD_HIDDEN json_object *plan_to_json(const struct plan *plan,
                                      const struct strv *argv);

/* Builds the full runtime command line of a run: PATH, then the runtime's
 * arguments, then the image and the command. */
FLWD_HIDDEN int plan_build_argv(const struct plan *plan,
                                const struct run_layout *layout,
                                struct strv *argv, flwd_error **err);

/* Expands ${args.NAME} and ${run.id} inside the job's command elements. */
FLWD_HIDDEN int plan_expand_command(const struct plan *plan, const char *run_id,
                                    struct strv *out, flwd_error **err);

/* Writes the env file of a run: the Universal Language Contract variables. */
FLWD_HIDDEN int plan_env_text(const struct plan *plan, const char *run_id,
                              struct buf *out, flwd_error **err);

/* Builds the runtime command line of a run that has not been created, as
 * `flwd plan` shows it, with a fresh run id. */
FLWD_HIDDEN int run_layout_argv(flwd_ctx *ctx, const struct plan *plan,
                                struct strv *argv, flwd_error **err);

/* ---- Child processes (process.c) -------------------------------------- */

struct child;

typedef void (*child_output_fn)(struct child *child, flwd_stream stream,
                                const char *data, size_t len, void *user);

/* STATUS is a wait status as waitpid() returns it. */
typedef void (*child_exit_fn)(struct child *child, int status, void *user);

/* Spawns ARGV (ARGV[0] is a path; no shell, no PATH search) in its own
 * process group with stdin on /dev/null and stdout and stderr on pipes that
 * the context's loop reads. EXIT_FN runs once, after the process has exited
 * and both pipes have reached end of file. */
FLWD_HIDDEN int child_spawn(flwd_ctx *ctx, const struct strv *argv,
                            child_output_fn output_fn, child_exit_fn exit_fn,
                            void *user, struct child **out, flwd_error **err);

/* Sends SIG to the child's process group, if it is still running. */
FLWD_HIDDEN void child_signal(struct child *child, int sig);

/* Sends SIGTERM to the child's process group now and SIGKILL if it is
 * still running after GRACE_MS. */
FLWD_HIDDEN void child_terminate(struct child *child, long long grace_ms);

FLWD_HIDDEN pid_t child_pid(const struct child *child);

/* Frees the child. A child still running is killed and reaped first. */
FLWD_HIDDEN void child_free(struct child *child);

/* Runs ARGV to its end on a private loop, collecting up to MAX bytes of its
 * stdout and stderr. For short commands only (inspection, removal). */
FLWD_HIDDEN int child_run_sync(flwd_ctx *ctx, const struct strv *argv,
                               size_t max, struct buf *out, struct buf *errout,
                               int *status, flwd_error **err);

#endif /* FLWD_INTERNAL_H */
