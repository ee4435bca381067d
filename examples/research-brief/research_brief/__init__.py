"""Research-brief example agent (see ../agent.yaml): fan-out, workers, a join."""
