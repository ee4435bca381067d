"""Hello example agent (see ../agent.yaml)."""
