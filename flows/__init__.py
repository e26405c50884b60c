"""Prefect flows: sources -> stages -> sinks, chunk by chunk."""
