/*
 * fuzz_watch_stream.c - libFuzzer target for what a watch stream from the API server may carry.
 *
 * The input is the body of a watch response, arriving in pieces. The line splitter must yield
 * the same events however the bytes are cut (here: all at once, and in two pieces at a point
 * the input picks), and every event, whatever its shape, goes through the readers the agent
 * applies to objects it was sent: the metadata reader, the status comparison (as an Ingress) and
 * the live-address collection (as a LeaseList), which must return sorted, unique strings and a
 * patch body that is JSON.
 *
 * Built with the agent's API sources and the system libcurl (see the Makefile's fuzz rules).
 */
#include "k8s_object.h"
#include "kube_status.h"
#include "kube_watch.h"

#include <stdlib.h>
#include <string.h>

struct events {
    json_t *seen;   /* one compact dump per event ("" for a line that is not JSON) */
};

static void collect(void *ctx, json_t *event)
{
    struct events *e = ctx;
    char *text = event ? json_dumps(event, JSON_COMPACT | JSON_SORT_KEYS | JSON_ENCODE_ANY) : NULL;
    json_array_append_new(e->seen, json_string(text ? text : ""));
    free(text);
}

static json_t *split(const char *data, size_t len, size_t cut)
{
    struct events e = { json_array() };
    struct kube_event_splitter s = { 0 };
    kube_event_split(&s, data, cut, collect, &e);
    kube_event_split(&s, data + cut, len - cut, collect, &e);
    kube_event_splitter_free(&s);
    return e.seen;
}

static int every_lease_live(void *ctx, const json_t *lease)
{
    return 1;
}

static void check_addresses(const json_t *addresses)
{
    if (!json_is_array(addresses))
        abort();
    for (size_t i = 0; i < json_array_size(addresses); i++) {
        const char *a = json_string_value(json_array_get(addresses, i));
        const char *prev = i ? json_string_value(json_array_get(addresses, i - 1)) : NULL;
        if (!a || (prev && strcmp(prev, a) >= 0))
            abort();                           /* strings, sorted, unique */
    }
    char *patch = kube_status_patch_body(addresses);
    json_t *parsed = patch ? json_loads(patch, 0, NULL) : NULL;
    if (!parsed)
        abort();
    json_decref(parsed);
    free(patch);
}

static void read_event(const char *line)
{
    json_t *event = line[0] ? json_loads(line, JSON_DECODE_ANY, NULL) : NULL;
    const json_t *object = json_object_get(event, "object");
    struct k8s_meta meta;
    char err[256];
    k8s_meta_read(object, &meta, err, sizeof err);
    json_t *addresses = kube_status_live_addresses(object, every_lease_live, NULL);
    if (addresses) {
        check_addresses(addresses);
        kube_status_matches(object, addresses);
        json_decref(addresses);
    }
    json_decref(event);
}

int LLVMFuzzerTestOneInput(const unsigned char *data, size_t len)
{
    const char *text = (const char *)data;
    json_t *whole = split(text, len, len);
    json_t *pieces = split(text, len, len ? data[0] % (len + 1) : 0);
    if (!json_equal(whole, pieces))
        abort();                               /* the cut must not change the events */
    for (size_t i = 0; i < json_array_size(whole); i++)
        read_event(json_string_value(json_array_get(whole, i)));
    json_decref(whole);
    json_decref(pieces);
    return 0;
}
