/*
 * test_manifest_dir.c - reading a folder of manifests: multi-document YAML, Lists, JSON, files to
 * skip, and broken files that are reported (file and line) while the rest still loads.
 */
#include "check.h"
#include "temp_dir.h"
#include "manifest_dir.h"

#include <stdlib.h>
#include <sys/stat.h>
#include <unistd.h>

static char diags[8192];

static void collect(void *ctx, const char *severity, const char *msg)
{
    (void)ctx;
    size_t used = strlen(diags);
    snprintf(diags + used, sizeof diags - used, "%s: %s\n", severity, msg);
}

static void put(const char *dir, const char *name, const char *text)
{
    char path[512];
    snprintf(path, sizeof path, "%s/%s", dir, name);
    FILE *f = fopen(path, "w");
    if (!f) {
        perror(path);
        exit(2);
    }
    fputs(text, f);
    fclose(f);
}

static const char *name_of(const json_t *objects, size_t i)
{
    return json_string_value(json_object_get(json_object_get(json_array_get(objects, i),
                                                              "metadata"), "name"));
}

static const char *field_of(const json_t *objects, size_t i, const char *key)
{
    const json_t *obj = json_array_get(objects, i);
    const json_t *meta = json_object_get(obj, "metadata");
    if (strcmp(key, "namespace") == 0)
        return json_string_value(json_object_get(meta, "namespace"));
    return json_string_value(json_object_get(obj, key));
}

static void make_folder(const char *dir)
{
    put(dir, "10-multi.yaml",
        "apiVersion: v1\nkind: Service\nmetadata: {name: alpha, namespace: shop}\n"
        "spec: {ports: [{port: 80}]}\n"
        "---\n"
        "---\n"
        "apiVersion: networking.k8s.io/v1\nkind: Ingress\nmetadata:\n  name: web\n"
        "spec: {rules: [{host: a.example}]}\n");
    put(dir, "20-list.yml",
        "apiVersion: v1\nkind: List\nitems:\n"
        "- {apiVersion: v1, kind: Service, metadata: {name: beta, namespace: other}}\n"
        "- {apiVersion: networking.k8s.io/v1, kind: IngressClass, metadata: {name: gatehouse}}\n"
        "- apiVersion: v1\n  kind: ServiceList\n  items:\n"
        "  - {apiVersion: v1, kind: Service, metadata: {name: gamma}}\n");
    put(dir, "30-obj.json",
        "{\"apiVersion\": \"v1\", \"kind\": \"Secret\", \"metadata\": {\"name\": \"delta\"}}\n");
    put(dir, "40-bad.yaml",
        "apiVersion: v1\nkind: Service\nmetadata:\n  name: broken\nfoo: bar: baz\n");
    put(dir, "50-bad.json", "{\"apiVersion\": \"v1\",\n \"kind\": }\n");
    put(dir, "60-noname.yaml", "apiVersion: v1\nkind: Service\nmetadata: {namespace: x}\n"
                               "---\n- just\n- a list\n");
    put(dir, "65-list-item.yaml",
        "apiVersion: v1\nkind: ServiceList\nitems:\n"
        "- {apiVersion: v1, kind: Service, metadata: {}}\n");
    put(dir, "70-dup.yaml",
        "apiVersion: v1\nkind: Service\nmetadata: {name: alpha, namespace: shop}\n"
        "spec: {ports: [{port: 8080}]}\n");
    /* None of these may be read. */
    const char *decoy = "apiVersion: v1\nkind: Service\nmetadata: {name: decoy}\n";
    put(dir, ".hidden.yaml", decoy);
    put(dir, ".#lock.yaml", decoy);
    put(dir, "backup.yaml~", decoy);
    put(dir, "notes.txt", decoy);
    char sub[512];
    snprintf(sub, sizeof sub, "%s/sub", dir);
    mkdir(sub, 0755);
    put(sub, "deep.yaml", decoy);
}

static void test_folder(void)
{
    char dir[] = "/tmp/test_manifest_dir.XXXXXX";
    if (!mkdtemp(dir)) {
        perror("mkdtemp");
        exit(2);
    }
    make_folder(dir);
    char err[256] = "";
    diags[0] = '\0';
    json_t *objects = manifest_dir_read(dir, NULL, collect, NULL, err, sizeof err);
    CHECK(objects != NULL);
    CHECK_INT(json_array_size(objects), 6);
    /* File order, documents in order, Lists flattened; the duplicate replaced in place. */
    CHECK_STR(name_of(objects, 0), "alpha");
    CHECK_STR(name_of(objects, 1), "web");
    CHECK_STR(name_of(objects, 2), "beta");
    CHECK_STR(name_of(objects, 3), "gatehouse");
    CHECK_STR(name_of(objects, 4), "gamma");
    CHECK_STR(name_of(objects, 5), "delta");
    CHECK_INT(json_integer_value(json_object_get(json_array_get(json_object_get(
        json_object_get(json_array_get(objects, 0), "spec"), "ports"), 0), "port")), 8080);
    /* Namespaced kinds default to "default"; IngressClass stays cluster-scoped. */
    CHECK_STR(field_of(objects, 0, "namespace"), "shop");
    CHECK_STR(field_of(objects, 1, "namespace"), "default");
    CHECK_STR(field_of(objects, 2, "namespace"), "other");
    CHECK(field_of(objects, 3, "namespace") == NULL);
    CHECK_STR(field_of(objects, 5, "kind"), "Secret");

    char want[512];
    snprintf(want, sizeof want, "error: %s/40-bad.yaml:5:9: mapping values are not allowed", dir);
    CHECK(strstr(diags, want) != NULL);
    snprintf(want, sizeof want, "error: %s/50-bad.json:2:", dir);
    CHECK(strstr(diags, want) != NULL);
    snprintf(want, sizeof want, "%s/60-noname.yaml: document 1: Service has no metadata.name", dir);
    CHECK(strstr(diags, want) != NULL);
    snprintf(want, sizeof want, "%s/60-noname.yaml: document 2: a list is not a Kubernetes object",
             dir);
    CHECK(strstr(diags, want) != NULL);
    snprintf(want, sizeof want, "%s/65-list-item.yaml: item 1: Service has no metadata.name", dir);
    CHECK(strstr(diags, want) != NULL);
    snprintf(want, sizeof want, "Service shop/alpha is also defined in %s/10-multi.yaml", dir);
    CHECK(strstr(diags, want) != NULL);
    /* Reported in file-name order, whatever order the folder lists them in. */
    const char *bad_yaml = strstr(diags, "40-bad.yaml"), *bad_json = strstr(diags, "50-bad.json");
    const char *noname = strstr(diags, "60-noname.yaml"), *item = strstr(diags, "65-list-item");
    CHECK(bad_yaml && bad_json && noname && item);
    CHECK(bad_yaml < bad_json && bad_json < noname && noname < item);
    CHECK(strstr(diags, "decoy") == NULL);
    CHECK(strstr(diags, "broken") == NULL);   /* the file is reported, not its half-object */
    if (check_failed)
        fprintf(stderr, "diagnostics were:\n%s", diags);
    json_decref(objects);

    /* A file that exists but cannot be read fails the whole read (root reads anything). */
    if (geteuid() != 0) {
        char path[512];
        snprintf(path, sizeof path, "%s/30-obj.json", dir);
        chmod(path, 0);
        objects = manifest_dir_read(dir, NULL, collect, NULL, err, sizeof err);
        CHECK(objects == NULL);
        CHECK(strstr(err, "30-obj.json") != NULL);
        json_decref(objects);
        chmod(path, 0644);
    }

    CHECK_INT(temp_dir_remove(dir), 0);
}

static void test_missing_and_empty_folder(void)
{
    char err[256] = "";
    json_t *objects = manifest_dir_read("/nonexistent/gatehouse-manifests", NULL, NULL, NULL, err,
                                        sizeof err);
    CHECK(objects == NULL);
    CHECK(strstr(err, "/nonexistent/gatehouse-manifests") != NULL);
    CHECK(strstr(err, "No such file") != NULL);

    char dir[] = "/tmp/test_manifest_dir_empty.XXXXXX";
    CHECK(mkdtemp(dir) != NULL);
    objects = manifest_dir_read(dir, NULL, NULL, NULL, err, sizeof err);
    CHECK(objects != NULL);                        /* empty is a valid answer, not a failure */
    CHECK_INT(json_array_size(objects), 0);
    json_decref(objects);
    rmdir(dir);
}

static void test_wanted_names(void)
{
    CHECK(manifest_dir_wants_name("web.yaml"));
    CHECK(manifest_dir_wants_name("web.yml"));
    CHECK(manifest_dir_wants_name("web.json"));
    CHECK(!manifest_dir_wants_name("web.yaml~"));
    CHECK(!manifest_dir_wants_name(".web.yaml.swp"));
    CHECK(!manifest_dir_wants_name(".#web.yaml"));
    CHECK(!manifest_dir_wants_name("..data"));
    CHECK(!manifest_dir_wants_name("README.md"));
}

/* A manifest that stops parsing keeps serving what it held; a removed one does not. */
static void test_last_good_content(void)
{
    char dir[] = "/tmp/test_manifest_dir_lkg.XXXXXX";
    CHECK(mkdtemp(dir) != NULL);
    put(dir, "svc.yaml", "apiVersion: v1\nkind: Service\nmetadata: {name: keep}\n");
    put(dir, "other.yaml", "apiVersion: v1\nkind: Service\nmetadata: {name: other}\n");
    json_t *last_good = NULL;
    char err[256] = "";
    json_t *objects = manifest_dir_read(dir, &last_good, collect, NULL, err, sizeof err);
    CHECK_INT(json_array_size(objects), 2);
    json_decref(objects);

    put(dir, "svc.yaml", "apiVersion: v1\nkind: Service\nmetadata: {name: keep\n");
    diags[0] = '\0';
    objects = manifest_dir_read(dir, &last_good, collect, NULL, err, sizeof err);
    CHECK_INT(json_array_size(objects), 2);
    CHECK_STR(name_of(objects, 1), "keep");
    CHECK(strstr(diags, "svc.yaml:") != NULL);                 /* the parse error, with line */
    CHECK(strstr(diags, "keeping the objects it held") != NULL);
    json_decref(objects);

    char path[512];
    snprintf(path, sizeof path, "%s/svc.yaml", dir);
    unlink(path);
    objects = manifest_dir_read(dir, &last_good, collect, NULL, err, sizeof err);
    CHECK_INT(json_array_size(objects), 1);
    CHECK_STR(name_of(objects, 0), "other");
    json_decref(objects);
    json_decref(last_good);
    snprintf(path, sizeof path, "%s/other.yaml", dir);
    unlink(path);
    rmdir(dir);
}

int main(void)
{
    test_last_good_content();
    test_folder();
    test_missing_and_empty_folder();
    test_wanted_names();
    return check_summary("test_manifest_dir");
}
