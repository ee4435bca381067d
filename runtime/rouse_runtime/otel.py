"""The OpenTelemetry SDK behind `rouse_runtime.telemetry`: spans and GenAI metrics over OTLP.

Imported only when an OTLP endpoint is configured (telemetry.enabled). Spans and
attributes follow the semantic conventions pinned in telemetry.SEMCONV_VERSION:

- `process {event type}` (CONSUMER) per invocation, the child of the event's
  `traceparent` (CloudEvents distributed-tracing extension), with the
  `cloudevents.*` and `messaging.*` attributes and Rouse's own `rouse.*`;
- `chat {model}` (CLIENT) per model call: `gen_ai.operation.name`,
  `gen_ai.provider.name`, `gen_ai.request.*`, `gen_ai.response.*`,
  `gen_ai.usage.input_tokens`/`output_tokens`, `server.*`, `error.type`;
- `execute_tool {name}` (INTERNAL) per tool call: `gen_ai.tool.name`, `gen_ai.tool.call.id`.

Metrics: the histograms `gen_ai.client.token.usage` and
`gen_ai.client.operation.duration` with the conventions' bucket boundaries.
The exporters are the SDK's OTLP/HTTP (protobuf) ones, configured by the standard
variables (endpoint, headers, timeout, OTEL_BSP_*, OTEL_METRIC_EXPORT_INTERVAL).
"""

from __future__ import annotations

import time
from collections.abc import Iterator, Mapping
from contextlib import contextmanager
from typing import TYPE_CHECKING, Any
from urllib.parse import urlsplit

from opentelemetry import trace
from opentelemetry.metrics import Histogram, Meter, MeterProvider
from opentelemetry.propagators.textmap import DefaultGetter
from opentelemetry.sdk.metrics import MeterProvider as SdkMeterProvider
from opentelemetry.sdk.metrics.export import PeriodicExportingMetricReader
from opentelemetry.sdk.resources import Resource
from opentelemetry.sdk.trace import TracerProvider as SdkTracerProvider
from opentelemetry.sdk.trace.export import BatchSpanProcessor
from opentelemetry.trace import Span, SpanKind, Status, StatusCode, Tracer
from opentelemetry.trace.propagation.tracecontext import TraceContextTextMapPropagator

from rouse_runtime.config import ConfigError
from rouse_runtime.telemetry import SCHEMA_URL

if TYPE_CHECKING:
    from cloudevents.http import CloudEvent

    from rouse_runtime.config import Config

SCOPE = "rouse_runtime"
PROTOCOL = "http/protobuf"  # the one OTLP transport the runtime image ships
# The conventions' advice for the two GenAI client histograms.
TOKEN_BUCKETS = (
    1,
    4,
    16,
    64,
    256,
    1024,
    4096,
    16384,
    65536,
    262144,
    1048576,
    4194304,
    16777216,
    67108864,
)
DURATION_BUCKETS = (
    0.01,
    0.02,
    0.04,
    0.08,
    0.16,
    0.32,
    0.64,
    1.28,
    2.56,
    5.12,
    10.24,
    20.48,
    40.96,
    81.92,
)
# gen_ai.provider.name by the model endpoint's host; any other OpenAI-compatible
# endpoint is reported as "openai", the API it speaks (as OpenAI's own instrumentation does).
PROVIDERS = {
    "api.openai.com": "openai",
    "api.anthropic.com": "anthropic",
    "api.mistral.ai": "mistral_ai",
    "api.deepseek.com": "deepseek",
    "api.groq.com": "groq",
    "api.x.ai": "x_ai",
    "api.perplexity.ai": "perplexity",
    "generativelanguage.googleapis.com": "gcp.gemini",
}
# Request parameters of ctx.llm.chat(**params) recorded as gen_ai.request.* (numbers only).
REQUEST_PARAMS = {
    "max_tokens": "gen_ai.request.max_tokens",
    "max_completion_tokens": "gen_ai.request.max_tokens",
    "temperature": "gen_ai.request.temperature",
    "top_p": "gen_ai.request.top_p",
    "frequency_penalty": "gen_ai.request.frequency_penalty",
    "presence_penalty": "gen_ai.request.presence_penalty",
    "seed": "gen_ai.request.seed",
}
_propagator = TraceContextTextMapPropagator()
_getter: DefaultGetter = DefaultGetter()


def provider_name(host: str) -> str:
    if host.endswith(".openai.azure.com"):
        return "azure.ai.openai"
    return PROVIDERS.get(host, "openai")


def error_type(error: BaseException) -> str:
    return type(error).__qualname__


class ModelCallSpan:
    """A `chat {model}` span and the two GenAI histograms it feeds when it ends."""

    def __init__(
        self,
        otel: OtelTelemetry,
        parent: Span,
        model: str,
        base_url: str,
        params: Mapping[str, object],
    ) -> None:
        url = urlsplit(base_url)
        host = url.hostname or ""
        port = url.port or (443 if url.scheme == "https" else 80)
        self._otel = otel
        self._common: dict[str, Any] = {
            "gen_ai.operation.name": "chat",
            "gen_ai.provider.name": provider_name(host),
            "gen_ai.request.model": model,
            "server.address": host,
            "server.port": port,
        }
        attributes = dict(self._common)
        for param, attribute in REQUEST_PARAMS.items():
            value = params.get(param)
            if isinstance(value, int | float) and not isinstance(value, bool):
                attributes[attribute] = value
        self._span = otel.tracer.start_span(
            f"chat {model}",
            context=trace.set_span_in_context(parent),
            kind=SpanKind.CLIENT,
            attributes=attributes,
        )
        self._started = time.perf_counter()
        self._ended = False

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
        if self._ended:  # e.g. a budget stop raised after the call had ended well
            return
        self._ended = True
        span, measured = self._span, dict(self._common)
        if response_model:
            span.set_attribute("gen_ai.response.model", response_model)
            measured["gen_ai.response.model"] = response_model
        if response_id:
            span.set_attribute("gen_ai.response.id", response_id)
        if finish_reasons:
            span.set_attribute("gen_ai.response.finish_reasons", list(finish_reasons))
        if input_tokens is not None:
            span.set_attribute("gen_ai.usage.input_tokens", input_tokens)
        if output_tokens is not None:
            span.set_attribute("gen_ai.usage.output_tokens", output_tokens)
        if cost_usd is not None:
            span.set_attribute("rouse.cost_usd", cost_usd)
        if error is not None:
            measured["error.type"] = error_type(error)
            span.set_attribute("error.type", measured["error.type"])
            span.record_exception(error)
            span.set_status(Status(StatusCode.ERROR, str(error)[:200]))
        span.end()
        otel = self._otel
        otel.operation_duration.record(time.perf_counter() - self._started, measured)
        if error is None:
            for kind, count in (("input", input_tokens), ("output", output_tokens)):
                if count is not None:
                    otel.token_usage.record(count, {**measured, "gen_ai.token.type": kind})


class InvocationSpan:
    """One invocation's `process {type}` consumer span."""

    def __init__(self, otel: OtelTelemetry, span: Span, event_trace_id: str | None) -> None:
        self._otel = otel
        self.span = span
        self.trace_id = event_trace_id

    def trace_attributes(self) -> dict[str, str]:
        carrier: dict[str, str] = {}
        _propagator.inject(carrier, context=trace.set_span_in_context(self.span))
        return carrier

    def model_call(self, model: str, base_url: str, params: Mapping[str, object]) -> ModelCallSpan:
        return ModelCallSpan(self._otel, self.span, model, base_url, params)

    @contextmanager
    def tool_call(self, name: str, call_id: str | None = None) -> Iterator[None]:
        attributes = {"gen_ai.operation.name": "execute_tool", "gen_ai.tool.name": name}
        if call_id is not None:
            attributes["gen_ai.tool.call.id"] = call_id
        with self._otel.tracer.start_as_current_span(
            f"execute_tool {name}",
            context=trace.set_span_in_context(self.span),
            kind=SpanKind.INTERNAL,
            attributes=attributes,
            record_exception=True,
            set_status_on_exception=True,
        ) as span:
            try:
                yield
            except BaseException as exc:
                span.set_attribute("error.type", error_type(exc))
                raise

    def fail(self, error: BaseException) -> None:
        self.span.record_exception(error)
        self.span.set_attribute("error.type", error_type(error))

    def end(self, outcome: str, budget_limit: str | None = None) -> None:
        span = self.span
        span.set_attribute("rouse.outcome", outcome)
        span.set_attribute("rouse.budget.outcome", "exceeded" if budget_limit else "within")
        if budget_limit:
            span.set_attribute("rouse.budget.limit", budget_limit)
        if outcome == "error":
            span.set_status(Status(StatusCode.ERROR, "the skill failed"))
        span.end()


class OtelTelemetry:
    """The tracer and GenAI meters of one skill process (telemetry.Telemetry)."""

    def __init__(
        self,
        config: Config,
        tracer_provider: trace.TracerProvider,
        meter_provider: MeterProvider,
        shutdown: tuple[Any, ...] = (),
    ) -> None:
        self._config = config
        self._shutdown = shutdown
        self.tracer: Tracer = tracer_provider.get_tracer(SCOPE, schema_url=SCHEMA_URL)
        meter: Meter = meter_provider.get_meter(SCOPE, schema_url=SCHEMA_URL)
        self.token_usage: Histogram = meter.create_histogram(
            "gen_ai.client.token.usage",
            unit="{token}",
            description="Number of input and output tokens used.",
            explicit_bucket_boundaries_advisory=TOKEN_BUCKETS,
        )
        self.operation_duration: Histogram = meter.create_histogram(
            "gen_ai.client.operation.duration",
            unit="s",
            description="GenAI operation duration.",
            explicit_bucket_boundaries_advisory=DURATION_BUCKETS,
        )

    @staticmethod
    def from_environ(environ: Mapping[str, str], config: Config) -> OtelTelemetry:
        """OTLP/HTTP exporters for the signals whose endpoint is set; the providers made global.

        Global, so that spans a skill makes with the OpenTelemetry API go out the same way.
        """
        from opentelemetry import metrics

        check_protocol(environ)
        resource = Resource.create(resource_attributes(environ, config), schema_url=SCHEMA_URL)
        tracer_provider = SdkTracerProvider(resource=resource)
        readers = []
        if exports(environ, "TRACES"):
            from opentelemetry.exporter.otlp.proto.http.trace_exporter import OTLPSpanExporter

            tracer_provider.add_span_processor(BatchSpanProcessor(OTLPSpanExporter()))
        if exports(environ, "METRICS"):
            from opentelemetry.exporter.otlp.proto.http.metric_exporter import OTLPMetricExporter

            readers.append(PeriodicExportingMetricReader(OTLPMetricExporter()))
        meter_provider = SdkMeterProvider(resource=resource, metric_readers=readers)
        trace.set_tracer_provider(tracer_provider)
        metrics.set_meter_provider(meter_provider)
        return OtelTelemetry(
            config, tracer_provider, meter_provider, (tracer_provider, meter_provider)
        )

    def invocation(
        self, event: CloudEvent, *, cold_start: bool, run_id: str | None = None
    ) -> InvocationSpan:
        carrier = {
            name: str(event[name]) for name in ("traceparent", "tracestate") if event.get(name)
        }
        parent = _propagator.extract(carrier, getter=_getter)
        parent_span = trace.get_current_span(parent).get_span_context()
        event_trace = format(parent_span.trace_id, "032x") if parent_span.is_valid else None
        cfg = self._config
        attributes: dict[str, Any] = {
            "messaging.operation.type": "process",
            "messaging.operation.name": "process",
            "messaging.message.id": event["id"],
            "cloudevents.event_id": event["id"],
            "cloudevents.event_source": event["source"],
            "cloudevents.event_type": event["type"],
            "cloudevents.event_spec_version": event["specversion"],
            "rouse.agent": cfg.agent,
            "rouse.skill": cfg.skill,
            "rouse.namespace": cfg.namespace,
            "rouse.cold_start": cold_start,
        }
        if event.get("subject"):
            attributes["cloudevents.event_subject"] = event["subject"]
        span = self.tracer.start_span(
            f"process {event['type']}",
            context=parent,
            kind=SpanKind.CONSUMER,
            attributes=attributes,
        )
        trace_id = event_trace or format(span.get_span_context().trace_id, "032x")
        span.set_attribute("rouse.run.id", run_id or trace_id)
        return InvocationSpan(self, span, event_trace)

    def shutdown(self) -> None:
        for provider in self._shutdown:
            provider.shutdown()


def check_protocol(environ: Mapping[str, str]) -> None:
    """Refuse an OTLP transport the runtime does not ship, naming the variable."""
    for name in (
        "OTEL_EXPORTER_OTLP_PROTOCOL",
        "OTEL_EXPORTER_OTLP_TRACES_PROTOCOL",
        "OTEL_EXPORTER_OTLP_METRICS_PROTOCOL",
    ):
        value = environ.get(name, "").strip()
        if value and value != PROTOCOL:
            raise ConfigError(
                f"{name}={value!r} is not supported: rouse-runtime exports OTLP over"
                f" {PROTOCOL} (a collector's port 4318)"
            )


def exports(environ: Mapping[str, str], signal: str) -> bool:
    """Whether a signal (TRACES, METRICS) has an endpoint and is not switched off."""
    if environ.get(f"OTEL_{signal}_EXPORTER", "otlp").strip().lower() == "none":
        return False
    return bool(
        environ.get("OTEL_EXPORTER_OTLP_ENDPOINT", "").strip()
        or environ.get(f"OTEL_EXPORTER_OTLP_{signal}_ENDPOINT", "").strip()
    )


def resource_attributes(environ: Mapping[str, str], config: Config) -> dict[str, Any]:
    """Who emits: the skill's Service name unless OTEL_SERVICE_NAME (or the attributes) say."""
    attributes: dict[str, Any] = {
        "rouse.agent": config.agent,
        "rouse.skill": config.skill,
        "k8s.namespace.name": config.namespace,
    }
    named = environ.get("OTEL_SERVICE_NAME") or "service.name=" in environ.get(
        "OTEL_RESOURCE_ATTRIBUTES", ""
    )
    if not named:
        attributes["service.name"] = f"{config.agent}-{config.skill}"
    return attributes
