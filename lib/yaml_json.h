/*
 * yaml_json.h - YAML documents (libyaml) read into jansson trees.
 *
 * Both programs read YAML: the proxy its routes file and node config, the agent Kubernetes
 * manifests. They work on one data model, jansson's json_t, which is also what the cluster
 * source receives from the API server. Plain scalars are typed the way Kubernetes' YAML reader
 * types them (null, true/false, integers, floats; everything else is a string); quoted scalars
 * are always strings. Anchors/aliases are resolved (with a bound against alias bombs); tags
 * other than the core schema's are refused.
 */
#ifndef GATEHOUSE_YAML_JSON_H
#define GATEHOUSE_YAML_JSON_H

#include <jansson.h>
#include <stddef.h>

struct yaml_error {
    char reason[200];   /* human readable, no trailing newline */
    size_t line;        /* 1-based; 0 when unknown */
    size_t column;      /* 1-based; 0 when unknown */
};

/* Parses every document of a YAML stream. Returns a new json array holding one element per
 * document (empty documents are skipped), or NULL with *err filled in. */
json_t *yaml_parse_stream(const char *data, size_t len, struct yaml_error *err);

/* Parses a file that must hold exactly one document (a mapping). NULL with *err on failure,
 * including a missing file (reason from strerror). */
json_t *yaml_load_file_single(const char *path, struct yaml_error *err);

/* Writes a json tree as one YAML document (block style, strings quoted where YAML would
 * otherwise retype them). Returns a malloc'd NUL-terminated buffer, or NULL on failure. */
char *yaml_emit(const json_t *doc, size_t *len_out);

#endif
