"""What a perfect generator would score: a second draw of the school simulator (another
seed, the same process) evaluated against the first as if it were synthetic. Figures for
people, never asserted; they show how much of each score's gap to 1 is the sampling noise
of a database this size (tables of 40 and 60 rows cap pair trends far below 1).

    python -m synth_pipeline.evaluation.resample_reference [--students 1000] [--seed 0] [--other-seed 1]
"""

from __future__ import annotations

import argparse
import json
import warnings

SUMMARY = ("column_shapes", "column_pair_trends", "intertable_trends", "two_hop_trends",
           "detection_logistic_regression_max", "detection_gradient_boosting_max")


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--students", type=int, default=1000)
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--other-seed", type=int, default=1)
    args = parser.parse_args(argv)
    from synth_pipeline.config import SCHOOL_METADATA
    from synth_pipeline.evaluation.report import evaluate
    from synth_pipeline.schema.metadata import Metadata
    from synth_pipeline.sources.school import simulate_school

    metadata = Metadata.load(SCHOOL_METADATA)
    real = simulate_school(students=args.students, seed=args.seed)
    other = simulate_school(students=args.students, seed=args.other_seed)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        report = evaluate(real, other, metadata, seed=0, privacy=False)
    print(json.dumps({
        "students": args.students, "seeds": [args.seed, args.other_seed],
        "summary": {k: report["summary"][k] for k in SUMMARY},
        "column_pair_trends_by_table": {t: round(v["column_pair_trends"], 3) for t, v in report["tables"].items()},
    }, indent=1))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
