"""A small threaded HTTP/1.1 backend for the integration tests (standard library only).

Every request is answered with JSON describing what arrived: the backend's own name, the method,
path, query, the header list, the body length and its sha256. Behaviour can be changed per
request with query parameters (the proxy forwards the query untouched):

  _status=N        answer with status N
  _sleep=S         wait S seconds before answering (a slow upstream)
  _chunks=N        stream the answer as N chunks (Transfer-Encoding: chunked) ...
  _delay=S         ... with S seconds between chunks
  _hdr=Name:Value  add a response header (may repeat)
  _size=N          answer with N bytes of fixed content (sha256 in X-Body-Sha256)
  _close_after=S   close the connection S seconds after answering (an idle timeout)
  _garbage=1       answer with bytes that are not HTTP, then close
  _truncate=1      answer 200 with Content-Length 1000 but only 10 bytes, then close

A GET with "Upgrade: websocket" is answered 101 and every data frame is echoed back (RFC 6455,
the minimum needed: text/binary/ping/close, no fragmentation of our own).
Expect: 100-continue is handled by http.server (the interim 100 is sent before the body is read).
Every request head is recorded in server.requests before its body is read, so tests can check
what the backend saw (for example that a smuggled request never arrived).
"""
import base64
import hashlib
import json
import socket
import threading
import time
import urllib.parse
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

WS_GUID = "258EAFA5-E914-47DA-95CA-C5AB0DC85B11"


def ws_accept(key):
    return base64.b64encode(hashlib.sha1((key + WS_GUID).encode()).digest()).decode()


def ws_read_frame(rfile):
    """Reads one frame; returns (opcode, payload) or None at EOF."""
    head = rfile.read(2)
    if len(head) < 2:
        return None
    b1, b2 = head
    opcode = b1 & 0x0F
    masked = b2 & 0x80
    n = b2 & 0x7F
    if n == 126:
        n = int.from_bytes(rfile.read(2), "big")
    elif n == 127:
        n = int.from_bytes(rfile.read(8), "big")
    mask = rfile.read(4) if masked else None
    data = rfile.read(n)
    if len(data) < n:
        return None
    if mask:
        data = bytes(c ^ mask[i % 4] for i, c in enumerate(data))
    return opcode, data


def ws_frame(opcode, payload, mask=None):
    """Builds one FIN frame; mask (4 bytes) for client frames."""
    b1 = 0x80 | opcode
    n = len(payload)
    mbit = 0x80 if mask else 0
    if n < 126:
        head = bytes([b1, mbit | n])
    elif n < 65536:
        head = bytes([b1, mbit | 126]) + n.to_bytes(2, "big")
    else:
        head = bytes([b1, mbit | 127]) + n.to_bytes(8, "big")
    if mask:
        payload = bytes(c ^ mask[i % 4] for i, c in enumerate(payload))
        return head + mask + payload
    return head + payload


class Handler(BaseHTTPRequestHandler):
    protocol_version = "HTTP/1.1"
    sys_version = ""

    def setup(self):
        # headers and body go out in separate writes: without TCP_NODELAY, Nagle plus the
        # peer's delayed ACK would add 40 ms to every response
        self.request.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
        super().setup()

    def log_message(self, fmt, *args):  # quiet
        pass

    def version_string(self):
        return "backend-" + self.server.name

    def handle_expect_100(self):
        self.server.record_event("expect-100")
        return super().handle_expect_100()

    def _read_body(self):
        te = (self.headers.get("Transfer-Encoding") or "").lower()
        if "chunked" in te:
            parts = []
            while True:
                line = self.rfile.readline(65537)
                if not line:
                    raise ConnectionError("eof in chunk size")
                size = int(line.split(b";")[0].strip(), 16)
                if size == 0:
                    while True:  # trailers
                        t = self.rfile.readline(65537)
                        if t in (b"\r\n", b"\n", b""):
                            break
                    break
                data = self.rfile.read(size)
                if len(data) < size:
                    raise ConnectionError("eof in chunk")
                parts.append(data)
                self.rfile.readline(3)
            return b"".join(parts), True
        n = int(self.headers.get("Content-Length") or 0)
        h = hashlib.sha256()
        got = 0
        chunks = []
        while got < n:
            data = self.rfile.read(min(65536, n - got))
            if not data:
                raise ConnectionError("eof in body")
            got += len(data)
            chunks.append(data)
        return b"".join(chunks), False

    def _handle(self):
        url = urllib.parse.urlsplit(self.path)
        query = urllib.parse.parse_qs(url.query, keep_blank_values=True)
        rec = {"method": self.command, "path": url.path, "query": url.query,
               "headers": [[k, v] for k, v in self.headers.items()], "time": time.monotonic()}
        self.server.record(rec)

        if self.command == "GET" and (self.headers.get("Upgrade") or "").lower() == "websocket":
            return self._websocket()

        try:
            body, chunked = self._read_body()
        except (ValueError, ConnectionError):
            self.close_connection = True
            return
        rec["body_len"] = len(body)

        if "_sleep" in query:
            time.sleep(float(query["_sleep"][0]))
        if "_garbage" in query:  # not HTTP at all, then close
            self.wfile.write(b"this is not an HTTP response\r\n\r\n")
            self.wfile.flush()
            self.close_connection = True
            return
        if "_truncate" in query:  # promises 1000 bytes, sends 10, closes
            self.wfile.write(b"HTTP/1.1 200 OK\r\nContent-Length: 1000\r\n"
                             b"Content-Type: text/plain\r\n\r\n0123456789")
            self.wfile.flush()
            self.close_connection = True
            return
        status = int(query["_status"][0]) if "_status" in query else self.server.status
        doc = {
            "backend": self.server.name,
            "method": self.command,
            "path": url.path,
            "query": url.query,
            "version": self.request_version,
            "headers": [[k, v] for k, v in self.headers.items()],
            "body_len": len(body),
            "body_sha256": hashlib.sha256(body).hexdigest(),
            "body_chunked": chunked,
        }
        payload = (json.dumps(doc) + "\n").encode()
        self.send_response(status)
        self.send_header("Content-Type", "application/json")
        self.send_header("X-Backend", self.server.name)
        for h in query.get("_hdr", []):
            k, _, v = h.partition(":")
            self.send_header(k.strip(), v.strip())
        if "_size" in query:  # a large body of known content instead of the JSON echo
            n = int(query["_size"][0])
            block = hashlib.sha256(b"gatehouse").digest() * 2048  # 64 KiB
            payload = (block * (n // len(block) + 1))[:n]
            self.send_header("X-Body-Sha256", hashlib.sha256(payload).hexdigest())
        if "_chunks" in query:
            n = int(query["_chunks"][0])
            delay = float(query.get("_delay", ["0"])[0])
            self.send_header("Transfer-Encoding", "chunked")
            self.end_headers()
            if self.command == "HEAD":
                return
            self.wfile.flush()
            for i in range(n):
                piece = ("chunk-%d;" % i).encode()
                self.wfile.write(b"%x\r\n%s\r\n" % (len(piece), piece))
                self.wfile.flush()
                if delay and i + 1 < n:
                    time.sleep(delay)
            self.wfile.write(b"0\r\n\r\n")
            self.wfile.flush()
            return
        self.send_header("Content-Length", str(len(payload)))
        self.end_headers()
        if self.command != "HEAD" and status not in (204, 304):
            self.wfile.write(payload)
        self.wfile.flush()
        if "_close_after" in query:
            # an upstream idle timeout: the connection is closed silently a little later
            time.sleep(float(query["_close_after"][0]))
            self.close_connection = True
            self.server.record_event("closed-idle")

    def _websocket(self):
        key = self.headers.get("Sec-WebSocket-Key", "")
        self.send_response(101, "Switching Protocols")
        self.send_header("Upgrade", "websocket")
        self.send_header("Connection", "Upgrade")
        self.send_header("Sec-WebSocket-Accept", ws_accept(key))
        self.end_headers()
        self.wfile.flush()
        self.close_connection = True
        while True:
            fr = ws_read_frame(self.rfile)
            if fr is None:
                return
            op, data = fr
            if op == 8:
                self.wfile.write(ws_frame(8, data[:2]))
                self.wfile.flush()
                return
            if op == 9:
                self.wfile.write(ws_frame(10, data))
            else:
                self.wfile.write(ws_frame(op, data))
            self.wfile.flush()

    do_GET = do_POST = do_PUT = do_PATCH = do_DELETE = do_HEAD = do_OPTIONS = _handle


class Backend(ThreadingHTTPServer):
    daemon_threads = True
    allow_reuse_address = True
    request_queue_size = 128

    def __init__(self, name, status=200, host="127.0.0.1", port=0):
        if ":" in host:
            self.address_family = socket.AF_INET6
        super().__init__((host, port), Handler)
        self.name = name
        self.status = status
        self.lock = threading.Lock()
        self.requests = []
        self.events = []
        self.connections = 0
        self.thread = threading.Thread(target=self.serve_forever, kwargs={"poll_interval": 0.05},
                                       daemon=True)

    @property
    def port(self):
        return self.server_address[1]

    @property
    def addr(self):
        host = self.server_address[0]
        return ("[%s]:%d" if ":" in host else "%s:%d") % (host, self.port)

    def process_request(self, request, client_address):
        with self.lock:
            self.connections += 1
        return super().process_request(request, client_address)

    def record(self, rec):
        with self.lock:
            self.requests.append(rec)

    def record_event(self, ev):
        with self.lock:
            self.events.append(ev)

    def paths(self):
        with self.lock:
            return [r["path"] for r in self.requests]

    def count(self):
        with self.lock:
            return len(self.requests)

    def start(self):
        self.thread.start()
        return self

    def stop(self):
        self.shutdown()
        self.server_close()


if __name__ == "__main__":  # manual use: python3 backend.py NAME PORT
    import sys
    b = Backend(sys.argv[1], port=int(sys.argv[2]))
    print("listening on", b.addr)
    b.serve_forever()
