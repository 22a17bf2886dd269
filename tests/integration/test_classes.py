"""IngressClass selection: which Ingresses gatehouse serves."""
from helpers import CONTROLLER, ingress, ingress_class, service_for

LEGACY = "kubernetes.io/ingress.class"


def rule(host):
    return [(host, [("/", "Prefix", "svc-b", 80)])]


def test_class_selection_without_default_class(env):
    docs = [ingress_class("gatehouse"), ingress_class("gh-second"),
            # another controller's class, even marked default, does not make class-less ours
            ingress_class("other", controller="example.com/other", default=True)]
    docs += service_for("svc-b", [env.backend("b")])
    docs += [
        ingress("named", rule("named.test"), cls="gatehouse"),
        ingress("second", rule("second.test"), cls="gh-second"),
        ingress("other", rule("other.test"), cls="other"),
        ingress("classless", rule("classless.test"), cls=None),
        ingress("unknown-class", rule("unknown.test"), cls="nonexistent"),
        ingress("legacy-ours", rule("legacy-ours.test"), cls="other",
                annotations={LEGACY: "gatehouse"}),
        ingress("legacy-other", rule("legacy-other.test"), cls="gatehouse",
                annotations={LEGACY: "other"}),
    ]
    proxy = env.up(docs)
    expect = {"named.test": 200, "second.test": 200, "legacy-ours.test": 200,
              "other.test": 404, "classless.test": 404, "unknown.test": 404,
              "legacy-other.test": 404}
    got = {h: proxy.get("/", host=h).status for h in expect}
    assert got == expect


def test_classless_served_with_our_default_class(env):
    docs = [ingress_class("gatehouse", default=True),
            ingress_class("other", controller="example.com/other")]
    docs += service_for("svc-b", [env.backend("b")])
    docs += [
        ingress("classless", rule("classless.test"), cls=None),
        ingress("other", rule("other.test"), cls="other"),
        ingress("legacy-other", rule("legacy-other.test"), cls=None,
                annotations={LEGACY: "other"}),
    ]
    proxy = env.up(docs)
    r = proxy.get("/", host="classless.test")
    assert r.status == 200 and r.backend == "b", r
    assert proxy.get("/", host="other.test").status == 404
    assert proxy.get("/", host="legacy-other.test").status == 404


def test_class_controller_must_match_exactly(env):
    docs = [ingress_class("lookalike", controller=CONTROLLER + "-fork", default=True)]
    docs += service_for("svc-b", [env.backend("b")])
    docs += [ingress("a", rule("a.test"), cls="lookalike"),
             ingress("b", rule("b.test"), cls=None)]
    proxy = env.up(docs)
    assert proxy.get("/", host="a.test").status == 404
    assert proxy.get("/", host="b.test").status == 404


def test_controller_name_from_agent_config(env):
    cfg = env.write_config("ingress:\n  controller: example.com/custom-edge\n")
    docs = [ingress_class("custom", controller="example.com/custom-edge"),
            ingress_class("gatehouse")]
    docs += service_for("svc-b", [env.backend("b")])
    docs += [ingress("custom", rule("custom.test"), cls="custom"),
             ingress("default-controller", rule("default.test"), cls="gatehouse")]
    env.write_manifests(docs)
    env.render(extra=["--config", cfg])
    proxy = env.start_proxy()
    assert proxy.get("/", host="custom.test").backend == "b"
    assert proxy.get("/", host="default.test").status == 404
