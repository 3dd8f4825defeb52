"""The worker processes that fit models (and sample partitions) side by side.

Each is spawned (a fresh interpreter: torch gets a share of the CPUs, no thread pool is
inherited) and imports, in its initializer, what a fit needs: Dagster and the pipeline's
definitions, torch (its optimizer's first use imports ``torch._dynamo``), scikit-learn's
Gaussian mixtures. That takes a few seconds per process, on its own core. ``start`` spawns
them at once, before the caller's own imports and staging, where a core would otherwise
idle; the runner's first stage in processes then ``take``s them ready. This module imports
nothing heavy itself.
"""

from __future__ import annotations

import os
from concurrent.futures import ProcessPoolExecutor

_started: ProcessPoolExecutor | None = None
_started_workers = 0


def new_pool(workers: int) -> ProcessPoolExecutor:
    """``workers`` spawned processes, each initialized with ``initialize``."""
    import multiprocessing

    return ProcessPoolExecutor(max_workers=workers, mp_context=multiprocessing.get_context("spawn"),
                               initializer=initialize, initargs=(workers,))


def start(workers: int) -> None:
    """Spawn ``workers`` processes now (each begins its imports at once); ``take`` hands them on."""
    global _started, _started_workers
    discard()
    if workers < 2:
        return
    _started, _started_workers = new_pool(workers), workers
    for _ in range(workers):  # a task per worker: the pool spawns a process for each one queued while none idles
        _started.submit(os.getpid)


def take(workers: int) -> ProcessPoolExecutor:
    """The processes ``start`` spawned, if as many, else new ones; the caller shuts them down."""
    global _started
    pool, _started = _started, None
    if pool is not None and _started_workers == workers:
        return pool
    if pool is not None:
        pool.shutdown(wait=False, cancel_futures=True)
    return new_pool(workers)


def discard() -> None:
    """Shut down processes ``start`` spawned that no stage took (a run that failed early, fitted one model)."""
    global _started
    pool, _started = _started, None
    if pool is not None:
        pool.shutdown(wait=True, cancel_futures=True)


def initialize(workers: int) -> None:
    """A worker's start: torch's threads outside the models (which compute with a fixed count,
    ``ctgan_model.COMPUTE_THREADS``) are a share of the CPUs; what a fit imports, imported."""
    import torch

    torch.set_num_threads(max(1, (os.cpu_count() or 1) // workers))
    import sklearn.mixture  # noqa: F401  (the transformer's Gaussian mixtures)

    import synth_pipeline.pipeline  # noqa: F401  (Dagster, the assets, the models)

    torch.optim.Adam([torch.zeros(1, requires_grad=True)])  # its first construction imports torch._dynamo


def preload_later_stages(evaluation: bool):
    """A thread importing, in this process, what its stages after fitting import: scikit-learn's
    mixtures (unpickling the models), Great Expectations and its context (the checks), and
    with ``evaluation`` the scores' and report's libraries (sdmetrics, scikit-learn's
    classifiers, matplotlib). Started while the fits run in their processes (this one only
    waits then); ``join`` it before those stages."""
    import threading

    def load() -> None:
        import sklearn.mixture  # noqa: F401

        from synth_pipeline.evaluation.expectations import warm_context

        warm_context()
        if evaluation:
            import matplotlib

            matplotlib.use("Agg")
            import matplotlib.pyplot  # noqa: F401
            import sdmetrics.column_pairs  # noqa: F401
            import sdmetrics.single_column  # noqa: F401
            import sdmetrics.single_table  # noqa: F401

            import synth_pipeline.evaluation.evaluate  # noqa: F401  (the scores, scikit-learn's classifiers)

    def guarded() -> None:
        try:
            load()
        except Exception:  # nothing is lost: the stage imports what it needs itself, and reports what fails
            pass

    thread = threading.Thread(target=guarded, name="preload", daemon=True)
    thread.start()
    return thread
