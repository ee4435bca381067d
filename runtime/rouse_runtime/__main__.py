"""`rouse-runtime` / `python -m rouse_runtime`: serve the skill named by the env contract."""

from __future__ import annotations

import json
import os
import sys
import threading
from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from rouse_runtime.store import Store

ENV_HOST = "ROUSE_HOST"
KNATIVE_SERVICE = "K_SERVICE"  # set by Knative Serving in every user container
TERMINATION_LOG = "/dev/termination-log"


def report_termination(message: str) -> None:
    """One line on stderr and in the container's termination message (what Kubernetes shows)."""
    print(json.dumps({"level": "error", "msg": f"rouse-runtime: {message}"}), file=sys.stderr)
    try:
        with open(TERMINATION_LOG, "w") as log:
            log.write(message)
    except OSError:
        pass  # not in a pod: stderr said it


def main() -> int:
    """Start uvicorn from env; a bad env is one clear line and exit code 2."""
    from rouse_runtime.config import ConfigError, load_config
    from rouse_runtime.telemetry import from_environ

    try:
        config = load_config(os.environ)
        telemetry = from_environ(os.environ, config)  # None unless OTEL_* name an endpoint
    except ConfigError as exc:
        print(json.dumps({"level": "error", "msg": f"rouse-runtime: {exc}"}), file=sys.stderr)
        return 2

    store = open_store_early(config.state_url)

    import uvicorn

    from rouse_runtime.logs import setup_logging
    from rouse_runtime.protocol import MAX_HEADER_BYTES, JsonErrorH11Protocol
    from rouse_runtime.server import create_app

    setup_logging(config.log_level)
    # Skills live in the image's working directory (the console script's own dir is on sys.path).
    if os.getcwd() not in sys.path:
        sys.path.insert(0, os.getcwd())
    from rouse_runtime.handler import load_handler

    loaded = load_handler(config.handler)
    if loaded.error and KNATIVE_SERVICE in os.environ:
        # Under Knative a pod that never gets ready only times out ("Initial scale was never
        # achieved"); one that exits puts this line in its Revision's status, and so in the Agent's.
        report_termination(loaded.error)
        return 1
    app = create_app(config, handler=loaded, store=store, telemetry=telemetry)
    uvicorn.run(
        app,
        host=os.environ.get(ENV_HOST, "0.0.0.0"),  # a pod must listen on its IP
        port=config.port,
        http=JsonErrorH11Protocol,
        ws="none",  # no WebSocket routes: skip looking for a WebSocket library
        proxy_headers=False,  # nothing reads the client address: skip scanning for X-Forwarded-*
        h11_max_incomplete_event_size=MAX_HEADER_BYTES,
        log_config=None,
        access_log=False,
        server_header=False,
        timeout_graceful_shutdown=30,
    )
    return 0


def open_store_early(url: str) -> Store | None:
    """The state store, its slow set-up (a new SQLite file's fsyncs) started in a thread.

    The set-up waits on the disk while this thread imports the server, so the
    first event does not wait for it. A bad URL is left to the server to report.
    """
    from rouse_runtime.store import StoreError, open_store

    try:
        store = open_store(url, sole_writer=True)  # nothing else in this process writes it
    except StoreError:
        return None
    threading.Thread(target=store.prepare, name="rouse-store-open", daemon=True).start()
    return store


if __name__ == "__main__":
    sys.exit(main())
