/*
 * log.h - one-line diagnostics on stderr: "PROGRAM: LEVEL: message".
 *
 * set_err() is the same formatting into a caller's buffer, for functions that report why they
 * failed instead of logging it themselves.
 *
 * Under s6 the logger adds timestamps, so none are printed here. Lines are written with one
 * write(2) each so lines from several threads never interleave. Never log secrets.
 */
#ifndef GATEHOUSE_LOG_H
#define GATEHOUSE_LOG_H

#include <stddef.h>

enum log_level { LOG_ERROR, LOG_WARN, LOG_INFO, LOG_DEBUG };

void log_init(const char *program, enum log_level max_level);
void log_msg(enum log_level level, const char *fmt, ...) __attribute__((format(printf, 2, 3)));

/* Formats a one-line reason into a caller's buffer (err may be NULL or errlen 0: then nothing).
 * Returns -1, so a function can `return set_err(err, errlen, "...")`. */
int set_err(char *err, size_t errlen, const char *fmt, ...) __attribute__((format(printf, 3, 4)));

#define log_error(...) log_msg(LOG_ERROR, __VA_ARGS__)
#define log_warn(...)  log_msg(LOG_WARN, __VA_ARGS__)
#define log_info(...)  log_msg(LOG_INFO, __VA_ARGS__)
#define log_debug(...) log_msg(LOG_DEBUG, __VA_ARGS__)

#endif
