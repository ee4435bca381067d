"""Local mode: run an Agent on one machine the way Knative would (``rouse dev``).

A local broker routes CloudEvents by the skills' trigger filters, a supervisor
starts one ``rouse-runtime`` process per skill on the first event and stops it
after idle (scale to zero), deliveries retry with the skill's delivery spec
and end in an on-disk dead-letter store, and schedules fire from their cron.
"""
