"""The run's own report.json: row counts, key checks and children-per-parent similarity."""

from __future__ import annotations

import numpy as np
import pandas as pd

from synth_pipeline.evaluation.structure import (
    cardinality_counts,
    cardinality_similarity,
    count_summary,
    fk_violations,
)
from synth_pipeline.schema.metadata import Metadata
from synth_pipeline.stats import DIGEST_CHUNK_ROWS, combined_hashes, value_hashes


def build_run_report(metadata: Metadata, real: dict[str, pd.DataFrame], synthetic: dict[str, pd.DataFrame],
                     cardinality_threshold: float) -> dict:
    """Where ``synthetic`` has a ``parts(name)`` method (a partitioned run: each part a
    self-contained chunk of the database), every figure is gathered one part at a time, so
    the report never holds a whole large table: counts add up, key digests are compared
    across the parts, children-per-parent counts are joined."""
    tables, found = {}, {}
    # keys compared across parts are hashed as text (a key read as a number in one part and as
    # text in another); within one part a column has one type, its values hashed as they are
    as_text = getattr(synthetic, "partitioned", False)
    as_child: dict[str, list[int]] = {}
    for i, rel in enumerate(metadata.relationships):
        as_child.setdefault(rel.child_table_name, []).append(i)
    for name in metadata.topological_order():
        table = metadata.table(name)
        rows, keys, alternates = 0, [], {k: [] for k in table.alternate_keys}
        for part in _parts(synthetic, name):  # 8-byte digests of the keys, not the parts themselves
            rows += len(part)
            keys.append(_digests(part[list(table.primary_key)], as_text))
            for k in alternates:
                alternates[k].append(_digests(part[[k]].dropna(), as_text))
        keys = pd.concat(keys, ignore_index=True)
        tables[name] = {"real_rows": len(real[name]), "synthetic_rows": rows,
                        "pk_duplicates": int(keys["digest"].duplicated().sum() + keys["null"].sum()),
                        "alternate_key_duplicates": {k: int(pd.concat(v)["digest"].duplicated().sum())
                                                     for k, v in alternates.items()}}
        # its relationships as the child now, while its frames are held (a large table's
        # frames are not read again for each of its parents)
        for i in as_child.get(name, []):
            found[i] = _relationship(metadata.relationships[i], real, synthetic, cardinality_threshold)
    relationships = [found[i] if i in found else _relationship(rel, real, synthetic, cardinality_threshold)
                     for i, rel in enumerate(metadata.relationships)]
    sims = [r["cardinality_similarity"] for r in relationships]
    return {
        "tables": tables,
        "relationships": relationships,
        "totals": {
            "real_rows": int(sum(t["real_rows"] for t in tables.values())),
            "synthetic_rows": int(sum(t["synthetic_rows"] for t in tables.values())),
            "fk_violations": int(sum(r["fk_violations"] for r in relationships)),
            "pk_duplicates": int(sum(t["pk_duplicates"] for t in tables.values())),
            "alternate_key_duplicates": int(sum(sum(t["alternate_key_duplicates"].values()) for t in tables.values())),
            "mean_cardinality_similarity": round(float(np.mean(sims)), 4) if sims else 1.0,
            "min_cardinality_similarity": round(float(np.min(sims)), 4) if sims else 1.0,
        },
    }


def _relationship(rel, real, synthetic, cardinality_threshold: float) -> dict:
    """One relationship's FK violations and children-per-parent figures."""
    violations, counts = 0, []
    if rel.is_self_reference:
        pairs = ((part, part) for part in _parts(synthetic, rel.child_table_name))
    else:
        pairs = zip(_parts(synthetic, rel.parent_table_name), _parts(synthetic, rel.child_table_name))
    for parent_part, child_part in pairs:
        violations += fk_violations(child_part, parent_part, rel)
        counts.append(cardinality_counts(parent_part, child_part, rel))
    syn_counts = np.concatenate(counts)
    real_counts = cardinality_counts(real[rel.parent_table_name], real[rel.child_table_name], rel)
    similarity = cardinality_similarity(real_counts, syn_counts)
    return {
        "relationship": rel.label, **rel.to_dict(),
        "fk_violations": violations,
        "cardinality_similarity": round(similarity, 4),
        "cardinality_check_passed": bool(similarity >= cardinality_threshold),
        "real_children_per_parent": count_summary(real_counts),
        "synthetic_children_per_parent": count_summary(syn_counts),
    }


def _parts(tables, name: str):
    return tables.parts(name) if getattr(tables, "partitioned", False) else iter([tables[name]])


def _key_hashes(values: pd.Series) -> np.ndarray:
    """``value_hashes``, numbers as their text (the same hash for 5 held as a number and "5"
    held as text), written ``DIGEST_CHUNK_ROWS`` at a time."""
    if not pd.api.types.is_numeric_dtype(values):
        return value_hashes(values)
    out = np.empty(len(values), dtype="uint64")
    for start in range(0, len(values), DIGEST_CHUNK_ROWS):
        chunk = values.iloc[start:start + DIGEST_CHUNK_ROWS]
        text = pd.Series(list(map(str, chunk.tolist())), index=chunk.index, dtype=object) \
            if chunk.dtype == np.dtype("int64") else chunk.astype(str)  # the same text, in half the time
        out[start:start + len(chunk)] = value_hashes(text.where(chunk.notna()))
    return out


def _digests(frame: pd.DataFrame, as_text: bool = True) -> pd.DataFrame:
    """Per row of ``frame``: a 64-bit digest of its values (``as_text``: numbers as text, so a
    key read as a number in one partition and as text in another still compares; dates as
    nanoseconds, whatever their unit) and whether one is missing."""
    hashes = _key_hashes if as_text else value_hashes
    return pd.DataFrame({"digest": combined_hashes(len(frame), (hashes(frame[c]) for c in frame.columns),
                                                   len(frame.columns)),
                         "null": frame.isna().any(axis=1).to_numpy()})
