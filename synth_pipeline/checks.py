"""Blocking checks on every ``repaired/<t>``, backed by Great Expectations.

Per table: the primary key is unique and not null; per foreign key: every value is a key
of the repaired parent (nulls only where the real column had them) and the
children-per-parent distribution is close to the real one (KS complement at least the
run's ``cardinality_threshold``); every constraint discovered on the real table (and not
switched off in the config) or added in the config holds on 100% of the repaired rows;
privacy: no row equals a unique real row, no rare real value is published, and with a
privacy holdout the DCR overfitting protection is at least the run's ``dcr_threshold``.
All are blocking: one failure stops every descendant,
including the publish step, so the last published database stays as it was.
"""

import time

import dagster as dg
import pandas as pd

from synth_pipeline.assets import current_partition, stage_key
from synth_pipeline.evaluation.expectations import validate_table
from synth_pipeline.evaluation.structure import (
    cardinality_counts,
    cardinality_similarity,
)
from synth_pipeline.resources import RunSettings, Warehouse
from synth_pipeline.schema.metadata import Relationship
from synth_pipeline.schema.plan import SchemaPlan
from synth_pipeline.sources.loaders import release_arrow_memory, release_memory
from synth_pipeline.stats import compared_columns
from synth_pipeline.thresholds import THRESHOLDS

CONSTRAINTS_CHECK = "discovered_constraints_hold"
NUMBERS_CHECK = "numbers_keep_real_range_and_grid"
PRIVACY_CHECK = "no_real_record_published"


def fk_check_name(rel: Relationship) -> str:
    return f"fk_{rel.child_foreign_key}_resolves"


def cardinality_check_name(rel: Relationship) -> str:
    return f"cardinality_{rel.child_foreign_key}_close_to_real"


def table_checks(plan: SchemaPlan, name: str, partitions: int = 1) -> dg.AssetChecksDefinition:
    """The checks of ``repaired/<name>`` (of the partition just materialized, in a partitioned run),
    on the plan's internal schema; a composite key of the user's schema is checked too."""
    metadata = plan.internal
    asset = stage_key("repaired", name)
    table = metadata.table(name)
    user_key = plan.composite_keys.get(name)
    fks = metadata.foreign_keys(name)
    specs = [dg.AssetCheckSpec("primary_key_unique_not_null", asset=asset, blocking=True,
                               description=f"({', '.join(table.primary_key)}) unique and never null")]
    specs.append(dg.AssetCheckSpec(CONSTRAINTS_CHECK, asset=asset, blocking=True,
                                   description="every discovered (and every user-added) constraint holds on every row"))
    specs.append(dg.AssetCheckSpec(NUMBERS_CHECK, asset=asset, blocking=True,
                                   description="every number within its real range, on its real values (few) or grid"))
    specs.append(dg.AssetCheckSpec(PRIVACY_CHECK, asset=asset, blocking=True,
                                   description="no row equals a unique real row, no value seen in fewer than "
                                               "privacy_min_count real rows, DCR overfitting protection (with a "
                                               "privacy holdout) at least dcr_threshold"))
    for rel in fks:
        specs.append(dg.AssetCheckSpec(fk_check_name(rel), asset=asset, blocking=True,
                                       description=f"every {rel.label} value exists in the parent"))
        specs.append(dg.AssetCheckSpec(cardinality_check_name(rel), asset=asset, blocking=True,
                                       description=f"children per {rel.parent_table_name} row under {rel.child_foreign_key} close to real"))

    @dg.multi_asset_check(specs=specs, name=f"{name}_checks", can_subset=True)
    def checks(context: dg.AssetCheckExecutionContext, warehouse: Warehouse, settings: RunSettings):
        started = time.perf_counter()
        part = current_partition(context, partitions)
        frame = warehouse.read("repaired", name, part)
        model = warehouse.load_model(name)
        named = {c for rule in model.constraints for c in rule.columns}
        links = model.get("links")
        bridged = links is not None and any(b.binding for b in links.bridges.values())

        def read_parent(parent: str) -> pd.DataFrame:
            # its keys and the columns this table's rules name (a path kept by a bridge may
            # read any of its columns: then all)
            return warehouse.read("repaired", parent, part) if bridged else \
                warehouse.read_among("repaired", parent, metadata.key_columns(parent) | named, part)

        parents = {r.parent_table_name: frame if r.is_self_reference else read_parent(r.parent_table_name) for r in fks}
        # of the real table, its foreign keys now (which may be null); the columns the other
        # checks read after Great Expectations' (which copies its batch per expectation)
        real_fks = warehouse.read_among("real", name, {r.child_foreign_key for r in fks}) if fks else None
        expectations = {"primary_key_unique_not_null": _pk_expectation(table.primary_key)}
        for key in table.primary_key:
            expectations[f"primary_key_unique_not_null__{key}"] = ("ExpectColumnValuesToNotBeNull", {"column": key})
        if user_key and tuple(user_key) != table.primary_key:
            expectations["primary_key_unique_not_null__user"] = _pk_expectation(user_key)
            for key in user_key:
                expectations[f"primary_key_unique_not_null__user_{key}"] = ("ExpectColumnValuesToNotBeNull",
                                                                          {"column": key})
        looked_up = {}  # the parent key each foreign key finds, beside the frame's own columns
        for rel in fks:
            # The parent each value finds by a left join; an FK value equal to it resolves.
            # (A value set of every parent key would be copied by GE's configuration objects
            # many times over: minutes on a million-row parent.)
            found = _parent_lookup(frame[rel.child_foreign_key], parents[rel.parent_table_name][rel.parent_primary_key])
            column = f"{rel.child_foreign_key} -> {rel.parent_table_name}.{rel.parent_primary_key}"
            looked_up[column] = found
            expectations[fk_check_name(rel)] = ("ExpectColumnPairValuesToBeEqual",
                                                {"column_A": rel.child_foreign_key, "column_B": column,
                                                 "ignore_row_if": "both_values_are_missing"})
            if real_fks[rel.child_foreign_key].notna().all():
                expectations[f"{fk_check_name(rel)}__not_null"] = ("ExpectColumnValuesToNotBeNull",
                                                                   {"column": rel.child_foreign_key})
        # GE reads (and hashes, to name its batch) only the columns the expectations name
        named = list(dict.fromkeys(c for _, kwargs in expectations.values()
                                   for c in [kwargs.get(k) for k in ("column", "column_A", "column_B")]
                                   + kwargs.get("column_list", []) if c is not None))
        checked = pd.DataFrame({c: looked_up[c] if c in looked_up else frame[c] for c in named}, index=frame.index)
        outcomes = validate_table(checked, name, expectations)
        del checked, looked_up, real_fks
        release_arrow_memory()  # GE's and the lookups' buffers, before the checks below read more
        # keys, the scored columns, those rules name
        real = warehouse.read_among("real", name, {*metadata.key_columns(name), *compared_columns(metadata, name), *named})
        selected = context.selected_asset_check_keys
        for spec in specs:
            if dg.AssetCheckKey(asset, spec.name) not in selected:
                continue
            release_arrow_memory()
            if spec.name == CONSTRAINTS_CHECK:
                yield _constraints_result(metadata, name, warehouse, frame, parents, real,
                                          lambda t: warehouse.read("repaired", t, part))
                continue
            if spec.name == PRIVACY_CHECK:
                yield privacy_result(metadata, name, warehouse.load_model(name), frame, real,
                                     warehouse.read_holdout(name), settings.dcr_threshold, settings.seed)
                continue
            if spec.name == NUMBERS_CHECK:
                yield _numbers_result(warehouse.load_model(name), frame)
                continue
            if spec.name.startswith("cardinality_"):
                rel = next(r for r in fks if cardinality_check_name(r) == spec.name)
                yield _cardinality_result(spec.name, rel, warehouse, frame, parents, real, settings.cardinality_threshold,
                                          partitioned=part.count > 1)
                continue
            parts = [o for key, o in outcomes.items() if key == spec.name or key.startswith(f"{spec.name}__")]
            failing = sum(o.unexpected_count for o in parts)
            yield dg.AssetCheckResult(
                check_name=spec.name, passed=all(o.success for o in parts),
                metadata={"unexpected_count": failing,
                          "examples": dg.MetadataValue.json([e for o in parts for e in o.examples][:5])},
            )
        del frame, parents, real
        release_memory(collect=False)
        warehouse.record_seconds(name, "check", time.perf_counter() - started, part)

    return checks


def privacy_result(metadata, name: str, model, frame: pd.DataFrame, real: pd.DataFrame, holdout: pd.DataFrame,
                   threshold: float, seed: int) -> dg.AssetCheckResult:
    """Judged on the rows as they will be published (rare values given their stand-ins, which
    publishing does: children are sampled given the real labels). Repair has already moved
    copies off real rows; what is left here blocks publication, and the metadata says why."""
    from synth_pipeline.evaluation.privacy import holdout_scores
    from synth_pipeline.sources.holdout import MIN_HELD_ROWS
    from synth_pipeline.stats import digest_in, row_digests

    frame = frame.copy(deep=False)  # rare values' columns are replaced whole, the caller's frame kept
    model.rare_values.replace(frame)
    columns = [c for c in model.copy_columns if c in frame.columns]
    copies = 0
    if model.real_row_digests is not None and len(model.real_row_digests) and columns and len(frame):
        copies = int(digest_in(row_digests(frame, columns), model.real_row_digests).sum())
    rare = {c: int(model.rare_values.is_rare(c, frame[c]).sum()) for c in model.rare_values.digests if c in frame}
    rare = {c: n for c, n in rare.items() if n}
    scores = holdout_scores(real, frame, holdout, compared_columns(metadata, name), seed) \
        if len(holdout) >= MIN_HELD_ROWS else {}
    why = []
    if copies:
        why.append(f"{copies} row(s) equal a real row no other real row shares (on {', '.join(columns)})")
    for column, count in rare.items():
        why.append(f"{count} value(s) of {column} seen in fewer than {model.rare_values.min_count} real rows")
    protection = scores.get("dcr_overfitting_protection")
    if protection is not None and protection < threshold:
        why.append(f"DCR overfitting protection {protection} below {threshold} "
                   f"({scores['closer_to_training_share']:.0%} of synthetic rows nearer fitted than held-out rows)")
    return dg.AssetCheckResult(
        check_name=PRIVACY_CHECK, passed=not why,
        metadata={"copied_rows": copies, "rare_values_published": dg.MetadataValue.json(rare),
                  "why_blocked": "; ".join(why) or "passed",
                  **{k: v for k, v in scores.items() if v is not None}},
    )


def _parent_lookup(values: pd.Series, parent_keys: pd.Series) -> pd.Series:
    """``values`` joined to the parent's key column: the parent key found, null where none is."""
    parent_keys = parent_keys.dropna().drop_duplicates()
    kinds = {values.dtype.kind, parent_keys.dtype.kind}
    if len(kinds) > 1 and kinds <= set("iuf"):  # integer keys held as floats (a nullable column)
        values, parent_keys = values.astype("float64"), parent_keys.astype("float64")
    elif len(kinds) > 1:  # text keys against numbers: compare as text
        values, parent_keys = values.astype("string"), parent_keys.astype("string")
    keys = pd.DataFrame({"__key": parent_keys.to_numpy(), "__found": parent_keys.to_numpy()})
    joined = pd.DataFrame({"__key": values.to_numpy()}).merge(keys, on="__key", how="left", sort=False)
    return pd.Series(joined["__found"].to_numpy(), index=values.index)


def _pk_expectation(primary_key: tuple[str, ...]) -> tuple[str, dict]:
    if len(primary_key) == 1:
        return "ExpectColumnValuesToBeUnique", {"column": primary_key[0]}
    return "ExpectCompoundColumnsToBeUnique", {"column_list": list(primary_key)}


KS_CRITICAL = 1.95  # c(alpha) of the two-sample Kolmogorov-Smirnov test at alpha = 0.001


def _cardinality_result(check_name, rel, warehouse, frame, parents, real, threshold,
                        partitioned: bool = False) -> dg.AssetCheckResult:
    """Children per parent close to real. A partition holds few parents of a small root table:
    its threshold is lowered by the KS statistic's critical value at that sample size (a
    distance sampling alone reaches once in a thousand), the whole run's figure is in the report."""
    real_parent = real if rel.is_self_reference else \
        warehouse.read("real", rel.parent_table_name, columns=[rel.parent_primary_key])
    real_counts = cardinality_counts(real_parent, real, rel)
    syn_counts = cardinality_counts(parents[rel.parent_table_name], frame, rel)
    similarity = cardinality_similarity(real_counts, syn_counts)
    n, m = len(real_counts), len(syn_counts)
    if partitioned and n and m:
        threshold = max(0.0, threshold - KS_CRITICAL * ((n + m) / (n * m)) ** 0.5)
    return dg.AssetCheckResult(
        check_name=check_name, passed=bool(similarity >= threshold),
        metadata={"cardinality_similarity": round(similarity, 4), "threshold": round(threshold, 4),
                  "real_max_children": int(real_counts.max()) if len(real_counts) else 0,
                  "synthetic_max_children": int(syn_counts.max()) if len(syn_counts) else 0},
    )


def _numbers_result(model, frame: pd.DataFrame) -> dg.AssetCheckResult:
    """Each number column against what it may hold (``schema.number_shapes``)."""
    shapes = model.get("number_shapes")
    shapes = shapes.parts if shapes is not None else []
    breaking = {shape.label: count for shape in shapes
                if shape.column in frame.columns and (count := shape.breaks(frame[shape.column]))}
    return dg.AssetCheckResult(check_name=NUMBERS_CHECK, passed=not breaking,
                               metadata={"columns_checked": len(shapes),
                                         "values_breaking": dg.MetadataValue.json(breaking)})


def _constraints_result(metadata, name, warehouse, frame, parents, real, read) -> dg.AssetCheckResult:
    """The model's constraints, discovered and added (computed by the project's constraint code: GE has no
    expectation for functional dependencies, shared null patterns or cross-table date order),
    and the paths nearly every real row keeps (``Bridge.binding``): at least ``THRESHOLDS.path_rate`` of
    the synthetic rows keep them (``read(table)``: a repaired table the path goes through)."""
    from synth_pipeline.schema.constraints import satisfied
    from synth_pipeline.schema.paths import synthetic_agreement

    model = warehouse.load_model(name)
    tables = {**parents, name: frame}
    shares, broken = {}, 0
    for c in model.constraints:
        if c.kind == "child_sum":  # its children come later: kept and checked when publishing
            continue
        ok = satisfied(c, tables, metadata, reference={name: real})
        shares[c.description] = round(float(ok.mean()), 4) if len(ok) else 1.0
        broken += int((~ok.astype(bool)).sum())
    links = model.get("links")
    for bridge in (links.bridges if links is not None else {}).values():
        if bridge.binding:
            rel = next(r for r in metadata.foreign_keys(name) if r.child_foreign_key == bridge.fk)
            rate, rows = synthetic_agreement(metadata, rel, bridge, {**tables, bridge.table: tables.get(bridge.table)
                                                                     if bridge.table in tables else read(bridge.table)})
            shares[bridge.label] = round(rate, 4)
            broken += int(round((1 - rate) * rows)) if rate < THRESHOLDS.path_rate else 0
    return dg.AssetCheckResult(
        check_name=CONSTRAINTS_CHECK, passed=broken == 0,
        metadata={"constraints": len(shares), "rows_breaking": broken,
                  "satisfied_share": dg.MetadataValue.json(shares),
                  "kept_by": dg.MetadataValue.json(model.kept_by())},
    )
