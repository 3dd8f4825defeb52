"""The asset factory: one real -> model -> synthetic -> repaired chain per table.

``synthetic/<t>`` depends on ``repaired/<p>`` for every parent ``p``, so a table is only
sampled once its parents are final (and have passed their blocking checks). A final
``published/synthetic_db`` asset writes the output database once every table is repaired.
The work itself is domain code; these functions read, call and record.
"""


import hashlib
import json
import logging
import time
from collections.abc import Mapping
from contextlib import contextmanager
from pathlib import Path

import dagster as dg
import duckdb
import numpy as np
import pandas as pd

from synth_pipeline.errors import ConfigError
from synth_pipeline.modeling.context import real_columns_for, real_subset_for, sampling_inputs
from synth_pipeline.modeling.settings import table_seed
from synth_pipeline.modeling.table_model import ModelFormatError, TableModel
from synth_pipeline.repair import repair_table
from synth_pipeline.resources import (
    LazyTables,
    RunSettings,
    SourceDatabase,
    Warehouse,
    partition_keys,
)
from synth_pipeline.schema.keys import WHOLE, Partition
from synth_pipeline.schema.metadata import Metadata
from synth_pipeline.schema.plan import SchemaPlan, evaluation_frame
from synth_pipeline.sources.holdout import split_holdout
from synth_pipeline.sources.loaders import release_arrow_memory, release_memory, source_types
from synth_pipeline.stats import is_count_column

PUBLISHED_KEY = dg.AssetKey(["published", "synthetic_db"])


def stage_key(stage: str, table: str) -> dg.AssetKey:
    return dg.AssetKey([stage, table])


def file_digest(path: Path) -> str:
    """A digest of a stored table's file: the same rows written by the same code give the same
    bytes (hashing the written Parquet file took 0.3 s for TPC-H's 6 M line items, where
    hashing the frame's values took 22 s)."""
    digest = hashlib.sha256()
    with Path(path).open("rb") as fh:  # (hashlib.file_digest is Python 3.11+; 3.10 is supported)
        for block in iter(lambda: fh.read(1 << 20), b""):
            digest.update(block)
    return digest.hexdigest()[:16]


def preview(frame: pd.DataFrame, rows: int = 5) -> dg.MetadataValue:
    shown = frame.head(rows)[[c for c in frame.columns if not is_count_column(c)]]  # not a copy of every row first
    return dg.MetadataValue.md(shown.to_markdown(index=False))


class _ToDagster(logging.Handler):
    """Sends the project's progress lines (training steps, steps/s, losses) to the step's log."""

    def __init__(self, log):
        super().__init__(logging.INFO)
        self.target = log

    def emit(self, record: logging.LogRecord) -> None:
        self.target.info(record.getMessage())


@contextmanager
def progress_to(context: dg.AssetExecutionContext):
    logger = logging.getLogger("synth_pipeline")
    handler, level = _ToDagster(context.log), logger.level
    logger.addHandler(handler)
    if level == logging.NOTSET:  # under dagster dev; the CLI sets its own level (-q: warnings only)
        logger.setLevel(logging.INFO)
    try:
        yield
    finally:
        logger.removeHandler(handler)
        logger.setLevel(level)


def cardinality_plot(real_counts: np.ndarray, synthetic_counts: np.ndarray, bins: int = 8) -> str:
    """A small Markdown bar chart: share of parents with 0, 1, 2, ... children, real vs synthetic."""
    top = int(max(real_counts.max(initial=0), synthetic_counts.max(initial=0)))
    edges = list(range(min(top, bins - 1) + 1))
    rows = ["| children | real | synthetic |", "|---:|:---|:---|"]
    for i, lo in enumerate(edges):
        last = i == len(edges) - 1 and top > lo
        label = f"{lo}+" if last else str(lo)
        shares = [float(np.mean(c >= lo if last else c == lo)) if len(c) else 0.0 for c in (real_counts, synthetic_counts)]
        rows.append(f"| {label} | " + " | ".join(f"{'█' * round(20 * v)} {v:.0%}" for v in shares) + " |")
    return "\n".join(rows)


def sampling_partitions(partitions: int) -> dg.StaticPartitionsDefinition | None:
    """The partitions of ``synthetic/*`` and ``repaired/*`` in a partitioned run (none otherwise)."""
    return dg.StaticPartitionsDefinition(partition_keys(partitions)) if partitions > 1 else None


def current_partition(context, partitions: int) -> Partition:
    """The chunk of root rows a step works on (the whole run when unpartitioned)."""
    if partitions == 1:
        return WHOLE
    if not context.has_partition_key:
        raise ConfigError(f"this step works on one of the {partitions} sampling partitions: launch it for a "
                          "partition (or all of them, a backfill)")
    return Partition(int(context.partition_key), partitions)


def table_assets(plan: SchemaPlan, name: str, versions: dict[str, str] | None = None,
                 partitions: int = 1) -> list[dg.AssetsDefinition]:
    """The four stages of ``name`` in the plan's internal schema (single-column keys, no
    cycle). ``versions``: the code version of each stage (code plus the settings that change its
    output), so Dagster marks an asset stale only when its code, settings or inputs changed.
    ``partitions`` > 1: ``synthetic`` and ``repaired`` are partitioned, each partition a
    self-contained chunk of root rows (its share of them) and their descendants."""
    versions = versions or {}
    metadata = plan.internal
    chunks = sampling_partitions(partitions)
    parents = metadata.parents(name)
    inputs = sampling_inputs(metadata, name)  # parents, and the tables its parent context joins
    # the real tables a load checks orphans against: every parent of the user's schema that
    # is generated before this table
    loaded_after = list(dict.fromkeys(r.parent_table_name for r in plan.user.foreign_keys(name)
                                      if not r.is_self_reference and r.parent_table_name in metadata.tables))

    @dg.asset(key=stage_key("real", name), group_name=name, code_version=versions.get("real"), kinds={"duckdb"},
              deps=[stage_key("real", p) for p in loaded_after],
              description=f"The real '{name}' table as loaded from the source and checked against its metadata "
                          "(rows whose foreign keys match no parent are dropped unless on_orphans is 'fail').")
    def real(context: dg.AssetExecutionContext, source: SourceDatabase, warehouse: Warehouse,
             settings: RunSettings) -> dg.MaterializeResult:
        # a parent's held-out rows are real rows too: its children's foreign keys resolve there
        # of a parent, only the columns this table's foreign keys are checked and joined against
        held_parents = {p: warehouse.read_holdout(p, plan.referenced_columns(name, p)) for p in loaded_after}
        fitted_parents = {p: warehouse.read("real", p, columns=plan.referenced_columns(name, p)) for p in loaded_after}
        real_parents = {p: pd.concat([fitted_parents[p], held_parents[p]], ignore_index=True)
                        if len(held_parents[p]) else fitted_parents[p] for p in loaded_after}
        frame, notes = source.load_valid_table(plan.user, name, real_parents)
        frame = plan.to_internal(name, frame, real_parents)
        held_info = {}
        if settings.privacy_holdout > 0:
            primary = metadata.primary_relationship(name)
            owner = warehouse.holdout_info(primary.parent_table_name) if primary is not None else {}
            below = bool(owner.get("head") or owner.get("below_head"))
            rels = [r for r in metadata.foreign_keys(name) if r.parent_table_name in held_parents]
            held_keys = {r.parent_table_name: held_parents[r.parent_table_name][r.parent_primary_key] for r in rels}
            fitted_keys = {r.parent_table_name: fitted_parents[r.parent_table_name][r.parent_primary_key] for r in rels}
            frame, held, head = split_holdout(metadata, name, frame, held_keys, fitted_keys, below,
                                              settings.privacy_holdout, table_seed(settings.seed, name, "holdout"))
            held_info = {"rows": len(frame), "held_out": int(held.sum()), "head": head, "below_head": below}
            frame, held_frame = frame[~held].reset_index(drop=True), frame[held].reset_index(drop=True)
            context.log.info(f"{name}: {len(held_frame)} of {held_info['rows']} real rows held out of fitting "
                             f"(the privacy reference)")
        else:
            held_frame = frame.iloc[:0]
        written = warehouse.write("real", name, frame)
        warehouse.write_holdout(name, held_frame, held_info)
        warehouse.record_source_notes(name, notes.as_dict())
        for fk, count in {**notes.orphans_dropped, **notes.orphans_nulled}.items():
            context.log.warning(f"{name}: {count} row(s) whose {fk} matches no parent row "
                                f"{'dropped' if fk in notes.orphans_dropped else 'set null'}")
        context.log.info(f"{name}: loaded {len(frame)} real rows")
        return dg.MaterializeResult(
            metadata={"row_count": len(frame), "preview": preview(frame),
                      **({"holdout": dg.MetadataValue.json(held_info)} if held_info else {}),
                      **{k: dg.MetadataValue.json(v) for k, v in notes.as_dict().items()}},
            data_version=dg.DataVersion(file_digest(written)),
        )

    def fit(context, warehouse: Warehouse, settings: RunSettings) -> TableModel:
        real_tables = {t: warehouse.read("real", t, columns=columns) for t, columns in real_columns_for(metadata, name).items()}
        with progress_to(context):
            fitted = TableModel.fit(metadata, name, real_tables, settings.model_settings(),
                                    table_seed(settings.seed, name, "fit"))
        warehouse.save_model(fitted)
        warehouse.record_seconds(name, "fit", fitted.fit_seconds)
        return fitted

    def stored(context, warehouse: Warehouse, settings: RunSettings) -> TableModel:
        """The stored model; one written by another version of the model code is refitted."""
        try:
            return warehouse.load_model(name)
        except ModelFormatError as exc:
            context.log.warning(f"{name}: refitting the model ({exc})")
            return fit(context, warehouse, settings)

    @dg.asset(key=stage_key("model", name), group_name=name, code_version=versions.get("model"), kinds={"pytorch"},
              deps=[stage_key("real", t) for t in real_subset_for(metadata, name)],
              description=f"A fitted model of '{name}' (its columns, key formats, children per parent).")
    def model(context: dg.AssetExecutionContext, warehouse: Warehouse, settings: RunSettings) -> dg.MaterializeResult:
        fitted = fit(context, warehouse, settings)
        path = warehouse.model_path(name)
        described = fitted.describe()
        context.log.info(f"{name}: model fitted in {fitted.fit_seconds:.1f}s")
        meta = {"path": dg.MetadataValue.path(str(path)), "fit_seconds": round(fitted.fit_seconds, 2),
                "model": dg.MetadataValue.json(described)}
        if "training" in described:
            meta.update({f"training_{k}": v for k, v in described["training"].items()})
        return dg.MaterializeResult(metadata=meta, data_version=dg.DataVersion(fitted.content_digest()))

    @dg.asset(key=stage_key("synthetic", name), group_name=name, code_version=versions.get("synthetic"), kinds={"pandas"},
              deps=[stage_key("model", name)] + [stage_key("repaired", p) for p in inputs], partitions_def=chunks,
              description=f"Rows of '{name}' sampled from its model, given the repaired synthetic parents.")
    def synthetic(context: dg.AssetExecutionContext, warehouse: Warehouse, settings: RunSettings) -> dg.MaterializeResult:
        started = time.perf_counter()
        part = current_partition(context, partitions)
        fitted = stored(context, warehouse, settings)
        parent_frames = {p: warehouse.read("repaired", p, part) for p in inputs}
        seed = table_seed(settings.seed, name, "sample" if part.count == 1 else f"sample/{part.index}")
        frame = fitted.sample(metadata, parent_frames, settings.scale, seed, part, off=tuple(settings.mechanisms_off),
                              threads=settings.sampling_threads())
        warehouse.write("synthetic", name, frame, part)
        rows = len(frame)
        del frame, parent_frames
        release_memory(collect=False)  # the next step starts from this one's footprint, not above it
        seconds = time.perf_counter() - started
        warehouse.record_seconds(name, "sample", seconds, part)
        context.log.info(f"{name}: sampled {rows} rows in {seconds:.1f}s")
        return dg.MaterializeResult(metadata={"row_count": rows, "sample_seconds": round(seconds, 2),
                                              "rows_per_second": round(rows / max(seconds, 1e-6))})

    @dg.asset(key=stage_key("repaired", name), group_name=name, code_version=versions.get("repaired"), kinds={"pandas"},
              deps=[stage_key("synthetic", name)] + [stage_key("repaired", p) for p in parents], partitions_def=chunks,
              description=f"The published form of '{name}': unique keys, resolvable foreign keys.")
    def repaired(context: dg.AssetExecutionContext, warehouse: Warehouse, settings: RunSettings) -> dg.MaterializeResult:
        started = time.perf_counter()
        part = current_partition(context, partitions)
        fitted = stored(context, warehouse, settings)
        parent_frames = {p: warehouse.read("repaired", p, part) for p in parents}
        seed = table_seed(settings.seed, name, "repair" if part.count == 1 else f"repair/{part.index}")
        frame, repairs = repair_table(warehouse.read("synthetic", name, part), metadata, name, parent_frames, fitted,
                                      seed, part, off=tuple(settings.mechanisms_off))
        release_arrow_memory()  # text columns' intermediate Arrow buffers, kept by its allocator otherwise
        # of the real table, restoring reads only the composite key (its numbering columns)
        key = plan.composite_keys.get(name)
        frame, restored = plan.restore(name, frame, parent_frames,
                                       warehouse.read_among("real", name, key) if key else None)
        release_arrow_memory()
        for what, count in restored.items():
            repairs.add(what, count)
        warehouse.write("repaired", name, frame, part)
        warehouse.record_seconds(name, "repair", time.perf_counter() - started, part)
        scores = table_quality(metadata, name, warehouse, frame, parent_frames, settings.evaluation_rows,
                               table_seed(settings.seed, name, "quality"))
        scores.update(path_and_time(metadata, name, fitted, warehouse, frame, parent_frames, part))
        context.log.info(f"{name}: {len(frame)} rows repaired ({repairs.total} fixes), "
                         f"column shapes {scores['column_shapes']}, FK violations {scores['fk_violations']}")
        shown = {"row_count": len(frame), "repairs": dg.MetadataValue.json(repairs.fixes),
                 "repair_count": repairs.total, **scores, "preview": preview(frame)}
        del frame, parent_frames
        release_memory(collect=False)
        return dg.MaterializeResult(metadata=shown)

    return [real, model, synthetic, repaired]


def table_quality(metadata: Metadata, name: str, warehouse: Warehouse, frame: pd.DataFrame,
                  parent_frames: dict[str, pd.DataFrame], max_rows: int = 0, seed: int = 0) -> dict:
    """What a person wants to see on a repaired table in the UI: violations and similarity
    scores. Column shapes of a table above ``max_rows`` rows (> 0) are scored on that many
    rows of each side, drawn at random (as the evaluation scores a large database on a
    sample); violations and children per parent on every row. Of the real tables, only the
    columns scored are read."""
    from synth_pipeline.evaluation.fidelity import column_shapes
    from synth_pipeline.evaluation.structure import (
        cardinality_counts,
        cardinality_similarity,
        fk_violations,
    )
    from synth_pipeline.stats import compared_columns

    compared = compared_columns(metadata, name)
    fks = metadata.foreign_keys(name)
    real = warehouse.read_among("real", name, [*compared, *(r.child_foreign_key for r in fks),
                                               *(r.parent_primary_key for r in fks if r.is_self_reference)])

    def rows(table: pd.DataFrame) -> pd.DataFrame:
        columns = table.columns.get_indexer(list(compared))
        if not 0 < max_rows < len(table):
            return table.iloc[:, columns]
        # pandas' ``sample(n=max_rows, random_state=seed)``'s rows, of the scored columns alone
        return table.iloc[np.random.RandomState(seed).choice(len(table), size=max_rows, replace=False), columns]

    shapes = column_shapes(rows(real), rows(frame), compared)
    scores: dict = {"column_shapes": round(sum(shapes.values()) / len(shapes), 4) if shapes else None,
                    "fk_violations": 0}
    for rel in fks:
        parent = frame if rel.is_self_reference else parent_frames[rel.parent_table_name]
        real_parent = real if rel.is_self_reference else \
            warehouse.read("real", rel.parent_table_name, columns=[rel.parent_primary_key])
        scores["fk_violations"] += fk_violations(frame, parent, rel)
        real_counts, syn_counts = cardinality_counts(real_parent, real, rel), cardinality_counts(parent, frame, rel)
        similarity = cardinality_similarity(real_counts, syn_counts)
        scores[f"cardinality_similarity_{rel.child_foreign_key}"] = round(similarity, 4)
        scores[f"children_per_parent_{rel.child_foreign_key}"] = dg.MetadataValue.md(cardinality_plot(real_counts, syn_counts))
    return scores


def with_child_sums(name: str, frame: pd.DataFrame, warehouse: Warehouse, repaired, real, metadata: Metadata):
    """``frame`` with each number that is the sum over its children (``constraints.child_sums``)
    computed from its synthetic children, at the real column's decimals (rows without
    children keep theirs). Returns ``frame`` itself where there is none."""
    from synth_pipeline.schema.constraints import child_sum_values
    from synth_pipeline.stats import decimals_of

    rules = [c for c in warehouse.load_model(name).constraints if c.kind == "child_sum" and c.child in metadata.tables]
    if not rules:
        return frame
    frame = frame.copy(deep=False)  # each summed column is replaced whole below, the caller's frame kept
    pk = metadata.table(name).single_primary_key
    for c in rules:
        sums = child_sum_values(c, frame, repaired[c.child], pk)
        decimals = decimals_of(pd.to_numeric(real[name][c.columns[0]], errors="coerce").dropna().to_numpy(dtype=float))
        have = sums.notna()
        values = sums[have].round(decimals if decimals is not None else 6)
        if pd.api.types.is_integer_dtype(frame[c.columns[0]]):
            values = values.round().astype(frame[c.columns[0]].dtype)
        column = frame[c.columns[0]].copy()
        column.loc[have] = values.to_numpy()
        frame[c.columns[0]] = column
    return frame


def path_and_time(metadata: Metadata, name: str, fitted: TableModel, warehouse: Warehouse, frame: pd.DataFrame,
                  parent_frames: dict[str, pd.DataFrame], part: Partition) -> dict:
    """The paths this table's links follow (real, synthetic and chance agreement) and its
    dates across parents (share in order, offsets' KS complement), for the UI."""
    from synth_pipeline.schema.constraints import (
        offset_similarity,
        path_report,
        satisfied,
    )
    from synth_pipeline.schema.paths import synthetic_agreement

    paths, dates = [], []
    synthetic = {**parent_frames, name: frame}
    links = fitted.get("links")
    for bridge in (links.bridges if links is not None else {}).values():
        rel = next(r for r in metadata.foreign_keys(name) if r.child_foreign_key == bridge.fk)
        tables = {**synthetic, bridge.table: synthetic.get(bridge.table)
                  if bridge.table in synthetic else warehouse.read("repaired", bridge.table, part)}
        rate, _ = synthetic_agreement(metadata, rel, bridge, tables)
        paths.append({"path": bridge.label, "real": round(bridge.rate, 4), "synthetic": round(rate, 4),
                      "chance": round(bridge.chance, 4)})
    real = None
    for c in fitted.constraints:
        if c.kind not in ("path", "parent_date_order") or c.parent not in parent_frames:
            continue
        if real is None:  # of each real table, its keys and the columns these rules name
            named = {col for r in fitted.constraints if r.kind in ("path", "parent_date_order") for col in r.columns}
            real = {t: warehouse.read_among("real", t, named | metadata.key_columns(t)) for t in [name, *parent_frames]}
        if c.kind == "path":
            found = path_report(real, synthetic, c, metadata)
            paths.append({k: found[k] for k in ("path", "real", "synthetic", "chance")})
        else:
            ok = satisfied(c, synthetic, metadata, reference=None)
            dates.append({"order": c.description, "satisfied_share": round(float(ok.mean()), 4) if len(ok) else 1.0,
                          "offset_similarity": offset_similarity(real, synthetic, c, metadata)})
    out = {}
    if paths:
        out["path_agreements"] = dg.MetadataValue.json(paths)
    if dates:
        out["dates_across_parents"] = dg.MetadataValue.json(dates)
    return out


def publish_asset(plan: SchemaPlan, version: str | None = None) -> dg.AssetsDefinition:
    metadata = plan.user

    @dg.asset(key=PUBLISHED_KEY, group_name="publish", kinds={"duckdb"}, code_version=version,
              deps=[stage_key("repaired", t) for t in plan.internal.topological_order()],
              description="The synthetic database (PRIMARY/FOREIGN KEYs declared) and report.json, "
                          "written only after every table passed its checks.")
    def synthetic_db(context: dg.AssetExecutionContext, warehouse: Warehouse, settings: RunSettings,
                     source: SourceDatabase) -> dg.MaterializeResult:
        from synth_pipeline.evaluation.run_report import build_run_report
        from synth_pipeline.publish import (
            export_folder,
            promote,
            staging_dir,
            write_database,
        )

        started = time.perf_counter()
        out = Path(settings.out_dir)
        stage = staging_dir(out, context.run_id)  # moved into out only once everything is written
        # one table (and its parent) in memory at a time, read again where needed; the
        # database is written one partition of a table at a time
        internal = plan.internal.tables
        repaired = LazyTables(internal, lambda t: warehouse.read_all("repaired", t, settings.partitions))
        real_internal = LazyTables(internal, lambda t: warehouse.read("real", t))

        def published(t: str, frame=None):
            if t in internal:
                frame = with_child_sums(t, repaired[t] if frame is None else frame, warehouse, repaired, real_internal,
                                        plan.internal)
                # rare values get their stand-ins only now: every child was sampled given the real label
                frame = frame.copy(deep=False)  # their columns are replaced whole, the stored frame kept
                warehouse.load_model(t).rare_values.replace(frame)
            frames = repaired if frame is None else _Override(repaired, t, frame)
            return plan.publishable(t, frames, real_internal, table_seed(settings.seed, t, "publish"))

        # the published tables are written one at a time and not read again: one held at once
        synthetic = LazyTables(metadata.tables, published, keep=1,
                               parts=(lambda t: (published(t, f) for f in warehouse.read_parts(
                                   "repaired", t, settings.partitions)))
                               if settings.partitions > 1 else None)
        # a stored real table as it is (the database takes the user's columns of it)
        real = LazyTables(metadata.tables, lambda t: plan.publishable(t, real_internal, real_internal, 0)
                          if t not in internal else real_internal[t], keep=1)
        declared = source_types(source.ensure())  # the published columns keep the source's SQL types
        write_database(real, metadata, stage / "real.duckdb", constraints=False, sql_types=declared)
        for frames in (real, real_internal):  # whole tables: emptied once the real database is written
            frames.clear()
        if settings.privacy_holdout > 0:  # the real rows no model saw: the evaluation's privacy reference
            held_internal = LazyTables(internal, warehouse.read_holdout)
            held = LazyTables(metadata.tables, lambda t: plan.publishable(t, held_internal, held_internal, 0)
                              if t not in internal else held_internal[t], keep=1)
            write_database(held, metadata, stage / HOLDOUT_DB, constraints=False, sql_types=declared)
            for frames in (held, held_internal):
                frames.clear()
        staged = write_database(synthetic, metadata, stage / "synthetic.duckdb", sql_types=declared)
        # the last table written and the tables it was made from are not held through the report
        for frames in (synthetic, repaired, real_internal):
            frames.clear()
        release_memory()
        metadata.save(stage / "metadata.json")
        # the report reads back only the key columns of what was written
        with duckdb.connect(str(stage / "real.duckdb"), read_only=True) as real_con, \
                duckdb.connect(str(staged), read_only=True) as synthetic_con:
            report = build_run_report(plan.evaluation, _evaluation_view(plan, _written_keys(plan, real_con)),
                                      _evaluation_view(plan, _written_keys(plan, synthetic_con)),
                                      settings.cardinality_threshold)
        report["source_notes"] = warehouse.source_notes()
        if plan.deferred_labels:
            report["deferred_relationships"] = plan.deferred_labels
        if settings.output_format != "duckdb":
            export_folder(staged, metadata, stage / "synthetic", settings.output_format)
            context.log.info(f"exported {out / 'synthetic'} ({settings.output_format})")
        (stage / "report.json").write_text(json.dumps({"run": report}, indent=2, default=str) + "\n")
        promote(stage, out)
        warehouse.record_seconds(DATABASE_TIMING, "publish", time.perf_counter() - started)
        path = out / "synthetic.duckdb"
        context.log.info(f"published {path} ({report['totals']['synthetic_rows']} rows)")
        return dg.MaterializeResult(metadata={
            "path": dg.MetadataValue.path(str(path)),
            "report": dg.MetadataValue.path(str(out / "report.json")),
            "row_counts": dg.MetadataValue.json({t: v["synthetic_rows"] for t, v in report["tables"].items()}),
            "fk_violations": report["totals"]["fk_violations"],
            "mean_cardinality_similarity": report["totals"]["mean_cardinality_similarity"],
        })

    return synthetic_db


EVALUATION_KEY = dg.AssetKey(["published", "evaluation"])
DATABASE_TIMING = "_database"  # the timings of the whole database's stages (publish, evaluation)
HOLDOUT_DB = "holdout.duckdb"  # with a privacy holdout: the real rows held out of fitting, user schema


def evaluation_asset(metadata: Metadata, version: str | None = None) -> dg.AssetsDefinition:
    """Scores what was published (``real.duckdb`` and ``synthetic.duckdb``, the user's schema)."""
    @dg.asset(key=EVALUATION_KEY, group_name="publish", deps=[PUBLISHED_KEY], kinds={"html"}, code_version=version,
              description="Fidelity, structure and privacy scores of the published database (report.json, report.html).")
    def evaluation(context: dg.AssetExecutionContext, warehouse: Warehouse, settings: RunSettings) -> dg.MaterializeResult:
        from synth_pipeline.evaluation.evaluate import build_report, write_report

        from synth_pipeline.evaluation.lineage_sample import load_for_scoring, load_sampled, whole_structure

        started = time.perf_counter()
        out = Path(settings.out_dir)
        # a database with a table above evaluation_rows is scored on a lineage sample of its own; FKs on every row
        real, synthetic, sampled = load_for_scoring(out / "real.duckdb", out / "synthetic.duckdb", metadata,
                                                    settings.evaluation_rows, settings.seed)
        holdout = load_sampled(out / HOLDOUT_DB, metadata, settings.evaluation_rows, settings.seed)[0] \
            if settings.privacy_holdout > 0 and (out / HOLDOUT_DB).exists() else None
        report = build_report(real, synthetic, metadata, seed=settings.seed, timings=warehouse.timings(),
                              holdout=holdout, allow=tuple(settings.privacy_allow),
                              min_count=settings.privacy_min_count)
        if sampled:
            whole_structure(report["synth_pipeline"], out / "real.duckdb", out / "synthetic.duckdb", metadata)
            report["synth_pipeline"]["sampled"] = sampled
        previous = out / "report.json"
        if previous.exists():  # the publish step's structural report of this run
            report = {"run": json.loads(previous.read_text()).get("run"), **report}
        from synth_pipeline.publish import promote, staging_dir

        stage = staging_dir(out, context.run_id)
        write_report(report, real, synthetic, metadata, stage)
        promote(stage, out)
        warehouse.record_seconds(DATABASE_TIMING, "evaluate", time.perf_counter() - started)
        json_path, html_path = out / "report.json", out / "report.html"
        summary = report["synth_pipeline"]["summary"]
        context.log.info(f"evaluation written to {html_path}")
        return dg.MaterializeResult(metadata={
            "report_json": dg.MetadataValue.path(str(json_path)), "report_html": dg.MetadataValue.path(str(html_path)),
            **{k: v for k, v in summary.items() if isinstance(v, (int, float)) and v is not None},
        })

    return evaluation


class _Override(Mapping):
    """``frames`` with one table replaced (a partition of it, while publishing it)."""

    def __init__(self, frames, name, frame):
        self._frames, self._name, self._frame = frames, name, frame

    def __getitem__(self, name):
        return self._frame if name == self._name else self._frames[name]

    def __iter__(self):
        return iter(self._frames)

    def __len__(self):
        return len(self._frames)


def _written_keys(plan: SchemaPlan, con) -> LazyTables:
    """The user tables of a written database (``con``: a connection to it), only their key
    and foreign-key columns."""
    from synth_pipeline.publish import read_columns

    return LazyTables(plan.user.tables, lambda t: read_columns(con, t, plan.key_columns(t)))


def _evaluation_view(plan: SchemaPlan, frames: LazyTables) -> LazyTables:
    """User tables as the evaluation schema sees them (surrogate keys added), read lazily."""
    parts = None
    if frames.partitioned:
        def parts(t):
            return (evaluation_frame(plan, t, _Override(frames, t, part)) for part in frames.parts(t))
    return LazyTables(plan.evaluation.tables, lambda t: evaluation_frame(plan, t, frames), parts=parts)
