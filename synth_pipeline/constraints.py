"""Constraints that hold in 100% of the real rows, and how often synthetic rows keep them.

Discovered per table: inequalities between number/date columns (``amount_paid <=
amount_due``, ``valid_from < valid_to``), functional dependencies from a category
(``grade_letter -> grade_points``, ``route_name -> monthly_fee``), shared null patterns
(``payment_date`` null exactly when ``payment_mode`` is), and across each foreign key,
a child date on or after a parent date (``transaction_date >= enrollment_date``).
"""

from __future__ import annotations

import itertools
import re
from dataclasses import asdict, dataclass

import pandas as pd

from synth_pipeline.errors import ConfigError
from synth_pipeline.evaluation.fidelity import NUMERIC, as_labels, as_numbers, compared_columns
from synth_pipeline.modeling.derived import comparable
from synth_pipeline.schema.metadata import Metadata

MIN_ROWS = 20


@dataclass(frozen=True)
class Constraint:
    table: str
    kind: str  # "inequality" | "functional_dependency" | "null_pattern" | "parent_date_order"
    columns: tuple[str, ...]
    description: str
    strict: bool = False
    parent: str | None = None
    foreign_key: str | None = None


def discover(real: dict[str, pd.DataFrame], metadata: Metadata) -> list[Constraint]:
    return [c for table in metadata.topological_order() for c in discover_table(real, metadata, table)]


def discover_table(real: dict[str, pd.DataFrame], metadata: Metadata, table: str) -> list[Constraint]:
    """What 100% of ``table``'s real rows satisfy (``real`` holds the table and its parents)."""
    frame, kinds = real[table], compared_columns(metadata, table)
    if len(frame) < MIN_ROWS:
        return []
    return (_inequalities(table, frame, kinds) + _dependencies(table, frame, kinds) + _null_patterns(table, frame, kinds)
            + _parent_date_orders(table, real, metadata))


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
    return out


def _inequalities(table, frame, kinds) -> list[Constraint]:
    numeric = [c for c, k in kinds.items() if k in NUMERIC]
    out = []
    for a, b in itertools.combinations(numeric, 2):
        if kinds[a] != kinds[b]:
            continue
        x, y = as_numbers(frame[a], kinds[a]), as_numbers(frame[b], kinds[b])
        both = x.notna() & y.notna()
        if both.sum() < MIN_ROWS:
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
            if both.sum() >= MIN_ROWS and (x[both] >= y[both]).all():
                out.append(Constraint(table, "parent_date_order", (c, p),
                                      f"{table}.{c} >= {rel.parent_table_name}.{p} (via {rel.child_foreign_key})",
                                      parent=rel.parent_table_name, foreign_key=rel.child_foreign_key))
    return out


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
        same = _as_values(frame[b], kinds[b]).reset_index(drop=True) == _as_values(keys.map(mapping), kinds[b])
        return same & keys.isin(list(mapping))
    if c.kind == "null_pattern":
        a, b = c.columns
        return frame[a].isna() == frame[b].isna()
    rel = next(r for r in metadata.foreign_keys(c.table) if r.child_foreign_key == c.foreign_key)
    child_col, parent_col = c.columns
    joined = _join_parent(tables, rel, [child_col], [parent_col])
    x, y = as_numbers(joined[child_col], "datetime"), as_numbers(joined[f"parent.{parent_col}"], "datetime")
    both = x.notna() & y.notna()
    return x[both] >= y[both]


def _as_values(values: pd.Series, kind: str) -> pd.Series:
    if kind in NUMERIC:
        return as_numbers(values, kind).round(6).astype(str)
    return as_labels(values)
