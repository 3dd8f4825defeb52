"""The worker processes that fit models (and sample partitions) side by side.

Each is spawned (a fresh interpreter: torch gets a share of the CPUs, no thread pool is
inherited) and imports, in its initializer, what a fit needs: Dagster and the pipeline's
definitions, torch (its optimizer's first use imports ``torch._dynamo``), scikit-learn's
Gaussian mixtures. That takes a few seconds per process, on its own core. ``start`` spawns
them at once, before the caller's own imports and staging, where a core would otherwise
idle; the runner's first stage in processes then ``take``s them ready. Each worker is a
pool of one process (a ``Slots`` entry), so that one left idle can be stopped: a worker
with the pipeline imported holds ~0.55 GB doing nothing while a large fit runs alone.
This module imports nothing heavy itself.
"""

from __future__ import annotations

import os
from concurrent.futures import Future, ProcessPoolExecutor

_started: list[ProcessPoolExecutor] = []


def new_pool(workers: int) -> ProcessPoolExecutor:
    """One spawned process (of ``workers`` side by side), initialized with ``initialize``."""
    import multiprocessing

    return ProcessPoolExecutor(max_workers=1, mp_context=multiprocessing.get_context("spawn"),
                               initializer=initialize, initargs=(workers,))


class Slots:
    """``workers`` worker processes, each a pool of its own: a task goes to an idle one (a
    running process before a stopped one, which is started again), and the idle ones can be
    stopped (``stop_idle``). ``close`` ends them all."""

    def __init__(self, workers: int, pools: list[ProcessPoolExecutor] | None = None):
        self.workers = workers
        self.pools: list[ProcessPoolExecutor | None] = list(pools) if pools else [None] * workers
        self.busy = [False] * workers

    def submit(self, function, *arguments) -> tuple[Future, int]:
        """``function(*arguments)`` in an idle worker; returns its future and the worker's index."""
        idle = [i for i in range(self.workers) if not self.busy[i]]
        if not idle:
            raise RuntimeError("every worker is busy")
        i = next((i for i in idle if self.pools[i] is not None), idle[0])
        if self.pools[i] is None:
            self.pools[i] = new_pool(self.workers)
        self.busy[i] = True
        return self.pools[i].submit(function, *arguments), i

    def done(self, i: int) -> None:
        """Worker ``i``'s task has ended: it takes another."""
        self.busy[i] = False

    def stop_idle(self) -> None:
        """Stop every idle worker's process (its memory goes back to the system)."""
        for i, pool in enumerate(self.pools):
            if pool is not None and not self.busy[i]:
                pool.shutdown(wait=False, cancel_futures=True)
                self.pools[i] = None

    def running(self) -> int:
        """How many workers have a process."""
        return sum(pool is not None for pool in self.pools)

    def close(self) -> None:
        for i, pool in enumerate(self.pools):
            if pool is not None:
                pool.shutdown(wait=True, cancel_futures=True)
                self.pools[i] = None


EARLY_MAX_SOURCE_BYTES = 64 * 2**20  # above this on disk, the workers are spawned when the fits start


def start_early(workers: int, source) -> bool:
    """Whether to ``start`` the workers before staging ``source``: yes while it is small (at most
    ``EARLY_MAX_SOURCE_BYTES`` on disk; one not built yet counts as small). Beside a large
    source's staging, which holds the most memory of a run's first minute, idle workers would
    add 0.55 GB each (TPC-H scale 1, 345 MB of Parquet: 2.8 GB + 1.1 GB), and its fits last
    minutes: starting their processes a few seconds earlier gains it little."""
    from pathlib import Path

    if workers < 2:
        return False
    path = Path(source)
    files = path.rglob("*") if path.is_dir() else [path] if path.exists() else []
    size = 0
    for file in files:
        size += file.stat().st_size if file.is_file() else 0
        if size > EARLY_MAX_SOURCE_BYTES:
            return False
    return True


def start(workers: int) -> None:
    """Spawn ``workers`` processes now (each begins its imports at once); ``take`` hands them on."""
    discard()
    if workers < 2:
        return
    _started[:] = [new_pool(workers) for _ in range(workers)]
    for pool in _started:  # a task makes the pool spawn its process
        pool.submit(os.getpid)


def take(workers: int) -> Slots:
    """The processes ``start`` spawned, if as many, else new ones (spawned as tasks need them);
    the caller closes them."""
    pools = list(_started)
    _started.clear()
    if len(pools) == workers:
        return Slots(workers, pools)
    for pool in pools:
        pool.shutdown(wait=False, cancel_futures=True)
    return Slots(workers)


def discard() -> None:
    """Shut down processes ``start`` spawned that no stage took (a run that failed early, fitted one model)."""
    pools = list(_started)
    _started.clear()
    for pool in pools:
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
