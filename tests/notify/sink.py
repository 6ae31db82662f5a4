"""An HTTP endpoint on loopback that records what lbctl posts to it."""

from __future__ import annotations

import json
import threading
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any


class Sink:
    """An HTTP endpoint on loopback that records what is posted; `mode` is ok, fail (500) or hang."""

    def __init__(self) -> None:
        self.received: list[Any] = []
        self.requests: list[tuple[str, dict[str, str]]] = []  # path and headers of each request received
        self.mode = "ok"
        self.release = threading.Event()
        sink = self

        class Handler(BaseHTTPRequestHandler):
            def do_POST(self) -> None:
                data = self.rfile.read(int(self.headers.get("Content-Length", 0)))
                sink.requests.append((self.path, dict(self.headers.items())))
                if sink.mode == "hang":
                    sink.release.wait(30)
                    return
                if sink.mode == "fail":
                    self.send_response(500)
                    self.end_headers()
                    return
                sink.received.append(json.loads(data))
                self.send_response(200)
                self.end_headers()

            def log_message(self, *args: Any) -> None:
                pass

        self.server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.server.daemon_threads = True
        self.thread = threading.Thread(target=self.server.serve_forever, daemon=True)
        self.thread.start()
        self.url = f"http://127.0.0.1:{self.server.server_address[1]}/hook"

    def close(self) -> None:
        self.release.set()
        self.server.shutdown()
        self.server.server_close()
