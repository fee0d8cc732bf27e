/* libflwd: the Docker runtime, driven through its command line, with its
 * daemon probed directly on its socket. */
#include <errno.h>
#include <fcntl.h>
#include <poll.h>
#include <string.h>
#include <sys/socket.h>
#include <sys/un.h>
#include <time.h>

#include "internal.h"

/* The probe must finish within the second that a missing runtime may
 * take to report, whatever the daemon does. */
#define PROBE_TIMEOUT_MS 800
#define PROBE_MAX_BYTES (256 * 1024)

static long long
now_ms(void)
{
  struct timespec ts;
  clock_gettime(CLOCK_MONOTONIC, &ts);
  return (long long)ts.tv_sec * 1000 + ts.tv_nsec / 1000000;
}

/* Returns the daemon's socket path: DOCKER_HOST when it names a unix
 * socket, else the rootless socket of this user if it exists, else the
 * system socket. NULL when DOCKER_HOST names something else. */
static char *
docker_socket_path(void)
{
  const char *host = getenv("DOCKER_HOST");
  if (host && *host) {
    if (strncmp(host, "unix://", 7) == 0)
      return strdup(host + 7);
    return NULL;
  }
  const char *runtime_dir = getenv("XDG_RUNTIME_DIR");
  if (geteuid() != 0 && runtime_dir && *runtime_dir) {
    char *user_socket = xasprintf("%s/docker.sock", runtime_dir);
    if (user_socket && access(user_socket, F_OK) == 0)
      return user_socket;
    free(user_socket);
  }
  return strdup("/var/run/docker.sock");
}

static int
wait_fd(int fd, short events, long long deadline)
{
  for (;;) {
    long long left = deadline - now_ms();
    if (left <= 0)
      return -ETIMEDOUT;
    struct pollfd pfd = {fd, events, 0};
    int n = poll(&pfd, 1, (int)left);
    if (n < 0 && errno == EINTR)
      continue;
    if (n < 0)
      return -errno;
    if (n > 0)
      return 0;
  }
}

/* Sends GET PATH to the daemon over its unix socket with HTTP/1.0, so that the
 * reply ends when the daemon closes the connection. */
static int
docker_http_get(const char *socket_path, const char *path, struct buf *reply,
                flwd_error **err)
{
  struct sockaddr_un addr = {.sun_family = AF_UNIX};
  if (strlen(socket_path) >= sizeof(addr.sun_path))
    return set_error(err, FLWD_E_RUNTIME_UNAVAILABLE,
                     "socket path '%s' is too long", socket_path);
  strcpy(addr.sun_path, socket_path);

  cleanup_close int fd
      = socket(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC | SOCK_NONBLOCK, 0);
  if (fd < 0)
    return set_error_errno(err, FLWD_E_RUNTIME_UNAVAILABLE, errno,
                           "cannot create a socket");
  long long deadline = now_ms() + PROBE_TIMEOUT_MS;
  if (connect(fd, (struct sockaddr *)&addr, sizeof(addr)) < 0
      && errno != EINPROGRESS && errno != EAGAIN)
    return set_error_errno(err, FLWD_E_RUNTIME_UNAVAILABLE, errno,
                           "daemon not reachable at %s", socket_path);

  cleanup_free char *request = xasprintf("GET %s HTTP/1.0\r\nHost: docker\r\n"
                                         "\r\n",
                                         path);
  size_t sent = 0, len = request ? strlen(request) : 0;
  while (sent < len) {
    int ret = wait_fd(fd, POLLOUT, deadline);
    if (ret < 0)
      return set_error_errno(err, FLWD_E_RUNTIME_UNAVAILABLE, -ret,
                             "daemon at %s did not answer", socket_path);
    ssize_t n = send(fd, request + sent, len - sent, MSG_NOSIGNAL);
    if (n < 0 && (errno == EAGAIN || errno == EINTR))
      continue;
    if (n < 0)
      return set_error_errno(err, FLWD_E_RUNTIME_UNAVAILABLE, errno,
                             "daemon not reachable at %s", socket_path);
    sent += (size_t)n;
  }

  for (;;) {
    int ret = wait_fd(fd, POLLIN, deadline);
    if (ret < 0)
      return set_error_errno(err, FLWD_E_RUNTIME_UNAVAILABLE, -ret,
                             "daemon at %s did not answer", socket_path);
    char chunk[16384];
    ssize_t n = recv(fd, chunk, sizeof(chunk), 0);
    if (n < 0 && (errno == EAGAIN || errno == EINTR))
      continue;
    if (n < 0)
      return set_error_errno(err, FLWD_E_RUNTIME_UNAVAILABLE, errno,
                             "reading from the daemon at %s", socket_path);
    if (n == 0)
      break;
    if (reply->len + (size_t)n > PROBE_MAX_BYTES)
      return set_error(err, FLWD_E_RUNTIME_UNAVAILABLE,
                       "the daemon's answer at %s is too large", socket_path);
    buf_append(reply, chunk, (size_t)n);
  }
  if (reply->data == NULL || strncmp(reply->data, "HTTP/1.", 7) != 0
      || strncmp(reply->data + 8, " 200", 4) != 0)
    return set_error(err, FLWD_E_RUNTIME_UNAVAILABLE,
                     "the daemon at %s answered with an error", socket_path);
  return 0;
}

struct docker_info {
  bool rootless;
  bool userns;
  bool cgroup2;
};

static void
parse_info(const char *body, struct docker_info *info)
{
  cleanup_json json_object *obj = json_tokener_parse(body);
  json_object *options = NULL, *version = NULL;
  if (obj == NULL)
    return;
  if (json_object_object_get_ex(obj, "SecurityOptions", &options)
      && json_object_is_type(options, json_type_array)) {
    size_t n = json_object_array_length(options);
    for (size_t i = 0; i < n; i++) {
      const char *opt
          = json_object_get_string(json_object_array_get_idx(options, i));
      if (opt && strcmp(opt, "name=rootless") == 0)
        info->rootless = true;
      if (opt && strcmp(opt, "name=userns") == 0)
        info->userns = true;
    }
  }
  if (json_object_object_get_ex(obj, "CgroupVersion", &version))
    info->cgroup2 = strcmp(json_object_get_string(version), "2") == 0;
}

/* Requests /info from the daemon: the reply proves it is up and lists which
 * of the secure profile's guarantees it can give. */
static int
docker_probe(flwd_ctx *ctx, const char *path, struct runtime_caps *caps,
             flwd_error **err)
{
  cleanup_free char *socket_path = docker_socket_path();
  struct docker_info info = {0};
  if (socket_path == NULL) {
    /* A remote DOCKER_HOST cannot be probed without the client; assume a
     * rootful daemon and let the first run report any failure. */
    caps->rootless = false;
    caps->userns = false;
    caps->resource_limits = true;
    return 0;
  }

  struct buf reply = {0};
  int ret = docker_http_get(socket_path, "/info", &reply, err);
  if (ret == 0) {
    const char *body = strstr(reply.data, "\r\n\r\n");
    if (body)
      parse_info(body + 4, &info);
  }
  buf_clear(&reply);
  caps->rootless = info.rootless;
  caps->userns = info.rootless || info.userns;
  caps->resource_limits = !info.rootless || info.cgroup2;
  return ret;
}

static int
docker_run_argv(const struct plan *plan, const struct run_layout *layout,
                struct strv *argv, flwd_error **err)
{
  int ret = 0;
  ret |= strv_push(argv, "run");
  ret |= runtime_push_mode(plan, argv);
  ret |= strv_push(argv, "--pull=never");
  ret |= runtime_push_identity(layout, argv);
  if (plan->profile != PROFILE_DISABLED) {
    ret |= runtime_push_secure(plan, argv);
    ret |= strv_push(argv, "--tmpfs=/tmp:rw,nosuid,nodev,size=64m,mode=1777");
  }
  ret |= runtime_push_mounts(plan, layout, argv);
  ret |= strv_push(argv, "--entrypoint=/run/flwd/init");
  if (ret)
    return set_error(err, FLWD_E_INTERNAL, "out of memory");
  return 0;
}

static int
docker_stop_argv(const char *name, long long grace_ms, struct strv *argv)
{
  int ret = strv_push(argv, "stop");
  ret |= strv_pushf(argv, "--time=%lld", (grace_ms + 999) / 1000);
  ret |= strv_push(argv, "--");
  ret |= strv_push(argv, name);
  return ret;
}

static int
docker_rm_argv(const char *name, struct strv *argv)
{
  int ret = strv_push(argv, "rm");
  ret |= strv_push(argv, "--force");
  ret |= strv_push(argv, "--");
  ret |= strv_push(argv, name);
  return ret;
}

const struct runtime runtime_docker = {
    .name = "docker",
    .limited_network = "bridge",
    .secrets_mount_options = "",
    .probe = docker_probe,
    .run_argv = docker_run_argv,
    .image_inspect_argv = cli_image_inspect_argv,
    .pull_argv = cli_pull_argv,
    .stop_argv = docker_stop_argv,
    .kill_argv = cli_kill_argv,
    .rm_argv = docker_rm_argv,
    .labels_argv = cli_labels_argv,
    .wait_argv = cli_wait_argv,
    .logs_argv = cli_logs_argv,
    .list_argv = cli_list_argv,
};
