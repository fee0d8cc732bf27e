/* runs-driver: starts a batch of runs of one job on one flwd_ctx event loop
 * and reports how each ended, for tests/runs/test_runs.py.
 *
 * It uses only the public API of libflwd, the way an embedding program
 * would. Options (see usage_text) may also come from a JSON object given
 * with --plan FILE ("-" for stdin). Its keys are the long option names
 * without the dashes, and options on the command line override them.
 *
 * Output on stdout, one JSON object per line:
 *   one line per run, in creation order:
 *     {"index","id","state","exit_status","error","events":[TYPE...],
 *      "cancel","cancel_ms","start_error","late_cancel","late_ctx_cancel",
 *      "started_ms","finished_ms","run":<flwd_run_to_json>}
 *   where the times are milliseconds since the driver created the runs
 *   then {"summary":{"runs","finished","max_active","max_active_events",
 *                    "elapsed_ms","deadline_hit"}}
 * "max_active" is the maximum number of runs in state preparing or running
 * seen at any event, done callback or 10 ms sample; "max_active_events"
 * counts runs between their run.planned and run.finished events.
 * A setup failure prints {"fatal":{"stage","code","message"}} instead.
 *
 * Exit status: 0 when every run reached a final state, 1 when not or on a
 * setup failure, 2 on a usage error.
 */
#include <errno.h>
#include <getopt.h>
#include <stdbool.h>
#include <stddef.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include <event2/event.h>
#include <json-c/json.h>

#include <flwd/flwd.h>

static const char usage_text[]
    = "Usage: runs-driver [OPTIONS]\n"
      "\n"
      "  --plan FILE             read options from a JSON object; - for stdin\n"
      "  --state-dir DIR         FLWD_OPT_STATE_DIR\n"
      "  --jobs DIRS             FLWD_OPT_JOBS_PATH\n"
      "  --runtime NAME          FLWD_OPT_RUNTIME\n"
      "  --init PATH             FLWD_OPT_INIT_PATH\n"
      "  --pull POLICY           FLWD_OPT_PULL_POLICY\n"
      "  --max-runs N            FLWD_OPT_MAX_RUNS\n"
      "  --run-mode MODE         FLWD_OPT_RUN_MODE: attached or detached\n"
      "  --log-max-bytes N       FLWD_OPT_LOG_MAX_BYTES\n"
      "  --job ID                the job to run, found in the jobs path\n"
      "  --args JSON             the arguments: an object for every run, or "
      "an\n"
      "                          array of objects used in turn (run I takes\n"
      "                          element I modulo its length); default {}\n"
      "  --count N               number of runs (default 1)\n"
      "  --cancel-after-ms MS    cancel each run MS milliseconds after its\n"
      "                          start, or after --cancel-when fired\n"
      "  --cancel-when WHAT      cancel a run when it emits the event type\n"
      "                          WHAT or is seen in the state WHAT\n"
      "  --cancel-on-output TEXT cancel a run when its stdout contains TEXT\n"
      "  --cancel-before-start   cancel each run before flwd_run_start\n"
      "  --cancel-after-start    cancel each run right after flwd_run_start\n"
      "  --cancel-after-end      after all runs ended, cancel each one again\n"
      "                          with flwd_run_cancel and flwd_ctx_cancel_run\n"
      "  --cancel-id ID          only call flwd_ctx_cancel_run(ID) and print\n"
      "                          {\"cancel_id\",\"code\",\"message\"}\n"
      "  --deadline-ms MS        cancel every run still going after MS\n"
      "                          milliseconds and exit 1 (default 600000)\n"
      "  -v, --verbose           print flwd's info and debug log too\n"
      "  -h, --help              print this help\n";

struct options {
  const char *state_dir;
  const char *jobs;
  const char *runtime;
  const char *init;
  const char *pull;
  const char *max_runs;
  const char *run_mode;
  const char *log_max_bytes;
  const char *job;
  json_object *args; /* object or array of objects */
  long count;
  long cancel_after_ms; /* -1: none */
  const char *cancel_when;
  const char *cancel_on_output;
  bool cancel_before_start;
  bool cancel_after_start;
  bool cancel_after_end;
  const char *cancel_id;
  long deadline_ms;
  int verbosity;
};

struct driver;

struct slot {
  struct driver *driver;
  size_t index;
  flwd_run *run;
  json_object *events; /* event types in order */
  json_object *cancel; /* outcome of the scheduled cancel, or NULL */
  long long cancel_ms; /* when the cancel was called, or -1 */
  json_object *start_error;
  json_object *late_cancel;
  json_object *late_ctx_cancel;
  struct event *cancel_ev;
  bool cancel_scheduled;
  bool counted_active; /* between run.planned and run.finished */
  bool done;
  char *output; /* stdout so far, for --cancel-on-output */
  size_t output_len;
  long long started_ms;
  long long finished_ms;
};

struct driver {
  struct options opt;
  flwd_ctx *ctx;
  struct event_base *base;
  struct slot *slots;
  size_t count;
  size_t finished;
  size_t max_active;
  size_t active_events;
  size_t max_active_events;
  struct event *sample_ev;
  struct event *deadline_ev;
  bool deadline_hit;
  long long t0;
};

static long long
now_ms(void)
{
  struct timespec ts;
  clock_gettime(CLOCK_MONOTONIC, &ts);
  return (long long)ts.tv_sec * 1000 + ts.tv_nsec / 1000000;
}

static json_object *
error_json(const flwd_error *err)
{
  json_object *obj = json_object_new_object();
  json_object_object_add(obj, "code",
                         json_object_new_string(flwd_error_name(err)));
  json_object_object_add(obj, "message",
                         json_object_new_string(flwd_error_message(err)));
  return obj;
}

/* Returns {"code","message"} for the outcome of a call: "ok" for 0. */
static json_object *
outcome_json(int ret, const flwd_error *err)
{
  if (ret == 0) {
    json_object *obj = json_object_new_object();
    json_object_object_add(obj, "code", json_object_new_string("ok"));
    json_object_object_add(obj, "message", json_object_new_string(""));
    return obj;
  }
  return error_json(err);
}

static void
print_json_line(json_object *obj)
{
  puts(json_object_to_json_string_ext(
      obj, JSON_C_TO_STRING_PLAIN | JSON_C_TO_STRING_NOSLASHESCAPE));
  fflush(stdout);
}

static int
fatal(const char *stage, const flwd_error *err)
{
  json_object *fatal_obj = error_json(err);
  json_object_object_add(fatal_obj, "stage", json_object_new_string(stage));
  json_object *line = json_object_new_object();
  json_object_object_add(line, "fatal", fatal_obj);
  print_json_line(line);
  json_object_put(line);
  fprintf(stderr, "runs-driver: %s: %s: %s\n", stage, flwd_error_name(err),
          flwd_error_message(err));
  return 1;
}

/* ---- Options ------------------------------------------------------------ */

static int
parse_long(const char *name, const char *value, long min, long *out)
{
  char *end = NULL;
  errno = 0;
  long n = strtol(value, &end, 10);
  if (errno || end == value || *end || n < min) {
    fprintf(stderr,
            "runs-driver: invalid --%s '%s': use a whole number of "
            "at least %ld\n",
            name, value, min);
    return -1;
  }
  *out = n;
  return 0;
}

/* Sets option NAME (a long option name without dashes) to VALUE. A flag
 * takes "true" or "false". Returns 0, or -1 after printing an error. */
static int
set_option(struct options *opt, const char *name, const char *value)
{
  static const struct {
    const char *name;
    size_t offset;
  } strings[] = {
      {"state-dir", offsetof(struct options, state_dir)},
      {"jobs", offsetof(struct options, jobs)},
      {"runtime", offsetof(struct options, runtime)},
      {"init", offsetof(struct options, init)},
      {"pull", offsetof(struct options, pull)},
      {"max-runs", offsetof(struct options, max_runs)},
      {"run-mode", offsetof(struct options, run_mode)},
      {"log-max-bytes", offsetof(struct options, log_max_bytes)},
      {"job", offsetof(struct options, job)},
      {"cancel-when", offsetof(struct options, cancel_when)},
      {"cancel-on-output", offsetof(struct options, cancel_on_output)},
      {"cancel-id", offsetof(struct options, cancel_id)},
  };
  static const struct {
    const char *name;
    size_t offset;
  } flags[] = {
      {"cancel-before-start", offsetof(struct options, cancel_before_start)},
      {"cancel-after-start", offsetof(struct options, cancel_after_start)},
      {"cancel-after-end", offsetof(struct options, cancel_after_end)},
  };

  for (size_t i = 0; i < sizeof(strings) / sizeof(strings[0]); i++) {
    if (strcmp(name, strings[i].name) == 0) {
      /* The strings live as long as argv or the parsed plan. */
      *(const char **)((char *)opt + strings[i].offset) = value;
      return 0;
    }
  }
  for (size_t i = 0; i < sizeof(flags) / sizeof(flags[0]); i++) {
    if (strcmp(name, flags[i].name) == 0) {
      if (strcmp(value, "true") && strcmp(value, "false")) {
        fprintf(stderr, "runs-driver: invalid --%s '%s': use true or false\n",
                name, value);
        return -1;
      }
      *(bool *)((char *)opt + flags[i].offset) = strcmp(value, "true") == 0;
      return 0;
    }
  }
  if (strcmp(name, "count") == 0)
    return parse_long(name, value, 0, &opt->count);
  if (strcmp(name, "cancel-after-ms") == 0)
    return parse_long(name, value, 0, &opt->cancel_after_ms);
  if (strcmp(name, "deadline-ms") == 0)
    return parse_long(name, value, 1, &opt->deadline_ms);
  if (strcmp(name, "args") == 0) {
    json_object *args = json_tokener_parse(value);
    if (args == NULL
        || !(json_object_is_type(args, json_type_object)
             || (json_object_is_type(args, json_type_array)
                 && json_object_array_length(args) > 0))) {
      fprintf(stderr,
              "runs-driver: invalid --args '%s': use a JSON object "
              "or a non-empty array of objects\n",
              value);
      json_object_put(args);
      return -1;
    }
    json_object_put(opt->args);
    opt->args = args;
    return 0;
  }
  fprintf(stderr, "runs-driver: unknown option '%s'; see --help\n", name);
  return -1;
}

/* Applies the JSON object in the file PATH ("-" for stdin). Returns the
 * parsed plan, which must outlive OPT, or NULL after printing an error. */
static json_object *
apply_plan(struct options *opt, const char *path)
{
  json_object *plan = strcmp(path, "-") == 0 ? json_object_from_fd(0)
                                             : json_object_from_file(path);
  if (plan == NULL || !json_object_is_type(plan, json_type_object)) {
    fprintf(stderr, "runs-driver: invalid plan '%s': %s\n", path,
            plan ? "not a JSON object" : json_util_get_last_err());
    json_object_put(plan);
    return NULL;
  }
  json_object_object_foreach(plan, key, value)
  {
    const char *text;
    if (json_object_is_type(value, json_type_string))
      text = json_object_get_string(value);
    else
      text = json_object_to_json_string_ext(value, JSON_C_TO_STRING_PLAIN);
    if (set_option(opt, key, text) < 0) {
      json_object_put(plan);
      return NULL;
    }
  }
  return plan;
}

/* ---- Runs --------------------------------------------------------------- */

static void
sample_active(struct driver *driver)
{
  size_t active = 0;
  for (size_t i = 0; i < driver->count; i++) {
    flwd_run *run = driver->slots[i].run;
    if (run == NULL)
      continue;
    flwd_run_state state = flwd_run_get_state(run);
    active += state == FLWD_RUN_PREPARING || state == FLWD_RUN_RUNNING;
  }
  if (active > driver->max_active)
    driver->max_active = active;
}

static void
on_sample(evutil_socket_t fd, short what, void *arg)
{
  sample_active(arg);
}

static void
on_cancel_timer(evutil_socket_t fd, short what, void *arg)
{
  struct slot *slot = arg;
  flwd_error *err = NULL;
  slot->cancel_ms = now_ms() - slot->driver->t0;
  int ret = flwd_run_cancel(slot->run, &err);
  json_object_put(slot->cancel);
  slot->cancel = outcome_json(ret, err);
  flwd_error_free(err);
}

/* Cancels SLOT's run DELAY_MS from now, from the event loop rather than
 * from inside a callback of the run. */
static void
schedule_cancel(struct slot *slot, long delay_ms)
{
  if (slot->cancel_scheduled)
    return;
  slot->cancel_scheduled = true;
  slot->cancel_ev = evtimer_new(slot->driver->base, on_cancel_timer, slot);
  struct timeval tv = {delay_ms / 1000, (delay_ms % 1000) * 1000};
  if (slot->cancel_ev == NULL || evtimer_add(slot->cancel_ev, &tv) < 0)
    fprintf(stderr, "runs-driver: run %zu: cannot schedule its cancel\n",
            slot->index);
}

static void
on_event(flwd_run *run, const char *event, void *user)
{
  struct slot *slot = user;
  struct driver *driver = slot->driver;
  json_object *obj = json_tokener_parse(event);
  json_object *type_obj = NULL;
  const char *type = obj && json_object_object_get_ex(obj, "type", &type_obj)
                         ? json_object_get_string(type_obj)
                         : "(invalid event)";
  json_object_array_add(slot->events, json_object_new_string(type));

  if (strcmp(type, "run.planned") == 0 && !slot->counted_active) {
    slot->counted_active = true;
    driver->active_events++;
    if (driver->active_events > driver->max_active_events)
      driver->max_active_events = driver->active_events;
  } else if (strcmp(type, "run.finished") == 0 && slot->counted_active) {
    slot->counted_active = false;
    driver->active_events--;
  }

  const char *when = driver->opt.cancel_when;
  if (when
      && (strcmp(type, when) == 0
          || strcmp(flwd_run_state_name(flwd_run_get_state(run)), when) == 0))
    schedule_cancel(slot, driver->opt.cancel_after_ms > 0
                              ? driver->opt.cancel_after_ms
                              : 0);
  json_object_put(obj);
  sample_active(driver);
}

/* Keeps up to OUTPUT_KEEP_BYTES of stdout, enough for the marker lines
 * that the tests wait for. */
#define OUTPUT_KEEP_BYTES 65536

static void
on_output(flwd_run *run, flwd_stream stream, const char *data, size_t len,
          void *user)
{
  struct slot *slot = user;
  const char *text = slot->driver->opt.cancel_on_output;
  if (stream != FLWD_STREAM_STDOUT || text == NULL || slot->cancel_scheduled)
    return;
  if (slot->output_len + len > OUTPUT_KEEP_BYTES)
    return;
  char *grown = realloc(slot->output, slot->output_len + len + 1);
  if (grown == NULL)
    return;
  memcpy(grown + slot->output_len, data, len);
  slot->output = grown;
  slot->output_len += len;
  slot->output[slot->output_len] = '\0';
  if (strstr(slot->output, text))
    schedule_cancel(slot, slot->driver->opt.cancel_after_ms > 0
                              ? slot->driver->opt.cancel_after_ms
                              : 0);
}

static void
on_done(flwd_run *run, void *user)
{
  struct slot *slot = user;
  slot->done = true;
  slot->finished_ms = now_ms() - slot->driver->t0;
  slot->driver->finished++;
  sample_active(slot->driver);
}

static void
on_log(flwd_log_level level, const char *message, void *user)
{
  struct driver *driver = user;
  static const char *const labels[] = {"error", "warning", "info", "debug"};
  if ((int)level > driver->opt.verbosity + 1)
    return;
  fprintf(stderr, "runs-driver: flwd: %s: %s\n",
          (int)level < 4 ? labels[level] : "log", message);
}

static void
on_deadline(evutil_socket_t fd, short what, void *arg)
{
  struct driver *driver = arg;
  driver->deadline_hit = true;
  fprintf(stderr,
          "runs-driver: the deadline of %ld ms passed with %zu of "
          "%zu runs finished; cancelling the others\n",
          driver->opt.deadline_ms, driver->finished, driver->count);
  for (size_t i = 0; i < driver->count; i++) {
    if (driver->slots[i].run && !driver->slots[i].done)
      flwd_run_cancel(driver->slots[i].run, NULL);
  }
}

static json_object *
args_for(const struct options *opt, size_t index)
{
  if (json_object_is_type(opt->args, json_type_array))
    return json_object_array_get_idx(
        opt->args, index % json_object_array_length(opt->args));
  return opt->args;
}

static json_object *
run_line(struct slot *slot)
{
  flwd_run *run = slot->run;
  json_object *line = json_object_new_object();
  json_object_object_add(line, "index",
                         json_object_new_int64((int64_t)slot->index));
  json_object_object_add(line, "id", json_object_new_string(flwd_run_id(run)));
  json_object_object_add(
      line, "state",
      json_object_new_string(flwd_run_state_name(flwd_run_get_state(run))));
  json_object_object_add(line, "exit_status",
                         json_object_new_int(flwd_run_exit_status(run)));
  const flwd_error *err = flwd_run_error(run);
  json_object_object_add(line, "error", err ? error_json(err) : NULL);
  json_object_object_add(line, "events", json_object_get(slot->events));
  json_object_object_add(line, "cancel", json_object_get(slot->cancel));
  json_object_object_add(
      line, "cancel_ms",
      slot->cancel_ms >= 0 ? json_object_new_int64(slot->cancel_ms) : NULL);
  json_object_object_add(line, "start_error",
                         json_object_get(slot->start_error));
  json_object_object_add(line, "late_cancel",
                         json_object_get(slot->late_cancel));
  json_object_object_add(line, "late_ctx_cancel",
                         json_object_get(slot->late_ctx_cancel));
  json_object_object_add(line, "started_ms",
                         json_object_new_int64(slot->started_ms));
  json_object_object_add(line, "finished_ms",
                         slot->done ? json_object_new_int64(slot->finished_ms)
                                    : NULL);
  char *doc = flwd_run_to_json(run);
  json_object_object_add(line, "run", doc ? json_tokener_parse(doc) : NULL);
  flwd_free(doc);
  return line;
}

/* Creates every run, then starts them, cancelling as the options ask. */
static int
create_and_start(struct driver *driver, flwd_job *job)
{
  const struct options *opt = &driver->opt;
  for (size_t i = 0; i < driver->count; i++) {
    struct slot *slot = &driver->slots[i];
    slot->driver = driver;
    slot->index = i;
    slot->events = json_object_new_array();
    slot->cancel_ms = -1;

    flwd_error *err = NULL;
    flwd_args *args = NULL;
    const char *args_text = json_object_to_json_string_ext(
        args_for(opt, i), JSON_C_TO_STRING_PLAIN);
    if (flwd_args_from_json(job, args_text, &args, &err) < 0) {
      int status = fatal("args", err);
      flwd_error_free(err);
      return status;
    }
    int ret = flwd_run_create(driver->ctx, job, args, &slot->run, &err);
    flwd_args_free(args);
    if (ret < 0) {
      int status = fatal("run_create", err);
      flwd_error_free(err);
      return status;
    }
    flwd_run_set_event_cb(slot->run, on_event, slot);
    flwd_run_set_done_cb(slot->run, on_done, slot);
    flwd_run_set_output_cb(slot->run, on_output, slot);
  }

  for (size_t i = 0; i < driver->count; i++) {
    struct slot *slot = &driver->slots[i];
    flwd_error *err = NULL;
    if (opt->cancel_before_start) {
      slot->cancel_ms = now_ms() - driver->t0;
      int ret = flwd_run_cancel(slot->run, &err);
      slot->cancel = outcome_json(ret, err);
      flwd_error_free(err);
      err = NULL;
    }
    slot->started_ms = now_ms() - driver->t0;
    int ret = flwd_run_start(slot->run, &err);
    if (ret < 0)
      slot->start_error = error_json(err);
    flwd_error_free(err);
    err = NULL;
    if (opt->cancel_after_start) {
      slot->cancel_ms = now_ms() - driver->t0;
      ret = flwd_run_cancel(slot->run, &err);
      slot->cancel = outcome_json(ret, err);
      flwd_error_free(err);
    } else if (opt->cancel_after_ms >= 0 && opt->cancel_when == NULL
               && opt->cancel_on_output == NULL) {
      schedule_cancel(slot, opt->cancel_after_ms);
    }
  }
  return 0;
}

static void
cancel_after_end(struct driver *driver)
{
  for (size_t i = 0; i < driver->count; i++) {
    struct slot *slot = &driver->slots[i];
    flwd_error *err = NULL;
    int ret = flwd_run_cancel(slot->run, &err);
    slot->late_cancel = outcome_json(ret, err);
    flwd_error_free(err);
    err = NULL;
    ret = flwd_ctx_cancel_run(driver->ctx, flwd_run_id(slot->run), &err);
    slot->late_ctx_cancel = outcome_json(ret, err);
    flwd_error_free(err);
  }
}

static void
print_report(struct driver *driver)
{
  for (size_t i = 0; i < driver->count; i++) {
    json_object *line = run_line(&driver->slots[i]);
    print_json_line(line);
    json_object_put(line);
  }
  json_object *summary = json_object_new_object();
  json_object_object_add(summary, "runs",
                         json_object_new_int64((int64_t)driver->count));
  json_object_object_add(summary, "finished",
                         json_object_new_int64((int64_t)driver->finished));
  json_object_object_add(summary, "max_active",
                         json_object_new_int64((int64_t)driver->max_active));
  json_object_object_add(
      summary, "max_active_events",
      json_object_new_int64((int64_t)driver->max_active_events));
  json_object_object_add(summary, "elapsed_ms",
                         json_object_new_int64(now_ms() - driver->t0));
  json_object_object_add(summary, "deadline_hit",
                         json_object_new_boolean(driver->deadline_hit));
  json_object *line = json_object_new_object();
  json_object_object_add(line, "summary", summary);
  print_json_line(line);
  json_object_put(line);
}

static int
configure_ctx(struct driver *driver)
{
  const struct options *opt = &driver->opt;
  const struct {
    flwd_option option;
    const char *value;
  } settings[] = {
      {FLWD_OPT_STATE_DIR, opt->state_dir},
      {FLWD_OPT_JOBS_PATH, opt->jobs},
      {FLWD_OPT_RUNTIME, opt->runtime},
      {FLWD_OPT_INIT_PATH, opt->init},
      {FLWD_OPT_PULL_POLICY, opt->pull},
      {FLWD_OPT_MAX_RUNS, opt->max_runs},
      {FLWD_OPT_RUN_MODE, opt->run_mode},
      {FLWD_OPT_LOG_MAX_BYTES, opt->log_max_bytes},
  };
  for (size_t i = 0; i < sizeof(settings) / sizeof(settings[0]); i++) {
    if (settings[i].value == NULL)
      continue;
    flwd_error *err = NULL;
    if (flwd_ctx_set_option(driver->ctx, settings[i].option, settings[i].value,
                            &err)
        < 0) {
      int status = fatal("option", err);
      flwd_error_free(err);
      return status;
    }
  }
  return 0;
}

static int
cancel_by_id(struct driver *driver)
{
  flwd_error *err = NULL;
  int ret = flwd_ctx_cancel_run(driver->ctx, driver->opt.cancel_id, &err);
  json_object *line = outcome_json(ret, err);
  json_object_object_add(line, "cancel_id",
                         json_object_new_string(driver->opt.cancel_id));
  print_json_line(line);
  json_object_put(line);
  flwd_error_free(err);
  return 0;
}

/* Dispatches the loop until every run has ended. */
static void
run_loop(struct driver *driver)
{
  driver->sample_ev
      = event_new(driver->base, -1, EV_PERSIST, on_sample, driver);
  struct timeval sample_tv = {0, 10 * 1000};
  if (driver->sample_ev)
    evtimer_add(driver->sample_ev, &sample_tv);
  driver->deadline_ev = evtimer_new(driver->base, on_deadline, driver);
  struct timeval deadline_tv = {driver->opt.deadline_ms / 1000,
                                (driver->opt.deadline_ms % 1000) * 1000};
  if (driver->deadline_ev)
    evtimer_add(driver->deadline_ev, &deadline_tv);

  /* A done callback may already have run inside flwd_run_cancel, before
   * the loop, so the count is checked rather than a loop break. */
  while (driver->finished < driver->count) {
    if (event_base_loop(driver->base, EVLOOP_ONCE) < 0) {
      fputs("runs-driver: the event loop failed\n", stderr);
      break;
    }
  }
  if (driver->sample_ev)
    event_free(driver->sample_ev);
  if (driver->deadline_ev)
    event_free(driver->deadline_ev);
  driver->sample_ev = driver->deadline_ev = NULL;
}

static int
drive(struct driver *driver)
{
  flwd_error *err = NULL;
  if (flwd_ctx_new(NULL, &driver->ctx, &err) < 0) {
    int status = fatal("ctx_new", err);
    flwd_error_free(err);
    return status;
  }
  flwd_ctx_set_log_cb(driver->ctx, on_log, driver);
  driver->base = flwd_ctx_event_base(driver->ctx);
  int status = configure_ctx(driver);
  if (status)
    return status;
  if (driver->opt.cancel_id)
    return cancel_by_id(driver);

  flwd_job *job = NULL;
  if (flwd_job_find(driver->ctx, driver->opt.job, &job, &err) < 0) {
    status = fatal("job_find", err);
    flwd_error_free(err);
    return status;
  }
  driver->count = (size_t)driver->opt.count;
  driver->slots
      = calloc(driver->count ? driver->count : 1, sizeof(*driver->slots));
  if (driver->slots == NULL) {
    flwd_job_free(job);
    fputs("runs-driver: out of memory\n", stderr);
    return 1;
  }
  driver->t0 = now_ms();
  status = create_and_start(driver, job);
  flwd_job_free(job);
  if (status == 0) {
    run_loop(driver);
    if (driver->opt.cancel_after_end)
      cancel_after_end(driver);
    print_report(driver);
    status = driver->finished == driver->count && !driver->deadline_hit ? 0 : 1;
  }
  return status;
}

static void
driver_free(struct driver *driver)
{
  for (size_t i = 0; driver->slots && i < driver->count; i++) {
    struct slot *slot = &driver->slots[i];
    if (slot->cancel_ev)
      event_free(slot->cancel_ev);
    flwd_run_free(slot->run);
    json_object_put(slot->events);
    json_object_put(slot->cancel);
    json_object_put(slot->start_error);
    json_object_put(slot->late_cancel);
    json_object_put(slot->late_ctx_cancel);
    free(slot->output);
  }
  free(driver->slots);
  /* Waits for runs that are still stopping, after a deadline. */
  flwd_ctx_free(driver->ctx);
  json_object_put(driver->opt.args);
}

int
main(int argc, char **argv)
{
  static const struct option long_options[] = {
      {"plan", required_argument, NULL, 'p'},
      {"state-dir", required_argument, NULL, 0},
      {"jobs", required_argument, NULL, 0},
      {"runtime", required_argument, NULL, 0},
      {"init", required_argument, NULL, 0},
      {"pull", required_argument, NULL, 0},
      {"max-runs", required_argument, NULL, 0},
      {"run-mode", required_argument, NULL, 0},
      {"log-max-bytes", required_argument, NULL, 0},
      {"job", required_argument, NULL, 0},
      {"args", required_argument, NULL, 0},
      {"count", required_argument, NULL, 0},
      {"cancel-after-ms", required_argument, NULL, 0},
      {"cancel-when", required_argument, NULL, 0},
      {"cancel-on-output", required_argument, NULL, 0},
      {"cancel-before-start", no_argument, NULL, 0},
      {"cancel-after-start", no_argument, NULL, 0},
      {"cancel-after-end", no_argument, NULL, 0},
      {"cancel-id", required_argument, NULL, 0},
      {"deadline-ms", required_argument, NULL, 0},
      {"verbose", no_argument, NULL, 'v'},
      {"help", no_argument, NULL, 'h'},
      {NULL, 0, NULL, 0},
  };

  struct driver driver = {0};
  struct options *opt = &driver.opt;
  opt->count = 1;
  opt->cancel_after_ms = -1;
  opt->deadline_ms = 600000;
  opt->args = json_object_new_object();

  /* The plan first, so that the command line overrides it. */
  json_object *plan = NULL;
  for (int i = 1; i < argc; i++) {
    const char *value = NULL;
    if (strcmp(argv[i], "--plan") == 0 && i + 1 < argc)
      value = argv[i + 1];
    else if (strncmp(argv[i], "--plan=", 7) == 0)
      value = argv[i] + 7;
    if (value && plan == NULL && (plan = apply_plan(opt, value)) == NULL) {
      json_object_put(opt->args);
      return 2;
    }
  }

  int status = 0;
  int c, option_index;
  while (status == 0
         && (c = getopt_long(argc, argv, "vh", long_options, &option_index))
                != -1) {
    if (c == 0)
      status = set_option(opt, long_options[option_index].name,
                          optarg ? optarg : "true")
                       < 0
                   ? 2
                   : 0;
    else if (c == 'v')
      opt->verbosity++;
    else if (c == 'h') {
      fputs(usage_text, stdout);
      json_object_put(opt->args);
      json_object_put(plan);
      return 0;
    } else if (c != 'p')
      status = 2;
  }
  if (status == 0 && optind < argc) {
    fprintf(stderr, "runs-driver: unexpected argument '%s'\n", argv[optind]);
    status = 2;
  }
  if (status == 0 && opt->job == NULL && opt->cancel_id == NULL) {
    fputs("runs-driver: missing --job; see --help\n", stderr);
    status = 2;
  }
  if (status != 0) {
    json_object_put(opt->args);
    json_object_put(plan);
    return status;
  }

  status = drive(&driver);
  driver_free(&driver);
  json_object_put(plan);
  return status;
}
