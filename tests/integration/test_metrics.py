"""Admin endpoints, /metrics content after traffic, and the JSON access log."""
import json

from helpers import (ingress, ingress_class, metric_present, metric_sum, parse_metrics,
                     service_for, wait_until)


def test_admin_and_metrics_after_requests(env):
    docs = [ingress_class()] + service_for("m", [env.backend("m")]) + service_for("gone", []) + \
        [ingress("m", [("m.test", [("/", "Prefix", "m", 80), ("/gone", "Prefix", "gone", 80)])])]
    proxy = env.up(docs)
    assert proxy.admin("/healthz").status == 200
    assert proxy.admin("/readyz").status == 200
    for _ in range(3):
        assert proxy.get("/ok", host="m.test").status == 200
    assert proxy.get("/teapot?_status=418", host="m.test").status == 418
    for _ in range(2):
        assert proxy.get("/", host="unknown.test").status == 404
    assert proxy.get("/gone", host="m.test").status == 503

    r = proxy.admin("/metrics")
    assert r.status == 200
    assert (r.header("Content-Type") or "").startswith("text/plain"), r.headers
    text = r.body.decode()
    assert "# TYPE gatehouse_http_requests_total counter" in text
    samples = parse_metrics(text)
    assert metric_sum(samples, "gatehouse_http_requests_total", host="m.test", code="200") == 3
    assert metric_sum(samples, "gatehouse_http_requests_total", host="m.test", code="418") == 1
    assert metric_sum(samples, "gatehouse_http_requests_total", host="m.test", code="503") == 1
    assert metric_sum(samples, "gatehouse_http_requests_total", code="404") == 2
    # the raw Host header is never a label value (bounded cardinality)
    assert not any(l.get("host") == "unknown.test" for n, l, v in samples), \
        [s for s in samples if s[0] == "gatehouse_http_requests_total"]
    assert metric_sum(samples, "gatehouse_route_reloads_total", result="ok") >= 1
    assert metric_sum(samples, "gatehouse_route_reloads_total", result="failed") == 0
    assert metric_present(samples, "gatehouse_connections_active")
    # our own admin connection is not a data-plane connection; none are open now
    wait_until(lambda: metric_sum(proxy.metrics(), "gatehouse_connections_active") == 0, 2,
               what="gatehouse_connections_active back to 0")
    c = proxy.raw()
    c.send(b"GET / HTTP/1.1\r\nHost: m.test\r\n\r\n")
    assert c.read_response().status == 200
    assert metric_sum(proxy.metrics(), "gatehouse_connections_active") == 1
    c.close()
    wait_until(lambda: metric_sum(proxy.metrics(), "gatehouse_connections_active") == 0, 2,
               what="gatehouse_connections_active back to 0 after close")
    assert proxy.admin("/nope").status == 404


def test_access_log_json_lines(env):
    docs = [ingress_class()] + service_for("m", [env.backend("m")]) + \
        [ingress("m", [("m.test", [("/", "Prefix", "m", 80)])])]
    proxy = env.up(docs)
    paths = ["/logged/%d" % i for i in range(5)]
    for p in paths:
        assert proxy.get(p, host="m.test").status == 200

    def lines():
        out = [l for l in proxy.stdout().splitlines() if l.strip()]
        return out if len(out) >= len(paths) else None
    out = wait_until(lines, 3, what="5 access log lines on stdout")
    recs = [json.loads(l) for l in out]          # every line is one JSON object
    assert all(isinstance(r, dict) for r in recs)
    text = "\n".join(out)
    for p in paths:
        assert text.count(p) == 1, "path %s logged %d times" % (p, text.count(p))
    assert len(recs) == len(paths)

    # --no-access-log: nothing on stdout
    quiet = env.start_proxy(access_log=False)
    assert quiet.get("/quiet", host="m.test").status == 200
    assert quiet.stdout().strip() == ""
