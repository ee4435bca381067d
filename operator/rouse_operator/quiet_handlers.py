"""Quieter kopf logs at scale: no line per watch event that says nothing.

kopf logs "Handler 'x' succeeded." at INFO for every handler run. The watch-event handlers
(`agent_event`, `child_event`) run for every event of every Agent and child: five of the
seven lines a new Agent logged, thousands at start. Their failures still log (kopf logs
those at ERROR with the traceback); the spec handlers' lines and "... is processed" stay.
"""

from __future__ import annotations

import logging

KOPF_OBJECT_LOGGER = "kopf.objects"


class QuietHandlers(logging.Filter):
    """Drops kopf's success line of the named handlers."""

    def __init__(self, *handlers: str) -> None:
        super().__init__()
        self.lines = frozenset(f"Handler {name!r} succeeded." for name in handlers)

    def filter(self, record: logging.LogRecord) -> bool:
        return record.msg not in self.lines


def install(*handlers: str) -> None:
    """Put QuietHandlers for `handlers` on kopf's per-object logger, once per process."""
    logger = logging.getLogger(KOPF_OBJECT_LOGGER)
    if not any(isinstance(f, QuietHandlers) for f in logger.filters):
        logger.addFilter(QuietHandlers(*handlers))
