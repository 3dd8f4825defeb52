"""Loaders for real databases and the embedded school simulator."""

from __future__ import annotations

import logging
from pathlib import Path

from synth_pipeline.sources.loaders import catalog_keys, load_tables, source_kind

log = logging.getLogger(__name__)

__all__ = ["build_school_database", "catalog_keys", "load_tables", "source_kind"]


def build_school_database(path: str | Path, students: int = 1000, seed: int = 0) -> Path:
    """Simulate the school database and write it as a DuckDB file with its keys declared."""
    from synth_pipeline.publish import write_database
    from synth_pipeline.schema.metadata import Metadata
    from synth_pipeline.sources.school import METADATA_PATH, simulate_school

    log.info("building the school database (%d students, seed %d) at %s", students, seed, path)
    tables = simulate_school(students=students, seed=seed)
    return write_database(tables, Metadata.load(METADATA_PATH), path)
