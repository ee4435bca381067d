"""The operator's own HTTP endpoints on ROUSE_METRICS_PORT: /healthz and /metrics."""

from __future__ import annotations

import threading
from dataclasses import dataclass
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

from prometheus_client import CONTENT_TYPE_LATEST, generate_latest


@dataclass
class Health:
    """Ready once kopf has started and configured the reconciler; not after cleanup.

    standby: a leader-election follower waiting for the Lease, alive and healthy.
    """

    ready: bool = False
    standby: bool = False


STATE = Health()


class _Handler(BaseHTTPRequestHandler):
    def do_GET(self) -> None:
        path = self.path.split("?", 1)[0]
        if path == "/healthz":
            if STATE.ready:
                self._send(200, b"ok\n", "text/plain")
            elif STATE.standby:
                self._send(200, b"standby: waiting for the leader Lease\n", "text/plain")
            else:
                self._send(503, b"starting\n", "text/plain")
        elif path == "/metrics":
            self._send(200, generate_latest(), CONTENT_TYPE_LATEST)
        else:
            self._send(404, b"not found: try /healthz or /metrics\n", "text/plain")

    def _send(self, code: int, body: bytes, content_type: str) -> None:
        self.send_response(code)
        self.send_header("Content-Type", content_type)
        self.send_header("Content-Length", str(len(body)))
        self.end_headers()
        self.wfile.write(body)

    def log_message(self, format: str, *args: object) -> None:
        return


def serve(port: int, host: str = "0.0.0.0") -> ThreadingHTTPServer:
    """Start the endpoints in a daemon thread; the bound port is server.server_address[1]."""
    server = ThreadingHTTPServer((host, port), _Handler)
    threading.Thread(target=server.serve_forever, name="rouse-health", daemon=True).start()
    return server
