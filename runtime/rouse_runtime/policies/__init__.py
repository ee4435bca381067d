"""Pure warm-pool and budget policies shared by the operator and local mode.

Metrics and spec in, a decision with a reason out; no I/O, no clock reads
(`now` is an argument), so both callers behave the same and tables of metric
histories can test them.
"""
