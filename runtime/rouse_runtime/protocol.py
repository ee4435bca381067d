"""uvicorn's h11 protocol, answering unreadable requests with a JSON error.

uvicorn answers any h11 protocol error with a plain-text 400; this subclass keeps
h11's own status hint (431 for headers past the size limit) and says what was
wrong in the same `{"error", "detail"}` shape as every other refusal.
"""

from __future__ import annotations

import json
from typing import Any

import h11
from uvicorn.protocols.http.h11_impl import H11Protocol

MAX_HEADER_BYTES = 64 * 1024


class _Connection(h11.Connection):
    """An h11 connection that remembers the last protocol error it raised."""

    last_error: h11.RemoteProtocolError | None = None

    def next_event(self) -> Any:
        try:
            return super().next_event()
        except h11.RemoteProtocolError as exc:
            self.last_error = exc
            raise


class JsonErrorH11Protocol(H11Protocol):
    def __init__(self, *args: Any, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        size = self.config.h11_max_incomplete_event_size or MAX_HEADER_BYTES
        self.conn = _Connection(h11.SERVER, size)
        self._max_header_bytes = size

    def send_400_response(self, msg: str) -> None:
        error = self.conn.last_error if isinstance(self.conn, _Connection) else None
        status = int(getattr(error, "error_status_hint", 400) or 400)
        if status == 431:
            body = {
                "error": "request header fields too large",
                "detail": f"request line and headers exceed {self._max_header_bytes} bytes",
            }
        else:
            body = {"error": "invalid HTTP request", "detail": str(error or msg)[:300]}
        payload = json.dumps(body).encode()
        reason = b"Request Header Fields Too Large" if status == 431 else b"Bad Request"
        # The connection is in h11's ERROR state, so write the response bytes directly.
        head = (
            b"HTTP/1.1 %d %s\r\ncontent-type: application/json\r\n"
            b"content-length: %d\r\nconnection: close\r\n\r\n" % (status, reason, len(payload))
        )
        self.transport.write(head + payload)
        self.transport.close()
