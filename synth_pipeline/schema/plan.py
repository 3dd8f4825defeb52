"""The schema the model works on, derived from the user's metadata, and the way back.

Real schemas have composite keys, foreign keys to alternate keys, key-less tables, cycles,
empty tables and binary columns. The model works on a simpler graph, and this module maps
between the two:

* every table has one key column: its own single primary key, its composite key where that
  key is only made of its own columns and nothing refers to it (a link table), or else a
  surrogate row number ``__row_id`` (a key-less event table, a referenced composite key);
* every foreign key is one column referring to its parent's key: a composite foreign key,
  or one to an alternate key, becomes a surrogate column ``__fk__<parent>__<columns>``; the
  user's columns are restored from the synthetic parent row after repair (so they resolve
  by construction);
* a cycle's deferred edge, a foreign key into an empty table and a binary column are left
  out of the model and filled when publishing: the deferred edge linked under its real
  children-per-parent counts and null rate, the others NULL;
* a composite primary key's integer column that numbers each group's rows (an order's
  ``line_no`` 1..n) is renumbered within its group after restoring, and rows that still
  repeat a composite key are dropped.
"""

from __future__ import annotations

import logging
from dataclasses import dataclass, replace
from functools import cached_property

import numpy as np
import pandas as pd

from synth_pipeline.schema.metadata import (
    BINARY_SDTYPE,
    Column,
    Metadata,
    Relationship,
    Table,
)

log = logging.getLogger(__name__)

ROW_ID = "__row_id"
ORPHAN = "__orphan__"  # a composite value that names no parent row (evaluation counts it as a violation)


def surrogate_column(rel: Relationship) -> str:
    return f"__fk__{rel.parent_table_name}__{'_'.join(rel.child_columns)}"


def is_surrogate(column: str) -> bool:
    return column == ROW_ID or column.startswith("__fk__")


@dataclass(frozen=True)
class SchemaPlan:
    user: Metadata
    internal: Metadata  # what the model, repair and checks work on (acyclic, single-column keys)
    evaluation: Metadata  # the internal tables plus every user relationship (deferred ones included)
    restored: dict[str, list[tuple[Relationship, str]]]  # child -> (user relationship, its surrogate column)
    composite_keys: dict[str, tuple[str, ...]]  # tables whose user key is composite
    left_out: dict[str, list[str]]  # columns the model does not see (filled when publishing)

    @classmethod
    def of(cls, user: Metadata) -> "SchemaPlan":
        user = user.break_cycles() if user.has_cycles else user
        empty = {n for n, t in user.tables.items() if t.empty}
        restored: dict[str, list[tuple[Relationship, str]]] = {}
        left_out: dict[str, list[str]] = {n: [c.name for c in t.columns.values() if c.sdtype == BINARY_SDTYPE]
                                          for n, t in user.tables.items()}
        internal_rels: list[Relationship] = []
        evaluation_rels: list[Relationship] = []
        # a foreign key to a composite or an alternate key is one surrogate column in the model
        through_surrogate = [r for r in user.relationships
                             if r.is_composite or r.parent_columns != user.tables[r.parent_table_name].primary_key]
        referenced = {r.parent_table_name for r in through_surrogate}
        restored_cols = {(r.child_table_name, c) for r in through_surrogate for c in r.child_columns}
        keys = {}
        for name, table in user.tables.items():
            pk = table.primary_key
            own = not any((name, c) in restored_cols for c in pk)
            keys[name] = pk if len(pk) == 1 or (len(pk) > 1 and own and name not in referenced) else (ROW_ID,)
        for rel in user.relationships:
            child, parent = rel.child_table_name, rel.parent_table_name
            if child in empty:
                continue
            if parent in empty:
                left_out[child] += list(rel.child_columns)
                continue
            if rel.parent_columns == keys[parent]:
                inner = rel
            else:
                inner = Relationship(parent, keys[parent], child, (surrogate_column(rel),), rel.deferred)
                if not rel.deferred:
                    restored.setdefault(child, []).append((rel, surrogate_column(rel)))
            evaluation_rels.append(inner)
            if rel.deferred:
                left_out[child] += list(rel.child_columns)
            else:
                internal_rels.append(inner)
        # a single-column foreign key on a column a composite one restores is kept by the
        # composite one's parent (checked at the user's level, not modelled twice)
        internal_rels = [r for r in internal_rels if not any((r.child_table_name, c) in restored_cols
                                                            for c in r.child_columns) or is_surrogate(r.child_foreign_key)]
        tables, eval_tables = {}, {}
        for name, table in user.tables.items():
            if name in empty:
                continue
            surrogates = [x.child_foreign_key for x in evaluation_rels
                          if x.child_table_name == name and is_surrogate(x.child_foreign_key)]
            columns = dict(table.columns)
            if keys[name] == (ROW_ID,):
                columns = {ROW_ID: Column(ROW_ID, "id"), **columns}
            for s in surrogates:
                columns[s] = Column(s, "id")
            deferred_cols = {x for r in user.deferred if r.child_table_name == name for x in r.child_columns}
            eval_columns = {c: (Column(c, "id") if (name, c) in restored_cols else v) for c, v in columns.items()
                            if c not in left_out[name] or c in deferred_cols}
            dropped = set(left_out[name]) | {c for r, _ in restored.get(name, []) for c in r.child_columns}
            model_columns = {c: v for c, v in columns.items() if c not in dropped
                             and not (c in surrogates and not any(x.child_foreign_key == c for x in internal_rels))}
            primary_parent = table.primary_parent
            for rel, s in restored.get(name, []):
                if primary_parent == rel.child_foreign_key:
                    primary_parent = s
            common = dict(primary_key=keys[name], primary_parent=primary_parent)
            tables[name] = Table(name, model_columns, alternate_keys=tuple(
                k for k in table.alternate_keys if k in model_columns), **common)
            eval_tables[name] = Table(name, eval_columns, alternate_keys=tuple(
                k for k in table.alternate_keys if k in eval_columns), **common)
        internal = Metadata(tables=tables, relationships=tuple(internal_rels)).without_missing_primary_parents()
        evaluation = Metadata(tables=eval_tables, relationships=tuple(evaluation_rels))
        composite = {n: t.primary_key for n, t in user.tables.items() if len(t.primary_key) > 1 and n not in empty}
        return cls(user, internal, evaluation.without_missing_primary_parents(), restored, composite,
                   {n: cols for n, cols in left_out.items() if cols and n not in empty})

    def referenced_columns(self, child: str, parent: str) -> list[str]:
        """The columns of ``parent``'s internal rows that ``child``'s foreign keys are checked
        and joined against (``to_internal``): the columns they name and the parent's model key."""
        columns = [c for r in self.user.foreign_keys(child) if r.parent_table_name == parent for c in r.parent_columns]
        return list(dict.fromkeys([*columns, *self.internal.tables[parent].primary_key]))

    def key_columns(self, name: str) -> list[str]:
        """The user columns of ``name`` that its keys and every relationship touching it are
        made of: all that ``evaluation_frame`` and the run report read."""
        table = self.user.tables[name]
        columns = [*table.primary_key, *table.alternate_keys]
        for rel in self.user.relationships:
            columns += list(rel.child_columns) if rel.child_table_name == name else []
            columns += list(rel.parent_columns) if rel.parent_table_name == name else []
        return [c for c in dict.fromkeys(columns) if c in table.columns]

    # -------------------------------------------------------------- user -> internal
    def to_internal(self, name: str, frame: pd.DataFrame, parents: dict[str, pd.DataFrame],
                    deferred: bool = False) -> pd.DataFrame:
        """``frame`` (the user's columns) with the surrogate key and foreign-key columns added;
        ``parents``: the parent tables already in internal form. ``deferred``: deferred
        edges too (for evaluation; a deferred edge's parent may come after this table)."""
        frame = frame.reset_index(drop=True)  # a copy: new columns go to it alone
        table = self.evaluation.tables[name]
        if ROW_ID in table.columns and ROW_ID not in frame.columns:
            frame.insert(0, ROW_ID, np.arange(1, len(frame) + 1, dtype="int64"))
        for rel in self.user.foreign_keys(name) + (list(self.user.deferred) if deferred else []):
            if rel.child_table_name != name or rel.parent_table_name not in parents:
                continue
            column = surrogate_column(rel)
            if column not in table.columns:
                continue
            parent = parents[rel.parent_table_name]
            key = self.evaluation.tables[rel.parent_table_name].primary_key[0]
            frame[column] = lookup(frame, rel.child_columns, parent, rel.parent_columns, parent[key])
        return frame

    # -------------------------------------------------------------- internal -> user
    def restore(self, name: str, frame: pd.DataFrame, parents: dict[str, pd.DataFrame],
                real: pd.DataFrame | None = None) -> tuple[pd.DataFrame, dict[str, int]]:
        """After repair: the user's foreign-key columns from the synthetic parent rows their
        surrogate names, a composite key's numbering column renumbered within its group, and
        rows repeating a composite key dropped. Returns the frame and what was changed."""
        fixes: dict[str, int] = {}
        frame = frame.copy(deep=False)  # columns below are replaced whole, never written into
        frame.index = pd.RangeIndex(len(frame))
        for rel, column in self.restored.get(name, []):
            parent = frame if rel.is_self_reference else parents[rel.parent_table_name]
            key = self.internal.tables[rel.parent_table_name].primary_key[0]
            # only the columns copied: a parent's other columns (its text) are not repeated per child row
            needed = list(dict.fromkeys([key, *rel.parent_columns]))
            rows = parent[needed].drop_duplicates(key).set_index(key).reindex(frame[column].to_numpy())
            for child_col, parent_col in zip(rel.child_columns, rel.parent_columns):
                frame[child_col] = rows[parent_col].to_numpy()
        pk = self.composite_keys.get(name)
        fk_columns = [c for r in self.internal.foreign_keys(name) for c in r.child_columns]
        if pk and len(pk) == 2 and set(pk) <= set(fk_columns) and len(frame) and \
                tuple(self.internal.tables[name].primary_key) != tuple(pk):
            # a link keyed by its two foreign keys holds each pair once: swap second parents
            # between rows (every parent keeps its number of children) before dropping any row
            from synth_pipeline.modeling.linking import make_pairs_unique

            primary = self.internal.primary_relationship(name)
            owner = primary.child_foreign_key if primary is not None and primary.child_foreign_key in pk else pk[0]
            other = next(c for c in pk if c != owner)
            rng = np.random.default_rng(len(frame))
            values = make_pairs_unique(frame[owner].to_numpy(), frame[other].to_numpy(), rng)
            frame[other] = pd.Series(values).infer_objects().to_numpy()
        if pk and len(frame):
            for column, base in (numbering_columns(real, pk) if real is not None else {}).items():
                group = [c for c in pk if c != column]
                frame[column] = (frame.groupby(group, dropna=False, sort=False).cumcount() + base).astype("int64")
            repeated = frame.duplicated(list(pk)) | frame[list(pk)].isna().any(axis=1)
            if repeated.any():
                fixes[f"rows repeating the key ({', '.join(pk)}) dropped"] = int(repeated.sum())
                frame = frame[~repeated]
                frame.index = pd.RangeIndex(len(frame))
        return frame, fixes

    def publishable(self, name: str, frames: dict[str, pd.DataFrame], real: dict[str, pd.DataFrame],
                    seed: int) -> pd.DataFrame:
        """The user's table from the final internal frames: deferred edges linked, left-out
        columns NULL, surrogate columns dropped. ``frames``/``real``: internal tables by name
        (``real`` gives the deferred edges' real children-per-parent counts)."""
        table = self.user.tables[name]
        if table.empty:
            return pd.DataFrame({c: pd.Series(dtype=real[name][c].dtype if name in real and c in real[name] else object)
                                 for c in table.columns})
        frame = frames[name].copy(deep=False)  # columns below are replaced whole, the stored frame kept
        for column in self.left_out.get(name, []):
            frame[column] = None
        for i, rel in enumerate(r for r in self.user.deferred if r.child_table_name == name):
            parent = frame if rel.is_self_reference else frames[rel.parent_table_name]
            real_parent = real[name] if rel.is_self_reference else real[rel.parent_table_name]
            rng = np.random.default_rng(seed + 7919 * (i + 1))
            picks = link_deferred(real[name], real_parent, rel, len(frame), len(parent), rng)
            present = picks >= 0
            for child_col, parent_col in zip(rel.child_columns, rel.parent_columns):
                values = pd.Series([None] * len(frame), dtype=object)
                values[present] = parent[parent_col].to_numpy(dtype=object)[picks[present]]
                frame[child_col] = values.infer_objects().to_numpy() if present.any() else values.to_numpy()
            log.info("%s: deferred %s linked (%d of %d rows)", name, rel.label, int(present.sum()), len(frame))
        # the user's columns, their values not copied (a table of millions of rows is not held twice)
        return pd.DataFrame({c: frame[c] for c in table.columns}, copy=False)

    @cached_property
    def deferred_labels(self) -> list[str]:
        return [r.label for r in self.user.deferred]


def lookup(child: pd.DataFrame, child_cols, parent: pd.DataFrame, parent_cols, values: pd.Series) -> pd.Series:
    """For each child row, ``values`` of the (first) parent row whose ``parent_cols`` equal the
    child's ``child_cols`` (null where a child column is null; ``ORPHAN`` where no parent row
    matches). The key columns are coded together, one number per combination, and the child's
    numbers looked up among the parent's sorted ones (no join of the key columns)."""
    child_keys, parent_keys = _combined_codes(
        [_join_keys(child[c].reset_index(drop=True), parent[p].reset_index(drop=True))
         for c, p in zip(child_cols, parent_cols)], len(child), len(parent))
    found = np.full(len(child), -1, dtype=np.int64)
    if len(parent):
        unique, first = np.unique(parent_keys, return_index=True)
        at = pd.Index(unique).get_indexer(child_keys)
        found = np.where(at >= 0, first[at], -1)
    out = pd.Series(values.to_numpy()[np.maximum(found, 0)] if len(parent) else np.full(len(child), None),
                    dtype=object)
    null = child[list(child_cols)].isna().any(axis=1).to_numpy()
    out[(found < 0) | out.isna().to_numpy()] = ORPHAN
    out[null] = None
    return out


def _combined_codes(pairs: list[tuple[pd.Series, pd.Series]], n_left: int, n_right: int) -> tuple[np.ndarray, np.ndarray]:
    """One int64 per row of each side, equal where every column's values are equal (codes of
    the two sides' values together, combined a column at a time)."""
    combined, bound = np.zeros(n_left + n_right, dtype=np.int64), 1
    for left, right in pairs:
        values = pd.concat([left, right], ignore_index=True)
        if pd.api.types.is_integer_dtype(values) and not values.hasnans:
            values = values.to_numpy(dtype=np.int64)  # coded faster than a nullable column
        codes, uniques = pd.factorize(values, use_na_sentinel=True)
        size = len(uniques) + 1
        if bound * size >= 2 ** 62:  # renumbered 0..k-1 first: the product stays within int64
            combined, uniques_so_far = pd.factorize(combined)
            combined, bound = combined.astype(np.int64), len(uniques_so_far)
        combined = combined * size + (codes + 1)
        bound *= size
    return combined[:n_left], combined[n_left:]


def _join_keys(a: pd.Series, b: pd.Series) -> tuple[pd.Series, pd.Series]:
    """Two key columns as values a join matches: whole numbers on both sides as integers,
    anything else as text."""
    a, b = _as_integers(a), _as_integers(b)
    if pd.api.types.is_integer_dtype(a) and pd.api.types.is_integer_dtype(b):
        return a.astype("Int64"), b.astype("Int64")
    return tuple(v.astype(str).where(v.notna(), None) for v in (a, b))


def _as_integers(values: pd.Series) -> pd.Series:
    """A float column of whole numbers (within int64's range) as integers; others as they are."""
    if pd.api.types.is_float_dtype(values):
        finite = values.dropna()
        if finite.eq(finite.round()).all() and (finite.abs() < 2.0 ** 63).all():
            return values.astype("Int64")
    return values


def numbering_columns(real: pd.DataFrame, key: tuple[str, ...]) -> dict[str, int]:
    """Integer columns of a composite key that number the rows of each group of the key's
    other columns 1..n (or 0..n-1) in every real row: column -> its first number."""
    out = {}
    if real is None or not len(real) or not set(key) <= set(real.columns):
        return out
    for column in key:
        values = real[column]
        if not pd.api.types.is_numeric_dtype(values) or values.isna().any() or not values.eq(values.round()).all():
            continue
        group = [c for c in key if c != column]
        if not group:
            continue
        base = int(values.min())
        if base not in (0, 1):
            continue
        rank = values.groupby([real[c] for c in group], dropna=False).rank(method="first").astype("int64") - 1 + base
        if bool((rank == values.astype("int64")).all()) and values.groupby([real[c] for c in group]).max().ge(1).any():
            out[column] = base
    return out


def link_deferred(real_child: pd.DataFrame, real_parent: pd.DataFrame, rel: Relationship, n_child: int,
                  n_parent: int, rng: np.random.Generator) -> np.ndarray:
    """Each of ``n_child`` rows' parent position (-1: none): the real null rate, then the real
    children-per-parent counts (scaled to the rows to link) spread over the ``n_parent`` rows."""
    if n_parent == 0 or n_child == 0:
        return np.full(n_child, -1, dtype=int)
    fk = real_child[list(rel.child_columns)]
    null_rate = float(fk.isna().any(axis=1).mean()) if len(fk) else 0.0
    linked = rng.random(n_child) >= null_rate
    keys = real_parent[list(rel.parent_columns)].astype(str).agg("|".join, axis=1)
    present = fk[~fk.isna().any(axis=1)].astype(str).agg("|".join, axis=1) if len(fk) else pd.Series(dtype=str)
    counts = keys.map(present.value_counts()).fillna(0).to_numpy(dtype=float)
    drawn = counts[rng.integers(0, len(counts), n_parent)] if len(counts) else np.ones(n_parent)
    need = int(linked.sum())
    if drawn.sum() <= 0:
        drawn = np.ones(n_parent)
    capacity = np.floor(drawn * need / drawn.sum()).astype(int)
    short = need - int(capacity.sum())
    if short > 0:  # the remainder to the parents with the largest fractions (ties at random)
        frac = drawn * need / drawn.sum() - capacity + rng.random(n_parent) * 1e-9
        capacity[np.argsort(-frac)[:short]] += 1
    slots = rng.permutation(np.repeat(np.arange(n_parent), capacity))
    out = np.full(n_child, -1, dtype=int)
    out[np.nonzero(linked)[0]] = slots[:need]
    return out


MAX_PATH_NULLS = 0.05  # a path-implied key is primary only when the key implying it is often missing


def prepare_metadata(metadata: Metadata, frames: dict[str, pd.DataFrame]) -> tuple[Metadata, list[str]]:
    """What only the data can tell, written into the metadata: tables with no rows
    (``empty``), columns of binary or nested values (sdtype ``binary``), and for each
    foreign-key cycle without a deferred edge, the edge to defer: one whose real column has
    nulls before a NOT NULL one, a child's second foreign key before its primary one, then
    the edge whose child has fewer rows. Returns the metadata and one note per change."""
    from synth_pipeline.sources.validate import unsupported_kind

    notes: list[str] = []
    tables = {}
    for name, table in metadata.tables.items():
        frame = frames.get(name)
        if frame is None:
            tables[name] = table
            continue
        columns = dict(table.columns)
        for col in table.columns.values():
            if col.sdtype != BINARY_SDTYPE and col.name in frame.columns and unsupported_kind(frame[col.name]):
                columns[col.name] = Column(col.name, BINARY_SDTYPE)
                notes.append(f"table '{name}': column '{col.name}' holds {unsupported_kind(frame[col.name])} values: "
                             "left out of modelling, NULL in the output")
        empty = len(frame) == 0
        if empty and not table.empty:
            notes.append(f"table '{name}': no rows; its synthetic table is empty too")
        primary = table.primary_parent
        fks = [r for r in metadata.foreign_keys(name) if not r.is_self_reference and not r.deferred
               and set(r.child_columns) <= set(frame.columns)]
        if primary is None and len(fks) > 1 and len(frame):
            # a row belongs to the parent it always has: the foreign key with the fewest nulls,
            # not a sometimes-set one, nor one a path implies; among equals one that implies
            # another (a payment belongs to its rental; its customer is the rental's), then
            # the first declared
            from synth_pipeline.schema.constraints import foreign_key_paths

            implied = {c.columns[0]: c.foreign_key for c in foreign_key_paths(name, frames, metadata)}
            nulls = [float(frame[list(r.child_columns)].isna().any(axis=1).mean()) for r in fks]

            def rank(i: int) -> tuple:
                via = implied.get(fks[i].child_foreign_key)
                demoted = via is not None and float(frame[via].isna().mean()) <= MAX_PATH_NULLS
                return (demoted, nulls[i], fks[i].child_foreign_key not in implied.values(), i)

            best = min(range(len(fks)), key=rank)
            if best:
                primary = fks[best].child_foreign_key
        tables[name] = replace(table, columns=columns, empty=empty or table.empty, primary_parent=primary)
    out = Metadata(tables=tables, relationships=metadata.relationships)

    def loss(rel: Relationship) -> tuple:
        child = frames.get(rel.child_table_name)
        nulls = float(child[list(rel.child_columns)].isna().any(axis=1).mean()) if child is not None and len(child) else 0.0
        return (nulls == 0, out.primary_relationship(rel.child_table_name) == rel,
                len(child) if child is not None else 0, rel.child_table_name)

    if out.has_cycles:
        broken = out.break_cycles(loss)
        notes += [f"foreign keys form a cycle: {r.label} is deferred (linked after both tables exist)"
                  for r in broken.deferred if r not in out.deferred]
        out = broken
    return out, notes


def evaluation_frame(plan: SchemaPlan, name: str, frames) -> pd.DataFrame:
    """One user table of ``frames`` with the evaluation schema's surrogate columns (a
    key-less parent's row ids are its row numbers, on the real and the synthetic side alike)."""
    own = plan.to_internal(name, frames[name], {})
    parents = {r.parent_table_name: own if r.parent_table_name == name else
               plan.to_internal(r.parent_table_name, frames[r.parent_table_name], {})
               for r in plan.user.relationships if r.child_table_name == name
               and r.parent_table_name in plan.evaluation.tables}
    return plan.to_internal(name, own, parents, deferred=True)


def evaluation_frames(plan: SchemaPlan, frames) -> dict[str, pd.DataFrame]:
    return {n: evaluation_frame(plan, n, frames) for n in plan.evaluation.tables}
