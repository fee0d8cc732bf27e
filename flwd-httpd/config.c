/* flwd-httpd: command-line options. */
#include <arpa/inet.h>
#include <errno.h>
#include <getopt.h>
#include <limits.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "server.h"

static const char usage_text[]
    = "Usage: flwd-httpd [OPTIONS]\n"
      "\n"
      "Serve the flwd HTTP API: run jobs in hardened containers and follow\n"
      "their events and logs.\n"
      "\n"
      "Options:\n"
      "  --listen HOST:PORT     address to listen on (default 127.0.0.1:8080;\n"
      "                         port 0 picks a free port and logs it)\n"
      "  --jobs DIR             directory of job specs (default: "
      "FLWD_JOBS_PATH,\n"
      "                         then ./jobs and the system directory)\n"
      "  --state-dir DIR        run store and run directories (default:\n"
      "                         FLWD_STATE_DIR, then the library default)\n"
      "  --runtime NAME         auto (default), podman or docker; also "
      "FLWD_RUNTIME\n"
      "  --policy FILE          policy for profiles and relaxations; also\n"
      "                         FLWD_POLICY\n"
      "  --secrets-dir DIR      one file per secret; also FLWD_SECRETS_DIR\n"
      "  --token-file FILE      bearer tokens, one a line; blank lines and\n"
      "                         lines starting with # are ignored\n"
      "  --dev                  also accept the token \"dev-token\"; only on "
      "a\n"
      "                         loopback address\n"
      "  --max-runs N           runs preparing or running at once; more wait\n"
      "                         queued (default 0, no limit)\n"
      "  --max-body BYTES       maximum request body (default 1048576)\n"
      "  --max-connections N    maximum client connections served at once\n"
      "                         (default 256)\n"
      "  --request-timeout SEC  close a connection that sends or accepts\n"
      "                         nothing for SEC seconds (default 30)\n"
      "  -h, --help             print this help\n"
      "  --version              print the version\n"
      "\n"
      "Tokens come from --token-file and from FLWD_TOKEN. Without any token\n"
      "the server does not start, unless --dev is given.\n";

enum {
  OPT_LISTEN = 256,
  OPT_JOBS,
  OPT_STATE_DIR,
  OPT_RUNTIME,
  OPT_TOKEN_FILE,
  OPT_DEV,
  OPT_MAX_RUNS,
  OPT_MAX_BODY,
  OPT_MAX_CONNECTIONS,
  OPT_REQUEST_TIMEOUT,
  OPT_POLICY,
  OPT_SECRETS_DIR,
  OPT_VERSION,
};

static const struct option long_options[] = {
    {"listen", required_argument, NULL, OPT_LISTEN},
    {"jobs", required_argument, NULL, OPT_JOBS},
    {"state-dir", required_argument, NULL, OPT_STATE_DIR},
    {"runtime", required_argument, NULL, OPT_RUNTIME},
    {"token-file", required_argument, NULL, OPT_TOKEN_FILE},
    {"dev", no_argument, NULL, OPT_DEV},
    {"max-runs", required_argument, NULL, OPT_MAX_RUNS},
    {"max-body", required_argument, NULL, OPT_MAX_BODY},
    {"max-connections", required_argument, NULL, OPT_MAX_CONNECTIONS},
    {"request-timeout", required_argument, NULL, OPT_REQUEST_TIMEOUT},
    {"policy", required_argument, NULL, OPT_POLICY},
    {"secrets-dir", required_argument, NULL, OPT_SECRETS_DIR},
    {"help", no_argument, NULL, 'h'},
    {"version", no_argument, NULL, OPT_VERSION},
    {NULL, 0, NULL, 0},
};

/* Parses TEXT as a decimal integer from MIN to MAX for option NAME. */
static int
parse_number(const char *name, const char *text, long long min, long long max,
             long long *out)
{
  char *end = NULL;
  errno = 0;
  long long value = strtoll(text, &end, 10);
  if (errno != 0 || end == text || *end != '\0' || value < min || value > max) {
    fprintf(stderr,
            "flwd-httpd: invalid %s '%s': expected an integer from %lld to "
            "%lld\n",
            name, text, min, max);
    return -1;
  }
  *out = value;
  return 0;
}

/* Splits "HOST:PORT" or "[HOST]:PORT" into CFG's listen address. */
static int
parse_listen(struct config *cfg, const char *text)
{
  const char *colon = strrchr(text, ':');
  const char *host = text;
  size_t host_len = colon ? (size_t)(colon - text) : 0;
  if (host_len >= 2 && text[0] == '[' && text[host_len - 1] == ']') {
    host++;
    host_len -= 2;
  }
  long long port = 0;
  if (colon == NULL || host_len == 0
      || parse_number("--listen port", colon + 1, 0, 65535, &port) < 0) {
    fprintf(stderr,
            "flwd-httpd: invalid --listen '%s': expected HOST:PORT, such "
            "as 127.0.0.1:8080\n",
            text);
    return -1;
  }
  free(cfg->listen_host);
  cfg->listen_host = strndup(host, host_len);
  cfg->listen_port = (int)port;
  return cfg->listen_host ? 0 : -1;
}

/* Applies option OPT with argument ARG. Returns 0, or -1 after printing an
 * error. */
static int
apply_option(struct config *cfg, int opt, const char *arg)
{
  long long value = 0;
  switch (opt) {
    case OPT_LISTEN:
      return parse_listen(cfg, arg);
    case OPT_JOBS:
      cfg->jobs_dir = arg;
      return 0;
    case OPT_STATE_DIR:
      cfg->state_dir = arg;
      return 0;
    case OPT_RUNTIME:
      cfg->runtime = arg;
      return 0;
    case OPT_POLICY:
      cfg->policy = arg;
      return 0;
    case OPT_SECRETS_DIR:
      cfg->secrets_dir = arg;
      return 0;
    case OPT_TOKEN_FILE:
      cfg->token_file = arg;
      return 0;
    case OPT_DEV:
      cfg->dev = true;
      return 0;
    case OPT_MAX_RUNS:
      cfg->max_runs = arg;
      return parse_number("--max-runs", arg, 0, INT_MAX, &value);
    case OPT_MAX_BODY:
      if (parse_number("--max-body", arg, 1, 1LL << 30, &value) < 0)
        return -1;
      cfg->max_body = (size_t)value;
      return 0;
    case OPT_MAX_CONNECTIONS:
      if (parse_number("--max-connections", arg, 1, 65536, &value) < 0)
        return -1;
      cfg->max_connections = (int)value;
      return 0;
    case OPT_REQUEST_TIMEOUT:
      if (parse_number("--request-timeout", arg, 1, 3600, &value) < 0)
        return -1;
      cfg->request_timeout = (int)value;
      return 0;
  }
  return -1;
}

static void
set_defaults(struct config *cfg)
{
  memset(cfg, 0, sizeof(*cfg));
  cfg->listen_host = strdup("127.0.0.1");
  cfg->listen_port = 8080;
  cfg->max_runs = "0";
  cfg->max_body = 1024 * 1024;
  cfg->max_headers = 16 * 1024;
  cfg->max_connections = 256;
  cfg->request_timeout = 30;
}

int
config_parse(struct config *cfg, int argc, char **argv, int *status)
{
  set_defaults(cfg);
  *status = EXIT_USAGE;
  int opt;
  while ((opt = getopt_long(argc, argv, "h", long_options, NULL)) != -1) {
    if (opt == 'h' || opt == OPT_VERSION) {
      if (opt == 'h')
        fputs(usage_text, stdout);
      else
        printf("flwd-httpd %s\n", flwd_version_string());
      *status = 0;
      return -1;
    }
    if (opt == '?' || apply_option(cfg, opt, optarg) < 0) {
      fputs("flwd-httpd: see flwd-httpd --help\n", stderr);
      return -1;
    }
  }
  if (optind < argc) {
    fprintf(stderr,
            "flwd-httpd: unexpected argument '%s'; see flwd-httpd --help\n",
            argv[optind]);
    return -1;
  }
  if (cfg->listen_host == NULL)
    return -1;
  return 0;
}

void
config_clear(struct config *cfg)
{
  free(cfg->listen_host);
  cfg->listen_host = NULL;
}

bool
config_host_is_loopback(const char *host)
{
  if (strcmp(host, "localhost") == 0)
    return true;
  struct in_addr v4;
  if (inet_pton(AF_INET, host, &v4) == 1)
    return (ntohl(v4.s_addr) >> 24) == 127;
  struct in6_addr v6;
  if (inet_pton(AF_INET6, host, &v6) == 1)
    return IN6_IS_ADDR_LOOPBACK(&v6);
  return false;
}
