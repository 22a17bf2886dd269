/*
 * kube_credentials.h - the bearer token or client certificate sent with each API request, kept
 * current.
 *
 * Sources, from struct kube_config: a static token; a token file (re-read when a minute old,
 * and at once after the API server answered 401: projected service-account tokens rotate); an
 * exec credential plugin (run when there is no credential yet, when its expirationTimestamp is
 * less than a minute away, and after a 401). A plugin is run with the kubeconfig's env added,
 * KUBERNETES_EXEC_INFO set (spec.interactive false), stdin from /dev/null and a 30 s limit; its
 * stdout must be an ExecCredential of the same apiVersion whose status holds a token or
 * clientCertificateData + clientKeyData. Its stderr goes to ours.
 *
 * When a refresh fails the last credential is kept (it may still work) and the error returned,
 * so the caller can log it and carry on.
 */
#ifndef GATEHOUSE_KUBE_CREDENTIALS_H
#define GATEHOUSE_KUBE_CREDENTIALS_H

#include "kubeconfig.h"

#include <stddef.h>
#include <stdint.h>

#define KUBE_TOKEN_FILE_MAX_AGE_S 60
#define KUBE_EXEC_TIMEOUT_S 30

struct kube_credentials;

/* Borrows cfg (it must outlive the credentials). NULL only when out of memory. */
struct kube_credentials *kube_credentials_new(const struct kube_config *cfg);
void kube_credentials_free(struct kube_credentials *c);

/* Brings the credential up to date as described above. now: wall clock, seconds since the epoch.
 * Cheap when nothing is due. Returns 0, or -1 with err (the old credential is kept). */
int kube_credentials_refresh(struct kube_credentials *c, int64_t now, char *err, size_t errlen);

/* The API server said 401: the next refresh re-reads the token file / re-runs the plugin. */
void kube_credentials_invalidate(struct kube_credentials *c);

/* The current credential. Token: NULL when none. Client certificate and key: NULL when none
 * (the config's, or the plugin's). Valid until the next refresh. */
const char *kube_credentials_token(const struct kube_credentials *c);
const char *kube_credentials_client_cert(const struct kube_credentials *c, size_t *len);
const char *kube_credentials_client_key(const struct kube_credentials *c, size_t *len);

/* For tests: a plugin run limit other than KUBE_EXEC_TIMEOUT_S. */
void kube_credentials_set_exec_timeout(struct kube_credentials *c, int seconds);

/* Increases whenever the client certificate or key changes (new TLS connections are needed). */
unsigned kube_credentials_cert_generation(const struct kube_credentials *c);

#endif
