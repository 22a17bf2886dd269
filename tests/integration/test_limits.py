"""Limits and upstream failures: 431, 413, 408, 504, 502."""
import time

import pytest

from helpers import closed_port, ingress, ingress_class, raw_request, service_for

HOST = "lim.test"
CONFIG = """\
proxy:
  clientHeaderTimeout: 400
  upstreamReadTimeout: "1s"
  upstreamConnectTimeout: 1000
"""


def docs_for(env):
    return [ingress_class()] + service_for("echo", [env.backend("echo")]) + \
        service_for("refused", ["127.0.0.1:%d" % closed_port()]) + \
        [ingress("lim", [(HOST, [("/", "Prefix", "echo", 80),
                                 ("/refused", "Prefix", "refused", 80)])])]


@pytest.fixture(scope="module")
def proxy(module_env):
    return module_env.up(docs_for(module_env), config=module_env.write_config(CONFIG))


def send_ignoring_reset(c, data):
    try:
        c.send(data)
    except (BrokenPipeError, ConnectionResetError):
        pass


def test_431_header_too_large(proxy):
    with proxy.raw() as c:
        send_ignoring_reset(c, raw_request("GET", "/", HOST, [("X-Big", "a" * 20000)]))
        r = c.read_response()
    assert r.status == 431, r
    # a large but acceptable header (under the 16 KiB default) passes
    r = proxy.get("/", host=HOST, headers={"X-Big": "b" * 8000})
    assert r.status == 200 and r.req_header("X-Big") == "b" * 8000, r


def test_max_header_bytes_flag_overrides_config(env):
    cfg = env.write_config("proxy:\n  maxHeaderBytes: 1024\n")
    proxy = env.up(docs_for(env), config=cfg, extra=["--max-header-bytes", "4096"])
    assert proxy.get("/", host=HOST, headers={"X-Mid": "m" * 2000}).status == 200
    with proxy.raw() as c:
        send_ignoring_reset(c, raw_request("GET", "/", HOST, [("X-Big", "a" * 5000)]))
        assert c.read_response().status == 431


def test_413_body_over_default_1mib(proxy):
    limit = 1024 * 1024
    with proxy.raw() as c:
        c.send(raw_request("POST", "/", HOST, [("Content-Length", str(limit + 1))]))
        r = c.read_response()
    assert r.status == 413, r
    # exactly the limit is fine
    body = b"x" * limit
    r = proxy.request("POST", "/exact-limit", host=HOST, body=body)
    assert r.status == 200 and r.json["body_len"] == limit, r


def test_413_chunked_body_over_limit(proxy):
    with proxy.raw() as c:
        c.send(raw_request("POST", "/chunked-big", HOST, [("Transfer-Encoding", "chunked")]))
        piece = b"y" * 65536
        for _ in range(18):  # 1.125 MiB
            send_ignoring_reset(c, b"%x\r\n%s\r\n" % (len(piece), piece))
        send_ignoring_reset(c, b"0\r\n\r\n")
        r = c.read_response()
    assert r.status == 413, r


def test_408_client_header_timeout(proxy):
    with proxy.raw() as c:
        t0 = time.monotonic()
        c.send(b"GET / HTTP/1.1\r\nHost: " + HOST.encode() + b"\r\nX-Slow: ")
        r = c.read_response()
        took = time.monotonic() - t0
        assert r.status == 408, r
        assert c.is_closed(), "connection left open after 408"
    print("408 after %.3fs" % took)
    assert 0.3 <= took < 2.0, took


def test_504_upstream_read_timeout(proxy):
    t0 = time.monotonic()
    r = proxy.get("/slow?_sleep=3", host=HOST)
    took = time.monotonic() - t0
    assert r.status == 504, r
    assert took < 2.5, "504 after %.2fs with upstreamReadTimeout 1s" % took


def test_502_connect_refused(proxy):
    t0 = time.monotonic()
    r = proxy.get("/refused", host=HOST)
    assert r.status == 502, r
    assert time.monotonic() - t0 < 2.0
    # the proxy is still healthy afterwards
    assert proxy.get("/ok", host=HOST).status == 200


def test_502_on_garbage_from_upstream(proxy):
    r = proxy.get("/garbage?_garbage=1", host=HOST)
    assert r.status == 502, r
    assert proxy.get("/ok", host=HOST).status == 200


def test_truncated_upstream_response_is_not_passed_off_as_complete(proxy):
    """The backend promises 1000 bytes and closes after 10: the client must not be left
    waiting, nor get a complete-looking response; the proxy closes the client connection
    (the status line may already be out)."""
    with proxy.raw(timeout=10) as c:
        t0 = time.monotonic()
        c.send(raw_request("GET", "/trunc?_truncate=1", HOST))
        data = c.read_to_eof(timeout=5)
        took = time.monotonic() - t0
    assert took < 3, "client connection left open %.1fs after the upstream died" % took
    if data.startswith(b"HTTP/1.1 200"):
        head, _, body = data.partition(b"\r\n\r\n")
        assert b"content-length: 1000" in head.lower(), data
        assert len(body) < 1000, data
    else:
        assert data.startswith(b"HTTP/1.1 502"), data
