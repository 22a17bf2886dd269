/*
 * manifest_dir.h - the directory source: a folder of Kubernetes manifests -> json array of objects.
 *
 * Reads every *.yaml, *.yml and *.json file directly in the folder (not recursive), in byte order
 * of the names, so a render never depends on readdir order. Hidden files (".x", which also covers
 * the "..data" folder of a ConfigMap mount and emacs lock files ".#x") and editor backups ("x~")
 * are skipped. A YAML file may hold many documents; `kind: List` and every other *List kind
 * (items[]) are flattened into their items. Objects without a namespace get "default", as
 * `kubectl apply` would do, unless their kind is cluster-scoped (IngressClass, Namespace, ...).
 *
 * Bad content is reported and skipped, the rest still loads: a file that does not parse
 * ("manifests/bad.yaml:7:3: mapping values are not allowed here"), a document that is not an
 * object or lacks apiVersion/kind/metadata.name. When two files define the same object the later
 * one (by name) wins, with a warning.
 *
 * Failing to read is different from reading bad content: when the folder or one of its files
 * cannot be read (missing, permissions, I/O error), the whole read fails, because a partial view
 * would silently drop routes that still exist. The caller then keeps the routes it has.
 */
#ifndef GATEHOUSE_MANIFEST_DIR_H
#define GATEHOUSE_MANIFEST_DIR_H

#include <jansson.h>
#include <stddef.h>

/* Files larger than this are refused as bad content (a manifest folder holds text, not data). */
#define MANIFEST_FILE_MAX_BYTES (8u << 20)

/* severity: "warning" (the object or file was skipped or overridden) or "error". */
typedef void manifest_diag_fn(void *ctx, const char *severity, const char *msg);

/* Returns a new json array of objects, or NULL with err filled in when the folder cannot be read.
 * Problems with the content go to diag (may be NULL).
 *
 * last_good (may be NULL) carries each file's documents from one read to the next: a file that
 * stops parsing keeps contributing what it held when it last parsed (reported), so a typo in
 * one manifest never takes down the routes it defined. Start with *last_good = NULL; release
 * it with json_decref. A file that is removed drops its objects. */
json_t *manifest_dir_read(const char *dir, json_t **last_good, manifest_diag_fn *diag,
                          void *diag_ctx, char *err, size_t errlen);

/* 1 when a file of this name would be read. Lets the folder watcher ignore editor noise. */
int manifest_dir_wants_name(const char *name);

#endif
