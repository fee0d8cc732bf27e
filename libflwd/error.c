/* libflwd: the error object and the table of stable codes. */
#include <errno.h>
#include <stdio.h>
#include <string.h>

#include "internal.h"

struct code_entry {
  const char *name;
  const char *description;
};

static const struct code_entry code_table[] = {
#define CODE_ENTRY(name, code, message) {code, message},
    FLWD_ERROR_MAP(CODE_ENTRY)
#undef CODE_ENTRY
};

const char *
flwd_code_name(flwd_code code)
{
  if ((unsigned)code >= ARRAY_SIZE(code_table))
    return code_table[FLWD_E_INTERNAL].name;
  return code_table[code].name;
}

const char *
flwd_code_description(flwd_code code)
{
  if ((unsigned)code >= ARRAY_SIZE(code_table))
    return code_table[FLWD_E_INTERNAL].description;
  return code_table[code].description;
}

flwd_code
flwd_error_code(const flwd_error *err)
{
  return err ? err->code : FLWD_E_OK;
}

const char *
flwd_error_name(const flwd_error *err)
{
  return flwd_code_name(flwd_error_code(err));
}

const char *
flwd_error_message(const flwd_error *err)
{
  return err ? err->message : "";
}

int
flwd_error_errno(const flwd_error *err)
{
  return err ? err->errno_value : 0;
}

void
flwd_error_free(flwd_error *err)
{
  if (err == NULL)
    return;
  free(err->message);
  free(err);
}

static int set_error_va(flwd_error **err, flwd_code code, int errnum,
                        const char *fmt, va_list ap) FLWD_PRINTF(4, 0);

static int
set_error_va(flwd_error **err, flwd_code code, int errnum, const char *fmt,
             va_list ap)
{
  if (err == NULL || *err != NULL)
    return -(int)code;

  flwd_error *e = calloc(1, sizeof(*e));
  if (e == NULL)
    return -(int)code;
  e->code = code;
  e->errno_value = errnum;

  char *text = NULL;
  if (vasprintf(&text, fmt, ap) < 0)
    text = NULL;
  if (text && errnum) {
    char *with_errno = NULL;
    if (asprintf(&with_errno, "%s: %s", text, strerror(errnum)) >= 0) {
      free(text);
      text = with_errno;
    }
  }
  /* Out of memory while reporting: fall back to the static description. */
  e->message = text ? text : strdup(flwd_code_description(code));
  *err = e;
  return -(int)code;
}

int
set_error(flwd_error **err, flwd_code code, const char *fmt, ...)
{
  va_list ap;
  va_start(ap, fmt);
  int ret = set_error_va(err, code, 0, fmt, ap);
  va_end(ap);
  return ret;
}

int
set_error_errno(flwd_error **err, flwd_code code, int errnum, const char *fmt,
                ...)
{
  va_list ap;
  va_start(ap, fmt);
  int ret = set_error_va(err, code, errnum, fmt, ap);
  va_end(ap);
  return ret;
}

int
wrap_error(flwd_error **err, int ret, const char *fmt, ...)
{
  if (err == NULL || *err == NULL)
    return ret;

  char *prefix = NULL;
  va_list ap;
  va_start(ap, fmt);
  int n = vasprintf(&prefix, fmt, ap);
  va_end(ap);
  if (n < 0)
    return ret;

  char *joined = NULL;
  if (asprintf(&joined, "%s: %s", prefix, (*err)->message) >= 0) {
    free((*err)->message);
    (*err)->message = joined;
  }
  free(prefix);
  return ret;
}

flwd_error *
error_copy(const flwd_error *err)
{
  if (err == NULL)
    return NULL;
  flwd_error *copy = calloc(1, sizeof(*copy));
  if (copy == NULL)
    return NULL;
  copy->code = err->code;
  copy->errno_value = err->errno_value;
  copy->message = strdup(err->message ? err->message : "");
  if (copy->message == NULL) {
    free(copy);
    return NULL;
  }
  return copy;
}

unsigned int
flwd_version(void)
{
  return FLWD_VERSION_HEX;
}

const char *
flwd_version_string(void)
{
  return FLWD_VERSION_STRING;
}

void
flwd_free(void *ptr)
{
  free(ptr);
}
