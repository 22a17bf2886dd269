"""Host matching (exact, wildcard with exactly one extra label, case-insensitive, port ignored,
rules without host) and path precedence within a host, end to end through agent and proxy."""
import pytest

from helpers import ingress, ingress_class, service_for

NAMES = ["exact-host", "wildcard", "wild-only", "bar-api", "bar-api-exact", "bar-v1", "nohost"]


@pytest.fixture(scope="module")
def proxy(module_env):
    env = module_env
    docs = [ingress_class()]
    for n in NAMES:
        docs += service_for("svc-" + n, [env.backend(n)])
    docs.append(ingress("hosts", [
        ("foo.test", [("/", "Prefix", "svc-exact-host", 80)]),
        ("*.foo.test", [("/", "Prefix", "svc-wildcard", 80)]),
        ("*.wild.test", [("/", "Prefix", "svc-wild-only", 80)]),
        ("bar.test", [("/api", "Prefix", "svc-bar-api", 80),
                      ("/api", "Exact", "svc-bar-api-exact", 80),
                      ("/api/v1", "Prefix", "svc-bar-v1", 80)]),
        (None, [("/anyhost", "Prefix", "svc-nohost", 80)]),
    ]))
    return env.up(docs)


@pytest.mark.parametrize("host,path,expected", [
    ("foo.test", "/", "exact-host"),
    ("FOO.Test", "/x", "exact-host"),                 # case-insensitive
    ("foo.test:8080", "/", "exact-host"),             # port in Host ignored
    ("a.foo.test", "/", "wildcard"),                  # one extra label
    ("A.FOO.TEST:81", "/y", "wildcard"),
    ("x-1.wild.test", "/", "wild-only"),
    ("unknown.example", "/anyhost", "nohost"),        # rule without host: any host
    ("a.b.foo.test", "/anyhost", "nohost"),           # two extra labels: not the wildcard
    ("wild.test", "/anyhost/z", "nohost"),            # bare domain: not the wildcard
    ("127.0.0.1", "/anyhost", "nohost"),
])
def test_host_selects_backend(proxy, host, path, expected):
    r = proxy.get(path, host=host)
    assert r.status == 200, r
    assert r.backend == expected, "Host %s path %s -> %r" % (host, path, r.backend)


@pytest.mark.parametrize("host,path", [
    ("a.b.foo.test", "/"),       # wildcard needs exactly one extra label
    ("wild.test", "/"),          # "*.wild.test" does not match "wild.test"
    ("unknown.example", "/"),    # host-less rule only has /anyhost
    ("bar.test", "/anyhost"),    # the bar.test entry is the only one searched for bar.test
    ("bar.test", "/apiv1"),      # element-wise prefix
])
def test_unmatched_is_404_without_default_backend(proxy, host, path):
    r = proxy.get(path, host=host)
    assert r.status == 404, r
    assert r.backend is None, "404 must come from the proxy, got backend %r" % r.backend


@pytest.mark.parametrize("path,expected", [
    ("/api", "bar-api-exact"),        # Exact beats Prefix at equal length
    ("/api/", "bar-api"),
    ("/api/v2", "bar-api"),
    ("/api/v1", "bar-v1"),            # longest prefix wins
    ("/api/v1/users", "bar-v1"),
    ("/api/v10", "bar-api"),          # /api/v1 does not match /api/v10
])
def test_precedence(proxy, path, expected):
    r = proxy.get(path, host="bar.test")
    assert r.status == 200, r
    assert r.backend == expected, "bar.test%s -> %r" % (path, r.backend)
