/*
 * k8s_object.c - typed access to Kubernetes objects held as json_t (see k8s_object.h).
 */
#include "k8s_object.h"

#include <stdio.h>
#include <string.h>

static const json_t *member(const json_t *parent, const char *key, enum k8s_field *state)
{
    if (!parent) {
        *state = K8S_ABSENT;
        return NULL;
    }
    if (!json_is_object(parent)) {
        *state = K8S_WRONG_TYPE;
        return NULL;
    }
    const json_t *v = json_object_get(parent, key);
    *state = (v && !json_is_null(v)) ? K8S_PRESENT : K8S_ABSENT;
    return *state == K8S_PRESENT ? v : NULL;
}

enum k8s_field k8s_string(const json_t *parent, const char *key, const char **out)
{
    enum k8s_field state;
    const json_t *v = member(parent, key, &state);
    if (state != K8S_PRESENT)
        return state;
    if (!json_is_string(v))
        return K8S_WRONG_TYPE;
    *out = json_string_value(v);
    return K8S_PRESENT;
}

enum k8s_field k8s_object(const json_t *parent, const char *key, const json_t **out)
{
    enum k8s_field state;
    const json_t *v = member(parent, key, &state);
    if (state != K8S_PRESENT)
        return state;
    if (!json_is_object(v))
        return K8S_WRONG_TYPE;
    *out = v;
    return K8S_PRESENT;
}

enum k8s_field k8s_array(const json_t *parent, const char *key, const json_t **out)
{
    enum k8s_field state;
    const json_t *v = member(parent, key, &state);
    if (state != K8S_PRESENT)
        return state;
    if (!json_is_array(v))
        return K8S_WRONG_TYPE;
    *out = v;
    return K8S_PRESENT;
}

enum k8s_field k8s_integer(const json_t *parent, const char *key, long long *out)
{
    enum k8s_field state;
    const json_t *v = member(parent, key, &state);
    if (state != K8S_PRESENT)
        return state;
    if (!json_is_integer(v))
        return K8S_WRONG_TYPE;
    *out = (long long)json_integer_value(v);
    return K8S_PRESENT;
}

enum k8s_field k8s_boolean(const json_t *parent, const char *key, int *out)
{
    enum k8s_field state;
    const json_t *v = member(parent, key, &state);
    if (state != K8S_PRESENT)
        return state;
    if (!json_is_boolean(v))
        return K8S_WRONG_TYPE;
    *out = json_is_true(v);
    return K8S_PRESENT;
}

const char *k8s_type_name(const json_t *v)
{
    switch (v ? json_typeof(v) : JSON_NULL) {
    case JSON_OBJECT:  return "object";
    case JSON_ARRAY:   return "array";
    case JSON_STRING:  return "string";
    case JSON_INTEGER: return "integer";
    case JSON_REAL:    return "number";
    case JSON_TRUE:
    case JSON_FALSE:   return "boolean";
    default:           return "null";
    }
}

static int wrong_type(char *err, size_t errlen, const json_t *parent, const char *field,
                      const char *key, const char *want)
{
    const json_t *v = json_is_object(parent) ? json_object_get(parent, key) : parent;
    if (!v || json_is_null(v))
        snprintf(err, errlen, "%s is missing", field);
    else
        snprintf(err, errlen, "%s must be %s, got %s", field, want, k8s_type_name(v));
    return -1;
}

/* Annotations and labels are maps of strings; a number there would be read as absent and
 * could silently change which class an Ingress belongs to, so the whole map is refused. */
static int read_string_map(const json_t *metadata, const char *key, const json_t **out,
                           char *err, size_t errlen)
{
    *out = NULL;
    enum k8s_field state = k8s_object(metadata, key, out);
    if (state == K8S_WRONG_TYPE) {
        char field[64];
        snprintf(field, sizeof field, "metadata.%s", key);
        return wrong_type(err, errlen, metadata, field, key, "an object");
    }
    if (state == K8S_ABSENT)
        return 0;
    const char *k;
    const json_t *v;
    json_object_foreach((json_t *)*out, k, v) {
        if (!json_is_string(v)) {
            snprintf(err, errlen, "metadata.%s[\"%.100s\"] must be a string, got %s", key, k,
                     k8s_type_name(v));
            return -1;
        }
    }
    return 0;
}

int k8s_meta_read(const json_t *obj, struct k8s_meta *m, char *err, size_t errlen)
{
    memset(m, 0, sizeof *m);
    if (!json_is_object(obj)) {
        snprintf(err, errlen, "expected an object, got %s", k8s_type_name(obj));
        return -1;
    }
    if (k8s_string(obj, "kind", &m->kind) != K8S_PRESENT)
        return wrong_type(err, errlen, obj, "kind", "kind", "a string");
    if (k8s_string(obj, "apiVersion", &m->api_version) != K8S_PRESENT)
        return wrong_type(err, errlen, obj, "apiVersion", "apiVersion", "a string");
    const json_t *metadata = NULL;
    if (k8s_object(obj, "metadata", &metadata) != K8S_PRESENT)
        return wrong_type(err, errlen, obj, "metadata", "metadata", "an object");
    if (k8s_string(metadata, "name", &m->name) != K8S_PRESENT)
        return wrong_type(err, errlen, metadata, "metadata.name", "name", "a string");
    if (k8s_string(metadata, "namespace", &m->ns) == K8S_WRONG_TYPE)
        return wrong_type(err, errlen, metadata, "metadata.namespace", "namespace", "a string");
    if (k8s_string(metadata, "creationTimestamp", &m->created) == K8S_WRONG_TYPE)
        return wrong_type(err, errlen, metadata, "metadata.creationTimestamp",
                          "creationTimestamp", "a string");
    if (read_string_map(metadata, "annotations", &m->annotations, err, errlen) < 0 ||
        read_string_map(metadata, "labels", &m->labels, err, errlen) < 0)
        return -1;
    const json_t *deletion = json_object_get(metadata, "deletionTimestamp");
    m->deleting = deletion && !json_is_null(deletion);
    return 0;
}

const char *k8s_annotation(const struct k8s_meta *m, const char *key)
{
    return m->annotations ? json_string_value(json_object_get(m->annotations, key)) : NULL;
}

const char *k8s_label(const struct k8s_meta *m, const char *key)
{
    return m->labels ? json_string_value(json_object_get(m->labels, key)) : NULL;
}

/* ---- RFC 3339 times ---- */

static int digits(const char **p, int n, int *out)
{
    int v = 0;
    for (int i = 0; i < n; i++, (*p)++) {
        if (**p < '0' || **p > '9')
            return -1;
        v = v * 10 + (**p - '0');
    }
    *out = v;
    return 0;
}

static int expect(const char **p, char c)
{
    if (**p != c)
        return -1;
    (*p)++;
    return 0;
}

/* Days from 1970-01-01 to a proleptic Gregorian date (era arithmetic: 400-year cycles). */
static long long days_from_civil(int year, int month, int day)
{
    long long y = year - (month <= 2);
    long long era = (y >= 0 ? y : y - 399) / 400;
    long long year_of_era = y - era * 400;
    long long day_of_year = (153 * (month + (month > 2 ? -3 : 9)) + 2) / 5 + day - 1;
    long long day_of_era = year_of_era * 365 + year_of_era / 4 - year_of_era / 100 + day_of_year;
    return era * 146097 + day_of_era - 719468;
}

static int parse_fraction(const char **p, long *nanos)
{
    *nanos = 0;
    if (**p != '.')
        return 0;
    (*p)++;
    long scale = 100000000;
    int count = 0;
    for (; **p >= '0' && **p <= '9'; (*p)++, count++) {
        *nanos += (**p - '0') * scale;
        scale /= 10;
    }
    return count ? 0 : -1;
}

static int parse_offset(const char **p, int *offset_seconds)
{
    *offset_seconds = 0;
    if (**p == 'Z' || **p == 'z') {
        (*p)++;
        return 0;
    }
    int sign = **p == '+' ? 1 : **p == '-' ? -1 : 0;
    int hours, minutes;
    if (!sign)
        return -1;
    (*p)++;
    if (digits(p, 2, &hours) < 0 || expect(p, ':') < 0 || digits(p, 2, &minutes) < 0 ||
        hours > 23 || minutes > 59)
        return -1;
    *offset_seconds = sign * (hours * 3600 + minutes * 60);
    return 0;
}

int k8s_time_parse(const char *s, struct k8s_time *t)
{
    int year, month, day, hour, minute, second, offset;
    const char *p = s;
    if (!s || digits(&p, 4, &year) < 0 || expect(&p, '-') < 0 || digits(&p, 2, &month) < 0 ||
        expect(&p, '-') < 0 || digits(&p, 2, &day) < 0 || (*p != 'T' && *p != 't'))
        return -1;
    p++;
    if (digits(&p, 2, &hour) < 0 || expect(&p, ':') < 0 || digits(&p, 2, &minute) < 0 ||
        expect(&p, ':') < 0 || digits(&p, 2, &second) < 0 ||
        parse_fraction(&p, &t->nanos) < 0 || parse_offset(&p, &offset) < 0 || *p)
        return -1;
    if (month < 1 || month > 12 || day < 1 || day > 31 || hour > 23 || minute > 59 || second > 60)
        return -1;
    t->seconds = days_from_civil(year, month, day) * 86400 + hour * 3600 + minute * 60 + second
                 - offset;
    return 0;
}

int k8s_time_compare(const struct k8s_time *a, const struct k8s_time *b)
{
    if (a->seconds != b->seconds)
        return a->seconds < b->seconds ? -1 : 1;
    if (a->nanos != b->nanos)
        return a->nanos < b->nanos ? -1 : 1;
    return 0;
}
