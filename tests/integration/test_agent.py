"""gatehouse-agent with a manifest directory: the routes file it writes, watching the directory
(edits, additions, removals reflected end to end within a second), and bad manifests."""
import json
import os
import re
import shutil
import time

import yaml

from helpers import dump_docs, ingress, ingress_class, service_for, wait_until

BAD_YAML = """\
apiVersion: v1
kind: Service
metadata:
  name: broken: yes
spec: {}
"""


def base_docs(env):
    return [ingress_class()] + service_for("one", [env.backend("one")]) + \
        service_for("two", [env.backend("two")])


def test_once_writes_valid_routes_file(env):
    docs = base_docs(env) + [ingress("w", [("w.test", [("/api", "Prefix", "one", 80)])])]
    p = env.render(docs)
    assert p.p.returncode == 0
    with open(env.routes) as f:
        doc = yaml.safe_load(f)
    assert doc["version"] == 1
    hosts = {h["host"]: h for h in doc["hosts"]}
    assert "w.test" in hosts, doc
    paths = hosts["w.test"]["paths"]
    assert [(x["path"], x["type"]) for x in paths] == [("/api", "Prefix")], paths
    backends = {b["name"]: b for b in doc["backends"]}
    be = backends[paths[0]["backend"]]
    assert be["endpoints"] == [env.backends[0].addr], be
    # no temp files left beside it: only the routes file and the agent's metrics
    assert sorted(os.listdir(env.state)) == ["metrics.prom", "routes.yaml"], os.listdir(env.state)


def measure(pred, what, limit=1.0):
    t0 = time.monotonic()
    wait_until(pred, 5, interval=0.005, what=what)
    took = time.monotonic() - t0
    print("%s: %.0f ms" % (what, took * 1000))
    assert took < limit, "%s took %.3fs (limit %.1fs)" % (what, took, limit)
    return took


def test_directory_watch_edit_add_remove(env):
    env.write_manifests(base_docs(env), "base.yaml")
    ing = os.path.join(env.manifests, "ing.yaml")
    env.write_manifests([ingress("w", [("w.test", [("/", "Prefix", "one", 80)])])], "ing.yaml")
    env.start_agent()
    proxy = env.start_proxy()
    assert proxy.get("/", host="w.test").backend == "one"

    # edit by atomic rename (what kubectl-like tools and most editors do)
    env.write_manifests([ingress("w", [("w.test", [("/", "Prefix", "two", 80)])])], "ing.yaml")
    measure(lambda: proxy.get("/", host="w.test").backend == "two", "edit (rename) latency")

    # edit in place
    with open(ing, "w") as f:
        f.write(dump_docs([ingress("w", [("w.test", [("/", "Prefix", "one", 80)])])]))
    measure(lambda: proxy.get("/", host="w.test").backend == "one", "edit (in place) latency")

    # add a file
    env.write_manifests([ingress("added", [("added.test", [("/", "Prefix", "two", 80)])])],
                        "added.yaml")
    measure(lambda: proxy.get("/", host="added.test").backend == "two", "add latency")

    # remove it
    os.unlink(os.path.join(env.manifests, "added.yaml"))
    measure(lambda: proxy.get("/", host="added.test").status == 404, "remove latency")
    assert proxy.get("/", host="w.test").backend == "one"

    # a new Service with its EndpointSlice and an Ingress, in a new file
    three = env.backend("three")
    env.write_manifests(service_for("three-svc", [three]) + [
        ingress("t", [("t.test", [("/", "Prefix", "three-svc", 80)])])], "three.yaml")
    measure(lambda: proxy.get("/", host="t.test").backend == "three", "service add latency")


def test_bad_manifest_reported_rest_applies(env):
    env.write_manifests(base_docs(env) + [ingress("good", [("good.test",
                                                             [("/", "Prefix", "one", 80)])])],
                        "good.yaml")
    env.write_file("bad.yaml", BAD_YAML)
    # a file with one bad document (no metadata.name) and one good one
    env.write_file("mixed.yaml", dump_docs([
        {"apiVersion": "networking.k8s.io/v1", "kind": "Ingress", "metadata": {},
         "spec": {"ingressClassName": "gatehouse"}},
        ingress("also-good", [("also.test", [("/", "Prefix", "two", 80)])])]))
    p = env.run_agent_once()
    err = p.stderr()
    print(err)
    assert os.path.exists(env.routes), "no routes written: %s" % err
    assert re.search(r"bad\.yaml:4\b", err), "no file:line for bad.yaml in:\n" + err
    assert "mixed.yaml" in err or "metadata.name" in err, "bad document not reported:\n" + err
    proxy = env.start_proxy()
    assert proxy.get("/", host="good.test").backend == "one"
    assert proxy.get("/", host="also.test").backend == "two"


def test_bad_manifest_while_watching_keeps_routes(env):
    env.write_manifests(base_docs(env) + [ingress("good", [("good.test",
                                                             [("/", "Prefix", "one", 80)])])],
                        "good.yaml")
    agent = env.start_agent()
    proxy = env.start_proxy()
    assert proxy.get("/", host="good.test").backend == "one"
    env.write_file("bad.yaml", BAD_YAML)
    wait_until(lambda: "bad.yaml:4" in agent.stderr(), 2, what="agent reports bad.yaml:4")
    # a later good change still applies, the good Ingress stays
    env.write_manifests([ingress("new", [("new.test", [("/", "Prefix", "two", 80)])])],
                        "new.yaml")
    wait_until(lambda: proxy.get("/", host="new.test").backend == "two", 2,
               what="new.test served")
    assert proxy.get("/", host="good.test").backend == "one"
    assert agent.alive()


def test_endpoint_readiness_change_followed(env):
    b1, b2 = env.backend("r1"), env.backend("r2")
    env.write_manifests([ingress_class(), ingress("r", [("r.test", [("/", "Prefix", "rs", 80)])])],
                        "ing.yaml")
    env.write_manifests(service_for("rs", [b1, b2]), "svc.yaml")
    env.start_agent()
    proxy = env.start_proxy()
    assert {proxy.get("/", host="r.test").backend for _ in range(6)} == {"r1", "r2"}

    env.write_manifests(service_for("rs", [b1, b2], ready=[False, True]), "svc.yaml")
    measure(lambda: all(proxy.get("/", host="r.test").backend == "r2" for _ in range(4)),
            "endpoint not-ready latency")
    env.write_manifests(service_for("rs", [b1, b2], ready=[False, False]), "svc.yaml")
    measure(lambda: proxy.get("/", host="r.test").status == 503, "no ready endpoint latency")
    env.write_manifests(service_for("rs", [b1, b2]), "svc.yaml")
    measure(lambda: {proxy.get("/", host="r.test").backend for _ in range(6)} == {"r1", "r2"},
            "endpoints ready again latency")


def test_json_and_list_manifests(env):
    """Manifests as JSON files and as `kind: List` (what `kubectl get -o json` prints)."""
    b = env.backend("listed")
    items = [ingress_class()] + service_for("listed", [b]) + \
        [ingress("listed", [("list.test", [("/", "Prefix", "listed", 80)])])]
    env.write_file("export.json", json.dumps({"apiVersion": "v1", "kind": "List",
                                              "items": items}))
    proxy = env.up(None)
    assert proxy.get("/", host="list.test").backend == "listed"


def test_many_ingresses(env):
    b = env.backend("many")
    docs = [ingress_class()] + service_for("many", [b])
    n = 300
    docs += [ingress("ing-%d" % i, [("h%d.many.test" % i, [("/p%d" % i, "Prefix", "many", 80)])])
             for i in range(n)]
    env.write_manifests(docs)
    t0 = time.monotonic()
    env.render()
    took = time.monotonic() - t0
    print("agent --once with %d Ingresses: %.0f ms" % (n, took * 1000))
    assert took < 3, took
    proxy = env.start_proxy()
    for i in (0, 1, 150, 299):
        assert proxy.get("/p%d/x" % i, host="h%d.many.test" % i).backend == "many"
        assert proxy.get("/p%d" % (i + 1), host="h%d.many.test" % i).status == 404


def test_configmap_style_atomic_swap(env):
    """A ConfigMap volume updates by swapping the "..data" symlink to a new hidden folder;
    the visible files are symlinks through it. The swap must be noticed."""
    one, two = env.backend("one"), env.backend("two")

    def publish(tag, svc):
        d = os.path.join(env.manifests, ".." + tag)
        os.mkdir(d)
        with open(os.path.join(d, "all.yaml"), "w") as f:
            f.write(dump_docs([ingress_class()] + service_for("one", [one]) +
                              service_for("two", [two]) +
                              [ingress("w", [("w.test", [("/", "Prefix", svc, 80)])])]))
        tmp = os.path.join(env.manifests, "..data_tmp")
        os.symlink(".." + tag, tmp)
        os.rename(tmp, os.path.join(env.manifests, "..data"))

    publish("2026_01_01_v1", "one")
    os.symlink("..data/all.yaml", os.path.join(env.manifests, "all.yaml"))
    env.start_agent()
    proxy = env.start_proxy()
    assert proxy.get("/", host="w.test").backend == "one"
    publish("2026_01_01_v2", "two")
    shutil.rmtree(os.path.join(env.manifests, "..2026_01_01_v1"))
    measure(lambda: proxy.get("/", host="w.test").backend == "two", "ConfigMap swap latency")
