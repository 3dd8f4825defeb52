"""Structural figures of one synthetic table against its parents and its real twin."""

from __future__ import annotations

import numpy as np
import pandas as pd

from synth_pipeline.schema.metadata import Relationship
from synth_pipeline.stats import child_counts, ks_complement


def fk_violations(child: pd.DataFrame, parent: pd.DataFrame, rel: Relationship) -> int:
    """Child rows whose (non-null) foreign key names no parent row."""
    values = child[rel.child_foreign_key]
    return int((values.notna() & ~values.isin(parent[rel.parent_primary_key])).sum())


def pk_duplicates(frame: pd.DataFrame, primary_key: tuple[str, ...]) -> int:
    keys = frame[list(primary_key)]
    return int(keys.duplicated().sum() + keys.isna().any(axis=1).sum())


def cardinality_counts(parent: pd.DataFrame, child: pd.DataFrame, rel: Relationship) -> np.ndarray:
    """Children per parent row under ``rel``, parents with no children included."""
    return child_counts(parent[rel.parent_primary_key], child[rel.child_foreign_key])


def cardinality_similarity(real_counts: np.ndarray, synthetic_counts: np.ndarray) -> float:
    """sdmetrics' CardinalityShapeSimilarity: KS complement of the children-per-parent counts."""
    if len(real_counts) == 0 or len(synthetic_counts) == 0:
        return float(len(real_counts) == len(synthetic_counts))
    return ks_complement(real_counts, synthetic_counts)


def count_summary(counts: np.ndarray) -> dict[str, float]:
    """The summary the seed document prints for fees per student (parents with children)."""
    present = pd.Series(counts[counts > 0])
    if present.empty:
        return {"count": 0, "zero_share": 1.0 if len(counts) else 0.0}
    d = present.describe()
    return {"count": int(d["count"]), "mean": round(float(d["mean"]), 3), "std": round(float(d["std"]), 3) if len(present) > 1 else 0.0,
            "min": int(d["min"]), "25%": float(d["25%"]), "50%": float(d["50%"]), "75%": float(d["75%"]),
            "max": int(d["max"]), "zero_share": round(float(np.mean(counts == 0)), 4)}
