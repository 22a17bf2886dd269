/*
 * clock.h - the coarse millisecond clocks a worker reads once per loop iteration.
 *
 * Monotonic time drives every timeout; wall time is only for access-log timestamps. Both come
 * from the vDSO, so reading them costs no system call.
 */
#ifndef GATEHOUSE_CLOCK_H
#define GATEHOUSE_CLOCK_H

#include <stdint.h>
#include <time.h>

static inline int64_t clock_monotonic_ms(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (int64_t)ts.tv_sec * 1000 + ts.tv_nsec / 1000000;
}

static inline int64_t clock_wall_ms(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_REALTIME, &ts);
    return (int64_t)ts.tv_sec * 1000 + ts.tv_nsec / 1000000;
}

#endif
