/*
 * manifest_dir.c - see manifest_dir.h. List the folder, read each file whole, parse it (YAML via
 * yaml_json, JSON via jansson), then check and collect its objects.
 */
#include "manifest_dir.h"

#include "yaml_json.h"

#include <dirent.h>
#include <errno.h>
#include <fcntl.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

/* A List may hold Lists; kubectl never nests deeper than that, so a bound costs nothing. */
#define MAX_LIST_DEPTH 4

/* "DIR/NAME: document N item M" */
#define LOCATION_MAX (4096 + 256 + 64)

struct reader {
    manifest_diag_fn *diag;
    void *diag_ctx;
    json_t *objects;   /* the result */
    json_t *seen;      /* "kind/namespace/name" -> [index in objects, where it was defined] */
    const char *path;  /* the file being read */
    json_t *last_good;      /* path -> documents of the previous read (may be NULL) */
    json_t *next_good;      /* path -> documents of this read, becomes last_good */
};

static void report(struct reader *r, const char *severity, const char *fmt, ...)
    __attribute__((format(printf, 3, 4)));

static void report(struct reader *r, const char *severity, const char *fmt, ...)
{
    if (!r->diag)
        return;
    char msg[LOCATION_MAX + 512];
    va_list ap;
    va_start(ap, fmt);
    vsnprintf(msg, sizeof msg, fmt, ap);
    va_end(ap);
    r->diag(r->diag_ctx, severity, msg);
}

/* snprintf that may cut long locations short; a cut location still names the file. */
static void format_location(char *buf, size_t size, const char *fmt, ...)
    __attribute__((format(printf, 3, 4)));

static void format_location(char *buf, size_t size, const char *fmt, ...)
{
    va_list ap;
    va_start(ap, fmt);
    vsnprintf(buf, size, fmt, ap);
    va_end(ap);
}

static int ends_with(const char *s, const char *suffix)
{
    size_t n = strlen(s), m = strlen(suffix);
    return n >= m && strcmp(s + n - m, suffix) == 0;
}

int manifest_dir_wants_name(const char *name)
{
    if (name[0] == '.' || ends_with(name, "~"))
        return 0;
    return ends_with(name, ".yaml") || ends_with(name, ".yml") || ends_with(name, ".json");
}

static int compare_names(const void *a, const void *b)
{
    return strcmp(*(char *const *)a, *(char *const *)b);
}

static void free_names(char **names, size_t n)
{
    for (size_t i = 0; i < n; i++)
        free(names[i]);
    free(names);
}

/* The wanted file names in byte order. Returns 0, or -1 with err. */
static int list_names(const char *dir, char ***names_out, size_t *n_out, char *err, size_t errlen)
{
    DIR *d = opendir(dir);
    if (!d) {
        snprintf(err, errlen, "cannot read manifest folder %s: %s", dir, strerror(errno));
        return -1;
    }
    char **names = NULL;
    size_t n = 0, cap = 0;
    int rc = 0;
    for (;;) {
        errno = 0;
        struct dirent *e = readdir(d);
        if (!e) {
            if (errno) {
                snprintf(err, errlen, "cannot read manifest folder %s: %s", dir, strerror(errno));
                rc = -1;
            }
            break;
        }
        if (!manifest_dir_wants_name(e->d_name))
            continue;
        if (n == cap) {
            cap = cap ? cap * 2 : 16;
            char **grown = realloc(names, cap * sizeof *names);
            if (!grown) {
                snprintf(err, errlen, "out of memory listing %s", dir);
                rc = -1;
                break;
            }
            names = grown;
        }
        if (!(names[n] = strdup(e->d_name))) {
            snprintf(err, errlen, "out of memory listing %s", dir);
            rc = -1;
            break;
        }
        n++;
    }
    closedir(d);
    if (rc < 0) {
        free_names(names, n);
        return -1;
    }
    if (n > 1)
        qsort(names, n, sizeof *names, compare_names);
    *names_out = names;
    *n_out = n;
    return 0;
}

enum read_result { READ_OK, READ_GONE, READ_SKIP, READ_FAILED };

/* Reads a whole regular file. READ_GONE: it vanished since the listing (a rename in progress;
 * the watcher will render again). READ_SKIP: not a regular file or too big (reported). */
static enum read_result read_whole_file(struct reader *r, const char *path, char **buf_out,
                                        size_t *len_out, char *err, size_t errlen)
{
    int fd = open(path, O_RDONLY | O_CLOEXEC | O_NOCTTY | O_NONBLOCK);
    if (fd < 0) {
        if (errno == ENOENT)
            return READ_GONE;
        snprintf(err, errlen, "cannot read %s: %s", path, strerror(errno));
        return READ_FAILED;
    }
    struct stat st;
    if (fstat(fd, &st) < 0 || !S_ISREG(st.st_mode)) {
        close(fd);
        report(r, "warning", "%s: not a regular file, skipped", path);
        return READ_SKIP;
    }
    size_t cap = (size_t)st.st_size + 1, len = 0;
    if (cap > MANIFEST_FILE_MAX_BYTES + 1)
        cap = MANIFEST_FILE_MAX_BYTES + 1;
    char *buf = malloc(cap + 1);
    if (!buf) {
        close(fd);
        snprintf(err, errlen, "out of memory reading %s", path);
        return READ_FAILED;
    }
    /* The file may grow while we read: stop one byte past the limit to notice. */
    while (len < cap) {
        ssize_t got = read(fd, buf + len, cap - len);
        if (got < 0 && errno == EINTR)
            continue;
        if (got < 0) {
            snprintf(err, errlen, "cannot read %s: %s", path, strerror(errno));
            free(buf);
            close(fd);
            return READ_FAILED;
        }
        if (got == 0)
            break;
        len += (size_t)got;
    }
    close(fd);
    if (len > MANIFEST_FILE_MAX_BYTES) {
        free(buf);
        report(r, "warning", "%s: larger than %u bytes, skipped", path, MANIFEST_FILE_MAX_BYTES);
        return READ_SKIP;
    }
    buf[len] = '\0';
    *buf_out = buf;
    *len_out = len;
    return READ_OK;
}

static const char *json_kind_name(const json_t *v)
{
    switch (json_typeof(v)) {
    case JSON_OBJECT: return "a mapping";
    case JSON_ARRAY: return "a list";
    case JSON_STRING: return "a string";
    case JSON_INTEGER: case JSON_REAL: return "a number";
    case JSON_TRUE: case JSON_FALSE: return "a boolean";
    default: return "null";
    }
}

static const char *nonempty_string(const json_t *obj, const char *key)
{
    const char *s = json_string_value(json_object_get(obj, key));
    return s && s[0] ? s : NULL;
}

static int is_cluster_scoped(const char *kind)
{
    static const char *const kinds[] = {
        "IngressClass", "Namespace", "Node", "PersistentVolume", "StorageClass", "ClusterRole",
        "ClusterRoleBinding", "CustomResourceDefinition", "PriorityClass", "RuntimeClass",
        "APIService", "CSIDriver", "CSINode", "MutatingWebhookConfiguration",
        "ValidatingWebhookConfiguration",
    };
    for (size_t i = 0; i < sizeof kinds / sizeof kinds[0]; i++)
        if (strcmp(kind, kinds[i]) == 0)
            return 1;
    return 0;
}

/* Adds one checked object; a later definition of the same object replaces the earlier one. */
static void collect_object(struct reader *r, const char *where, json_t *obj, const char *kind,
                           const char *name)
{
    json_t *meta = json_object_get(obj, "metadata");
    json_t *ns_value = json_object_get(meta, "namespace");
    if (ns_value && !json_is_string(ns_value) && !json_is_null(ns_value)) {
        report(r, "warning", "%s: %s %s: metadata.namespace is not a string, skipped",
               where, kind, name);
        return;
    }
    const char *ns = json_string_value(ns_value);
    if (ns && !ns[0])
        ns = NULL;
    if (!ns && !is_cluster_scoped(kind)) {
        json_object_set_new(meta, "namespace", json_string("default"));
        ns = "default";
    }
    char key[1024];
    snprintf(key, sizeof key, "%s/%s/%s", kind, ns ? ns : "", name);
    json_t *earlier = json_object_get(r->seen, key);
    if (earlier) {
        size_t index = (size_t)json_integer_value(json_array_get(earlier, 0));
        report(r, "warning", "%s: %s %s%s%s is also defined in %s; using this one", where, kind,
               ns ? ns : "", ns ? "/" : "", name, json_string_value(json_array_get(earlier, 1)));
        json_array_set(r->objects, index, obj);
        json_array_set_new(earlier, 1, json_string(where));
        return;
    }
    json_object_set_new(r->seen, key, json_pack("[Is]", (json_int_t)json_array_size(r->objects),
                                                where));
    json_array_append(r->objects, obj);
}

static void collect_document(struct reader *r, const char *where, json_t *doc, int depth)
{
    if (!json_is_object(doc)) {
        report(r, "warning", "%s: %s is not a Kubernetes object, skipped", where,
               json_kind_name(doc));
        return;
    }
    const char *kind = nonempty_string(doc, "kind");
    json_t *items = json_object_get(doc, "items");
    if (kind && ends_with(kind, "List") && json_is_array(items)) {
        if (depth >= MAX_LIST_DEPTH) {
            report(r, "warning", "%s: Lists nested too deep, skipped", where);
            return;
        }
        size_t i;
        json_t *item;
        json_array_foreach(items, i, item) {
            char item_where[LOCATION_MAX];
            format_location(item_where, sizeof item_where, "%s%s item %zu", where,
                            strcmp(where, r->path) == 0 ? ":" : ",", i + 1);
            collect_document(r, item_where, item, depth + 1);
        }
        return;
    }
    const char *api_version = nonempty_string(doc, "apiVersion");
    json_t *meta = json_object_get(doc, "metadata");
    const char *name = json_is_object(meta) ? nonempty_string(meta, "name") : NULL;
    const char *missing = !api_version ? "apiVersion" : !kind ? "kind"
                        : !json_is_object(meta) ? "metadata" : !name ? "metadata.name" : NULL;
    if (missing) {
        report(r, "warning", "%s: %s has no %s, skipped", where, kind ? kind : "object", missing);
        return;
    }
    collect_object(r, where, doc, kind, name);
}

static void report_parse_error(struct reader *r, const char *path, size_t line, size_t column,
                               const char *reason)
{
    if (line && column)
        report(r, "error", "%s:%zu:%zu: %s", path, line, column, reason);
    else if (line)
        report(r, "error", "%s:%zu: %s", path, line, reason);
    else
        report(r, "error", "%s: %s", path, reason);
}

/* The documents of one file as a json array, or NULL when it does not parse (reported). */
static json_t *parse_file(struct reader *r, const char *path, const char *buf, size_t len)
{
    if (ends_with(path, ".json")) {
        json_error_t jerr;
        json_t *doc = json_loadb(buf, len, JSON_REJECT_DUPLICATES, &jerr);
        if (!doc) {
            report_parse_error(r, path, jerr.line > 0 ? (size_t)jerr.line : 0,
                               jerr.column > 0 ? (size_t)jerr.column : 0, jerr.text);
            return NULL;
        }
        if (json_is_array(doc))
            return doc;
        json_t *docs = json_array();
        json_array_append_new(docs, doc);
        return docs;
    }
    struct yaml_error yerr = {0};
    json_t *docs = yaml_parse_stream(buf, len, &yerr);
    if (!docs)
        report_parse_error(r, path, yerr.line, yerr.column, yerr.reason);
    return docs;
}

/* Returns -1 (err filled in) only when the file exists but cannot be read. */
static int read_one_file(struct reader *r, const char *path, char *err, size_t errlen)
{
    char *buf;
    size_t len;
    enum read_result res = read_whole_file(r, path, &buf, &len, err, errlen);
    if (res == READ_FAILED)
        return -1;
    if (res != READ_OK)
        return 0;
    r->path = path;
    json_t *docs = parse_file(r, path, buf, len);
    free(buf);
    if (!docs)
        docs = json_incref(json_object_get(r->last_good, path));
    if (!docs)
        return 0;
    if (json_object_get(r->last_good, path) == docs)
        report(r, "warning", "%s: keeping the objects it held when it last parsed", path);
    json_object_set(r->next_good, path, docs);
    size_t count = json_array_size(docs), i;
    json_t *doc;
    json_array_foreach(docs, i, doc) {
        char where[LOCATION_MAX];
        if (count == 1)
            format_location(where, sizeof where, "%s", path);
        else
            format_location(where, sizeof where, "%s: document %zu", path, i + 1);
        collect_document(r, where, doc, 0);
    }
    json_decref(docs);
    return 0;
}

json_t *manifest_dir_read(const char *dir, json_t **last_good, manifest_diag_fn *diag,
                          void *diag_ctx, char *err, size_t errlen)
{
    char **names;
    size_t n;
    if (list_names(dir, &names, &n, err, errlen) < 0)
        return NULL;
    struct reader r = { diag, diag_ctx, json_array(), json_object(), NULL,
                        last_good ? *last_good : NULL, json_object() };
    size_t dirlen = strlen(dir);
    const char *sep = dirlen && dir[dirlen - 1] == '/' ? "" : "/";
    int failed = 0;
    for (size_t i = 0; i < n && !failed; i++) {
        char path[LOCATION_MAX];
        format_location(path, sizeof path, "%s%s%s", dir, sep, names[i]);
        failed = read_one_file(&r, path, err, errlen) < 0;
    }
    free_names(names, n);
    json_decref(r.seen);
    if (failed) {
        json_decref(r.next_good);
        json_decref(r.objects);
        return NULL;
    }
    if (last_good) {
        json_decref(*last_good);
        *last_good = r.next_good;
    } else {
        json_decref(r.next_good);
    }
    return r.objects;
}
