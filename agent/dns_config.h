/*
 * dns_config.h - the node config's `dns:` list: where the agent publishes its names.
 *
 * lib/node_config skips the `dns` section; it is read here from the same file. Each entry is one
 * sink:
 *
 *   dns:
 *     - type: rfc2136            # RFC 2136 UPDATE signed with TSIG
 *       server: "192.0.2.53:53"  # IP:PORT or [IPv6]:PORT (port 53 when left out)
 *       zone: edge.example.      # names go to the longest zone containing them
 *       owner: edge-1            # default: node.name; recorded in the ownership TXT
 *       ttl: 60                  # seconds or a duration; default 60
 *       wildcards: true          # publish "*.foo" hosts as wildcard records; default true
 *       resync: 5m               # full repair this often; default 5m
 *       timeout: 3s              # per exchange with the server; default 3s
 *       tsig: {name: gatehouse, algorithm: hmac-sha256, secret: "BASE64"}
 *     - type: hosts              # a hosts-format file, replaced atomically
 *       path: /run/gatehouse/hosts
 *       resync: 5m               # the file is rewritten if someone changed it
 *
 * tsig.algorithm is hmac-sha256 (the default), hmac-sha512 or hmac-sha1. The secret is held
 * decoded, in memory only; nothing here or downstream logs it. Unknown keys are warned about,
 * wrong types and bad values are errors naming the file and the entry ("dns[0].zone: ...").
 */
#ifndef GATEHOUSE_DNS_CONFIG_H
#define GATEHOUSE_DNS_CONFIG_H

#include "dns_client.h"
#include "dns_tsig.h"

#include <stddef.h>

#define DNS_CONFIG_DEFAULT_TTL 60
#define DNS_CONFIG_DEFAULT_RESYNC_MS (5 * 60 * 1000)
#define DNS_CONFIG_DEFAULT_TIMEOUT_MS 3000

enum dns_sink_type { DNS_SINK_RFC2136, DNS_SINK_HOSTS };

struct dns_sink_config {
    enum dns_sink_type type;
    char label[400];              /* for messages: "rfc2136 edge.example. at 192.0.2.53:53" */
    unsigned ttl;
    int wildcards;
    int resync_ms;
    /* rfc2136 */
    struct dns_server server;
    char zone[256];               /* lower case, with the trailing dot */
    char owner[64];               /* [A-Za-z0-9._-]+ */
    int timeout_ms;
    struct dns_tsig_key key;
    /* hosts */
    char path[4096];
};

struct dns_config {
    struct dns_sink_config *sinks;
    size_t count;
};

/* Reads the `dns` list of the node config file at path. An absent list gives no sinks. A
 * missing file is not an error when missing_ok. default_owner (node.name, may be "") stands in
 * for an rfc2136 entry's missing owner. Returns 0, or -1 with err. */
int dns_config_load(struct dns_config *cfg, const char *path, int missing_ok,
                    const char *default_owner, char *err, size_t errlen);

/* Wipes the secrets and frees. */
void dns_config_free(struct dns_config *cfg);

#endif
