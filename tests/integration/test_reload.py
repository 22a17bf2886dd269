"""The proxy's side of the routes file: reloads, refusing bad files, starting without one, and
hot reload under load (wrk)."""
import os
import re
import signal
import subprocess
import threading
import time

import helpers
from helpers import metric_sum, routes_doc, wait_until, write_atomic


def table(backend_name, backend, host="*", path="/", generation=1):
    return routes_doc({backend_name: [backend.addr]},
                      {host: [(path, "Prefix", backend_name)]}, generation=generation)


def reloads(proxy, result):
    return metric_sum(proxy.metrics(), "gatehouse_route_reloads_total", result=result)


def test_bad_routes_file_refused_old_routes_keep_serving(env):
    one, two = env.backend("one"), env.backend("two")
    write_atomic(env.routes, table("default/one:80", one))
    proxy = env.start_proxy()
    assert proxy.get("/x").backend == "one"
    failed0, ok0 = reloads(proxy, "failed"), reloads(proxy, "ok")

    bad_files = [
        "version: 2\nbackends: []\nhosts: []\n",                                # wrong version
        routes_doc({"b": [two.addr]}, {"*": [("/", "Prefix", "missing")]}),     # unknown backend
        routes_doc({"b": [two.addr]}, {"*": [("nope", "Prefix", "b")]}),        # path without /
        routes_doc({"b": ["127.0.0.1:99999"]}, {"*": [("/", "Prefix", "b")]}),  # bad port
        "version: 1\nbackends: [\n",                                            # not YAML
    ]
    for i, text in enumerate(bad_files, 1):
        write_atomic(env.routes, text)
        wait_until(lambda: reloads(proxy, "failed") >= failed0 + i, 3,
                   what="failed reload #%d counted" % i)
        r = proxy.get("/x")
        assert r.status == 200 and r.backend == "one", "after bad file %d: %r" % (i, r)
        assert proxy.admin("/readyz").status == 200
    assert reloads(proxy, "ok") == ok0
    assert "error" in proxy.stderr().lower(), proxy.stderr()

    # a good file afterwards is taken
    write_atomic(env.routes, table("default/two:80", two, generation=2))
    wait_until(lambda: proxy.get("/x").backend == "two", 3, what="new good table served")
    assert reloads(proxy, "ok") == ok0 + 1


def test_start_without_routes_file(env):
    b = env.backend("late")
    proxy = env.start_proxy(wait="listening")
    assert proxy.admin("/healthz").status == 200
    assert proxy.admin("/readyz").status == 503
    r = proxy.get("/anything")
    assert r.status == 404, r
    write_atomic(env.routes, table("default/late:80", b))
    proxy.wait_ready(timeout=3)
    r = proxy.get("/anything")
    assert r.status == 200 and r.backend == "late", r


def test_reload_picks_up_changes(env):
    one, two = env.backend("one"), env.backend("two")
    write_atomic(env.routes, routes_doc({"one": [one.addr]}, {"a.test": [("/", "Prefix", "one")]}))
    proxy = env.start_proxy()
    assert proxy.get("/", host="a.test").backend == "one"
    assert proxy.get("/", host="b.test").status == 404
    write_atomic(env.routes, routes_doc({"one": [one.addr], "two": [two.addr]},
                                        {"a.test": [("/", "Prefix", "one")],
                                         "b.test": [("/", "Prefix", "two")]}))
    wait_until(lambda: proxy.get("/", host="b.test").backend == "two", 2, what="b.test served")


def parse_wrk(out):
    total = re.search(r"(\d+) requests in", out)
    non2xx = re.search(r"Non-2xx or 3xx responses:\s*(\d+)", out)
    sock = re.search(r"Socket errors:\s*connect (\d+), read (\d+), write (\d+), timeout (\d+)", out)
    return (int(total.group(1)) if total else 0,
            int(non2xx.group(1)) if non2xx else 0,
            tuple(int(x) for x in sock.groups()) if sock else (0, 0, 0, 0))


def test_hot_reload_under_load(env):
    a, b = env.backend("table-a"), env.backend("table-b")
    tables = [routes_doc({"pool-a": [a.addr]},
                         {"*": [("/load", "Prefix", "pool-a"), ("/", "Exact", "pool-a")]},
                         generation=g) if g % 2 == 0 else
              routes_doc({"pool-b": [b.addr]},
                         {"*": [("/load", "Prefix", "pool-b")],
                          "other.test": [("/", "Prefix", "pool-b")]}, generation=g)
              for g in range(101)]
    write_atomic(env.routes, tables[0])
    proxy = env.start_proxy(access_log=False)
    ok0 = reloads(proxy, "ok")

    wrk = subprocess.Popen(["wrk", "-t1", "-c8", "-d5s", "--latency",
                            "http://127.0.0.1:%d/load/x" % proxy.http_port],
                           stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True,
                           start_new_session=True)
    try:
        time.sleep(0.3)  # wrk warming up (nothing to poll)
        for g in range(1, 101):
            write_atomic(env.routes, tables[g])
            time.sleep(0.04)
        out, _ = wrk.communicate(timeout=20)
    finally:
        if wrk.poll() is None:
            os.killpg(wrk.pid, 9)
            wrk.wait()
    print(out)
    total, non2xx, sock = parse_wrk(out)
    ok = reloads(proxy, "ok") - ok0
    print("wrk: %d requests, non-2xx %d, socket errors %s; reloads ok %d" % (total, non2xx, sock,
                                                                          ok))
    assert total > 500, "wrk made only %d requests:\n%s" % (total, out)
    assert non2xx == 0, "non-2xx responses during reloads:\n" + out
    assert sock == (0, 0, 0, 0), "socket errors during reloads:\n" + out
    assert a.count() > 0 and b.count() > 0, "both tables served (%d, %d)" % (a.count(), b.count())
    assert ok >= 10, "only %d reloads counted for 100 route changes" % ok
    assert reloads(proxy, "failed") == 0
    # the last table (generation 100, pool-a) is the one in force
    wait_until(lambda: proxy.get("/load", host="x").backend == "table-a", 2,
               what="final table in force")


def test_reload_does_not_break_in_flight_or_kept_alive(env):
    a, b = env.backend("old-table"), env.backend("new-table")
    write_atomic(env.routes, table("pool-a", a))
    proxy = env.start_proxy()
    result = {}

    def slow():
        result["r"] = proxy.get("/slow?_sleep=1", host="x.test", timeout=10)
    t = threading.Thread(target=slow)
    t.start()
    with proxy.raw() as c:
        c.send(helpers.raw_request("GET", "/ka-1", "x.test"))
        assert c.read_response().backend == "old-table"
        wait_until(lambda: "/slow" in a.paths(), 3, what="slow request at the old backend")
        # the new table no longer has the old backend at all
        write_atomic(env.routes, table("pool-b", b, generation=2))
        wait_until(lambda: proxy.get("/probe", host="x.test").backend == "new-table", 2,
                   what="new table in force")
        # a connection opened before the reload uses the new table for its next request
        c.send(helpers.raw_request("GET", "/ka-2", "x.test"))
        r = c.read_response()
        assert r.status == 200 and r.backend == "new-table", r
    t.join(10)
    r = result.get("r")
    assert r is not None and r.status == 200 and r.backend == "old-table", r


def test_readyz_not_before_listening(env):
    """A load balancer that sees /readyz 200 sends traffic: at that moment the HTTP port must
    accept connections. Started many times to catch the start-up order."""
    b = env.backend("r")
    write_atomic(env.routes, table("pool", b))
    refused = 0
    for i in range(50):
        proxy = env.start_proxy(wait=None, access_log=False)

        def ready():
            assert proxy.alive(), proxy.stderr()
            try:
                return proxy.admin("/readyz").status == 200
            except OSError:
                return False
        wait_until(ready, 5, interval=0.0005, what="/readyz 200")
        if not proxy.accepting():
            refused += 1
        proxy.kill()
    assert refused == 0, "%d of 50 starts: /readyz said 200 while the HTTP port refused " \
        "connections" % refused


def test_sighup_reloads(env):
    b = env.backend("h")
    write_atomic(env.routes, table("pool", b))
    proxy = env.start_proxy()
    ok0 = reloads(proxy, "ok")
    proxy.signal(signal.SIGHUP)
    wait_until(lambda: reloads(proxy, "ok") == ok0 + 1, 3, what="reload counted after SIGHUP")
    assert proxy.alive()
    assert proxy.get("/").backend == "h"
