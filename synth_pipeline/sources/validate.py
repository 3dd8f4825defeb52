"""What a real table must satisfy before anything is learned from it.

A table that cannot be modelled gets one clear error naming the table and column:

* no rows (nothing to learn from);
* a column of binary or nested values (bytes, structs, lists), which no model here learns;
* a column declared categorical with more distinct values than a category model can hold
  (declare it ``id`` or ``text``; detection does so by itself);
* primary-key values that are null or repeated.

Foreign-key values that match no parent row (orphans) are dropped with the rows holding
them, as SDV's ``drop_unknown_references`` does, and counted; with ``on_orphans: fail``
they are an error instead. A self-reference pointing at a missing row is set null (dropping
the row could orphan others). Null foreign keys are kept: they mean "no parent".
"""

from __future__ import annotations

from dataclasses import dataclass, field

import numpy as np
import pandas as pd

from synth_pipeline.errors import SourceError
from synth_pipeline.schema.metadata import BINARY_SDTYPE, Metadata
from synth_pipeline.schema.plan import ORPHAN, lookup

MAX_CATEGORIES = 5000
ORPHAN_POLICIES = ("drop", "fail")
_NESTED = (bytes, bytearray, memoryview, dict, list, tuple, set, np.ndarray)


@dataclass
class SourceNotes:
    """What validation changed in a real table (shown in the UI, the report and the CLI)."""

    orphans_dropped: dict[str, int] = field(default_factory=dict)  # FK column -> rows dropped
    orphans_nulled: dict[str, int] = field(default_factory=dict)  # self-reference -> values set null

    def as_dict(self) -> dict:
        return {k: v for k, v in (("orphan_rows_dropped", self.orphans_dropped),
                                  ("orphan_self_references_nulled", self.orphans_nulled)) if v}


def unsupported_kind(values: pd.Series) -> str | None:
    """``binary`` or ``nested`` when the column holds such values, else None."""
    if values.dtype != object:
        return None
    present = values.dropna()
    for v in present.head(1000):
        if isinstance(v, (bytes, bytearray, memoryview)):
            return "binary"
        if isinstance(v, _NESTED):
            return "nested (struct/list)"
    return None


def validate_real_table(metadata: Metadata, name: str, frame: pd.DataFrame, parents: dict[str, pd.DataFrame],
                        on_orphans: str = "drop") -> tuple[pd.DataFrame, SourceNotes]:
    """``frame`` checked against its metadata, orphans handled; ``parents`` are already validated."""
    if on_orphans not in ORPHAN_POLICIES:
        raise SourceError(f"on_orphans: expected one of {', '.join(ORPHAN_POLICIES)}, got '{on_orphans}'")
    table = metadata.table(name)
    if frame.empty:
        raise SourceError(f"table '{name}': the source table has no rows, so there is nothing to learn from "
                          "(mark it \"empty\": true in the metadata, as detection does)")
    for col in table.columns.values():
        if col.sdtype == BINARY_SDTYPE:
            continue
        kind = unsupported_kind(frame[col.name])
        if kind:
            raise SourceError(f"table '{name}': column '{col.name}' holds {kind} values, which cannot be modelled "
                              "(remove the column from the metadata)")
        if col.sdtype == "categorical":
            distinct = int(frame[col.name].nunique())
            if distinct > MAX_CATEGORIES:
                raise SourceError(f"table '{name}': column '{col.name}' is declared categorical but has {distinct:,} "
                                  f"distinct values (at most {MAX_CATEGORIES:,} are learned as categories); "
                                  "declare it as \"id\" or \"text\" in the metadata")
    _check_primary_key(name, frame, list(table.primary_key))
    notes = SourceNotes()
    for rel in metadata.foreign_keys(name):
        if not rel.is_self_reference and rel.parent_table_name not in parents:
            continue  # a parent generated later (a cycle's deferred edge) or empty: linked anew
        fk = rel.child_foreign_key
        parent = frame if rel.is_self_reference else parents[rel.parent_table_name]
        for child_col, parent_col in zip(rel.child_columns, rel.parent_columns):
            if frame[child_col].isna().all() and frame[child_col].dtype != parent[parent_col].dtype:
                # never set: typed like the parent key, so joins on it line up
                frame = frame.copy()
                kind = parent[parent_col].dtype
                frame[child_col] = pd.Series([None] * len(frame), dtype="Int64" if pd.api.types.is_integer_dtype(kind)
                                             else "float64" if pd.api.types.is_float_dtype(kind) else object)
        orphan = pd.Series(lookup(frame, rel.child_columns, parent, rel.parent_columns,
                                  pd.Series(np.ones(len(parent)))).eq(ORPHAN).to_numpy(), index=frame.index)
        count = int(orphan.sum())
        if not count:
            continue
        example = [_plain(v) for v in frame.loc[orphan, list(rel.child_columns)].iloc[0].tolist()]
        example = example[0] if len(example) == 1 else tuple(example)
        if on_orphans == "fail":
            raise SourceError(f"table '{name}': column '{fk}' has {count} value(s) with no row in "
                              f"{rel.parent_table_name}.{rel.parent_primary_key} (e.g. {example!r}); "
                              "set on_orphans: drop to drop those rows")
        if rel.is_self_reference:
            frame = frame.copy()
            frame.loc[orphan, list(rel.child_columns)] = None
            notes.orphans_nulled[fk] = count
        else:
            frame = frame.loc[~orphan].reset_index(drop=True)
            notes.orphans_dropped[fk] = count
    if frame.empty:
        raise SourceError(f"table '{name}': no rows are left once rows whose foreign keys match no parent are dropped")
    return frame, notes


def _check_primary_key(name: str, frame: pd.DataFrame, pk: list[str]) -> None:
    if not pk:
        return
    label = pk[0] if len(pk) == 1 else f"({', '.join(pk)})"
    column = "column" if len(pk) == 1 else "key"
    nulls = int(frame[pk].isna().any(axis=1).sum())
    if nulls:
        raise SourceError(f"table '{name}': primary key {column} '{label}' is null in {nulls} row(s)")
    repeated = frame.duplicated(pk, keep=False)
    if repeated.any():
        example = [_plain(v) for v in frame.loc[repeated, pk].iloc[0].tolist()]
        shown = example[0] if len(example) == 1 else tuple(example)
        raise SourceError(f"table '{name}': primary key {column} '{label}' repeats in {int(repeated.sum())} rows "
                          f"(e.g. {shown!r}); a primary key must be unique")


def _plain(value):
    """A numpy scalar as the Python value it holds (so messages show 5, not np.int64(5))."""
    return value.item() if isinstance(value, np.generic) else value
