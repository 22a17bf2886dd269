/*
 * tls_store.c - see tls_store.h.
 *
 * Layout: three allocations per store, sized exactly in a first pass over the "tls" array:
 *   certs[]    one per entry whose files loaded (chain and key, see tls_material.c)
 *   names[]    (name, cert) pairs, lower case, sorted by name for binary search; a wildcard is
 *              stored as written ("*.apps.example.com") and found by rewriting the first label
 *              of the SNI name to "*"
 *   strings    every name and every cert's source text, back to back
 * A name listed by two entries keeps the first entry (file order) and the other is logged.
 *
 * The store is built in the reload thread; tls_store_select runs once per handshake on the
 * worker threads and only reads. A NULL store (route_table_empty() has none) acts as an empty
 * one: every name gets the default certificate.
 */
#include "tls_store.h"

#include "log.h"
#include "tls_selfsigned.h"

#include <ctype.h>
#include <limits.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#define MAX_NAME_LEN 253
#define DEFAULT_CN "gatehouse default"
#define DEFAULT_DAYS 365

struct sni_name {
    const char *name;
    const struct tls_cert *cert;
    size_t entry;                  /* index in the "tls" array: the first one wins */
};

struct tls_store {
    struct tls_cert *certs;
    size_t num_certs;
    struct sni_name *names;
    size_t num_names;
    char *strings;
};

struct string_space {
    char *next;
    const char *end;
};

static struct tls_cert default_cert;
static int have_default;

/* ---- names ---- */

/* Lower-cased name without a trailing dot into buf (MAX_NAME_LEN + 1 bytes); 0 when it is not
 * a DNS name (letters, digits, '-', '.') with an optional leading "*." (wildcard allowed). */
static size_t normalise_name(const char *s, int wildcard_allowed, char *buf)
{
    size_t n = strlen(s);
    if (n > 0 && s[n - 1] == '.')
        n--;
    if (n == 0 || n > MAX_NAME_LEN)
        return 0;
    size_t start = wildcard_allowed && n > 2 && s[0] == '*' && s[1] == '.' ? 2 : 0;
    for (size_t i = 0; i < n; i++) {
        unsigned char c = (unsigned char)s[i];
        if (i >= start && !isalnum(c) && c != '-' && c != '.')
            return 0;
        if (c == '.' && (i + 1 == n || s[i + 1] == '.'))
            return 0;
        buf[i] = (char)tolower(c);
    }
    buf[n] = '\0';
    return n;
}

static int compare_names(const void *a, const void *b)
{
    const struct sni_name *x = a, *y = b;
    int c = strcmp(x->name, y->name);
    if (c)
        return c;
    return x->entry < y->entry ? -1 : x->entry > y->entry;
}

static const struct tls_cert *find_name(const struct tls_store *s, const char *name)
{
    if (!s || s->num_names == 0)
        return NULL;
    size_t lo = 0, hi = s->num_names;
    while (lo < hi) {
        size_t mid = lo + (hi - lo) / 2;
        int c = strcmp(name, s->names[mid].name);
        if (c == 0)
            return s->names[mid].cert;
        if (c < 0)
            hi = mid;
        else
            lo = mid + 1;
    }
    return NULL;
}

static char *store_string(struct string_space *sp, const char *s)
{
    size_t n = strlen(s) + 1;
    if ((size_t)(sp->end - sp->next) < n)
        return NULL;
    char *p = memcpy(sp->next, s, n);
    sp->next += n;
    return p;
}

/* ---- entries ---- */

static const char *entry_string(const json_t *entry, const char *key)
{
    const json_t *v = json_object_get(entry, key);
    return json_is_string(v) ? json_string_value(v) : NULL;
}

/* Bytes of string space an entry can need: its names and its source text. */
static size_t entry_space(const json_t *entry)
{
    size_t bytes = 64;
    const char *ingress = entry_string(entry, "ingress"), *secret = entry_string(entry, "secret");
    bytes += (ingress ? strlen(ingress) : 0) + (secret ? strlen(secret) : 0);
    const json_t *hosts = json_object_get(entry, "hosts");
    for (size_t i = 0; i < json_array_size(hosts); i++)
        if (json_is_string(json_array_get(hosts, i)))
            bytes += strlen(json_string_value(json_array_get(hosts, i))) + 1;
    return bytes;
}

static void resolve_path(const char *base_dir, const char *path, char *out, size_t outlen)
{
    if (path[0] == '/' || !base_dir || !*base_dir)
        snprintf(out, outlen, "%s", path);
    else
        snprintf(out, outlen, "%s/%s", base_dir, path);
}

/* Loads entry i into the next free cert; returns 0 when it was skipped (and logged). */
static int load_entry(struct tls_store *s, const json_t *entry, size_t i, const char *base_dir,
                      int64_t now, struct string_space *sp)
{
    const char *ingress = entry_string(entry, "ingress"), *secret = entry_string(entry, "secret");
    char source[600];
    snprintf(source, sizeof source, "ingress %.250s, secret %.250s",
             ingress ? ingress : "?", secret ? secret : "?");
    const char *cert = entry_string(entry, "cert"), *key = entry_string(entry, "key");
    const json_t *hosts = json_object_get(entry, "hosts");
    if (!json_is_object(entry) || !cert || !key || !json_is_array(hosts)) {
        log_warn("tls[%zu] (%s): needs hosts (a list), cert and key; skipped", i, source);
        return 0;
    }
    char cert_path[PATH_MAX], key_path[PATH_MAX], err[PATH_MAX * 2 + 256];
    resolve_path(base_dir, cert, cert_path, sizeof cert_path);
    resolve_path(base_dir, key, key_path, sizeof key_path);
    struct tls_cert *c = &s->certs[s->num_certs];
    if (tls_material_load_files(cert_path, key_path, now, &c->material, err, sizeof err) < 0) {
        log_warn("tls[%zu] (%s): %s; its hosts get the default certificate", i, source, err);
        return 0;
    }
    c->source = store_string(sp, source);
    s->num_certs++;
    return 1;
}

static void add_names(struct tls_store *s, const json_t *entry, size_t i, const struct tls_cert *c,
                      struct string_space *sp)
{
    const json_t *hosts = json_object_get(entry, "hosts");
    for (size_t j = 0; j < json_array_size(hosts); j++) {
        const json_t *h = json_array_get(hosts, j);
        char name[MAX_NAME_LEN + 1];
        if (!json_is_string(h) || normalise_name(json_string_value(h), 1, name) == 0) {
            log_warn("tls[%zu].hosts[%zu]: not a DNS name or \"*.\" + a DNS name; ignored", i, j);
            continue;
        }
        s->names[s->num_names++] = (struct sni_name){
            .name = store_string(sp, name), .cert = c, .entry = i };
    }
}

/* Sorts names and drops the later duplicates. */
static void index_names(struct tls_store *s)
{
    qsort(s->names, s->num_names, sizeof *s->names, compare_names);
    size_t kept = 0;
    for (size_t i = 0; i < s->num_names; i++) {
        if (kept > 0 && strcmp(s->names[kept - 1].name, s->names[i].name) == 0) {
            log_warn("tls[%zu]: host %s is already served by tls[%zu] (%s); ignored here",
                     s->names[i].entry, s->names[i].name, s->names[kept - 1].entry,
                     s->names[kept - 1].cert->source);
            continue;
        }
        s->names[kept++] = s->names[i];
    }
    s->num_names = kept;
}

/* ---- public ---- */

struct tls_store *tls_store_build(const json_t *tls_entries, const char *base_dir, int64_t now)
{
    size_t num_entries = json_array_size(tls_entries), max_names = 0, space = 1;
    for (size_t i = 0; i < num_entries; i++) {
        const json_t *entry = json_array_get(tls_entries, i);
        max_names += json_array_size(json_object_get(entry, "hosts"));
        space += entry_space(entry);
    }
    struct tls_store *s = calloc(1, sizeof *s);
    if (!s)
        return NULL;
    s->certs = calloc(num_entries ? num_entries : 1, sizeof *s->certs);
    s->names = calloc(max_names ? max_names : 1, sizeof *s->names);
    s->strings = malloc(space);
    if (!s->certs || !s->names || !s->strings) {
        tls_store_free(s);
        return NULL;
    }
    struct string_space sp = { s->strings, s->strings + space };
    for (size_t i = 0; i < num_entries; i++) {
        const json_t *entry = json_array_get(tls_entries, i);
        if (load_entry(s, entry, i, base_dir, now, &sp))
            add_names(s, entry, i, &s->certs[s->num_certs - 1], &sp);
    }
    index_names(s);
    return s;
}

void tls_store_free(struct tls_store *s)
{
    if (!s)
        return;
    for (size_t i = 0; i < s->num_certs; i++)
        tls_material_free(&s->certs[i].material);
    free(s->certs);
    free(s->names);
    free(s->strings);
    free(s);
}

size_t tls_store_num_certs(const struct tls_store *s)
{
    return s ? s->num_certs : 0;
}

const struct tls_cert *tls_store_select(const struct tls_store *s, const char *server_name)
{
    char name[MAX_NAME_LEN + 1];
    size_t len = server_name ? normalise_name(server_name, 0, name) : 0;
    if (len > 0) {
        const struct tls_cert *c = find_name(s, name);
        if (c)
            return c;
        char *dot = strchr(name, '.');
        if (dot && dot > name) {   /* "*.rest" for "label.rest", written in place before ".rest" */
            dot[-1] = '*';
            if ((c = find_name(s, dot - 1)))
                return c;
        }
    }
    return have_default ? &default_cert : NULL;
}

/* ---- the default certificate ---- */

static void set_default(struct tls_material *m, const char *source)
{
    if (have_default)
        tls_material_free(&default_cert.material);
    default_cert.material = *m;
    default_cert.source = source;
    have_default = 1;
}

int tls_default_cert_load(const char *cert_path, const char *key_path, char *err, size_t errlen)
{
    struct tls_material m;
    if (tls_material_load_files(cert_path, key_path, (int64_t)time(NULL), &m, err, errlen) < 0)
        return -1;
    set_default(&m, "default (--default-cert)");
    return 0;
}

int tls_default_cert_generate(char *err, size_t errlen)
{
    int64_t now = (int64_t)time(NULL);
    struct tls_selfsigned made;
    if (tls_selfsigned_make(DEFAULT_CN, now, DEFAULT_DAYS, &made, err, errlen) < 0)
        return -1;
    struct tls_material m;
    int rc = tls_material_parse(made.cert_pem, made.cert_len, made.key_pem, made.key_len, now,
                                &m, err, errlen);
    tls_selfsigned_free(&made);
    if (rc < 0)
        return -1;
    set_default(&m, "default (self-signed)");
    return 0;
}

const struct tls_cert *tls_default_cert(void)
{
    return have_default ? &default_cert : NULL;
}
