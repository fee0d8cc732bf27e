/* flwd-httpd: reading request bodies and the {"job","args"} body shared by
 * POST /runs and POST /plans. */
#include <stdlib.h>
#include <string.h>

#include <event2/buffer.h>
#include <json-c/json.h>

#include "server.h"

char *
request_body(struct request *r)
{
  struct evbuffer *input = evhttp_request_get_input_buffer(r->req);
  size_t len = evbuffer_get_length(input);
  char *body = malloc(len + 1);
  if (body == NULL) {
    reply_error(r, 500, FLWD_E_INTERNAL, "out of memory");
    return NULL;
  }
  evbuffer_copyout(input, body, len);
  body[len] = '\0';
  if (strlen(body) != len) {
    free(body);
    reply_error(r, 400, FLWD_E_REQUEST_INVALID,
                "the request body contains a NUL byte");
    return NULL;
  }
  return body;
}

/* Parses the body of R as one JSON object. Returns it (release with
 * json_object_put), or NULL after replying 400. */
static json_object *
body_object(struct request *r)
{
  char *body = request_body(r);
  if (body == NULL)
    return NULL;
  size_t len = strlen(body);
  json_tokener *tok = json_tokener_new();
  if (tok == NULL) {
    free(body);
    reply_error(r, 500, FLWD_E_INTERNAL, "out of memory");
    return NULL;
  }
  json_object *doc = json_tokener_parse_ex(tok, body, (int)len);
  enum json_tokener_error jerr = json_tokener_get_error(tok);
  size_t end = json_tokener_get_parse_end(tok);
  while (end < len && strchr(" \t\r\n", body[end]))
    end++;
  json_tokener_free(tok);
  free(body);

  if (jerr != json_tokener_success || doc == NULL || end != len) {
    reply_error(r, 400, FLWD_E_REQUEST_INVALID,
                "the request body is not a JSON document: %s",
                jerr == json_tokener_continue  ? "it ends early"
                : jerr != json_tokener_success ? json_tokener_error_desc(jerr)
                                               : "unexpected text after it");
    json_object_put(doc);
    return NULL;
  }
  if (!json_object_is_type(doc, json_type_object)) {
    reply_error(r, 400, FLWD_E_REQUEST_INVALID,
                "the request body must be a JSON object "
                "{\"job\": ID, \"args\": {...}}");
    json_object_put(doc);
    return NULL;
  }
  return doc;
}

/* Checks that DOC has a string "job", an optional object "args" and no
 * other member. Returns false after replying 400. */
static bool
job_request_valid(struct request *r, json_object *doc)
{
  json_object_object_foreach(doc, key, value)
  {
    if (strcmp(key, "job") == 0 && json_object_is_type(value, json_type_string))
      continue;
    if (strcmp(key, "args") == 0
        && json_object_is_type(value, json_type_object))
      continue;
    if (strcmp(key, "job") == 0 || strcmp(key, "args") == 0) {
      reply_error(r, 400, FLWD_E_REQUEST_INVALID, "\"%s\" must be a JSON %s",
                  key, strcmp(key, "job") == 0 ? "string" : "object");
    } else {
      reply_error(r, 400, FLWD_E_REQUEST_INVALID,
                  "unknown member \"%s\"; the body has \"job\" and \"args\"",
                  key);
    }
    return false;
  }
  if (!json_object_object_get_ex(doc, "job", NULL)) {
    reply_error(r, 400, FLWD_E_REQUEST_INVALID,
                "missing \"job\": the body is {\"job\": ID, \"args\": {...}}");
    return false;
  }
  return true;
}

int
parse_job_request(struct request *r, flwd_job **job, flwd_args **args)
{
  *job = NULL;
  *args = NULL;
  json_object *doc = body_object(r);
  if (doc == NULL)
    return -1;
  if (!job_request_valid(r, doc)) {
    json_object_put(doc);
    return -1;
  }

  json_object *job_id = NULL;
  json_object *args_doc = NULL;
  json_object_object_get_ex(doc, "job", &job_id);
  json_object_object_get_ex(doc, "args", &args_doc);
  flwd_error *err = NULL;
  int ret
      = flwd_job_find(r->srv->ctx, json_object_get_string(job_id), job, &err);
  if (ret == 0) {
    const char *text
        = args_doc
              ? json_object_to_json_string_ext(args_doc, JSON_C_TO_STRING_PLAIN)
              : "{}";
    ret = flwd_args_from_json(*job, text, args, &err);
  }
  json_object_put(doc);
  if (ret < 0) {
    reply_flwd_error(r, err);
    flwd_error_free(err);
    flwd_job_free(*job);
    *job = NULL;
    return -1;
  }
  return 0;
}
