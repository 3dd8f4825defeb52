"""``synth-pipeline``: synthesize the demo or any database, detect metadata.

Errors a user can cause print as one line (no traceback) and exit with status 2; a run
whose steps or blocking checks failed exits with status 1 and publishes nothing.
"""

from __future__ import annotations

import argparse
import json
import logging
import os
import sys
from pathlib import Path

from synth_pipeline.errors import ConfigError, SynthPipelineError


def main(argv: list[str] | None = None) -> int:
    parser = _parser()
    args = parser.parse_args(argv)
    _setup_logging(args.quiet)
    try:
        return args.handler(args)
    except SynthPipelineError as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 2
    except KeyboardInterrupt:
        print("interrupted", file=sys.stderr)
        return 130
    except Exception as exc:  # a defect, not the user's doing: one line here, the traceback in a file
        import traceback

        folder = Path(getattr(args, "out", None) or "data/output")
        folder = folder.parent if folder.suffix == ".json" else folder
        folder.mkdir(parents=True, exist_ok=True)
        log_path = (folder / "error.log").resolve()
        log_path.write_text(traceback.format_exc())
        print(f"error: internal error ({type(exc).__name__}: {str(exc).splitlines()[0] if str(exc) else ''}); "
              f"the full traceback is in {log_path}", file=sys.stderr)
        return 1


def _parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="synth-pipeline", description=__doc__.splitlines()[0])
    parser.add_argument("-q", "--quiet", action="store_true", help="print only the summary and warnings")
    sub = parser.add_subparsers(required=True, metavar="command")
    quiet = argparse.ArgumentParser(add_help=False)  # -q before or after the command
    quiet.add_argument("-q", "--quiet", action="store_true", default=argparse.SUPPRESS,
                       help="print only the summary and warnings")
    _add_parser = sub.add_parser

    def add_parser(*a, **k):
        return _add_parser(*a, parents=[quiet], **k)

    sub.add_parser = add_parser

    demo = sub.add_parser("demo", help="synthesize the embedded school database")
    demo.add_argument("--students", type=int, default=1000, help="students in the simulated school (default 1000)")
    _common(demo)
    demo.set_defaults(handler=_demo)

    run = sub.add_parser("run", help="synthesize any database")
    run.add_argument("--source", help="DuckDB file, SQLite file, or folder of CSV/Parquet files "
                                      "(required unless --config names it)")
    run.add_argument("--metadata", help="SDV multi-table metadata JSON (detected from the source when omitted)")
    _common(run)
    run.set_defaults(handler=_run)

    evaluate = sub.add_parser("evaluate", help="score a synthetic database against the real one (report.json, report.html)")
    evaluate.add_argument("--real", required=True, help="the real database (any source run accepts)")
    evaluate.add_argument("--synthetic", required=True, help="the synthetic database, e.g. data/output/synthetic.duckdb")
    evaluate.add_argument("--metadata", help="SDV metadata JSON (default: the run's metadata.json beside the "
                                             "synthetic database, else detected from the real database)")
    evaluate.add_argument("--baseline", choices=["hma"], help="also fit SDV's HMA and score it on the same sub-schema")
    evaluate.add_argument("--seed", type=int, default=0,
                          help="seed of the scores that sample (detection classifiers, the HMA baseline; default 0)")
    evaluate.add_argument("--evaluation-rows", type=int, default=200_000,
                          help="DuckDB databases with a larger table are scored on a lineage sample of this many rows "
                               "per table, FK violations on every row (default 200000; 0: score every row)")
    evaluate.add_argument("--out", required=True, help="folder for report.json and report.html")
    evaluate.set_defaults(handler=_evaluate)

    detect = sub.add_parser("detect", help="print metadata detected from a source as SDV JSON")
    detect.add_argument("--source", required=True, help="DuckDB file, SQLite file, or folder of CSV/Parquet files")
    detect.add_argument("--out", help="write the metadata JSON to this file (default: print it)")
    detect.set_defaults(handler=_detect)
    return parser


def _common(p: argparse.ArgumentParser) -> None:
    p.add_argument("--config", help="YAML configuration (source, metadata and any setting); options given here "
                                     "override it")
    p.add_argument("--out", help="output folder (default data/output)")
    p.add_argument("--seed", type=int, default=None, help="run seed (default 0)")
    p.add_argument("--scale", type=float, default=None, help="root-table rows = scale x real rows (default 1)")
    p.add_argument("--partitions", type=int, default=None,
                   help="sample in this many self-contained chunks of root rows (default 1)")
    p.add_argument("--workers", type=int, default=None,
                   help="tables fitted at once, each in its own process; with --partitions, partitions sampled at "
                        "once (default: one per CPU, or 1 with --partitions or --config; fits run side by side while "
                        "the real data they read together is no more than the largest fit reads). A table's rows are "
                        "sampled in threads, one per CPU, shared among the partitions at once")
    p.add_argument("--quality", choices=["fast", "default", "best"], default=None,
                   help="training steps per table: fast 60-150, default 250-900, best 1000-4000 (more rows, "
                        "more steps within each range); training time grows with the steps: the 1,000-student "
                        "demo takes 1-1.5 minutes on 2 cores at default")
    p.add_argument("--steps", type=int, default=None, help="training steps per table (overrides --quality)")
    p.add_argument("--format", dest="output_format", choices=["duckdb", "parquet", "csv"], default=None,
                   help="also export out/synthetic/ as Parquet or CSV files (synthetic.duckdb is always written)")
    p.add_argument("--changed-only", action="store_true",
                   help="refit and re-sample only what changed since the last run in this --out folder "
                        "(Dagster's data and code versions, kept in OUT/work/dagster)")
    p.add_argument("--on-orphans", choices=["drop", "fail"], default=None,
                   help="real foreign-key values with no parent row: drop those rows (default) or fail")
    p.add_argument("--device", default=None,
                   help="where models train: cpu (default), cuda, cuda:N, mps, or auto (a GPU when torch sees one)")
    p.add_argument("--fit-rows", type=int, default=None,
                   help="a larger table's model is fitted on a consistent subsample of this many rows "
                        "(default 200000; 0: never)")
    p.add_argument("--evaluation-rows", type=int, default=None,
                   help="a database with a larger table is scored on a lineage sample of this many rows per table "
                        "(FK violations on every row; default 200000; 0: score every row)")
    p.add_argument("--cardinality-threshold", type=float, default=None,
                   help="the blocking check's least similarity of children per parent to real, 0..1 (default 0.80)")
    p.add_argument("--constraint-off", dest="constraints_off", action="append", metavar="'TABLE: RULE'",
                   help="a discovered rule not to enforce nor check, as report.json lists it (repeatable)")
    p.add_argument("--constraint-add", dest="constraints_add", action="append", metavar="'TABLE: RULE'",
                   help="a rule to enforce and check: 'a <= b', 'a < b', 'a -> b', 'a is null exactly when b is "
                        "null' (repeatable)")
    p.add_argument("--mechanism-off", dest="mechanisms_off", action="append", metavar="NAME",
                   help="a model mechanism to switch off, as docs/ablation.md names it (repeatable; for ablations)")
    p.add_argument("--privacy-holdout", type=float, default=None, metavar="SHARE",
                   help="hold this share of each root table's rows (with their descendants) out of fitting and "
                        "score privacy against them (sdmetrics DCR overfitting protection, membership inference)")
    p.add_argument("--privacy-min-count", type=int, default=None, metavar="K",
                   help="category and text values seen in fewer than K real rows are never published (default 5)")
    p.add_argument("--privacy-allow", dest="privacy_allow", action="append", metavar="TABLE.COLUMN",
                   help="a column whose rare values may be published verbatim (public labels; repeatable)")
    p.add_argument("--dcr-threshold", type=float, default=None,
                   help="with a holdout: the privacy check's least DCR overfitting protection, 0..1 (default 0.5)")
    p.add_argument("--only", metavar="TABLE", default=None,
                   help="re-sample TABLE and its descendants from the stored models, reuse every other table")


def _overrides(args) -> dict:
    out = {k: getattr(args, k) for k in ("seed", "scale", "partitions", "workers", "quality", "steps", "output_format",
                                         "on_orphans", "device", "fit_rows", "evaluation_rows", "cardinality_threshold",
                                         "privacy_holdout", "privacy_min_count", "dcr_threshold")
           if getattr(args, k) is not None}
    for key in ("constraints_off", "constraints_add", "mechanisms_off", "privacy_allow"):
        if getattr(args, key):
            out[key] = tuple(getattr(args, key))
    if args.out:
        out["out_dir"] = Path(args.out).resolve()
    return out


def _demo(args) -> int:
    from synth_pipeline.config import available_cpus, school_config

    # the embedded school is small: its models are fitted side by side on every CPU
    config = school_config(students=args.students, seed=args.seed or 0, workers=available_cpus())
    if args.config:  # the demo's source and metadata, the file's settings
        from synth_pipeline.config import config_from_yaml

        settings = config_from_yaml(args.config, require_source=False)
        config = settings.replace(source=config.source, metadata_path=config.metadata_path, out_dir=config.out_dir,
                                  school_students=config.school_students, school_seed=config.school_seed)
    return _execute(config.replace(**_overrides(args)), only=args.only, changed_only=args.changed_only)


def _run(args) -> int:
    from synth_pipeline.config import PipelineConfig, config_from_yaml

    if not args.config and not args.source:
        raise ConfigError("run: --source is required (or --config naming a source)")
    config = config_from_yaml(args.config) if args.config else PipelineConfig(source=Path(args.source).resolve(), metadata_path=None)
    changes = _overrides(args)
    if args.source:
        changes["source"] = Path(args.source).resolve()
    if args.metadata:
        changes["metadata_path"] = Path(args.metadata).resolve()
    if args.workers is None and not args.config and changes.get("partitions", config.partitions) == 1:
        # models fitted side by side on every CPU, as much real data in memory at once as the largest fit's
        from synth_pipeline.config import available_cpus

        changes["workers"] = available_cpus()
    return _execute(config.replace(**changes), only=args.only, changed_only=args.changed_only)


def _evaluate(args) -> int:
    from synth_pipeline.evaluation.evaluate import build_report, write_report
    from synth_pipeline.evaluation.lineage_sample import load_for_scoring, whole_structure
    from synth_pipeline.resources import read_timings
    from synth_pipeline.schema.detect import detect_metadata
    from synth_pipeline.schema.metadata import Metadata

    beside = Path(args.synthetic).resolve().parent / "metadata.json"
    if args.metadata:
        metadata = Metadata.load(args.metadata)
    elif beside.exists():  # the metadata the run used
        metadata = Metadata.load(beside)
    else:
        metadata = detect_metadata(args.real)
    real, synthetic, sampled = load_for_scoring(args.real, args.synthetic, metadata, args.evaluation_rows, args.seed)
    timings = read_timings(Path(args.synthetic).resolve().parent / "work")
    report = build_report(real, synthetic, metadata, baseline=args.baseline, seed=args.seed, timings=timings)
    if sampled:
        whole_structure(report["synth_pipeline"], args.real, args.synthetic, metadata)
        report["synth_pipeline"]["sampled"] = sampled
    json_path, html_path = write_report(report, real, synthetic, metadata, args.out)
    print(_evaluation_summary(report))
    print(f"\nwrote {json_path} and {html_path}")
    return 0


def _evaluation_summary(report: dict) -> str:
    from synth_pipeline.evaluation.html import SUMMARY_LABELS

    ours = report["synth_pipeline"]["summary"]
    comparison = report.get("comparison")
    header = f"{'metric':<48}{'synth_pipeline':>16}" + (f"{'HMA (sub-schema)':>18}" if comparison else "")
    lines = [header]
    for key, label in SUMMARY_LABELS:
        if key not in ours and not (comparison and key in comparison["hma"]):
            continue
        row = f"{label:<48}{_cell(ours.get(key)):>16}"
        if comparison:
            row = f"{label:<48}{_cell(comparison['synth_pipeline'].get(key)):>16}{_cell(comparison['hma'].get(key)):>18}"
        lines.append(row)
    if comparison:
        lines.append(f"(scored on the sub-schema HMA accepts: {', '.join(comparison['tables'])})")
    return "\n".join(lines)


def _cell(value) -> str:
    if value is None:
        return "-"
    return f"{value:.3f}" if isinstance(value, float) else str(value)


def _detect(args) -> int:
    from synth_pipeline.schema.detect import detect_metadata

    text = json.dumps(detect_metadata(args.source).to_dict(), indent=2)
    if args.out:
        Path(args.out).write_text(text + "\n")
        print(f"wrote {args.out}", file=sys.stderr)
    else:
        print(text)
    return 0


def _execute(config, only: str | None = None, changed_only: bool = False) -> int:
    from synth_pipeline.sources.loaders import source_kind

    if config.school_students == 0:
        source_kind(config.source)  # a missing or unreadable source fails before the heavy imports
    from synth_pipeline import workers

    if only is None and not changed_only and workers.start_early(config.workers, config.source):
        workers.start(config.workers)  # the fits' processes import while this one imports and stages the data
    try:
        from synth_pipeline.runner import run_pipeline

        log = logging.getLogger("synth_pipeline")
        log.info("source %s -> %s%s", config.source, config.out_dir,
                 f" (only {only} and its descendants)" if only else "")
        outcome = run_pipeline(config, only=only, changed_only=changed_only)
    finally:
        workers.discard()
    if not outcome.success:
        for line in outcome.failures:
            print(f"failed: {line}", file=sys.stderr)
        if outcome.tracebacks:
            config.out_dir.mkdir(parents=True, exist_ok=True)
            (config.out_dir / "error.log").write_text("\n\n".join(outcome.tracebacks) + "\n")
            print(f"an internal error stopped a step; the full traceback is in {config.out_dir / 'error.log'}",
                  file=sys.stderr)
        print(f"run failed after {outcome.seconds:.0f}s; the published output in {config.out_dir} was left as it was",
              file=sys.stderr)
        return 1
    if changed_only:
        refitted = [k.split("/", 1)[1] for k in outcome.materialized if k.startswith("model/")]
        print(f"changed-only run: refitted {', '.join(refitted) or 'no model'}; "
              f"{sum(k.startswith('synthetic/') for k in outcome.materialized)} table(s) re-sampled")
        if outcome.report is None:
            print("nothing published yet")
            return 0
    print(_summary(outcome.report))
    for table, notes in (outcome.report["run"].get("source_notes") or {}).items():
        for what, counts in notes.items():
            for column, count in counts.items():
                print(f"note: {table}.{column}: {count} real value(s) matched no parent row "
                      f"({'rows dropped' if what == 'orphan_rows_dropped' else 'set null'})")
    print(f"\nwrote {config.out_dir / 'synthetic.duckdb'} in {outcome.seconds:.0f}s; "
          f"report: {config.out_dir / 'report.html'} (figures in {config.out_dir / 'report.json'})")
    return 0


def _summary(report: dict) -> str:
    """Per table: rows, FK violations, worst cardinality similarity of its FKs, column shapes."""
    run, quality = report["run"], report.get("synth_pipeline", {}).get("tables", {})
    lines = [f"{'table':<24}{'real':>8}{'synthetic':>11}{'FK viol.':>10}{'cardinality':>13}{'col. shapes':>13}"]
    by_child: dict[str, list[dict]] = {}
    for rel in run["relationships"]:
        by_child.setdefault(rel["child_table_name"], []).append(rel)
    for name, t in run["tables"].items():
        rels = by_child.get(name, [])
        viol = sum(r["fk_violations"] for r in rels)
        card = min((r["cardinality_similarity"] for r in rels), default=None)
        shapes = quality.get(name, {}).get("column_shapes")
        lines.append(f"{name:<24}{t['real_rows']:>8}{t['synthetic_rows']:>11}{viol:>10}{_cell(card):>13}{_cell(shapes):>13}")
    totals = run["totals"]
    overall = report.get("synth_pipeline", {}).get("summary", {}).get("column_shapes")
    lines.append(f"{'total':<24}{totals['real_rows']:>8}{totals['synthetic_rows']:>11}{totals['fk_violations']:>10}"
                 f"{_cell(totals['mean_cardinality_similarity']):>13}{_cell(overall):>13}")
    return "\n".join(lines)


def _setup_logging(quiet: bool) -> None:
    os.environ.setdefault("GX_ANALYTICS_ENABLED", "false")
    handler = logging.StreamHandler(sys.stderr)
    handler.setFormatter(logging.Formatter("%(asctime)s %(message)s", datefmt="%H:%M:%S"))
    log = logging.getLogger("synth_pipeline")
    for old in [h for h in log.handlers if getattr(h, "_synth_cli", False)]:  # main() called again in-process
        log.removeHandler(old)
    handler._synth_cli = True
    log.addHandler(handler)
    log.setLevel(logging.WARNING if quiet else logging.INFO)
    log.propagate = False


if __name__ == "__main__":
    sys.exit(main())
