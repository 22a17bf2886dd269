/*
 * test_tls_store.c - which certificate a client gets: SNI selection (exact, one-label wildcard,
 * case and trailing dot, unknown and absent names fall to the default), entries whose files do
 * not load are skipped while the others still serve, a routes file's tls section and
 * sslRedirect reach the route table, the generated default certificate is one openssl accepts,
 * and the shared session cache gives back what it was given.
 *
 * Fixtures: self-signed ECDSA certificates made by the openssl command at test time.
 */
#include "check.h"
#include "temp_dir.h"
#include "shell_fixture.h"
#include "route_table.h"
#include "tls_selfsigned.h"
#include "tls_session_cache.h"
#include "tls_store.h"

#include <pthread.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

static void write_file(const char *name, const char *text, size_t len)
{
    char path[128];
    snprintf(path, sizeof path, "%s/%s", dir, name);
    FILE *f = fopen(path, "wb");
    if (!f || fwrite(text, 1, len, f) != len || fclose(f) != 0) {
        fprintf(stderr, "cannot write %s\n", path);
        exit(2);
    }
}

/* tls/<name>.crt and tls/<name>.key, a self-signed P-256 certificate with CN <name>. */
static void make_cert(const char *name)
{
    sh("mkdir -p tls && openssl req -x509 -newkey ec -pkeyopt ec_paramgen_curve:P-256 -nodes "
       "-keyout tls/%s.key -out tls/%s.crt -subj /CN=%s -days 2", name, name, name);
}

static const char *source_of(const struct tls_cert *c)
{
    return c ? c->source : "(none)";
}

static const char *pick(const struct tls_store *s, const char *sni)
{
    return source_of(tls_store_select(s, sni));
}

static const char *const ENTRIES =
    "[{\"hosts\": [\"foo.example.com\", \"*.apps.example.com\"], \"cert\": \"tls/a.crt\","
    "  \"key\": \"tls/a.key\", \"ingress\": \"ns/a\", \"secret\": \"ns/a-tls\"},"
    " {\"hosts\": [\"bar.example.com\", \"FOO.example.com\", \"not a name\"], \"cert\": \"tls/b.crt\","
    "  \"key\": \"tls/b.key\", \"ingress\": \"ns/b\", \"secret\": \"ns/b-tls\"},"
    " {\"hosts\": [\"missing.example.com\"], \"cert\": \"tls/gone.crt\", \"key\": \"tls/gone.key\","
    "  \"ingress\": \"ns/c\", \"secret\": \"ns/c-tls\"},"
    " {\"hosts\": [\"mismatch.example.com\"], \"cert\": \"tls/a.crt\", \"key\": \"tls/b.key\","
    "  \"ingress\": \"ns/d\", \"secret\": \"ns/d-tls\"},"
    " {\"hosts\": [\"nokey.example.com\"], \"cert\": \"tls/a.crt\", \"ingress\": \"ns/e\"},"
    " \"not a mapping\","
    " {\"hosts\": [\"Upper.Example.COM\"], \"cert\": \"TLS_DIR/c.crt\", \"key\": \"TLS_DIR/c.key\","
    "  \"ingress\": \"ns/f\", \"secret\": \"ns/f-tls\"}]";

static json_t *entries_json(void)
{
    /* entry f uses absolute paths: they are taken as they are, not joined to base_dir */
    char text[4096], abs_dir[128];
    snprintf(abs_dir, sizeof abs_dir, "%s/tls", dir);
    const char *mark = strstr(ENTRIES, "TLS_DIR");
    const char *mark2 = strstr(mark + 1, "TLS_DIR");
    snprintf(text, sizeof text, "%.*s%s%.*s%s%s", (int)(mark - ENTRIES), ENTRIES, abs_dir,
             (int)(mark2 - mark - 7), mark + 7, abs_dir, mark2 + 7);
    json_error_t jerr;
    json_t *j = json_loads(text, 0, &jerr);
    if (!j) {
        fprintf(stderr, "bad test json: %s\n", jerr.text);
        exit(2);
    }
    return j;
}

static void test_selection(int64_t now)
{
    json_t *entries = entries_json();
    struct tls_store *s = tls_store_build(entries, dir, now);
    json_decref(entries);
    CHECK(s != NULL);
    CHECK_INT(tls_store_num_certs(s), 3);        /* a, b, f; c, d, e and the string are skipped */

    const char *a = "ingress ns/a, secret ns/a-tls", *b = "ingress ns/b, secret ns/b-tls";
    CHECK_STR(pick(s, "foo.example.com"), a);
    CHECK_STR(pick(s, "FOO.Example.Com"), a);           /* case-insensitive */
    CHECK_STR(pick(s, "foo.example.com."), a);          /* trailing dot */
    CHECK_STR(pick(s, "bar.example.com"), b);
    CHECK_STR(pick(s, "upper.example.com"), "ingress ns/f, secret ns/f-tls");
    CHECK_STR(pick(s, "x.apps.example.com"), a);        /* wildcard: one extra label */
    CHECK_STR(pick(s, "X-1.APPS.example.com"), a);

    /* before a default is set, nothing else matches */
    CHECK(tls_store_select(s, "y.x.apps.example.com") == NULL);   /* two extra labels */
    CHECK(tls_store_select(s, "apps.example.com") == NULL);       /* no extra label */
    CHECK(tls_store_select(s, "missing.example.com") == NULL);    /* its files are missing */
    CHECK(tls_store_select(s, "mismatch.example.com") == NULL);   /* its key is another's */
    CHECK(tls_store_select(s, "*.apps.example.com") == NULL);     /* not a name a client sends */

    char err[256];
    CHECK_INT(tls_default_cert_generate(err, sizeof err), 0);
    const struct tls_cert *def = tls_default_cert();
    CHECK(def != NULL);
    CHECK(tls_store_select(s, "unknown.example.org") == def);
    CHECK(tls_store_select(s, "y.x.apps.example.com") == def);
    CHECK(tls_store_select(s, "missing.example.com") == def);
    CHECK(tls_store_select(s, NULL) == def);             /* no SNI */
    CHECK(tls_store_select(s, "") == def);
    CHECK(tls_store_select(NULL, "foo.example.com") == def);
    CHECK_STR(pick(s, "foo.example.com"), a);            /* a default does not shadow entries */

    /* the selected certificate is the file's: its key matches and the chain is there */
    const struct tls_cert *c = tls_store_select(s, "bar.example.com");
    CHECK_INT(c->material.key_type, BR_KEYTYPE_EC);
    CHECK_INT(c->material.chain_len, 1);
    tls_store_free(s);

    s = tls_store_build(NULL, dir, now);                 /* no tls section */
    CHECK_INT(tls_store_num_certs(s), 0);
    CHECK(tls_store_select(s, "foo.example.com") == def);
    tls_store_free(s);
}

static void test_expired_entry(int64_t now)
{
    json_t *entries = json_pack("[{s:[s], s:s, s:s, s:s, s:s}]", "hosts", "foo.example.com",
                                "cert", "tls/a.crt", "key", "tls/a.key", "ingress", "ns/a",
                                "secret", "ns/a-tls");
    struct tls_store *s = tls_store_build(entries, dir, now + 30 * 86400);
    CHECK_INT(tls_store_num_certs(s), 0);                /* expired then: skipped */
    CHECK(tls_store_select(s, "foo.example.com") == tls_default_cert());
    tls_store_free(s);
    json_decref(entries);
}

static struct route_table *load_routes(const char *yaml, char *err, size_t errlen)
{
    write_file("routes.yaml", yaml, strlen(yaml));
    char path[128];
    snprintf(path, sizeof path, "%s/routes.yaml", dir);
    return route_table_load_file(path, err, errlen);
}

static void test_route_table(void)
{
    char err[512] = "";
    struct route_table *t = load_routes(
        "version: 1\n"
        "backends: [{name: web, endpoints: [\"127.0.0.1:8080\"]}]\n"
        "hosts:\n"
        "  - {host: foo.example.com, sslRedirect: true, paths: [{path: /, type: Prefix, backend: web}]}\n"
        "  - {host: plain.example.com, paths: [{path: /, type: Prefix, backend: web}]}\n"
        "tls:\n"
        "  - {hosts: [foo.example.com], cert: tls/a.crt, key: tls/a.key, ingress: ns/a, secret: ns/a-tls}\n"
        "  - {hosts: [gone.example.com], cert: tls/gone.crt, key: tls/gone.key, ingress: ns/g, secret: ns/g-tls}\n",
        err, sizeof err);
    CHECK(t != NULL);
    if (!t) {
        fprintf(stderr, "  %s\n", err);
        return;
    }
    const struct tls_store *s = route_table_tls(t);
    CHECK(s != NULL);
    CHECK_INT(tls_store_num_certs(s), 1);               /* relative to the routes file's folder */
    CHECK_STR(pick(s, "foo.example.com"), "ingress ns/a, secret ns/a-tls");
    CHECK(tls_store_select(s, "gone.example.com") == tls_default_cert());
    struct route_match m;
    route_table_match(t, "foo.example.com", 15, "/", 1, &m);
    CHECK_INT(m.ssl_redirect, 1);
    route_table_match(t, "plain.example.com", 17, "/", 1, &m);
    CHECK_INT(m.ssl_redirect, 0);
    route_table_match(t, "other.example.com", 17, "/", 1, &m);
    CHECK_INT(m.ssl_redirect, 0);
    route_table_unref(t);                                /* frees the store with it (ASan) */

    t = load_routes("version: 1\nbackends: []\nhosts: []\n", err, sizeof err);
    CHECK(t != NULL && route_table_tls(t) != NULL);
    CHECK_INT(tls_store_num_certs(route_table_tls(t)), 0);
    route_table_unref(t);

    t = load_routes("version: 1\nbackends: []\nhosts: [{host: a.example.com, sslRedirect: \"yes\"}]\n",
                    err, sizeof err);
    CHECK(t == NULL);
    CHECK(strstr(err, "hosts[0] (a.example.com).sslRedirect: expected true or false") != NULL);
    t = load_routes("version: 1\nbackends: []\nhosts: []\ntls: {cert: x}\n", err, sizeof err);
    CHECK(t == NULL);
    CHECK(strstr(err, "tls: expected a list") != NULL);
}

/* The default certificate: what tls_default_cert_generate makes, checked by openssl. */
static void test_selfsigned(int64_t now)
{
    struct tls_selfsigned made;
    char err[256];
    CHECK_INT(tls_selfsigned_make("gatehouse default", now, 365, &made, err, sizeof err), 0);
    write_file("default.crt", made.cert_pem, made.cert_len);
    write_file("default.key", made.key_pem, made.key_len);
    struct tls_material m;
    CHECK_INT(tls_material_parse(made.cert_pem, made.cert_len, made.key_pem, made.key_len, now,
                                 &m, err, sizeof err), 0);
    CHECK_INT(m.key_type, BR_KEYTYPE_EC);
    CHECK_INT(m.key_bits, 256);
    CHECK_INT(m.not_before, now - 3600);
    CHECK_INT(m.not_after, now + 365 * 86400);
    tls_material_free(&m);
    tls_selfsigned_free(&made);

    char cmd[512];
    snprintf(cmd, sizeof cmd, "cd '%s' && openssl verify -CAfile default.crt default.crt >/dev/null 2>&1", dir);
    CHECK_INT(system(cmd), 0);
    snprintf(cmd, sizeof cmd, "cd '%s' && openssl x509 -in default.crt -noout -subject -issuer -text "
             "| grep -c -e 'subject=CN = gatehouse default' -e 'issuer=CN = gatehouse default' "
             "-e 'ASN1 OID: prime256v1' -e 'Signature Algorithm: ecdsa-with-SHA256' "
             "| grep -qx 5", dir);
    CHECK_INT(system(cmd), 0);
    snprintf(cmd, sizeof cmd, "cd '%s' && openssl ec -in default.key -check -noout >/dev/null 2>&1 && "
             "[ \"$(openssl x509 -in default.crt -noout -pubkey)\" = "
             "\"$(openssl ec -in default.key -pubout 2>/dev/null)\" ]", dir);
    CHECK_INT(system(cmd), 0);

    /* two certificates never share a serial or a key */
    struct tls_selfsigned one, two;
    CHECK_INT(tls_selfsigned_make("x", now, 1, &one, err, sizeof err), 0);
    CHECK_INT(tls_selfsigned_make("x", now, 1, &two, err, sizeof err), 0);
    CHECK(strcmp(one.cert_pem, two.cert_pem) != 0 && strcmp(one.key_pem, two.key_pem) != 0);
    tls_selfsigned_free(&one);
    tls_selfsigned_free(&two);
    CHECK_INT(tls_selfsigned_make("", now, 1, &one, err, sizeof err), -1);

    /* a validity that runs past 2049 is written as GeneralizedTime, which openssl reads back */
    CHECK_INT(tls_selfsigned_make("late", 2524608000LL /* 2050-01-01 */, 30, &one, err, sizeof err), 0);
    write_file("late.crt", one.cert_pem, one.cert_len);
    tls_selfsigned_free(&one);
    snprintf(cmd, sizeof cmd, "cd '%s' && openssl x509 -in late.crt -noout -enddate | grep -q 'Jan 31 00:00:00 2050 GMT'", dir);
    CHECK_INT(system(cmd), 0);
}

static void test_default_from_files(void)
{
    char crt[128], key[128], err[512];
    snprintf(crt, sizeof crt, "%s/tls/b.crt", dir);
    snprintf(key, sizeof key, "%s/tls/b.key", dir);
    CHECK_INT(tls_default_cert_load(crt, key, err, sizeof err), 0);
    CHECK(tls_default_cert() != NULL);
    CHECK(tls_store_select(NULL, "anything") == tls_default_cert());
    snprintf(key, sizeof key, "%s/tls/a.key", dir);
    CHECK_INT(tls_default_cert_load(crt, key, err, sizeof err), -1);
    CHECK(strstr(err, "tls.key does not match the certificate") != NULL);
    CHECK(strstr(err, "b.crt") != NULL);
}

/* ---- session cache ---- */

struct server {
    br_ssl_server_context sc;
    unsigned char buf[BR_SSL_BUFSIZE_BIDI];
};

/* A server context as the proxy makes one: the LRU takes its hash and randomness from it. */
static void server_init(struct server *s)
{
    const struct tls_cert *c = tls_default_cert();
    br_ssl_server_init_full_ec(&s->sc, c->material.chain, c->material.chain_len, BR_KEYTYPE_EC,
                               &c->material.ec);
    br_ssl_engine_set_buffer(&s->sc.eng, s->buf, sizeof s->buf, 1);
    br_ssl_server_reset(&s->sc);
}

static void session(br_ssl_session_parameters *p, unsigned id)
{
    memset(p, 0, sizeof *p);
    memcpy(p->session_id, &id, sizeof id);
    p->session_id_len = 32;
    p->version = BR_TLS12;
    p->cipher_suite = BR_TLS_ECDHE_ECDSA_WITH_AES_128_GCM_SHA256;
    memset(p->master_secret, (int)(id & 0xff), sizeof p->master_secret);
}

/* 1: found with the parameters it was stored with; 0: not found; -1: found but different. */
static int cache_lookup(struct server *s, unsigned id)
{
    const br_ssl_session_cache_class **cache = tls_session_cache();
    br_ssl_session_parameters p, want;
    session(&want, id);
    memset(&p, 0, sizeof p);
    memcpy(p.session_id, want.session_id, 32);
    p.session_id_len = 32;
    if (!(*cache)->load(cache, &s->sc, &p))
        return 0;
    return p.cipher_suite == want.cipher_suite &&
           memcmp(p.master_secret, want.master_secret, sizeof p.master_secret) == 0 ? 1 : -1;
}

static void cache_put(struct server *s, unsigned id)
{
    const br_ssl_session_cache_class **cache = tls_session_cache();
    br_ssl_session_parameters p;
    session(&p, id);
    (*cache)->save(cache, &s->sc, &p);
}

static void *cache_worker(void *arg)
{
    unsigned base = (unsigned)(size_t)arg * 100000;
    struct server *s = malloc(sizeof *s);
    server_init(s);
    size_t wrong = 0;
    for (unsigned i = 0; i < 2000; i++) {
        cache_put(s, base + i);
        wrong += cache_lookup(s, base + i) < 0;
        wrong += cache_lookup(s, (base + 100000 + i) % 500000) < 0;   /* another worker's */
    }
    free(s);
    return (void *)wrong;
}

static void test_session_cache(void)
{
    CHECK(tls_session_cache() == NULL);                  /* off until initialised */
    CHECK_INT(tls_session_cache_init(0), 0);
    CHECK(tls_session_cache() == NULL);
    CHECK_INT(tls_session_cache_init(100), 0);
    CHECK(tls_session_cache() != NULL);

    struct server *s = malloc(sizeof *s);
    server_init(s);
    cache_put(s, 1);
    cache_put(s, 2);
    CHECK_INT(cache_lookup(s, 1), 1);
    CHECK_INT(cache_lookup(s, 2), 1);
    CHECK_INT(cache_lookup(s, 3), 0);
    for (unsigned i = 10; i < 210; i++)                  /* 200 more than 100 entries: LRU evicts */
        cache_put(s, i);
    CHECK_INT(cache_lookup(s, 1), 0);
    CHECK_INT(cache_lookup(s, 209), 1);

    /* Workers share it at once: no lookup ever returns another session's secrets, and nothing
     * crashes (ASan). */
    pthread_t threads[4];
    for (size_t i = 0; i < 4; i++)
        pthread_create(&threads[i], NULL, cache_worker, (void *)(i + 1));
    size_t wrong = 0;
    for (size_t i = 0; i < 4; i++) {
        void *r;
        pthread_join(threads[i], &r);
        wrong += (size_t)r;
    }
    CHECK_INT(wrong, 0);
    free(s);
}

int main(void)
{
    snprintf(dir, sizeof dir, "/tmp/test_tls_store.XXXXXX");
    if (!mkdtemp(dir)) {
        perror("mkdtemp");
        return 2;
    }
    make_cert("a");
    make_cert("b");
    make_cert("c");
    int64_t now = (int64_t)time(NULL);
    test_selection(now);
    test_expired_entry(now);
    test_route_table();
    test_selfsigned(now);
    test_default_from_files();
    test_session_cache();
    temp_dir_remove(dir);
    return check_summary("test_tls_store");
}
