import os
import subprocess
import sys
from pathlib import Path

import dagster as dg
import pytest

os.environ.setdefault("GX_ANALYTICS_ENABLED", "false")

from synth_pipeline.config import SCHOOL_METADATA, PipelineConfig  # noqa: E402
from synth_pipeline.pipeline import build_definitions, resources_for  # noqa: E402
from synth_pipeline.schema.metadata import Metadata  # noqa: E402
from synth_pipeline.sources import build_school_database  # noqa: E402
from synth_pipeline.sources.school import simulate_school  # noqa: E402

SHARED = Path(__file__).resolve().parents[1].parent / "shared"
DATASETS = SHARED / "datasets"


def pytest_collection_modifyitems(items):
    """The tests marked ``slow`` first (in their order): split over worker processes
    (``make test``), the longest ones start at once instead of last."""
    items.sort(key=lambda item: item.get_closest_marker("slow") is None)


def require_dataset(name: str) -> Path:
    path = DATASETS / name
    if not path.exists():
        pytest.skip(f"{path} is absent (the shared datasets folder sits beside the project)")
    return path


@pytest.fixture(scope="session")
def school_metadata() -> Metadata:
    return Metadata.load(SCHOOL_METADATA)


@pytest.fixture(scope="session")
def school_tables():
    return simulate_school(students=1000, seed=0)


@pytest.fixture(scope="session")
def tiny_school_db(tmp_path_factory) -> Path:
    path = tmp_path_factory.mktemp("school") / "school.duckdb"
    return build_school_database(path, students=150, seed=7)


def count_orphans(con, rel) -> int:
    """Rows of a published child table whose (non-null, possibly composite) foreign key names no
    parent row (SQL, in DuckDB)."""
    on = " AND ".join(f'c."{a}" = p."{b}"' for a, b in zip(rel.child_columns, rel.parent_columns))
    present = " AND ".join(f'c."{a}" IS NOT NULL' for a in rel.child_columns)
    return con.execute(f'SELECT count(*) FROM "{rel.child_table_name}" c WHERE {present} AND NOT EXISTS '
                       f'(SELECT 1 FROM "{rel.parent_table_name}" p WHERE {on})').fetchone()[0]


def run_cli(*args, timeout: int = 900) -> subprocess.CompletedProcess:
    """``synth-pipeline -q ARGS`` in a fresh interpreter, as a user runs it."""
    return subprocess.run([sys.executable, "-m", "synth_pipeline.cli", "-q", *args],
                          capture_output=True, text=True, timeout=timeout)


def tiny_config(tmp: Path, source: Path, **overrides) -> PipelineConfig:
    return PipelineConfig(source=source, metadata_path=SCHOOL_METADATA, out_dir=tmp / "out",
                          steps=overrides.pop("steps", 20), seed=overrides.pop("seed", 1), **overrides)


def materialize_all(metadata: Metadata, config: PipelineConfig, selection=None, instance=None):
    defs = build_definitions(metadata, config)
    return dg.materialize(
        [*defs.assets, *defs.asset_checks], resources=resources_for(config), selection=selection,
        instance=instance, raise_on_error=False,
    )


@pytest.fixture(scope="session")
def tiny_run(tmp_path_factory, tiny_school_db, school_metadata):
    """One end-to-end materialization of the tiny school database, shared by several tests."""
    tmp = tmp_path_factory.mktemp("tiny_run")
    config = tiny_config(tmp, tiny_school_db)
    result = materialize_all(school_metadata, config)
    return config, result
