"""Evaluate a synthetic database against the real one, optionally beside the HMA baseline,
and write ``report.json`` and ``report.html`` (what ``synth-pipeline evaluate`` and the
``evaluation`` asset call)."""

from __future__ import annotations

import json
import logging
import os
import warnings
from pathlib import Path

import pandas as pd

from synth_pipeline.evaluation.report import evaluate
from synth_pipeline.schema.metadata import Metadata

log = logging.getLogger(__name__)


def build_report(real: dict[str, pd.DataFrame], synthetic: dict[str, pd.DataFrame], metadata: Metadata,
                 baseline: str | None = None, seed: int = 0, timings: dict[str, dict[str, float]] | None = None,
                 holdout: dict[str, pd.DataFrame] | None = None, allow: tuple[str, ...] = (), min_count: int = 5) -> dict:
    """``real``/``synthetic``: the user's tables; scored on the schema the model sees
    (composite keys as one surrogate column, so every figure is per foreign key). ``holdout``:
    real rows no model saw (a privacy holdout), the privacy figures' reference."""
    if holdout is not None:
        real, synthetic, holdout, metadata = evaluation_view(metadata, real, synthetic, holdout)
    else:
        real, synthetic, metadata = evaluation_view(metadata, real, synthetic)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        log.info("evaluating %d tables", len(metadata.tables))
        report = {"synth_pipeline": evaluate(real, synthetic, metadata, seed=seed, holdout=holdout, allow=allow,
                                                min_count=min_count)}
        if baseline == "hma":
            report["comparison"] = _hma_comparison(real, synthetic, metadata, seed, timings or {})
        elif baseline is not None:
            raise ValueError(f"unknown baseline '{baseline}' (known: hma)")
    return report


def evaluation_view(metadata: Metadata, *frames: dict[str, pd.DataFrame]):
    """``frames`` (user tables) in the plan's evaluation schema, and that schema; empty tables
    are left out (nothing to score)."""
    from synth_pipeline.schema.plan import SchemaPlan, evaluation_frames

    plan = SchemaPlan.of(metadata)
    return (*(evaluation_frames(plan, f) for f in frames), plan.evaluation)


def _hma_comparison(real, synthetic, metadata, seed, timings) -> dict:
    from synth_pipeline.evaluation.baseline import hma_subschema, run_hma

    tables = hma_subschema(metadata, real)
    sub = metadata.restrict(tables)
    run = run_hma(metadata, real, tables, seed=seed)
    real_sub = {t: real[t] for t in tables}
    ours = evaluate(real_sub, {t: synthetic[t] for t in tables}, sub, seed=seed)["summary"]
    theirs = evaluate(real_sub, {t: run.synthetic[t] for t in tables}, sub, seed=seed)["summary"]
    theirs.update({"fit_seconds": round(run.fit_seconds, 1), "sample_seconds": round(run.sample_seconds, 1)})
    for stage in ("fit", "sample"):
        values = [timings.get(t, {}).get(stage) for t in tables]
        if all(v is not None for v in values):
            ours[f"{stage}_seconds"] = round(sum(values), 1)
    excluded = [t for t in metadata.tables if t not in tables]
    return {"tables": tables, "synth_pipeline": ours, "hma": theirs,
            "note": "HMA refuses more than 5 tables or chains deeper than parent -> child, so both systems are "
                    f"scored on this sub-schema; left out: {', '.join(excluded) or 'nothing'}. Our figures are for the "
                    "output of the full-schema run restricted to these tables; timings are per system, for these tables."}


def write_report(report: dict, real, synthetic, metadata: Metadata, out_dir: str | Path) -> tuple[Path, Path]:
    from synth_pipeline.evaluation.html import render

    out = Path(out_dir)
    out.mkdir(parents=True, exist_ok=True)
    json_path, html_path = out / "report.json", out / "report.html"
    page = render(report, real, synthetic, metadata)
    for path, text in ((json_path, json.dumps(report, indent=2, default=_plain) + "\n"), (html_path, page)):
        tmp = path.with_name(f".{path.name}.{os.getpid()}.tmp")
        tmp.write_text(text)
        tmp.replace(path)
    return json_path, html_path


def _plain(value):
    if hasattr(value, "item"):
        return value.item()
    return str(value)
