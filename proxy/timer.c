/*
 * timer.c - the hashed timer wheel declared in timer.h.
 */
#include "timer.h"

#include <stddef.h>

static void slot_link(struct timer_wheel *w, struct timer *t, int64_t tick)
{
    struct timer *head = &w->slots[tick & (TIMER_SLOTS - 1)];
    t->slot_tick = tick;
    t->next = head;
    t->prev = head->prev;
    head->prev->next = t;
    head->prev = t;
}

static void slot_unlink(struct timer *t)
{
    t->prev->next = t->next;
    t->next->prev = t->prev;
    t->prev = t->next = NULL;
}

void timer_wheel_init(struct timer_wheel *w, int64_t now_ms)
{
    for (size_t i = 0; i < TIMER_SLOTS; i++)
        w->slots[i].prev = w->slots[i].next = &w->slots[i];
    w->current_tick = now_ms >> TIMER_TICK_SHIFT;
    w->armed = 0;
}

static int64_t tick_for(const struct timer_wheel *w, int64_t deadline_ms)
{
    int64_t tick = deadline_ms >> TIMER_TICK_SHIFT;
    if (tick < w->current_tick)
        tick = w->current_tick;
    if (tick >= w->current_tick + TIMER_SLOTS)
        tick = w->current_tick + TIMER_SLOTS - 1;   /* laps: re-filed when that slot comes due */
    return tick;
}

void timer_set(struct timer_wheel *w, struct timer *t, int64_t deadline_ms)
{
    t->deadline_ms = deadline_ms;
    if (t->prev) {
        if (t->slot_tick <= (deadline_ms >> TIMER_TICK_SHIFT))
            return;                                  /* filed early enough: re-filed when due */
        slot_unlink(t);
        w->armed--;
    }
    slot_link(w, t, tick_for(w, deadline_ms));
    w->armed++;
}

void timer_cancel(struct timer_wheel *w, struct timer *t)
{
    if (!t->prev)
        return;
    slot_unlink(t);
    w->armed--;
}

void timer_wheel_run(struct timer_wheel *w, int64_t now_ms)
{
    int64_t now_tick = now_ms >> TIMER_TICK_SHIFT;
    while (w->current_tick <= now_tick) {
        struct timer *head = &w->slots[w->current_tick & (TIMER_SLOTS - 1)];
        /* Detach the slot's list first so timers re-filed into this slot are not revisited. */
        struct timer pending = { .prev = head->prev, .next = head->next };
        if (head->next == head) {
            w->current_tick++;
            continue;
        }
        pending.next->prev = &pending;
        pending.prev->next = &pending;
        head->prev = head->next = head;
        w->current_tick++;
        while (pending.next != &pending) {
            struct timer *t = pending.next;
            slot_unlink(t);
            w->armed--;
            if (t->deadline_ms <= now_ms) {
                t->fire(t);
            } else {
                slot_link(w, t, tick_for(w, t->deadline_ms));
                w->armed++;
            }
        }
    }
}

int timer_wheel_sleep_ms(const struct timer_wheel *w)
{
    return w->armed ? (1 << TIMER_TICK_SHIFT) : -1;
}
