/*
 * dns_client.h - one request, one response, with a deadline: UDP first, TCP when needed.
 *
 * Meant for the agent's DNS thread, so it blocks, but never longer than the caller allows:
 * each UDP try waits timeout_ms, and a try that times out is sent again (udp_tries in all);
 * the TCP path (connect, send, read) has the same per-try budget. A message longer than 512
 * octets goes straight to TCP; a UDP response with the TC bit set is asked again over TCP.
 *
 * A response counts only when it comes from the server's address, carries the request's ID,
 * QR set, the same opcode and the same question (zone for UPDATE; name compared ignoring case);
 * anything else arriving on the UDP socket is dropped and the wait goes on. Errors name the
 * server and say what happened: "192.0.2.53:53: timed out after 2 s (3 tries over UDP)",
 * "127.0.0.1:5353: connection refused", "[2001:db8::53]:53: response is malformed: ...".
 *
 * With a key, the request is signed once (dns_tsig.h) before the first try and the response
 * must verify; a TSIG failure is an error of the exchange. Any rcode, NOERROR or not, is a
 * successful exchange: the caller reads response->rcode (an UPDATE's NXRRSET is an answer).
 */
#ifndef GATEHOUSE_DNS_CLIENT_H
#define GATEHOUSE_DNS_CLIENT_H

#include <netinet/in.h>
#include <stddef.h>
#include <stdint.h>
#include <sys/socket.h>

#include "dns_tsig.h"
#include "dns_wire.h"

#define DNS_CLIENT_DEFAULT_PORT 53
#define DNS_CLIENT_DEFAULT_TIMEOUT_MS 2000
#define DNS_CLIENT_DEFAULT_UDP_TRIES 3

struct dns_server {
    struct sockaddr_storage addr;
    socklen_t addrlen;
    char text[64];                 /* "192.0.2.53:53" / "[2001:db8::53]:53", for messages */
};

/* "IP:port", "[IPv6]:port", or an address alone (port 53). No host names: the DNS client
 * cannot depend on DNS. Returns 0, or -1 with err. */
int dns_server_parse(struct dns_server *server, const char *text, char *err, size_t errlen);

struct dns_client {
    struct dns_server server;
    const struct dns_tsig_key *key;    /* NULL: unsigned requests, unsigned responses accepted */
    int timeout_ms;                    /* per try; <= 0 means DNS_CLIENT_DEFAULT_TIMEOUT_MS */
    int udp_tries;                     /* <= 0 means DNS_CLIENT_DEFAULT_UDP_TRIES */
    uint64_t (*now)(void);             /* seconds for TSIG; NULL: the wall clock (tests skew it) */
};

/* Sends msg[0..len) (a finished query or UPDATE without TSIG; with a key it is signed in place,
 * so cap must leave room for dns_tsig_rr_size) and waits for the response, which lands in
 * resp[0..respcap) (DNS_WIRE_MSG_MAX octets always suffice) and is parsed into *response.
 * Returns 0 when a matching (and, with a key, verified) response arrived, whatever its rcode;
 * -1 with err otherwise. */
int dns_client_exchange(const struct dns_client *client, uint8_t *msg, size_t len, size_t cap,
                        uint8_t *resp, size_t respcap, struct dns_message *response,
                        char *err, size_t errlen);

/* A fresh random message ID (getrandom; never the same twice in a row). */
uint16_t dns_client_new_id(void);

#endif
