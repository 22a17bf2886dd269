"""Connection handling: keep-alive, pipelining, WebSocket, graceful shutdown."""
import base64
import hashlib
import os
import signal
import socket
import threading
import time

import pytest

import helpers
from backend import ws_accept, ws_frame
from helpers import ingress, ingress_class, raw_request, service_for, wait_until

HOST = "conn.test"


def docs_for(env, backend):
    return [ingress_class()] + service_for("echo", [backend]) + \
        [ingress("c", [(HOST, [("/", "Prefix", "echo", 80)])])]


@pytest.fixture(scope="module")
def proxy(module_env):
    return module_env.up(docs_for(module_env, module_env.backend("echo")))


def test_keep_alive_reuse(env):
    env.render(docs_for(env, env.backend("echo")))
    proxy = env.start_proxy()

    def total():
        return helpers.metric_sum(proxy.metrics(), "gatehouse_connections_total")
    # the harness' one probe connection (start_proxy waits until the port accepts) is counted
    before = wait_until(lambda: total() >= 1 and total(), 2, what="probe connection counted")
    with proxy.raw() as c:
        for i in range(5):
            c.send(raw_request("GET", "/ka/%d" % i, HOST))
            r = c.read_response()
            assert r.status == 200 and r.json["path"] == "/ka/%d" % i, r
            assert (r.header("Connection") or "").lower() != "close"
        # answers made by the proxy itself (404: no route) keep the connection too
        c.send(raw_request("GET", "/no-route", "unknown-host.test"))
        r = c.read_response()
        assert r.status == 404, r
        c.send(raw_request("GET", "/after-404", HOST))
        r = c.read_response()
        assert r.status == 200 and r.json["path"] == "/after-404", r
        assert not c.is_closed(timeout=0.2), "proxy closed a keep-alive connection"
    after = total()
    assert after - before == 1, "7 requests used %d connections" % (after - before)


def test_connection_close_and_http10(proxy):
    with proxy.raw() as c:
        c.send(raw_request("GET", "/close", HOST, [("Connection", "close")]))
        r = c.read_response()
        assert r.status == 200
        assert c.is_closed(), "connection open after Connection: close"
    with proxy.raw() as c:
        c.send(b"GET /http10 HTTP/1.0\r\nHost: " + HOST.encode() + b"\r\n\r\n")
        r = c.read_response()
        assert r.status == 200 and r.json["path"] == "/http10"
        assert c.is_closed(), "HTTP/1.0 connection without keep-alive left open"


def test_pipelined_requests_answered_in_order(proxy):
    body = b"pipelined-body"
    reqs = (raw_request("GET", "/p1?_sleep=0.4", HOST)
            + raw_request("POST", "/p2", HOST, [("Content-Length", str(len(body)))], body)
            + raw_request("GET", "/p3", HOST)
            + raw_request("HEAD", "/p4", HOST)
            + raw_request("GET", "/p5", HOST))
    with proxy.raw() as c:
        c.send(reqs)
        got = []
        for i in range(5):
            r = c.read_response(head_request=(i == 3))
            assert r.status == 200, r
            got.append(None if i == 3 else r.json["path"])
        assert got == ["/p1", "/p2", "/p3", None, "/p5"]


def ws_read(c):
    b1, b2 = c.read_exact(2)
    assert not (b2 & 0x80), "server frames must not be masked"
    n = b2 & 0x7F
    if n == 126:
        n = int.from_bytes(c.read_exact(2), "big")
    elif n == 127:
        n = int.from_bytes(c.read_exact(8), "big")
    return b1 & 0x0F, c.read_exact(n)


def test_websocket_echo(proxy):
    key = base64.b64encode(os.urandom(16)).decode()
    with proxy.raw() as c:
        c.send(raw_request("GET", "/ws", HOST, [("Upgrade", "websocket"), ("Connection", "Upgrade"),
                                                ("Sec-WebSocket-Key", key),
                                                ("Sec-WebSocket-Version", "13")]))
        r = c.read_response()
        assert r.status == 101, r
        assert (r.header("Upgrade") or "").lower() == "websocket"
        assert r.header("Sec-WebSocket-Accept") == ws_accept(key)
        c.send(ws_frame(1, b"hello gatehouse", mask=os.urandom(4)))
        assert ws_read(c) == (1, b"hello gatehouse")
        big = os.urandom(70000)
        c.send(ws_frame(2, big, mask=os.urandom(4)))
        assert ws_read(c) == (2, big)
        c.send(ws_frame(9, b"ping!", mask=os.urandom(4)))
        assert ws_read(c) == (10, b"ping!")
        c.send(ws_frame(8, b"\x03\xe8", mask=os.urandom(4)))
        assert ws_read(c) == (8, b"\x03\xe8")
        assert c.is_closed(), "connection left open after the WebSocket close handshake"


def connect_refused(port):
    try:
        s = socket.create_connection(("127.0.0.1", port), timeout=1)
    except ConnectionRefusedError:
        return True
    s.close()
    return False


def test_graceful_shutdown(env):
    backend = env.backend("slow")
    env.render(docs_for(env, backend))
    proxy = env.start_proxy(extra=["--drain-timeout", "8000"])
    # an idle keep-alive connection, which the drain must close
    idle = proxy.raw()
    idle.send(raw_request("GET", "/idle", HOST))
    assert idle.read_response().status == 200

    result = {}

    def slow():
        try:
            result["r"] = proxy.get("/slow?_sleep=2", host=HOST, timeout=15)
        except Exception as e:  # noqa: BLE001
            result["e"] = e
    t = threading.Thread(target=slow)
    t.start()
    wait_until(lambda: "/slow" in backend.paths(), 3, what="slow request at the backend")
    t_term = time.monotonic()
    proxy.signal(signal.SIGTERM)

    wait_until(lambda: connect_refused(proxy.http_port), 1.0,
               what="new connections refused after SIGTERM")

    def not_ready():
        try:
            return proxy.admin("/readyz").status == 503
        except OSError:
            return True  # admin listener already closed: not ready either
    wait_until(not_ready, 1.0, what="/readyz not 200 while draining")
    assert t.is_alive(), "slow request already finished: test did not overlap the drain"
    assert idle.is_closed(timeout=2), "idle keep-alive connection not closed during drain"
    idle.close()

    t.join(10)
    assert "e" not in result, "in-flight request failed during drain: %r" % result.get("e")
    r = result["r"]
    assert r.status == 200 and r.json["path"] == "/slow", r
    rc = proxy.wait(timeout=5)
    took = time.monotonic() - t_term
    print("proxy exited %.2fs after SIGTERM" % took)
    assert rc == 0, "exit code %s after SIGTERM" % rc
    assert took < 5, "drain took %.1fs for a 2s request" % took


def test_upstream_idle_close_is_not_an_error(env):
    """The backend closes a kept-alive upstream connection while it sits idle in the proxy's
    pool (backend keep-alive timeout): the next client request must still succeed."""
    backend = env.backend("idle")
    env.render(docs_for(env, backend))
    proxy = env.start_proxy(workers=1)
    for i in range(3):
        r = proxy.get("/first-%d?_close_after=0.05" % i, host=HOST)
        assert r.status == 200, r
        wait_until(lambda: backend.events.count("closed-idle") > i, 3,
                   what="backend closed the idle connection")
        time.sleep(0.1)  # the close reaches the proxy's side (nothing to poll)
        r = proxy.get("/after-close-%d" % i, host=HOST)
        assert r.status == 200 and r.json["path"] == "/after-close-%d" % i, r


def test_concurrent_clients_get_their_own_answers(proxy):
    errors = []

    def client(n):
        try:
            with proxy.raw(timeout=10) as c:
                for i in range(10):
                    path = "/cc/%d/%d" % (n, i)
                    c.send(raw_request("GET", path, HOST))
                    r = c.read_response()
                    if r.status != 200 or r.json["path"] != path:
                        errors.append((path, r))
        except Exception as e:  # noqa: BLE001
            errors.append((n, repr(e)))
    threads = [threading.Thread(target=client, args=(n,)) for n in range(20)]
    for t in threads:
        t.start()
    for t in threads:
        t.join(30)
    assert not errors, errors[:5]


def test_large_response_body(proxy):
    n = 8 * 1024 * 1024 + 123
    r = proxy.get("/download?_size=%d" % n, host=HOST, timeout=20)
    assert r.status == 200
    assert len(r.body) == n
    assert hashlib.sha256(r.body).hexdigest() == r.header("X-Body-Sha256")
