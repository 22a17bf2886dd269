/*
 * kubeconfig.h - where the API server is and how the agent proves who it is.
 *
 * Two origins, one result (struct kube_config):
 *  - a kubeconfig file (parsed with libyaml through lib/yaml_json): clusters, users, contexts,
 *    current-context; server, certificate-authority(-data), insecure-skip-tls-verify,
 *    tls-server-name; client-certificate(-data) + client-key(-data), token, tokenFile, exec
 *    (client.authentication.k8s.io/v1 and v1beta1). Relative file paths are relative to the
 *    kubeconfig's folder, as kubectl reads them. Files named by it are read at load time, except
 *    the token file, which kube_credentials re-reads.
 *  - in-cluster: KUBERNETES_SERVICE_HOST/_PORT and the service-account folder's token (as a
 *    token file), ca.crt and namespace.
 *
 * curl over BearSSL cannot verify a certificate for an IP address, so when the server's host is
 * an IP literal the agent connects to it under a DNS name from the certificate: tls-server-name
 * when given, else "kubernetes.default.svc" (in every API server certificate); `resolve` then
 * carries the "name:port:ip" mapping for CURLOPT_RESOLVE.
 *
 * Every error names the file and what is wrong ("kubeconfig /x: context \"prod\" names user
 * \"admin\", which is not in users"). Nothing here logs, and nothing logs secrets.
 */
#ifndef GATEHOUSE_KUBECONFIG_H
#define GATEHOUSE_KUBECONFIG_H

#include <stddef.h>

#define KUBE_SERVICE_ACCOUNT_DIR "/var/run/secrets/kubernetes.io/serviceaccount"
#define KUBE_IP_SERVER_NAME "kubernetes.default.svc"

struct kube_exec_plugin {
    char *api_version;     /* "client.authentication.k8s.io/v1" or ".../v1beta1" */
    char **argv;           /* command then args, NULL-terminated; the command is looked up in PATH */
    char **env;            /* extra "NAME=value" entries, NULL-terminated (may be empty) */
};

struct kube_config {
    char *url;             /* scheme://host:port[/prefix] to send requests to, no trailing '/'.
                            * With an IP server, host is the certificate name (see above). */
    char *resolve;         /* "name:port:ip" for CURLOPT_RESOLVE, or NULL */
    char *server;          /* the server as configured, for messages */
    char *ca_pem;          /* CA bundle (PEM bytes), or NULL: curl's default trust */
    size_t ca_len;
    int insecure;          /* insecure-skip-tls-verify: true */
    char *client_cert_pem; /* client certificate chain + key (PEM), or NULL */
    size_t client_cert_len;
    char *client_key_pem;
    size_t client_key_len;
    char *token;           /* a static bearer token, or NULL */
    char *token_file;      /* a file holding the bearer token (re-read), or NULL */
    struct kube_exec_plugin *exec;   /* or NULL */
    char *ns;              /* the context's namespace, or the service account's; NULL if none */
    char *origin;          /* "kubeconfig FILE (context NAME)" or "in-cluster", for logs */
};

/* context: NULL for current-context. Returns 0, or -1 with err (*out then needs no free). */
int kubeconfig_load(const char *path, const char *context, struct kube_config *out, char *err,
                    size_t errlen);

/* sa_dir: KUBE_SERVICE_ACCOUNT_DIR, or a test folder. Returns 0, or -1 with err (e.g. "not in a
 * cluster: KUBERNETES_SERVICE_HOST is not set, and no kubeconfig was given"). */
int kube_incluster_load(const char *sa_dir, struct kube_config *out, char *err, size_t errlen);

/* Frees every field (wiping key and token bytes first). Safe on a zeroed struct. */
void kube_config_free(struct kube_config *c);


/* free() for buffers that held secrets (tokens, keys, Secret bodies): zeroed first. NULL is
 * fine. The _str form wipes up to the NUL. */
void kube_wipe_free(void *p, size_t len);
void kube_wipe_free_str(char *p);

#endif
