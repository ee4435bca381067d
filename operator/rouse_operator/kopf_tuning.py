"""How Rouse runs kopf: where kopf keeps its state, how many handlers run at once.

In one place so that bench/operator_scale.py's write-floor operator runs kopf exactly as
Rouse does (the handlers module registers Rouse's handlers on import; this one does not).
"""

from __future__ import annotations

import logging

import kopf

from rouse_operator import bookkeeping

RECONCILE_THREADS = 16  # kopf's executor for the sync handlers: reconciles at once
# kopf runs a worker per object with events, unbounded: at start every Agent's worker waits
# for a reconcile thread holding its cause (body, diff, patch). A few workers per thread keep
# the threads busy, the other objects' events wait in their queues; an idle worker gives its
# place up after a second, not kopf's five. At 2000 Agents: peak RSS 169 MiB, not 397.
WORKERS_PER_KIND = 8 * RECONCILE_THREADS
WORKER_IDLE_SECONDS = 1.0


def tune(settings: kopf.OperatorSettings, diff_base: bookkeeping.InStatusApply) -> None:
    """kopf's state in status.kopf (written with the status apply) and progress annotations;
    Events from INFO; bounded workers and handler threads; long watch requests."""
    settings.persistence.progress_storage = bookkeeping.Progress()
    settings.persistence.diffbase_storage = diff_base
    settings.posting.level = logging.INFO
    settings.execution.max_workers = RECONCILE_THREADS
    settings.queueing.worker_limit = WORKERS_PER_KIND
    settings.queueing.idle_timeout = WORKER_IDLE_SECONDS
    settings.watching.server_timeout = 300
