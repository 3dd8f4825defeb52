"""How much two model fits slow each other down on this machine.

The same table model (CTGAN on a generated table) is fitted alone, then twice at once in
two processes; each fit's steps per second are printed and written to JSON. Models compute
with a fixed thread count (``modeling.ctgan_model.COMPUTE_THREADS``), so two fits on two
cores should each run close to their speed alone.

    python -m synth_pipeline.modeling.concurrency [--rows 20000] [--steps 300] [--out FILE]
"""

from __future__ import annotations

import argparse
import multiprocessing
import time


def _fit(rows: int, steps: int, seed: int) -> float:
    """Seconds one fit of ``steps`` steps takes on a generated table of ``rows`` rows."""
    import numpy as np
    import pandas as pd

    from synth_pipeline.modeling.settings import ModelSettings
    from synth_pipeline.modeling.table_model import TableModel
    from synth_pipeline.schema.metadata import Metadata

    rng = np.random.default_rng(seed)
    frame = pd.DataFrame({"id": np.arange(rows), "a": rng.normal(size=rows), "b": rng.lognormal(size=rows),
                          "c": rng.choice(["x", "y", "z"], rows), "d": rng.integers(0, 100, rows)})
    metadata = Metadata.from_dict({"tables": {"t": {"primary_key": "id", "columns": {
        "id": {"sdtype": "id"}, "a": {"sdtype": "numerical"}, "b": {"sdtype": "numerical"},
        "c": {"sdtype": "categorical"}, "d": {"sdtype": "numerical"}}}}})
    started = time.perf_counter()
    TableModel.fit(metadata, "t", {"t": frame}, ModelSettings(steps=steps), seed=seed)
    return time.perf_counter() - started


def main(argv: list[str] | None = None) -> dict:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--rows", type=int, default=20_000, help="rows of the generated table (default 20000)")
    parser.add_argument("--steps", type=int, default=300, help="training steps per fit (default 300)")
    parser.add_argument("--out", default="data/output/concurrency.json", help="where the figures are written")
    args = parser.parse_args(argv)
    context = multiprocessing.get_context("spawn")
    with context.Pool(1) as pool:
        alone = pool.apply(_fit, (args.rows, args.steps, 0))
    with context.Pool(2) as pool:
        pair = pool.starmap(_fit, [(args.rows, args.steps, 0), (args.rows, args.steps, 1)])
    figures = {"rows": args.rows, "steps": args.steps, "cpus": multiprocessing.cpu_count(),
               "alone_seconds": round(alone, 2), "two_at_once_seconds": [round(s, 2) for s in pair],
               "slowdown": round(max(pair) / alone, 2)}
    from synth_pipeline.evaluation.benchmark import write_figures

    write_figures(figures, args.out)
    return figures


if __name__ == "__main__":
    main()
