"""Trip-booking example agent (see ../agent.yaml): a step undone by compensation."""
