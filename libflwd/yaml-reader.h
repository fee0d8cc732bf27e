/* libflwd: reading YAML documents with positions, shared by the job spec
 * and the policy file. */
#ifndef FLWD_YAML_READER_H
#define FLWD_YAML_READER_H

#include <yaml.h>

#include "internal.h"

struct yaml_reader {
  const char *file;
  yaml_document_t *doc;
  flwd_error **err;
  flwd_code code; /* the code of every error this reader reports */
  const yaml_node_t *requests_node;
};

typedef int (*field_fn)(struct yaml_reader *r, const yaml_node_t *value,
                        const char *field, void *target);

/* One field of a mapping: its key, its reader and whether it must be
 * present. */
struct field {
  const char *key;
  field_fn read;
  bool required;
};

static inline void
cleanup_documentp(yaml_document_t **doc)
{
  if (*doc)
    yaml_document_delete(*doc);
}

/* Loads DATA into DOC; a syntax error or an empty file fails with CODE and
 * "NAME:LINE:COLUMN: WHAT: problem". */
FLWD_HIDDEN int parse_document(const char *name, const char *what,
                               const char *data, size_t len,
                               yaml_document_t *doc, flwd_code code,
                               flwd_error **err);

/* Fails with "FILE:LINE:COLUMN: FIELD: problem" at NODE. */
FLWD_HIDDEN int node_error(struct yaml_reader *r, const yaml_node_t *node,
                           const char *field, const char *fmt, ...)
    FLWD_PRINTF(4, 5);

FLWD_HIDDEN const char *scalar_text(const yaml_node_t *node);
FLWD_HIDDEN int want_scalar(struct yaml_reader *r, const yaml_node_t *node,
                            const char *field);
FLWD_HIDDEN int read_string(struct yaml_reader *r, const yaml_node_t *node,
                            const char *field, char **out);
FLWD_HIDDEN int read_bool(struct yaml_reader *r, const yaml_node_t *node,
                          const char *field, bool *out);

/* Visits the keys of MAP in order, each with its entry of FIELDS; an
 * unknown key, a duplicate or a missing required field is an error. */
FLWD_HIDDEN int walk_mapping(struct yaml_reader *r, const yaml_node_t *map,
                             const char *prefix, const struct field *fields,
                             size_t n_fields, void *target);

/* Reads a list of names into OUT, each a plain string or, when KEY is set,
 * a mapping with that single field; CHECK validates each name. */
FLWD_HIDDEN int read_name_list(struct yaml_reader *r, const yaml_node_t *v,
                               const char *f, const char *key,
                               bool (*check)(const char *), const char *what,
                               struct strv *out);

/* Reads the whole file at PATH into OUT; a file over MAX bytes fails with
 * CODE and "PATH:1:1: WHAT: the file is larger than MAX bytes". */
FLWD_HIDDEN int read_small_file(const char *path, const char *what, size_t max,
                                struct buf *out, flwd_code code,
                                flwd_error **err);

#endif /* FLWD_YAML_READER_H */
