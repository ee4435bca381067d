"""The front door: a skill that answers people over HTTP (spec.skills[].http).

Event skills are reached only through the broker (cluster-local); a front door
is the one skill routed through the ingress. It takes JSON, answers JSON, or
streams Server-Sent Events when its handler is an async generator; callers
show an API key unless the Agent says `public: true`; `ctx.emit` hands long
work to event skills, and `GET /runs/<run>` follows that work as it happens.

Modules: `settings` (the env contract, imported at start-up, so it stays
small), `keys` (who may call), `app` (the HTTP surface), `stream` (an async
generator handler under its budget), `progress` (where a run's progress is
read from). The SSE library is imported on the first stream, not at start-up.
"""
