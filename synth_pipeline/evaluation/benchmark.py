"""Benchmark: wall time and peak memory of the default demo run (figures printed and saved).

    python -m synth_pipeline.evaluation.benchmark [--students N] [--out DIR] [--json FILE]

The run happens in a child process so its peak resident memory is measured on its own.
Nothing here is asserted: the figures are for people (README, issue notes) to compare.
"""

from __future__ import annotations

import argparse
import json
import platform
import resource
import subprocess
import sys
import time
from pathlib import Path

from synth_pipeline.config import DATA_DIR


def measure(command: list[str]) -> dict:
    started = time.perf_counter()
    done = subprocess.run(command, capture_output=True, text=True)
    seconds = time.perf_counter() - started
    peak_kb = resource.getrusage(resource.RUSAGE_CHILDREN).ru_maxrss
    if done.returncode != 0:
        raise SystemExit(f"benchmark run failed ({done.returncode}):\n{done.stderr[-2000:]}")
    return {"command": " ".join(command), "wall_seconds": round(seconds, 1), "peak_rss_mb": round(peak_kb / 1024, 1)}


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--students", type=int, default=1000)
    parser.add_argument("--out", default=str(DATA_DIR / "output" / "benchmark"))
    parser.add_argument("--json", default=str(DATA_DIR / "output" / "benchmark.json"))
    args = parser.parse_args(argv)

    # Build the real database first so the figure is the synthesis, not the simulator.
    from synth_pipeline.config import school_config
    from synth_pipeline.sources import build_school_database

    config = school_config(students=args.students)
    if not config.source.exists():
        build_school_database(config.source, students=args.students, seed=0)
    figures = measure([sys.executable, "-m", "synth_pipeline.cli", "-q", "demo",
                       "--students", str(args.students), "--out", args.out])
    report = json.loads((Path(args.out) / "report.json").read_text())
    totals, quality = report["run"]["totals"], report["synth_pipeline"]["summary"]
    figures.update({
        "students": args.students, "synthetic_rows": totals["synthetic_rows"],
        "fk_violations": totals["fk_violations"],
        "mean_cardinality_similarity": totals["mean_cardinality_similarity"],
        "evaluation_seconds": quality["evaluation_seconds"],
        "cpu_count": __import__("os").cpu_count(), "python": platform.python_version(),
        "targets": {"wall_seconds": 180, "peak_rss_mb": 4096},
    })
    Path(args.json).parent.mkdir(parents=True, exist_ok=True)
    Path(args.json).write_text(json.dumps(figures, indent=2) + "\n")
    print(f"demo run ({args.students} students): {figures['wall_seconds']} s wall, "
          f"{figures['peak_rss_mb']} MB peak RSS, {figures['synthetic_rows']} rows, "
          f"{figures['fk_violations']} FK violations (targets: <= 180 s, <= 4096 MB); "
          f"of which evaluation {figures['evaluation_seconds']} s (target <= 60 s)")
    print(f"wrote {args.json}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
