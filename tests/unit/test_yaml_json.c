/*
 * test_yaml_json.c - YAML typing, anchors, errors and the emitter round trip.
 */
#include "check.h"
#include "yaml_json.h"

#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <unistd.h>

static json_t *parse1(const char *text)
{
    struct yaml_error err;
    json_t *docs = yaml_parse_stream(text, strlen(text), &err);
    if (!docs) {
        fprintf(stderr, "parse failed: %s (%zu:%zu)\n", err.reason, err.line, err.column);
        return NULL;
    }
    json_t *doc = json_incref(json_array_get(docs, 0));
    json_decref(docs);
    return doc;
}

/* Parses "v: TEXT" and returns the value's type and a printed form. */
static json_type type_of_value(const char *text)
{
    char buf[256];
    snprintf(buf, sizeof buf, "v: %s\n", text);
    json_t *doc = parse1(buf);
    json_type t = doc ? json_typeof(json_object_get(doc, "v")) : (json_type)-1;
    json_decref(doc);
    return t;
}

static void test_typing(void)
{
    const char *nulls[] = { "", "~", "null", "Null", "NULL" };
    for (size_t i = 0; i < sizeof nulls / sizeof *nulls; i++)
        CHECK_INT(type_of_value(nulls[i]), JSON_NULL);
    const char *trues[] = { "true", "True", "TRUE", "yes", "Yes", "on", "ON" };
    for (size_t i = 0; i < sizeof trues / sizeof *trues; i++)
        CHECK_INT(type_of_value(trues[i]), JSON_TRUE);
    const char *falses[] = { "false", "FALSE", "no", "No", "off", "Off" };
    for (size_t i = 0; i < sizeof falses / sizeof *falses; i++)
        CHECK_INT(type_of_value(falses[i]), JSON_FALSE);
    const char *strings[] = { "\"true\"", "'123'", "hello", "y", "n", "nope", "1.2.3",
                              "10.0.0.1:80", "0x", "1e", "|\n  block", "! 12", "!!str 12",
                              "0xZZ", "2001-12-14", "nulls" };
    for (size_t i = 0; i < sizeof strings / sizeof *strings; i++)
        CHECK_INT(type_of_value(strings[i]), JSON_STRING);
    const char *reals[] = { "1.5", ".5", "-1.5e3", "1e3", "089", "99999999999999999999", "!!float 3" };
    for (size_t i = 0; i < sizeof reals / sizeof *reals; i++)
        CHECK_INT(type_of_value(reals[i]), JSON_REAL);

    json_t *doc = parse1("a: 42\nb: -7\nc: 0x1F\nd: 0o17\ne: 0644\nf: +3\ng: 0\n"
                         "h: 9223372036854775807\ni: -9223372036854775808\nj: 0b101\n");
    CHECK(doc != NULL);
    CHECK_INT(json_integer_value(json_object_get(doc, "a")), 42);
    CHECK_INT(json_integer_value(json_object_get(doc, "b")), -7);
    CHECK_INT(json_integer_value(json_object_get(doc, "c")), 31);
    CHECK_INT(json_integer_value(json_object_get(doc, "d")), 15);
    CHECK_INT(json_integer_value(json_object_get(doc, "e")), 420);   /* file mode, YAML 1.1 */
    CHECK_INT(json_integer_value(json_object_get(doc, "f")), 3);
    CHECK(json_is_integer(json_object_get(doc, "g")));
    CHECK(json_integer_value(json_object_get(doc, "h")) == 9223372036854775807LL);
    CHECK(json_integer_value(json_object_get(doc, "i")) == -9223372036854775807LL - 1);
    CHECK_INT(json_integer_value(json_object_get(doc, "j")), 5);
    json_decref(doc);

    doc = parse1("1: one\ntrue: t\n~: n\n0x10: hex\n\"q\": 2\n");
    CHECK(doc != NULL);
    CHECK_STR(json_string_value(json_object_get(doc, "1")), "one");
    CHECK_STR(json_string_value(json_object_get(doc, "true")), "t");
    CHECK_STR(json_string_value(json_object_get(doc, "null")), "n");
    CHECK_STR(json_string_value(json_object_get(doc, "16")), "hex");
    CHECK_INT(json_integer_value(json_object_get(doc, "q")), 2);
    json_decref(doc);
}

static void test_structure(void)
{
    json_t *doc = parse1("base: &b {x: 1, y: [a, b]}\nuse: *b\nlist:\n- *b\n- &s str\n- *s\n");
    CHECK(doc != NULL);
    json_t *use = json_object_get(doc, "use");
    CHECK(json_equal(use, json_object_get(doc, "base")));
    CHECK(use != json_object_get(doc, "base"));   /* a copy: consumers may modify the tree */
    CHECK_STR(json_string_value(json_array_get(json_object_get(doc, "list"), 2)), "str");
    json_decref(doc);

    doc = parse1("base: &b {x: 1, y: 2}\nm:\n  <<: *b\n  y: 3\n");
    CHECK(doc != NULL);
    json_t *m = json_object_get(doc, "m");
    CHECK_INT(json_integer_value(json_object_get(m, "x")), 1);
    CHECK_INT(json_integer_value(json_object_get(m, "y")), 3);   /* explicit key wins */
    CHECK(json_object_get(m, "<<") == NULL);
    json_decref(doc);

    struct yaml_error err;
    const char *stream = "---\na: 1\n---\n---\n# nothing\n---\n- x\n...\n";
    json_t *docs = yaml_parse_stream(stream, strlen(stream), &err);
    CHECK(docs != NULL);
    CHECK_INT(json_array_size(docs), 2);   /* empty documents skipped */
    CHECK(json_is_array(json_array_get(docs, 1)));
    json_decref(docs);

    docs = yaml_parse_stream("", 0, &err);
    CHECK(docs != NULL);
    CHECK_INT(json_array_size(docs), 0);
    json_decref(docs);

    doc = parse1("s: \"tab\\there \\u00e9 \\0 nul\"\n");
    CHECK(doc != NULL);
    CHECK_INT(json_string_length(json_object_get(doc, "s")), 17);
    json_decref(doc);
}

static void expect_error(const char *text, const char *fragment, size_t line)
{
    struct yaml_error err;
    json_t *docs = yaml_parse_stream(text, strlen(text), &err);
    CHECK(docs == NULL);
    json_decref(docs);
    if (!docs) {
        if (!strstr(err.reason, fragment))
            fprintf(stderr, "reason \"%s\" lacks \"%s\"\n", err.reason, fragment);
        CHECK(strstr(err.reason, fragment) != NULL);
        CHECK_INT(err.line, line);
        CHECK(err.column >= 1);
    }
}

static void test_errors(void)
{
    expect_error("a: 1\nb: 2\na: 3\n", "duplicate mapping key \"a\"", 3);
    expect_error("a: 1\n1: x\n\"1\": y\n", "duplicate", 3);
    expect_error("a:\n  b: 1\n c: 2\n", "did not find expected key", 3);
    expect_error("a: [1, 2\n", "flow sequence", 2);
    expect_error("a: *nope\n", "unknown anchor", 1);
    expect_error("a: &x [1, *x]\n", "unknown anchor", 1);
    expect_error("? [1, 2]\n: v\n", "keys must be scalars", 1);
    expect_error("a: !!binary aGk=\n", "unsupported tag", 1);
    expect_error("a: !!int abc\n", "cannot be read as", 1);
    expect_error("a: .inf\n", "not supported", 1);
    expect_error("a: b\n\xff\xfe: c\n", "invalid", 2);

    /* The billion laughs: each level multiplies by 9. */
    const char *bomb =
        "a: &a [x, x, x, x, x, x, x, x, x]\n"
        "b: &b [*a, *a, *a, *a, *a, *a, *a, *a, *a]\n"
        "c: &c [*b, *b, *b, *b, *b, *b, *b, *b, *b]\n"
        "d: &d [*c, *c, *c, *c, *c, *c, *c, *c, *c]\n"
        "e: &e [*d, *d, *d, *d, *d, *d, *d, *d, *d]\n"
        "f: &f [*e, *e, *e, *e, *e, *e, *e, *e, *e]\n";
    expect_error(bomb, "aliases expand", 5);

    char deep[2000];
    memset(deep, '[', 600);
    memset(deep + 600, ']', 600);
    deep[1200] = '\0';
    expect_error(deep, "nesting deeper", 1);

    struct yaml_error err;
    CHECK(yaml_load_file_single("/nonexistent/file.yaml", &err) == NULL);
    CHECK(strstr(err.reason, "No such file") != NULL);
}

static void test_load_file(void)
{
    char path[] = "/tmp/test_yaml_json_XXXXXX";
    int fd = mkstemp(path);
    CHECK(fd >= 0);
    FILE *f = fdopen(fd, "w");
    fputs("a: 1\n---\nb: 2\n", f);
    fclose(f);
    struct yaml_error err;
    CHECK(yaml_load_file_single(path, &err) == NULL);
    CHECK(strstr(err.reason, "found 2") != NULL);

    f = fopen(path, "w");
    fputs("- 1\n", f);
    fclose(f);
    CHECK(yaml_load_file_single(path, &err) == NULL);
    CHECK(strstr(err.reason, "mapping") != NULL);

    f = fopen(path, "w");
    fputs("version: 1\nhosts: []\n", f);
    fclose(f);
    json_t *doc = yaml_load_file_single(path, &err);
    CHECK(doc != NULL);
    CHECK_INT(json_integer_value(json_object_get(doc, "version")), 1);
    json_decref(doc);
    unlink(path);
}

static void roundtrip(json_t *doc)
{
    size_t len = 0;
    char *text = yaml_emit(doc, &len);
    CHECK(text != NULL);
    if (!text)
        return;
    CHECK_INT(strlen(text), len);
    json_t *back = parse1(text);
    int equal = back && json_equal(doc, back);
    if (!equal)
        fprintf(stderr, "round trip differs:\n%s\n", text);
    CHECK(equal);
    json_decref(back);
    free(text);
}

static void test_emit(void)
{
    json_error_t jerr;
    json_t *doc = json_loads(
        "{\"s\": [\"true\", \"123\", \"\", \"null\", \"~\", \"yes\", \"y\", \"N\", \"0x10\", \"1e3\", \".5\","
        " \"<<\", \"- item\", \"a: b\", \"#c\", \"line1\\nline2\", \" lead\", \"trail \", \"\\u0001\","
        " \"\\u00e9t\\u00e9\", \"&x\", \"*y\", \"!t\", \"%p\", \"@a\", \"`b\", \"{x}\", \"[y]\", \"'q'\", \"\\\"dq\\\"\"],"
        " \"n\": [0, -1, 9223372036854775807, 1.0, 0.1, -2.5e-300, 1e300, true, false, null],"
        " \"nested\": {\"a\": {\"b\": [[], {}, [1, [2]]]}}, \"\": \"empty key\", \"123\": \"numeric key\"}",
        0, &jerr);
    CHECK(doc != NULL);
    roundtrip(doc);
    json_decref(doc);

    doc = json_pack("{s:s%}", "nul", "a\0b", (size_t)3);
    roundtrip(doc);
    json_decref(doc);

    doc = json_pack("{s:s}", "k", "true");
    char *text = yaml_emit(doc, NULL);
    CHECK(text && strstr(text, "k: \"true\"") != NULL);
    free(text);
    json_decref(doc);
}

static void test_speed(void)
{
    /* 10,000 hosts, routes-file shaped: must parse and emit well under a second. */
    json_t *hosts = json_array();
    for (int i = 0; i < 10000; i++)
        json_array_append_new(hosts, json_pack("{s:s, s:[{s:s, s:s, s:s, s:s}]}",
            "host", "h.example.com", "paths", "path", "/api", "type", "Prefix",
            "backend", "default/web:80", "ingress", "default/web"));
    json_t *doc = json_pack("{s:i, s:o}", "version", 1, "hosts", hosts);
    struct timespec t0, t1;
    clock_gettime(CLOCK_MONOTONIC, &t0);
    size_t len;
    char *text = yaml_emit(doc, &len);
    struct yaml_error err;
    json_t *docs = yaml_parse_stream(text, len, &err);
    clock_gettime(CLOCK_MONOTONIC, &t1);
    double secs = (double)(t1.tv_sec - t0.tv_sec) + (t1.tv_nsec - t0.tv_nsec) / 1e9;
    CHECK(docs && json_equal(json_array_get(docs, 0), doc));
    CHECK(secs < 2.0);   /* generous: ASan build */
    printf("emit+parse of 10,000 host entries (%zu bytes): %.3f s\n", len, secs);
    json_decref(docs);
    json_decref(doc);
    free(text);
}

int main(void)
{
    test_typing();
    test_structure();
    test_errors();
    test_load_file();
    test_emit();
    test_speed();
    return check_summary("test_yaml_json");
}
