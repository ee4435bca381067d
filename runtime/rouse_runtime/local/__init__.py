"""Local mode: run an Agent on one machine the way Knative would (``rouse dev``).

A local broker routes CloudEvents by the skills' trigger filters, a supervisor
starts one ``rouse-runtime`` process per skill on the first event and stops it
after idle (scale to zero), deliveries retry with the skill's delivery spec
and end in the parking queue's dead letters (as Knative's dead-letter sink does in
a cluster), and schedules fire from their cron.
"""

# The state store of `rouse dev` under its state dir (SQLite): idempotency, ctx.state,
# ledger, parked events and dead letters.
STATE_FILE = "state.db"
