"""Rouse operator: reconciles Agent resources into Knative children."""

__version__ = "0.1.0"
