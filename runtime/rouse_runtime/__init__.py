"""Rouse skill runtime: wraps a Python skill handler in a CloudEvents HTTP server.

This distribution is what the skill image installs, so it must never import
kopf or the Kubernetes client. Code the operator shares with local mode (reading
an Agent spec, names, the pure policies) lives here for that reason.
"""

__version__ = "0.1.0"
