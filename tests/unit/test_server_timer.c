/*
 * test_server_timer.c - the workers' timer wheel: timers fire once, not early, in spite of
 * deadlines pushed later, pulled earlier, cancelled, or beyond one lap of the wheel.
 */
#include "check.h"
#include "timer.h"

#include <stdlib.h>

struct probe {
    struct timer t;
    int fired;
    int64_t fired_at;
};

static int64_t now;

static void on_fire(struct timer *t)
{
    struct probe *p = (struct probe *)t;
    p->fired++;
    p->fired_at = now;
}

static void run_until(struct timer_wheel *w, int64_t until)
{
    for (; now <= until; now += 5)
        timer_wheel_run(w, now);
    now = until;
}

int main(void)
{
    static struct timer_wheel w;
    now = 1000000;
    timer_wheel_init(&w, now);
    CHECK_INT(timer_wheel_sleep_ms(&w), -1);

    struct probe a = { .t.fire = on_fire }, b = { .t.fire = on_fire }, c = { .t.fire = on_fire },
                 d = { .t.fire = on_fire }, e = { .t.fire = on_fire };
    timer_set(&w, &a.t, now + 100);          /* plain */
    timer_set(&w, &b.t, now + 100);
    timer_set(&w, &b.t, now + 500);          /* pushed later: stays filed, re-filed when due */
    timer_set(&w, &c.t, now + 5000);
    timer_set(&w, &c.t, now + 50);           /* pulled earlier: re-filed at once */
    timer_set(&w, &d.t, now + 200);
    timer_cancel(&w, &d.t);
    timer_set(&w, &e.t, now + 40000);        /* beyond one lap (~16 s) */
    CHECK(timer_wheel_sleep_ms(&w) > 0);

    int64_t start = now;
    run_until(&w, start + 49);
    CHECK_INT(c.fired, 0);
    run_until(&w, start + 120);
    CHECK_INT(c.fired, 1);
    CHECK(c.fired_at >= start + 50);
    CHECK_INT(a.fired, 1);
    CHECK(a.fired_at >= start + 100 && a.fired_at < start + 100 + 2 * (1 << TIMER_TICK_SHIFT));
    CHECK_INT(b.fired, 0);
    run_until(&w, start + 600);
    CHECK_INT(b.fired, 1);
    CHECK(b.fired_at >= start + 500);
    CHECK_INT(d.fired, 0);
    run_until(&w, start + 39990);
    CHECK_INT(e.fired, 0);
    run_until(&w, start + 40100);
    CHECK_INT(e.fired, 1);
    CHECK(e.fired_at >= start + 40000);
    CHECK_INT(a.fired + b.fired + c.fired, 3);   /* each fired exactly once */
    CHECK_INT(timer_wheel_sleep_ms(&w), -1);

    /* A jump of the clock (a long stall) still fires everything that is due. */
    struct probe many[100];
    for (int i = 0; i < 100; i++) {
        many[i] = (struct probe){ .t.fire = on_fire };
        timer_set(&w, &many[i].t, now + 10 * i);
    }
    now += 5000;
    timer_wheel_run(&w, now);
    int total = 0;
    for (int i = 0; i < 100; i++)
        total += many[i].fired;
    CHECK_INT(total, 100);
    return check_summary("test_server_timer");
}
