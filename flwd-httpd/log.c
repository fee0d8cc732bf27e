/* flwd-httpd: log lines on stderr, one per record, with a UTC time stamp
 * and a level. Nothing here ever writes a token. */
#include <stdio.h>
#include <sys/time.h>

#include "server.h"

static const char *const level_names[] = {"error", "warning", "info", "debug"};

void
log_msg(flwd_log_level level, const char *fmt, ...)
{
  struct timeval now;
  gettimeofday(&now, NULL);
  struct tm tm;
  gmtime_r(&now.tv_sec, &tm);
  char stamp[32];
  strftime(stamp, sizeof(stamp), "%Y-%m-%dT%H:%M:%S", &tm);

  /* One fprintf per part, under one stream lock, keeps a line whole. */
  flockfile(stderr);
  fprintf(stderr, "%s.%03dZ %s ", stamp, (int)(now.tv_usec / 1000),
          level_names[level]);
  va_list ap;
  va_start(ap, fmt);
  vfprintf(stderr, fmt, ap);
  va_end(ap);
  fputc('\n', stderr);
  funlockfile(stderr);
}

void
log_library_cb(flwd_log_level level, const char *message, void *user)
{
  log_msg(level, "libflwd: %s", message);
}
