"""Writes of the CM loop, one module per subject (checks, ingest, alerts)."""
