/* libflwd: small string, buffer and file helpers. */
#include <dirent.h>
#include <errno.h>
#include <fcntl.h>
#include <limits.h>
#include <math.h>
#include <stdio.h>
#include <string.h>
#include <sys/file.h>
#include <sys/random.h>
#include <sys/stat.h>
#include <time.h>

#include "internal.h"

void
strv_init(struct strv *v)
{
  v->items = NULL;
  v->len = 0;
  v->cap = 0;
}

void
strv_clear(struct strv *v)
{
  for (size_t i = 0; i < v->len; i++)
    free(v->items[i]);
  free(v->items);
  strv_init(v);
}

static int
strv_push_owned(struct strv *v, char *s)
{
  if (s == NULL)
    return -1;
  if (v->len + 2 > v->cap) {
    size_t cap = v->cap ? v->cap * 2 : 16;
    char **items = realloc(v->items, cap * sizeof(*items));
    if (items == NULL) {
      free(s);
      return -1;
    }
    v->items = items;
    v->cap = cap;
  }
  v->items[v->len++] = s;
  v->items[v->len] = NULL;
  return 0;
}

int
strv_push(struct strv *v, const char *s)
{
  return strv_push_owned(v, strdup(s));
}

int
strv_pushf(struct strv *v, const char *fmt, ...)
{
  char *s = NULL;
  va_list ap;
  va_start(ap, fmt);
  int n = vasprintf(&s, fmt, ap);
  va_end(ap);
  if (n < 0)
    return -1;
  return strv_push_owned(v, s);
}

json_object *
strv_to_json(const struct strv *v)
{
  json_object *array = json_object_new_array();
  for (size_t i = 0; array && i < v->len; i++)
    json_object_array_add(array, json_object_new_string(v->items[i]));
  return array;
}

int
buf_append(struct buf *b, const char *data, size_t len)
{
  if (b->len + len + 1 > b->cap) {
    size_t cap = b->cap ? b->cap : 256;
    while (cap < b->len + len + 1)
      cap *= 2;
    char *grown = realloc(b->data, cap);
    if (grown == NULL)
      return -1;
    b->data = grown;
    b->cap = cap;
  }
  memcpy(b->data + b->len, data, len);
  b->len += len;
  b->data[b->len] = '\0';
  return 0;
}

void
buf_clear(struct buf *b)
{
  free(b->data);
  b->data = NULL;
  b->len = 0;
  b->cap = 0;
}

char *
xasprintf(const char *fmt, ...)
{
  char *s = NULL;
  va_list ap;
  va_start(ap, fmt);
  int n = vasprintf(&s, fmt, ap);
  va_end(ap);
  return n < 0 ? NULL : s;
}

char *
json_to_string_owned(json_object *obj, int flags)
{
  const char *text = json_object_to_json_string_ext(obj, flags);
  return text ? strdup(text) : NULL;
}

int
mkdir_p(const char *path, mode_t mode)
{
  char tmp[PATH_MAX];
  size_t len = strlen(path);
  if (len == 0 || len >= sizeof(tmp)) {
    errno = ENAMETOOLONG;
    return -1;
  }
  memcpy(tmp, path, len + 1);

  for (char *p = tmp + 1; *p; p++) {
    if (*p != '/')
      continue;
    *p = '\0';
    if (mkdir(tmp, mode) < 0 && errno != EEXIST)
      return -1;
    *p = '/';
  }
  if (mkdir(tmp, mode) < 0 && errno != EEXIST)
    return -1;
  return 0;
}

/* Removes PATH and everything below it without following symbolic links,
 * so that a link planted by a container cannot redirect the removal. */
static int
rm_rf_at(int parent_fd, const char *name)
{
  struct stat st;
  if (fstatat(parent_fd, name, &st, AT_SYMLINK_NOFOLLOW) < 0)
    return errno == ENOENT ? 0 : -1;

  if (!S_ISDIR(st.st_mode))
    return unlinkat(parent_fd, name, 0) < 0 && errno != ENOENT ? -1 : 0;

  int fd = openat(parent_fd, name,
                  O_RDONLY | O_DIRECTORY | O_NOFOLLOW | O_CLOEXEC);
  if (fd < 0)
    return -1;
  DIR *dir = fdopendir(fd);
  if (dir == NULL) {
    close(fd);
    return -1;
  }

  int ret = 0;
  struct dirent *entry;
  while ((entry = readdir(dir)) != NULL) {
    if (strcmp(entry->d_name, ".") == 0 || strcmp(entry->d_name, "..") == 0)
      continue;
    if (rm_rf_at(dirfd(dir), entry->d_name) < 0)
      ret = -1;
  }
  closedir(dir);

  if (unlinkat(parent_fd, name, AT_REMOVEDIR) < 0 && errno != ENOENT)
    ret = -1;
  return ret;
}

int
rm_rf(const char *path)
{
  return rm_rf_at(AT_FDCWD, path);
}

int
write_file_atomic(const char *path, const char *data, size_t len, mode_t mode)
{
  cleanup_free char *tmp = xasprintf("%s.tmp", path);
  if (tmp == NULL)
    return -1;

  int fd = open(tmp, O_WRONLY | O_CREAT | O_TRUNC | O_CLOEXEC, mode);
  if (fd < 0)
    return -1;
  size_t done = 0;
  while (done < len) {
    ssize_t n = write(fd, data + done, len - done);
    if (n < 0 && errno == EINTR)
      continue;
    if (n < 0) {
      int saved = errno;
      close(fd);
      unlink(tmp);
      errno = saved;
      return -1;
    }
    done += (size_t)n;
  }
  /* open() applies the umask; the mode is part of the contract here. */
  if (fchmod(fd, mode) < 0 || close(fd) < 0) {
    int saved = errno;
    unlink(tmp);
    errno = saved;
    return -1;
  }
  return rename(tmp, path);
}

char *
find_in_path(const char *name)
{
  if (strchr(name, '/'))
    return access(name, X_OK) == 0 ? strdup(name) : NULL;

  const char *path = getenv("PATH");
  if (path == NULL || *path == '\0')
    path = "/usr/local/bin:/usr/bin:/bin";

  while (*path) {
    const char *end = strchrnul(path, ':');
    size_t len = (size_t)(end - path);
    char *candidate = len == 0 ? xasprintf("./%s", name)
                               : xasprintf("%.*s/%s", (int)len, path, name);
    struct stat st;
    if (candidate && stat(candidate, &st) == 0 && S_ISREG(st.st_mode)
        && access(candidate, X_OK) == 0)
      return candidate;
    free(candidate);
    path = *end ? end + 1 : end;
  }
  return NULL;
}

int
random_hex(char *out, size_t nbytes)
{
  unsigned char raw[64];
  if (nbytes > sizeof(raw))
    return -1;
  size_t got = 0;
  while (got < nbytes) {
    ssize_t n = getrandom(raw + got, nbytes - got, 0);
    if (n < 0 && errno == EINTR)
      continue;
    if (n < 0)
      return -1;
    got += (size_t)n;
  }
  static const char digits[] = "0123456789abcdef";
  for (size_t i = 0; i < nbytes; i++) {
    out[2 * i] = digits[raw[i] >> 4];
    out[2 * i + 1] = digits[raw[i] & 0xf];
  }
  out[2 * nbytes] = '\0';
  return 0;
}

void
format_utc_now(char out[32])
{
  struct timespec ts;
  clock_gettime(CLOCK_REALTIME, &ts);
  struct tm tm;
  gmtime_r(&ts.tv_sec, &tm);
  size_t n = strftime(out, 32, "%Y-%m-%dT%H:%M:%S", &tm);
  snprintf(out + n, 32 - n, ".%03ldZ", ts.tv_nsec / 1000000);
}

/* Parses a decimal number followed by UNITS[i].suffix into a count of base
 * units. Returns -1 on anything else, including overflow. */
struct unit {
  const char *suffix;
  double factor;
};

static int
parse_with_units(const char *s, const struct unit *units, size_t n_units,
                 long long *out)
{
  if (s == NULL || *s == '\0')
    return -1;
  char *end = NULL;
  errno = 0;
  double value = strtod(s, &end);
  if (errno || end == s || value < 0 || !isfinite(value))
    return -1;
  for (size_t i = 0; i < n_units; i++) {
    if (strcmp(end, units[i].suffix) != 0)
      continue;
    double scaled = value * units[i].factor;
    if (scaled > (double)LLONG_MAX / 2)
      return -1;
    *out = (long long)scaled;
    return 0;
  }
  return -1;
}

int
parse_duration_ms(const char *s, long long *out)
{
  static const struct unit units[] = {
      {"ms", 1},
      {"s", 1000},
      {"m", 60000},
      {"h", 3600000},
  };
  return parse_with_units(s, units, ARRAY_SIZE(units), out);
}

int
parse_size_bytes(const char *s, long long *out)
{
  static const struct unit units[] = {
      {"", 1},
      {"k", 1e3},
      {"M", 1e6},
      {"G", 1e9},
      {"Ki", 1024.0},
      {"Mi", 1024.0 * 1024},
      {"Gi", 1024.0 * 1024 * 1024},
  };
  return parse_with_units(s, units, ARRAY_SIZE(units), out);
}

int
lock_file_try(const char *path, int *fd_out)
{
  int fd = open(path, O_RDWR | O_CREAT | O_CLOEXEC, 0600);
  if (fd < 0)
    return -1;
  if (flock(fd, LOCK_EX | LOCK_NB) < 0) {
    int saved = errno;
    close(fd);
    errno = saved;
    return saved == EWOULDBLOCK ? 0 : -1;
  }
  *fd_out = fd;
  return 1;
}
