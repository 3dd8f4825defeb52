"""Ablation: each model mechanism switched off in turn, and what that does to the report's figures.

    python -m synth_pipeline.evaluation.ablation [--datasets school,berka,chinook,sakila]
                                                 [--mechanisms a,b] [--out DIR] [--json FILE]
    python -m synth_pipeline.evaluation.ablation --table FILE.json [FILE.json ...] [--markdown docs/ablation.md]

Per dataset: one full run (the baseline), then one run per mechanism with it switched off
(``mechanisms_off``). A mechanism that only acts while sampling is switched off on the
baseline's fitted models (the models are reused: only sampling, repair, checks, publishing
and evaluation run again); one that changes what the GAN is trained on is refitted. A run
whose blocking checks fail publishes nothing: that is recorded (the mechanism keeps the
output valid) instead of figures.

An effect is how much better the baseline is than the run without the mechanism, per
figure (positive: the mechanism helps). Nothing here is asserted: the table is for people
deciding what stays (docs/ablation.md).
"""

from __future__ import annotations

import argparse
import json
import logging
import os
import sys
import time
from pathlib import Path

from synth_pipeline.config import DATA_DIR, PROJECT_ROOT, PipelineConfig, school_config

DATASETS_DIR = PROJECT_ROOT.parent / "shared" / "datasets"
# figure -> +1 when higher is better, -1 when lower is better
FIGURES = {"column_shapes": 1, "column_pair_trends": 1, "cardinality_similarity_mean": 1,
           "cardinality_similarity_min": 1, "intertable_trends": 1, "two_hop_trends": 1,
           "constraint_satisfaction_mean": 1, "path_agreement_max_gap": -1, "date_offset_similarity_min": 1,
           "key_format_adherence_min": 1, "detection_logistic_regression_max": -1}
MOVES = 0.005  # an effect this large (and beyond the sampling noise) on any figure of any dataset keeps a mechanism
NOISE_FACTOR = 2  # ... and at least this many times the figure's own move under another sampling seed


def dataset_config(name: str, out: Path) -> PipelineConfig:
    if name == "school":
        return school_config(students=1000, out_dir=out)
    sources = {"sakila": (DATASETS_DIR / "sakila" / "sakila.sqlite", None),
               "chinook": (DATASETS_DIR / "chinook" / "Chinook_Sqlite.sqlite", None),
               "berka": (DATASETS_DIR / "berka", DATA_DIR / "berka" / "metadata.json")}
    if name not in sources:
        raise SystemExit(f"unknown dataset '{name}' (known: school, {', '.join(sources)})")
    source, metadata = sources[name]
    if not source.exists():
        raise SystemExit(f"{source} is absent (the shared datasets folder sits beside the project)")
    return PipelineConfig(source=source, metadata_path=metadata, out_dir=out)


def _figures(outcome) -> dict:
    summary = outcome.report["synth_pipeline"]["summary"]
    return {k: summary.get(k) for k in FIGURES} | {"fk_violations": summary.get("fk_violations")}


def effects(baseline: dict, variant: dict) -> dict:
    """Per figure: baseline minus variant, signed so that positive means the mechanism helps."""
    out = {}
    for k, sign in FIGURES.items():
        if baseline.get(k) is not None and variant.get(k) is not None:
            out[k] = round(sign * (baseline[k] - variant[k]), 4)
    return out


def fitted_switches(work_dir: Path) -> dict[str, bool]:
    """The switches of the mechanisms the run's models hold (``models/<table>.json``), and
    whether switching each off changes what the GAN is trained on (a refit)."""
    out: dict[str, bool] = {}
    for path in sorted((Path(work_dir) / "models").glob("*.json")):
        out.update(json.loads(path.read_text()).get("switches", {}))
    return out


def ablate(dataset: str, out: Path, mechanisms: list[str] | None) -> dict:
    from synth_pipeline.runner import run_pipeline

    config = dataset_config(dataset, out / dataset)
    started = time.perf_counter()
    base = run_pipeline(config)
    if not base.success:
        raise SystemExit(f"{dataset}: the baseline run failed: {base.failures}")
    result = {"dataset": dataset, "baseline": _figures(base), "baseline_seconds": round(base.seconds, 1),
              "mechanisms": {}}
    print(f"{dataset}: baseline {result['baseline']} ({base.seconds:.0f} s)", flush=True)
    fitted = fitted_switches(config.work_dir)
    result["fitted"] = sorted(fitted)
    tables = list(config.metadata().tables)
    resample = " or ".join(f'key:"synthetic/{t}"+' for t in tables)
    # sampling noise: the same models sampled with another seed (no mechanism changed)
    noise = run_pipeline(config.replace(seed=config.seed + 1), selection=resample)
    if noise.success:
        result["noise"] = effects(result["baseline"], _figures(noise))
        print(f"{dataset}: another sampling seed: {result['noise']}", flush=True)
    chosen = [m for m in fitted if mechanisms is None or m in mechanisms]
    # sampling-only switches first, on the baseline's models; refits last (they replace the models)
    for name in sorted(chosen, key=lambda m: fitted[m]):
        refit = fitted[name]
        outcome = run_pipeline(config.replace(mechanisms_off=(name,)), selection=None if refit else resample)
        row = {"refit": refit, "seconds": round(outcome.seconds, 1)}
        if outcome.success:
            row["figures"] = _figures(outcome)
            row["effects"] = effects(result["baseline"], row["figures"])
        else:
            row["blocked"] = outcome.failures[:5]
        result["mechanisms"][name] = row
        print(f"{dataset}: without {name}: {row.get('effects') or row.get('blocked')} ({outcome.seconds:.0f} s)",
              flush=True)
    result["seconds"] = round(time.perf_counter() - started, 1)
    return result


def moved(effects: dict, noise: dict | None) -> list[str]:
    """The figures an ablation moved: by at least ``MOVES`` and at least ``NOISE_FACTOR``
    times what another sampling seed alone moves them (a minimum or maximum over tables moves
    by more than a mean)."""
    noise = noise or {}
    return [k for k, v in effects.items() if abs(v) >= max(MOVES, NOISE_FACTOR * abs(noise.get(k, 0.0)))]


def verdicts(results: list[dict]) -> dict[str, str]:
    """Per mechanism: "keep" when it moves a figure on some dataset or its absence fails a
    blocking check, else "no effect"."""
    out = {}
    names = dict.fromkeys(m for r in results for m in r["mechanisms"])
    for name in names:
        keep = any("blocked" in r["mechanisms"][name] or moved(r["mechanisms"][name]["effects"], r.get("noise"))
                   for r in results if name in r["mechanisms"])
        out[name] = "keep" if keep else "no effect"
    return out


def markdown(results: list[dict]) -> str:
    datasets = [r["dataset"] for r in results]
    lines = ["| mechanism | " + " | ".join(datasets) + " | verdict |", "|---" * (len(datasets) + 2) + "|"]
    lines.append("| *(another sampling seed)* | " + " | ".join(_cell(r.get("noise")) for r in results) + " | |")
    for name, verdict in verdicts(results).items():
        cells = []
        for r in results:
            row = r["mechanisms"].get(name)
            cells.append("not fitted" if row is None else "checks fail" if "blocked" in row
                         else _cell(row["effects"], r.get("noise", {})))
        lines.append(f"| `{name}` | " + " | ".join(cells) + f" | {verdict} |")
    return "\n".join(lines) + "\n"


def _cell(effects: dict | None, noise: dict | None = None) -> str:
    """The two largest effects; in bold those that count (``moved``)."""
    if not effects:
        return ""
    counted = set(moved(effects, noise)) if noise is not None else set()
    top = sorted(effects.items(), key=lambda kv: -abs(kv[1]))[:2]
    shown = [f"**{_short(k)} {v:+.3f}**" if k in counted else f"{_short(k)} {v:+.3f}" for k, v in top if abs(v) >= 0.001]
    return ", ".join(shown) or "0"


def _short(figure: str) -> str:
    return {"column_shapes": "shapes", "column_pair_trends": "pairs", "cardinality_similarity_mean": "card",
            "cardinality_similarity_min": "card min", "intertable_trends": "inter", "two_hop_trends": "2-hop",
            "constraint_satisfaction_mean": "constraints", "path_agreement_max_gap": "path gap",
            "date_offset_similarity_min": "offsets", "key_format_adherence_min": "keys",
            "detection_logistic_regression_max": "detection"}.get(figure, figure)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m synth_pipeline.evaluation.ablation", description=__doc__,
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--datasets", default="school,berka,chinook,sakila")
    parser.add_argument("--mechanisms", default=None,
                        help="comma-separated switches (default: every one the baseline's models hold; none: only the baseline and the sampling-noise run)")
    parser.add_argument("--out", type=Path, default=Path("/tmp/synth_pipeline_ablation"))
    parser.add_argument("--json", type=Path, default=None, help="where the figures go (default OUT/ablation.json)")
    parser.add_argument("--table", type=Path, nargs="+", default=None, help="render these result files as markdown")
    parser.add_argument("--markdown", type=Path, default=None, help="with --table: write the table here")
    args = parser.parse_args(argv)
    if args.table:
        results = [r for path in args.table for r in json.loads(path.read_text())["results"]]
        text = markdown(results)
        print(text)
        if args.markdown:
            args.markdown.write_text(text)
        return 0
    logging.basicConfig(level=logging.WARNING)
    os.environ.setdefault("OMP_NUM_THREADS", "1")
    mechanisms = [m for m in args.mechanisms.split(",") if m and m != "none"] if args.mechanisms else None
    results = [ablate(d, args.out, mechanisms) for d in args.datasets.split(",") if d]
    figures = {"results": results, "verdicts": verdicts(results), "moves": MOVES, "noise_factor": NOISE_FACTOR}
    from synth_pipeline.evaluation.benchmark import write_figures

    write_figures(figures, args.json or args.out / "ablation.json")
    print(markdown(results))
    return 0


if __name__ == "__main__":
    sys.exit(main())
