"""Build the Dagster definitions for a schema: per-table assets and checks, the jobs, the
nightly refresh.

Every asset has a code version: a digest of the package's source and of the settings that
change that stage's output. With the data versions the ``real/<t>`` assets record (a hash
of the table's content), Dagster knows which assets are stale: the nightly schedule loads
the real tables (``load_real``), and when that run succeeds a run-status sensor requests
the full job with ``stale_assets_only`` (and again after each such run, until nothing is
stale), so only the models whose real data, inputs or code changed are refitted, and only
what depends on a model that learned something new is re-sampled.
"""

from __future__ import annotations

import hashlib
import importlib
from functools import lru_cache
from pathlib import Path

import dagster as dg

from synth_pipeline.assets import (
    EVALUATION_KEY,
    PUBLISHED_KEY,
    evaluation_asset,
    publish_asset,
    table_assets,
)
from synth_pipeline.checks import table_checks
from synth_pipeline.config import PipelineConfig
from synth_pipeline.errors import ConfigError
from synth_pipeline.resources import RunSettings, SourceDatabase, Warehouse
from synth_pipeline.schema.metadata import Metadata
from synth_pipeline.schema.plan import SchemaPlan

JOB_NAME = "synthesize"
PUBLISH_JOB_NAME = "publish"  # partitioned runs only
LOAD_JOB_NAME = "load_real"


@lru_cache(maxsize=1)
def source_digest() -> str:
    """A digest of the package's Python source: any code change is a new code version."""
    digest = hashlib.sha256()
    package = Path(__file__).resolve().parent
    for path in sorted(package.rglob("*.py")):
        digest.update(str(path.relative_to(package)).encode())
        digest.update(path.read_bytes())
    return digest.hexdigest()[:12]


def code_versions(config: PipelineConfig) -> dict[str, str]:
    """Per stage: the code digest and the settings that change what the stage writes."""
    settings = {
        "real": (str(config.source), config.on_orphans, config.privacy_holdout),
        "model": (config.seed, config.quality, config.steps, config.conditional, sorted(config.constraints_off),
                  sorted(config.constraints_add), config.fit_rows, config.device, sorted(config.mechanisms_off),
                  config.privacy_min_count, sorted(config.privacy_allow)),
        "synthetic": (config.seed, config.scale, config.partitions, sorted(config.mechanisms_off)),
        "repaired": (config.seed, config.partitions, sorted(config.mechanisms_off)),
        "published": (config.cardinality_threshold, config.dcr_threshold, config.output_format, str(config.out_dir), config.partitions),
        "evaluation": (config.seed, config.evaluation_rows),
    }
    code = source_digest()
    return {stage: f"{code}-{hashlib.sha256(repr(v).encode()).hexdigest()[:8]}" for stage, v in settings.items()}


def build_definitions(metadata: Metadata, config: PipelineConfig) -> dg.Definitions:
    """Everything Dagster needs for ``metadata``, wired to the settings in ``config``."""
    from synth_pipeline.modeling.ctgan_model import resolve_device
    from synth_pipeline.schema.constraints import parse_added

    for rule in config.constraints_add:
        parse_added(rule, metadata)  # a clear error when the definitions load, not mid-run
    resolve_device(config.device)
    parts = []
    versions = code_versions(config)
    plan = SchemaPlan.of(metadata)
    for name in plan.internal.topological_order():
        parts.append(dg.Definitions(assets=table_assets(plan, name, versions, config.partitions),
                                    asset_checks=[table_checks(plan, name, config.partitions)]))
    if config.partitions == 1:
        job = dg.define_asset_job(JOB_NAME, selection=dg.AssetSelection.all(),
                                  description="Fit, sample, repair and publish every table.")
        jobs = [job]
    else:  # a run of one partition must not publish: publishing reads every partition
        publishing = dg.AssetSelection.assets(PUBLISHED_KEY, EVALUATION_KEY)
        job = dg.define_asset_job(JOB_NAME, selection=dg.AssetSelection.all() - publishing,
                                  description="Fit every table, then sample and repair one partition of it.")
        jobs = [job, dg.define_asset_job(PUBLISH_JOB_NAME, selection=publishing,
                                         description="Publish (and evaluate) once every partition is repaired.")]
    # loading is reading and hashing: one process, no per-step process start
    load_job = dg.define_asset_job(LOAD_JOB_NAME, selection=real_selection(plan.internal),
                                   executor_def=dg.in_process_executor,
                                   description="Load the real tables (their data versions tell what changed).")

    @dg.run_status_sensor(run_status=dg.DagsterRunStatus.SUCCESS, monitored_jobs=[load_job, job], request_job=job,
                          name="refresh_what_changed", default_status=dg.DefaultSensorStatus.RUNNING
                          if config.nightly_refresh else dg.DefaultSensorStatus.STOPPED,
                          minimum_interval_seconds=REFRESH_SENSOR_SECONDS,
                          description="After load_real (and after each run it starts): materialize the stale or "
                                      "missing assets, until none is left. Skipped while a synthesize run is "
                                      "queued or running.")
    def refresh_what_changed(context: dg.RunStatusSensorContext):
        return refresh_request(context.instance, context.dagster_run.run_id)

    @dg.schedule(name="nightly_refresh", job=load_job, cron_schedule=config.schedule_cron,
                 default_status=dg.DefaultScheduleStatus.RUNNING
                 if config.nightly_refresh else dg.DefaultScheduleStatus.STOPPED,
                 description="Load the real tables; the refresh_what_changed sensor then refreshes what changed. "
                             "Skipped while a load_real or synthesize run is queued or running.")
    def nightly_refresh(context: dg.ScheduleEvaluationContext):
        return nightly_tick(context.instance)

    parts.append(dg.Definitions(
        assets=[publish_asset(plan, versions["published"]), evaluation_asset(metadata, versions["evaluation"])],
        jobs=[*jobs, load_job],
        schedules=[nightly_refresh],
        # A partitioned run is launched as a backfill (every partition, then publish): the
        # refresh sensor's stale-only runs are per asset, so it serves unpartitioned runs.
        sensors=[refresh_what_changed] if config.partitions == 1 else [],
        resources=resources_for(config),
        executor=executor_for(config),
    ))
    return dg.Definitions.merge(*parts)


ACTIVE_STATUSES = [dg.DagsterRunStatus.QUEUED, dg.DagsterRunStatus.NOT_STARTED, dg.DagsterRunStatus.STARTING,
                   dg.DagsterRunStatus.STARTED, dg.DagsterRunStatus.CANCELING]


REFRESH_SENSOR_SECONDS = 10  # how soon after load_real the refresh starts


def active_run(instance: dg.DagsterInstance, job_names: list[str]) -> dg.SkipReason | None:
    """A skip naming the queued or running run of ``job_names``, if there is one."""
    for name in job_names:
        records = instance.get_run_records(dg.RunsFilter(job_name=name, statuses=ACTIVE_STATUSES), limit=1)
        if records:
            run = records[0].dagster_run
            return dg.SkipReason(f"{name} run {run.run_id[:8]} is {run.status.value.lower()}: it refreshes the "
                                 "output; this request is skipped")
    return None


def refresh_request(instance: dg.DagsterInstance, after_run: str) -> dg.RunRequest | dg.SkipReason:
    """What the refresh sensor asks after ``after_run`` succeeded: the stale assets, unless a
    ``synthesize`` run is already queued or running (at most one at a time writes the output;
    the skip and its reason show in the UI's sensor history). The sensor fires again when
    that run succeeds, so what it has not refreshed is requested then."""
    return active_run(instance, [JOB_NAME]) or dg.RunRequest(run_key=after_run, stale_assets_only=True)


def nightly_tick(instance: dg.DagsterInstance) -> dg.RunRequest | dg.SkipReason:
    """What a tick of the nightly schedule asks: a ``load_real`` run, unless a load or a
    ``synthesize`` run is queued or running (loading rewrites the real tables it reads)."""
    return active_run(instance, [LOAD_JOB_NAME, JOB_NAME]) or dg.RunRequest()


def executor_for(config: PipelineConfig) -> dg.ExecutorDefinition:
    """How runs launched from ``dagster dev`` (or a deployment) execute steps: in parallel
    processes on this machine by default; the cluster executors need their Dagster package
    (their own settings — image, broker — come from the run config, see the README). The CLI
    always runs in one process."""
    if config.executor == "in_process":
        return dg.in_process_executor
    if config.executor == "multiprocess":
        # forkserver: each step process is forked from one that imported the code location
        # (torch, pandas, the definitions) once, instead of importing it again (seconds a step)
        return dg.multiprocess_executor.configured({"max_concurrent": config.max_concurrent or None,
                                                    "start_method": {"forkserver": {}}})
    package, name = {"celery": ("dagster_celery", "celery_executor"), "k8s": ("dagster_k8s", "k8s_job_executor")}[config.executor]
    try:
        module = importlib.import_module(package)
    except ImportError:
        raise ConfigError(f"config: executor {config.executor} needs the {package.replace('_', '-')} package "
                          f"(pip install {package.replace('_', '-')})") from None
    return getattr(module, name)


def real_selection(metadata: Metadata) -> dg.AssetSelection:
    return dg.AssetSelection.assets(*[dg.AssetKey(["real", t]) for t in metadata.topological_order()])


def resources_for(config: PipelineConfig) -> dict:
    return {
        "source": SourceDatabase(path=str(config.source), school_students=config.school_students,
                                 school_seed=config.school_seed, on_orphans=config.on_orphans),
        "warehouse": Warehouse(root=str(config.work_dir)),
        "settings": RunSettings.of(config),
    }

