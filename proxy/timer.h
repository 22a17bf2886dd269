/*
 * timer.h - a per-worker hashed timer wheel with coarse (16 ms) resolution.
 *
 * Each connection embeds one struct timer. Arming is O(1). Pushing a deadline later is free:
 * the entry stays in its slot and is simply re-filed when that slot comes due, so the hot path
 * (every byte of progress extends a deadline) never touches the lists. Deadlines beyond the
 * wheel's span lap around and are re-filed the same way.
 */
#ifndef GATEHOUSE_TIMER_H
#define GATEHOUSE_TIMER_H

#include <stdint.h>

#define TIMER_TICK_SHIFT 4                     /* 16 ms per slot */
#define TIMER_SLOTS      1024                  /* ~16 s per lap */

struct timer {
    struct timer *prev, *next;                 /* slot list; prev == NULL: not armed */
    int64_t deadline_ms;                       /* when it fires (may be later than its slot) */
    int64_t slot_tick;                         /* tick of the slot it is filed in */
    void (*fire)(struct timer *t);
};

struct timer_wheel {
    struct timer slots[TIMER_SLOTS];           /* list heads (circular, sentinel) */
    int64_t current_tick;                      /* next tick to process */
    long armed;
};

void timer_wheel_init(struct timer_wheel *w, int64_t now_ms);

/* Arms or re-arms t for deadline_ms. Cheap when the deadline only moves later. */
void timer_set(struct timer_wheel *w, struct timer *t, int64_t deadline_ms);
void timer_cancel(struct timer_wheel *w, struct timer *t);

/* Fires every timer whose deadline is <= now_ms. A fired timer is disarmed first, so fire()
 * may re-arm it or free its owner. */
void timer_wheel_run(struct timer_wheel *w, int64_t now_ms);

/* Milliseconds epoll_wait may sleep: -1 when nothing is armed. */
int timer_wheel_sleep_ms(const struct timer_wheel *w);

static inline int timer_armed(const struct timer *t) { return t->prev != 0; }

#endif
