"""The parking and dead-letter service: events stored durably, in order, and replayed.

`python -m rouse_runtime.parking` serves the sinks Triggers point at
(`/park/<ns>/<agent>/<skill>` while an agent's budget is spent,
`/dead-letter/<ns>/<agent>/<skill>` after delivery retries), replays parked
events into the broker in arrival order, and exports the spend ledger on
`/metrics` (it is the long-lived process the policies' exact figures need).
"""
