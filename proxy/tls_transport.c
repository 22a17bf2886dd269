/*
 * tls_transport.c - BearSSL server engine per client connection (tls_transport.h).
 *
 * The engine is a state machine with four doors (BR_SSL_SENDREC, RECVREC, SENDAPP, RECVAPP);
 * pump() opens the record doors towards the socket until neither can move without blocking.
 * Reads and writes of plaintext then use the application doors, pumping around each use. The
 * socket readiness flags are ours: set by epoll events, cleared only by EAGAIN or a short
 * transfer, so an edge is never lost while the engine was busy with something else.
 *
 * The certificate policy is our own br_ssl_server_policy_class: choose() looks the SNI name up
 * in the connection's route table (tls_store_select) and picks the first suite, in our order,
 * whose key exchange the certificate's key can do; do_sign() signs the ECDHE parameters with
 * that key (RSA PKCS#1 v1.5 or ECDSA). No renegotiation, so choose() runs once per handshake.
 */
#include "tls_transport.h"

#include <bearssl.h>
#include <errno.h>
#include <stddef.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "route_table.h"
#include "tls_session_cache.h"
#include "tls_store.h"

/* An output buffer sized for records of TLS_TRANSPORT_OUT_PLAINTEXT bytes: the engine's
 * per-record overhead is what BR_SSL_BUFSIZE_OUTPUT adds to the 16 KiB maximum. */
#define OUT_BUFFER_SIZE (TLS_TRANSPORT_OUT_PLAINTEXT + (BR_SSL_BUFSIZE_OUTPUT - 16384))
#define IN_BUFFER_SIZE  BR_SSL_BUFSIZE_INPUT
/* BearSSL asks for a record's 5-byte header, then for its body: read straight into the engine,
 * a request costs three read() calls (header, body, EAGAIN). Small records are read ahead into
 * this buffer instead, so a typical request head arrives with one read() (and a short read
 * tells the socket is drained). Large record bodies still go straight to the engine. */
#define READ_AHEAD_SIZE 2048

struct tls_transport {
    br_ssl_server_context sc;
    const br_ssl_server_policy_class *policy;    /* its address is what the engine calls with */
    const struct tls_cert *cert;                 /* chosen for this handshake */
    struct route_table *table;                   /* held until the handshake is over */
    struct tls_transport *free_next;
    int fd;
    unsigned char sock_rd, sock_wr;              /* socket readiness not yet used up */
    unsigned char peer_eof;                      /* TCP EOF read */
    unsigned char sock_failed;                   /* read/write error other than EAGAIN */
    unsigned short ahead_off, ahead_len;         /* bytes read but not yet given to the engine */
    unsigned char ahead[READ_AHEAD_SIZE];
    unsigned char in_buf[IN_BUFFER_SIZE];
    unsigned char out_buf[OUT_BUFFER_SIZE];
};

/* Server order: AES-GCM (AES-NI makes it the fastest here), then ChaCha20-Poly1305; ECDHE
 * only, so every session has forward secrecy. */
static const uint16_t suites[] = {
    BR_TLS_ECDHE_ECDSA_WITH_AES_128_GCM_SHA256,
    BR_TLS_ECDHE_RSA_WITH_AES_128_GCM_SHA256,
    BR_TLS_ECDHE_ECDSA_WITH_AES_256_GCM_SHA384,
    BR_TLS_ECDHE_RSA_WITH_AES_256_GCM_SHA384,
    BR_TLS_ECDHE_ECDSA_WITH_CHACHA20_POLY1305_SHA256,
    BR_TLS_ECDHE_RSA_WITH_CHACHA20_POLY1305_SHA256,
};

static const char *alpn_names[] = { "http/1.1" };    /* BearSSL wants a non-const array */

/* ---------------------------------------------------------------- certificate policy */

static struct tls_transport *from_policy(const br_ssl_server_policy_class **pctx)
{
    return (struct tls_transport *)((char *)pctx - offsetof(struct tls_transport, policy));
}

/* The signature hash for ServerKeyExchange, from the client's list (bit = hash id). */
static unsigned signature_hash(uint32_t client_hashes)
{
    if (client_hashes & (1u << br_sha256_ID))
        return br_sha256_ID;
    if (client_hashes & (1u << br_sha384_ID))
        return br_sha384_ID;
    return 0;
}

static int policy_choose(const br_ssl_server_policy_class **pctx, const br_ssl_server_context *cc,
                         br_ssl_server_choices *choices)
{
    struct tls_transport *t = from_policy(pctx);
    const char *name = br_ssl_engine_get_server_name(&cc->eng);
    const struct tls_cert *cert = t->table ? tls_store_select(route_table_tls(t->table), name)
                                           : tls_default_cert();
    if (!cert)
        return 0;
    int is_rsa = cert->material.key_type == BR_KEYTYPE_RSA;
    unsigned keyx = is_rsa ? BR_SSLKEYX_ECDHE_RSA : BR_SSLKEYX_ECDHE_ECDSA;
    /* RSA signature hashes are bits 0-7 of the client's list, ECDSA ones bits 8-15. */
    unsigned hash = signature_hash(br_ssl_server_get_client_hashes(cc) >> (is_rsa ? 0 : 8));
    if (!hash)
        return 0;
    size_t num;
    const br_suite_translated *offered = br_ssl_server_get_client_suites(cc, &num);
    for (size_t i = 0; i < num; i++) {
        if ((unsigned)(offered[i][1] >> 12) != keyx)
            continue;
        choices->cipher_suite = offered[i][0];
        choices->algo_id = 0xFF00 + hash;
        choices->chain = cert->material.chain;
        choices->chain_len = cert->material.chain_len;
        t->cert = cert;
        return 1;
    }
    return 0;
}

/* Only ECDHE suites are configured: the static key exchanges never happen. */
static uint32_t policy_do_keyx(const br_ssl_server_policy_class **pctx, unsigned char *data,
                               size_t *len)
{
    return 0;
}

static size_t sign_rsa(const br_rsa_private_key *sk, unsigned hash, const unsigned char *hv,
                       size_t hv_len, unsigned char *out, size_t out_len)
{
    size_t sig_len = (sk->n_bitlen + 7) / 8;
    if (sig_len > out_len)
        return 0;
    const unsigned char *oid = hash == br_sha256_ID ? BR_HASH_OID_SHA256 : BR_HASH_OID_SHA384;
    return br_rsa_pkcs1_sign_get_default()(oid, hv, hv_len, sk, out) ? sig_len : 0;
}

static size_t sign_ec(const br_ec_private_key *sk, unsigned hash, const unsigned char *hv,
                      unsigned char *out, size_t out_len)
{
    /* An ASN.1 ECDSA signature on P-384 takes at most 104 bytes; BearSSL asks for 139 room. */
    if (out_len < 139)
        return 0;
    const br_hash_class *hc = hash == br_sha256_ID ? &br_sha256_vtable : &br_sha384_vtable;
    return br_ecdsa_sign_asn1_get_default()(br_ec_get_default(), hc, hv, sk, out);
}

static size_t policy_do_sign(const br_ssl_server_policy_class **pctx, unsigned algo_id,
                             unsigned char *data, size_t hv_len, size_t len)
{
    struct tls_transport *t = from_policy(pctx);
    unsigned hash = algo_id & 0xFF;
    unsigned char hv[64];
    if (!t->cert || (hash != br_sha256_ID && hash != br_sha384_ID) || hv_len > sizeof hv)
        return 0;
    memcpy(hv, data, hv_len);              /* the signature overwrites the hash in data */
    const struct tls_material *m = &t->cert->material;
    if (m->key_type == BR_KEYTYPE_RSA)
        return sign_rsa(&m->rsa, hash, hv, hv_len, data, len);
    return sign_ec(&m->ec, hash, hv, data, len);
}

static const br_ssl_server_policy_class policy_class = {
    .context_size = sizeof(const br_ssl_server_policy_class *),
    .choose = policy_choose,
    .do_keyx = policy_do_keyx,
    .do_sign = policy_do_sign,
};

/* ---------------------------------------------------------------- engine set-up */

/* Done once per object: a recycled engine keeps all of this and is only reset. */
static void configure_engine(struct tls_transport *t)
{
    br_ssl_server_context *sc = &t->sc;
    br_ssl_engine_context *eng = &sc->eng;
    br_ssl_server_zero(sc);
    br_ssl_engine_set_versions(eng, BR_TLS12, BR_TLS12);
    br_ssl_engine_set_suites(eng, suites, sizeof suites / sizeof suites[0]);
    br_ssl_engine_add_flags(eng, BR_OPT_ENFORCE_SERVER_PREFERENCES | BR_OPT_NO_RENEGOTIATION);
    br_ssl_engine_set_hash(eng, br_sha256_ID, &br_sha256_vtable);
    br_ssl_engine_set_hash(eng, br_sha384_ID, &br_sha384_vtable);
    br_ssl_engine_set_prf_sha256(eng, &br_tls12_sha256_prf);
    br_ssl_engine_set_prf_sha384(eng, &br_tls12_sha384_prf);
    br_ssl_engine_set_default_aes_gcm(eng);
    br_ssl_engine_set_default_chapol(eng);
    br_ssl_engine_set_default_ec(eng);
    br_ssl_engine_set_protocol_names(eng, alpn_names, 1);
    br_ssl_engine_set_buffers_bidi(eng, t->in_buf, sizeof t->in_buf, t->out_buf, sizeof t->out_buf);
    t->policy = &policy_class;
    br_ssl_server_set_policy(sc, &t->policy);
    const br_ssl_session_cache_class **cache = tls_session_cache();
    if (cache)
        br_ssl_server_set_cache(sc, cache);
}

size_t tls_transport_size(void)
{
    return sizeof(struct tls_transport);
}

static void release_table(struct tls_transport *t)
{
    if (t->table) {
        route_table_unref(t->table);
        t->table = NULL;
    }
}

struct tls_transport *tls_transport_open(struct tls_transport **free_list, int fd,
                                         struct route_table *table)
{
    struct tls_transport *t = *free_list;
    if (t) {
        *free_list = t->free_next;
    } else {
        if (!(t = malloc(sizeof *t)))
            return NULL;
        configure_engine(t);
    }
    if (!br_ssl_server_reset(&t->sc)) {       /* only fails when no entropy can be had */
        t->free_next = *free_list;
        *free_list = t;
        return NULL;
    }
    t->fd = fd;
    t->cert = NULL;
    t->sock_rd = t->sock_wr = 1;
    t->peer_eof = t->sock_failed = 0;
    t->ahead_off = t->ahead_len = 0;
    t->table = table;
    if (table)
        route_table_ref(table);
    return t;
}

/* ---------------------------------------------------------------- record I/O */

static int would_block(void)
{
    return errno == EAGAIN || errno == EWOULDBLOCK;
}

/* Moves one batch of records engine -> socket. Returns 1 if bytes moved. */
static int send_records(struct tls_transport *t)
{
    size_t len;
    unsigned char *buf = br_ssl_engine_sendrec_buf(&t->sc.eng, &len);
    ssize_t n = write(t->fd, buf, len);
    if (n < 0) {
        if (errno == EINTR)
            return 1;
        if (would_block())
            t->sock_wr = 0;
        else
            t->sock_failed = 1;
        return 0;
    }
    br_ssl_engine_sendrec_ack(&t->sc.eng, (size_t)n);
    if ((size_t)n < len)
        t->sock_wr = 0;                   /* a short write: the socket buffer is full */
    return n > 0;
}

/* read() into buf; records EOF, EAGAIN (and a short read: drained) and errors in t's flags.
 * Returns the byte count, 0 when nothing came. */
static size_t read_socket(struct tls_transport *t, unsigned char *buf, size_t len)
{
    ssize_t n;
    do
        n = read(t->fd, buf, len);
    while (n < 0 && errno == EINTR);
    if (n > 0 && (size_t)n < len)
        t->sock_rd = 0;
    else if (n == 0)
        t->peer_eof = 1;
    else if (n < 0 && would_block())
        t->sock_rd = 0;
    else if (n < 0)
        t->sock_failed = 1;
    return n > 0 ? (size_t)n : 0;
}

/* Moves bytes socket -> engine. Returns 1 if bytes moved. */
static int receive_records(struct tls_transport *t)
{
    size_t len;
    unsigned char *buf = br_ssl_engine_recvrec_buf(&t->sc.eng, &len);
    if (t->ahead_len == 0 && len >= sizeof t->ahead) {
        size_t n = read_socket(t, buf, len);          /* a large record body: no copy */
        if (n)
            br_ssl_engine_recvrec_ack(&t->sc.eng, n);
        return n > 0;
    }
    if (t->ahead_len == 0) {
        t->ahead_off = 0;
        t->ahead_len = (unsigned short)read_socket(t, t->ahead, sizeof t->ahead);
        if (t->ahead_len == 0)
            return 0;
    }
    size_t n = len < t->ahead_len ? len : t->ahead_len;
    memcpy(buf, t->ahead + t->ahead_off, n);
    t->ahead_off = (unsigned short)(t->ahead_off + n);
    t->ahead_len = (unsigned short)(t->ahead_len - n);
    br_ssl_engine_recvrec_ack(&t->sc.eng, n);
    return 1;
}

/* Runs the engine until it wants I/O that would block. Returns the engine state. */
static unsigned pump(struct tls_transport *t)
{
    br_ssl_engine_context *eng = &t->sc.eng;
    for (;;) {
        unsigned st = br_ssl_engine_current_state(eng);
        if (t->table && (st & (BR_SSL_SENDAPP | BR_SSL_RECVAPP | BR_SSL_CLOSED)))
            release_table(t);                 /* handshake over: the chain is no longer read */
        if ((st & BR_SSL_CLOSED) || t->sock_failed)
            return st;
        int moved = 0;
        if ((st & BR_SSL_SENDREC) && t->sock_wr)
            moved |= send_records(t);
        if ((st & BR_SSL_RECVREC) && (t->ahead_len || (t->sock_rd && !t->peer_eof)))
            moved |= receive_records(t);
        if (!moved)
            return st;
    }
}

void tls_transport_socket_ready(struct tls_transport *t, int readable, int writable)
{
    if (readable)
        t->sock_rd = 1;
    if (writable)
        t->sock_wr = 1;
}

/* The engine cannot move: what read(2) or writev(2) on a plain socket would report. A peer
 * that only half-closed still takes writes, as it would on a plain socket. */
static ssize_t stalled(struct tls_transport *t, unsigned st, int writing)
{
    if (st & BR_SSL_CLOSED) {
        int err = br_ssl_engine_last_error(&t->sc.eng);
        if (err == BR_ERR_OK && !writing)
            return 0;
        errno = err == BR_ERR_OK ? EPIPE : err == BR_ERR_IO ? ECONNRESET : EPROTO;
        return -1;
    }
    if (t->sock_failed) {
        errno = ECONNRESET;
        return -1;
    }
    if (t->peer_eof && !writing)
        return 0;
    errno = EAGAIN;
    return -1;
}

ssize_t tls_transport_read(struct tls_transport *t, void *buf, size_t len)
{
    unsigned st = pump(t);
    if (st & BR_SSL_RECVAPP) {
        size_t avail;
        unsigned char *app = br_ssl_engine_recvapp_buf(&t->sc.eng, &avail);
        size_t n = avail < len ? avail : len;
        memcpy(buf, app, n);
        br_ssl_engine_recvapp_ack(&t->sc.eng, n);
        return (ssize_t)n;
    }
    return stalled(t, st, 0);
}

ssize_t tls_transport_writev(struct tls_transport *t, const struct iovec *iov, int iovcnt)
{
    br_ssl_engine_context *eng = &t->sc.eng;
    size_t taken = 0;
    unsigned st = pump(t);
    /* Copy iovec by iovec; a full buffer becomes a record, which pump() sends. */
    size_t skip = 0;
    for (int i = 0; i < iovcnt; ) {
        if (skip == iov[i].iov_len) {
            i++;
            skip = 0;
            continue;
        }
        if (!(st & BR_SSL_SENDAPP))
            break;
        size_t room;
        unsigned char *app = br_ssl_engine_sendapp_buf(eng, &room);
        size_t n = iov[i].iov_len - skip < room ? iov[i].iov_len - skip : room;
        memcpy(app, (const char *)iov[i].iov_base + skip, n);
        br_ssl_engine_sendapp_ack(eng, n);
        skip += n;
        taken += n;
        st = pump(t);
    }
    if (taken == 0)
        return stalled(t, st, 1);
    br_ssl_engine_flush(eng, 0);          /* what is buffered becomes a record now */
    pump(t);
    return (ssize_t)taken;
}

int tls_transport_flush(struct tls_transport *t)
{
    unsigned st = pump(t);
    if (t->sock_failed)
        return -1;
    if (st & BR_SSL_CLOSED)
        return br_ssl_engine_last_error(&t->sc.eng) == BR_ERR_OK ? 1 : -1;
    return (st & BR_SSL_SENDREC) ? 0 : 1;
}

void tls_transport_shutdown(struct tls_transport *t)
{
    br_ssl_engine_close(&t->sc.eng);
    pump(t);
}

void tls_transport_close(struct tls_transport **free_list, struct tls_transport *t)
{
    unsigned st = br_ssl_engine_current_state(&t->sc.eng);
    if (!(st & BR_SSL_CLOSED) && !t->sock_failed && (st & BR_SSL_SENDAPP))
        tls_transport_shutdown(t);        /* best effort: close_notify if the socket takes it */
    release_table(t);
    t->cert = NULL;
    t->fd = -1;
    t->free_next = *free_list;
    *free_list = t;
}

void tls_transport_free_all(struct tls_transport **free_list)
{
    while (*free_list) {
        struct tls_transport *t = *free_list;
        *free_list = t->free_next;
        free(t);
    }
}
