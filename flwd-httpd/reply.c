/* flwd-httpd: replies, their access log lines and request metrics. */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <event2/buffer.h>
#include <event2/keyvalq_struct.h>
#include <json-c/json.h>

#include "server.h"

/* Paths longer than this are cut in log lines. */
#define LOGGED_PATH_MAX 256

double
elapsed_ms(const struct timespec *start)
{
  struct timespec now;
  clock_gettime(CLOCK_MONOTONIC, &now);
  return (double)(now.tv_sec - start->tv_sec) * 1e3
         + (double)(now.tv_nsec - start->tv_nsec) / 1e6;
}

/* Copies PATH into OUT with bytes that could break a log line (controls,
 * spaces, quotes, backslashes, non-ASCII) written as %XX. */
static void
sanitize_path(const char *path, char out[LOGGED_PATH_MAX + 4])
{
  size_t j = 0;
  for (size_t i = 0; path && path[i] && j + 3 < LOGGED_PATH_MAX; i++) {
    unsigned char c = (unsigned char)path[i];
    if (c <= 0x20 || c >= 0x7f || c == '"' || c == '\\') {
      snprintf(out + j, 4, "%%%02X", c);
      j += 3;
    } else {
      out[j++] = (char)c;
    }
  }
  if (path && strlen(path) > j)
    out[j++] = '~';
  out[j] = '\0';
}

void
reply_log(struct request *r, int status, size_t bytes)
{
  char path[LOGGED_PATH_MAX + 4];
  sanitize_path(r->path, path);
  metrics_count_request(&r->srv->metrics, status);
  log_msg(FLWD_LOG_INFO,
          "request method=%s path=%s status=%d bytes=%zu duration_ms=%.2f",
          r->method, path, status, bytes, elapsed_ms(&r->start));
}

void
reply_send(struct request *r, int status, const char *content_type,
           const char *body, size_t len)
{
  struct evkeyvalq *headers = evhttp_request_get_output_headers(r->req);
  evhttp_add_header(headers, "Content-Type", content_type);
  evhttp_add_header(headers, "Cache-Control", "no-store");
  evhttp_add_header(headers, "X-Content-Type-Options", "nosniff");
  if (r->srv->shutting_down
      && evhttp_find_header(headers, "Connection") == NULL)
    evhttp_add_header(headers, "Connection", "close");

  struct evbuffer *buf = evbuffer_new();
  if (buf && body)
    evbuffer_add(buf, body, len);
  evhttp_send_reply(r->req, status, status_reason(status), buf);
  if (buf)
    evbuffer_free(buf);
  reply_log(r, status, body ? len : 0);
}

void
reply_json(struct request *r, int status, const char *json)
{
  reply_send(r, status, "application/json", json, strlen(json));
}

void
reply_wrapped(struct request *r, int status, const char *key, const char *json)
{
  char *body = NULL;
  int n = asprintf(&body, "{\"%s\":%s}", key, json);
  if (n < 0) {
    reply_error(r, 500, FLWD_E_INTERNAL, "out of memory");
    return;
  }
  reply_send(r, status, "application/json", body, (size_t)n);
  free(body);
}

static void
reply_error_message(struct request *r, int status, const char *code,
                    const char *message)
{
  json_object *error = json_object_new_object();
  json_object_object_add(error, "code", json_object_new_string(code));
  json_object_object_add(error, "message", json_object_new_string(message));
  json_object *doc = json_object_new_object();
  json_object_object_add(doc, "error", error);
  reply_json(r, status,
             json_object_to_json_string_ext(
                 doc, JSON_C_TO_STRING_PLAIN | JSON_C_TO_STRING_NOSLASHESCAPE));
  json_object_put(doc);
}

void
reply_error(struct request *r, int status, flwd_code code, const char *fmt, ...)
{
  char *message = NULL;
  va_list ap;
  va_start(ap, fmt);
  int n = vasprintf(&message, fmt, ap);
  va_end(ap);
  /* 503 marks a full or stopping server rather than a fault. */
  if (status >= 500)
    log_msg(status == 503 ? FLWD_LOG_WARNING : FLWD_LOG_ERROR, "%s %s: %s: %s",
            r->method, r->path, flwd_code_name(code), n >= 0 ? message : fmt);
  reply_error_message(r, status, flwd_code_name(code),
                      n >= 0 ? message : flwd_code_description(code));
  free(message);
}

void
reply_flwd_error(struct request *r, const flwd_error *err)
{
  int status = status_of_code(flwd_error_code(err));
  if (status >= 500)
    log_msg(FLWD_LOG_ERROR, "%s %s: %s: %s", r->method, r->path,
            flwd_error_name(err), flwd_error_message(err));
  reply_error_message(r, status, flwd_error_name(err), flwd_error_message(err));
}

int
status_of_code(flwd_code code)
{
  switch (code) {
    case FLWD_E_OK:
      return 200;
    case FLWD_E_REQUEST_INVALID:
      return 400;
    case FLWD_E_AUTH_UNAUTHORIZED:
      return 401;
    case FLWD_E_POLICY_DENIED:
      return 403;
    case FLWD_E_JOB_NOT_FOUND:
    case FLWD_E_RUN_NOT_FOUND:
      return 404;
    case FLWD_E_RUN_FINISHED:
    case FLWD_E_NAME_CONFLICT:
      return 409;
    case FLWD_E_REQUEST_TOO_LARGE:
      return 413;
    case FLWD_E_SPEC_INVALID:
    case FLWD_E_ARGS_INVALID:
    case FLWD_E_SECRET_NOT_FOUND:
      return 422;
    case FLWD_E_RUNTIME_UNAVAILABLE:
      return 503;
    case FLWD_E_OCI:
    case FLWD_E_INTERNAL:
    case FLWD_E_CONFIG_INVALID:
    case FLWD_E_STORE_FAILED:
    case FLWD_E_COUNT_:
      return 500;
  }
  return 500;
}

const char *
status_reason(int status)
{
  switch (status) {
    case 200:
      return "OK";
    case 201:
      return "Created";
    case 202:
      return "Accepted";
    case 400:
      return "Bad Request";
    case 401:
      return "Unauthorized";
    case 403:
      return "Forbidden";
    case 404:
      return "Not Found";
    case 405:
      return "Method Not Allowed";
    case 409:
      return "Conflict";
    case 413:
      return "Payload Too Large";
    case 414:
      return "URI Too Long";
    case 422:
      return "Unprocessable Entity";
    case 503:
      return "Service Unavailable";
    default:
      return status >= 500 ? "Internal Server Error" : "Error";
  }
}
