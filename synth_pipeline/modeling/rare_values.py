"""Rare values are never published: a category or text value seen in fewer than ``k`` real
rows (``privacy_min_count``, default 5) is replaced by its stand-in label when publishing
(``synth_pipeline/privacy_labels.py``: one per value, a function of the run seed and the
value). The model keeps 64-bit digests of the rare values, never the values.

Not rare: a value every real row of the column carries (a constant says nothing of anyone),
and every value of a column the user lists in ``privacy_allow`` ("table.column": public
labels such as genre names).
"""

from __future__ import annotations

from dataclasses import dataclass, field

import numpy as np
import pandas as pd

from synth_pipeline.privacy_labels import is_rare, rare_columns, rare_digests, replace_rare
from synth_pipeline.schema.metadata import Metadata


@dataclass
class RareValues:
    """Digests of each column's rare real values, and what their stand-ins are drawn from."""

    digests: dict[str, np.ndarray] = field(default_factory=dict)  # column -> sorted digests
    seed: int = 0  # the run's seed
    min_count: int = 5

    @classmethod
    def fit(cls, metadata: Metadata, name: str, frame: pd.DataFrame, min_count: int, allow: tuple[str, ...],
            seed: int, copied: dict[str, pd.Series] | None = None) -> "RareValues":
        """``copied``: per column copied from a parent column, the parent's real values (their
        rare ones get the stand-ins the parent's do, so the copy stays equal)."""
        out = {}
        for column in rare_columns(metadata, name, allow):
            rare = rare_digests(frame[column], min_count)
            if column in (copied or {}):
                rare = np.union1d(rare, rare_digests(copied[column], min_count))
            if len(rare):
                out[column] = rare
        return cls(out, seed, min_count)

    def is_rare(self, column: str, values: pd.Series) -> np.ndarray:
        return is_rare(values, self.digests.get(column, np.array([], dtype="uint64")))

    def replace(self, frame: pd.DataFrame) -> dict[str, int]:
        """Every rare value in ``frame`` swapped for its stand-in, in place (publishing, and the privacy
        check on the rows as they will be published); the count per column."""
        out = {}
        for column, digests in self.digests.items():
            if column in frame:
                count = replace_rare(frame, column, digests, self.seed)
                if count:
                    out[column] = count
        return out
