/* libflwd: the run store.
 *
 * Runs and events live in one SQLite database in WAL mode, so that the CLI
 * and the server can share a state directory: readers never wait for the
 * writer, and a process killed in the middle of a run leaves every
 * committed row intact. A run row keeps its whole JSON document next to
 * the few columns that queries filter on.
 *
 * Logs go to one file per run, a line per record: "O " or "E " (stdout or
 * stderr), the line's bytes, and a newline; "o " and "e " mark a last
 * line that had no newline of its own.
 */
#include <errno.h>
#include <fcntl.h>
#include <stdio.h>
#include <string.h>
#include <sys/file.h>
#include <sys/stat.h>

#include <sqlite3.h>

#include "internal.h"

/* Version 1: runs(id, job, state, created_at, doc) and events(run_id, seq,
 * type, doc). A store written by a newer flwd is refused, never changed. */
#define SCHEMA_VERSION 1
#define BUSY_TIMEOUT_MS 10000
#define LOG_READ_MAX_LINES 100000

struct store {
  sqlite3 *db;
  char *path;
  sqlite3_stmt *put_run;
  sqlite3_stmt *add_event;
};

static const char schema_sql[]
    = "CREATE TABLE IF NOT EXISTS runs ("
      "  id TEXT PRIMARY KEY,"
      "  job TEXT NOT NULL,"
      "  state TEXT NOT NULL,"
      "  created_at TEXT NOT NULL,"
      "  doc TEXT NOT NULL);"
      "CREATE INDEX IF NOT EXISTS runs_by_time ON runs(created_at);"
      "CREATE INDEX IF NOT EXISTS runs_by_job ON runs(job, created_at);"
      "CREATE TABLE IF NOT EXISTS events ("
      "  run_id TEXT NOT NULL,"
      "  seq INTEGER NOT NULL,"
      "  type TEXT NOT NULL,"
      "  doc TEXT NOT NULL,"
      "  PRIMARY KEY (run_id, seq));";

static int
db_error(struct store *store, flwd_error **err, const char *what)
{
  return set_error(err, FLWD_E_STORE_FAILED, "run store '%s': %s: %s",
                   store->path, what, sqlite3_errmsg(store->db));
}

static int
exec_sql(struct store *store, const char *sql, flwd_error **err)
{
  char *message = NULL;
  if (sqlite3_exec(store->db, sql, NULL, NULL, &message) == SQLITE_OK)
    return 0;
  int ret = set_error(err, FLWD_E_STORE_FAILED, "run store '%s': %s",
                      store->path, message ? message : "unknown error");
  sqlite3_free(message);
  return ret;
}

static int
read_user_version(struct store *store, int *version, flwd_error **err)
{
  sqlite3_stmt *stmt = NULL;
  if (sqlite3_prepare_v2(store->db, "PRAGMA user_version", -1, &stmt, NULL)
      != SQLITE_OK)
    return db_error(store, err, "cannot read the schema version");
  *version = sqlite3_step(stmt) == SQLITE_ROW ? sqlite3_column_int(stmt, 0) : 0;
  sqlite3_finalize(stmt);
  return 0;
}

/* Creates the schema in a fresh store, or checks an existing one. */
static int
migrate(struct store *store, flwd_error **err)
{
  int version = 0;
  int ret = read_user_version(store, &version, err);
  if (ret < 0)
    return ret;
  if (version > SCHEMA_VERSION)
    return set_error(err, FLWD_E_STORE_FAILED,
                     "run store '%s' has schema version %d, newer than the "
                     "%d this flwd supports; use a newer flwd or another "
                     "--state-dir",
                     store->path, version, SCHEMA_VERSION);
  if (version == SCHEMA_VERSION)
    return 0;

  ret = exec_sql(store, "BEGIN IMMEDIATE", err);
  if (ret == 0)
    ret = exec_sql(store, schema_sql, err);
  if (ret == 0)
    ret = exec_sql(store, "PRAGMA user_version = 1", err);
  if (ret == 0)
    return exec_sql(store, "COMMIT", err);
  exec_sql(store, "ROLLBACK", NULL);
  return ret;
}

void
store_close(struct store *store)
{
  if (store == NULL)
    return;
  sqlite3_finalize(store->put_run);
  sqlite3_finalize(store->add_event);
  sqlite3_close(store->db);
  free(store->path);
  free(store);
}

static int
store_open_at(const char *state_dir, struct store **out, flwd_error **err)
{
  if (mkdir_p(state_dir, 0700) < 0)
    return set_error_errno(err, FLWD_E_STORE_FAILED, errno,
                           "cannot create the state directory '%s'", state_dir);

  struct store *store = calloc(1, sizeof(*store));
  if (store == NULL)
    return set_error(err, FLWD_E_INTERNAL, "out of memory");
  store->path = xasprintf("%s/flwd.db", state_dir);
  if (store->path == NULL) {
    free(store);
    return set_error(err, FLWD_E_INTERNAL, "out of memory");
  }

  /* Switching a new database to WAL fails with SQLITE_BUSY, busy timeout
   * or not, when another process opens it at the same moment; a file lock
   * in the state directory lets one process at a time set the store up. */
  cleanup_free char *lock_path = xasprintf("%s/flwd.db.lock", state_dir);
  cleanup_close int lock_fd
      = lock_path ? open(lock_path, O_RDWR | O_CREAT | O_CLOEXEC, 0600) : -1;
  if (lock_fd >= 0)
    while (flock(lock_fd, LOCK_EX) < 0 && errno == EINTR)
      ;

  int ret = 0;
  if (sqlite3_open_v2(store->path, &store->db,
                      SQLITE_OPEN_READWRITE | SQLITE_OPEN_CREATE
                          | SQLITE_OPEN_NOMUTEX,
                      NULL)
      != SQLITE_OK)
    ret = db_error(store, err, "cannot open");
  if (ret == 0) {
    sqlite3_busy_timeout(store->db, BUSY_TIMEOUT_MS);
    /* WAL keeps readers and the writer apart; NORMAL sync can lose the
     * last transactions on power loss but never corrupts the store. */
    ret = exec_sql(store,
                   "PRAGMA journal_mode = WAL;"
                   "PRAGMA synchronous = NORMAL;",
                   err);
  }
  if (ret == 0)
    ret = migrate(store, err);
  if (ret == 0
      && (sqlite3_prepare_v2(store->db,
                             "INSERT INTO runs (id, job, state, created_at, "
                             "doc) VALUES (?1, ?2, ?3, ?4, ?5) "
                             "ON CONFLICT(id) DO UPDATE SET state = ?3, "
                             "doc = ?5",
                             -1, &store->put_run, NULL)
              != SQLITE_OK
          || sqlite3_prepare_v2(store->db,
                                "INSERT OR REPLACE INTO events (run_id, seq, "
                                "type, doc) VALUES (?1, ?2, ?3, ?4)",
                                -1, &store->add_event, NULL)
                 != SQLITE_OK))
    ret = db_error(store, err, "cannot prepare statements");
  if (ret < 0) {
    store_close(store);
    return ret;
  }
  *out = store;
  return 0;
}

int
store_get(flwd_ctx *ctx, struct store **out, flwd_error **err)
{
  *out = NULL;
  if (strcmp(ctx->store_mode, "off") == 0)
    return 0;
  if (ctx->store == NULL) {
    int ret = store_open_at(ctx->state_dir, &ctx->store, err);
    if (ret < 0)
      return ret;
  }
  *out = ctx->store;
  return 0;
}

static int
step_done(struct store *store, sqlite3_stmt *stmt, flwd_error **err,
          const char *what)
{
  int rc = sqlite3_step(stmt);
  sqlite3_reset(stmt);
  sqlite3_clear_bindings(stmt);
  if (rc != SQLITE_DONE)
    return db_error(store, err, what);
  return 0;
}

int
store_put_run(struct store *store, const char *id, const char *job,
              const char *state, const char *created_at, const char *doc,
              flwd_error **err)
{
  sqlite3_stmt *stmt = store->put_run;
  sqlite3_bind_text(stmt, 1, id, -1, SQLITE_STATIC);
  sqlite3_bind_text(stmt, 2, job, -1, SQLITE_STATIC);
  sqlite3_bind_text(stmt, 3, state, -1, SQLITE_STATIC);
  sqlite3_bind_text(stmt, 4, created_at, -1, SQLITE_STATIC);
  sqlite3_bind_text(stmt, 5, doc, -1, SQLITE_STATIC);
  return step_done(store, stmt, err, "cannot record the run");
}

int
store_add_event(struct store *store, const char *run_id, long long seq,
                const char *type, const char *doc, flwd_error **err)
{
  sqlite3_stmt *stmt = store->add_event;
  sqlite3_bind_text(stmt, 1, run_id, -1, SQLITE_STATIC);
  sqlite3_bind_int64(stmt, 2, seq);
  sqlite3_bind_text(stmt, 3, type, -1, SQLITE_STATIC);
  sqlite3_bind_text(stmt, 4, doc, -1, SQLITE_STATIC);
  return step_done(store, stmt, err, "cannot record an event");
}

/* ---- Queries ---------------------------------------------------------- */

static int
open_for_query(flwd_ctx *ctx, struct store **store, flwd_error **err)
{
  int ret = store_get(ctx, store, err);
  if (ret == 0 && *store == NULL)
    return set_error(err, FLWD_E_STORE_FAILED,
                     "the run store is turned off in this context");
  return ret;
}

/* Runs STMT and collects column 0 of each row, a JSON document, into a
 * JSON array text. */
static int
collect_docs(struct store *store, sqlite3_stmt *stmt, char **out,
             flwd_error **err)
{
  struct buf json = {0};
  int ret = buf_append(&json, "[", 1);
  int rc;
  bool first = true;
  while ((rc = sqlite3_step(stmt)) == SQLITE_ROW) {
    const char *doc = (const char *)sqlite3_column_text(stmt, 0);
    if (!first)
      ret |= buf_append(&json, ",", 1);
    ret |= buf_append(&json, doc ? doc : "null", strlen(doc ? doc : "null"));
    first = false;
  }
  ret |= buf_append(&json, "]", 1);
  if (rc != SQLITE_DONE) {
    buf_clear(&json);
    return db_error(store, err, "cannot read");
  }
  if (ret) {
    buf_clear(&json);
    return set_error(err, FLWD_E_INTERNAL, "out of memory");
  }
  *out = json.data;
  return 0;
}

static int
run_exists(struct store *store, const char *id, flwd_error **err)
{
  sqlite3_stmt *stmt = NULL;
  if (sqlite3_prepare_v2(store->db, "SELECT 1 FROM runs WHERE id = ?1", -1,
                         &stmt, NULL)
      != SQLITE_OK)
    return db_error(store, err, "cannot read");
  sqlite3_bind_text(stmt, 1, id, -1, SQLITE_STATIC);
  int rc = sqlite3_step(stmt);
  sqlite3_finalize(stmt);
  if (rc == SQLITE_ROW)
    return 0;
  return set_error(err, FLWD_E_RUN_NOT_FOUND, "run '%s' not found", id);
}

/* Runs STMT, which selects one document, and finalizes it. Returns 1 with
 * the document in *OUT, 0 when no row matched, or a negative code. */
static int
read_one_doc(struct store *store, sqlite3_stmt *stmt, char **out,
             flwd_error **err)
{
  int rc = sqlite3_step(stmt);
  int ret = 0;
  if (rc == SQLITE_ROW) {
    *out = strdup((const char *)sqlite3_column_text(stmt, 0));
    ret = *out ? 1 : set_error(err, FLWD_E_INTERNAL, "out of memory");
  } else if (rc != SQLITE_DONE) {
    ret = db_error(store, err, "cannot read");
  }
  sqlite3_finalize(stmt);
  return ret;
}

int
flwd_store_run_json(flwd_ctx *ctx, const char *id, char **out, flwd_error **err)
{
  struct store *store;
  int ret = open_for_query(ctx, &store, err);
  if (ret < 0)
    return ret;
  sqlite3_stmt *stmt = NULL;
  if (sqlite3_prepare_v2(store->db, "SELECT doc FROM runs WHERE id = ?1", -1,
                         &stmt, NULL)
      != SQLITE_OK)
    return db_error(store, err, "cannot read");
  sqlite3_bind_text(stmt, 1, id, -1, SQLITE_STATIC);
  ret = read_one_doc(store, stmt, out, err);
  if (ret == 0)
    ret = set_error(err, FLWD_E_RUN_NOT_FOUND, "run '%s' not found", id);
  return ret < 0 ? ret : 0;
}

int
flwd_store_runs_json(flwd_ctx *ctx, const char *job, const char *state,
                     size_t limit, size_t offset, char **out, flwd_error **err)
{
  if (limit < 1 || limit > 1000)
    return set_error(err, FLWD_E_REQUEST_INVALID,
                     "invalid limit %zu: use 1 to 1000", limit);
  struct store *store;
  int ret = open_for_query(ctx, &store, err);
  if (ret < 0)
    return ret;

  sqlite3_stmt *stmt = NULL;
  if (sqlite3_prepare_v2(store->db,
                         "SELECT doc FROM runs "
                         "WHERE (?1 IS NULL OR job = ?1) "
                         "AND (?2 IS NULL OR state = ?2) "
                         "ORDER BY created_at DESC, id DESC "
                         "LIMIT ?3 OFFSET ?4",
                         -1, &stmt, NULL)
      != SQLITE_OK)
    return db_error(store, err, "cannot read");
  sqlite3_bind_text(stmt, 1, job, -1, SQLITE_STATIC);
  sqlite3_bind_text(stmt, 2, state, -1, SQLITE_STATIC);
  sqlite3_bind_int64(stmt, 3, (sqlite3_int64)limit);
  sqlite3_bind_int64(stmt, 4, (sqlite3_int64)offset);
  ret = collect_docs(store, stmt, out, err);
  sqlite3_finalize(stmt);
  return ret;
}

int
flwd_store_events_json(flwd_ctx *ctx, const char *id, long long after_seq,
                       char **out, flwd_error **err)
{
  struct store *store;
  int ret = open_for_query(ctx, &store, err);
  if (ret == 0)
    ret = run_exists(store, id, err);
  if (ret < 0)
    return ret;

  sqlite3_stmt *stmt = NULL;
  if (sqlite3_prepare_v2(store->db,
                         "SELECT doc FROM events WHERE run_id = ?1 "
                         "AND seq > ?2 ORDER BY seq",
                         -1, &stmt, NULL)
      != SQLITE_OK)
    return db_error(store, err, "cannot read");
  sqlite3_bind_text(stmt, 1, id, -1, SQLITE_STATIC);
  sqlite3_bind_int64(stmt, 2, after_seq);
  ret = collect_docs(store, stmt, out, err);
  sqlite3_finalize(stmt);
  return ret;
}

int
flwd_store_find_by_metadata(flwd_ctx *ctx, const char *key, const char *value,
                            char **out, flwd_error **err)
{
  struct store *store;
  int ret = open_for_query(ctx, &store, err);
  if (ret < 0)
    return ret;
  /* The key is quoted in the JSON path, so '.' in a key stays part of it. */
  sqlite3_stmt *stmt = NULL;
  if (sqlite3_prepare_v2(store->db,
                         "SELECT doc FROM runs WHERE json_extract(doc, "
                         "'$.metadata.\"' || ?1 || '\"') = ?2 "
                         "ORDER BY created_at DESC LIMIT 1",
                         -1, &stmt, NULL)
      != SQLITE_OK)
    return db_error(store, err, "cannot read");
  sqlite3_bind_text(stmt, 1, key, -1, SQLITE_STATIC);
  sqlite3_bind_text(stmt, 2, value, -1, SQLITE_STATIC);
  ret = read_one_doc(store, stmt, out, err);
  if (ret == 0)
    ret = set_error(err, FLWD_E_RUN_NOT_FOUND,
                    "no run has metadata '%s' with that value", key);
  return ret < 0 ? ret : 0;
}

int
flwd_store_count_json(flwd_ctx *ctx, char **out, flwd_error **err)
{
  struct store *store;
  int ret = open_for_query(ctx, &store, err);
  if (ret < 0)
    return ret;
  cleanup_json json_object *counts = json_object_new_object();
  for (int state = FLWD_RUN_QUEUED; state <= FLWD_RUN_ERROR; state++)
    json_object_object_add(counts, flwd_run_state_name((flwd_run_state)state),
                           json_object_new_int64(0));

  sqlite3_stmt *stmt = NULL;
  if (sqlite3_prepare_v2(store->db,
                         "SELECT state, count(*) FROM runs GROUP BY state", -1,
                         &stmt, NULL)
      != SQLITE_OK)
    return db_error(store, err, "cannot read");
  int rc;
  while ((rc = sqlite3_step(stmt)) == SQLITE_ROW) {
    const char *state = (const char *)sqlite3_column_text(stmt, 0);
    if (state)
      json_object_object_add(
          counts, state, json_object_new_int64(sqlite3_column_int64(stmt, 1)));
  }
  sqlite3_finalize(stmt);
  if (rc != SQLITE_DONE)
    return db_error(store, err, "cannot read");
  *out = json_to_string_owned(counts, JSON_C_TO_STRING_PLAIN);
  return *out ? 0 : set_error(err, FLWD_E_INTERNAL, "out of memory");
}

/* Calls FN with the id and document of each run whose state is not final,
 * oldest first. */
int
store_foreach_unfinished(struct store *store,
                         int (*fn)(const char *id, const char *doc, void *user),
                         void *user, flwd_error **err)
{
  sqlite3_stmt *stmt = NULL;
  if (sqlite3_prepare_v2(store->db,
                         "SELECT id, doc FROM runs WHERE state IN "
                         "('queued', 'preparing', 'running') "
                         "ORDER BY created_at",
                         -1, &stmt, NULL)
      != SQLITE_OK)
    return db_error(store, err, "cannot read");
  int rc;
  while ((rc = sqlite3_step(stmt)) == SQLITE_ROW)
    fn((const char *)sqlite3_column_text(stmt, 0),
       (const char *)sqlite3_column_text(stmt, 1), user);
  sqlite3_finalize(stmt);
  if (rc != SQLITE_DONE)
    return db_error(store, err, "cannot read");
  return 0;
}

/* Returns the highest event sequence number stored for RUN_ID, or 0. */
long long
store_last_seq(struct store *store, const char *run_id)
{
  sqlite3_stmt *stmt = NULL;
  long long seq = 0;
  if (sqlite3_prepare_v2(store->db,
                         "SELECT max(seq) FROM events WHERE run_id = ?1", -1,
                         &stmt, NULL)
      != SQLITE_OK)
    return 0;
  sqlite3_bind_text(stmt, 1, run_id, -1, SQLITE_STATIC);
  if (sqlite3_step(stmt) == SQLITE_ROW)
    seq = sqlite3_column_int64(stmt, 0);
  sqlite3_finalize(stmt);
  return seq;
}

/* Returns whether RUN_ID has a row in the store. */
bool
store_has_run(struct store *store, const char *run_id)
{
  return run_exists(store, run_id, NULL) == 0;
}

/* ---- Logs ------------------------------------------------------------- */

char *
store_log_path(flwd_ctx *ctx, const char *run_id)
{
  return xasprintf("%s/logs/%s.log", ctx->state_dir, run_id);
}

int
store_log_open(flwd_ctx *ctx, const char *run_id, bool truncate,
               flwd_error **err)
{
  cleanup_free char *dir = xasprintf("%s/logs", ctx->state_dir);
  cleanup_free char *path = store_log_path(ctx, run_id);
  if (dir == NULL || path == NULL)
    return set_error(err, FLWD_E_INTERNAL, "out of memory");
  if (mkdir_p(dir, 0700) < 0)
    return set_error_errno(err, FLWD_E_STORE_FAILED, errno,
                           "cannot create the log directory '%s'", dir);
  int fd = open(path,
                O_WRONLY | O_CREAT | O_APPEND | O_CLOEXEC
                    | (truncate ? O_TRUNC : 0),
                0600);
  if (fd < 0)
    return set_error_errno(err, FLWD_E_STORE_FAILED, errno,
                           "cannot open the log '%s'", path);
  return fd;
}

static json_object *
log_record(long long n, char tag, const char *line, size_t len)
{
  json_object *record = json_object_new_object();
  json_object_object_add(record, "n", json_object_new_int64(n));
  bool is_stdout = tag == 'O' || tag == 'o';
  json_object_object_add(
      record, "stream",
      json_object_new_string(is_stdout ? "stdout" : "stderr"));
  json_object_object_add(record, "line",
                         json_object_new_string_len(line, (int)len));
  if (tag == 'o' || tag == 'e')
    json_object_object_add(record, "partial", json_object_new_boolean(1));
  return record;
}

int
flwd_store_logs_json(flwd_ctx *ctx, const char *id, long long after_line,
                     char **out, flwd_error **err)
{
  struct store *store;
  int ret = open_for_query(ctx, &store, err);
  if (ret == 0)
    ret = run_exists(store, id, err);
  if (ret < 0)
    return ret;

  cleanup_free char *path = store_log_path(ctx, id);
  cleanup_json json_object *lines = json_object_new_array();
  FILE *f = path ? fopen(path, "re") : NULL;
  if (f) {
    char *line = NULL;
    size_t cap = 0;
    ssize_t len;
    long long n = 0;
    while ((len = getline(&line, &cap, f)) > 0
           && json_object_array_length(lines) < LOG_READ_MAX_LINES) {
      if (line[len - 1] == '\n')
        len--;
      if (len < 2 || !strchr("OoEe", line[0]) || line[1] != ' ')
        continue;
      if (++n <= after_line)
        continue;
      json_object_array_add(lines,
                            log_record(n, line[0], line + 2, (size_t)len - 2));
    }
    free(line);
    fclose(f);
  }
  *out = json_to_string_owned(lines, JSON_PLAIN);
  return *out ? 0 : set_error(err, FLWD_E_INTERNAL, "out of memory");
}
