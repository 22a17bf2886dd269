/*
 * kube_client.h - requests to the Kubernetes API server, all driven by one libcurl multi handle
 * in the calling thread.
 *
 * Every request goes to cfg->url + path with the current credential (kube_credentials: bearer
 * token header, or a client certificate), the CA from the config (CURLOPT_CAINFO_BLOB; curl's
 * default trust when none), CURLOPT_RESOLVE when the server is an IP (see kubeconfig.h),
 * HTTP/1.1 keep-alive, TCP keepalive, Accept: application/json and a User-Agent naming
 * gatehouse-agent and its version. Client certificates: curl's BearSSL backend has no
 * CURLOPT_SSLCERT support, so the chain and key are installed in the BearSSL client context
 * from CURLOPT_SSL_CTX_FUNCTION (with another backend, e.g. the system libcurl the unit tests
 * link, CURLOPT_SSLCERT_BLOB/SSLKEY_BLOB are used). A certificate change never reuses a
 * connection opened with the old one.
 *
 * Callbacks run from kube_client_poll, never from inside libcurl: they may start and cancel
 * requests (their own included). A 401 answer invalidates the credential before on_done runs,
 * so the next request carries a fresh one; the caller decides when to retry.
 */
#ifndef GATEHOUSE_KUBE_CLIENT_H
#define GATEHOUSE_KUBE_CLIENT_H

#include "kubeconfig.h"

#include <stddef.h>

#define KUBE_CLIENT_MAX_BODY (512u << 20)   /* a buffered body larger than this fails the request */

struct kube_client;
struct kube_request;

struct kube_response {
    long status;             /* HTTP status; 0 when none came (connect error, timeout, abort) */
    const char *error;       /* with status 0: what went wrong (curl's words), else NULL */
    const char *body;        /* the whole body, NUL-terminated, when on_data was NULL or the
                              * status is not 2xx (an error Status is never streamed); else "" */
    size_t body_len;
    int retry_after_s;       /* the Retry-After header in seconds; -1 when absent or unparsable */
};

/* Streamed body bytes of a 2xx answer (watches), as they arrive. Return 0 to go on; -1 aborts
 * the request (its on_done then runs with status 0 and error "aborted"). */
typedef int kube_data_fn(void *ctx, const char *data, size_t len);
/* Once per request unless cancelled. r and its strings are valid during the call only. */
typedef void kube_done_fn(void *ctx, const struct kube_response *r);

struct kube_request_spec {
    const char *method;        /* "GET", "POST", "PUT", "PATCH", "DELETE" */
    const char *path;          /* "/apis/networking.k8s.io/v1/ingresses?limit=500", already
                                * escaped by the caller (kube_client_escape) */
    const char *content_type;  /* for a body, else NULL */
    const char *body;          /* copied; may be NULL */
    size_t body_len;
    int timeout_ms;            /* whole request; 0: none (watches) */
    int idle_timeout_s;        /* abort when no byte arrives for this long; 0: none */
    kube_data_fn *on_data;     /* NULL: the body is buffered and handed to on_done */
    kube_done_fn *on_done;
    void *ctx;
};

/* Borrows cfg; the credentials are made from it here. NULL with err when curl cannot be set up. */
struct kube_client *kube_client_new(const struct kube_config *cfg, char *err, size_t errlen);
/* Cancels whatever is still running (no callbacks) and frees everything. Not from a callback. */
void kube_client_free(struct kube_client *c);

/* Starts a request; it runs during kube_client_poll. NULL only when out of memory. */
struct kube_request *kube_client_start(struct kube_client *c, const struct kube_request_spec *spec);
/* Stops a request that has not completed; its on_done is not called. */
void kube_client_cancel(struct kube_client *c, struct kube_request *r);

struct kube_waitfd {
    int fd;
    short events;              /* POLLIN... */
    short revents;             /* out */
};
/* Waits up to timeout_ms (-1: until something happens) for network activity or an extra fd,
 * moves data, and runs the callbacks of requests that progressed or finished. Returns the
 * number of extra fds with revents set, or -1 with err when polling itself failed (or when
 * called from a request callback). */
int kube_client_poll(struct kube_client *c, struct kube_waitfd *extra, unsigned nextra,
                     int timeout_ms, char *err, size_t errlen);

/* Requests started and not yet done or cancelled. */
unsigned kube_client_running(const struct kube_client *c);

/* Percent-escapes a path segment or query value into out (RFC 3986 unreserved kept). Returns
 * out, or NULL when it does not fit. */
char *kube_client_escape(const char *s, char *out, size_t outlen);

/* The reason from a Status body ({"kind":"Status","message":...}), else a short prefix of the
 * body, into out; for error messages. */
void kube_client_status_message(const char *body, size_t len, char *out, size_t outlen);

#endif
