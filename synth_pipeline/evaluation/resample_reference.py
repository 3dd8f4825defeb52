"""What a perfect generator would score: a second draw of the school simulator (another
seed, the same process) evaluated against the first as if it were synthetic. Figures for
people, never asserted; they show how much of each score's gap to 1 is the sampling noise
of a database this size (tables of 40 and 60 rows cap pair trends far below 1).

With ``--synthetic``, a held-out check too: a third, fresh draw of the simulator plays the
real data, and the real school the model was fitted on is scored against it beside the
synthetic school. A model that learned the school rather than its sample's noise scores
about as well as the real school there; scores far above the real school's against the
real school itself, but not against the fresh draw, would be the sample's noise learned.

    python -m synth_pipeline.evaluation.resample_reference [--students 1000] [--seed 0] [--other-seed 1]
        [--synthetic data/output/synthetic.duckdb] [--fresh-seed 7]
"""

from __future__ import annotations

import argparse
import json
import sys
import warnings

SUMMARY = ("column_shapes", "column_pair_trends", "intertable_trends", "two_hop_trends",
           "detection_logistic_regression_max", "detection_gradient_boosting_max")
HELD_OUT = SUMMARY[:4]


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--students", type=int, default=1000)
    parser.add_argument("--seed", type=int, default=0, help="the real school's seed (the demo's: 0)")
    parser.add_argument("--other-seed", type=int, default=1)
    parser.add_argument("--synthetic", default=None,
                        help="a synthetic school fitted on the real one (its synthetic.duckdb): score it on a fresh draw")
    parser.add_argument("--fresh-seed", type=int, default=7, help="the fresh draw's seed for --synthetic")
    args = parser.parse_args(argv)
    from synth_pipeline.config import SCHOOL_METADATA
    from synth_pipeline.errors import SynthPipelineError
    from synth_pipeline.evaluation.report import evaluate
    from synth_pipeline.schema.metadata import Metadata
    from synth_pipeline.sources.loaders import load_tables
    from synth_pipeline.sources.school import simulate_school

    metadata = Metadata.load(SCHOOL_METADATA)
    synthetic = None
    if args.synthetic is not None:  # read first: a wrong path fails before minutes of scoring
        try:
            synthetic = load_tables(args.synthetic, metadata.topological_order())
        except SynthPipelineError as exc:
            print(f"error: --synthetic: {exc}", file=sys.stderr)
            return 2
    real = simulate_school(students=args.students, seed=args.seed)
    other = simulate_school(students=args.students, seed=args.other_seed)

    def scores(reference, candidate) -> dict:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            return evaluate(reference, candidate, metadata, seed=0, privacy=False)

    report = scores(real, other)
    out = {
        "students": args.students, "seeds": [args.seed, args.other_seed],
        "summary": {k: report["summary"][k] for k in SUMMARY},
        "column_pair_trends_by_table": {t: round(v["column_pair_trends"], 3) for t, v in report["tables"].items()},
    }
    if synthetic is not None:
        fresh = simulate_school(students=args.students, seed=args.fresh_seed)
        out["held_out"] = {"fresh_seed": args.fresh_seed, **{
            name: {k: scores(fresh, frame)["summary"][k] for k in HELD_OUT}
            for name, frame in (("real", real), ("synthetic", synthetic))}}
    print(json.dumps(out, indent=1))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
