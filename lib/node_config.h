/*
 * node_config.h - the node config file (/etc/gatehouse/config.yaml), shared by both programs.
 *
 * Keys are camelCase like Kubernetes'. Unknown keys are ignored with a warning (sections grow
 * over time); wrong types are errors. Command-line flags override what is read here: callers
 * load the file first, then apply flags over the struct.
 */
#ifndef GATEHOUSE_NODE_CONFIG_H
#define GATEHOUSE_NODE_CONFIG_H

#include <stddef.h>

#define NODE_CONFIG_DEFAULT_PATH "/etc/gatehouse/config.yaml"

struct node_config {
    /* node: */
    char node_name[256];
    char node_address[64];
    /* proxy: */
    char proxy_http[128];        /* "ADDR:PORT", "" = not set */
    char proxy_https[128];
    char proxy_admin[128];       /* default "127.0.0.1:9901" */
    char proxy_routes[4096];     /* default "/var/lib/gatehouse/routes.yaml" */
    int proxy_workers;           /* 0 = one per CPU */
    int proxy_access_log;        /* 1 = JSON access log on stdout (default) */
    long long proxy_max_header_bytes;       /* default 16384 -> 431 */
    long long proxy_max_body_bytes;         /* default 1 MiB -> 413; 0 = unlimited */
    int proxy_client_header_timeout_ms;     /* default 60000 -> 408 */
    int proxy_client_idle_timeout_ms;       /* keep-alive idle, default 75000 */
    int proxy_upstream_connect_timeout_ms;  /* default 5000 -> 502 */
    int proxy_upstream_read_timeout_ms;     /* default 60000 -> 504 */
    int proxy_upstream_send_timeout_ms;     /* default 60000 */
    int proxy_endpoint_down_ms;             /* back-off after a connect failure, default 10000 */
    int proxy_drain_timeout_ms;             /* SIGTERM drain, default 10000 */
    char proxy_user[64];                    /* drop privileges to this user when started as root */
    char proxy_default_cert[4096];          /* PEM chain for names without a tls entry; "" = */
    char proxy_default_key[4096];           /*   a self-signed certificate made at start */
    int proxy_tls_session_cache;            /* TLS sessions kept for resumption, default 10000; 0 = off */
    int proxy_hsts_seconds;                 /* Strict-Transport-Security max-age, 0 = off (default) */
    /* kubernetes: */
    char kube_kubeconfig[4096];
    char kube_manifests[4096];
    char kube_namespace[256];               /* "" = all namespaces */
    char kube_context[256];                 /* kubeconfig context, "" = current-context */
    char kube_lease_namespace[256];         /* status Leases; "" = the kubeconfig's or service
                                             * account's namespace, else "default" */
    int kube_watch_idle_timeout_ms;         /* a silent watch is resumed after this, default 90 s */
    int kube_lease_duration_ms;             /* status leader election, client-go's 15 s, */
    int kube_renew_deadline_ms;             /*   10 s */
    int kube_retry_period_ms;               /*   and 2 s */
    /* ingress: */
    char ingress_class_name[256];           /* default "gatehouse" */
    char ingress_controller[256];           /* default "gatehouse.dev/ingress-controller" */
    int ingress_publish_status;             /* default 1 */
    int ingress_watch_without_class;        /* serve class-less Ingresses even without a default class */
    /* agent: */
    char agent_state_dir[4096];             /* default "/var/lib/gatehouse" */
    /* upgrade: (gatehouse-agent upgrade / boot-check; docs/upgrades.md) */
    char upgrade_image[512];                /* followed when set: REGISTRY/REPO[:TAG][@DIGEST] */
    char upgrade_trusted_keys[4096];        /* a P-256 public key PEM file, or a folder of them
                                             * (*.pem, *.pub); default /etc/gatehouse/trusted-keys */
    int upgrade_plain_http;                 /* talk http:// to the registry (default 0) */
    char upgrade_ca_file[4096];             /* CA bundle for the registry, "" = the system's */
    char upgrade_credentials_file[4096];    /* "username:password" (mode 0600), "" = anonymous */
    int upgrade_tries;                      /* boots a new image gets to become healthy, default 3 */
    int upgrade_health_timeout_ms;          /* a trial boot not serving by then reboots, 180 s */
    int upgrade_check_interval_ms;          /* how often upgrade.image is looked up, 5 min */
    char upgrade_esp[4096];                 /* where the EFI system partition is mounted, /boot/efi */
    int upgrade_reboot;                     /* reboot into an image once installed (default 1) */
};

/* Fills every field with its default. */
void node_config_defaults(struct node_config *cfg);

/* Reads the file over the defaults already in *cfg. Returns 0 on success. A missing file is not
 * an error when missing_ok is set (returns 0, cfg unchanged). On error returns -1 and writes a
 * message naming the file, line and key into err. */
int node_config_load(struct node_config *cfg, const char *path, int missing_ok,
                     char *err, size_t errlen);

#endif
