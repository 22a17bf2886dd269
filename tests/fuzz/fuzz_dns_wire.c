/*
 * fuzz_dns_wire.c - libFuzzer target for the DNS message parser and the name reader.
 *
 * The input is a DNS message as a server (or anyone who can reach our UDP port) might send it.
 * Whatever dns_parse accepts must then be walkable to exactly its counts, and every name and
 * TXT value in it must convert to text within the documented bounds. The same bytes, read as a
 * text name, must either be refused or survive a round trip through the wire form.
 *
 * Built with agent/dns_wire.c (see the Makefile's fuzz rules); seeds in seeds/fuzz_dns_wire/.
 */
#include "dns_wire.h"

#include <stdlib.h>

static void check_text(const struct dns_name *n)
{
    char text[4 * DNS_WIRE_NAME_MAX + 1];
    if (dns_name_to_text(n, text, sizeof text) < 0)
        abort();                               /* 4 octets per octet always fit */
}

static void walk(const struct dns_message *m)
{
    unsigned seen = 0;
    for (int s = DNS_SECTION_ANSWER; s <= DNS_SECTION_ADDITIONAL; s++) {
        struct dns_rr_iter it;
        struct dns_rr rr;
        dns_rr_iter_init(&it, m, (enum dns_section)s);
        while (dns_rr_iter_next(&it, &rr)) {
            seen++;
            check_text(&rr.name);
            if (rr.type == DNS_TYPE_SOA && rr.rclass == DNS_CLASS_IN && rr.rdlen > 0) {
                check_text(&rr.u.soa.mname);
                check_text(&rr.u.soa.rname);
            }
            char txt[DNS_WIRE_MSG_MAX + 1];
            if (rr.type == DNS_TYPE_TXT)
                (void)dns_rr_txt(&rr, txt, sizeof txt);
        }
    }
    if (seen != (unsigned)m->count[1] + m->count[2] + m->count[3])
        abort();
    if (m->count[0] > 0)
        check_text(&m->qname);
}

static void name_round_trip(const uint8_t *data, size_t size)
{
    char text[300];
    if (size >= sizeof text)
        return;
    memcpy(text, data, size);
    text[size] = '\0';
    struct dns_name n, again;
    char err[200], back[DNS_WIRE_NAME_TEXT_MAX + 1];
    if (dns_name_from_text(&n, text, err, sizeof err) < 0)
        return;
    if (dns_name_to_text(&n, back, sizeof back) < 0 ||
        dns_name_from_text(&again, back, err, sizeof err) < 0 || !dns_name_equal(&n, &again))
        abort();
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    struct dns_message m;
    char err[256];
    if (dns_parse(&m, data, size, err, sizeof err) == 0)
        walk(&m);
    name_round_trip(data, size);
    return 0;
}
