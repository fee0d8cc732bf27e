/* libflwd: a user namespace range for each container flwd runs as root.
 *
 * Run as root, Podman's --userns=auto picks a free range of host uids for
 * each container, but Podman 4.3 deadlocks when that allocation meets the
 * cleanup of another container (each holds one of two storage locks and
 * waits for the other), and every later Podman command then hangs. flwd
 * therefore picks the range itself, from the same subordinate range that
 * --userns=auto uses (the "containers" entry of /etc/subuid and
 * /etc/subgid), and passes it as --uidmap and --gidmap. A file lock per
 * range keeps two live runs of this host from sharing one.
 */
#include <errno.h>
#include <fcntl.h>
#include <stdio.h>
#include <string.h>
#include <sys/file.h>

#include "internal.h"

#define RANGE_SIZE 65536UL
#define MAX_SLOTS 4096UL
#define SLOT_LOCK_DIR "/run/flwd/userns"

/* Reads the first "containers:START:COUNT" line of PATH. */
static int
read_containers_range(const char *path, unsigned long *start,
                      unsigned long *count)
{
  FILE *f = fopen(path, "re");
  if (f == NULL)
    return -1;
  char line[256];
  int ret = -1;
  while (ret < 0 && fgets(line, sizeof(line), f)) {
    if (sscanf(line, "containers:%lu:%lu", start, count) == 2
        && *count >= RANGE_SIZE)
      ret = 0;
  }
  fclose(f);
  return ret;
}

/* Returns the number of ranges available, and the first host id, when
 * /etc/subuid and /etc/subgid give the same "containers" range. */
static unsigned long
range_slots(unsigned long *first)
{
  unsigned long uid_start, uid_count, gid_start, gid_count;
  if (read_containers_range("/etc/subuid", &uid_start, &uid_count) < 0
      || read_containers_range("/etc/subgid", &gid_start, &gid_count) < 0
      || uid_start != gid_start)
    return 0;
  unsigned long count = uid_count < gid_count ? uid_count : gid_count;
  *first = uid_start;
  count /= RANGE_SIZE;
  return count < MAX_SLOTS ? count : MAX_SLOTS;
}

static unsigned long
hash_id(const char *id)
{
  unsigned long h = 5381;
  for (const char *p = id; *p; p++)
    h = h * 33 + (unsigned char)*p;
  return h;
}

unsigned long
userns_preview_base(const char *run_id)
{
  unsigned long first = 0;
  unsigned long slots = range_slots(&first);
  if (slots == 0)
    return 0;
  return first + (hash_id(run_id) % slots) * RANGE_SIZE;
}

int
userns_take_range(const char *run_id, int *lock_fd, unsigned long *base)
{
  unsigned long first = 0;
  unsigned long slots = range_slots(&first);
  *lock_fd = -1;
  *base = 0;
  if (slots == 0 || mkdir_p(SLOT_LOCK_DIR, 0700) < 0)
    return -1;

  unsigned long start = hash_id(run_id) % slots;
  for (unsigned long i = 0; i < slots; i++) {
    unsigned long slot = (start + i) % slots;
    char path[64];
    snprintf(path, sizeof(path), SLOT_LOCK_DIR "/%lu.lock", slot);
    int locked = lock_file_try(path, lock_fd);
    if (locked < 0)
      return -1;
    if (locked == 1) {
      *base = first + slot * RANGE_SIZE;
      return 0;
    }
  }
  errno = EBUSY;
  return -1;
}
