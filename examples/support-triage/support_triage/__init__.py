"""Support-triage example agent: skills for the Rouse runtime (see ../agent.yaml)."""
