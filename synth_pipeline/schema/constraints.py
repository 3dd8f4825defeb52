"""Constraints that hold in 100% of the real rows, and how often synthetic rows keep them.

Discovered per table: inequalities between number/date columns (``amount_paid <=
amount_due``, ``valid_from < valid_to``), functional dependencies from a category
(``grade_letter -> grade_points``, ``route_name -> monthly_fee``), shared null patterns
(``payment_date`` null exactly when ``payment_mode`` is), across each foreign key a child
date on or after a parent date (``transaction_date >= enrollment_date``), and foreign-key
paths that reach the same row (``payment.customer_id`` is its rental's ``customer_id``).
"""

from __future__ import annotations

import itertools
import re
from dataclasses import asdict, dataclass, fields

import numpy as np
import pandas as pd

from synth_pipeline.errors import ConfigError
from synth_pipeline.schema.metadata import Metadata
from synth_pipeline.stats import (
    NUMERIC,
    as_labels,
    as_numbers,
    comparable,
    compared_columns,
    decimals_of,
    ks_complement,
)
from synth_pipeline.thresholds import THRESHOLDS


@dataclass(frozen=True)
class Constraint:
    table: str
    kind: str  # "inequality" | "functional_dependency" | "null_pattern" | "parent_date_order" | "path" | "child_sum"
    #          | "shared_parent"
    columns: tuple[str, ...]
    description: str
    strict: bool = False
    parent: str | None = None
    foreign_key: str | None = None
    child: str | None = None  # "child_sum": the child table whose rows add up

    @classmethod
    def from_report(cls, entry: dict) -> "Constraint":
        """The constraint a ``report`` entry describes."""
        names = {f.name for f in fields(cls)}
        return cls(**{k: tuple(v) if k == "columns" else v for k, v in entry.items() if k in names})


def discover(real: dict[str, pd.DataFrame], metadata: Metadata) -> list[Constraint]:
    return [c for table in metadata.topological_order() for c in discover_table(real, metadata, table)]


def discover_table(real: dict[str, pd.DataFrame], metadata: Metadata, table: str) -> list[Constraint]:
    """What 100% of ``table``'s real rows satisfy (``real`` holds the table and its parents)."""
    frame, kinds = real[table], compared_columns(metadata, table)
    if len(frame) < THRESHOLDS.constraints_min_rows:
        return []
    return (_inequalities(table, frame, kinds) + _dependencies(table, frame, kinds) + _null_patterns(table, frame, kinds)
            + _parent_date_orders(table, real, metadata) + foreign_key_paths(table, real, metadata)
            + child_sums(table, real, metadata) + shared_parents(table, real, metadata))


_ADDED = [  # what a user may add, in the words report.json uses
    (re.compile(r"^(\w+)\s*(<=|<)\s*(\w+)$"), "inequality"),
    (re.compile(r"^(\w+)\s*->\s*(\w+)$"), "functional_dependency"),
    (re.compile(r"^(\w+) is null exactly when (\w+) is null$"), "null_pattern"),
]


def parse_added(text: str, metadata: Metadata) -> Constraint:
    """A user's constraint, ``"table: a <= b"`` (or ``a < b``, ``a -> b``, ``a is null exactly
    when b is null``), checked against the metadata; a ConfigError naming what is wrong."""
    table, _, rule = text.partition(":")
    table, rule = table.strip(), rule.strip()
    if table not in metadata.tables:
        raise ConfigError(f"constraints_add '{text}': unknown table '{table}' (expected 'table: rule')")
    for pattern, kind in _ADDED:
        match = pattern.match(rule)
        if not match:
            continue
        groups = match.groups()
        columns = (groups[0], groups[-1])
        kinds = compared_columns(metadata, table)
        for col in columns:
            if col not in metadata.table(table).columns:
                raise ConfigError(f"constraints_add '{text}': table '{table}' has no column '{col}'")
            if kind == "inequality" and kinds.get(col) not in NUMERIC:
                raise ConfigError(f"constraints_add '{text}': column '{table}.{col}' is not a number or date")
        if kind == "inequality":
            strict = groups[1] == "<"
            return Constraint(table, kind, columns, f"{columns[0]} {groups[1]} {columns[1]}", strict)
        if kind == "functional_dependency":
            return Constraint(table, kind, columns, f"{columns[0]} -> {columns[1]}")
        return Constraint(table, kind, columns, f"{columns[0]} is null exactly when {columns[1]} is null")
    raise ConfigError(f"constraints_add '{text}': expected 'a <= b', 'a < b', 'a -> b' or "
                      "'a is null exactly when b is null' after the table name")


def functional_map(c: Constraint, real: pd.DataFrame) -> dict:
    """For ``a -> b``: the real value of ``b`` for each label of ``a`` (its most common one)."""
    a, b = c.columns
    pairs = pd.DataFrame({"a": as_labels(real[a]), "b": real[b]})
    return pairs.groupby("a")["b"].agg(lambda v: v.mode(dropna=False).iat[0]).to_dict()


def satisfied(c: Constraint, tables: dict[str, pd.DataFrame], metadata: Metadata,
              reference: dict[str, pd.DataFrame]) -> pd.Series:
    """Per applicable row of ``tables[c.table]``: does it keep the constraint?"""
    return _holds(c, tables, metadata, reference)


def report(real: dict[str, pd.DataFrame], synthetic: dict[str, pd.DataFrame], metadata: Metadata) -> list[dict]:
    out = []
    for c in discover(real, metadata):
        ok = satisfied(c, synthetic, metadata, reference=real)
        out.append({**asdict(c), "columns": list(c.columns), "satisfied_share": round(float(ok.mean()), 4) if len(ok) else 1.0,
                    "applicable_rows": int(len(ok))})
        if c.kind == "parent_date_order":  # the offsets' shape, beyond the order
            out[-1]["offset_similarity"] = offset_similarity(real, synthetic, c, metadata)
    return out


def _inequalities(table, frame, kinds) -> list[Constraint]:
    numeric = [c for c, k in kinds.items() if k in NUMERIC]
    out = []
    for a, b in itertools.combinations(numeric, 2):
        if kinds[a] != kinds[b]:
            continue
        x, y = as_numbers(frame[a], kinds[a]), as_numbers(frame[b], kinds[b])
        both = x.notna() & y.notna()
        if both.sum() < THRESHOLDS.constraints_min_rows:
            continue
        x, y = x[both], y[both]
        if kinds[a] == "numerical" and not comparable(a, b, x, y):
            continue
        for lo, hi, xs, ys in ((a, b, x, y), (b, a, y, x)):
            if (xs <= ys).all() and not (xs == ys).all():
                strict = bool((xs < ys).all())
                out.append(Constraint(table, "inequality", (lo, hi), f"{lo} {'<' if strict else '<='} {hi}", strict))
    return out


def _dependencies(table, frame, kinds) -> list[Constraint]:
    out = []
    for a, b in itertools.permutations(kinds, 2):
        if kinds[a] not in ("categorical", "boolean"):
            continue
        keys = as_labels(frame[a])
        n_keys = keys.nunique()
        if not (1 < n_keys <= min(100, len(frame) // 5)):
            continue
        values = as_labels(frame[b]) if kinds[b] not in NUMERIC else frame[b].astype(str)
        if values.nunique() < 2 or n_keys < values.nunique():
            continue
        if (values.groupby(keys).nunique() == 1).all():
            out.append(Constraint(table, "functional_dependency", (a, b), f"{a} -> {b}"))
    return out


def _null_patterns(table, frame, kinds) -> list[Constraint]:
    nullable = [c for c in frame.columns if 0 < frame[c].isna().mean() < 1]
    return [Constraint(table, "null_pattern", (a, b), f"{a} is null exactly when {b} is null")
            for a, b in itertools.combinations(nullable, 2) if (frame[a].isna() == frame[b].isna()).all()]


def _parent_date_orders(table, real, metadata) -> list[Constraint]:
    out = []
    child_dates = [c for c, k in compared_columns(metadata, table).items() if k == "datetime"]
    for rel in metadata.foreign_keys(table):
        if rel.is_self_reference:
            continue
        parent_dates = [c for c, k in compared_columns(metadata, rel.parent_table_name).items() if k == "datetime"]
        joined = _join_parent(real, rel, child_dates, parent_dates)
        for c, p in itertools.product(child_dates, parent_dates):
            x, y = as_numbers(joined[c], "datetime"), as_numbers(joined[f"parent.{p}"], "datetime")
            both = x.notna() & y.notna()
            if both.sum() >= THRESHOLDS.constraints_min_rows and (x[both] >= y[both]).all():
                out.append(Constraint(table, "parent_date_order", (c, p),
                                      f"{table}.{c} >= {rel.parent_table_name}.{p} (via {rel.child_foreign_key})",
                                      parent=rel.parent_table_name, foreign_key=rel.child_foreign_key))
    return out


def foreign_key_paths(table: str, real: dict[str, pd.DataFrame], metadata: Metadata) -> list[Constraint]:
    """Shortcuts the real rows keep: ``table -f1-> A`` and ``table -f2-> B -g-> A`` reach the
    same row of ``A`` (a payment's customer is its rental's customer) in at least
    ``THRESHOLDS.path_rate`` of the rows where both are set, far above what random links give. ``f1``
    is then implied by ``f2``: sampling and repair copy it along the path, and the check
    holds it on every row."""
    out = []
    fks = [r for r in metadata.foreign_keys(table) if not r.is_self_reference and len(r.child_columns) == 1]
    frame = real[table]
    for f1 in fks:
        for f2 in fks:
            via = f2.parent_table_name
            if f2 == f1 or via in (f1.parent_table_name, table) or via not in real:
                continue
            for g in metadata.foreign_keys(via):
                if g.is_self_reference or len(g.child_columns) > 1 or g.parent_table_name != f1.parent_table_name \
                        or g.parent_primary_key != f1.parent_primary_key:
                    continue
                rate, chance, rows = path_rate(frame, real[via], f1.child_foreign_key, f2, g)
                if rows >= THRESHOLDS.constraints_min_rows and rate >= THRESHOLDS.path_rate and chance <= THRESHOLDS.path_max_chance:
                    out.append(Constraint(table, "path", (f1.child_foreign_key, g.child_foreign_key),
                                          f"{f1.child_foreign_key} = {via}.{g.child_foreign_key} via {f2.child_foreign_key}",
                                          parent=via, foreign_key=f2.child_foreign_key))
    return out


def shared_parents(table: str, real: dict[str, pd.DataFrame], metadata: Metadata) -> list[Constraint]:
    """Second foreign keys whose real rows of one category value all share one parent (each
    bus route has one teacher in charge): the category with the fewest values that does, if one
    does with at least two values repeated."""
    frame = real[table]
    categories = [c for c, k in compared_columns(metadata, table).items() if k in ("categorical", "boolean")]
    out = []
    for rel in metadata.second_relationships(table):
        if rel.is_self_reference:
            continue
        fk = rel.child_foreign_key
        linked = frame[frame[fk].notna()]
        if len(linked) < THRESHOLDS.links_min_group_rows or linked[fk].nunique() < 2:
            continue
        best = None
        for col in categories:
            keys = as_labels(linked[col])
            sizes = keys.value_counts()
            if len(sizes) < 2 or len(sizes) > len(linked) // 2 or (sizes >= 2).sum() < 2:
                continue
            if (linked.groupby(keys.to_numpy())[fk].nunique() == 1).all() and (best is None or len(sizes) < best[1]):
                best = (col, len(sizes))
        if best is not None:
            out.append(Constraint(table, "shared_parent", (best[0], fk), f"the rows of one {best[0]} share one {fk}",
                                  parent=rel.parent_table_name, foreign_key=fk))
    return out


def child_sums(table: str, real: dict[str, pd.DataFrame], metadata: Metadata) -> list[Constraint]:
    """A number of ``table`` equal, in every real row that has children under a foreign key,
    to the sum over those children of one of their numbers or of the product of two (an
    invoice's total is the sum of its lines' unit price x quantity), to the number's last
    digit. Kept by computing the parent's number from its synthetic children on publishing."""
    frame = real[table]
    pk = metadata.table(table).single_primary_key
    kinds = compared_columns(metadata, table)
    totals = [c for c, k in kinds.items() if k == "numerical" and c in frame.columns]
    if pk is None or not totals or len(frame) < THRESHOLDS.constraints_min_rows:
        return []
    out = []
    for rel in metadata.relationships:
        child_name = rel.child_table_name
        if rel.parent_table_name != table or rel.is_self_reference or len(rel.child_columns) > 1 \
                or child_name not in real:
            continue
        child = real[child_name]
        numbers = [c for c, k in compared_columns(metadata, child_name).items()
                   if k == "numerical" and c in child.columns][:THRESHOLDS.max_sum_terms]
        sizes = child.groupby(rel.child_foreign_key).size()
        if not numbers or len(sizes) < THRESHOLDS.constraints_min_rows or (sizes >= 2).mean() < THRESHOLDS.min_shared:
            continue
        terms = [(c,) for c in numbers] + list(itertools.combinations(numbers, 2))
        values = pd.DataFrame({" * ".join(t): _term(child, t) for t in terms}).groupby(
            child[rel.child_foreign_key].to_numpy()).sum()
        parents = frame.drop_duplicates(pk).set_index(pk).reindex(values.index)
        shuffled = np.random.default_rng(0).permutation(len(values))
        for total in totals:
            target = pd.to_numeric(parents[total], errors="coerce")
            if target.isna().any() or target.nunique() < 2:
                continue
            tolerance = 0.5 * unit_of(target) + 1e-9 * target.abs()
            for term in terms:
                sums = values[" * ".join(term)]
                # equal on every row, and not as often when the sums are shuffled across parents
                if ((target - sums).abs() <= tolerance).all() and \
                        ((target - sums.to_numpy()[shuffled]).abs() <= tolerance).mean() <= THRESHOLDS.path_max_chance:
                    out.append(Constraint(table, "child_sum", (total, *term),
                                          f"{total} = sum of {child_name}.{' * '.join(term)} (via {rel.child_foreign_key})",
                                          foreign_key=rel.child_foreign_key, child=child_name))
                    break
    return out


def _term(frame: pd.DataFrame, term: tuple[str, ...]) -> pd.Series:
    value = pd.to_numeric(frame[term[0]], errors="coerce")
    for column in term[1:]:
        value = value * pd.to_numeric(frame[column], errors="coerce")
    return value.fillna(0)


def unit_of(values: pd.Series) -> float:
    """The smallest step the values are written in (1 for whole numbers, 0.01 for cents)."""
    decimals = decimals_of(values.to_numpy(dtype=float))
    return 10.0 ** -(6 if decimals is None else decimals)


def child_sum_values(c: Constraint, parent: pd.DataFrame, child: pd.DataFrame, pk: str) -> pd.Series:
    """Per parent row: the sum its children give (null where it has none)."""
    sums = _term(child, c.columns[1:]).groupby(child[c.foreign_key].to_numpy()).sum()
    return parent[pk].map(sums)


def path_rate(frame: pd.DataFrame, via: pd.DataFrame, column: str, f2, g) -> tuple[float, float, int]:
    """How often ``frame[column]`` equals the value its path ``f2`` then ``g`` reaches, how
    often it would by chance (independent draws from the two columns' value shares), over
    how many rows (those where both are set)."""
    reached = path_values(frame, via, f2, g)
    both = frame[column].notna() & reached.notna()
    if not both.any():
        return 0.0, 0.0, 0
    a, b = as_labels(frame[column][both]), as_labels(reached[both])
    rate = float((a.to_numpy() == b.to_numpy()).mean())
    shares = a.value_counts(normalize=True)
    chance = float((shares * b.value_counts(normalize=True).reindex(shares.index).fillna(0)).sum())
    return rate, chance, int(both.sum())


def path_report(real: dict[str, pd.DataFrame], synthetic: dict[str, pd.DataFrame], c: Constraint,
                metadata: Metadata) -> dict:
    """A path constraint's agreement on the real and the synthetic rows, and by chance."""
    f2, g = path_keys(c, metadata)
    rate, chance, _ = path_rate(real[c.table], real[c.parent], c.columns[0], f2, g)
    synthetic_rate, _, _ = path_rate(synthetic[c.table], synthetic[c.parent], c.columns[0], f2, g)
    return {"table": c.table, "foreign_key": c.columns[0], "path": f"{c.description} (kept on every row)",
            "real": round(rate, 4),
            "synthetic": round(synthetic_rate, 4), "chance": round(chance, 4)}


def offset_similarity(real: dict[str, pd.DataFrame], synthetic: dict[str, pd.DataFrame], c: Constraint,
                      metadata: Metadata) -> float | None:
    """For a date order across a foreign key: how alike the real and synthetic offsets
    (child date minus parent date) are, as sdmetrics' KSComplement."""
    rel = next(r for r in metadata.foreign_keys(c.table) if r.child_foreign_key == c.foreign_key)
    offsets = []
    for tables in (real, synthetic):
        # each row's parent date looked up by key (rows without a parent dropped, as by a join)
        dates = _by_key(tables[rel.parent_table_name], rel.parent_primary_key, c.columns[1])
        child = tables[c.table]
        gap = as_numbers(child[c.columns[0]], "datetime") - \
            as_numbers(child[rel.child_foreign_key].map(dates), "datetime")
        offsets.append(gap.dropna().astype(float).reset_index(drop=True))
    if min(len(o) for o in offsets) == 0:
        return None
    return round(ks_complement(offsets[0], offsets[1]), 4)


def path_keys(c: Constraint, metadata: Metadata):
    """A path constraint's two foreign keys: the row's own (``f2``) and the one of the row it
    names (``g``)."""
    f2 = next(r for r in metadata.foreign_keys(c.table) if r.child_foreign_key == c.foreign_key)
    g = next(r for r in metadata.foreign_keys(c.parent) if r.child_foreign_key == c.columns[1])
    return f2, g


def path_values(frame: pd.DataFrame, via: pd.DataFrame, f2, g) -> pd.Series:
    """Per row of ``frame``: the value of ``via.g`` on the row its foreign key ``f2`` names."""
    return frame[f2.child_foreign_key].map(_by_key(via, f2.parent_primary_key, g.child_foreign_key))


def _by_key(table: pd.DataFrame, key: str, column: str) -> pd.Series:
    """``table[column]`` indexed by ``key`` (a key's first row), from those two columns alone:
    not a copy of the whole table (a parent's text, at scale)."""
    pair = table[list(dict.fromkeys([key, column]))]
    return pair.drop_duplicates(key).set_index(key, drop=False)[column]


def _join_parent(tables, rel, child_cols, parent_cols) -> pd.DataFrame:
    child = tables[rel.child_table_name][[rel.child_foreign_key, *child_cols]]
    parent = tables[rel.parent_table_name][[rel.parent_primary_key, *parent_cols]].add_prefix("parent.")
    return child.merge(parent, left_on=rel.child_foreign_key, right_on=f"parent.{rel.parent_primary_key}", how="inner")


def _holds(c: Constraint, tables: dict[str, pd.DataFrame], metadata: Metadata, reference) -> pd.Series:
    frame = tables[c.table]
    kinds = compared_columns(metadata, c.table)
    if c.kind == "inequality":
        a, b = c.columns
        x, y = as_numbers(frame[a], kinds[a]), as_numbers(frame[b], kinds[b])
        both = x.notna() & y.notna()
        return (x[both] < y[both]) if c.strict else (x[both] <= y[both])
    if c.kind == "functional_dependency":
        a, b = c.columns
        source = reference[c.table] if reference is not None else frame
        mapping = functional_map(c, source)  # the real value of b for each a (its most common one)
        keys = as_labels(frame[a]).reset_index(drop=True)
        known = keys.isin(list(mapping))
        if not known.all():  # a label the real rows lack (a rare value's stand-in): one b throughout
            mapping = {**functional_map(c, frame[~known.to_numpy()]), **mapping}
        return _as_values(frame[b], kinds[b]).reset_index(drop=True) == _as_values(keys.map(mapping), kinds[b])
    if c.kind == "null_pattern":
        a, b = c.columns
        return frame[a].isna() == frame[b].isna()
    if c.kind == "child_sum":
        if c.child not in tables:
            return pd.Series([], dtype=bool)
        pk = metadata.table(c.table).single_primary_key
        sums = child_sum_values(c, frame, tables[c.child], pk)
        have = sums.notna()
        target = pd.to_numeric(frame[c.columns[0]], errors="coerce")[have]
        tolerance = 0.5 * unit_of(target) + 1e-9 * target.abs() if len(target) else 0
        return ((target - sums[have]).abs() <= tolerance).reset_index(drop=True)
    if c.kind == "shared_parent":
        column, fk = c.columns
        linked = frame[frame[fk].notna()]
        parents = linked.groupby(as_labels(linked[column]).to_numpy())[fk].transform("nunique")
        return (parents == 1).reset_index(drop=True)
    if c.kind == "path":
        f2, g = path_keys(c, metadata)
        reached = path_values(frame, tables[c.parent], f2, g)
        both = frame[c.columns[0]].notna() & reached.notna()
        return pd.Series(as_labels(frame[c.columns[0]][both]).to_numpy() == as_labels(reached[both]).to_numpy())
    rel = next(r for r in metadata.foreign_keys(c.table) if r.child_foreign_key == c.foreign_key)
    child_col, parent_col = c.columns
    # each row's parent date, looked up by key (a join would build the joined table)
    dates = _by_key(tables[rel.parent_table_name], rel.parent_primary_key, parent_col)
    x = as_numbers(frame[child_col], "datetime").reset_index(drop=True)
    y = as_numbers(frame[rel.child_foreign_key].map(dates), "datetime").reset_index(drop=True)
    both = x.notna() & y.notna()
    return (x[both] >= y[both]).reset_index(drop=True)


def _as_values(values: pd.Series, kind: str) -> pd.Series:
    if kind in NUMERIC:
        return as_numbers(values, kind).round(6).astype(str)
    return as_labels(values)
