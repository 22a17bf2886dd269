/*
 * fuzz_translate.c - libFuzzer target for everything a manifest folder feeds the agent.
 *
 * The input is a YAML (or JSON) stream, as a file in the manifest folder could hold. It is read
 * with yaml_parse_stream, translated with Ingress semantics, and the routes document that comes
 * out must always be one the proxy accepts (route_table_from_json): whatever a user writes, the
 * agent must never hand the proxy a file it refuses, because a refused file freezes routing.
 */
#include "route_table.h"
#include "translate.h"
#include "log.h"
#include "yaml_json.h"

#include <stdint.h>
#include <stdlib.h>

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    static int quiet;
    if (!quiet) {
        log_init("fuzz_translate", (enum log_level)-1);    /* below LOG_ERROR: nothing */
        quiet = 1;
    }
    struct yaml_error yerr;
    json_t *docs = yaml_parse_stream((const char *)data, size, &yerr);
    if (!docs)
        return 0;
    struct translate_options opt = {
        .controller = "gatehouse.dev/ingress-controller",
        .now = 1800000000,
    };
    json_t *tls_files = NULL;
    json_t *routes = translate_routes(docs, &opt, &tls_files);
    if (!routes)
        abort();                                   /* documented: never NULL */
    char err[512];
    struct route_table *t = route_table_from_json(routes, err, sizeof err);
    if (!t)
        abort();                                   /* the proxy would refuse what we wrote */
    route_table_unref(t);
    json_decref(routes);
    json_decref(tls_files);
    json_decref(docs);
    return 0;
}
