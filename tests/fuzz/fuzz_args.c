/* libFuzzer target: argument JSON bound to a job with one argument of each
 * type. */
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include <flwd/flwd.h>

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

static const char spec[]
    = "id: f\nexecutor: container\ninterpreter: \"container:img\"\n"
      "args:\n"
      "  - {name: s, type: string}\n"
      "  - {name: i, type: integer, default: 1}\n"
      "  - {name: n, type: number}\n"
      "  - {name: b, type: boolean}\n"
      "  - {name: e, type: enum, values: [x, y]}\n"
      "  - {name: l, type: list}\n";

int
LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
  static flwd_job *job;
  if (job == NULL
      && flwd_job_load_buffer(NULL, "f.yaml", spec, strlen(spec), &job, NULL)
             < 0)
    abort();

  char *text = malloc(size + 1);
  if (text == NULL)
    return 0;
  memcpy(text, data, size);
  text[size] = '\0';

  flwd_args *args = NULL;
  flwd_error *err = NULL;
  if (flwd_args_from_json(job, text, &args, &err) == 0) {
    char *json = flwd_args_to_json(args);
    flwd_free(json);
    flwd_args_free(args);
  } else if (flwd_error_code(err) != FLWD_E_ARGS_INVALID) {
    abort();
  }
  flwd_error_free(err);
  free(text);
  return 0;
}
