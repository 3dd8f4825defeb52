"""Build the Dagster definitions for a schema: per-table assets and checks, the job, the schedule."""

from __future__ import annotations

import dagster as dg

from synth_pipeline.assets import evaluation_asset, publish_asset, table_assets
from synth_pipeline.checks import table_checks
from synth_pipeline.config import PipelineConfig
from synth_pipeline.resources import RunSettings, SourceDatabase, Warehouse
from synth_pipeline.schema.metadata import Metadata

JOB_NAME = "synthesize"


def build_definitions(metadata: Metadata, config: PipelineConfig) -> dg.Definitions:
    """Everything Dagster needs for ``metadata``, wired to the settings in ``config``."""
    parts = []
    for name in metadata.topological_order():
        parts.append(dg.Definitions(assets=table_assets(metadata, name), asset_checks=[table_checks(metadata, name)]))
    job = dg.define_asset_job(JOB_NAME, selection=dg.AssetSelection.all(),
                              description="Fit, sample, repair and publish every table.")
    parts.append(dg.Definitions(
        assets=[publish_asset(metadata), evaluation_asset(metadata)],
        jobs=[job],
        schedules=[dg.ScheduleDefinition(name="nightly_refresh", job=job, cron_schedule=config.schedule_cron,
                                         default_status=dg.DefaultScheduleStatus.STOPPED)],
        resources=resources_for(config),
    ))
    return dg.Definitions.merge(*parts)


def resources_for(config: PipelineConfig) -> dict:
    return {
        "source": SourceDatabase(path=str(config.source), school_students=config.school_students,
                                 school_seed=config.school_seed, on_orphans=config.on_orphans),
        "warehouse": Warehouse(root=str(config.work_dir)),
        "settings": RunSettings(out_dir=str(config.out_dir), seed=config.seed, scale=config.scale,
                                quality=config.quality, steps=config.steps, conditional=config.conditional,
                                cardinality_threshold=config.cardinality_threshold,
                                constraints_off=list(config.constraints_off), output_format=config.output_format),
    }

