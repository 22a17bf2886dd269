/*
 * dns_rfc2136.c - one zone kept in sync by RFC 2136 UPDATEs (see dns_rfc2136.h for the ownership
 * scheme).
 *
 * A reconcile walks the names in chunks: observe (query A, AAAA, TXT), plan (what this owner
 * must add or delete, and the prerequisites that pin what was observed), send (the chunk's plans
 * packed into UPDATE messages). A message refused by a prerequisite means someone changed a
 * name in between; its names are then settled one by one: observe again, plan again, send.
 */
#include "dns_rfc2136.h"

#include "dns_client.h"
#include "dns_wire.h"
#include "log.h"

#include <arpa/inet.h>
#include <errno.h>
#include <fcntl.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <unistd.h>

#define CHUNK_NAMES 400
#define OBSERVED_ADDRS_MAX 32
#define OBSERVED_TXT_MAX 8
#define TXT_MAX 512
#define RACE_TRIES 3
/* What an UPDATE may fill, leaving room for the TSIG RR (key name + algorithm + MAC < 400). */
#define MESSAGE_BUDGET (DNS_WIRE_MSG_MAX - 1024)
#define RR_FIXED 10   /* type, class, TTL, rdlength */

struct observed_txt {
    uint8_t rdata[TXT_MAX];
    uint16_t rdlen;
    char text[TXT_MAX];
    int heritage;       /* starts with DNS_RFC2136_HERITAGE */
    int mine;           /* ... and names our owner */
};

struct observed {
    struct dns_address addrs[OBSERVED_ADDRS_MAX];
    size_t naddrs;
    uint32_t addr_ttl, txt_ttl;
    int has_addr_ttl, has_txt_ttl;
    int cname;
    int overflow;       /* more or larger records than we can pin: left alone */
    struct observed_txt txt[OBSERVED_TXT_MAX];
    size_t ntxt;
    int nxdomain;       /* the server said the name does not exist */
    int heritage;       /* some Gatehouse owner holds the name */
    int mine;
    int others;         /* some other Gatehouse owner holds it too */
};

enum plan_kind { PLAN_NOTHING, PLAN_UPDATE, PLAN_FOREIGN };

struct plan {
    char text[256];                 /* the name, no trailing dot */
    struct dns_name name;
    int desired;
    unsigned ttl;                   /* 0: the sink's */
    struct observed obs;
    enum plan_kind kind;
    struct dns_address add[DNS_ADDRESSES_MAX];
    size_t nadd;
    uint32_t add_ttl, txt_ttl;
    struct dns_address del[OBSERVED_ADDRS_MAX];
    size_t ndel;
    int replace_txt;                /* delete our TXT(s); add the current one when desired */
    size_t wire_size;               /* upper bound of what it adds to a message */
};

struct dns_rfc2136 {
    const struct dns_sink_config *cfg;
    struct dns_client client;
    struct dns_name zone;
    struct dns_address addrs[DNS_ADDRESSES_MAX];
    size_t naddrs;
    char own_txt[TXT_MAX];
    uint8_t own_txt_rdata[TXT_MAX];
    uint16_t own_txt_rdlen;
    char state_path[4200];
    json_t *published;              /* name -> true: names holding our TXT */
    int published_dirty;
    json_t *foreign;                /* names reported as foreign, so each is reported once */
    json_t *synced;                 /* name -> TTL as of the last successful pass, or NULL */
    struct plan *plans;             /* CHUNK_NAMES */
    struct plan wildcard;           /* scratch: the wildcard above a name being observed */
    json_t *no_wildcard;            /* wildcard names found absent during this pass */
    unsigned refused;               /* names the server refused during this pass */
    char first_refused[256];
    uint8_t msg[DNS_WIRE_MSG_MAX];
    uint8_t resp[DNS_WIRE_MSG_MAX];
    /* the reconcile in progress */
    struct dns_rfc2136_stats *stats;
    volatile int *stop;
    char *err;
    size_t errlen;
};

static int fail(struct dns_rfc2136 *z, const char *fmt, ...) __attribute__((format(printf, 2, 3)));

static int fail(struct dns_rfc2136 *z, const char *fmt, ...)
{
    va_list ap;
    va_start(ap, fmt);
    vsnprintf(z->err, z->errlen, fmt, ap);
    va_end(ap);
    return -1;
}

static int stopping(struct dns_rfc2136 *z)
{
    return z->stop && *z->stop;
}

/* ---- ownership TXT ---- */

int dns_rfc2136_ownership_text(const char *owner, const struct dns_address *addrs,
                               size_t naddrs, char *out, size_t outlen)
{
    int n = snprintf(out, outlen, DNS_RFC2136_HERITAGE "owner=%s,addresses=", owner);
    for (size_t i = 0; i < naddrs && n >= 0 && (size_t)n < outlen; i++)
        n += snprintf(out + n, outlen - (size_t)n, "%s%s", i ? ";" : "", addrs[i].text);
    return n >= 0 && (size_t)n < outlen ? 0 : -1;
}

/* The value of field key= in a heritage TXT ("owner", "addresses"), copied to out. */
static int txt_field(const char *text, const char *key, char *out, size_t outlen)
{
    size_t klen = strlen(key);
    const char *p = text;
    while (*p) {
        size_t len = strcspn(p, ",");
        if (len > klen && strncmp(p, key, klen) == 0 && p[klen] == '=') {
            size_t vlen = len - klen - 1;
            if (vlen >= outlen)
                return -1;
            memcpy(out, p + klen + 1, vlen);
            out[vlen] = '\0';
            return 0;
        }
        p += len + (p[len] == ',');
    }
    return -1;
}

/* 1 when the heritage TXT lists addr among its addresses. */
static int txt_lists(const char *text, const struct dns_address *addr)
{
    char list[TXT_MAX], item[64];
    if (txt_field(text, "addresses", list, sizeof list) < 0)
        return 0;
    for (const char *p = list; *p;) {
        size_t len = strcspn(p, ";");
        if (len < sizeof item) {
            memcpy(item, p, len);
            item[len] = '\0';
            unsigned char bytes[16] = { 0 };
            if (inet_pton(addr->family, item, bytes) == 1 && memcmp(bytes, addr->bytes, 16) == 0)
                return 1;
        }
        p += len + (p[len] == ';');
    }
    return 0;
}

static void classify_txt(const struct dns_rfc2136 *z, struct observed_txt *t)
{
    char owner[128];
    t->heritage = strncmp(t->text, DNS_RFC2136_HERITAGE, strlen(DNS_RFC2136_HERITAGE)) == 0;
    t->mine = t->heritage && txt_field(t->text, "owner", owner, sizeof owner) == 0
              && strcmp(owner, z->cfg->owner) == 0;
}

/* ---- observing ---- */

static int address_in(const struct dns_address *list, size_t n, const struct dns_address *a)
{
    for (size_t i = 0; i < n; i++)
        if (list[i].family == a->family && memcmp(list[i].bytes, a->bytes, 16) == 0)
            return 1;
    return 0;
}

static void note_address(struct observed *obs, const struct dns_rr *rr)
{
    if (obs->naddrs == OBSERVED_ADDRS_MAX) {
        obs->overflow = 1;
        return;
    }
    struct dns_address *a = &obs->addrs[obs->naddrs++];
    memset(a, 0, sizeof *a);
    a->family = rr->type == DNS_TYPE_A ? AF_INET : AF_INET6;
    memcpy(a->bytes, rr->type == DNS_TYPE_A ? rr->u.a : rr->u.aaaa, rr->type == DNS_TYPE_A ? 4 : 16);
    inet_ntop(a->family, a->bytes, a->text, sizeof a->text);
    if (!obs->has_addr_ttl || rr->ttl < obs->addr_ttl)
        obs->addr_ttl = rr->ttl;
    obs->has_addr_ttl = 1;
}

static void note_txt(const struct dns_rfc2136 *z, struct observed *obs, const struct dns_rr *rr)
{
    if (obs->ntxt == OBSERVED_TXT_MAX || rr->rdlen > TXT_MAX) {
        obs->overflow = 1;
        return;
    }
    struct observed_txt *t = &obs->txt[obs->ntxt];
    if (dns_rr_txt(rr, t->text, sizeof t->text) < 0) {
        obs->overflow = 1;
        return;
    }
    memcpy(t->rdata, rr->rdata, rr->rdlen);
    t->rdlen = rr->rdlen;
    classify_txt(z, t);
    obs->ntxt++;
    if (!obs->has_txt_ttl || rr->ttl < obs->txt_ttl)
        obs->txt_ttl = rr->ttl;
    obs->has_txt_ttl = 1;
}

static int query(struct dns_rfc2136 *z, struct plan *p, uint16_t type)
{
    struct dns_message m;
    char why[300];
    if (stopping(z))
        return fail(z, "stopping");
    int len = dns_build_query(z->msg, sizeof z->msg, dns_client_new_id(), &p->name, type, 0);
    if (len < 0)
        return fail(z, "cannot build a query for %s", p->text);
    z->stats->queries++;
    if (dns_client_exchange(&z->client, z->msg, (size_t)len, sizeof z->msg, z->resp,
                            sizeof z->resp, &m, why, sizeof why) < 0)
        return fail(z, "query %s %s: %s", p->text, dns_type_name(type), why);
    if (m.rcode != DNS_RCODE_NOERROR && m.rcode != DNS_RCODE_NXDOMAIN)
        return fail(z, "query %s %s: the server answered %s", p->text, dns_type_name(type),
                    dns_rcode_name(m.rcode));
    p->obs.nxdomain |= m.rcode == DNS_RCODE_NXDOMAIN;
    struct dns_rr_iter it;
    struct dns_rr rr;
    dns_rr_iter_init(&it, &m, DNS_SECTION_ANSWER);
    while (dns_rr_iter_next(&it, &rr)) {
        if (rr.rclass != DNS_CLASS_IN || !dns_name_equal(&rr.name, &p->name))
            continue;
        if (rr.type == DNS_TYPE_CNAME)
            p->obs.cname = 1;
        else if (rr.type == type && (type == DNS_TYPE_A || type == DNS_TYPE_AAAA))
            note_address(&p->obs, &rr);
        else if (rr.type == type && type == DNS_TYPE_TXT)
            note_txt(z, &p->obs, &rr);
    }
    return 0;
}

/* A, AAAA and TXT; a name that does not exist has none of them, so NXDOMAIN ends it. */
static int read_name(struct dns_rfc2136 *z, struct plan *p)
{
    memset(&p->obs, 0, sizeof p->obs);
    static const uint16_t types[] = { DNS_TYPE_A, DNS_TYPE_AAAA, DNS_TYPE_TXT };
    for (size_t i = 0; i < sizeof types / sizeof *types && !p->obs.nxdomain; i++)
        if (query(z, p, types[i]) < 0)
            return -1;
    return 0;
}

static int observed_nothing(const struct observed *o)
{
    return !o->naddrs && !o->ntxt && !o->cname && !o->overflow;
}

static int same_records(const struct observed *a, const struct observed *b)
{
    if (a->naddrs != b->naddrs || a->ntxt != b->ntxt || a->cname != b->cname)
        return 0;
    for (size_t i = 0; i < a->naddrs; i++)
        if (!address_in(b->addrs, b->naddrs, &a->addrs[i]))
            return 0;
    for (size_t i = 0; i < a->ntxt; i++) {
        size_t j = 0;
        while (j < b->ntxt && strcmp(a->txt[i].text, b->txt[j].text))
            j++;
        if (j == b->ntxt)
            return 0;
    }
    return 1;
}

/* 1 when the name owns no record itself, 0 when it does: an UPDATE whose only content is the
 * prerequisite "name is in use", which the server checks on the zone's own data, where a
 * wildcard stands for nothing but itself. It changes nothing either way. */
static int name_unused(struct dns_rfc2136 *z, const struct plan *p)
{
    struct dns_update u;
    struct dns_message m;
    char why[300];
    dns_update_begin(&u, z->msg, sizeof z->msg - dns_tsig_rr_size(&z->cfg->key),
                     dns_client_new_id(), &z->zone);
    dns_update_require_name(&u, &p->name);
    int len = dns_update_finish(&u, why, sizeof why);
    if (len < 0)
        return fail(z, "cannot build the UPDATE: %s", why);
    z->stats->queries++;
    if (dns_client_exchange(&z->client, z->msg, (size_t)len, sizeof z->msg, z->resp,
                            sizeof z->resp, &m, why, sizeof why) < 0)
        return fail(z, "checking whether %s exists: %s", p->text, why);
    if (m.rcode != DNS_RCODE_NOERROR && m.rcode != DNS_RCODE_NXDOMAIN)
        return fail(z, "checking whether %s exists: the server answered %s", p->text,
                    dns_rcode_name(m.rcode));
    return m.rcode == DNS_RCODE_NXDOMAIN;
}

/* A query for a name that does not exist is answered from a wildcard above it (RFC 4592) with
 * the wildcard's records under the queried name - but prerequisites and updates see only what
 * the name owns. So when the name's records equal those of the nearest wildcard above it, the
 * server is asked whether the name owns anything. Returns 1 (synthesized), 0, or -1. */
static int synthesized(struct dns_rfc2136 *z, const struct plan *p)
{
    struct plan *w = &z->wildcard;
    for (const char *parent = strchr(p->text, '.'); parent; parent = strchr(parent + 1, '.')) {
        if (snprintf(w->text, sizeof w->text, "*%s", parent) >= (int)sizeof w->text
            || !dns_text_name_in_zone(w->text, z->cfg->zone)
            || dns_name_from_text(&w->name, w->text, NULL, 0) < 0)
            return 0;
        if (json_object_get(z->no_wildcard, w->text))
            continue;
        if (read_name(z, w) < 0)
            return -1;
        if (w->obs.nxdomain) {   /* no wildcard here (remembered for this pass); maybe above */
            json_object_set_new(z->no_wildcard, w->text, json_true());
            continue;
        }
        return same_records(&p->obs, &w->obs) ? name_unused(z, p) : 0;
    }
    return 0;
}

static int observe(struct dns_rfc2136 *z, struct plan *p)
{
    if (read_name(z, p) < 0)
        return -1;
    if (p->text[0] != '*' && !observed_nothing(&p->obs)) {
        int unused = synthesized(z, p);
        if (unused < 0)
            return -1;
        if (unused)
            memset(&p->obs, 0, sizeof p->obs);
    }
    for (size_t i = 0; i < p->obs.ntxt; i++) {
        p->obs.heritage |= p->obs.txt[i].heritage;
        p->obs.mine |= p->obs.txt[i].mine;
        p->obs.others |= p->obs.txt[i].heritage && !p->obs.txt[i].mine;
    }
    return 0;
}

/* ---- planning ---- */

static int claimed_by_others(const struct observed *obs, const struct dns_address *a)
{
    for (size_t i = 0; i < obs->ntxt; i++)
        if (obs->txt[i].heritage && !obs->txt[i].mine && txt_lists(obs->txt[i].text, a))
            return 1;
    return 0;
}

/* Addresses our TXT(s) list that we no longer publish (all of them when keep is 0). */
static void plan_deletions(const struct dns_rfc2136 *z, struct plan *p, int keep_current)
{
    const struct observed *obs = &p->obs;
    for (size_t i = 0; i < obs->naddrs; i++) {
        const struct dns_address *a = &obs->addrs[i];
        int listed = 0;
        for (size_t t = 0; t < obs->ntxt; t++)
            listed |= obs->txt[t].mine && txt_lists(obs->txt[t].text, a);
        if (!listed || claimed_by_others(obs, a))
            continue;
        if (keep_current && address_in(z->addrs, z->naddrs, a))
            continue;
        p->del[p->ndel++] = *a;
    }
}

static int own_txt_current(const struct dns_rfc2136 *z, const struct plan *p)
{
    size_t mine = 0, current = 0;
    for (size_t t = 0; t < p->obs.ntxt; t++) {
        mine += p->obs.txt[t].mine;
        current += p->obs.txt[t].mine && strcmp(p->obs.txt[t].text, z->own_txt) == 0;
    }
    return mine == 1 && current == 1 && p->obs.txt_ttl == p->txt_ttl;
}

static void plan_publish(struct dns_rfc2136 *z, struct plan *p)
{
    const struct observed *obs = &p->obs;
    uint32_t ttl = p->ttl ? p->ttl : z->cfg->ttl;
    /* one RRset, one TTL: while others share the name, theirs stays */
    p->add_ttl = obs->others && obs->has_addr_ttl ? obs->addr_ttl : ttl;
    p->txt_ttl = obs->others && obs->has_txt_ttl ? obs->txt_ttl : ttl;
    for (size_t i = 0; i < z->naddrs; i++)
        if (!address_in(obs->addrs, obs->naddrs, &z->addrs[i])
            || (obs->has_addr_ttl && obs->addr_ttl != p->add_ttl))
            p->add[p->nadd++] = z->addrs[i];
    plan_deletions(z, p, 1);
    p->replace_txt = !own_txt_current(z, p);
}

static size_t plan_size(const struct dns_rfc2136 *z, const struct plan *p)
{
    size_t rr = p->name.len + RR_FIXED;
    size_t size = 0;
    for (size_t t = 0; t < p->obs.ntxt; t++)
        size += rr + p->obs.txt[t].rdlen * 2;           /* prerequisite, maybe a delete */
    size += 4 * rr;                                     /* "no RRset" prerequisites */
    size += (p->nadd + p->ndel) * (rr + 16);
    size += rr + z->own_txt_rdlen;
    return size;
}

static void plan(struct dns_rfc2136 *z, struct plan *p)
{
    const struct observed *obs = &p->obs;
    p->kind = PLAN_NOTHING;
    p->nadd = p->ndel = 0;
    p->replace_txt = 0;
    if (p->desired) {
        if (obs->overflow || obs->cname || (!obs->heritage && obs->naddrs)) {
            p->kind = PLAN_FOREIGN;
            return;
        }
        plan_publish(z, p);
    } else {
        if (!obs->mine || obs->overflow)
            return;
        plan_deletions(z, p, 0);
        p->replace_txt = 1;
    }
    if (p->nadd || p->ndel || p->replace_txt)
        p->kind = PLAN_UPDATE;
    p->wire_size = plan_size(z, p);
}

/* ---- sending ---- */

static const uint8_t *address_rdata(const struct dns_address *a, uint16_t *type, uint16_t *len)
{
    *type = a->family == AF_INET ? DNS_TYPE_A : DNS_TYPE_AAAA;
    *len = a->family == AF_INET ? 4 : 16;
    return a->bytes;
}

static void write_prerequisites(struct dns_update *u, const struct plan *p)
{
    const struct observed *obs = &p->obs;
    if (obs->ntxt == 0)
        dns_update_require_no_rrset(u, &p->name, DNS_TYPE_TXT);
    for (size_t t = 0; t < obs->ntxt; t++)
        dns_update_require_rr(u, &p->name, DNS_TYPE_TXT, obs->txt[t].rdata, obs->txt[t].rdlen);
    if (!obs->heritage) {
        dns_update_require_no_rrset(u, &p->name, DNS_TYPE_A);
        dns_update_require_no_rrset(u, &p->name, DNS_TYPE_AAAA);
        dns_update_require_no_rrset(u, &p->name, DNS_TYPE_CNAME);
    }
}

static void write_updates(struct dns_rfc2136 *z, struct dns_update *u, const struct plan *p)
{
    uint16_t type, len;
    if (p->replace_txt)
        for (size_t t = 0; t < p->obs.ntxt; t++)
            if (p->obs.txt[t].mine)
                dns_update_delete_rr(u, &p->name, DNS_TYPE_TXT, p->obs.txt[t].rdata,
                                     p->obs.txt[t].rdlen);
    for (size_t i = 0; i < p->ndel; i++) {
        const uint8_t *rdata = address_rdata(&p->del[i], &type, &len);
        dns_update_delete_rr(u, &p->name, type, rdata, len);
    }
    for (size_t i = 0; i < p->nadd; i++) {
        const uint8_t *rdata = address_rdata(&p->add[i], &type, &len);
        dns_update_add(u, &p->name, type, p->add_ttl, rdata, len);
    }
    if (p->replace_txt && p->desired)
        dns_update_add(u, &p->name, DNS_TYPE_TXT, p->txt_ttl, z->own_txt_rdata,
                       z->own_txt_rdlen);
}

static void remember(struct dns_rfc2136 *z, const char *name, int published)
{
    int known = json_object_get(z->published, name) != NULL;
    if (published && !known)
        json_object_set_new(z->published, name, json_true());
    else if (!published && known)
        json_object_del(z->published, name);
    else
        return;
    z->published_dirty = 1;
}

enum send_result { SEND_OK, SEND_RACE, SEND_REFUSED, SEND_FAILED };

static enum send_result send_update(struct dns_rfc2136 *z, struct plan **batch, size_t n)
{
    struct dns_update u;
    struct dns_message m;
    char why[300];
    if (stopping(z))
        return fail(z, "stopping"), SEND_FAILED;
    dns_update_begin(&u, z->msg, sizeof z->msg - dns_tsig_rr_size(&z->cfg->key),
                     dns_client_new_id(), &z->zone);
    for (size_t i = 0; i < n; i++)
        write_prerequisites(&u, batch[i]);
    for (size_t i = 0; i < n; i++)
        write_updates(z, &u, batch[i]);
    int len = dns_update_finish(&u, why, sizeof why);
    if (len < 0)
        return fail(z, "cannot build the UPDATE: %s", why), SEND_FAILED;
    if (dns_client_exchange(&z->client, z->msg, (size_t)len, sizeof z->msg, z->resp,
                            sizeof z->resp, &m, why, sizeof why) < 0)
        return fail(z, "UPDATE of %zu names: %s", n, why), SEND_FAILED;
    if (m.rcode == DNS_RCODE_YXDOMAIN || m.rcode == DNS_RCODE_YXRRSET
        || m.rcode == DNS_RCODE_NXRRSET) {
        z->stats->conflicts++;
        return SEND_RACE;
    }
    if (m.rcode == DNS_RCODE_REFUSED)
        return SEND_REFUSED;
    if (m.rcode != DNS_RCODE_NOERROR)
        return fail(z, "the server refused the UPDATE (%zu names, first %s): %s", n,
                    batch[0]->text, dns_rcode_name(m.rcode)), SEND_FAILED;
    z->stats->updates++;
    z->stats->changed += (unsigned)n;
    for (size_t i = 0; i < n; i++)
        remember(z, batch[i]->text, batch[i]->desired);
    return SEND_OK;
}

static void report_foreign(struct dns_rfc2136 *z, const struct plan *p)
{
    z->stats->foreign++;
    if (json_object_get(z->foreign, p->text))
        return;
    json_object_set_new(z->foreign, p->text, json_true());
    log_warn("DNS %s: %s has %s that Gatehouse does not own (no \"heritage=gatehouse\" TXT); "
             "left untouched", z->cfg->label, p->text,
             p->obs.cname ? "a CNAME" : p->obs.overflow ? "more records than it can check"
                                                        : "A/AAAA records");
}

/* Settles what the plan's observation left open: nothing to do, foreign, or published. */
static void settle_without_update(struct dns_rfc2136 *z, const struct plan *p)
{
    if (p->kind == PLAN_FOREIGN) {
        report_foreign(z, p);
        return;
    }
    if (json_object_get(z->foreign, p->text)) {
        json_object_del(z->foreign, p->text);
        log_info("DNS %s: %s is no longer held by someone else", z->cfg->label, p->text);
    }
    if (p->kind == PLAN_NOTHING)
        remember(z, p->text, p->desired && p->obs.mine);
}

/* After a lost race: reads the batch's names again and keeps the plans that still need an
 * update. Returns the new count, or -1. */
static long replan_batch(struct dns_rfc2136 *z, struct plan **batch, size_t n)
{
    size_t kept = 0;
    for (size_t i = 0; i < n; i++) {
        if (observe(z, batch[i]) < 0)
            return -1;
        plan(z, batch[i]);
        settle_without_update(z, batch[i]);
        if (batch[i]->kind == PLAN_UPDATE)
            batch[kept++] = batch[i];
    }
    return (long)kept;
}

static int send_batch(struct dns_rfc2136 *z, struct plan **batch, size_t n, int tries_left);

/* REFUSED is a policy answer that may concern only some names (update-policy grants per name):
 * halves are sent until the refused names stand alone, so they do not hold up the others. */
static int isolate_refused(struct dns_rfc2136 *z, struct plan **batch, size_t n)
{
    if (n == 1) {
        if (!z->refused++)
            snprintf(z->first_refused, sizeof z->first_refused, "%s", batch[0]->text);
        return 0;
    }
    size_t half = n / 2;
    if (send_batch(z, batch, half, RACE_TRIES) < 0)
        return -1;
    return send_batch(z, batch + half, n - half, RACE_TRIES);
}

/* Sends the batch as one message. When a prerequisite fails (someone changed one of the names
 * since it was read), the names are read again and sent in two halves, so a contested name
 * costs a few messages, not one per name; a single name is tried RACE_TRIES times. */
static int send_batch(struct dns_rfc2136 *z, struct plan **batch, size_t n, int tries_left)
{
    switch (send_update(z, batch, n)) {
    case SEND_OK: return 0;
    case SEND_FAILED: return -1;
    case SEND_REFUSED: return isolate_refused(z, batch, n);
    case SEND_RACE: break;
    }
    long kept = replan_batch(z, batch, n);
    if (kept <= 0)
        return (int)kept;
    if (kept == 1 && tries_left <= 1)
        return fail(z, "%s kept changing while it was being updated (%d tries); trying again "
                    "later", batch[0]->text, RACE_TRIES);
    if (kept == 1)
        return send_batch(z, batch, 1, tries_left - 1);
    size_t half = (size_t)kept / 2;
    if (send_batch(z, batch, half, RACE_TRIES) < 0)
        return -1;
    return send_batch(z, batch + half, (size_t)kept - half, RACE_TRIES);
}

/* Packs the chunk's updates into messages within the budget. */
static int send_chunk(struct dns_rfc2136 *z, size_t n)
{
    struct plan *batch[CHUNK_NAMES];
    size_t count = 0, size = 0;
    for (size_t i = 0; i < n; i++) {
        struct plan *p = &z->plans[i];
        settle_without_update(z, p);
        if (p->kind != PLAN_UPDATE)
            continue;
        if (count && size + p->wire_size > MESSAGE_BUDGET) {
            if (send_batch(z, batch, count, RACE_TRIES) < 0)
                return -1;
            count = size = 0;
        }
        batch[count++] = p;
        size += p->wire_size;
    }
    return count ? send_batch(z, batch, count, RACE_TRIES) : 0;
}

/* ---- the reconcile ---- */

static int prepare_plan(struct dns_rfc2136 *z, struct plan *p, const char *name, int desired,
                        unsigned ttl)
{
    char why[200];
    memset(p, 0, sizeof *p);
    snprintf(p->text, sizeof p->text, "%s", name);
    p->desired = desired;
    p->ttl = ttl;
    if (dns_name_from_text(&p->name, name, why, sizeof why) < 0) {
        log_warn("DNS %s: %s cannot be published: %s", z->cfg->label, name, why);
        return -1;
    }
    return 0;
}

/* The desired names this sink publishes: name -> TTL (0: the sink's). */
static json_t *wanted_names(const struct dns_rfc2136 *z, const struct dns_desired *desired)
{
    json_t *wanted = json_object();
    for (size_t i = 0; i < desired->count; i++) {
        const struct dns_host *h = &desired->names[i];
        if (!z->cfg->wildcards && h->name[0] == '*')
            continue;
        if (dns_text_name_in_zone(h->name, z->cfg->zone))
            json_object_set_new(wanted, h->name, json_integer(h->ttl));
    }
    return wanted;
}

/* The names to look at, name -> TTL, -1 for a name to withdraw. A full pass takes every wanted
 * name; otherwise only those that changed since the last successful pass. Names we published
 * that are no longer wanted are always in. */
static json_t *targets(const struct dns_rfc2136 *z, const json_t *wanted, int full)
{
    json_t *list = json_object();
    const char *name;
    json_t *ttl;
    json_object_foreach((json_t *)wanted, name, ttl) {
        json_t *before = full || !z->synced ? NULL : json_object_get(z->synced, name);
        if (!before || !json_equal(before, ttl))
            json_object_set(list, name, ttl);
    }
    json_object_foreach(z->published, name, ttl)
        if (!json_object_get(wanted, name))
            json_object_set_new(list, name, json_integer(-1));
    return list;
}

static int reconcile_all(struct dns_rfc2136 *z, json_t *list)
{
    const char *name;
    json_t *ttl;
    size_t n = 0;
    json_object_foreach(list, name, ttl) {
        long long t = json_integer_value(ttl);
        if (prepare_plan(z, &z->plans[n], name, t >= 0, t > 0 ? (unsigned)t : 0) < 0)
            continue;
        z->stats->names++;
        if (observe(z, &z->plans[n]) < 0)
            return -1;
        plan(z, &z->plans[n]);
        if (++n == CHUNK_NAMES) {
            if (send_chunk(z, n) < 0)
                return -1;
            n = 0;
        }
    }
    return send_chunk(z, n);
}

/* Forgets foreign reports about names no longer desired. */
static void prune_foreign(struct dns_rfc2136 *z, const json_t *wanted)
{
    const char *name;
    json_t *v;
    void *tmp;
    json_object_foreach_safe(z->foreign, tmp, name, v)
        if (!json_object_get(wanted, name))
            json_object_del(z->foreign, name);
}

static void save_published(struct dns_rfc2136 *z)
{
    if (!z->published_dirty || !z->state_path[0])
        return;
    char tmp[4300];
    snprintf(tmp, sizeof tmp, "%s.tmp", z->state_path);
    if (json_dump_file(z->published, tmp, JSON_SORT_KEYS | JSON_INDENT(1)) < 0
        || rename(tmp, z->state_path) < 0) {
        log_warn("DNS %s: cannot save %s: %s", z->cfg->label, z->state_path, strerror(errno));
        unlink(tmp);
        return;
    }
    z->published_dirty = 0;
}

int dns_rfc2136_reconcile(struct dns_rfc2136 *z, const struct dns_desired *desired, int full,
                          struct dns_rfc2136_stats *stats, volatile int *stop,
                          char *err, size_t errlen)
{
    *stats = (struct dns_rfc2136_stats){ 0 };
    z->stats = stats;
    z->stop = stop;
    z->err = err;
    z->errlen = errlen;
    json_t *wanted = wanted_names(z, desired);
    json_object_clear(z->no_wildcard);
    json_t *list = targets(z, wanted, full);
    z->refused = 0;
    int rc = reconcile_all(z, list);
    if (rc == 0 && z->refused)
        rc = fail(z, "the server answered REFUSED to the UPDATE for %u name%s (%s%s) - does its "
                  "update-policy grant the key these names?", z->refused,
                  z->refused == 1 ? "" : "s", z->first_refused, z->refused == 1 ? "" : ", ...");
    json_decref(list);
    prune_foreign(z, wanted);
    json_decref(z->synced);
    z->synced = rc == 0 ? wanted : NULL;   /* after a failure the next pass is a full one */
    if (rc != 0)
        json_decref(wanted);
    save_published(z);
    return rc;
}

/* ---- life cycle ---- */

static void load_published(struct dns_rfc2136 *z)
{
    json_error_t jerr;
    if (!z->state_path[0] || access(z->state_path, F_OK) < 0)
        return;
    json_t *saved = json_load_file(z->state_path, 0, &jerr);
    const char *name;
    json_t *v;
    if (!json_is_object(saved)) {
        log_warn("DNS %s: ignoring %s: %s", z->cfg->label, z->state_path,
                 saved ? "not a JSON object" : jerr.text);
        json_decref(saved);
        return;
    }
    json_object_foreach(saved, name, v)
        if (dns_text_name_in_zone(name, z->cfg->zone))
            json_object_set_new(z->published, name, json_true());
    json_decref(saved);
}

struct dns_rfc2136 *dns_rfc2136_new(const struct dns_sink_config *cfg,
                                    const struct dns_address *addrs, size_t naddrs,
                                    const char *state_path)
{
    char why[200];
    struct dns_rfc2136 *z = calloc(1, sizeof *z);
    if (!z)
        return NULL;
    z->plans = calloc(CHUNK_NAMES, sizeof *z->plans);
    z->published = json_object();
    z->foreign = json_object();
    z->no_wildcard = json_object();
    if (!z->plans || !z->published || !z->foreign || !z->no_wildcard
        || dns_name_from_text(&z->zone, cfg->zone, why, sizeof why) < 0) {
        dns_rfc2136_free(z);
        return NULL;
    }
    z->cfg = cfg;
    z->client = (struct dns_client){ .server = cfg->server, .key = &cfg->key,
                                     .timeout_ms = cfg->timeout_ms };
    z->naddrs = naddrs < DNS_ADDRESSES_MAX ? naddrs : DNS_ADDRESSES_MAX;
    memcpy(z->addrs, addrs, z->naddrs * sizeof *addrs);
    dns_rfc2136_ownership_text(cfg->owner, z->addrs, z->naddrs, z->own_txt, sizeof z->own_txt);
    int len = dns_rdata_txt(z->own_txt, z->own_txt_rdata, sizeof z->own_txt_rdata);
    z->own_txt_rdlen = len > 0 ? (uint16_t)len : 0;
    snprintf(z->state_path, sizeof z->state_path, "%s", state_path ? state_path : "");
    load_published(z);
    return z;
}

void dns_rfc2136_free(struct dns_rfc2136 *z)
{
    if (!z)
        return;
    json_decref(z->published);
    json_decref(z->foreign);
    json_decref(z->synced);
    json_decref(z->no_wildcard);
    free(z->plans);
    free(z);
}
