"""uvicorn's h11 protocol, answering unreadable requests with a JSON error.

uvicorn answers any h11 protocol error with a plain-text 400; this subclass keeps
h11's own status hint (431 for headers past the size limit) and says what was
wrong in the same `{"error", "detail"}` shape as every other refusal.
"""

from __future__ import annotations

import json
import sys
from typing import Any

import h11
from uvicorn.protocols.http.h11_impl import H11Protocol

MAX_HEADER_BYTES = 64 * 1024


class JsonErrorH11Protocol(H11Protocol):
    def __init__(self, *args: Any, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        self._max_header_bytes = self.config.h11_max_incomplete_event_size or MAX_HEADER_BYTES

    def send_400_response(self, msg: str) -> None:
        # uvicorn calls this inside its `except h11.RemoteProtocolError` block: the error
        # is the one being handled (no wrapper around every next_event call needed).
        error = sys.exc_info()[1]
        if not isinstance(error, h11.RemoteProtocolError):
            error = None
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
