/* libflwd: child processes on the context's event loop.
 *
 * Each child is watched through a pidfd (or, where the kernel has none, a
 * timer that polls waitpid), so the library needs no SIGCHLD handler and
 * no process-wide state: the caller's own signal handling and
 * event loop stay untouched, and several contexts can share a process.
 */
#include <errno.h>
#include <fcntl.h>
#include <poll.h>
#include <signal.h>
#include <spawn.h>
#include <string.h>
#include <sys/syscall.h>
#include <sys/wait.h>
#include <time.h>

#include <event2/event.h>

#include "internal.h"

extern char **environ;

/* How long to keep reading a child's pipes after it has exited. A
 * grandchild that inherited them could otherwise hold the run open. */
#define DRAIN_TIMEOUT_MS 2000
#define READ_CHUNK 65536
/* How often a child is polled for its exit when no pidfd is available. */
#define EXIT_POLL_MS 20
/* How long a synchronous runtime command may take, and its grace between
 * SIGTERM and SIGKILL once that is over. */
#define SYNC_TIMEOUT_MS 60000
#define SYNC_KILL_GRACE_MS 10000

struct child {
  flwd_ctx *ctx;
  pid_t pid;
  int pidfd;
  int fds[2]; /* stdout, stderr read ends; -1 once closed */
  struct event *ev_out;
  struct event *ev_err;
  struct event *ev_exit;
  struct event *ev_drain;
  struct event *ev_kill;
  bool exited;
  int status;
  child_output_fn output_fn;
  child_exit_fn exit_fn;
  void *user;
};

static long long
monotonic_ms(void)
{
  struct timespec ts;
  clock_gettime(CLOCK_MONOTONIC, &ts);
  return (long long)ts.tv_sec * 1000 + ts.tv_nsec / 1000000;
}

static int
pidfd_open_compat(pid_t pid)
{
  return (int)syscall(SYS_pidfd_open, pid, 0);
}

static void
close_stream(struct child *child, int index)
{
  struct event **ev = index == 0 ? &child->ev_out : &child->ev_err;
  if (*ev) {
    event_free(*ev);
    *ev = NULL;
  }
  if (child->fds[index] >= 0) {
    close(child->fds[index]);
    child->fds[index] = -1;
  }
}

/* Reports the exit once the process is gone and both pipes are closed. The
 * callback may free the child, so nothing touches it afterwards. */
static void
maybe_report(struct child *child)
{
  if (!child->exited || child->fds[0] >= 0 || child->fds[1] >= 0)
    return;
  if (child->ev_drain) {
    event_free(child->ev_drain);
    child->ev_drain = NULL;
  }
  child_exit_fn fn = child->exit_fn;
  child->exit_fn = NULL;
  if (fn)
    fn(child, child->status, child->user);
}

static void
on_readable(evutil_socket_t fd, short what, void *arg)
{
  struct child *child = arg;
  int index = fd == child->fds[0] ? 0 : 1;
  char chunk[READ_CHUNK];

  ssize_t n = read(fd, chunk, sizeof(chunk));
  if (n < 0 && (errno == EINTR || errno == EAGAIN))
    return;
  if (n <= 0) {
    close_stream(child, index);
    maybe_report(child);
    return;
  }
  if (child->output_fn)
    child->output_fn(child,
                     index == 0 ? FLWD_STREAM_STDOUT : FLWD_STREAM_STDERR,
                     chunk, (size_t)n, child->user);
}

static void
on_drain_timeout(evutil_socket_t fd, short what, void *arg)
{
  struct child *child = arg;
  close_stream(child, 0);
  close_stream(child, 1);
  maybe_report(child);
}

static void
reap(struct child *child)
{
  int status = 0;
  pid_t r;
  do
    r = waitpid(child->pid, &status, 0);
  while (r < 0 && errno == EINTR);
  /* ECHILD means someone else reaped it (SIGCHLD set to SIG_IGN, say); the
   * status is unknown and reported as a failure. */
  child->status = r == child->pid ? status : (127 << 8);
  child->exited = true;
  if (child->pidfd >= 0) {
    close(child->pidfd);
    child->pidfd = -1;
  }
}

static void
on_exit_ready(evutil_socket_t fd, short what, void *arg)
{
  struct child *child = arg;
  /* Without a pidfd, a timer polls; nothing to do until the child exits. */
  if (child->pidfd < 0) {
    int status = 0;
    pid_t r = waitpid(child->pid, &status, WNOHANG);
    if (r == 0)
      return;
    child->status = r == child->pid ? status : (127 << 8);
    child->exited = true;
  }
  event_free(child->ev_exit);
  child->ev_exit = NULL;
  if (!child->exited)
    reap(child);

  if (child->fds[0] >= 0 || child->fds[1] >= 0) {
    struct timeval tv
        = {DRAIN_TIMEOUT_MS / 1000, (DRAIN_TIMEOUT_MS % 1000) * 1000};
    child->ev_drain = evtimer_new(child->ctx->base, on_drain_timeout, child);
    if (child->ev_drain)
      evtimer_add(child->ev_drain, &tv);
  }
  maybe_report(child);
}

/* Returns flwd's environment without the variables that carry secrets,
 * FLWD_SECRET_* and the server's FLWD_TOKEN, for a runtime command: a
 * child's environment is readable in /proc by its user for as long as it
 * runs. The strings are borrowed from environ; free only the array. */
static char **
runtime_environ(void)
{
  size_t n = 0;
  while (environ[n])
    n++;
  char **env = calloc(n + 1, sizeof(*env));
  if (env == NULL)
    return NULL;
  size_t kept = 0;
  for (size_t i = 0; i < n; i++) {
    if (strncmp(environ[i], "FLWD_SECRET_", 12) == 0
        || strncmp(environ[i], "FLWD_TOKEN=", 11) == 0)
      continue;
    env[kept++] = environ[i];
  }
  return env;
}

/* Spawns ARGV with stdout and stderr on the write ends of two pipes, in a
 * new process group and with every signal at its default, so that the
 * terminal's Ctrl-C reaches the caller rather than the runtime, and the
 * caller decides how a run stops. */
static int
spawn_with_pipes(const struct strv *argv, int out_pipe[2], int err_pipe[2],
                 pid_t *pid, flwd_error **err)
{
  if (pipe2(out_pipe, O_CLOEXEC) < 0)
    return set_error_errno(err, FLWD_E_INTERNAL, errno,
                           "cannot create a "
                           "pipe");
  if (pipe2(err_pipe, O_CLOEXEC) < 0) {
    int saved = errno;
    close(out_pipe[0]);
    close(out_pipe[1]);
    return set_error_errno(err, FLWD_E_INTERNAL, saved,
                           "cannot create a "
                           "pipe");
  }

  posix_spawn_file_actions_t actions;
  posix_spawnattr_t attr;
  posix_spawn_file_actions_init(&actions);
  posix_spawn_file_actions_addopen(&actions, 0, "/dev/null", O_RDONLY, 0);
  posix_spawn_file_actions_adddup2(&actions, out_pipe[1], 1);
  posix_spawn_file_actions_adddup2(&actions, err_pipe[1], 2);

  sigset_t none, all;
  sigemptyset(&none);
  sigfillset(&all);
  posix_spawnattr_init(&attr);
  posix_spawnattr_setflags(&attr, POSIX_SPAWN_SETPGROUP | POSIX_SPAWN_SETSIGMASK
                                      | POSIX_SPAWN_SETSIGDEF);
  posix_spawnattr_setpgroup(&attr, 0);
  posix_spawnattr_setsigmask(&attr, &none);
  posix_spawnattr_setsigdefault(&attr, &all);

  char **env = runtime_environ();
  int rc = env ? posix_spawn(pid, argv->items[0], &actions, &attr, argv->items,
                             env)
               : ENOMEM;
  free(env);
  posix_spawn_file_actions_destroy(&actions);
  posix_spawnattr_destroy(&attr);
  close(out_pipe[1]);
  close(err_pipe[1]);
  if (rc != 0) {
    close(out_pipe[0]);
    close(err_pipe[0]);
    return set_error_errno(err, FLWD_E_INTERNAL, rc, "cannot run '%s'",
                           argv->items[0]);
  }
  return 0;
}

int
child_spawn(flwd_ctx *ctx, const struct strv *argv, child_output_fn output_fn,
            child_exit_fn exit_fn, void *user, struct child **out,
            flwd_error **err)
{
  int out_pipe[2], err_pipe[2];
  pid_t pid;
  int ret = spawn_with_pipes(argv, out_pipe, err_pipe, &pid, err);
  if (ret < 0)
    return ret;

  struct child *child = calloc(1, sizeof(*child));
  if (child == NULL) {
    kill(pid, SIGKILL);
    waitpid(pid, NULL, 0);
    close(out_pipe[0]);
    close(err_pipe[0]);
    return set_error(err, FLWD_E_INTERNAL, "out of memory");
  }
  child->ctx = ctx;
  child->pid = pid;
  child->fds[0] = out_pipe[0];
  child->fds[1] = err_pipe[0];
  child->output_fn = output_fn;
  child->exit_fn = exit_fn;
  child->user = user;
  /* A kernel before 5.3, or a tool such as valgrind that does not know
   * pidfd_open, leaves a timer that polls waitpid() instead. */
  child->pidfd = pidfd_open_compat(pid);
  struct timeval poll_interval = {0, EXIT_POLL_MS * 1000};

  child->ev_out = event_new(ctx->base, child->fds[0], EV_READ | EV_PERSIST,
                            on_readable, child);
  child->ev_err = event_new(ctx->base, child->fds[1], EV_READ | EV_PERSIST,
                            on_readable, child);
  child->ev_exit
      = child->pidfd >= 0
            ? event_new(ctx->base, child->pidfd, EV_READ, on_exit_ready, child)
            : event_new(ctx->base, -1, EV_PERSIST, on_exit_ready, child);
  if (!child->ev_out || !child->ev_err || !child->ev_exit
      || event_add(child->ev_out, NULL) < 0
      || event_add(child->ev_err, NULL) < 0
      || event_add(child->ev_exit, child->pidfd >= 0 ? NULL : &poll_interval)
             < 0) {
    child_free(child);
    return set_error(err, FLWD_E_INTERNAL, "cannot watch process %d", (int)pid);
  }
  *out = child;
  return 0;
}

void
child_signal(struct child *child, int sig)
{
  if (child && !child->exited)
    kill(-child->pid, sig);
}

static void
on_kill_timeout(evutil_socket_t fd, short what, void *arg)
{
  child_signal(arg, SIGKILL);
}

/* Podman keeps some of its locks in shared memory, and a Podman process killed
 * while holding one can leave it held for every later command. So flwd stops
 * its runtime processes with SIGTERM first and sends SIGKILL only to one that
 * has not exited after GRACE_MS. */
void
child_terminate(struct child *child, long long grace_ms)
{
  if (child == NULL || child->exited)
    return;
  child_signal(child, SIGTERM);
  if (child->ev_kill == NULL)
    child->ev_kill = evtimer_new(child->ctx->base, on_kill_timeout, child);
  struct timeval tv = {grace_ms / 1000, (grace_ms % 1000) * 1000};
  if (child->ev_kill)
    evtimer_add(child->ev_kill, &tv);
}

pid_t
child_pid(const struct child *child)
{
  return child->pid;
}

/* Waits up to GRACE_MS for the child to exit after SIGTERM, then kills it;
 * for the rare child still running when its owner goes away. */
static void
terminate_now(struct child *child, long long grace_ms)
{
  kill(-child->pid, SIGTERM);
  for (long long waited = 0; waited < grace_ms; waited += 50) {
    int status;
    pid_t r = waitpid(child->pid, &status, WNOHANG);
    if (r == child->pid || (r < 0 && errno == ECHILD)) {
      child->exited = true;
      return;
    }
    usleep(50 * 1000);
  }
  kill(-child->pid, SIGKILL);
  reap(child);
}

void
child_free(struct child *child)
{
  if (child == NULL)
    return;
  if (!child->exited)
    terminate_now(child, 5000);
  close_stream(child, 0);
  close_stream(child, 1);
  if (child->ev_exit)
    event_free(child->ev_exit);
  if (child->ev_drain)
    event_free(child->ev_drain);
  if (child->ev_kill)
    event_free(child->ev_kill);
  if (child->pidfd >= 0)
    close(child->pidfd);
  free(child);
}

/* ---- Synchronous helper ----------------------------------------------- */

static void
collect(int *fd, struct buf *into, size_t max)
{
  char chunk[READ_CHUNK];
  ssize_t n = read(*fd, chunk, sizeof(chunk));
  if (n < 0 && (errno == EINTR || errno == EAGAIN))
    return;
  if (n <= 0) {
    close(*fd);
    *fd = -1;
    return;
  }
  if (into && into->len < max) {
    size_t take = (size_t)n;
    if (take > max - into->len)
      take = max - into->len;
    buf_append(into, chunk, take);
  }
}

int
child_run_sync(flwd_ctx *ctx, const struct strv *argv, size_t max,
               struct buf *out, struct buf *errout, int *status,
               flwd_error **err)
{
  int out_pipe[2], err_pipe[2];
  pid_t pid;
  int ret = spawn_with_pipes(argv, out_pipe, err_pipe, &pid, err);
  if (ret < 0)
    return ret;

  /* A runtime stuck on a lock must not hang its caller: after the
   * deadline it gets SIGTERM, and SIGKILL a grace period later. */
  int fds[2] = {out_pipe[0], err_pipe[0]};
  int signals_sent = 0;
  long long deadline = monotonic_ms() + SYNC_TIMEOUT_MS;
  while (fds[0] >= 0 || fds[1] >= 0) {
    long long left = deadline - monotonic_ms();
    if (left <= 0 && signals_sent < 2) {
      kill(-pid, signals_sent == 0 ? SIGTERM : SIGKILL);
      signals_sent++;
      deadline = monotonic_ms() + SYNC_KILL_GRACE_MS;
      continue;
    }
    struct pollfd pfd[2] = {{fds[0], POLLIN, 0}, {fds[1], POLLIN, 0}};
    int n = poll(pfd, 2, left > 0 ? (int)left : 1000);
    if (n < 0) {
      if (errno == EINTR)
        continue;
      break;
    }
    if (fds[0] >= 0 && pfd[0].revents)
      collect(&fds[0], out, max);
    if (fds[1] >= 0 && pfd[1].revents)
      collect(&fds[1], errout, max);
  }
  if (fds[0] >= 0)
    close(fds[0]);
  if (fds[1] >= 0)
    close(fds[1]);

  int wstatus = 0;
  pid_t r;
  do
    r = waitpid(pid, &wstatus, 0);
  while (r < 0 && errno == EINTR);
  *status = r == pid ? wstatus : (127 << 8);
  (void)ctx;
  return 0;
}
