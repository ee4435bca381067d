"""A real OTLP/HTTP receiver: decodes the protobuf the SDK's exporters send.

POST /v1/traces and /v1/metrics carry `ExportTraceServiceRequest` and
`ExportMetricsServiceRequest` (opentelemetry-proto, the protocol's own Python
package), gzip-compressed or not. Spans and metric points are kept as plain
dicts with their attributes decoded, so tests read them like a collector would.

Also runs as a pod of a test cluster from the runtime image (which carries
opentelemetry-proto): `python otlp.py --host 0.0.0.0 --port 4318` prints every span
as one JSON line on stdout.
"""

from __future__ import annotations

import argparse
import gzip
import http.server
import json
import sys
import threading
import time
from dataclasses import dataclass, field
from typing import Any

from google.protobuf.message import DecodeError
from opentelemetry.proto.collector.metrics.v1.metrics_service_pb2 import (
    ExportMetricsServiceRequest,
    ExportMetricsServiceResponse,
)
from opentelemetry.proto.collector.trace.v1.trace_service_pb2 import (
    ExportTraceServiceRequest,
    ExportTraceServiceResponse,
)
from opentelemetry.proto.common.v1.common_pb2 import AnyValue, KeyValue

SPAN_KINDS = {1: "INTERNAL", 2: "SERVER", 3: "CLIENT", 4: "PRODUCER", 5: "CONSUMER"}


def value(any_value: AnyValue) -> Any:
    which = any_value.WhichOneof("value")
    if which == "array_value":
        return [value(v) for v in any_value.array_value.values]
    if which == "kvlist_value":
        return attributes(any_value.kvlist_value.values)
    return None if which is None else getattr(any_value, which)


def attributes(pairs: Any) -> dict[str, Any]:
    found: dict[str, Any] = {}
    for pair in pairs:
        assert isinstance(pair, KeyValue)
        found[pair.key] = value(pair.value)
    return found


@dataclass
class Receiver:
    """What the receiver got: spans and metric data points, and how many requests of each."""

    url: str = ""
    spans: list[dict[str, Any]] = field(default_factory=list)
    points: list[dict[str, Any]] = field(default_factory=list)
    requests: dict[str, int] = field(default_factory=lambda: {"traces": 0, "metrics": 0})
    lock: threading.Lock = field(default_factory=threading.Lock)
    print_spans: bool = False  # also each span as a JSON line on stdout
    _server: http.server.ThreadingHTTPServer | None = None

    def stop(self) -> None:
        if self._server is not None:
            self._server.shutdown()
            self._server.server_close()

    def take_traces(self, body: bytes) -> None:
        request = ExportTraceServiceRequest.FromString(body)
        for resource_spans in request.resource_spans:
            resource = attributes(resource_spans.resource.attributes)
            for scope_spans in resource_spans.scope_spans:
                for span in scope_spans.spans:
                    decoded = {
                        "name": span.name,
                        "kind": SPAN_KINDS.get(span.kind, str(span.kind)),
                        "trace_id": span.trace_id.hex(),
                        "span_id": span.span_id.hex(),
                        "parent_span_id": span.parent_span_id.hex(),
                        "attributes": attributes(span.attributes),
                        "status": span.status.code,
                        "resource": resource,
                        "schema_url": scope_spans.schema_url,
                    }
                    with self.lock:
                        self.spans.append(decoded)
                    if self.print_spans:
                        print(json.dumps(decoded), flush=True)

    def take_metrics(self, body: bytes) -> None:
        request = ExportMetricsServiceRequest.FromString(body)
        for resource_metrics in request.resource_metrics:
            resource = attributes(resource_metrics.resource.attributes)
            for scope_metrics in resource_metrics.scope_metrics:
                for metric in scope_metrics.metrics:
                    if metric.WhichOneof("data") != "histogram":
                        continue
                    for point in metric.histogram.data_points:
                        decoded = {
                            "name": metric.name,
                            "unit": metric.unit,
                            "attributes": attributes(point.attributes),
                            "count": point.count,
                            "sum": point.sum,
                            "bounds": list(point.explicit_bounds),
                            "resource": resource,
                        }
                        with self.lock:
                            self.points.append(decoded)


def start_otlp_receiver(
    host: str = "127.0.0.1", port: int = 0, print_spans: bool = False
) -> Receiver:
    receiver = Receiver(print_spans=print_spans)

    class Handler(http.server.BaseHTTPRequestHandler):
        def do_POST(self) -> None:
            body = self.rfile.read(int(self.headers.get("content-length", "0")))
            if self.headers.get("content-encoding") == "gzip":
                body = gzip.decompress(body)
            try:
                if self.path == "/v1/traces":
                    receiver.take_traces(body)
                    answer = ExportTraceServiceResponse().SerializeToString()
                    signal = "traces"
                elif self.path == "/v1/metrics":
                    receiver.take_metrics(body)
                    answer = ExportMetricsServiceResponse().SerializeToString()
                    signal = "metrics"
                else:
                    self.send_error(404)
                    return
            except DecodeError:
                self.send_error(400, "not an OTLP protobuf request")
                return
            with receiver.lock:
                receiver.requests[signal] += 1
            self.send_response(200)
            self.send_header("content-type", "application/x-protobuf")
            self.send_header("content-length", str(len(answer)))
            self.end_headers()
            self.wfile.write(answer)

        def log_message(self, format: str, *args: Any) -> None:
            if receiver.print_spans:  # as a pod: every request on stderr, for diagnosis
                print(format % args, file=sys.stderr, flush=True)

    server = http.server.ThreadingHTTPServer((host, port), Handler)
    receiver._server = server
    receiver.url = f"http://{host}:{server.server_address[1]}"
    threading.Thread(target=server.serve_forever, daemon=True).start()
    return receiver


def main() -> None:
    parser = argparse.ArgumentParser(description="OTLP/HTTP receiver printing spans as JSON lines")
    parser.add_argument("--host", default="127.0.0.1")
    parser.add_argument("--port", type=int, default=4318)
    args = parser.parse_args()
    start_otlp_receiver(args.host, args.port, print_spans=True)
    print(f"listening on {args.host}:{args.port}", file=sys.stderr, flush=True)
    while True:
        time.sleep(3600)


if __name__ == "__main__":
    main()
