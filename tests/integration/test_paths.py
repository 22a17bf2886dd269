"""Path matching end to end (manifests -> agent -> routes file -> proxy -> backend), row by row
the examples table of the Kubernetes Ingress documentation
(https://kubernetes.io/docs/concepts/services-networking/ingress/#examples, under "Path types"),
plus ImplementationSpecific (treated as Prefix) and query strings (ignored for matching).

Each row gets its own host; the row's paths point at services a, b, c (in order) except Exact
paths of the mixed row, which point at service "exact". Unmatched requests go to the Ingress'
spec.defaultBackend, service "default"."""
import pytest

from helpers import ingress, ingress_class, service_for

A, B, C, X, D = "a", "b", "c", "exact", "default"

# (row id, [(path, type)], request path, expected backend)
ROWS = [
    ("prefix-root-all", [("/", "Prefix")], "/", A),
    ("prefix-root-all-deep", [("/", "Prefix")], "/x/y/z", A),
    ("exact-foo-foo", [("/foo", "Exact")], "/foo", A),
    ("exact-foo-bar", [("/foo", "Exact")], "/bar", D),
    ("exact-foo-foo-slash", [("/foo", "Exact")], "/foo/", D),
    ("exact-foo-slash-foo", [("/foo/", "Exact")], "/foo", D),
    ("prefix-foo-foo", [("/foo", "Prefix")], "/foo", A),
    ("prefix-foo-foo-slash", [("/foo", "Prefix")], "/foo/", A),
    ("prefix-foo-slash-foo", [("/foo/", "Prefix")], "/foo", A),
    ("prefix-foo-slash-foo-slash", [("/foo/", "Prefix")], "/foo/", A),
    ("prefix-aaa-bb-not-bbb", [("/aaa/bb", "Prefix")], "/aaa/bbb", D),
    ("prefix-aaa-bbb-same", [("/aaa/bbb", "Prefix")], "/aaa/bbb", A),
    ("prefix-trailing-slash-ignored", [("/aaa/bbb/", "Prefix")], "/aaa/bbb", A),
    ("prefix-matches-trailing-slash", [("/aaa/bbb", "Prefix")], "/aaa/bbb/", A),
    ("prefix-matches-subpath", [("/aaa/bbb", "Prefix")], "/aaa/bbb/ccc", A),
    ("prefix-not-string-prefix", [("/aaa/bbb", "Prefix")], "/aaa/bbbxyz", D),
    ("prefix-longest-aaa", [("/", "Prefix"), ("/aaa", "Prefix")], "/aaa/ccc", B),
    ("prefix-longest-aaa-bbb", [("/", "Prefix"), ("/aaa", "Prefix"), ("/aaa/bbb", "Prefix")],
     "/aaa/bbb", C),
    ("prefix-longest-root", [("/", "Prefix"), ("/aaa", "Prefix"), ("/aaa/bbb", "Prefix")],
     "/ccc", A),
    ("prefix-none-default-backend", [("/aaa", "Prefix")], "/ccc", D),
    ("mixed-exact-preferred", [("/foo", "Prefix"), ("/foo", "Exact")], "/foo", X),
    ("mixed-prefix-for-subpath", [("/foo", "Prefix"), ("/foo", "Exact")], "/foo/x", A),
    # ImplementationSpecific is Prefix here (as documented by the project)
    ("implspecific-subpath", [("/foo", "ImplementationSpecific")], "/foo/bar", A),
    ("implspecific-not-string-prefix", [("/foo", "ImplementationSpecific")], "/foobar", D),
    # the query string plays no part in matching
    ("exact-with-query", [("/foo", "Exact")], "/foo?x=1&y=/bar", A),
    ("prefix-query-not-path", [("/aaa/bbb", "Prefix")], "/aaa?/bbb", D),
]


def host_of(row_id):
    return "%s.paths.test" % row_id


@pytest.fixture(scope="module")
def proxy(module_env):
    env = module_env
    docs = [ingress_class()]
    for name in (A, B, C, X, D):
        docs += service_for("svc-" + name, [env.backend(name)])
    rules = []
    for row_id, paths, _, _ in ROWS:
        plist = []
        order = iter((A, B, C))
        for path, ptype in paths:
            svc = X if (ptype == "Exact" and len(paths) > 1) else next(order)
            plist.append((path, ptype, "svc-" + svc, 80))
        rules.append((host_of(row_id), plist))
    docs.append(ingress("paths", rules, default_backend=("svc-" + D, 80)))
    return env.up(docs)


@pytest.mark.parametrize("row_id,paths,req,expected", ROWS, ids=[r[0] for r in ROWS])
def test_path_table(proxy, row_id, paths, req, expected):
    r = proxy.get(req, host=host_of(row_id))
    assert r.status == 200, r
    assert r.backend == expected, "%s %s with paths %s went to %r, expected %r" % (
        host_of(row_id), req, paths, r.backend, expected)
    # the request reaches the backend unchanged (no rewrite), query included
    path, _, query = req.partition("?")
    assert r.json["path"] == path
    assert r.json["query"] == query
