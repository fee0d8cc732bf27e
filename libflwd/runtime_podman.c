/* libflwd: the Podman runtime, driven through its command line. */
#include <string.h>

#include "internal.h"

/* Podman runs without a daemon, so finding the binary is the whole probe;
 * a Podman that cannot start containers fails the run with E_OCI and the
 * runtime's own message instead. */
static int
podman_probe(flwd_ctx *ctx, const char *path, struct runtime_caps *out,
             flwd_error **err)
{
  bool rootless = geteuid() != 0;
  out->rootless = rootless;
  /* As root, every run gets a user namespace of its own range of host
   * ids; as an ordinary user, the rootless user namespace does the same
   * job. */
  out->userns = true;
  /* Rootless Podman on cgroups v1 cannot set limits; it prints a warning
   * and ignores them, so flwd leaves the flags out and reports the missing
   * guarantee. */
  out->resource_limits = !rootless || host_has_cgroup2();
  return 0;
}

static int
podman_run_argv(const struct plan *plan, const struct run_layout *layout,
                struct strv *argv, flwd_error **err)
{
  int ret = 0;
  ret |= strv_push(argv, "run");
  ret |= runtime_push_mode(plan, argv);
  ret |= strv_push(argv, "--pull=never");
  ret |= runtime_push_identity(layout, argv);

  if (plan->profile != PROFILE_DISABLED) {
    ret |= runtime_push_secure(plan, argv);
    /* Podman's --read-only adds writable tmpfs mounts on /run, /tmp and
     * /var/tmp by default; only /tmp is wanted, small and without
     * devices or setuid binaries. */
    ret |= strv_push(argv, "--read-only-tmpfs=false");
    ret |= strv_push(argv, "--tmpfs=/tmp:rw,nosuid,nodev,size=64m,mode=1777");
    /* Running as root, give the container its own range of host uids so
     * that container root is not host root: the range flwd picked, or
     * Podman's own pick when no range was free. */
    if (geteuid() == 0 && layout->userns_base) {
      ret |= strv_pushf(argv, "--uidmap=0:%lu:65536", layout->userns_base);
      ret |= strv_pushf(argv, "--gidmap=0:%lu:65536", layout->userns_base);
    } else if (geteuid() == 0) {
      ret |= strv_push(argv, "--userns=auto");
    }
  }
  ret |= runtime_push_mounts(plan, layout, argv);
  ret |= strv_push(argv, "--entrypoint=/run/flwd/init");
  if (ret)
    return set_error(err, FLWD_E_INTERNAL, "out of memory");
  return 0;
}

static int
podman_stop_argv(const char *name, long long grace_ms, struct strv *argv)
{
  int ret = strv_push(argv, "stop");
  ret |= strv_pushf(argv, "--time=%lld", (grace_ms + 999) / 1000);
  ret |= strv_push(argv, "--ignore");
  ret |= strv_push(argv, "--");
  ret |= strv_push(argv, name);
  return ret;
}

static int
podman_rm_argv(const char *name, struct strv *argv)
{
  int ret = strv_push(argv, "rm");
  ret |= strv_push(argv, "--force");
  ret |= strv_push(argv, "--ignore");
  ret |= strv_push(argv, "--time=0");
  ret |= strv_push(argv, "--");
  ret |= strv_push(argv, name);
  return ret;
}

const struct runtime runtime_podman = {
    .name = "podman",
    .limited_network = "slirp4netns:allow_host_loopback=false",
    .secrets_mount_options = ",U=true",
    .serialize_create = true,
    .probe = podman_probe,
    .run_argv = podman_run_argv,
    .image_inspect_argv = cli_image_inspect_argv,
    .pull_argv = cli_pull_argv,
    .stop_argv = podman_stop_argv,
    .kill_argv = cli_kill_argv,
    .rm_argv = podman_rm_argv,
    .labels_argv = cli_labels_argv,
    .wait_argv = cli_wait_argv,
    .logs_argv = cli_logs_argv,
    .list_argv = cli_list_argv,
};
