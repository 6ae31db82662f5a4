"""Tiny HTTP backends: `python -m lbctl.lab.backends NAME=PORT[:DELAY_MS] ...`.

Each answers every path with 200, its name in the body and an `X-Backend` header,
and prints `ready` once all ports listen. One process serves them all (threads).
"""

from __future__ import annotations

import sys
import threading
import time
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer


def _handler(name: str, delay: float) -> type[BaseHTTPRequestHandler]:
    class Handler(BaseHTTPRequestHandler):
        protocol_version = "HTTP/1.1"

        def do_GET(self) -> None:
            if delay:
                time.sleep(delay)
            body = f"{name}\n".encode()
            self.send_response(200)
            self.send_header("X-Backend", name)
            self.send_header("Content-Length", str(len(body)))
            self.end_headers()
            self.wfile.write(body)

        def log_message(self, format: str, *args: object) -> None:
            pass

    return Handler


class _QuietServer(ThreadingHTTPServer):
    daemon_threads = True

    def handle_error(self, request: object, client_address: object) -> None:
        # HAProxy's health checks close connections without a request: not an error here.
        pass


def serve(specs: list[str]) -> None:
    servers = []
    for spec in specs:
        name, _, rest = spec.partition("=")
        port, _, delay_ms = rest.partition(":")
        server = _QuietServer(("127.0.0.1", int(port)), _handler(name, int(delay_ms or 0) / 1000))
        servers.append(server)
    for server in servers:
        threading.Thread(target=server.serve_forever, daemon=True).start()
    print("ready", flush=True)
    threading.Event().wait()


if __name__ == "__main__":
    serve(sys.argv[1:])
