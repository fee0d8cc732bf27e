/* libflwd: secrets, from the host to /run/secrets of one run.
 *
 * A secret's value is read from the secrets directory or, when allowed,
 * from flwd's environment, written to a file of mode 0400 in a private
 * directory of the run, bind-mounted read-only at /run/secrets, and
 * removed with the run. It never goes on a command line, into an event,
 * a log line or an error message, and into the env file only for a
 * secret that the policy grants as an environment variable.
 */
#include <ctype.h>
#include <errno.h>
#include <fcntl.h>
#include <string.h>
#include <sys/stat.h>
#include <sys/wait.h>

#include "run-internal.h"

#define SECRET_MAX_BYTES (1024 * 1024)

static char *
secret_env_source(const char *name)
{
  char *var = xasprintf("FLWD_SECRET_%s", name);
  if (var == NULL)
    return NULL;
  for (char *p = var + 12; *p; p++)
    *p = isalnum((unsigned char)*p) ? (char)toupper((unsigned char)*p) : '_';
  return var;
}

/* Reads one value into OUT. Returns 0, or -1 when neither source has it. */
static int
read_secret(flwd_ctx *ctx, const char *name, struct buf *out)
{
  if (ctx->secrets_dir[0]) {
    cleanup_free char *path = xasprintf("%s/%s", ctx->secrets_dir, name);
    cleanup_close int fd = path ? open(path, O_RDONLY | O_CLOEXEC) : -1;
    struct stat st;
    if (fd >= 0 && fstat(fd, &st) == 0 && S_ISREG(st.st_mode)
        && st.st_size <= SECRET_MAX_BYTES) {
      char chunk[8192];
      ssize_t n;
      buf_append(out, "", 0);
      while ((n = read(fd, chunk, sizeof(chunk))) > 0)
        buf_append(out, chunk, (size_t)n);
      explicit_bzero(chunk, sizeof(chunk));
      return n < 0 ? -1 : 0;
    }
  }
  if (strcmp(ctx->secrets_env_mode, "on") == 0) {
    cleanup_free char *var = secret_env_source(name);
    const char *value = var ? getenv(var) : NULL;
    if (value)
      return buf_append(out, value, strlen(value));
  }
  return -1;
}

static void
wipe(struct buf *value)
{
  if (value->data)
    explicit_bzero(value->data, value->cap);
  buf_clear(value);
}

static bool
granted_as_env(const flwd_run *run, const char *name)
{
  for (size_t i = 0; i < run->plan.secrets_env.len; i++) {
    if (strcmp(run->plan.secrets_env.items[i], name) == 0)
      return true;
  }
  return false;
}

/* Appends NAME=VALUE for a secret granted as an environment variable. The
 * variable is the name upper-cased; one final newline of a file's value
 * is dropped, and a value that still contains a line break is rejected. */
static int
append_env(flwd_run *run, const char *name, struct buf *value, struct buf *env,
           flwd_error **err)
{
  size_t len = value->len;
  if (len && value->data[len - 1] == '\n')
    len--;
  if (memchr(value->data, '\n', len) || memchr(value->data, '\0', len))
    return set_error(err, FLWD_E_CONFIG_INVALID,
                     "secret '%s' cannot be given as an environment "
                     "variable: its value holds a line break or a NUL byte",
                     name);
  cleanup_free char *var = xasprintf("%s", name);
  if (var == NULL)
    return set_error(err, FLWD_E_INTERNAL, "out of memory");
  for (char *p = var; *p; p++)
    *p = isalnum((unsigned char)*p) ? (char)toupper((unsigned char)*p) : '_';
  int ret = buf_append(env, var, strlen(var));
  ret |= buf_append(env, "=", 1);
  ret |= buf_append(env, value->data, len);
  ret |= buf_append(env, "\n", 1);
  return ret ? set_error(err, FLWD_E_INTERNAL, "out of memory") : 0;
}

int
secrets_write(flwd_run *run, struct buf *env, flwd_error **err)
{
  const struct strv *names = &run->job->secrets;
  if (names->len == 0)
    return 0;
  cleanup_free char *dir = xasprintf("%s/secrets", run->host_dir);
  if (dir == NULL || mkdir(dir, 0700) < 0)
    return set_error_errno(err, FLWD_E_INTERNAL, errno,
                           "cannot create the secrets directory of run %s",
                           run->id);

  for (size_t i = 0; i < names->len; i++) {
    const char *name = names->items[i];
    struct buf value = {0};
    if (read_secret(run->ctx, name, &value) < 0) {
      wipe(&value);
      cleanup_free char *var = secret_env_source(name);
      return set_error(
          err, FLWD_E_SECRET_NOT_FOUND,
          "secret '%s' of job '%s' has no value: no file '%s' "
          "in the secrets directory '%s'%s%s%s",
          name, run->job->id, name,
          run->ctx->secrets_dir[0] ? run->ctx->secrets_dir
                                   : "(none configured)",
          strcmp(run->ctx->secrets_env_mode, "on") == 0 ? " and no variable "
                                                        : "",
          strcmp(run->ctx->secrets_env_mode, "on") == 0 && var ? var : "",
          strcmp(run->ctx->secrets_env_mode, "on") == 0
              ? " in flwd's environment"
              : "");
    }
    cleanup_free char *path = xasprintf("%s/%s", dir, name);
    int ret = 0;
    if (path == NULL
        || write_file_atomic(path, value.data ? value.data : "", value.len,
                             0400)
               < 0)
      ret = set_error_errno(err, FLWD_E_INTERNAL, errno,
                            "cannot write secret '%s' of run %s", name,
                            run->id);
    if (ret == 0 && granted_as_env(run, name))
      ret = append_env(run, name, &value, env, err);
    wipe(&value);
    if (ret < 0)
      return ret;
  }
  return 0;
}

/* Parses the image's USER as numeric UID[:GID]. Returns 0, or -1 for a
 * user given by name. */
static int
numeric_user(const char *user, uid_t *uid, gid_t *gid)
{
  if (user == NULL || *user == '\0' || strcmp(user, "root") == 0) {
    *uid = 0;
    *gid = 0;
    return 0;
  }
  char *end = NULL;
  unsigned long u = strtoul(user, &end, 10);
  if (end == user || (*end && *end != ':'))
    return -1;
  unsigned long g = u;
  if (*end == ':') {
    const char *group = end + 1;
    g = strtoul(group, &end, 10);
    if (end == group || *end)
      return -1;
  }
  *uid = (uid_t)u;
  *gid = (gid_t)g;
  return 0;
}

/* Gives the secret files to the container's user where the runtime cannot
 * do it itself (Docker): as the daemon maps no user namespace, the uid in
 * the container is the uid on the host. */
int
secrets_chown_for_image(flwd_run *run, flwd_error **err)
{
  if (run->job->secrets.len == 0
      || run->plan.runtime->secrets_mount_options[0] != '\0')
    return 0;
  uid_t uid;
  gid_t gid;
  if (numeric_user(run->image_user, &uid, &gid) < 0)
    return set_error(err, FLWD_E_CONFIG_INVALID,
                     "image '%s' runs as user '%s'; with %s, secrets need "
                     "a numeric USER (uid or uid:gid) in the image, or use "
                     "Podman",
                     run->job->image, run->image_user, run->plan.runtime->name);
  if (uid == 0)
    return 0;
  cleanup_free char *dir = xasprintf("%s/secrets", run->host_dir);
  if (dir == NULL || chown(dir, uid, gid) < 0)
    return set_error_errno(err, FLWD_E_INTERNAL, errno,
                           "cannot give the secrets of run %s to uid %u",
                           run->id, (unsigned)uid);
  for (size_t i = 0; i < run->job->secrets.len; i++) {
    cleanup_free char *path
        = xasprintf("%s/%s", dir, run->job->secrets.items[i]);
    if (path == NULL || chown(path, uid, gid) < 0)
      return set_error_errno(err, FLWD_E_INTERNAL, errno,
                             "cannot give the secrets of run %s to uid %u",
                             run->id, (unsigned)uid);
  }
  return 0;
}

/* Removes DIR of the run. What a rootless container wrote there, or what
 * Podman gave to the container's user, belongs to a uid of the user
 * namespace, which only the namespace can remove. */
void
run_remove_tree(flwd_run *run, const char *dir)
{
  if (access(dir, F_OK) < 0)
    return;
  if (rm_rf(dir) == 0)
    return;
  if (run->planned && strcmp(run->plan.runtime->name, "podman") == 0) {
    cleanup_strv struct strv argv;
    strv_init(&argv);
    strv_push(&argv, run->plan.runtime_path);
    strv_push(&argv, "unshare");
    strv_push(&argv, "rm");
    strv_push(&argv, "-rf");
    strv_push(&argv, "--");
    strv_push(&argv, dir);
    int status = 0;
    child_run_sync(run->ctx, &argv, 4096, NULL, NULL, &status, NULL);
  }
  if (access(dir, F_OK) == 0)
    ctx_log(run->ctx, FLWD_LOG_ERROR, "run %s: cannot remove '%s'", run->id,
            dir);
}
