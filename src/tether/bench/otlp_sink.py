"""Where a traced Tether sends its spans during a benchmark: an OTLP/HTTP receiver that accepts
every export (an empty body is a valid answer: the empty protobuf message) and counts them, so
that tracing costs what it costs against a collector that keeps up."""

from __future__ import annotations

import threading
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any


class OtlpSink:
    def __init__(self) -> None:
        self.exports = 0  # requests received
        self.bytes = 0
        self._counting = threading.Lock()  # the server answers each export on a thread of its own
        sink = self

        class Handler(BaseHTTPRequestHandler):
            def do_POST(self) -> None:
                body = self.rfile.read(int(self.headers["Content-Length"]))
                sink.received(body, gzipped=self.headers.get("Content-Encoding") == "gzip")
                self.send_response(200)
                self.send_header("Content-Type", "application/x-protobuf")
                self.send_header("Content-Length", "0")
                self.end_headers()

            def log_message(self, format: str, *args: Any) -> None:  # quiet
                pass

        self._server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self._thread = threading.Thread(target=self._server.serve_forever, daemon=True)

    def received(self, body: bytes, *, gzipped: bool) -> None:
        """One export's body, as sent; counted here (a receiver that reads spans extends this)."""
        with self._counting:
            self.bytes += len(body)
            self.exports += 1

    @property
    def endpoint(self) -> str:
        return f"http://127.0.0.1:{self._server.server_address[1]}"

    def __enter__(self) -> OtlpSink:
        self._thread.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self._server.shutdown()
        self._server.server_close()
