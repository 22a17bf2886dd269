"""What the proxy does to requests and responses on the way through: forwarding headers,
hop-by-hop removal, response headers, methods with bodies (Content-Length and chunked), HEAD,
100-continue, streaming responses, large bodies."""
import hashlib
import os
import re
import time

import pytest

from helpers import ingress, ingress_class, raw_request, service_for, wait_until

HOST = "hdr.test"


def docs_for(env):
    return [ingress_class()] + service_for("echo", [env.backend("echo")]) + \
        [ingress("echo", [(HOST, [("/", "Prefix", "echo", 80)])])]


@pytest.fixture(scope="module")
def proxy(module_env):
    return module_env.up(docs_for(module_env))


def test_forwarding_headers(proxy):
    r = proxy.get("/fwd", host=HOST)
    assert r.status == 200, r
    assert r.req_header("Host") == HOST
    assert r.req_header("X-Forwarded-For") == "127.0.0.1"
    assert r.req_header("X-Real-IP") == "127.0.0.1"
    assert r.req_header("X-Forwarded-Proto") == "http"
    assert r.req_header("X-Forwarded-Host") == HOST
    assert r.req_header("X-Forwarded-Port") == str(proxy.http_port)
    rid = r.req_header("X-Request-ID")
    assert rid and re.fullmatch(r"[A-Za-z0-9._-]{8,}", rid), rid
    # generated per request
    rid2 = proxy.get("/fwd", host=HOST).req_header("X-Request-ID")
    assert rid2 and rid2 != rid


def test_host_preserved_with_port_and_case(proxy):
    r = proxy.get("/h", host="HDR.test:8080")
    assert r.status == 200, r
    assert r.req_header("Host") == "HDR.test:8080"
    assert len(r.req_header_all("Host")) == 1


def test_client_request_id_kept_and_client_ip_not_spoofable(proxy):
    r = proxy.get("/id", host=HOST, headers={"X-Request-ID": "client-chosen-id-42",
                                             "X-Real-IP": "198.51.100.9",
                                             "X-Forwarded-For": "203.0.113.7"})
    assert r.status == 200, r
    assert r.req_header_all("X-Request-ID") == ["client-chosen-id-42"]
    assert r.req_header_all("X-Real-IP") == ["127.0.0.1"]
    xff = r.req_header_all("X-Forwarded-For")
    assert len(xff) == 1 and xff[0].replace(" ", "").split(",")[-1] == "127.0.0.1", xff


def test_hop_by_hop_headers_removed(proxy):
    with proxy.raw() as c:
        c.send(raw_request("GET", "/hop", HOST, [
            ("Connection", "keep-alive, X-Secret-Hop"), ("X-Secret-Hop", "must-not-pass"),
            ("Keep-Alive", "timeout=5"), ("Proxy-Connection", "keep-alive"),
            ("TE", "trailers"), ("X-End-To-End", "must-pass")]))
        r = c.read_response()
    assert r.status == 200, r
    names = {k.lower() for k, _ in r.json["headers"]}
    for h in ("x-secret-hop", "keep-alive", "proxy-connection", "te"):
        assert h not in names, "hop-by-hop header %s reached the backend: %s" % (h, names)
    conn = (r.req_header("Connection") or "").lower()
    assert "x-secret-hop" not in conn
    assert r.req_header("X-End-To-End") == "must-pass"


def test_response_headers_pass_through(proxy):
    r = proxy.get("/resp?_hdr=X-Custom-Resp:hello%20world&_hdr=Set-Cookie:a%3D1"
                  "&_hdr=Set-Cookie:b%3D2&_hdr=Cache-Control:no-store", host=HOST)
    assert r.status == 200, r
    assert r.header("Server") == "backend-echo"
    assert r.header("Content-Type") == "application/json"
    assert r.header("X-Backend") == "echo"
    assert r.header("X-Custom-Resp") == "hello world"
    assert r.header("Cache-Control") == "no-store"
    assert sorted(r.header_all("Set-Cookie")) == ["a=1", "b=2"]
    assert re.fullmatch(r"\w{3}, \d\d \w{3} \d{4} \d\d:\d\d:\d\d GMT", r.header("Date") or "")
    assert len(r.header_all("Date")) == 1 and len(r.header_all("Server")) == 1


def test_backend_status_passes_through(proxy):
    for code in (201, 302, 404, 418, 500, 503):
        r = proxy.get("/status?_status=%d" % code, host=HOST)
        assert r.status == code, r
        assert r.backend == "echo"


@pytest.mark.parametrize("method", ["POST", "PUT", "PATCH", "DELETE"])
def test_methods_with_content_length_body(proxy, method):
    body = os.urandom(70000)
    r = proxy.request(method, "/body", host=HOST, body=body,
                      headers={"Content-Type": "application/octet-stream"})
    assert r.status == 200, r
    assert r.json["method"] == method
    assert r.json["body_len"] == len(body)
    assert r.json["body_sha256"] == hashlib.sha256(body).hexdigest()


@pytest.mark.parametrize("method", ["POST", "PUT", "PATCH", "DELETE"])
def test_methods_with_chunked_body(proxy, method):
    pieces = [os.urandom(n) for n in (1, 4096, 10, 65536, 3)]
    body = b"".join(pieces)
    chunked = b"".join(b"%x\r\n%s\r\n" % (len(p), p) for p in pieces) + b"0\r\n\r\n"
    with proxy.raw() as c:
        c.send(raw_request(method, "/chunked", HOST, [("Transfer-Encoding", "chunked")]))
        c.send(chunked[:5000])
        time.sleep(0.05)  # the body arrives in pieces
        c.send(chunked[5000:])
        r = c.read_response()
    assert r.status == 200, r
    assert r.json["method"] == method
    assert r.json["body_len"] == len(body)
    assert r.json["body_sha256"] == hashlib.sha256(body).hexdigest()


def test_head_has_no_body(proxy):
    with proxy.raw() as c:
        # HEAD then GET on one connection: if the proxy sent a body after the HEAD answer,
        # the second answer would not parse
        c.send(raw_request("HEAD", "/head", HOST) + raw_request("GET", "/after-head", HOST))
        h = c.read_response(head_request=True)
        g = c.read_response()
    assert h.status == 200, h
    assert h.header("Content-Type") == "application/json"
    assert g.status == 200 and g.json["path"] == "/after-head", g
    assert g.json["method"] == "GET"


def test_expect_100_continue(proxy):
    body = os.urandom(5000)
    with proxy.raw() as c:
        c.send(raw_request("POST", "/expect", HOST, [("Expect", "100-continue"),
                                                     ("Content-Length", str(len(body)))]))
        interim = c.read_response(allow_interim=True)
        assert interim.status == 100, "expected 100 Continue before sending the body, got %r" \
            % interim
        c.send(body)
        r = c.read_response()
    assert r.status == 200, r
    assert r.json["body_len"] == len(body)
    assert r.json["body_sha256"] == hashlib.sha256(body).hexdigest()


def test_streaming_chunked_response_not_buffered(proxy):
    with proxy.raw(timeout=10) as c:
        t0 = time.monotonic()
        c.send(raw_request("GET", "/stream?_chunks=4&_delay=0.5", HOST))
        status, headers = c.read_head()
        assert status == 200
        first = int(c.read_line().split(b";")[0], 16)
        data = c.read_exact(first)
        t_first = time.monotonic() - t0
        c.read_line()
        rest = []
        while True:
            n = int(c.read_line().split(b";")[0], 16)
            if n == 0:
                c.read_line()
                break
            rest.append(c.read_exact(n))
            c.read_line()
        t_all = time.monotonic() - t0
    body = data + b"".join(rest)
    assert body == b"chunk-0;chunk-1;chunk-2;chunk-3;"
    print("first chunk after %.3fs, whole body after %.3fs" % (t_first, t_all))
    assert t_all >= 1.4
    assert t_first < 0.8, "first chunk only after %.2fs: response buffered" % t_first


def test_large_body_streamed_when_allowed(env):
    cfg = env.write_config("proxy:\n  maxBodyBytes: 8388608\n")
    proxy = env.up(docs_for(env), config=cfg)
    body = os.urandom(5 * 1024 * 1024)
    r = proxy.request("POST", "/big", host=HOST, body=body)
    assert r.status == 200, r
    assert r.json["body_len"] == len(body)
    assert r.json["body_sha256"] == hashlib.sha256(body).hexdigest()
    # chunked too
    with proxy.raw(timeout=20) as c:
        c.send(raw_request("PUT", "/big-chunked", HOST, [("Transfer-Encoding", "chunked")]))
        for i in range(0, len(body), 1 << 20):
            piece = body[i:i + (1 << 20)]
            c.send(b"%x\r\n%s\r\n" % (len(piece), piece))
        c.send(b"0\r\n\r\n")
        r = c.read_response()
    assert r.status == 200, r
    assert r.json["body_sha256"] == hashlib.sha256(body).hexdigest()


def test_large_upload_streamed_not_buffered(env):
    """The request head and the first part of a large body reach the backend before the client
    has sent the rest (the proxy streams request bodies rather than spooling them)."""
    cfg = env.write_config("proxy:\n  maxBodyBytes: 8388608\n")
    backend = env.backend("echo")
    env.render([ingress_class()] + service_for("echo", [backend]) +
               [ingress("echo", [(HOST, [("/", "Prefix", "echo", 80)])])])
    proxy = env.start_proxy(config=cfg)
    body = os.urandom(5 * 1024 * 1024)
    with proxy.raw(timeout=20) as c:
        c.send(raw_request("POST", "/streamed", HOST, [("Content-Length", str(len(body)))]))
        c.send(body[:1024 * 1024])
        wait_until(lambda: "/streamed" in backend.paths(), 3,
                   what="backend to see the request while 4 MiB of the body are unsent")
        c.send(body[1024 * 1024:])
        r = c.read_response()
    assert r.status == 200, r
    assert r.json["body_sha256"] == hashlib.sha256(body).hexdigest()


def test_absolute_form_request_target(proxy):
    """RFC 9112 3.2.2: a server must accept absolute-form; its authority is the host."""
    with proxy.raw() as c:
        c.send(b"GET http://" + HOST.encode() + b"/abs?q=1 HTTP/1.1\r\nHost: elsewhere.test\r\n"
               b"\r\n")
        r = c.read_response()
    assert r.status == 200 and r.backend == "echo", r
    assert r.json["path"] == "/abs" and r.json["query"] == "q=1"
    assert r.req_header("Host") == HOST
