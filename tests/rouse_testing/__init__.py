"""Helpers shared by Rouse's tests: real servers, ports, waiting for conditions."""
