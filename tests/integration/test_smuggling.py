"""Request smuggling attempts over raw sockets: each is answered 400 and the connection closed,
and the request hidden in the body (GET /smuggled) never reaches the backend."""
import time

import pytest

from helpers import ingress, ingress_class, service_for

HOST = "smuggle.test"
SMUGGLED = b"GET /smuggled HTTP/1.1\r\nHost: " + HOST.encode() + b"\r\n\r\n"
L = len(SMUGGLED)


def chunk(data):
    return b"%x\r\n%s\r\n" % (len(data), data)


def head(*lines):
    return b"\r\n".join([b"POST /victim HTTP/1.1", b"Host: " + HOST.encode()] + list(lines)) \
        + b"\r\n\r\n"


CASES = {
    "cl-and-te": head(b"Content-Length: 5", b"Transfer-Encoding: chunked")
    + b"0\r\n\r\n" + SMUGGLED,
    "te-and-cl": head(b"Transfer-Encoding: chunked", b"Content-Length: %d" % (L + 5))
    + b"0\r\n\r\n" + SMUGGLED,
    "duplicate-differing-cl": head(b"Content-Length: 0", b"Content-Length: %d" % L) + SMUGGLED,
    "cl-list-differing": head(b"Content-Length: 0, %d" % L) + SMUGGLED,
    "te-chunked-identity": head(b"Transfer-Encoding: chunked, identity")
    + b"0\r\n\r\n" + SMUGGLED,
    "obs-fold": head(b"X-Folded: a", b" b", b"Content-Length: 0") + SMUGGLED,
    "obs-fold-te": head(b"Content-Length: %d" % (L + 5), b"Transfer-Encoding:", b" chunked")
    + b"0\r\n\r\n" + SMUGGLED,
    "space-before-colon": head(b"Content-Length : %d" % L) + SMUGGLED,
    "space-before-colon-te": head(b"Transfer-Encoding : chunked", b"Content-Length: %d" % (L + 5))
    + b"0\r\n\r\n" + SMUGGLED,
    "bare-lf-in-headers": b"POST /victim HTTP/1.1\r\nHost: " + HOST.encode()
    + b"\r\nX-A: 1\nContent-Length: %d\r\n\r\n" % L + SMUGGLED,
    "bare-cr-in-headers": b"POST /victim HTTP/1.1\r\nHost: " + HOST.encode()
    + b"\r\nX-A: 1\rContent-Length: %d\r\n\r\n" % L + SMUGGLED,
    "nul-in-header": head(b"X-A: a\x00b", b"Content-Length: 0") + SMUGGLED,
    "nul-in-request-target": b"GET /vic\x00tim HTTP/1.1\r\nHost: " + HOST.encode()
    + b"\r\n\r\n" + SMUGGLED,
    "bad-chunk-size": head(b"Transfer-Encoding: chunked") + b"zz\r\nhello\r\n0\r\n\r\n" + SMUGGLED,
    "negative-chunk-size": head(b"Transfer-Encoding: chunked") + b"-1\r\n" + SMUGGLED,
    "overflowing-chunk-size": head(b"Transfer-Encoding: chunked")
    + b"1" + b"0" * 20 + b"\r\nab\r\n0\r\n\r\n" + SMUGGLED,
    "non-numeric-cl": head(b"Content-Length: 1x") + SMUGGLED,
    # Host confusion: none, or two different ones (RFC 9112 3.2: 400)
    "missing-host": b"GET /victim HTTP/1.1\r\nContent-Length: 0\r\n\r\n" + SMUGGLED,
    "duplicate-host": b"GET /victim HTTP/1.1\r\nHost: " + HOST.encode()
    + b"\r\nHost: other.test\r\nContent-Length: %d\r\n\r\n" % L + SMUGGLED,
}


@pytest.fixture(scope="module")
def setup(module_env):
    env = module_env
    b = env.backend("echo")
    docs = [ingress_class()] + service_for("echo", [b]) + \
        [ingress("s", [(HOST, [("/", "Prefix", "echo", 80)])])]
    return env.up(docs), b


@pytest.mark.parametrize("name", sorted(CASES))
def test_smuggling_rejected(setup, name):
    proxy, backend = setup
    seen_before = backend.count()
    with proxy.raw() as c:
        try:
            c.send(CASES[name])
        except (BrokenPipeError, ConnectionResetError):
            pass
        r = c.read_response()
        assert r.status == 400, "%s: got %r" % (name, r)
        assert c.is_closed(), "%s: connection kept open after 400 (%r)" % (name, c.buf[:200])
    time.sleep(0.2)  # give a smuggled request time to show up at the backend (it must not)
    seen = backend.paths()[seen_before:]
    assert "/smuggled" not in seen, "%s: backend saw %s" % (name, seen)
    # still serving
    assert proxy.get("/after", host=HOST).status == 200


def test_valid_request_with_same_framing_passes(setup):
    """Control for the cases above: the same payload with sane framing is accepted and the
    'smuggled' bytes are just body."""
    proxy, backend = setup
    seen_before = backend.count()
    with proxy.raw() as c:
        c.send(head(b"Content-Length: %d" % L) + SMUGGLED)
        r = c.read_response()
    assert r.status == 200 and r.json["body_len"] == L, r
    assert "/smuggled" not in backend.paths()[seen_before:]
