"""Materialize some assets of a stored run again, in process (its metadata from the run's work folder):

    python scripts/stage.py SOURCE OUT SELECTION [WORKERS]   # e.g. /tmp/tpch1 OUT 'key:model/*' 2
"""
import logging
import sys
import time
from pathlib import Path

from synth_pipeline.config import PipelineConfig
from synth_pipeline.runner import run_pipeline

if __name__ == "__main__":  # spawned fit workers import this module again
    if len(sys.argv) < 4:
        print(__doc__, file=sys.stderr)
        sys.exit(2)
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(message)s")
    source, out, selection = Path(sys.argv[1]).resolve(), Path(sys.argv[2]).resolve(), sys.argv[3]
    workers = int(sys.argv[4]) if len(sys.argv) > 4 else 1
    config = PipelineConfig(source=source, metadata_path=None).replace(out_dir=out, work_dir=out / "work",
                                                                       workers=workers)
    started = time.perf_counter()
    outcome = run_pipeline(config, selection=selection)
    print(f"success {outcome.success} {outcome.failures[:3]} {time.perf_counter() - started:.1f} s")
    sys.exit(0 if outcome.success else 1)
