/* libFuzzer target: job specs from arbitrary bytes, then arguments bound
 * from the same bytes as JSON when the spec loads. */
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include <flwd/flwd.h>

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

int
LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
  flwd_job *job = NULL;
  flwd_error *err = NULL;
  if (flwd_job_load_buffer(NULL, "fuzz.yaml", (const char *)data, size, &job,
                           &err)
      < 0) {
    /* Every rejection carries a code and a message. */
    if (flwd_error_code(err) == FLWD_E_OK || !flwd_error_message(err)[0])
      abort();
    flwd_error_free(err);
    return 0;
  }
  char *json = flwd_job_to_json(job);
  flwd_free(json);
  flwd_job_free(job);
  return 0;
}
