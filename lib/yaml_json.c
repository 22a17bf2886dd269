/*
 * yaml_json.c - see yaml_json.h. libyaml's event parser drives a small explicit stack of
 * open containers (no recursion, so deep nesting cannot overflow the C stack); the emitter
 * walks a json tree and feeds libyaml's emitter.
 *
 * Plain scalars are typed like Kubernetes' YAML reader (go-yaml, YAML 1.1 flavour):
 *   null:  "" ~ null Null NULL
 *   bool:  true/false yes/no on/off in lower, Capitalised and UPPER case
 *          (the single letters y/n stay strings: as keys they would surprise everyone)
 *   int:   decimal, 0x hex, 0o octal, 0b binary, and YAML 1.1 octal "0644" (file modes)
 *   float: 1.5, .5, 1e3, 1.5e-3; .inf/.nan are refused (JSON cannot carry them)
 * Merge keys ("<<: *base") are applied as go-yaml does: explicit keys win, earlier merge
 * sources win over later ones.
 *
 * Aliases are deep-copied so that consumers may modify the tree; the copies are bounded by
 * YAML_MAX_ALIAS_NODES per document so an alias bomb ends in an error, not in exhausted memory.
 */
#include "yaml_json.h"

#include <errno.h>
#include <fcntl.h>
#include <limits.h>
#include <math.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>
#include <yaml.h>

#define YAML_MAX_ALIAS_NODES 10000   /* nodes created by alias expansion, per document */
#define YAML_MAX_DEPTH 256           /* nesting; jansson frees trees recursively */
#define YAML_MAX_FILE (256u << 20)

#define TAG_PREFIX "tag:yaml.org,2002:"

/* ---- typing of plain scalars ---- */

enum plain_kind { PLAIN_STRING, PLAIN_NULL, PLAIN_TRUE, PLAIN_FALSE, PLAIN_INT, PLAIN_REAL,
                  PLAIN_NONFINITE };

static int is_one_of(const char *s, const char *const *words)
{
    for (; *words; words++)
        if (strcmp(s, *words) == 0)
            return 1;
    return 0;
}

static const char *const null_words[] = { "~", "null", "Null", "NULL", NULL };
static const char *const true_words[] = { "true", "True", "TRUE", "yes", "Yes", "YES",
                                          "on", "On", "ON", NULL };
static const char *const false_words[] = { "false", "False", "FALSE", "no", "No", "NO",
                                           "off", "Off", "OFF", NULL };
static const char *const nonfinite_words[] = { ".inf", ".Inf", ".INF", "+.inf", "+.Inf", "+.INF",
                                               "-.inf", "-.Inf", "-.INF", ".nan", ".NaN", ".NAN",
                                               NULL };

static int digits_in_base(const char *s, int base)
{
    if (!*s)
        return 0;
    for (; *s; s++) {
        int d;
        if (*s >= '0' && *s <= '9') d = *s - '0';
        else if (*s >= 'a' && *s <= 'f') d = *s - 'a' + 10;
        else if (*s >= 'A' && *s <= 'F') d = *s - 'A' + 10;
        else return 0;
        if (d >= base)
            return 0;
    }
    return 1;
}

/* [-+]?(\.[0-9]+|[0-9]+(\.[0-9]*)?)([eE][-+]?[0-9]+)? */
static int looks_like_float(const char *s)
{
    if (*s == '-' || *s == '+')
        s++;
    size_t int_digits = strspn(s, "0123456789");
    s += int_digits;
    if (*s == '.') {
        size_t frac = strspn(s + 1, "0123456789");
        if (int_digits == 0 && frac == 0)
            return 0;
        s += 1 + frac;
    } else if (int_digits == 0) {
        return 0;
    }
    if (*s == 'e' || *s == 'E') {
        s++;
        if (*s == '-' || *s == '+')
            s++;
        size_t exp_digits = strspn(s, "0123456789");
        if (exp_digits == 0)
            return 0;
        s += exp_digits;
    }
    return *s == '\0';
}

/* Integer forms: [-+]? then 0x.. | 0o.. | 0b.. | 0[0-7]+ | [0-9]+. Out of range -> not an int. */
static int parse_int(const char *s, long long *out)
{
    const char *p = s;
    int negative = 0;
    if (*p == '-' || *p == '+')
        negative = *p++ == '-';
    int base = 10;
    if (p[0] == '0' && (p[1] == 'x' || p[1] == 'X')) base = 16, p += 2;
    else if (p[0] == '0' && p[1] == 'o') base = 8, p += 2;
    else if (p[0] == '0' && p[1] == 'b') base = 2, p += 2;
    else if (p[0] == '0' && p[1] != '\0') base = 8, p += 1;
    if (!digits_in_base(p, base))
        return 0;
    errno = 0;
    unsigned long long magnitude = strtoull(p, NULL, base);
    if (errno == ERANGE)
        return 0;
    if (negative) {
        if (magnitude > (unsigned long long)LLONG_MAX + 1)
            return 0;
        *out = magnitude == (unsigned long long)LLONG_MAX + 1 ? LLONG_MIN : -(long long)magnitude;
    } else {
        if (magnitude > (unsigned long long)LLONG_MAX)
            return 0;
        *out = (long long)magnitude;
    }
    return 1;
}

/* s must be NUL-terminated at n (text with embedded NULs is always a string). */
static enum plain_kind resolve_plain(const char *s, size_t n, long long *iv, double *rv)
{
    if (n == 0)
        return PLAIN_NULL;
    if (strlen(s) != n)
        return PLAIN_STRING;
    char c = s[0];
    /* Fast exit for the common case: ordinary words and names. */
    if (!strchr("~nNtTfFyYoO.+-0123456789", c))
        return PLAIN_STRING;
    if (is_one_of(s, null_words)) return PLAIN_NULL;
    if (is_one_of(s, true_words)) return PLAIN_TRUE;
    if (is_one_of(s, false_words)) return PLAIN_FALSE;
    if (is_one_of(s, nonfinite_words)) return PLAIN_NONFINITE;
    if (parse_int(s, iv)) return PLAIN_INT;
    if (looks_like_float(s)) {
        *rv = strtod(s, NULL);
        return isfinite(*rv) ? PLAIN_REAL : PLAIN_NONFINITE;
    }
    return PLAIN_STRING;
}

/* Shortest "%.Ng" that reads back as the same double, always with '.' or 'e' so that it
 * reads back as a float, not an integer. */
static void format_real(double v, char *buf, size_t size)
{
    for (int precision = 15; precision <= 17; precision++) {
        snprintf(buf, size, "%.*g", precision, v);
        if (strtod(buf, NULL) == v)
            break;
    }
    if (!strpbrk(buf, ".eEn"))   /* 'n': inf/nan, which jansson never holds */
        strncat(buf, ".0", size - strlen(buf) - 1);
}

/* ---- the builder ---- */

struct anchor {
    char *name;
    json_t *node;
    size_t nodes;            /* size of the expanded subtree */
};

struct frame {
    json_t *node;            /* object or array being filled */
    char *anchor;            /* registered when the container closes */
    size_t nodes_before;
    char *key;               /* object: the key waiting for its value */
    int key_is_merge;        /* the pending key is a plain "<<" */
    yaml_mark_t key_mark;
    json_t *merges;          /* object: merge sources, applied when it closes */
};

struct builder {
    struct frame stack[YAML_MAX_DEPTH];
    size_t depth;
    struct anchor *anchors;
    size_t num_anchors, cap_anchors;
    size_t nodes;            /* created in this document, aliases counted expanded */
    size_t alias_nodes;
    json_t *root;
    json_t *docs;
    struct yaml_error *err;
};

static int fail(struct builder *b, const yaml_mark_t *mark, const char *fmt, ...)
    __attribute__((format(printf, 3, 4)));

static int fail(struct builder *b, const yaml_mark_t *mark, const char *fmt, ...)
{
    va_list ap;
    va_start(ap, fmt);
    vsnprintf(b->err->reason, sizeof b->err->reason, fmt, ap);
    va_end(ap);
    b->err->line = mark ? mark->line + 1 : 0;
    b->err->column = mark ? mark->column + 1 : 0;
    return -1;
}

static void clear_anchors(struct builder *b)
{
    for (size_t i = 0; i < b->num_anchors; i++) {
        free(b->anchors[i].name);
        json_decref(b->anchors[i].node);
    }
    b->num_anchors = 0;
}

static void clear_document(struct builder *b)
{
    while (b->depth > 0) {
        struct frame *f = &b->stack[--b->depth];
        json_decref(f->node);
        json_decref(f->merges);
        free(f->anchor);
        free(f->key);
    }
    json_decref(b->root);
    b->root = NULL;
    clear_anchors(b);
    b->nodes = b->alias_nodes = 0;
}

static int add_anchor(struct builder *b, const char *name, json_t *node, size_t nodes,
                      const yaml_mark_t *mark)
{
    if (b->num_anchors == b->cap_anchors) {
        size_t cap = b->cap_anchors ? 2 * b->cap_anchors : 16;
        struct anchor *grown = realloc(b->anchors, cap * sizeof *grown);
        if (!grown)
            return fail(b, mark, "out of memory");
        b->anchors = grown;
        b->cap_anchors = cap;
    }
    char *copy = strdup(name);
    if (!copy)
        return fail(b, mark, "out of memory");
    b->anchors[b->num_anchors++] = (struct anchor){ copy, json_incref(node), nodes };
    return 0;
}

/* The latest definition wins (YAML allows redefining an anchor). */
static const struct anchor *find_anchor(const struct builder *b, const char *name)
{
    for (size_t i = b->num_anchors; i-- > 0;)
        if (strcmp(b->anchors[i].name, name) == 0)
            return &b->anchors[i];
    return NULL;
}

/* The string form of a scalar used as a mapping key (go-yaml's conversion for JSON). */
static char *key_string(const json_t *v)
{
    char buf[64];
    switch (json_typeof(v)) {
    case JSON_STRING: return strndup(json_string_value(v), json_string_length(v));
    case JSON_INTEGER: snprintf(buf, sizeof buf, "%lld", (long long)json_integer_value(v)); break;
    case JSON_REAL: format_real(json_real_value(v), buf, sizeof buf); break;
    case JSON_TRUE: return strdup("true");
    case JSON_FALSE: return strdup("false");
    case JSON_NULL: return strdup("null");
    default: return NULL;
    }
    return strdup(buf);
}

static int expecting_key(const struct builder *b)
{
    if (b->depth == 0)
        return 0;
    const struct frame *f = &b->stack[b->depth - 1];
    return json_is_object(f->node) && f->key == NULL;
}

static int set_key(struct builder *b, const json_t *key, int is_merge, const yaml_mark_t *mark)
{
    struct frame *f = &b->stack[b->depth - 1];
    if (!json_is_string(key) && !json_is_number(key) && !json_is_boolean(key) && !json_is_null(key))
        return fail(b, mark, "mapping keys must be scalars");
    char *text = key_string(key);
    if (!text)
        return fail(b, mark, "out of memory");
    if (json_is_string(key) && strlen(text) != json_string_length(key)) {
        free(text);
        return fail(b, mark, "mapping key contains a NUL character");
    }
    if (!is_merge && json_object_get(f->node, text)) {
        int rc = fail(b, mark, "duplicate mapping key \"%.120s\"", text);
        free(text);
        return rc;
    }
    f->key = text;
    f->key_is_merge = is_merge;
    f->key_mark = *mark;
    return 0;
}

static int add_merge_source(struct builder *b, struct frame *f, json_t *v, const yaml_mark_t *mark)
{
    if (!f->merges && !(f->merges = json_array()))
        return fail(b, mark, "out of memory");
    if (json_is_object(v))
        return json_array_append_new(f->merges, v) ? fail(b, mark, "out of memory") : 0;
    if (json_is_array(v)) {
        size_t i;
        json_t *item;
        json_array_foreach(v, i, item)
            if (!json_is_object(item)) {
                json_decref(v);
                return fail(b, mark, "a merge key (<<) takes a mapping or a list of mappings");
            }
        json_array_foreach(v, i, item)
            json_array_append(f->merges, item);
        json_decref(v);
        return 0;
    }
    json_decref(v);
    return fail(b, mark, "a merge key (<<) takes a mapping or a list of mappings");
}

/* Places a finished value (takes the reference) into the open container or as the root. */
static int attach(struct builder *b, json_t *v, const yaml_mark_t *mark)
{
    if (b->depth == 0) {
        b->root = v;
        return 0;
    }
    struct frame *f = &b->stack[b->depth - 1];
    if (json_is_array(f->node))
        return json_array_append_new(f->node, v) ? fail(b, mark, "out of memory") : 0;
    if (f->key_is_merge) {
        free(f->key);
        f->key = NULL;
        f->key_is_merge = 0;
        return add_merge_source(b, f, v, mark);
    }
    int rc = json_object_set_new_nocheck(f->node, f->key, v);
    free(f->key);
    f->key = NULL;
    return rc ? fail(b, mark, "out of memory") : 0;
}

static void apply_merges(struct frame *f)
{
    size_t i;
    json_t *source;
    json_array_foreach(f->merges, i, source) {
        const char *key;
        json_t *value;
        json_object_foreach(source, key, value)
            if (!json_object_get(f->node, key))
                json_object_set_nocheck(f->node, key, value);   /* sources are private copies */
    }
}

static int tag_is(const yaml_char_t *tag, const char *name)
{
    return tag && strncmp((const char *)tag, TAG_PREFIX, sizeof TAG_PREFIX - 1) == 0 &&
           strcmp((const char *)tag + sizeof TAG_PREFIX - 1, name) == 0;
}

static json_t *scalar_value(struct builder *b, const yaml_event_t *ev)
{
    const char *text = (const char *)ev->data.scalar.value;
    size_t len = ev->data.scalar.length;
    const yaml_char_t *tag = ev->data.scalar.tag;
    const yaml_mark_t *mark = &ev->start_mark;
    int plain = ev->data.scalar.style == YAML_PLAIN_SCALAR_STYLE;

    if (tag && strcmp((const char *)tag, "!") == 0)
        tag = NULL, plain = 0;   /* the non-specific tag "!" means string */
    if (!tag && !plain)
        return json_stringn_nocheck(text, len);
    if (tag_is(tag, "str"))
        return json_stringn_nocheck(text, len);

    long long iv = 0;
    double rv = 0;
    enum plain_kind kind = resolve_plain(text, len, &iv, &rv);
    if (tag && !tag_is(tag, "null") && !tag_is(tag, "bool") && !tag_is(tag, "int") &&
        !tag_is(tag, "float")) {
        fail(b, mark, "unsupported tag %.100s", (const char *)tag);
        return NULL;
    }
    if (kind == PLAIN_NONFINITE) {
        fail(b, mark, "\"%.40s\": infinite and NaN numbers are not supported", text);
        return NULL;
    }
    if ((tag_is(tag, "null") && kind != PLAIN_NULL) ||
        (tag_is(tag, "bool") && kind != PLAIN_TRUE && kind != PLAIN_FALSE) ||
        (tag_is(tag, "int") && kind != PLAIN_INT) ||
        (tag_is(tag, "float") && kind != PLAIN_INT && kind != PLAIN_REAL)) {
        fail(b, mark, "\"%.40s\" cannot be read as %.60s", text, (const char *)tag);
        return NULL;
    }
    if (tag_is(tag, "float") && kind == PLAIN_INT)
        return json_real((double)iv);
    switch (kind) {
    case PLAIN_NULL: return json_null();
    case PLAIN_TRUE: return json_true();
    case PLAIN_FALSE: return json_false();
    case PLAIN_INT: return json_integer(iv);
    case PLAIN_REAL: return json_real(rv);
    default: return json_stringn_nocheck(text, len);
    }
}

static int on_scalar(struct builder *b, const yaml_event_t *ev)
{
    const yaml_mark_t *mark = &ev->start_mark;
    json_t *v = scalar_value(b, ev);
    if (!v)
        return b->err->reason[0] ? -1 : fail(b, mark, "out of memory");
    b->nodes++;
    if (ev->data.scalar.anchor &&
        add_anchor(b, (const char *)ev->data.scalar.anchor, v, 1, mark) < 0) {
        json_decref(v);
        return -1;
    }
    if (expecting_key(b)) {
        int is_merge = ev->data.scalar.style == YAML_PLAIN_SCALAR_STYLE && !ev->data.scalar.tag &&
                       json_is_string(v) && strcmp(json_string_value(v), "<<") == 0;
        int rc = set_key(b, v, is_merge, mark);
        json_decref(v);
        return rc;
    }
    return attach(b, v, mark);
}

static int on_alias(struct builder *b, const yaml_event_t *ev)
{
    const char *name = (const char *)ev->data.alias.anchor;
    const yaml_mark_t *mark = &ev->start_mark;
    const struct anchor *a = find_anchor(b, name);
    if (!a)
        return fail(b, mark, "alias *%.100s refers to an unknown anchor (or to the node containing it)",
                    name);
    b->alias_nodes += a->nodes;
    b->nodes += a->nodes;
    if (b->alias_nodes > YAML_MAX_ALIAS_NODES)
        return fail(b, mark, "aliases expand to more than %d nodes", YAML_MAX_ALIAS_NODES);
    if (expecting_key(b))
        return set_key(b, a->node, 0, mark);
    json_t *copy = json_deep_copy(a->node);
    if (!copy)
        return fail(b, mark, "out of memory");
    return attach(b, copy, mark);
}

static int on_container_start(struct builder *b, const yaml_event_t *ev, int is_mapping)
{
    const yaml_mark_t *mark = &ev->start_mark;
    const yaml_char_t *tag = is_mapping ? ev->data.mapping_start.tag : ev->data.sequence_start.tag;
    const yaml_char_t *anchor = is_mapping ? ev->data.mapping_start.anchor
                                           : ev->data.sequence_start.anchor;
    if (tag && strcmp((const char *)tag, "!") != 0 && !tag_is(tag, is_mapping ? "map" : "seq"))
        return fail(b, mark, "unsupported tag %.100s", (const char *)tag);
    if (expecting_key(b))
        return fail(b, mark, "mapping keys must be scalars");
    if (b->depth == YAML_MAX_DEPTH)
        return fail(b, mark, "nesting deeper than %d levels", YAML_MAX_DEPTH);
    json_t *node = is_mapping ? json_object() : json_array();
    char *anchor_copy = anchor ? strdup((const char *)anchor) : NULL;
    if (!node || (anchor && !anchor_copy)) {
        json_decref(node);
        free(anchor_copy);
        return fail(b, mark, "out of memory");
    }
    b->nodes++;
    b->stack[b->depth++] = (struct frame){ .node = node, .anchor = anchor_copy,
                                           .nodes_before = b->nodes - 1 };
    return 0;
}

static int on_container_end(struct builder *b, const yaml_event_t *ev)
{
    const yaml_mark_t *mark = &ev->start_mark;
    struct frame f = b->stack[--b->depth];
    if (f.merges) {
        apply_merges(&f);
        json_decref(f.merges);
    }
    int rc = 0;
    if (f.anchor)
        rc = add_anchor(b, f.anchor, f.node, b->nodes - f.nodes_before, mark);
    free(f.anchor);
    free(f.key);
    if (rc < 0) {
        json_decref(f.node);
        return -1;
    }
    return attach(b, f.node, mark);
}

static int on_document_end(struct builder *b, const yaml_event_t *ev)
{
    int rc = 0;
    if (b->root && !json_is_null(b->root)) {
        if (json_array_append_new(b->docs, b->root))
            rc = fail(b, &ev->start_mark, "out of memory");
        b->root = NULL;
    }
    clear_document(b);
    return rc;
}

static int on_event(struct builder *b, const yaml_event_t *ev)
{
    switch (ev->type) {
    case YAML_SCALAR_EVENT: return on_scalar(b, ev);
    case YAML_ALIAS_EVENT: return on_alias(b, ev);
    case YAML_MAPPING_START_EVENT: return on_container_start(b, ev, 1);
    case YAML_SEQUENCE_START_EVENT: return on_container_start(b, ev, 0);
    case YAML_MAPPING_END_EVENT:
    case YAML_SEQUENCE_END_EVENT: return on_container_end(b, ev);
    case YAML_DOCUMENT_END_EVENT: return on_document_end(b, ev);
    default: return 0;
    }
}

static void parser_error(const yaml_parser_t *p, const char *data, size_t len,
                         struct yaml_error *err)
{
    const char *problem = p->problem ? p->problem : "invalid YAML";
    err->line = err->column = 0;
    switch (p->error) {
    case YAML_MEMORY_ERROR:
        snprintf(err->reason, sizeof err->reason, "out of memory");
        break;
    case YAML_READER_ERROR: {
        /* The reader only knows a byte offset: count lines up to it ourselves. */
        size_t line = 1, column = 1;
        for (size_t i = 0; i < p->problem_offset && i < len; i++, column++)
            if (data[i] == '\n')
                line++, column = 0;
        err->line = line;
        err->column = column;
        snprintf(err->reason, sizeof err->reason, "%s (byte 0x%02x at offset %zu)", problem,
                 p->problem_value & 0xff, p->problem_offset);
        break;
    }
    default:
        err->line = p->problem_mark.line + 1;
        err->column = p->problem_mark.column + 1;
        if (p->context)
            snprintf(err->reason, sizeof err->reason, "%s %s started at line %zu, column %zu",
                     problem, p->context, p->context_mark.line + 1, p->context_mark.column + 1);
        else
            snprintf(err->reason, sizeof err->reason, "%s", problem);
    }
}

json_t *yaml_parse_stream(const char *data, size_t len, struct yaml_error *err)
{
    struct builder *b = calloc(1, sizeof *b);
    json_t *docs = json_array();
    if (!b || !docs) {
        free(b);
        json_decref(docs);
        snprintf(err->reason, sizeof err->reason, "out of memory");
        err->line = err->column = 0;
        return NULL;
    }
    err->reason[0] = '\0';
    b->docs = docs;
    b->err = err;

    yaml_parser_t parser;
    yaml_parser_initialize(&parser);
    yaml_parser_set_input_string(&parser, (const unsigned char *)data, len);
    int ok = 1;
    for (int done = 0; !done;) {
        yaml_event_t ev;
        if (!yaml_parser_parse(&parser, &ev)) {
            parser_error(&parser, data, len, err);
            ok = 0;
            break;
        }
        done = ev.type == YAML_STREAM_END_EVENT;
        if (on_event(b, &ev) < 0)
            ok = 0, done = 1;
        yaml_event_delete(&ev);
    }
    yaml_parser_delete(&parser);
    clear_document(b);
    free(b->anchors);
    free(b);
    if (!ok) {
        json_decref(docs);
        return NULL;
    }
    return docs;
}

static char *read_file(const char *path, size_t *len_out, struct yaml_error *err)
{
    err->line = err->column = 0;
    int fd = open(path, O_RDONLY | O_CLOEXEC);
    if (fd < 0) {
        snprintf(err->reason, sizeof err->reason, "cannot open: %s", strerror(errno));
        return NULL;
    }
    struct stat st;
    if (fstat(fd, &st) < 0 || !S_ISREG(st.st_mode) || (size_t)st.st_size > YAML_MAX_FILE) {
        snprintf(err->reason, sizeof err->reason, "not a regular file of at most %u MiB",
                 YAML_MAX_FILE >> 20);
        close(fd);
        return NULL;
    }
    size_t cap = (size_t)st.st_size + 1, len = 0;
    char *buf = malloc(cap);
    if (!buf) {
        snprintf(err->reason, sizeof err->reason, "out of memory");
        close(fd);
        return NULL;
    }
    for (;;) {   /* the file may grow between fstat and read: stop at the limit we sized */
        ssize_t n = read(fd, buf + len, cap - 1 - len);
        if (n < 0 && errno == EINTR)
            continue;
        if (n < 0) {
            snprintf(err->reason, sizeof err->reason, "cannot read: %s", strerror(errno));
            free(buf);
            close(fd);
            return NULL;
        }
        if (n == 0 || (len += (size_t)n) == cap - 1)
            break;
    }
    close(fd);
    buf[len] = '\0';
    *len_out = len;
    return buf;
}

json_t *yaml_load_file_single(const char *path, struct yaml_error *err)
{
    size_t len = 0;
    char *data = read_file(path, &len, err);
    if (!data)
        return NULL;
    json_t *docs = yaml_parse_stream(data, len, err);
    free(data);
    if (!docs)
        return NULL;
    json_t *doc = NULL;
    if (json_array_size(docs) != 1)
        snprintf(err->reason, sizeof err->reason, "expected one YAML document, found %zu",
                 json_array_size(docs));
    else if (!json_is_object(json_array_get(docs, 0)))
        snprintf(err->reason, sizeof err->reason, "the document must be a mapping");
    else
        doc = json_incref(json_array_get(docs, 0));
    json_decref(docs);
    if (!doc)
        err->line = err->column = 0;
    return doc;
}

/* ---- emitter ---- */

struct out_buf {
    char *data;
    size_t len, cap;
};

static int write_out(void *ctx, unsigned char *bytes, size_t size)
{
    struct out_buf *o = ctx;
    if (o->len + size + 1 > o->cap) {
        size_t cap = o->cap ? o->cap : 4096;
        while (cap < o->len + size + 1)
            cap *= 2;
        char *grown = realloc(o->data, cap);
        if (!grown)
            return 0;
        o->data = grown;
        o->cap = cap;
    }
    memcpy(o->data + o->len, bytes, size);
    o->len += size;
    return 1;
}

/* A string needs quotes when a plain scalar with its text would read back as another type,
 * or as a merge key, or (for go-yaml readers) as the YAML 1.1 booleans y/n. */
static int string_needs_quotes(const char *s, size_t n)
{
    long long iv;
    double rv;
    if (resolve_plain(s, n, &iv, &rv) != PLAIN_STRING)
        return 1;
    return strcmp(s, "<<") == 0 || strcmp(s, "y") == 0 || strcmp(s, "Y") == 0 ||
           strcmp(s, "n") == 0 || strcmp(s, "N") == 0;
}

static int emit_scalar(yaml_emitter_t *em, const char *text, size_t len, int force_quotes)
{
    if (len > (size_t)0x7fffffff)
        return 0;
    yaml_event_t ev;
    yaml_scalar_style_t style = force_quotes ? YAML_DOUBLE_QUOTED_SCALAR_STYLE
                                             : YAML_ANY_SCALAR_STYLE;
    if (!yaml_scalar_event_initialize(&ev, NULL, NULL, (const yaml_char_t *)text, (int)len,
                                      !force_quotes, 1, style))
        return 0;
    return yaml_emitter_emit(em, &ev);
}

static int emit_string(yaml_emitter_t *em, const char *s, size_t n)
{
    return emit_scalar(em, s, n, string_needs_quotes(s, n));
}

static int emit_node(yaml_emitter_t *em, const json_t *v)
{
    yaml_event_t ev;
    char buf[64];
    switch (json_typeof(v)) {
    case JSON_OBJECT: {
        if (!yaml_mapping_start_event_initialize(&ev, NULL, NULL, 1, YAML_BLOCK_MAPPING_STYLE) ||
            !yaml_emitter_emit(em, &ev))
            return 0;
        const char *key;
        json_t *value;
        json_object_foreach((json_t *)v, key, value)
            if (!emit_string(em, key, strlen(key)) || !emit_node(em, value))
                return 0;
        return yaml_mapping_end_event_initialize(&ev) && yaml_emitter_emit(em, &ev);
    }
    case JSON_ARRAY: {
        if (!yaml_sequence_start_event_initialize(&ev, NULL, NULL, 1, YAML_BLOCK_SEQUENCE_STYLE) ||
            !yaml_emitter_emit(em, &ev))
            return 0;
        size_t i;
        json_t *item;
        json_array_foreach(v, i, item)
            if (!emit_node(em, item))
                return 0;
        return yaml_sequence_end_event_initialize(&ev) && yaml_emitter_emit(em, &ev);
    }
    case JSON_STRING: return emit_string(em, json_string_value(v), json_string_length(v));
    case JSON_INTEGER:
        snprintf(buf, sizeof buf, "%lld", (long long)json_integer_value(v));
        return emit_scalar(em, buf, strlen(buf), 0);
    case JSON_REAL:
        format_real(json_real_value(v), buf, sizeof buf);
        return emit_scalar(em, buf, strlen(buf), 0);
    case JSON_TRUE: return emit_scalar(em, "true", 4, 0);
    case JSON_FALSE: return emit_scalar(em, "false", 5, 0);
    case JSON_NULL: return emit_scalar(em, "null", 4, 0);
    }
    return 0;
}

char *yaml_emit(const json_t *doc, size_t *len_out)
{
    if (!doc)
        return NULL;
    struct out_buf out = { 0 };
    yaml_emitter_t em;
    yaml_event_t ev;
    if (!yaml_emitter_initialize(&em))
        return NULL;
    yaml_emitter_set_output(&em, write_out, &out);
    yaml_emitter_set_unicode(&em, 1);
    yaml_emitter_set_width(&em, -1);   /* never fold long strings */
    int ok = yaml_stream_start_event_initialize(&ev, YAML_UTF8_ENCODING) &&
             yaml_emitter_emit(&em, &ev) &&
             yaml_document_start_event_initialize(&ev, NULL, NULL, NULL, 1) &&
             yaml_emitter_emit(&em, &ev) &&
             emit_node(&em, doc) &&
             yaml_document_end_event_initialize(&ev, 1) &&
             yaml_emitter_emit(&em, &ev) &&
             yaml_stream_end_event_initialize(&ev) &&
             yaml_emitter_emit(&em, &ev) &&
             yaml_emitter_flush(&em);
    yaml_emitter_delete(&em);
    if (!ok || !write_out(&out, (unsigned char *)"", 0)) {
        free(out.data);
        return NULL;
    }
    out.data[out.len] = '\0';
    if (len_out)
        *len_out = out.len;
    return out.data;
}
