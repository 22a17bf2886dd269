"""The fake API server (fake_apiserver.py) is faithful enough for the real kubectl ($KUBECTL or
kubectl on PATH: 1.20 and 1.32 are both tested), and its fault injection does what the agent's
tests rely on. Raw-HTTP checks use http.client with the test CA and https://localhost."""
import http.client
import json
import os
import signal
import socket
import ssl
import threading
import time

import pytest

from fake_apiserver import FakeApiServer, TestPki
from kubectl import Kubectl
from helpers import wait_until

TOKEN = "s3cret-token"
USER = "system:serviceaccount:gatehouse:agent"


@pytest.fixture(scope="module")
def pki(tmp_path_factory):
    return TestPki(tmp_path_factory.mktemp("pki"))


@pytest.fixture
def srv(pki):
    s = FakeApiServer(cert=pki.server_cert, key=pki.server_key, client_ca=pki.ca_cert,
                      tokens=[TOKEN], bookmark_interval=0.3).start()
    yield s
    s.stop()


@pytest.fixture
def kc(srv, pki, tmp_path):
    return Kubectl(srv.url, tmp_path / "kubectl", ca=pki.ca_cert, token=TOKEN)


# ---------------------------------------------------------------- objects and raw HTTP

def ingress(name, host="a.test", ns="default", labels=None):
    meta = {"name": name, "namespace": ns}
    if labels:
        meta["labels"] = labels
    return {"apiVersion": "networking.k8s.io/v1", "kind": "Ingress", "metadata": meta,
            "spec": {"ingressClassName": "gatehouse", "rules": [{"host": host, "http": {
                "paths": [{"path": "/", "pathType": "Prefix", "backend": {"service": {
                    "name": "web", "port": {"number": 80}}}}]}}]}}


SERVICE = {"apiVersion": "v1", "kind": "Service", "metadata": {"name": "web"},
           "spec": {"selector": {"app": "web"}, "ports": [{"name": "http", "port": 80}]}}
SLICE = {"apiVersion": "discovery.k8s.io/v1", "kind": "EndpointSlice",
         "metadata": {"name": "web-1", "labels": {"kubernetes.io/service-name": "web"}},
         "addressType": "IPv4", "ports": [{"name": "http", "port": 8080, "protocol": "TCP"}],
         "endpoints": [{"addresses": ["127.0.0.1"], "conditions": {"ready": True}}]}
SECRET = {"apiVersion": "v1", "kind": "Secret", "type": "kubernetes.io/tls",
          "metadata": {"name": "web-tls"},
          "data": {"tls.crt": "Y2VydA==", "tls.key": "a2V5"}}
ING_PATH = "/apis/networking.k8s.io/v1/namespaces/default/ingresses"


def conn(srv, pki, timeout=10):
    ctx = ssl.create_default_context(cafile=pki.ca_cert)
    return http.client.HTTPSConnection("localhost", srv.port, context=ctx, timeout=timeout)


def api(srv, pki, method, path, body=None, token=TOKEN, ctype="application/json"):
    """(status, headers dict, decoded JSON body)."""
    c = conn(srv, pki)
    headers = {"Accept": "application/json"}
    if token:
        headers["Authorization"] = "Bearer " + token
    data = None
    if body is not None:
        data = json.dumps(body).encode()
        headers["Content-Type"] = ctype
    c.request(method, path, body=data, headers=headers)
    r = c.getresponse()
    raw = r.read()
    c.close()
    return r.status, dict(r.getheaders()), json.loads(raw) if raw.startswith(b"{") else raw


class Watch:
    """A raw watch: events read line by line from the chunked stream on a reader thread."""

    def __init__(self, srv, pki, path):
        self.c = conn(srv, pki, timeout=10)
        self.c.request("GET", path, headers={"Authorization": "Bearer " + TOKEN})
        self.r = self.c.getresponse()
        assert self.r.status == 200, self.r.read()
        assert self.r.getheader("Transfer-Encoding") == "chunked"
        self.events, self.ended, self.error = [], False, None
        self.t = threading.Thread(target=self._read, daemon=True)
        self.t.start()

    def _read(self):
        buf = b""
        try:
            # read1, not readline: readline hides a stream cut before the terminating chunk
            while True:
                d = self.r.read1(65536)
                if not d:
                    break
                buf += d
                while b"\n" in buf:
                    line, buf = buf.split(b"\n", 1)
                    self.events.append(json.loads(line))
        except Exception as e:  # noqa: BLE001 - abrupt close is what some tests want
            self.error = e
        self.ended = True

    def types(self):
        return [e["type"] for e in self.events]

    def names(self, etype=None):
        return [e["object"]["metadata"].get("name") for e in self.events
                if etype is None or e["type"] == etype]

    def close(self):
        # unblock the reader first (it holds the response's buffer lock that close() takes)
        try:
            socket.socket.shutdown(self.c.sock, socket.SHUT_RDWR)
        except (OSError, AttributeError, TypeError):
            pass
        self.t.join(5)
        self.c.close()


# ---------------------------------------------------------------- kubectl

def test_kubectl_create_get_delete(srv, kc):
    for obj in (ingress("web"), SERVICE, SLICE, SECRET):
        kc.create(obj)
    ing = kc.json("get", "ingress", "web")
    assert ing["metadata"]["generation"] == 1 and ing["metadata"]["uid"]
    assert int(ing["metadata"]["resourceVersion"]) > 1000
    svc = kc.json("get", "svc", "web")
    assert svc["spec"]["clusterIP"] and svc["spec"]["ports"][0]["targetPort"] == 80
    assert kc.json("get", "secret", "web-tls")["type"] == "kubernetes.io/tls"
    assert kc.json("get", "endpointslices")["items"][0]["endpoints"][0]["addresses"] == \
        ["127.0.0.1"]
    assert kc.run("get", "ing", "-o", "name").out.split() == ["ingress.networking.k8s.io/web"]
    assert "web" in kc.run("get", "ing").out          # default (client-side) columns
    r = kc.create(ingress("web"), check=False)
    assert r.rc != 0 and "AlreadyExists" in r.err and "already exists" in r.err
    kc.run("delete", "ingress", "web")
    assert srv.get("ingresses", "default", "web") is None
    r = kc.run("get", "ingress", "web", check=False)
    assert r.rc != 0 and 'ingresses.networking.k8s.io "web" not found' in r.err


def test_kubectl_apply_twice(srv, kc):
    assert "created" in kc.apply(ingress("web")).out
    first = srv.get("ingresses", "default", "web")
    assert "configured" in kc.apply(ingress("web", host="b.test")).out
    now = srv.get("ingresses", "default", "web")
    assert now["spec"]["rules"][0]["host"] == "b.test"
    assert now["metadata"]["generation"] == 2
    assert now["metadata"]["uid"] == first["metadata"]["uid"]
    assert "unchanged" in kc.apply(ingress("web", host="b.test")).out
    assert srv.get("ingresses", "default", "web")["metadata"]["resourceVersion"] == \
        now["metadata"]["resourceVersion"]
    # a Service: apply sends a strategic merge patch with merge-by-port lists
    kc.apply(SERVICE)
    svc = json.loads(json.dumps(SERVICE))
    svc["spec"]["ports"][0]["targetPort"] = 9090
    kc.apply(svc)
    got = srv.get("services", "default", "web")["spec"]["ports"]
    assert got == [{"name": "http", "port": 80, "protocol": "TCP", "targetPort": 9090}]


def test_kubectl_get_watch(srv, kc):
    p = kc.popen("get", "ingresses", "-w", "-o", "name")
    try:
        lines = []

        def reader():
            for line in p.stdout:
                lines.append(line.decode().strip())
        threading.Thread(target=reader, daemon=True).start()
        wait_until(lambda: srv.open_watches("ingresses") == 1, 10, what="kubectl watch")
        srv.put(ingress("seen"))
        wait_until(lambda: "ingress.networking.k8s.io/seen" in lines, 10,
                   what="kubectl -w to print the new ingress")
    finally:
        os.killpg(p.pid, signal.SIGTERM)
        p.wait(5)


def test_kubectl_patch_merge_and_json(srv, kc):
    kc.create(ingress("web"))
    kc.run("patch", "ing", "web", "--type=merge", "-p",
           '{"metadata":{"labels":{"team":"a"}},"spec":{"ingressClassName":"other"}}')
    o = srv.get("ingresses", "default", "web")
    assert o["metadata"]["labels"] == {"team": "a"} and o["spec"]["ingressClassName"] == "other"
    assert o["metadata"]["generation"] == 2
    kc.run("patch", "ing", "web", "--type=json", "-p",
           '[{"op":"replace","path":"/spec/rules/0/host","value":"c.test"}]')
    assert srv.get("ingresses", "default", "web")["spec"]["rules"][0]["host"] == "c.test"


def test_kubectl_status_subresource(srv, kc, pki):
    kc.create(ingress("web"))
    before = srv.get("ingresses", "default", "web")
    lb = {"loadBalancer": {"ingress": [{"ip": "192.0.2.1"}]}}
    if kc.supports_subresource():
        kc.run("patch", "ing", "web", "--subresource=status", "--type=merge", "-p",
               json.dumps({"status": lb, "spec": {"ingressClassName": "ignored"}}))
    else:   # kubectl < 1.24: PUT the whole object to /status with replace --raw
        obj = kc.json("get", "ing", "web")
        obj["status"] = lb
        obj["spec"]["ingressClassName"] = "ignored"
        path = os.path.join(kc.dir, "status.json")
        with open(path, "w") as f:
            json.dump(obj, f)
        kc.run("replace", "--raw", ING_PATH + "/web/status", "-f", path)
    after = srv.get("ingresses", "default", "web")
    assert after["status"] == lb
    assert after["spec"] == before["spec"]
    assert after["metadata"]["generation"] == 1
    # and the main resource ignores status
    kc.run("patch", "ing", "web", "--type=merge", "-p", '{"status":{"loadBalancer":{}}}')
    assert srv.get("ingresses", "default", "web")["status"] == lb
    assert srv.count("PATCH", "/ingresses/web/status") + \
        srv.count("PUT", "/ingresses/web/status") == 1


def test_kubectl_unauthorized_and_forbidden(srv, kc, pki, tmp_path):
    bad = Kubectl(srv.url, tmp_path / "bad", ca=pki.ca_cert, token="wrong")
    r = bad.run("get", "ingresses", check=False)
    assert r.rc != 0 and "You must be logged in to the server" in r.err, r
    srv.deny(USER, "list", "ingresses")
    r = kc.run("get", "ingresses", "-A", check=False)
    assert r.rc != 0
    assert ('ingresses.networking.k8s.io is forbidden: User "%s" cannot list resource '
            '"ingresses" in API group "networking.k8s.io" at the cluster scope' % USER) in r.err
    status, _, body = api(srv, pki, "GET", ING_PATH)
    assert status == 403 and body["reason"] == "Forbidden" and body["details"] == {
        "group": "networking.k8s.io", "kind": "ingresses"}
    assert body["message"].endswith('in the namespace "default"')
    # token rotation: the old token stops working, the new one works
    srv.set_tokens(["rotated"])
    assert kc.run("get", "svc", check=False).rc != 0
    assert Kubectl(srv.url, tmp_path / "new", ca=pki.ca_cert, token="rotated").run(
        "get", "svc").rc == 0


def test_kubectl_client_certificate(srv, pki, tmp_path):
    cert, key = pki.client("alice")
    k = Kubectl(srv.url, tmp_path / "alice", ca=pki.ca_cert, cert=cert, key=key)
    k.create(ingress("web"))
    assert ("POST", ING_PATH + "?fieldManager=kubectl-create", "alice") in srv.requests or \
        any(m == "POST" and u == "alice" for m, _, u in srv.requests)


# ---------------------------------------------------------------- raw API

def test_errors_and_pagination(srv, pki):
    status, _, body = api(srv, pki, "POST", ING_PATH, {"kind": "Ingress", "metadata": {}})
    assert status == 422 and body["reason"] == "Invalid"
    status, _, body = api(srv, pki, "GET", ING_PATH + "/nope")
    assert status == 404 and body["reason"] == "NotFound"
    status, _, body = api(srv, pki, "GET", ING_PATH, token=None)
    assert status == 401 and body["reason"] == "Unauthorized"
    status, _, created = api(srv, pki, "POST", ING_PATH, ingress("a"))
    assert status == 201
    stale = dict(created, spec={"ingressClassName": "x"})
    api(srv, pki, "PUT", ING_PATH + "/a", dict(created, spec={"ingressClassName": "y"}))
    status, _, body = api(srv, pki, "PUT", ING_PATH + "/a", stale)
    assert status == 409 and body["reason"] == "Conflict"
    status, _, body = api(srv, pki, "PATCH", ING_PATH + "/a", {},
                          ctype="application/apply-patch+yaml")
    assert status == 415
    for i in range(7):
        srv.put(ingress("p%d" % i, labels={"n": str(i % 2)}))
    names, cont = [], ""
    while True:
        _, _, page = api(srv, pki, "GET", ING_PATH + "?limit=3&labelSelector=n%3D1" + cont)
        names += [o["metadata"]["name"] for o in page["items"]]
        assert "kind" not in page["items"][0]
        if not page["metadata"].get("continue"):
            break
        cont = "&continue=" + page["metadata"]["continue"]
    assert names == ["p1", "p3", "p5"]
    _, _, lst = api(srv, pki, "GET", "/apis/networking.k8s.io/v1/ingresses?labelSelector=!n")
    assert [o["metadata"]["name"] for o in lst["items"]] == ["a"]
    _, _, lst = api(srv, pki, "GET", "/api/v1/secrets?fieldSelector=type%3Dkubernetes.io/tls")
    assert lst["items"] == []


def test_fault_injection_retry_after(srv, pki):
    srv.fail_next(2, status=429, retry_after=3, match=lambda m, p: "/ingresses" in p)
    for _ in range(2):
        status, headers, body = api(srv, pki, "GET", ING_PATH)
        assert status == 429 and headers.get("Retry-After") == "3"
        assert body["reason"] == "TooManyRequests" and body["code"] == 429
    assert api(srv, pki, "GET", ING_PATH)[0] == 200
    srv.fail_next(1, status=503)
    assert api(srv, pki, "GET", "/api/v1/services")[0] == 503
    assert api(srv, pki, "GET", "/api/v1/services")[0] == 200


def test_watch_events_bookmarks_and_resume(srv, pki):
    srv.put(ingress("old"))
    _, _, lst = api(srv, pki, "GET", ING_PATH)
    rv = lst["metadata"]["resourceVersion"]
    w = Watch(srv, pki, ING_PATH + "?watch=1&allowWatchBookmarks=true&resourceVersion=" + rv)
    try:
        srv.put(ingress("new", labels={"a": "b"}))
        srv.put(ingress("new", host="x.test", labels={"a": "b"}))
        srv.delete("ingresses", "default", "new")
        wait_until(lambda: "BOOKMARK" in w.types(), 5, what="a bookmark")
        assert [t for t in w.types() if t != "BOOKMARK"] == ["ADDED", "MODIFIED", "DELETED"]
        bm = [e for e in w.events if e["type"] == "BOOKMARK"][-1]["object"]
        assert bm["kind"] == "Ingress" and int(bm["metadata"]["resourceVersion"]) >= int(rv) + 3
    finally:
        w.close()
    # resume from rv: replays the three events (no list needed)
    w = Watch(srv, pki, ING_PATH + "?watch=true&resourceVersion=" + rv)
    try:
        wait_until(lambda: len(w.events) == 3, 5, what="replayed events")
        assert w.names() == ["new", "new", "new"]
    finally:
        w.close()
    # label selector: a watch sees only matching objects; timeoutSeconds ends it cleanly
    w = Watch(srv, pki, ING_PATH + "?watch=1&labelSelector=a%3Db&timeoutSeconds=1")
    srv.put(ingress("nolabel"))
    srv.put(ingress("labelled", labels={"a": "b"}))
    wait_until(lambda: w.ended, 5, what="watch timeout")
    assert w.names() == ["labelled"] and w.error is None
    assert srv.count("GET", watch=True) == 3


def test_watch_expired_stale_resume(srv, pki):
    srv.put(ingress("a"))
    rv = srv.resource_version
    w = Watch(srv, pki, ING_PATH + "?watch=1&resourceVersion=" + rv)
    srv.put(ingress("b"))
    srv.expire_watches()
    wait_until(lambda: w.ended, 5, what="the expired watch to end")
    assert w.types() == ["ADDED", "ERROR"]
    err = w.events[-1]["object"]
    assert err["code"] == 410 and err["reason"] == "Expired"
    assert "too old resource version" in err["message"]
    w = Watch(srv, pki, ING_PATH + "?watch=1&resourceVersion=" + rv)
    wait_until(lambda: w.ended, 5, what="the stale resume to end")
    assert w.types() == ["ERROR"] and w.events[0]["object"]["code"] == 410
    # resuming from the current resourceVersion is fine
    w = Watch(srv, pki, ING_PATH + "?watch=1&resourceVersion=" + srv.resource_version)
    srv.put(ingress("c"))
    wait_until(lambda: w.names() == ["c"], 5, what="event after the compaction")
    w.close()


def test_drop_and_hang_watches(srv, pki):
    w = Watch(srv, pki, ING_PATH + "?watch=1")
    wait_until(lambda: srv.open_watches() == 1, 5, what="watch registered")
    srv.drop_watches()
    wait_until(lambda: w.ended, 5, what="dropped watch to end")
    assert w.error is not None        # no terminating chunk: http.client sees a broken stream
    w = Watch(srv, pki, ING_PATH + "?watch=1&allowWatchBookmarks=1")
    wait_until(lambda: srv.open_watches() == 1, 5, what="watch registered")
    srv.hang_watches()
    srv.put(ingress("unseen"))
    time.sleep(0.8)                   # > bookmark_interval: not even a bookmark comes
    assert w.events == [] and not w.ended
    srv.drop_watches()
    wait_until(lambda: w.ended, 5, what="hung watch dropped")


def test_outage_same_port_keeps_objects(srv, kc, pki):
    kc.create(ingress("web"))
    port = srv.port
    w = Watch(srv, pki, ING_PATH + "?watch=1")
    srv.stop()
    wait_until(lambda: w.ended, 5, what="watch cut by the outage")
    r = kc.run("get", "ing", "web", check=False, timeout=60)
    assert r.rc != 0 and ("refused" in r.err or "connect" in r.err), r
    srv.start()
    assert srv.port == port
    assert kc.json("get", "ing", "web")["metadata"]["name"] == "web"


def test_big_list_is_fast(srv, pki):
    big = [{"addresses": ["10.%d.%d.%d" % (i >> 16, (i >> 8) & 255, i & 255)],
            "conditions": {"ready": True}} for i in range(5)]
    for i in range(10000):
        srv.put(dict(ingress("ing-%05d" % i), status={}))
    for i in range(10000):
        srv.put({"apiVersion": "discovery.k8s.io/v1", "kind": "EndpointSlice",
                 "metadata": {"name": "s-%05d" % i}, "addressType": "IPv4",
                 "ports": [{"port": 80}], "endpoints": big})
    t = time.monotonic()
    _, _, lst = api(srv, pki, "GET", "/apis/networking.k8s.io/v1/ingresses")
    _, _, sl = api(srv, pki, "GET", "/apis/discovery.k8s.io/v1/endpointslices?limit=5000")
    took = time.monotonic() - t
    print("10k ingresses + 5k slices listed in %.2fs" % took)
    assert len(lst["items"]) == 10000 and len(sl["items"]) == 5000
    assert sl["metadata"]["remainingItemCount"] == 5000


def test_plain_http(tmp_path):
    # kubectl sends no bearer token over plain HTTP: an anonymous user name lets it in
    s = FakeApiServer(tls=False, tokens=["t"], anonymous="system:anonymous").start()
    try:
        assert s.url.startswith("http://localhost:")
        k = Kubectl(s.url, tmp_path / "k", token="t")
        assert k.run("get", "ns", "-o", "name").out.split() == ["namespace/default"]
        c = http.client.HTTPConnection("localhost", s.port, timeout=5)
        c.request("GET", "/api/v1/namespaces/default", headers={"Authorization": "Bearer t"})
        assert c.getresponse().status == 200
        assert list(s.requests)[-1] == ("GET", "/api/v1/namespaces/default", USER)
    finally:
        s.stop()
