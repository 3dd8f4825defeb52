"""Fidelity, structure and privacy metrics, the report, and the benchmark (no Dagster here)."""
