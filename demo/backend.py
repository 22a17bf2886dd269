#!/usr/bin/env python3
"""demo/backend.py - a demo upstream for `make run`: answers every request with its own name.

    demo/backend.py NAME PORT

Listens on 127.0.0.1:PORT (standard library only) and answers any method and path with one line
of plain text naming itself and echoing what the proxy forwarded (method, path, Host and the
X-Forwarded-* headers), so a curl through gatehouse-proxy shows which Service a request reached.
"""
import sys
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer


class Handler(BaseHTTPRequestHandler):
    protocol_version = "HTTP/1.1"          # keep-alive, as the proxy's upstream pool expects
    server_version = "gatehouse-demo-backend"

    def answer(self):
        length = int(self.headers.get("Content-Length") or 0)
        if length:
            self.rfile.read(length)
        forwarded = "".join(f" {k}={v}" for k, v in self.headers.items()
                            if k.lower().startswith("x-forwarded-"))
        body = (f"{self.server.name}: {self.command} {self.path} (Host: {self.headers.get('Host')})"
                f"{forwarded}\n").encode()
        self.send_response(200)
        self.send_header("Content-Type", "text/plain; charset=utf-8")
        self.send_header("Content-Length", str(len(body)))
        self.end_headers()
        if self.command != "HEAD":
            self.wfile.write(body)

    do_GET = do_POST = do_PUT = do_DELETE = do_PATCH = do_HEAD = do_OPTIONS = answer

    def log_message(self, fmt, *args):
        sys.stderr.write(f"{self.server.name}: {fmt % args}\n")


def main():
    if len(sys.argv) != 3 or not sys.argv[2].isdigit() or not 0 < int(sys.argv[2]) < 65536:
        sys.exit("usage: demo/backend.py NAME PORT   (PORT 1-65535)")
    name, port = sys.argv[1], int(sys.argv[2])
    try:
        server = ThreadingHTTPServer(("127.0.0.1", port), Handler)
    except OSError as e:
        sys.exit(f"demo backend {name}: cannot listen on 127.0.0.1:{port}: {e.strerror}")
    server.daemon_threads = True
    server.name = name
    try:
        server.serve_forever()
    except KeyboardInterrupt:
        pass


if __name__ == "__main__":
    main()
