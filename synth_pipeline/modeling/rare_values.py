"""Rare values are never published: a category or text value seen in fewer than ``k`` real
rows (``privacy_min_count``, default 5) names something few rows share (a composer of two
tracks, a course taught once, a district), so the model may learn it but the output carries
a stand-in label instead.

The stand-in is a function of the value alone (a hash of the value and the table's seed picks
words from a fixed word list, as many words as the value has, in its case), so every row
that drew one rare value gets the same stand-in: the category keeps its rows and its links
(a rule ``a -> b`` that held still holds between the stand-ins), only its name is new. The
model keeps 64-bit digests of the rare values, never the values, and a stand-in that hits
one is drawn again.

Not rare: a value every real row of the column carries (a constant says nothing of anyone),
and every value of a column the user lists in ``privacy_allow`` ("table.column": public
labels such as genre names).
"""

from __future__ import annotations

from dataclasses import dataclass, field

import numpy as np
import pandas as pd

from synth_pipeline.schema.metadata import Metadata

RARE_SDTYPES = ("categorical", "text")  # labels and free text; numbers and dates are smoothed instead
MAX_TRIES = 20


def value_digests(values: pd.Series) -> np.ndarray:
    """A 64-bit hash of each value as text (the same for a value wherever it is)."""
    return pd.util.hash_pandas_object(values.astype(str), index=False).to_numpy(dtype="uint64")


def rare_columns(metadata: Metadata, name: str, allow: tuple[str, ...] = ()) -> list[str]:
    """The columns of ``name`` whose rare values are replaced (keys and allowed columns are not)."""
    keys = metadata.key_columns(name) | set(metadata.table(name).alternate_keys)
    return [c.name for c in metadata.table(name).columns.values()
            if c.sdtype in RARE_SDTYPES and c.name not in keys and f"{name}.{c.name}" not in allow]


@dataclass
class RareValues:
    """Digests of each column's rare real values, and the salt stand-ins are drawn with."""

    digests: dict[str, np.ndarray] = field(default_factory=dict)  # column -> sorted digests
    salt: int = 0
    min_count: int = 5

    @classmethod
    def fit(cls, metadata: Metadata, name: str, frame: pd.DataFrame, min_count: int, allow: tuple[str, ...],
            salt: int) -> "RareValues":
        out = {}
        for column in rare_columns(metadata, name, allow):
            values = frame[column].dropna()
            if not (pd.api.types.is_object_dtype(values) or pd.api.types.is_string_dtype(values)) or \
                    not values.map(lambda v: isinstance(v, str)).all():
                continue  # numbers kept as categories: their values are smoothed or few
            counts = values.astype(str).value_counts()
            if len(counts) <= 1 or min_count <= 1:
                continue  # a constant (or empty) column
            rare = counts.index[counts.to_numpy() < min_count]
            if len(rare):
                out[column] = np.sort(value_digests(pd.Series(rare)))
        return cls(out, salt, min_count)

    def is_rare(self, column: str, values: pd.Series) -> np.ndarray:
        digests = self.digests.get(column)
        if digests is None or values.empty:
            return np.zeros(len(values), dtype=bool)
        return values.notna().to_numpy() & np.isin(value_digests(values), digests)

    def replace(self, frame: pd.DataFrame) -> dict[str, int]:
        """Every rare value in ``frame`` swapped for its stand-in, in place; the count per column."""
        replaced = {}
        for column in self.digests:
            if column not in frame:
                continue
            rare = self.is_rare(column, frame[column])
            if not rare.any():
                continue
            values = frame[column].astype(object)
            originals = pd.unique(values[rare])
            lookup = {v: self.stand_in(column, v) for v in originals}
            frame[column] = values.where(~rare, values.map(lookup))
            replaced[column] = int(rare.sum())
        return replaced

    def stand_in(self, column: str, value) -> str:
        from faker.providers.lorem.en_US import Provider

        words = Provider.word_list
        text = str(value)
        n_words = max(1, len(text.split()))
        for attempt in range(MAX_TRIES):
            seed = int(value_digests(pd.Series([f"{self.salt}|{column}|{attempt}|{text}"]))[0] % (2**63))
            rng = np.random.default_rng(seed)
            label = " ".join(words[i] for i in rng.integers(0, len(words), n_words))
            label = _cased_like(label, text)
            if not self.is_rare(column, pd.Series([label])).any():
                return label
        return f"{label} {attempt}"


def _cased_like(label: str, text: str) -> str:
    letters = [ch for ch in text if ch.isalpha()]
    if letters and all(ch.isupper() for ch in letters):
        return label.upper()
    if text[:1].isupper():
        return label.title() if all(w[:1].isupper() for w in text.split() if w[:1].isalpha()) else label.capitalize()
    return label
