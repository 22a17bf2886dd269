/*
 * k8s_object.h - typed access to Kubernetes objects held as json_t, for input we do not trust.
 *
 * Everything read from the cluster or a manifest directory may have any shape. These accessors
 * tell "absent" apart from "present with the wrong type" so callers can ignore the first and
 * report the second, and they never dereference anything they have not checked. JSON null counts
 * as absent, as it does for the API server. Nothing here allocates or reports: callers decide.
 */
#ifndef GATEHOUSE_K8S_OBJECT_H
#define GATEHOUSE_K8S_OBJECT_H

#include <jansson.h>
#include <stddef.h>

enum k8s_field { K8S_ABSENT, K8S_PRESENT, K8S_WRONG_TYPE };

/* parent may be NULL (-> absent) or a non-object (-> wrong type). *out is set only when present. */
enum k8s_field k8s_string(const json_t *parent, const char *key, const char **out);
enum k8s_field k8s_object(const json_t *parent, const char *key, const json_t **out);
enum k8s_field k8s_array(const json_t *parent, const char *key, const json_t **out);
enum k8s_field k8s_integer(const json_t *parent, const char *key, long long *out);
enum k8s_field k8s_boolean(const json_t *parent, const char *key, int *out);

/* "string", "object", ... for messages ("must be a string, got object"). */
const char *k8s_type_name(const json_t *v);

/* The metadata every object carries. Pointers borrow from the object. */
struct k8s_meta {
    const char *kind;
    const char *api_version;
    const char *name;
    const char *ns;              /* NULL when absent: cluster-scoped, or the caller's default */
    const char *created;         /* metadata.creationTimestamp, NULL when absent */
    const json_t *annotations;   /* object whose values are all strings, or NULL */
    const json_t *labels;        /* likewise */
    int deleting;                /* metadata.deletionTimestamp is set */
};

/* Reads and type-checks kind, apiVersion and metadata. Returns 0, or -1 with a reason in err
 * ("metadata.name must be a string, got integer"). Names are not validated here. */
int k8s_meta_read(const json_t *obj, struct k8s_meta *m, char *err, size_t errlen);

/* Values of metadata.annotations / metadata.labels; NULL when absent. */
const char *k8s_annotation(const struct k8s_meta *m, const char *key);
const char *k8s_label(const struct k8s_meta *m, const char *key);

/* An RFC 3339 time as the API server writes it ("2024-05-01T10:00:00Z", optionally with a
 * fraction and a numeric offset), as a point on one total order. */
struct k8s_time {
    long long seconds;           /* since the Unix epoch, UTC */
    long nanos;
};
int k8s_time_parse(const char *s, struct k8s_time *t);   /* 0, or -1 when not RFC 3339 */
int k8s_time_compare(const struct k8s_time *a, const struct k8s_time *b);

#endif
