"""Backends: Service ports (by number and by name), EndpointSlices, readiness, round robin,
default backend, merging and conflicting Ingresses."""
import collections

from helpers import endpoint_slice, ingress, ingress_class, service, service_for


def count_backends(proxy, n, host, path="/"):
    c = collections.Counter()
    for _ in range(n):
        r = proxy.get(path, host=host)
        assert r.status == 200, r
        c[r.backend] += 1
    return c


def test_named_and_numbered_service_ports(env):
    web, admin = env.backend("web"), env.backend("admin")
    docs = [ingress_class(),
            service("multi", (("web", 80), ("admin", 9000))),
            endpoint_slice("multi", [("127.0.0.1", web.port, True)], port_name="web",
                           slice_name="multi-web"),
            endpoint_slice("multi", [("127.0.0.1", admin.port, True)], port_name="admin",
                           slice_name="multi-admin"),
            ingress("ports", [("ports.test", [("/by-name/web", "Prefix", "multi", "web"),
                                              ("/by-name/admin", "Prefix", "multi", "admin"),
                                              ("/by-number/80", "Prefix", "multi", 80),
                                              ("/by-number/9000", "Prefix", "multi", 9000)])])]
    proxy = env.up(docs)
    for path, expected in (("/by-name/web", "web"), ("/by-name/admin", "admin"),
                           ("/by-number/80", "web"), ("/by-number/9000", "admin")):
        r = proxy.get(path, host="ports.test")
        assert r.status == 200 and r.backend == expected, (path, r)


def test_round_robin_over_three_endpoints(env):
    bs = [env.backend("rr-%d" % i) for i in range(3)]
    docs = [ingress_class()] + service_for("rr", bs) + \
        [ingress("rr", [("rr.test", [("/", "Prefix", "rr", 80)])])]
    proxy = env.up(docs, workers=1)
    c = count_backends(proxy, 30, "rr.test")
    assert set(c) == {"rr-0", "rr-1", "rr-2"}, c
    # round robin, not random: with one worker each endpoint gets its third
    assert all(8 <= v <= 12 for v in c.values()), c


def test_not_ready_endpoints_skipped(env):
    bs = [env.backend("ep-%d" % i) for i in range(3)]
    docs = [ingress_class()] + service_for("mixed", bs, ready=[True, False, True]) + \
        [ingress("mixed", [("mixed.test", [("/", "Prefix", "mixed", 80)])])]
    proxy = env.up(docs)
    c = count_backends(proxy, 20, "mixed.test")
    assert c["ep-1"] == 0 and bs[1].count() == 0, c
    assert c["ep-0"] > 0 and c["ep-2"] > 0, c


def test_no_ready_endpoints_is_503(env):
    b = env.backend("never")
    docs = [ingress_class()]
    docs += service_for("none-ready", [b], ready=[False])
    docs += [service("no-slices")]
    docs += [ingress("e", [("e.test", [("/none-ready", "Prefix", "none-ready", 80),
                                       ("/no-slices", "Prefix", "no-slices", 80)])])]
    proxy = env.up(docs)
    for path in ("/none-ready", "/no-slices"):
        r = proxy.get(path, host="e.test")
        assert r.status == 503, (path, r)
    assert b.count() == 0


def test_default_backend_and_404(env):
    dflt, app = env.backend("dflt"), env.backend("app")
    docs = [ingress_class()] + service_for("dflt", [dflt]) + service_for("app", [app])
    docs.append(ingress("with-default", [("app.test", [("/app", "Prefix", "app", 80)])],
                        default_backend=("dflt", 80)))
    proxy = env.up(docs)
    assert proxy.get("/app/x", host="app.test").backend == "app"
    for host, path in (("app.test", "/other"), ("nowhere.test", "/"), ("nowhere.test", "/app")):
        r = proxy.get(path, host=host)
        assert r.status == 200 and r.backend == "dflt", (host, path, r)
        assert r.json["path"] == path

    # the same without spec.defaultBackend: 404 from the proxy
    docs[-1] = ingress("with-default", [("app.test", [("/app", "Prefix", "app", 80)])])
    env.write_manifests(docs)
    env.render()
    proxy2 = env.start_proxy()
    r = proxy2.get("/other", host="app.test")
    assert r.status == 404 and r.backend is None, r
    assert proxy2.get("/", host="nowhere.test").status == 404


def test_merged_ingresses_for_one_host(env):
    one, two = env.backend("one"), env.backend("two")
    docs = [ingress_class()] + service_for("one", [one])
    docs.append(ingress("part-1", [("merge.test", [("/one", "Prefix", "one", 80)])]))
    docs.append(ingress("part-2", [("merge.test", [("/two", "Exact", "two", 80)])],
                        ns="other-ns"))
    # the Service "two" exists only in other-ns: Ingress backends refer to their own namespace
    docs += service_for("two", [two], ns="other-ns")
    proxy = env.up(docs)
    assert proxy.get("/one/x", host="merge.test").backend == "one"
    assert proxy.get("/two", host="merge.test").backend == "two"
    assert proxy.get("/two/x", host="merge.test").status == 404


def test_conflicting_ingresses_oldest_wins(env):
    old, new = env.backend("old"), env.backend("new")
    docs = [ingress_class()] + service_for("old", [old]) + service_for("new", [new])
    # the newer Ingress sorts first by name and comes first in the file: age must decide
    docs += [
        ingress("aaa-new", [("c1.test", [("/", "Prefix", "new", 80)])],
                created="2024-06-01T00:00:00Z"),
        ingress("zzz-old", [("c1.test", [("/", "Prefix", "old", 80)])],
                created="2021-06-01T00:00:00Z"),
        ingress("aaa-old", [("c2.test", [("/p", "Exact", "old", 80)])],
                created="2021-06-01T00:00:00Z"),
        ingress("zzz-new", [("c2.test", [("/p", "Exact", "new", 80),
                                         ("/q", "Exact", "new", 80)])],
                created="2024-06-01T00:00:00Z"),
    ]
    proxy = env.up(docs)
    assert proxy.get("/", host="c1.test").backend == "old"
    assert proxy.get("/x", host="c1.test").backend == "old"
    assert proxy.get("/p", host="c2.test").backend == "old"
    # the loser's other, non-conflicting paths still apply
    assert proxy.get("/q", host="c2.test").backend == "new"


def test_missing_service_or_port_is_503_and_reported(env):
    ok = env.backend("ok")
    docs = [ingress_class()] + service_for("ok", [ok])
    docs.append(ingress("broken", [("b.test", [("/no-svc", "Prefix", "does-not-exist", 80),
                                               ("/no-port", "Prefix", "ok", 8081),
                                               ("/no-port-name", "Prefix", "ok", "grpc"),
                                               ("/fine", "Prefix", "ok", "http")])]))
    env.write_manifests(docs)
    agent = env.render()
    err = agent.stderr()
    assert "does-not-exist" in err, "missing Service not reported:\n" + err
    proxy = env.start_proxy()
    for path in ("/no-svc", "/no-port", "/no-port-name"):
        r = proxy.get(path, host="b.test")
        assert r.status == 503 and r.backend is None, (path, r)
    assert proxy.get("/fine", host="b.test").backend == "ok"
    assert ok.paths() == ["/fine"]


def test_ipv6_endpoint_slice(env):
    b = env.backend("v6", host="::1")
    docs = [ingress_class(), service("s6"),
            {"apiVersion": "discovery.k8s.io/v1", "kind": "EndpointSlice",
             "metadata": {"name": "s6-a", "namespace": "default",
                          "labels": {"kubernetes.io/service-name": "s6"}},
             "addressType": "IPv6",
             "endpoints": [{"addresses": ["::1"], "conditions": {"ready": True}}],
             "ports": [{"name": "http", "port": b.port, "protocol": "TCP"}]},
            ingress("s6", [("v6.test", [("/", "Prefix", "s6", 80)])])]
    proxy = env.up(docs)
    r = proxy.get("/six", host="v6.test")
    assert r.status == 200 and r.backend == "v6", r
