"""Run the asset graph in process (what the CLI and the benchmark call)."""

from __future__ import annotations

import json
import logging
import time
from dataclasses import dataclass, field
from pathlib import Path

import dagster as dg

from synth_pipeline.config import PipelineConfig
from synth_pipeline.pipeline import JOB_NAME, build_definitions
from synth_pipeline.errors import SynthPipelineError
from synth_pipeline.sources.loaders import require_tables

log = logging.getLogger(__name__)


class RunFailed(SynthPipelineError):
    """A step or a blocking check failed; nothing new was published."""


@dataclass
class RunOutcome:
    success: bool
    seconds: float
    report: dict | None
    failures: list[str] = field(default_factory=list)


def subtree_selection(table: str) -> str:
    """Dagster's selection for ``synthetic/<table>`` and everything downstream of it."""
    return f'key:"synthetic/{table}"+'


def run_pipeline(config: PipelineConfig, selection: str | None = None,
                 instance: dg.DagsterInstance | None = None, only: str | None = None) -> RunOutcome:
    """Materialize every asset (or ``selection``, or ``only`` one table's subtree: it is
    re-sampled with its descendants, every other table reused as stored) and return the
    published report."""
    started = time.perf_counter()
    metadata = config.metadata()
    if only is not None:
        _require_stored_run(config, metadata, only)
        selection = subtree_selection(only)
    if config.school_students == 0 or config.source.exists():
        require_tables(config.source, list(metadata.tables))  # a clear error now rather than inside a step
    defs = build_definitions(metadata, config)
    job = defs.resolve_job_def(JOB_NAME)
    keys = None
    if selection:
        keys = list(dg.AssetSelection.from_string(selection).resolve(defs.resolve_asset_graph()))
    result = job.execute_in_process(
        instance=instance or dg.DagsterInstance.ephemeral(), raise_on_error=False, asset_selection=keys,
        run_config={"loggers": {"console": {"config": {"log_level": "CRITICAL"}}}},  # failures are reported below
    )
    failures = _failures(result)
    report_path = config.out_dir / "report.json"
    report = json.loads(report_path.read_text()) if result.success and report_path.exists() else None
    return RunOutcome(result.success and not failures, time.perf_counter() - started, report, failures)


def _require_stored_run(config: PipelineConfig, metadata, table: str) -> None:
    """A subtree re-run reuses the fitted models and the tables outside the subtree."""
    if table not in metadata.tables:
        raise RunFailed(f"--only {table}: no such table (tables: {', '.join(metadata.topological_order())})")
    work = Path(config.work_dir)
    missing = [t for t in metadata.tables if not (work / "models" / f"{t}.pkl").exists()
               or not (work / "repaired" / f"{t}.parquet").exists()]
    if missing:
        raise RunFailed(f"--only {table}: no stored run in {work} for {', '.join(missing)}; run the whole pipeline once first")


def _failures(result) -> list[str]:
    out = []
    for event in result.all_events:
        if event.event_type_value == "STEP_FAILURE":
            error = event.step_failure_data.error
            while error.cause is not None:
                error = error.cause
            message = error.message.strip().splitlines()[-1]
            if error.cls_name and message.split(": ", 1)[0].endswith(error.cls_name):
                message = message.split(": ", 1)[1]
            out.append(f"{event.step_key}: {message}")
        elif event.event_type_value == "ASSET_CHECK_EVALUATION":
            data = event.event_specific_data
            if not data.passed:
                out.append(f"check {data.asset_key.to_user_string()}:{data.check_name} failed "
                           f"{ {k: v.value for k, v in data.metadata.items()} }")
    return out
