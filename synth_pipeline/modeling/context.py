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

from synth_pipeline.schema.metadata import (
    MODELLED_SDTYPES,
    Column,
    Metadata,
    Relationship,
)
from synth_pipeline.schema.paths import bridge_tables
from synth_pipeline.stats import (
    child_counts,
    count_column,
    day_numbers,
    is_count_column,
    labels,
)
from synth_pipeline.thresholds import THRESHOLDS


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
                top = labels(frame[col]).value_counts().index[:THRESHOLDS.context_max_categories].tolist()
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
                pos = pd.Index(p.categories).get_indexer(row_labels)  # the pooled rest: after them
                pos[pos < 0] = len(p.categories)
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


def modelled_columns(metadata: Metadata, name: str) -> list[Column]:
    """Columns the table's GAN learns: modelled sdtypes that are not keys."""
    keys = metadata.key_columns(name)
    return [c for c in metadata.table(name).columns.values()
            if c.sdtype in MODELLED_SDTYPES and c.name not in keys]


def with_child_counts(metadata: Metadata, name: str, real: dict[str, pd.DataFrame]) -> pd.DataFrame:
    """The real table plus one children-per-row column per relationship it is the parent of."""
    frame = real[name].reset_index(drop=True)
    pk = metadata.table(name).single_primary_key
    for rel in metadata.child_relationships(name):
        frame[count_column(rel)] = child_counts(frame[pk], real[rel.child_table_name][rel.child_foreign_key])
    return frame


def aligned_parent_rows(primary: Relationship, real: dict[str, pd.DataFrame]) -> pd.DataFrame:
    """For each real child row, its parent's row (all-null where the parent is missing)."""
    parent = real[primary.parent_table_name]
    position = pd.Series(np.arange(len(parent)), index=parent[primary.parent_primary_key].to_numpy())
    rows = real[primary.child_table_name][primary.child_foreign_key].map(position)
    aligned = parent.reset_index(drop=True).reindex(rows.fillna(-1).astype(int).to_numpy())  # -1: nulls
    return aligned.reset_index(drop=True)


def context_links(metadata: Metadata, primary: Relationship) -> list[Relationship]:
    """The primary parent's own other parents, whose rows join the context (a mark is
    generated knowing its student course *and* that course's level)."""
    return [r for r in metadata.second_relationships(primary.parent_table_name) if not r.is_self_reference]


def sampling_inputs(metadata: Metadata, name: str) -> list[str]:
    """The synthetic tables ``name`` is sampled from: its parents and its context's tables."""
    tables = metadata.parents(name)
    primary = metadata.primary_relationship(name)
    if primary is not None:
        tables += [r.parent_table_name for r in context_links(metadata, primary)]
    return list(dict.fromkeys(tables + bridge_tables(metadata, name)))


def real_subset_for(metadata: Metadata, name: str) -> list[str]:
    """The real tables a model of ``name`` reads: itself and its children (for counts), its
    parents (second parents' signatures), and its primary parent's children (for the context)."""
    tables = [name] + metadata.children(name) + metadata.parents(name)
    primary = metadata.primary_relationship(name)
    if primary is not None:
        tables += [primary.parent_table_name] + metadata.children(primary.parent_table_name)
        tables += [r.parent_table_name for r in context_links(metadata, primary)]
    return list(dict.fromkeys(tables + bridge_tables(metadata, name)))


def real_columns_for(metadata: Metadata, name: str) -> dict[str, list[str] | None]:
    """Of each real table a model of ``name`` reads (``real_subset_for``), the columns it
    reads (None: all of them). A table read only as a child of ``name`` gives its
    children-per-parent counts and the sums of its numbers (``child_sum`` rules): its keys
    and numbers are read, not its text, which at scale holds most of a large table's memory."""
    whole = {name, *metadata.parents(name), *bridge_tables(metadata, name)}
    primary = metadata.primary_relationship(name)
    if primary is not None:
        whole |= {primary.parent_table_name, *metadata.children(primary.parent_table_name),
                  *(r.parent_table_name for r in context_links(metadata, primary))}
    out: dict[str, list[str] | None] = {}
    for t in real_subset_for(metadata, name):
        table = metadata.table(t)
        keys = [*table.primary_key, *(c for r in metadata.foreign_keys(t) for c in r.child_columns)]
        numbers = [c.name for c in table.columns.values() if c.sdtype == "numerical"]
        out[t] = None if t in whole else list(dict.fromkeys(keys + numbers))
    return out


def context_frame(metadata: Metadata, primary: Relationship, parent: pd.DataFrame,
                  tables: dict[str, pd.DataFrame]) -> tuple[pd.DataFrame, dict[str, str]]:
    """The parent rows (with their child counts) joined with their own second parents' columns,
    named ``<fk>.<column>``; and each context column's sdtype."""
    frame = parent.reset_index(drop=True).copy()
    kinds = {c.name: c.sdtype for c in modelled_columns(metadata, primary.parent_table_name)}
    kinds.update({c: "numerical" for c in frame.columns if is_count_column(c)})
    for rel in context_links(metadata, primary):
        other = tables[rel.parent_table_name].drop_duplicates(rel.parent_primary_key).set_index(rel.parent_primary_key)
        joined = other.reindex(frame[rel.child_foreign_key].to_numpy())
        for col in modelled_columns(metadata, rel.parent_table_name):
            name = f"{rel.child_foreign_key}.{col.name}"
            frame[name] = joined[col.name].to_numpy()
            kinds[name] = col.sdtype
    return frame, kinds


def training_context(metadata: Metadata, primary: Relationship, real: dict[str, pd.DataFrame]):
    """The encoder of the primary parent's rows, and each real child row's context."""
    parent_name = primary.parent_table_name
    parent, kinds = context_frame(metadata, primary, with_child_counts(metadata, parent_name, real), real)
    encoder = ContextEncoder.fit(parent, kinds)
    encoded = encoder.transform(parent)
    position = pd.Series(np.arange(len(parent)), index=parent[primary.parent_primary_key].to_numpy())
    rows = real[primary.child_table_name][primary.child_foreign_key].map(position).to_numpy(dtype=float)
    context = np.zeros((len(rows), encoder.dim), dtype="float32")
    known = ~np.isnan(rows)
    context[known] = encoded[rows[known].astype(int)]
    return encoder, context
