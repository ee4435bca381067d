"""OpenTelemetry for a skill: on when the standard OTEL_* variables say where to export.

What the runtime hooks into (the server per invocation, `ctx.llm` per model call,
`ctx.tool` and tool clients per tool call) is the small interface below; the
OpenTelemetry SDK behind it lives in `rouse_runtime.otel` and is imported only
when an OTLP endpoint is configured. Without one, `from_environ` answers None,
nothing of OpenTelemetry is imported and each hook costs one `is None` test.

The conventions followed are pinned: `SEMCONV_VERSION` (OpenTelemetry semantic
conventions, GenAI and CloudEvents/messaging parts, Development status), also
sent as the schema URL of every span and metric.
"""

from __future__ import annotations

from collections.abc import Mapping
from contextlib import AbstractContextManager
from typing import TYPE_CHECKING, Protocol

if TYPE_CHECKING:
    from cloudevents.http import CloudEvent

    from rouse_runtime.config import Config

SEMCONV_VERSION = "1.41.0"
SCHEMA_URL = f"https://opentelemetry.io/schemas/{SEMCONV_VERSION}"
# Any of these set (and OTEL_SDK_DISABLED not "true") switches telemetry on.
ENDPOINT_VARIABLES = (
    "OTEL_EXPORTER_OTLP_ENDPOINT",
    "OTEL_EXPORTER_OTLP_TRACES_ENDPOINT",
    "OTEL_EXPORTER_OTLP_METRICS_ENDPOINT",
)


class ModelCall(Protocol):
    """One model call in flight (a `chat {model}` client span); `end` it exactly once."""

    def end(
        self,
        *,
        response_model: str | None = None,
        input_tokens: int | None = None,
        output_tokens: int | None = None,
        response_id: str | None = None,
        finish_reasons: tuple[str, ...] = (),
        cost_usd: float | None = None,
        error: BaseException | None = None,
    ) -> None:
        """Close the span with what the model answered (or the error); a second call is a no-op."""
        ...


class Invocation(Protocol):
    """One invocation's consumer span, parent of its model and tool calls."""

    def trace_attributes(self) -> dict[str, str]:
        """`traceparent`/`tracestate` naming this span: what replies and emitted events carry."""
        ...

    def model_call(self, model: str, base_url: str, params: Mapping[str, object]) -> ModelCall: ...

    def tool_call(self, name: str, call_id: str | None = None) -> AbstractContextManager[None]:
        """An `execute_tool {name}` span around the with-block (an exception marks it failed)."""
        ...

    def fail(self, error: BaseException) -> None:
        """Record the exception that failed the skill (the outcome is set by `end`)."""
        ...

    def end(self, outcome: str, budget_limit: str | None = None) -> None:
        """Close the span with the invocation's outcome (server.Outcome.kind) and breached limit."""
        ...


class Telemetry(Protocol):
    """The process's tracer and GenAI meters."""

    def invocation(
        self, event: CloudEvent, *, cold_start: bool, run_id: str | None = None
    ) -> Invocation:
        """Start the consumer span of one event, continuing the event's `traceparent`.

        run_id: the run the event belongs to (default: the event's trace id, the chain).
        """
        ...

    def shutdown(self) -> None:
        """Export what is buffered and stop (blocking: call from a thread at exit)."""
        ...


def enabled(environ: Mapping[str, str]) -> bool:
    """Whether the environment asks for OTLP export (the SDK's own variables)."""
    if environ.get("OTEL_SDK_DISABLED", "").strip().lower() == "true":
        return False
    return any(environ.get(name, "").strip() for name in ENDPOINT_VARIABLES)


def from_environ(environ: Mapping[str, str], config: Config) -> Telemetry | None:
    """The OpenTelemetry set-up the environment asks for, or None (nothing imported)."""
    if not enabled(environ):
        return None
    from rouse_runtime.otel import OtelTelemetry

    return OtelTelemetry.from_environ(environ, config)
