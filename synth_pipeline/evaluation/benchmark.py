"""Benchmark: wall time and peak memory of the demo run, of sampling at a large scale from
the fitted models, and of fitting as the real database grows (figures printed and saved).

    python -m synth_pipeline.evaluation.benchmark [--students N] [--sample-scale X [--partitions P]] [--sample-only] [--hma]
                                                  [--growth 1000,10000 [--fit-rows N]] [--privacy school,berka,...]
                                                  [--tpch 0.1,1]
                                                  [--out DIR] [--json FILE]

``--privacy`` (default: the school, Berka, Chinook and Sakila where ../shared has them) runs
each database with a privacy holdout of 0.2 and prints, per table, sdmetrics' DCR
overfitting protection against the held-out rows, the membership attack's advantage and
the copies of unique real rows.

``--tpch`` runs TPC-H at those scales end to end (``synth-pipeline run --source``, no
metadata) and reports each stage's time: fit, sample, repair, check, publish, evaluate.

``--growth`` loads and fits (no sampling) schools of those sizes; tables above ``fit_rows``
rows are fitted on a consistent subsample, as a run would.

Each measured run happens in a child process; its peak resident memory (the child and its
own children, polled) is measured on its own. Nothing here is asserted: the figures are for
people (README, issue notes) to compare with the targets printed beside them.
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import subprocess
import sys
import tempfile
import threading
import time
from pathlib import Path

from synth_pipeline.config import DATA_DIR

TARGETS = {"demo_wall_seconds": 90, "demo_peak_rss_mb": 4096, "sample_rows_per_second": 30_000,
           "sample_peak_rss_mb": 8192}


def measure(command: list[str]) -> dict:
    """Wall seconds and peak RSS (MB) of ``command``: the larger of the kernel's peak for the
    child and the peak of the summed RSS of the child and its descendants (worker processes),
    polled every 0.2 s from /proc."""
    with tempfile.TemporaryFile("w+") as out, tempfile.TemporaryFile("w+") as err:
        started = time.perf_counter()
        proc = subprocess.Popen(command, stdout=out, stderr=err, text=True)
        tree_peak = [0]
        poller = threading.Thread(target=_poll_tree_rss, args=(proc.pid, tree_peak), daemon=True)
        poller.start()
        _, status, usage = os.wait4(proc.pid, 0)
        seconds = time.perf_counter() - started
        proc.returncode = os.waitstatus_to_exitcode(status)
        out.seek(0)
        err.seek(0)
        stdout, stderr = out.read(), err.read()
    if proc.returncode != 0:
        raise SystemExit(f"benchmark run failed ({proc.returncode}): {' '.join(command)}\n{stderr[-2000:]}")
    peak_kb = max(usage.ru_maxrss, tree_peak[0])
    return {"command": " ".join(command), "wall_seconds": round(seconds, 1),
            "peak_rss_mb": round(peak_kb / 1024, 1), "stdout": stdout}


def _poll_tree_rss(pid: int, peak: list[int]) -> None:
    """Keep ``peak[0]`` at the largest summed VmRSS (kB) of ``pid`` and its descendants."""
    while True:
        total, stack, seen = 0, [pid], set()
        while stack:
            current = stack.pop()
            if current in seen:
                continue
            seen.add(current)
            try:
                status = Path(f"/proc/{current}/status").read_text()
                total += next((int(line.split()[1]) for line in status.splitlines() if line.startswith("VmRSS:")), 0)
                for task in Path(f"/proc/{current}/task").iterdir():
                    stack += [int(c) for c in (task / "children").read_text().split()]
            except (OSError, ValueError):
                continue
        if total == 0 and not Path(f"/proc/{pid}").exists():
            return
        peak[0] = max(peak[0], total)
        time.sleep(0.2)


def _school_source(students: int) -> None:
    """The simulated school database of that size, built (untimed) when missing: the figures
    are the synthesis, not the simulator."""
    from synth_pipeline.config import school_config
    from synth_pipeline.sources import build_school_database

    config = school_config(students=students)
    if not config.source.exists():
        build_school_database(config.source, students=students, seed=0)


def write_figures(figures: dict, path: str | Path) -> dict:
    """Print a benchmark's figures and write them as JSON to ``path``; returns them."""
    print(json.dumps(figures, indent=2))
    Path(path).parent.mkdir(parents=True, exist_ok=True)
    Path(path).write_text(json.dumps(figures, indent=2) + "\n")
    return figures


def demo(students: int, out: Path) -> dict:
    _school_source(students)
    figures = measure([sys.executable, "-m", "synth_pipeline.cli", "-q", "demo", "--students", str(students),
                       "--out", str(out)])
    figures.pop("stdout")
    report = json.loads((out / "report.json").read_text())
    totals, quality = report["run"]["totals"], report["synth_pipeline"]["summary"]
    timings = {}
    for path in (out / "work" / "timings").glob("*/*.txt"):
        timings.setdefault(path.parent.name, 0.0)
        timings[path.parent.name] += float(path.read_text())
    figures.update({"students": students, "real_rows": totals["real_rows"], "synthetic_rows": totals["synthetic_rows"],
                    "fk_violations": totals["fk_violations"],
                    "mean_cardinality_similarity": totals["mean_cardinality_similarity"],
                    "fit_seconds": round(timings.get("fit", 0.0), 1), "sample_seconds": round(timings.get("sample", 0.0), 1),
                    "evaluation_seconds": quality["evaluation_seconds"]})
    return figures


PRIVACY_DATASETS = ("school", "berka", "chinook", "sakila")


def privacy(dataset: str, out: Path, holdout: float = 0.2) -> dict | None:
    """One run of ``dataset`` with a privacy holdout: its per-table privacy figures (None: absent)."""
    from synth_pipeline.evaluation.ablation import dataset_config

    try:
        config = dataset_config(dataset, out)
    except SystemExit as exc:
        print(f"privacy: {dataset} skipped ({exc})", flush=True)
        return None
    command = [sys.executable, "-m", "synth_pipeline.cli", "-q"]
    if dataset == "school":
        _school_source(1000)
        command += ["demo"]
    else:
        command += ["run", "--source", str(config.source)]
        if config.metadata_path is not None:
            command += ["--metadata", str(config.metadata_path)]
    figures = measure(command + ["--out", str(out), "--privacy-holdout", str(holdout)])
    figures.pop("stdout")
    report = json.loads((out / "report.json").read_text())["synth_pipeline"]
    tables = {}
    for name, table in report["tables"].items():
        p = table["privacy"]
        tables[name] = {k: p.get(k) for k in ("holdout_rows", "dcr_overfitting_protection", "closer_to_training_share",
                                              "dcr_baseline_protection", "membership_attack_auc",
                                              "membership_advantage", "copied_rows")}
        tables[name]["rare_values_renamed"] = table.get("rare_values_renamed", {})
    summary = report["summary"]
    return {**figures, "privacy_holdout": holdout, "tables": tables,
            **{k: summary.get(k) for k in ("copied_rows", "verbatim_identity_strings", "dcr_overfitting_protection_min",
                                           "membership_advantage_max", "column_shapes", "column_pair_trends",
                                           "fk_violations")}}


STAGES = ("fit", "sample", "repair", "check", "publish", "evaluate")


def tpch(scale: float, out: Path, workers: int = 1, partitions: int = 1) -> dict:
    """TPC-H at ``scale`` (``tpchgen-cli parquet``, generated untimed when missing) through
    ``synth-pipeline run --source DIR`` with no metadata and the default quality: wall time,
    peak memory, each stage's summed seconds, FK violations and the fidelity summary."""
    source = out / f"tpch_{scale:g}"
    if not (source / "lineitem.parquet").exists():
        source.mkdir(parents=True, exist_ok=True)
        cli = Path(sys.executable).parent / "tpchgen-cli"
        subprocess.run([str(cli), "parquet", "-s", f"{scale:g}", "--output-dir", str(source)], check=True)
    target = out / f"tpch_{scale:g}_out"
    figures = measure([sys.executable, "-m", "synth_pipeline.cli", "-q", "run", "--source", str(source),
                       "--out", str(target), "--workers", str(workers), "--partitions", str(partitions)])
    figures.pop("stdout")
    from synth_pipeline.resources import read_timings

    report = json.loads((target / "report.json").read_text())
    totals, summary = report["run"]["totals"], report["synth_pipeline"]["summary"]
    timings = read_timings(target / "work")
    stages = {stage: round(sum(t.get(stage, 0.0) for t in timings.values()), 1) for stage in STAGES}
    slowest = {stage: sorted(((round(t[stage], 1), name) for name, t in timings.items() if stage in t), reverse=True)[:3]
               for stage in ("fit", "sample")}
    return {**figures, "scale": scale, "workers": workers, "partitions": partitions, "real_rows": totals["real_rows"], "synthetic_rows": totals["synthetic_rows"],
            "fk_violations": totals["fk_violations"], "evaluated_fk_violations": summary.get("fk_violations"),
            "stage_seconds": stages, "slowest": slowest,
            "rows_per_second_sampled": round(totals["synthetic_rows"] / max(stages["sample"], 1e-9)),
            **{k: summary.get(k) for k in ("column_shapes", "column_pair_trends", "cardinality_similarity_mean",
                                           "intertable_trends", "two_hop_trends", "copied_rows")}}


def sample_only(out: Path, scale: float, partitions: int = 1, workers: int = 1) -> dict:
    """Sample, repair and publish every table at ``scale`` from the models a demo run stored
    in ``out`` (no refit, no evaluation), in ``partitions`` chunks of root rows (``workers``
    at once), in a child process."""
    figures = measure([sys.executable, "-m", "synth_pipeline.evaluation.benchmark", "--_sample", str(scale),
                       "--partitions", str(partitions), "--workers", str(workers), "--out", str(out)])
    figures.update(json.loads(figures.pop("stdout").strip().splitlines()[-1]))
    figures["rows_per_second"] = round(figures["rows"] / figures["wall_seconds"])
    return figures


def fit_only(students: int, out: Path, fit_rows: int | None = None) -> dict:
    """Load and fit every table of a ``students``-student school (no sampling), in a child
    process; the simulated database is built first and not timed."""
    _school_source(students)
    command = [sys.executable, "-m", "synth_pipeline.evaluation.benchmark", "--_fit", str(students), "--out", str(out)]
    if fit_rows is not None:
        command += ["--fit-rows", str(fit_rows)]
    figures = measure(command)
    figures.update(json.loads(figures.pop("stdout").strip().splitlines()[-1]))
    return figures


def _fit_in_process(out: Path, students: int, fit_rows: int | None) -> None:
    import dagster as dg

    from synth_pipeline.config import school_config
    from synth_pipeline.pipeline import JOB_NAME, build_definitions
    from synth_pipeline.resources import read_timings

    config = school_config(students=students, out_dir=out)
    if fit_rows is not None:
        config = config.replace(fit_rows=fit_rows)
    defs = build_definitions(config.metadata(), config)
    keys = [k for k in defs.resolve_asset_graph().get_all_asset_keys() if k.path[0] in ("real", "model")]
    result = defs.resolve_job_def(JOB_NAME).execute_in_process(
        instance=dg.DagsterInstance.ephemeral(), asset_selection=keys, raise_on_error=False,
        run_config={"loggers": {"console": {"config": {"log_level": "ERROR"}}}})
    if not result.success:
        raise SystemExit("fitting run failed")
    import pyarrow.parquet as pq

    timings = read_timings(Path(config.work_dir))
    rows = {t: pq.ParquetFile(Path(config.work_dir) / "real" / f"{t}.parquet").metadata.num_rows for t in timings
            if (Path(config.work_dir) / "real" / f"{t}.parquet").exists()}
    real_rows, largest = sum(rows.values()), max(rows, key=rows.get)
    fitted = next(event.materialization.metadata["model"].value for event in result.get_asset_materialization_events()
                  if event.asset_key == dg.AssetKey(["model", largest]))
    print(json.dumps({"students": students, "real_rows": real_rows, "fit_rows": config.fit_rows,
                      "fit_seconds": round(sum(t.get("fit", 0.0) for t in timings.values()), 1),
                      "largest_table": largest, "largest_rows": fitted["real_rows"],
                      "largest_fitted_rows": fitted["fitted_rows"]}))


def hma_side_by_side(out: Path) -> dict:
    """SDV's HMA fitted and sampled on the sub-schema it accepts, beside our per-table fit and
    sample times for the same tables from the demo run in ``out`` (one child process)."""
    from synth_pipeline.config import SCHOOL_DB, SCHOOL_METADATA

    hma_out = out / "hma"
    figures = measure([sys.executable, "-m", "synth_pipeline.cli", "-q", "evaluate", "--real", str(SCHOOL_DB),
                       "--metadata", str(SCHOOL_METADATA), "--synthetic", str(out / "synthetic.duckdb"),
                       "--baseline", "hma", "--out", str(hma_out)])
    figures.pop("stdout")
    comparison = json.loads((hma_out / "report.json").read_text())["comparison"]
    ours, theirs = comparison["synth_pipeline"], comparison["hma"]
    figures.update({"tables": comparison["tables"],
                    "synth_pipeline": {k: ours.get(k) for k in ("fit_seconds", "sample_seconds")},
                    "hma": {k: theirs.get(k) for k in ("fit_seconds", "sample_seconds")}})
    for side in ("synth_pipeline", "hma"):
        figures[side]["total_seconds"] = round(sum(v or 0.0 for v in figures[side].values()), 1)
    return figures


def _sample_in_process(out: Path, scale: float, partitions: int, workers: int) -> None:
    import dagster as dg

    from synth_pipeline.assets import PUBLISHED_KEY
    from synth_pipeline.config import school_config
    from synth_pipeline.pipeline import build_definitions
    from synth_pipeline.runner import execute_partitioned

    config = school_config(out_dir=out).replace(scale=scale, partitions=partitions, workers=workers,
                                                out_dir=out / f"scale_{scale:g}", work_dir=out / "work")
    metadata = config.metadata()
    defs = build_definitions(metadata, config)
    graph = defs.resolve_asset_graph()
    keys = [k for k in graph.get_all_asset_keys() if k.path[0] in ("synthetic", "repaired") or k == PUBLISHED_KEY]
    started = time.perf_counter()
    runs = execute_partitioned(defs, dg.DagsterInstance.ephemeral(), keys, config, metadata)
    failures = [f for run in runs for f in run.failures]
    if not all(run.success for run in runs) or failures:
        raise SystemExit(f"sampling run failed: {failures[:3]}")
    report = json.loads((config.out_dir / "report.json").read_text())["run"]
    print(json.dumps({"scale": scale, "partitions": partitions, "workers": workers,
                      "rows": report["totals"]["synthetic_rows"],
                      "fk_violations": report["totals"]["fk_violations"],
                      "in_process_seconds": round(time.perf_counter() - started, 1)}))


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--students", type=int, default=1000)
    parser.add_argument("--sample-scale", type=float, default=10.0,
                        help="sample at this scale from the demo's fitted models (0: skip)")
    parser.add_argument("--growth", default="", help="also time fitting at these student counts, e.g. 1000,10000")
    parser.add_argument("--out", default=str(DATA_DIR / "output" / "benchmark"))
    parser.add_argument("--json", default=str(DATA_DIR / "output" / "benchmark.json"))
    parser.add_argument("--partitions", type=int, default=0,
                        help="sample at scale in this many chunks of root rows (default: one per 10x the real rows)")
    parser.add_argument("--workers", type=int, default=1, help="partitions sampled at once, each in its own process")
    parser.add_argument("--sample-only", action="store_true",
                        help="skip the demo run (sample from the models a previous benchmark left in --out; keep its figures)")
    parser.add_argument("--hma", action="store_true",
                        help="also fit and sample SDV's HMA on the sub-schema it accepts, timed beside ours")
    parser.add_argument("--fit-rows", type=int, default=None,
                        help="growth runs: the fit_rows budget (default: the config's, 200000; 0: fit on everything)")
    parser.add_argument("--privacy", default=",".join(PRIVACY_DATASETS),
                        help="databases run with a privacy holdout of 0.2, their per-table privacy figures printed "
                             "('' to skip)")
    parser.add_argument("--tpch", default="", help="also run TPC-H at these scales end to end, e.g. 0.1,1 "
                                                   "(generated with tpchgen-cli beside --out)")
    parser.add_argument("--_sample", type=float, default=None, help=argparse.SUPPRESS)
    parser.add_argument("--_fit", type=int, default=None, help=argparse.SUPPRESS)
    args = parser.parse_args(argv)
    if args.hma and args.sample_only:
        parser.error("--hma compares with the per-table times of a demo run: use it without --sample-only")
    out = Path(args.out)
    partitions = args.partitions or max(1, round(args.sample_scale / 10))
    if args._sample is not None:
        _sample_in_process(out, args._sample, max(1, args.partitions), args.workers)
        return 0
    if args._fit is not None:
        _fit_in_process(out, args._fit, args.fit_rows)
        return 0

    figures: dict = {"cpu_count": os.cpu_count(), "python": platform.python_version(), "targets": TARGETS}
    previous = Path(args.json)
    if args.sample_only and previous.exists():  # keep the figures of earlier runs; replace what is measured now
        figures = {**json.loads(previous.read_text()), **figures}
    else:
        figures["demo"] = demo(args.students, out)
    d = figures.get("demo") or {}
    if d:
        print(f"demo run ({args.students} students): {d['wall_seconds']} s wall, {d['peak_rss_mb']} MB peak RSS, "
              f"{d['synthetic_rows']} rows, {d['fk_violations']} FK violations; fit {d['fit_seconds']} s, "
              f"sample {d['sample_seconds']} s, evaluation {d['evaluation_seconds']} s "
              f"(targets: <= 90 s, <= 4096 MB)", flush=True)
    if args.hma:  # before sampling at scale: it reads the demo's per-table timings, which that rewrites
        figures["hma"] = h = hma_side_by_side(out)
        ours, theirs = h["synth_pipeline"], h["hma"]
        print(f"same work as HMA ({', '.join(h['tables'])}): ours fit {ours['fit_seconds']} s + sample "
              f"{ours['sample_seconds']} s = {ours['total_seconds']} s; HMA fit {theirs['fit_seconds']} s + sample "
              f"{theirs['sample_seconds']} s = {theirs['total_seconds']} s (target: ours <= HMA's)", flush=True)
    if args.sample_scale > 0:
        figures["sampling"] = s = sample_only(out, args.sample_scale, partitions, args.workers)
        print(f"sampling at scale {args.sample_scale:g} in {partitions} partition(s), {args.workers} at once, "
              f"from the fitted models: {s['rows']} rows in "
              f"{s['wall_seconds']} s = {s['rows_per_second']} rows/s (sample + repair + write), "
              f"{s['peak_rss_mb']} MB peak RSS, {s['fk_violations']} FK violations "
              f"(targets: >= 30000 rows/s, <= 8192 MB)", flush=True)
    growth = [int(n) for n in args.growth.split(",") if n.strip()]
    if growth:  # earlier runs' other sizes are kept (with --sample-only), these replaced
        figures["growth"] = [g for g in figures.get("growth", []) if g.get("students") not in growth]
    for students in growth:
        g = fit_only(students, out.parent / f"benchmark_fit_{students}", args.fit_rows)
        figures["growth"].append(g)
        print(f"growth: {students} students ({g['real_rows']} real rows; {g['largest_table']} fitted on "
              f"{g['largest_fitted_rows']} of {g['largest_rows']} rows): fit {g['fit_seconds']} s, load + fit "
              f"{g['wall_seconds']} s wall, {g['peak_rss_mb']} MB peak RSS", flush=True)
    for dataset in [d.strip() for d in args.privacy.split(",") if d.strip()]:
        found = privacy(dataset, out.parent / f"benchmark_privacy_{dataset}")
        if found is None:
            continue
        figures.setdefault("privacy", {})[dataset] = found
        print(f"privacy, {dataset} (holdout 0.2): {found['wall_seconds']} s; copies of unique real rows "
              f"{found['copied_rows']}, verbatim identity strings {found['verbatim_identity_strings']}, "
              f"DCR overfitting protection min {found['dcr_overfitting_protection_min']}, membership advantage "
              f"max {found['membership_advantage_max']}; column shapes {found['column_shapes']}, "
              f"pairs {found['column_pair_trends']}, FK violations {found['fk_violations']}", flush=True)
        for name, t in found["tables"].items():
            if t["dcr_overfitting_protection"] is not None:
                print(f"  {name}: {t['holdout_rows']} held out, DCR overfitting protection "
                      f"{t['dcr_overfitting_protection']} ({t['closer_to_training_share']:.0%} nearer fitted rows), "
                      f"baseline protection {t['dcr_baseline_protection']}, membership advantage "
                      f"{t['membership_advantage']}, copies {t['copied_rows']}", flush=True)
    for scale in [float(x) for x in args.tpch.split(",") if x.strip()]:
        t = tpch(scale, out.parent, args.workers, max(1, args.partitions))
        figures.setdefault("tpch", {})[f"{scale:g}"] = t
        st = t["stage_seconds"]
        print(f"TPC-H scale {scale:g} ({t['workers']} workers, {t['partitions']} partitions): {t['real_rows']} real rows -> {t['synthetic_rows']} synthetic in "
              f"{t['wall_seconds']} s wall, {t['peak_rss_mb']} MB peak RSS, {t['fk_violations']} FK violations; "
              + ", ".join(f"{k} {v} s" for k, v in st.items())
              + f"; slowest {t['slowest']}; column shapes {t['column_shapes']}, pairs {t['column_pair_trends']} "
              f"(targets at scale 1: <= 900 s, <= 4096 MB, 0 FK violations)", flush=True)
    Path(args.json).parent.mkdir(parents=True, exist_ok=True)
    Path(args.json).write_text(json.dumps(figures, indent=2) + "\n")
    print(f"wrote {args.json}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
