"""Encode a parent row as the context vector its children are generated from.

The context of a child row is its primary parent's row: numbers and dates standardised,
categories one-hot (the most frequent ones, the rest pooled), and the parent's own child
counts (log-scaled), so a student's course load can shape the amounts of their fees.
The encoder is fitted on the real parent table and applied unchanged to synthetic parents.
"""

from __future__ import annotations

from dataclasses import dataclass, field

import numpy as np
import pandas as pd

from synth_pipeline.stats import is_count_column
from synth_pipeline.stats import day_numbers, labels

MAX_CATEGORIES = 15


@dataclass
class _Part:
    column: str
    kind: str  # "number" | "count" | "category"
    mean: float = 0.0
    std: float = 1.0
    categories: list[str] = field(default_factory=list)

    @property
    def width(self) -> int:
        return len(self.categories) + 1 if self.kind == "category" else 1


@dataclass
class ContextEncoder:
    parts: list[_Part]

    @classmethod
    def fit(cls, frame: pd.DataFrame, kinds: dict[str, str]) -> "ContextEncoder":
        """``kinds``: column -> sdtype for the parent's modelled columns (count columns included)."""
        parts = []
        for col, sdtype in kinds.items():
            if sdtype in ("categorical", "boolean"):
                top = labels(frame[col]).value_counts().index[:MAX_CATEGORIES].tolist()
                parts.append(_Part(col, "category", categories=top))
                continue
            kind = "count" if is_count_column(col) else "number"
            values = _numbers(frame[col], sdtype, kind)
            finite = values[np.isfinite(values)]
            mean = float(finite.mean()) if len(finite) else 0.0
            std = float(finite.std()) if len(finite) > 1 and finite.std() > 0 else 1.0
            parts.append(_Part(col, kind, mean, std, categories=[sdtype]))
        return cls(parts)

    @property
    def dim(self) -> int:
        return sum(p.width for p in self.parts)

    def transform(self, frame: pd.DataFrame) -> np.ndarray:
        blocks = []
        for p in self.parts:
            if p.kind == "category":
                row_labels = labels(frame[p.column]).to_numpy()
                block = np.zeros((len(frame), p.width), dtype="float32")
                index = {c: i for i, c in enumerate(p.categories)}
                pos = np.array([index.get(v, len(p.categories)) for v in row_labels], dtype=int)
                block[np.arange(len(frame)), pos] = 1.0
                blocks.append(block)
            else:
                values = _numbers(frame[p.column], p.categories[0], p.kind)
                z = np.clip((values - p.mean) / p.std, -5, 5)
                blocks.append(np.nan_to_num(z, nan=0.0).astype("float32")[:, None])
        if not blocks:
            return np.zeros((len(frame), 0), dtype="float32")
        return np.hstack(blocks).astype("float32")


def _numbers(values: pd.Series, sdtype: str, kind: str) -> np.ndarray:
    out = day_numbers(values, sdtype)
    return np.log1p(np.clip(out, 0, None)) if kind == "count" else out
