"""An HTTP proxy on 127.0.0.1 in front of moto's server that misbehaves.

Each request, with probability `rate` (from a seeded random generator):
answers 503 (a throttle: "SlowDown"), answers 500, stops reading an upload
halfway and closes the connection, or sends half a download's body and
closes it. Otherwise it forwards the request as it is. `faults` counts
what it did. It serves until `close()`.
"""

from __future__ import annotations

import http.client
import random
import threading
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

FAULTS = ("503", "500", "cut upload", "cut download")


class FlakyProxy:
    def __init__(self, target_port: int, rate: float, seed: int = 0) -> None:
        self.target_port = target_port
        self.rate = rate
        self.random = random.Random(seed)
        self.lock = threading.Lock()
        self.faults = dict.fromkeys(FAULTS, 0)
        self.forwarded = 0
        proxy = self

        class Handler(BaseHTTPRequestHandler):
            protocol_version = "HTTP/1.1"

            def log_message(self, *args: object) -> None:
                pass

            def _handle(self) -> None:
                proxy.serve(self)

            do_GET = do_PUT = do_HEAD = do_DELETE = do_POST = _handle  # noqa: N815

        self.server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.server.daemon_threads = True
        self.endpoint = f"http://127.0.0.1:{self.server.server_address[1]}"
        threading.Thread(target=self.server.serve_forever, daemon=True).start()

    def _choose(self, method: str) -> str | None:
        with self.lock:
            if self.random.random() >= self.rate:
                self.forwarded += 1
                return None
            fault = self.random.choice(FAULTS)
            if fault == "cut upload" and method != "PUT":
                fault = "503"
            if fault == "cut download" and method != "GET":
                fault = "500"
            self.faults[fault] += 1
            return fault

    def serve(self, handler: BaseHTTPRequestHandler) -> None:
        length = int(handler.headers.get("Content-Length") or 0)
        fault = self._choose(handler.command)
        if fault == "cut upload":
            handler.rfile.read(length // 2)
            handler.close_connection = True
            handler.connection.close()
            return
        body = handler.rfile.read(length) if length else b""
        if fault in ("503", "500"):
            code = 503 if fault == "503" else 500
            text = b"<Error><Code>SlowDown</Code></Error>" if code == 503 else b"<Error/>"
            handler.send_response(code)
            handler.send_header("Content-Length", str(len(text)))
            handler.end_headers()
            handler.wfile.write(text)
            return
        upstream = http.client.HTTPConnection("127.0.0.1", self.target_port, timeout=60)
        headers = {k: v for k, v in handler.headers.items() if k.lower() != "connection"}
        upstream.request(handler.command, handler.path, body=body, headers=headers)
        response = upstream.getresponse()
        data = response.read()
        handler.send_response(response.status)
        for name, value in response.getheaders():
            if name.lower() not in ("connection", "transfer-encoding", "content-length"):
                handler.send_header(name, value)
        handler.send_header("Content-Length", str(len(data)))
        handler.end_headers()
        if fault == "cut download" and handler.command != "HEAD":
            handler.wfile.write(data[: len(data) // 2])
            handler.wfile.flush()
            handler.close_connection = True
            handler.connection.close()
        elif handler.command != "HEAD":
            handler.wfile.write(data)
        upstream.close()

    def close(self) -> None:
        self.server.shutdown()
        self.server.server_close()
