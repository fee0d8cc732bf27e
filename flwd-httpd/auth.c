/* flwd-httpd: bearer tokens and their comparison.
 *
 * A presented token is compared with every configured token over the full
 * TOKEN_MAX bytes of zero-padded buffers, and lengths are compared without
 * a branch. So the time of a check does not tell an attacker how many
 * leading bytes matched, how long a configured token is, or which token
 * matched. */
#include <ctype.h>
#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>
#include <sys/stat.h>

#include "server.h"

static const char dev_token[] = "dev-token";

/* Checks that TEXT (LEN bytes) can be a token: 1 to TOKEN_MAX visible
 * ASCII characters. */
static bool
token_text_valid(const char *text, size_t len)
{
  if (len == 0 || len > TOKEN_MAX)
    return false;
  for (size_t i = 0; i < len; i++) {
    if (text[i] < 0x21 || text[i] > 0x7e)
      return false;
  }
  return true;
}

static int
add_token(struct tokens *tokens, const char *text, size_t len)
{
  struct token *items
      = realloc(tokens->items, (tokens->count + 1) * sizeof(*items));
  if (items == NULL)
    return -1;
  tokens->items = items;
  struct token *token = &items[tokens->count++];
  memset(token->bytes, 0, sizeof(token->bytes));
  memcpy(token->bytes, text, len);
  token->len = len;
  return 0;
}

static void
warn_if_readable_by_others(const char *path, FILE *file)
{
  struct stat st;
  if (fstat(fileno(file), &st) == 0 && (st.st_mode & 0077) != 0)
    log_msg(FLWD_LOG_WARNING,
            "token file %s can be read by other users (mode %04o); "
            "restrict it with: chmod 600 %s",
            path, (unsigned)(st.st_mode & 07777), path);
}

/* Adds the tokens of PATH. Messages name the line, never its content. */
static int
load_token_file(struct tokens *tokens, const char *path)
{
  FILE *file = fopen(path, "re");
  if (file == NULL) {
    log_msg(FLWD_LOG_ERROR, "cannot open token file %s: %s", path,
            strerror(errno));
    return -1;
  }
  warn_if_readable_by_others(path, file);

  char *line = NULL;
  size_t cap = 0;
  ssize_t n;
  int ret = 0;
  for (unsigned lineno = 1; ret == 0 && (n = getline(&line, &cap, file)) >= 0;
       lineno++) {
    char *start = line;
    char *end = line + n;
    while (start < end && isspace((unsigned char)*start))
      start++;
    while (end > start && isspace((unsigned char)end[-1]))
      end--;
    if (start == end || *start == '#')
      continue;
    if (!token_text_valid(start, (size_t)(end - start))) {
      log_msg(FLWD_LOG_ERROR,
              "invalid token on line %u of %s: a token is 1 to %d visible "
              "ASCII characters without spaces",
              lineno, path, TOKEN_MAX);
      ret = -1;
    } else if (add_token(tokens, start, (size_t)(end - start)) < 0) {
      ret = -1;
    }
  }
  free(line);
  fclose(file);
  return ret;
}

static int
load_env_token(struct tokens *tokens)
{
  const char *text = getenv("FLWD_TOKEN");
  if (text == NULL || *text == '\0')
    return 0;
  if (!token_text_valid(text, strlen(text))) {
    log_msg(FLWD_LOG_ERROR,
            "invalid FLWD_TOKEN: a token is 1 to %d visible ASCII "
            "characters without spaces",
            TOKEN_MAX);
    return -1;
  }
  return add_token(tokens, text, strlen(text));
}

int
auth_load(struct tokens *tokens, const struct config *cfg)
{
  if (cfg->token_file && load_token_file(tokens, cfg->token_file) < 0)
    return -1;
  if (load_env_token(tokens) < 0)
    return -1;
  if (cfg->dev) {
    log_msg(FLWD_LOG_WARNING,
            "--dev: accepting the token \"%s\", which anyone can guess; use "
            "--dev for local development only",
            dev_token);
    if (add_token(tokens, dev_token, strlen(dev_token)) < 0)
      return -1;
  }
  if (tokens->count == 0) {
    log_msg(FLWD_LOG_ERROR,
            "no token configured: give --token-file FILE or set FLWD_TOKEN "
            "(or use --dev on a loopback address for local development)");
    return -1;
  }
  return 0;
}

void
auth_clear(struct tokens *tokens)
{
  if (tokens->items)
    memset(tokens->items, 0, tokens->count * sizeof(*tokens->items));
  free(tokens->items);
  tokens->items = NULL;
  tokens->count = 0;
}

/* Returns 1 when A and B differ and 0 when they are equal, without a
 * branch on their values. */
static unsigned
size_differs(size_t a, size_t b)
{
  size_t d = a ^ b;
  return (unsigned)((d | (0 - d)) >> (sizeof(size_t) * 8 - 1));
}

static bool
token_matches_any(const struct tokens *tokens, const unsigned char *presented,
                  size_t len)
{
  unsigned matched = 0;
  for (size_t t = 0; t < tokens->count; t++) {
    const struct token *token = &tokens->items[t];
    unsigned diff = 0;
    for (size_t i = 0; i < TOKEN_MAX; i++)
      diff |= token->bytes[i] ^ presented[i];
    diff |= size_differs(token->len, len);
    matched |= (diff == 0);
  }
  return matched != 0;
}

bool
auth_check(const struct tokens *tokens, const char *header)
{
  static const char scheme[] = "Bearer";
  size_t scheme_len = sizeof(scheme) - 1;
  if (header == NULL || strncasecmp(header, scheme, scheme_len) != 0
      || header[scheme_len] != ' ')
    return false;
  const char *value = header + scheme_len;
  while (*value == ' ')
    value++;
  size_t len = strlen(value);
  while (len > 0 && value[len - 1] == ' ')
    len--;

  /* A presented token longer than any allowed one still takes a full
   * comparison, and then fails on its length. */
  unsigned char presented[TOKEN_MAX] = {0};
  memcpy(presented, value, len < TOKEN_MAX ? len : TOKEN_MAX);
  return token_matches_any(tokens, presented, len);
}
