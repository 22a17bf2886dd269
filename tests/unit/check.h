/*
 * check.h - the unit tests' assertion macros.
 *
 * Each tests/unit/test_*.c is one program: it calls CHECK* as often as it likes and
 * returns check_summary() from main(). A failed check prints file:line and the
 * expression, and the run continues so one program reports every failure at once.
 * The last line a program prints is "<name>: N passed, M failed", which
 * tools/run-unit-tests adds up.
 */
#ifndef GATEHOUSE_CHECK_H
#define GATEHOUSE_CHECK_H

#include <stdio.h>
#include <string.h>

static int check_passed, check_failed;

#define CHECK(cond) do { \
    if (cond) check_passed++; \
    else { check_failed++; fprintf(stderr, "%s:%d: FAILED: %s\n", __FILE__, __LINE__, #cond); } \
} while (0)

#define CHECK_INT(got, want) do { \
    long long g_ = (long long)(got), w_ = (long long)(want); \
    if (g_ == w_) check_passed++; \
    else { check_failed++; fprintf(stderr, "%s:%d: FAILED: %s == %lld, want %lld\n", \
                                   __FILE__, __LINE__, #got, g_, w_); } \
} while (0)

#define CHECK_STR(got, want) do { \
    const char *g_ = (got), *w_ = (want); \
    if (g_ && w_ && strcmp(g_, w_) == 0) check_passed++; \
    else { check_failed++; fprintf(stderr, "%s:%d: FAILED: %s == \"%s\", want \"%s\"\n", \
                                   __FILE__, __LINE__, #got, g_ ? g_ : "(null)", w_ ? w_ : "(null)"); } \
} while (0)

static inline int check_summary(const char *name)
{
    printf("%s: %d passed, %d failed\n", name, check_passed, check_failed);
    return check_failed ? 1 : 0;
}

#endif
