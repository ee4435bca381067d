"""Pure builders: an Agent dict (validated, defaulted) and Settings in, manifest dicts out."""
