"""Score a synthetic database against its real twin: every figure, machine-readable.

``evaluate(real, synthetic, metadata)`` returns the dict written as ``report.json``;
its keys are documented in the README ("Evaluation report").
"""

from __future__ import annotations

import logging
import time
import warnings
from concurrent.futures import ProcessPoolExecutor, ThreadPoolExecutor
from contextlib import contextmanager

import numpy as np
import pandas as pd

from synth_pipeline.evaluation.column_fidelity import breaks as fidelity_breaks
from synth_pipeline.evaluation.column_fidelity import column_fidelity
from synth_pipeline.evaluation.detection import detection_accuracy, detection_inputs
from synth_pipeline.evaluation.fidelity import (
    column_shapes,
    cross_table_trends,
    pair_trends,
    two_hop_chains,
)
from synth_pipeline.evaluation.privacy import table_privacy
from synth_pipeline.evaluation.structure import (
    cardinality_counts,
    cardinality_similarity,
    count_summary,
    fk_violations,
    pk_duplicates,
)
from synth_pipeline.privacy_labels import copied_columns, rare_columns, renamed
from synth_pipeline.schema import constraints as constraint_checks
from synth_pipeline.schema.keys import KeyFormat
from synth_pipeline.schema.metadata import ID_SDTYPE, Metadata
from synth_pipeline.schema.paths import path_agreements
from synth_pipeline.stats import compared_columns

log = logging.getLogger(__name__)


def _mean(values) -> float | None:
    values = [v for v in values if v is not None and not np.isnan(v)]
    return round(float(np.mean(values)), 4) if values else None


def table_scores(real: pd.DataFrame, synthetic: pd.DataFrame, metadata: Metadata, table: str) -> dict:
    kinds = compared_columns(metadata, table)
    shapes = column_shapes(real, synthetic, kinds)
    pairs = pair_trends(real, synthetic, kinds)
    return {
        "real_rows": len(real), "synthetic_rows": len(synthetic),
        "column_shapes": _mean(shapes.values()), "column_shapes_by_column": shapes,
        "column_pair_trends": _mean(p["score"] for p in pairs),
        "worst_column_pairs": sorted(pairs, key=lambda p: p["score"])[:5],
        "pk_duplicates": pk_duplicates(synthetic, metadata.table(table).primary_key),
        "key_format_adherence": key_format_adherence(real, synthetic, metadata, table),
    }


def key_format_adherence(real: pd.DataFrame, synthetic: pd.DataFrame, metadata: Metadata, table: str) -> dict:
    """Share of synthetic keys matching the format inferred from the real keys."""
    fks = {r.child_foreign_key for r in metadata.foreign_keys(table)}
    out = {}
    for col in metadata.table(table).columns.values():
        if col.sdtype != ID_SDTYPE or col.name in fks:
            continue
        fmt = KeyFormat.infer(real[col.name])
        if fmt.kind == "string":
            continue  # no structure to adhere to
        values = synthetic[col.name].dropna()
        out[col.name] = {"format": fmt.kind, "share": round(float(fmt.matches(values).mean()), 4) if len(values) else 1.0}
    return out


def relationship_scores(real: dict[str, pd.DataFrame], synthetic: dict[str, pd.DataFrame], metadata: Metadata) -> list[dict]:
    out = []
    for rel in metadata.relationships:
        real_counts = cardinality_counts(real[rel.parent_table_name], real[rel.child_table_name], rel)
        syn_counts = cardinality_counts(synthetic[rel.parent_table_name], synthetic[rel.child_table_name], rel)
        entry = {
            "relationship": rel.label, **rel.to_dict(),
            "fk_violations": fk_violations(synthetic[rel.child_table_name], synthetic[rel.parent_table_name], rel),
            "cardinality_similarity": round(cardinality_similarity(real_counts, syn_counts), 4),
            "real_children_per_parent": count_summary(real_counts),
            "synthetic_children_per_parent": count_summary(syn_counts),
            "real_counts_histogram": _histogram(real_counts), "synthetic_counts_histogram": _histogram(syn_counts),
        }
        if not rel.is_self_reference:
            trends = cross_table_trends(real, synthetic, metadata, [rel])
            entry["intertable_trends"] = trends["score"]
            entry["intertable_worst_pairs"] = trends["worst_pairs"]
        out.append(entry)
    return out


def _histogram(counts: np.ndarray) -> dict[str, int]:
    values, freq = np.unique(counts, return_counts=True)
    return {str(int(v)): int(f) for v, f in zip(values, freq)}


def _detecting(real: dict[str, pd.DataFrame], synthetic: dict[str, pd.DataFrame], metadata: Metadata,
               seed: int, background) -> list[tuple[str, int, object]]:
    """Discriminative detection of each parent table with children (and a single-column key),
    as ``parent_detection``: the tables joined with their children's aggregates here, the
    classifiers submitted to ``background``; (table, features, future of the accuracies) each."""
    out = []
    for name in metadata.topological_order():
        if metadata.children(name) and metadata.table(name).single_primary_key:
            r, s, numeric = detection_inputs(real, synthetic, metadata, name)
            out.append((name, r.shape[1], background.submit(detection_accuracy, r, s, numeric, seed=seed)))
    return out


@contextmanager
def _beside():
    """Where the detection classifiers (and the 2-hop trends' pairs) run beside the rest of the
    scoring: a process of their own (spawned; a thread where this process may not have children). In a thread they held
    the interpreter lock for much of their time (the demo: 12.6 s of classifiers beside 14 s
    of other scores took about 20 s)."""
    import multiprocessing

    if multiprocessing.current_process().daemon:
        with ThreadPoolExecutor(1) as pool:
            yield pool
        return
    with ProcessPoolExecutor(1, mp_context=multiprocessing.get_context("spawn")) as pool:
        yield pool


def _scores(real: dict[str, pd.DataFrame], synthetic: dict[str, pd.DataFrame], originals: dict[str, pd.DataFrame],
            published: dict[str, pd.DataFrame], metadata: Metadata, seed: int, privacy: bool,
            holdout: dict[str, pd.DataFrame] | None, allow: tuple[str, ...], background) -> tuple:
    """(each table's scores, the constraints found, relationship scores, 2-hop trends);
    ``real``/``synthetic``: with rare values renamed, ``originals``/``published``: as given.
    The 2-hop chains are joined here and their pairs scored in ``background`` (after the
    detection classifiers submitted there), beside the other scores: the school's evaluation
    in 22.0 s against 23.0 s (its relationships' trends there too: 24.3 s, that process then
    the last to finish)."""
    two_hop = [cross_table_trends(real, synthetic, metadata, chain, seed=seed, submit=background.submit)
               for chain in two_hop_chains(metadata)]
    tables = {}
    found = constraint_checks.report(real, synthetic, metadata)
    summed = {(c["table"], c["columns"][0]) for c in found if c["kind"] == "child_sum"}
    for name in metadata.topological_order():
        tables[name] = table_scores(real[name], synthetic[name], metadata, name)
        if real[name] is not originals[name]:  # real rows whose rare value the run published as a stand-in
            was, now = originals[name], real[name]
            counts = {c: int((was[c].notna() & (was[c].astype(object) != now[c].astype(object))).sum())
                      for c in rare_columns(metadata, name, allow) if c in was}
            tables[name]["rare_values_renamed"] = {c: n for c, n in counts.items() if n}
        tables[name]["column_fidelity"] = column_fidelity(real[name], synthetic[name], metadata, name)
        if privacy:
            tables[name]["privacy"] = table_privacy(originals[name], published[name], metadata, name, seed=seed,
                                                    holdout=(holdout or {}).get(name), allow=allow,
                                                    derived=tuple(c for t, c in summed if t == name))
    relationships = relationship_scores(real, synthetic, metadata)
    return tables, found, relationships, [trends() for trends in two_hop]


def evaluate(real: dict[str, pd.DataFrame], synthetic: dict[str, pd.DataFrame], metadata: Metadata,
             seed: int = 0, privacy: bool = True, detection: bool = True,
             holdout: dict[str, pd.DataFrame] | None = None, allow: tuple[str, ...] = (), min_count: int = 5) -> dict:
    """``seed``: the run's (rare real values are renamed with the stand-ins the run published, in
    the real and the synthetic tables alike, so fidelity is scored up to that renaming, for our
    output and a baseline's; privacy is judged on the values themselves)."""
    started = time.perf_counter()
    originals, published = real, synthetic
    real, synthetic = dict(real), dict(synthetic)
    for name in metadata.tables:
        copied = {c: [originals[t][p] for t, p in sources if f"{t}.{p}" not in allow]
                  for c, sources in copied_columns(originals, metadata, name, min_count).items()}
        real[name], (synthetic[name],) = renamed(real[name], [synthetic[name]], metadata, name, seed, min_count, allow,
                                                 copied)
    # the classifiers beside the rest of the scoring (``_beside``); in a thread, both sides change
    # the process's warning filters (``catch_warnings`` is not thread-safe): they are put back as
    # they were once both are done
    with warnings.catch_warnings(), _beside() as background:
        detecting = _detecting(real, synthetic, metadata, seed, background) if detection else []
        tables, found, relationships, two_hop = _scores(real, synthetic, originals, published, metadata, seed,
                                                        privacy, holdout, allow, background)
        detections = [{"table": name, "features": features, **future.result()} for name, features, future in detecting]
    for c in found:  # a number computed from its children is held to its rule, not to its real values
        if c["kind"] == "child_sum":
            fidelity = tables[c["table"]]["column_fidelity"]
            if fidelity["off_range_or_grid"].pop(c["columns"][0], None) is not None:
                fidelity.setdefault("derived_by_rule", {})[c["columns"][0]] = c["description"]
    copied = [constraint_checks.Constraint.from_report(e) for e in found if e["kind"] == "path"]
    copied_keys = {(c.table, c.columns[0]) for c in copied}  # a key copied along a path: that path only
    paths = [p for p in path_agreements(metadata, real, synthetic, seed=seed)
             if (p["table"], p["foreign_key"]) not in copied_keys]
    paths += [constraint_checks.path_report(real, synthetic, c, metadata) for c in copied]
    summary = {
        "column_shapes": _mean(t["column_shapes"] for t in tables.values()),
        "column_pair_trends": _mean(t["column_pair_trends"] for t in tables.values()),
        "cardinality_similarity_mean": _mean(r["cardinality_similarity"] for r in relationships),
        "cardinality_similarity_min": min((r["cardinality_similarity"] for r in relationships), default=None),
        "intertable_trends": _mean(r.get("intertable_trends") for r in relationships),
        "two_hop_trends": _mean(h["score"] for h in two_hop),
        "fk_violations": int(sum(r["fk_violations"] for r in relationships)),
        "pk_duplicates": int(sum(t["pk_duplicates"] for t in tables.values())),
        "key_format_adherence_min": min((k["share"] for t in tables.values() for k in t["key_format_adherence"].values()), default=None),
        "constraints_discovered": len(found),
        "constraints_fully_satisfied": sum(c["satisfied_share"] == 1.0 for c in found),
        "constraint_satisfaction_mean": _mean(c["satisfied_share"] for c in found),
        "path_agreement_max_gap": round(max(abs(p["real"] - p["synthetic"]) for p in paths), 4) if paths else None,
        "date_offset_similarity_min": min((c["offset_similarity"] for c in found
                                           if c.get("offset_similarity") is not None), default=None),
        "columns_breaking_type_fidelity": sum(fidelity_breaks(t["column_fidelity"]) for t in tables.values()),
        "hour_share_max_gap": max((g for t in tables.values() for g in t["column_fidelity"]["hour_share_gap"].values()),
                                  default=None),
    }
    if privacy:
        summary["copied_rows"] = int(sum(t["privacy"]["copied_rows"] for t in tables.values()))
        summary["verbatim_identity_strings"] = int(sum(t["privacy"]["verbatim_identity_strings"] for t in tables.values()))
        protection = [t["privacy"]["dcr_overfitting_protection"] for t in tables.values()
                      if "dcr_overfitting_protection" in t["privacy"]]
        if protection:
            summary["dcr_overfitting_protection_min"] = min(protection)
            summary["membership_advantage_max"] = max(t["privacy"]["membership_advantage"] for t in tables.values()
                                                      if "membership_advantage" in t["privacy"])
    if detections:
        summary["detection_logistic_regression_max"] = max(d["logistic_regression"] for d in detections)
        summary["detection_gradient_boosting_max"] = max(d["gradient_boosting"] for d in detections)
    summary["evaluation_seconds"] = round(time.perf_counter() - started, 1)
    return {"summary": summary, "tables": tables, "relationships": relationships, "two_hop": two_hop,
            "detection": detections, "constraints": found, "path_agreements": paths}
