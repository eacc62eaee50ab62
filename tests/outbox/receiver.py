"""A real HTTP webhook receiver on 127.0.0.1 (``http.server`` in a thread) for the delivery
tests: it records every request and answers as its ``mode`` says."""

from __future__ import annotations

import socket
import threading
import time
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any

import attrs


@attrs.define
class Received:
    body: bytes
    headers: dict[str, str]


class Receiver:
    """``mode``: "ok" (204), "fail" (500), "slow" (answers after ``slow_s``), "hang" (never
    answers while the mode lasts; ``got_request`` is set when a request arrives)."""

    def __init__(self, port: int = 0) -> None:
        self.mode = "ok"
        self.slow_s = 2.0
        self.received: list[Received] = []
        self.got_request = threading.Event()
        self._release = threading.Event()
        owner = self

        class Handler(BaseHTTPRequestHandler):
            def do_POST(self) -> None:
                body = self.rfile.read(int(self.headers.get("Content-Length", "0")))
                owner.got_request.set()
                mode = owner.mode
                if mode == "hang":
                    owner._release.wait(30)
                    return
                if mode == "slow":
                    time.sleep(owner.slow_s)
                if mode == "fail":
                    self.send_response(500)
                    self.end_headers()
                    return
                owner.received.append(Received(body, {k: v for k, v in self.headers.items()}))
                self.send_response(204)
                self.end_headers()

            def log_message(self, *args: Any) -> None:
                pass

        self._server = ThreadingHTTPServer(("127.0.0.1", port), Handler)
        self._server.daemon_threads = True
        self.port = self._server.server_address[1]
        self.url = f"http://127.0.0.1:{self.port}/hooks"
        self._thread = threading.Thread(target=self._server.serve_forever, daemon=True)
        self._thread.start()

    def close(self) -> None:
        self._release.set()
        self._server.shutdown()
        self._server.server_close()


def closed_port_url() -> str:
    """A URL where nothing listens (a port bound, then released)."""
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    return f"http://127.0.0.1:{port}/hooks"
