/* flwd-init: the entrypoint flwd mounts into every container.
 *
 * It records that the runtime got as far as starting a process in the
 * container, then replaces itself with the job's command, so the job runs
 * as PID 1 with nothing in between. flwd reads the record after the exit
 * to tell the job's own exit status from a failure of the runtime, which
 * both Podman and Docker report with the same codes 125 to 127.
 *
 * Linked statically: the image may have no C library at all.
 */
#include <errno.h>
#include <fcntl.h>
#include <stdio.h>
#include <string.h>
#include <unistd.h>

#define MARKER_PATH "/run/flwd/status/exec"

static void
write_all(int fd, const char *text)
{
  size_t len = strlen(text);
  while (len > 0) {
    ssize_t n = write(fd, text, len);
    if (n < 0 && errno == EINTR)
      continue;
    if (n <= 0)
      return;
    text += n;
    len -= (size_t)n;
  }
}

int
main(int argc, char *argv[])
{
  if (argc < 2) {
    fputs("flwd-init: no command to run\n", stderr);
    return 127;
  }

  int fd = open(MARKER_PATH, O_WRONLY | O_CREAT | O_TRUNC | O_CLOEXEC, 0644);
  if (fd >= 0)
    write_all(fd, "exec\n");

  execvp(argv[1], argv + 1);

  int saved = errno;
  if (fd >= 0 && ftruncate(fd, 0) == 0 && lseek(fd, 0, SEEK_SET) == 0) {
    char line[512];
    snprintf(line, sizeof(line), "error '%s': %s\n", argv[1], strerror(saved));
    write_all(fd, line);
  }
  fprintf(stderr, "flwd-init: cannot execute '%s': %s\n", argv[1],
          strerror(saved));
  return saved == ENOENT ? 127 : 126;
}
