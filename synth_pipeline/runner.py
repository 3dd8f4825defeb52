"""Run the asset graph in process (what the CLI and the benchmark call)."""

from __future__ import annotations

import functools
import json
import logging
import time
from dataclasses import dataclass, field
from pathlib import Path

import dagster as dg

from synth_pipeline.config import PipelineConfig
from synth_pipeline.errors import SynthPipelineError
from synth_pipeline.pipeline import (
    JOB_NAME,
    PUBLISH_JOB_NAME,
    build_definitions,
    real_selection,
)
from synth_pipeline.schema.metadata import Metadata
from synth_pipeline.sources.loaders import release_memory, require_tables

log = logging.getLogger(__name__)


class RunFailed(SynthPipelineError):
    """A step or a blocking check failed; nothing new was published."""


@dataclass
class RunOutcome:
    success: bool
    seconds: float
    report: dict | None
    failures: list[str] = field(default_factory=list)
    materialized: list[str] = field(default_factory=list)  # asset keys this run wrote
    tracebacks: list[str] = field(default_factory=list)  # of failed steps that were not the input's fault


def subtree_selection(table: str) -> str:
    """Dagster's selection for ``synthetic/<table>`` and everything downstream of it."""
    return f'key:"synthetic/{table}"+'


def persistent_instance(config: PipelineConfig) -> dg.DagsterInstance:
    """A Dagster instance kept in the run's work folder: it remembers data and code versions
    between runs, which is what ``changed_only`` compares against."""
    home = Path(config.work_dir) / "dagster"
    home.mkdir(parents=True, exist_ok=True)
    return dg.DagsterInstance.local_temp(tempdir=str(home))


def stale_or_missing(instance: dg.DagsterInstance, defs: dg.Definitions) -> list[dg.AssetKey]:
    """The assets Dagster considers stale (code, settings or an input's data version changed
    since they were materialized) or never materialized: what ``RunRequest(stale_assets_only=True)``
    selects in the nightly refresh, resolved here for an in-process run."""
    from dagster._core.asset_graph_view.asset_graph_view import (
        AssetGraphView,
        TemporalContext,
    )
    from dagster._core.definitions.data_version import (
        CachingStaleStatusResolver,
        StaleStatus,
    )
    from dagster._time import get_current_datetime

    graph = defs.resolve_asset_graph()
    view = AssetGraphView(temporal_context=TemporalContext(effective_dt=get_current_datetime(), last_event_id=None),
                          instance=instance, asset_graph=graph)
    resolver = CachingStaleStatusResolver(instance=instance, asset_graph=graph, loading_context=view)
    return [key for key in graph.get_all_asset_keys()
            if resolver.get_status(key) in (StaleStatus.STALE, StaleStatus.MISSING)]


def run_pipeline(config: PipelineConfig, selection: str | None = None,
                 instance: dg.DagsterInstance | None = None, only: str | None = None,
                 changed_only: bool = False) -> RunOutcome:
    """Materialize every asset (or ``selection``, or ``only`` one table's subtree: it is
    re-sampled with its descendants, every other table reused as stored) and return the
    published report. ``changed_only``: load the real tables, then materialize only what is
    stale or missing (a persistent instance in the work folder keeps the versions)."""
    started = time.perf_counter()
    # the CLI runs every step in its own process (or its workers'), whatever the UI's executor
    config = config.replace(executor="in_process")
    metadata = config.metadata()
    if changed_only and config.partitions > 1:
        raise RunFailed("changed_only: not available with partitions > 1 yet (Dagster's staleness is per asset, "
                        "a partitioned run's per partition); run the whole pipeline, or --only TABLE")
    if only is not None:
        _require_stored_run(config, metadata, only)
        selection = subtree_selection(only)
    if config.school_students == 0 or config.source.exists():
        require_tables(config.source, list(metadata.tables))  # a clear error now rather than inside a step
    defs = build_definitions(metadata, config)
    job = defs.resolve_job_def(JOB_NAME)
    keys = None
    if selection:
        keys = list(dg.AssetSelection.from_string(selection).resolve(defs.resolve_asset_graph()))
    materialized: list[str] = []
    if changed_only:
        instance = instance or persistent_instance(config)
        loaded = _execute(job, instance, list(real_selection(metadata).resolve(defs.resolve_asset_graph())))
        materialized += _materialized(loaded)
        failures = run_failures(loaded)
        if not loaded.success or failures:
            return RunOutcome(False, time.perf_counter() - started, None, failures, materialized,
                              step_tracebacks(loaded))
        return _run_changed(config, defs, job, instance, keys, started, materialized)
    runs = execute_partitioned(defs, instance or dg.DagsterInstance.ephemeral(), keys, config, metadata)
    failures = [f for run in runs for f in run.failures]
    success = all(run.success for run in runs) and not failures
    report = _report(config) if success else None
    return RunOutcome(success, time.perf_counter() - started, report, failures,
                      materialized + [k for run in runs for k in run.materialized],
                      [t for run in runs for t in run.tracebacks])


def execute_partitioned(defs: dg.Definitions, instance: dg.DagsterInstance, keys: list[dg.AssetKey] | None,
                        config: PipelineConfig, metadata: Metadata) -> list[RunOutcome]:
    """A run in process; a partitioned one as several: the unpartitioned assets upstream (real, model), then
    ``synthetic``/``repaired`` (with their checks) one partition at a time (``workers`` > 1:
    that many partitions at once, each in its own process), then what needs every partition
    (publish, evaluation); stops after the first failed stage. With ``workers`` > 1 the
    tables' models are fitted that many at once, each in its own process. (Under ``dagster dev``,
    materializing the partitions is a backfill that orders them the same way.)"""
    from synth_pipeline.resources import partition_keys

    job = defs.resolve_job_def(JOB_NAME)
    keys = keys or list(defs.resolve_asset_graph().get_all_asset_keys())
    models = [k for k in keys if k.path[0] == "model"] if config.workers > 1 else []
    if config.partitions == 1 and len(models) < 2:  # one run of everything
        return [_summary(_execute(job, instance, keys))]
    stages = {"before": [], "models": [], "partitioned": [], "after": []}
    for key in keys:
        stages[{"real": "before", "model": "models", "synthetic": "partitioned",
                "repaired": "partitioned"}.get(key.path[0], "after")].append(key)
    if config.partitions == 1:
        stages["after"] = stages.pop("partitioned") + stages["after"]
        stages["partitioned"] = []
    runs: list[RunOutcome] = []

    def failed() -> bool:
        return any(not run.success or run.failures for run in runs)

    if stages["before"]:
        runs.append(_summary(_execute(job, instance, stages["before"])))
    if stages["partitioned"] and not failed():  # before fitting: a clear error, not minutes later
        _require_root_rows(metadata, config)
    if stages["models"] and not failed():
        if models:
            from synth_pipeline.assets import EVALUATION_KEY

            runs += _models_in_processes(config, metadata, stages["models"], EVALUATION_KEY in keys)
        else:
            runs.append(_summary(_execute(job, instance, stages["models"])))
    if stages["partitioned"] and not failed():
        partitions = partition_keys(config.partitions)
        if config.workers > 1:
            runs += _partitions_in_processes(config, metadata, stages["partitioned"], partitions)
        else:
            for partition in partitions:
                log.info("partition %s of %d", partition, config.partitions)
                runs.append(_summary(_execute(job, instance, stages["partitioned"], partition)))
                if failed():
                    break
    if stages["after"] and not failed():
        after = PUBLISH_JOB_NAME if config.partitions > 1 else JOB_NAME
        runs.append(_summary(_execute(defs.resolve_job_def(after), instance, stages["after"])))
    return runs


def _require_root_rows(metadata: Metadata, config: PipelineConfig) -> None:
    """Every partition needs rows of every root table: the model's check, before sampling starts."""
    import pyarrow.parquet as pq

    from synth_pipeline.modeling.table_model import require_partition_rows
    from synth_pipeline.resources import Warehouse

    warehouse = Warehouse(root=str(config.work_dir))
    for name in metadata.topological_order():
        path = warehouse.table_path("real", name)
        if metadata.primary_relationship(name) is None and path.exists():
            require_partition_rows(name, pq.ParquetFile(path).metadata.num_rows, config.scale, config.partitions)


def _partitions_in_processes(config: PipelineConfig, metadata: Metadata, keys: list[dg.AssetKey],
                             partitions: list[str]) -> list[RunOutcome]:
    """Each partition's run in one of ``config.workers`` fresh processes."""
    names = [k.to_user_string() for k in keys]
    return _in_processes(config, [(f"partition {p} of {len(partitions)}", _run_partition, (config, metadata, names, p))
                                  for p in partitions])


FIT_PROCESS_BYTES = 900 * 2**20  # a fit process's memory besides its real data: Python, torch, dagster, the GAN's
# training (0.8-1.1 GB measured for fits reading 22-55 MB of data, TPC-H scale 1's parts and customers)
FIT_DATA_FACTOR = 4  # a fit holds the real data it reads about this many times over (pandas frames, the fit
# sample, the context's encoding): 4.4x for TPC-H scale 1's line items and part supplies, 6x for orders
FIT_MEMORY_FLOOR = 2 * FIT_PROCESS_BYTES + FIT_DATA_FACTOR * 256 * 2**20  # two fits reading 256 MB together: side by side


def fit_memory_bytes(data_bytes: int) -> int:
    """What a fit process holds at its peak, estimated from the real data it reads."""
    return FIT_PROCESS_BYTES + FIT_DATA_FACTOR * data_bytes


def _models_in_processes(config: PipelineConfig, metadata: Metadata, keys: list[dg.AssetKey],
                         evaluation: bool = False) -> list[RunOutcome]:
    """Every table's model fitted in one of ``config.workers`` fresh processes, the largest
    tables' first (their stored bytes: the longest fits, as a fit's cost grows with its rows
    and columns; the fits that also read the most real data of other tables first among
    equals), so that the longest fit does not start last (models are independent of each
    other: each reads only the real tables). The school: the marks (21k rows, 19 s) first,
    not the courses (40 rows, 5 s; they read their children for their counts): the fits took
    58 s for 81 s of fitting. A fit's memory is estimated from the real data it reads
    (``fit_memory_bytes``); fits run side by side only while what they hold together is no
    more than the largest single fit holds (or ``FIT_MEMORY_FLOOR``): fitting in parallel then
    holds no more in memory at once than fitting one table at a time. TPC-H scale 1: the line
    items alone (their fit process holds 2.7-3.1 GB); part supplies beside customers, then
    parts; orders beside parts (3.83-3.96 GB with this process; orders beside part supplies
    took a run to 4.07 GB: not allowed); the small tables in pairs. While the fits of a small
    database run (none larger than ``FIT_MEMORY_FLOOR``), this process imports what its later
    stages need (``workers.preload_later_stages``; ``evaluation``: the scores' libraries too);
    beside larger fits it imports nothing ahead (0.18 GB more held through the largest
    table's sampling, for a few seconds of a long run)."""
    from synth_pipeline import workers
    from synth_pipeline.resources import Warehouse

    warehouse = Warehouse(root=str(config.work_dir))
    read = {k.path[-1]: fit_data_bytes(warehouse, metadata, k.path[-1]) for k in keys}
    sizes = {k: fit_memory_bytes(read[k.path[-1]]) for k in keys}
    largest = max(sizes.values(), default=0)
    order = fit_order(warehouse, read)
    ordered = sorted(keys, key=lambda k: order.index(k.path[-1]))
    preload = workers.preload_later_stages(evaluation) if largest <= FIT_MEMORY_FLOOR else None
    try:
        return _in_processes(config, [(f"fitting {k.path[-1]}", _run_keys, (config, metadata, [k.to_user_string()]))
                                      for k in ordered], sizes=[sizes[k] for k in ordered],
                             budget=max(largest, FIT_MEMORY_FLOOR))
    finally:
        if preload is not None:
            preload.join()


def fit_order(warehouse, read: dict[str, int]) -> list[str]:
    """The tables of ``read`` (the real data each one's fit reads, ``fit_data_bytes``) in the
    order their fits start: the largest stored real table first, then the fit reading more
    real data, then by name."""
    own = {t: stored_bytes(warehouse.table_path("real", t)) for t in read}
    return sorted(read, key=lambda t: (-own[t], -read[t], t))


def fit_data_bytes(warehouse, metadata: Metadata, name: str) -> int:
    """The real data a fit of ``name`` reads: the uncompressed bytes of the stored real
    columns it loads (``real_columns_for``), from the Parquet files' metadata."""
    from synth_pipeline.modeling.context import real_columns_for

    return sum(stored_bytes(warehouse.table_path("real", table), columns)
               for table, columns in real_columns_for(metadata, name).items())


def stored_bytes(path: Path, columns: list[str] | None = None) -> int:
    """The uncompressed bytes of a stored Parquet table's ``columns`` (all: None; a missing file: 0),
    from its metadata."""
    import pyarrow.parquet as pq

    if not path.exists():
        return 0
    meta = pq.ParquetFile(path).metadata
    names = [meta.schema.column(j).path.split(".")[0] for j in range(meta.num_columns)]
    wanted = set(names) if columns is None else set(columns)
    return sum(meta.row_group(i).column(j).total_uncompressed_size
               for i in range(meta.num_row_groups) for j in range(meta.num_columns) if names[j] in wanted)


def _in_processes(config: PipelineConfig, tasks: list[tuple[str, object, tuple]], sizes: list[int] | None = None,
                  budget: int | None = None) -> list[RunOutcome]:
    """Each task ``(label, function, arguments)`` in one of ``config.workers`` fresh processes
    (``workers.take``: spawned, perhaps already by the CLI; each loads the definitions
    itself; torch gets an equal share of the CPUs), in order; stops handing out tasks after a
    failure; the processes end with the stage. With ``sizes`` (each task's memory, in any
    unit) and a ``budget``: a task starts beside others only while their sizes together stay
    within it (the first queued one that does; alone, any task starts), and while none of the
    queued tasks may start, the idle workers' processes are stopped (started again when one
    may): TPC-H scale 1's line items fit alone beside no idle process holding 0.55 GB."""
    from concurrent.futures import FIRST_COMPLETED, wait

    from synth_pipeline import workers

    runs: list[RunOutcome] = []
    queue = list(zip(tasks, sizes or [0] * len(tasks)))
    slots = workers.take(config.workers)
    try:
        pending = {}
        while queue or pending:
            stopped = any(r.failures or not r.success for r in runs)
            while queue and len(pending) < config.workers and not stopped:
                i = next_within([size for _, size in queue], sum(size for _, size, _ in pending.values()), budget)
                if i is None:
                    break
                (label, function, arguments), size = queue.pop(i)
                log.info("%s", label)
                future, slot = slots.submit(function, *arguments)
                pending[future] = (label, size, slot)
            if not pending:
                break
            # every task that may start has: an idle worker would only hold memory until one ends
            slots.stop_idle()
            done, _ = wait(pending, return_when=FIRST_COMPLETED)
            for future in done:
                label, _, slot = pending.pop(future)
                slots.done(slot)
                try:
                    runs.append(future.result())
                except Exception as exc:  # the worker process itself failed (killed, out of memory)
                    runs.append(RunOutcome(False, 0.0, None, [f"{label}: worker failed ({exc!r})"]))
    finally:
        slots.close()
    return runs


def next_within(sizes: list[int], running: int, budget: int | None) -> int | None:
    """The first of the queued tasks (their ``sizes``) that may start beside tasks of
    ``running`` size in all: any while none runs, else one that keeps the sum within ``budget``."""
    return next((i for i, size in enumerate(sizes) if budget is None or not running or running + size <= budget),
                None)


def _run_keys(config: PipelineConfig, metadata: Metadata, names: list[str]) -> RunOutcome:
    """Those assets' run (unpartitioned), in a worker process."""
    defs = build_definitions(metadata, config)
    keys = [dg.AssetKey.from_user_string(n) for n in names]
    return _summary(_execute(defs.resolve_job_def(JOB_NAME), _worker_instance(), keys))


@functools.cache
def _worker_instance() -> dg.DagsterInstance:
    """A worker process's Dagster instance (ephemeral), made once: every task's run is kept in it."""
    return dg.DagsterInstance.ephemeral()


def _run_partition(config: PipelineConfig, metadata: Metadata, names: list[str], partition: str) -> RunOutcome:
    """One partition's run, in a worker process."""
    defs = build_definitions(metadata, config)
    keys = [dg.AssetKey.from_user_string(n) for n in names]
    return _summary(_execute(defs.resolve_job_def(JOB_NAME), _worker_instance(), keys, partition))


def _summary(result) -> RunOutcome:
    """What a caller needs of one Dagster run (picklable, unlike the run's result)."""
    return RunOutcome(result.success, 0.0, None, run_failures(result), _materialized(result), step_tracebacks(result))


def _run_changed(config, defs, job, instance, scope, started, materialized) -> RunOutcome:
    """Waves of stale assets until nothing is stale. A stale model is refitted first and its
    tables are sampled in a later wave only if the refit changed its data version (what the
    model learned); anything else stale is run with everything downstream of it."""
    graph = defs.resolve_asset_graph()
    for _ in range(MAX_WAVES):
        stale = [k for k in stale_or_missing(instance, defs) if scope is None or k in scope]
        if not stale:
            return RunOutcome(True, time.perf_counter() - started, _report(config), [], materialized)
        models = [k for k in stale if k.path[0] == "model"]
        others = [k for k in stale if k.path[0] != "model"]
        wave = set(models)
        if others:
            wave |= set(dg.AssetSelection.assets(*others).downstream().resolve(graph))
        log.info("changed or missing: %s", ", ".join(sorted(k.to_user_string() for k in wave)))
        result = _execute(job, instance, sorted(wave, key=lambda k: k.to_user_string()))
        materialized += _materialized(result)
        failures = run_failures(result)
        if not result.success or failures:
            return RunOutcome(False, time.perf_counter() - started, None, failures, materialized,
                              step_tracebacks(result))
    raise RunFailed(f"assets still stale after {MAX_WAVES} runs: {', '.join(k.to_user_string() for k in stale)}")


MAX_WAVES = 6


def _execute(job, instance: dg.DagsterInstance, keys: list[dg.AssetKey] | None, partition: str | None = None):
    try:
        return job.execute_in_process(
            instance=instance, raise_on_error=False, asset_selection=keys, partition_key=partition,
            run_config={"loggers": {"console": {"config": {"log_level": "CRITICAL"}}}},  # failures are reported below
        )
    finally:  # the steps' tables are gone: their memory goes back to the system, not kept for the next run
        release_memory()


def _report(config: PipelineConfig) -> dict | None:
    path = config.out_dir / "report.json"
    return json.loads(path.read_text()) if path.exists() else None


def _materialized(result) -> list[str]:
    return [e.asset_key.to_user_string() for e in result.all_events
            if e.event_type_value == "ASSET_MATERIALIZATION"]


def _require_stored_run(config: PipelineConfig, metadata, table: str) -> None:
    """A subtree re-run reuses the fitted models and the tables outside the subtree."""
    if table not in metadata.tables:
        raise RunFailed(f"--only {table}: no such table (tables: {', '.join(metadata.topological_order())})")
    from synth_pipeline.resources import Warehouse
    from synth_pipeline.schema.keys import Partition

    work = Path(config.work_dir)
    warehouse = Warehouse(root=str(work))
    missing = [t for t in metadata.tables if not (work / "models" / f"{t}.pkl").exists()
               or not all(warehouse.table_path("repaired", t, Partition(i, config.partitions)).exists()
                          for i in range(config.partitions))]
    if missing:
        raise RunFailed(f"--only {table}: no stored run in {work} for {', '.join(missing)}; run the whole pipeline once first")


def step_tracebacks(result) -> list[str]:
    """The full tracebacks of failed steps whose cause is not a user error (those print as one
    line naming the table and column, and need no traceback)."""
    out = []
    for event in result.all_events:
        if event.event_type_value == "STEP_FAILURE":
            error, user = event.step_failure_data.error, False
            while error is not None:
                user |= error.cls_name in _USER_ERRORS
                error = error.cause
            if not user:
                out.append(f"{event.step_key}:\n{event.step_failure_data.error.to_string()}")
    return out


_USER_ERRORS = {"SynthPipelineError", "SchemaError", "SourceError", "ConfigError", "RunFailed", "PublishError",
                "DagsterAssetCheckFailedError"}  # a failed check is reported as such


def run_failures(result) -> list[str]:
    out = []
    for event in result.all_events:
        if event.event_type_value == "STEP_FAILURE":
            error = event.step_failure_data.error
            while error.cause is not None:
                error = error.cause
            message = error.message.strip().splitlines()[-1]
            head, _, rest = message.partition(": ")
            if error.cls_name and rest and head.endswith(error.cls_name):
                message = rest
            out.append(f"{event.step_key}: {message}")
        elif event.event_type_value == "ASSET_CHECK_EVALUATION":
            data = event.event_specific_data
            if not data.passed:
                out.append(f"check {data.asset_key.to_user_string()}:{data.check_name} failed "
                           f"{ {k: v.value for k, v in data.metadata.items()} }")
    return out
