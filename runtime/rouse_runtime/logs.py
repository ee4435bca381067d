"""Structured JSON log lines (one object per line on stderr), the runtime's only log format.

Fields passed as `extra={"fields": {...}}` are merged into the line, so a skill's
`ctx.log` carries the event id, agent, skill and traceparent on every line.
"""

from __future__ import annotations

import json
import logging
import sys
from datetime import UTC, datetime
from typing import Any


class JsonFormatter(logging.Formatter):
    def format(self, record: logging.LogRecord) -> str:
        line: dict[str, Any] = {
            "time": datetime.fromtimestamp(record.created, UTC).isoformat(),
            "level": record.levelname.lower(),
            "logger": record.name,
            "msg": record.getMessage(),
        }
        fields = getattr(record, "fields", None)
        if isinstance(fields, dict):
            line.update(fields)
        if record.exc_info:
            line["exception"] = self.formatException(record.exc_info)
        return json.dumps(line, default=str)


def setup_logging(level: str = "INFO") -> None:
    """Route every logger (uvicorn's too) through one JSON handler on stderr."""
    handler = logging.StreamHandler(sys.stderr)
    handler.setFormatter(JsonFormatter())
    root = logging.getLogger()
    root.handlers[:] = [handler]
    root.setLevel(level)
    for name in ("uvicorn", "uvicorn.error", "uvicorn.access"):
        logging.getLogger(name).handlers[:] = []
        logging.getLogger(name).propagate = True


_SKILL_LOGGER = logging.getLogger("rouse.skill")


class EventLog:
    """`ctx.log`: JSON lines carrying the invocation's identity."""

    def __init__(self, fields: dict[str, Any], logger: logging.Logger | None = None) -> None:
        self.fields = fields
        self._logger = logger or _SKILL_LOGGER

    def _log(
        self, level: int, msg: str, fields: dict[str, Any], exc_info: BaseException | None = None
    ) -> None:
        if self._logger.isEnabledFor(level):
            extra = {"fields": {**self.fields, **fields}}
            self._logger.log(level, msg, exc_info=exc_info, extra=extra)

    def debug(self, msg: str, **fields: Any) -> None:
        self._log(logging.DEBUG, msg, fields)

    def info(self, msg: str, **fields: Any) -> None:
        self._log(logging.INFO, msg, fields)

    def warning(self, msg: str, **fields: Any) -> None:
        self._log(logging.WARNING, msg, fields)

    def error(self, msg: str, *, exc_info: BaseException | None = None, **fields: Any) -> None:
        """An error line; with exc_info, its traceback goes in the line's `exception`."""
        self._log(logging.ERROR, msg, fields, exc_info)
