/* Measures what the run store costs one run: the records and events that
 * a typical run writes (4 run records, 8 events, as a successful attached
 * run of a job with `command` does), against a store in a fresh state
 * directory. Prints the mean time per run and the growth of the peak RSS.
 *
 * Usage: store-bench [RUNS]   (default 2000) */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/resource.h>
#include <time.h>

#include "internal.h"

static const char *const event_types[] = {
    "run.created",      "run.planned",       "runtime.chosen",
    "image.cached",     "container.created", "container.started",
    "container.exited", "run.finished",
};

static double
now_ms(void)
{
  struct timespec ts;
  clock_gettime(CLOCK_MONOTONIC, &ts);
  return ts.tv_sec * 1e3 + ts.tv_nsec / 1e6;
}

static long
peak_rss_kib(void)
{
  struct rusage usage;
  getrusage(RUSAGE_SELF, &usage);
  return usage.ru_maxrss;
}

int
main(int argc, char **argv)
{
  int runs = argc > 1 ? atoi(argv[1]) : 2000;
  char dir[] = "/tmp/flwd-store-bench-XXXXXX";
  flwd_ctx *ctx = NULL;
  struct store *store = NULL;
  if (runs < 1 || mkdtemp(dir) == NULL || flwd_ctx_new(NULL, &ctx, NULL) < 0
      || flwd_ctx_set_option(ctx, FLWD_OPT_STATE_DIR, dir, NULL) < 0
      || store_get(ctx, &store, NULL) < 0) {
    fprintf(stderr, "store-bench: cannot set up a store in %s\n", dir);
    return 1;
  }

  /* A run document of the usual size, about 450 bytes. */
  char doc[512];
  memset(doc, 'x', sizeof(doc) - 1);
  doc[sizeof(doc) - 1] = '\0';
  long rss_before = peak_rss_kib();
  double start = now_ms();
  for (int i = 0; i < runs; i++) {
    char id[32];
    snprintf(id, sizeof(id), "%016x", i);
    static const char *const states[]
        = {"queued", "preparing", "running", "succeeded"};
    for (size_t k = 0; k < ARRAY_SIZE(event_types); k++) {
      if (k % 2 == 0)
        store_put_run(store, id, "bench", states[k / 2], "2026-01-01", doc,
                      NULL);
      store_add_event(store, id, (long long)k + 1, event_types[k],
                      "{\"seq\":1,\"type\":\"x\",\"data\":{}}", NULL);
    }
  }
  double elapsed = now_ms() - start;
  printf("runs: %d\n", runs);
  printf("store time per run: %.3f ms (4 run records, 8 events)\n",
         elapsed / runs);
  printf("peak RSS: %ld KiB before, %ld KiB after\n", rss_before,
         peak_rss_kib());
  flwd_ctx_free(ctx);
  rm_rf(dir);
  return 0;
}
