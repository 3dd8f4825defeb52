"""Paths the real links follow: a second foreign key that agrees with another path through the schema.

In the school data a mark's assessor is, 95% of the time, one of the teachers who teach the
mark's course: ``marks.assessed_by_teacher_id`` agrees with the path
marks -> student_courses.course_id -> course_instructors.teacher_id. A *bridge* is such a
path: a table ``B`` holding (route, parent) pairs, where the route is a key the child row
already knows (its own earlier foreign key, or one of its primary parent's). Bridges are
found structurally (``bridge_candidates``; tables owned by the same primary ancestors, such
as a student's fees for a student's canteen purchases, are not paths) and kept where the real
agreement rate is well above what random links would give (``fit_bridge``). Where a category
of the child row tells which rows agree (a course instructor is the course's lead teacher
exactly when the row's role is ``lead``), the share is taken per value of that category
(``Bridge.by``). ``modeling.bridges`` reproduces them when linking; the evaluation measures
them on both databases (``path_agreements``).
"""

from __future__ import annotations

from dataclasses import dataclass, field, replace

import numpy as np
import pandas as pd

from synth_pipeline.schema.metadata import Metadata, Relationship
from synth_pipeline.thresholds import THRESHOLDS


@dataclass(frozen=True)
class Bridge:
    fk: str  # the child's foreign key being linked
    table: str  # the table holding (route, parent) pairs
    pair_route: str  # its column holding the route key (its primary key when it is the route table)
    pair_parent: str  # its column holding the parent key
    route_fk: str  # the column, on the child or on its primary parent, holding the route key
    via_parent: bool
    rate: float = 0.0
    chance: float = 0.0
    by: str = ""  # the child's category whose values set the share, if any
    rate_by: dict = field(default_factory=dict)  # its value (as text) -> the real agreement rate

    @property
    def label(self) -> str:
        where = "primary parent's " if self.via_parent else ""
        given = ""
        if self.by:
            given = ", by " + self.by + ": " + ", ".join(f"{v} {r:.0%}" for v, r in sorted(self.rate_by.items()))
        return (f"{self.fk} is one of {self.table}.{self.pair_parent} paired with the row's {where}{self.route_fk} "
                f"({self.rate:.1%} of real rows, {self.chance:.1%} by chance{given})")

    @property
    def binding(self) -> bool:
        """Nearly every real row agrees (``THRESHOLDS.path_rate``): every synthetic row whose route has a
        paired parent is linked to one, beyond the capacities if it must."""
        return self.rate >= THRESHOLDS.path_rate and not self.by

    @property
    def share(self) -> float:
        """The share of rows to link along the bridge: random links add the chance rate."""
        return self._share(self.rate)

    def _share(self, rate):
        return np.clip((rate - self.chance) / max(1 - self.chance, 1e-9), 0, 1)

    def shares(self, n: int, category: np.ndarray | None = None) -> np.ndarray:
        """Each row's share: its category value's where the share is by category."""
        if not self.by or category is None:
            return np.full(n, self.share)
        rates = pd.Series(category, dtype=object).astype(str).map(self.rate_by).fillna(self.rate)
        return self._share(rates.to_numpy(dtype=float))


def bridge_candidates(metadata: Metadata, rel: Relationship) -> list[Bridge]:
    """Every structural path that could agree with ``rel`` (tables earlier in the order only,
    so sampling from them never makes the graph cyclic)."""
    if rel.is_self_reference:
        return []
    child, parent = rel.child_table_name, rel.parent_table_name
    order = {t: i for i, t in enumerate(metadata.topological_order())}
    primary = metadata.primary_relationship(child)
    if primary is None or primary == rel:
        return []
    earlier = metadata.second_relationships(child)
    earlier = earlier[:earlier.index(rel)]
    routes = [(r.child_foreign_key, False, r.parent_table_name) for r in [primary] + earlier if not r.is_self_reference]
    routes += [(r.child_foreign_key, True, r.parent_table_name) for r in metadata.foreign_keys(primary.parent_table_name)
               if not r.is_self_reference]
    owners = _primary_chain(metadata, child)
    siblings = {t for t in metadata.tables if t not in owners and owners & _primary_chain(metadata, t)}
    out = []
    for route_fk, via_parent, route_table in routes:
        if route_table == parent:
            continue
        for b in metadata.tables:
            if b == child or order[b] >= order[child] or b in siblings:
                continue
            to_parent = [r for r in metadata.foreign_keys(b) if r.parent_table_name == parent and not r.is_self_reference]
            if b == parent:  # a diamond: the parent itself reaches the route's table (its district)
                pairs = [(q.child_foreign_key, metadata.table(b).single_primary_key) for q in metadata.foreign_keys(b)
                         if q.parent_table_name == route_table and not q.is_self_reference]
            elif b == route_table:
                pairs = [(metadata.table(b).single_primary_key, r.child_foreign_key) for r in to_parent]
            else:
                to_route = [r for r in metadata.foreign_keys(b) if r.parent_table_name == route_table]
                pairs = [(q.child_foreign_key, p.child_foreign_key) for q in to_route for p in to_parent]
            out += [Bridge(rel.child_foreign_key, b, q, p, route_fk, via_parent) for q, p in pairs if q]
    return out


def _primary_chain(metadata: Metadata, table: str) -> set[str]:
    """The tables above ``table`` along primary relationships (a mark's student course and
    student), roots left out: a reference table at the top owns nothing in particular."""
    chain: set[str] = set()
    rel = metadata.primary_relationship(table)
    while rel is not None and rel.parent_table_name not in chain and rel.parent_table_name != table:
        chain.add(rel.parent_table_name)
        rel = metadata.primary_relationship(rel.parent_table_name)
    return chain - set(metadata.roots())


def bridge_tables(metadata: Metadata, table: str) -> list[str]:
    return list(dict.fromkeys(b.table for rel in metadata.second_relationships(table)
                              for b in bridge_candidates(metadata, rel)))


def route_values(bridge: Bridge, rows: pd.DataFrame, parent_rows: pd.DataFrame | None) -> np.ndarray:
    source = parent_rows if bridge.via_parent else rows
    return source[bridge.route_fk].to_numpy(dtype=object)


def pair_index(bridge: Bridge, table: pd.DataFrame) -> pd.MultiIndex:
    pairs = table[[bridge.pair_route, bridge.pair_parent]].dropna()
    return pd.MultiIndex.from_arrays([pairs[bridge.pair_route].astype(str), pairs[bridge.pair_parent].astype(str)])


def agreeing_rows(bridge: Bridge, route: np.ndarray, linked: np.ndarray, table: pd.DataFrame) -> tuple[np.ndarray, np.ndarray]:
    """Which rows have both keys, and of those, which have their (route, linked parent) pair in ``table``."""
    route, linked = pd.Series(route, dtype=object), pd.Series(linked, dtype=object)
    known = (route.notna() & linked.notna()).to_numpy()
    rows = pd.MultiIndex.from_arrays([route[known].astype(str), linked[known].astype(str)])
    return known, rows.isin(pair_index(bridge, table))


def agreement(bridge: Bridge, route: np.ndarray, linked: np.ndarray, table: pd.DataFrame) -> tuple[float, int]:
    """The share of rows (with both keys) whose (route, linked parent) pair is in ``table``."""
    known, agrees = agreeing_rows(bridge, route, linked, table)
    return (float(agrees.mean()), int(known.sum())) if known.any() else (0.0, 0)


def _child_and_parent_rows(metadata: Metadata, rel: Relationship, tables: dict[str, pd.DataFrame]):
    child = tables[rel.child_table_name].reset_index(drop=True)
    primary = metadata.primary_relationship(rel.child_table_name)
    parent_rows = None
    if primary is not None:
        parent = tables[primary.parent_table_name].drop_duplicates(primary.parent_primary_key)
        parent_rows = parent.set_index(primary.parent_primary_key).reindex(
            child[primary.child_foreign_key].to_numpy()).reset_index()
    return child, parent_rows


def _measured(metadata: Metadata, rel: Relationship, tables: dict[str, pd.DataFrame], seed: int) -> list[Bridge]:
    """Each candidate path with its agreement rate in ``tables`` and the rate of shuffled links."""
    child, parent_rows = _child_and_parent_rows(metadata, rel, tables)
    rng = np.random.default_rng(seed)
    linked = child[rel.child_foreign_key].to_numpy(dtype=object)
    out = []
    for candidate in bridge_candidates(metadata, rel):
        if candidate.table not in tables:
            continue
        route = route_values(candidate, child, parent_rows)
        rate, n = agreement(candidate, route, linked, tables[candidate.table])
        if n >= 20:
            chance, _ = agreement(candidate, route, rng.permutation(linked), tables[candidate.table])
            out.append(replace(candidate, rate=rate, chance=chance))
    return out


def _holds(bridge: Bridge) -> bool:
    return bridge.rate >= THRESHOLDS.min_rate and bridge.rate - bridge.chance >= THRESHOLDS.min_lift


def fit_bridge(metadata: Metadata, rel: Relationship, real: dict[str, pd.DataFrame], seed: int) -> Bridge | None:
    """The candidate path the real links follow most, if any beats shuffled links clearly;
    with the child's category that best tells the agreeing rows, if one does."""
    held = [b for b in _measured(metadata, rel, real, seed) if _holds(b)]
    best = max(held, key=lambda b: b.rate - b.chance, default=None)
    if best is None:
        return None
    child, parent_rows = _child_and_parent_rows(metadata, rel, real)
    route = route_values(best, child, parent_rows)
    known, agrees = agreeing_rows(best, route, child[rel.child_foreign_key].to_numpy(dtype=object), real[best.table])
    agrees = pd.Series(agrees.astype(float))
    uncertain = len(agrees) * min(best.rate, 1 - best.rate)
    categories = [c.name for c in metadata.table(rel.child_table_name).columns.values()
                  if c.sdtype in ("categorical", "boolean")]
    for column in categories:
        values = child.loc[known, column].astype(str).reset_index(drop=True)
        if not 2 <= values.nunique() <= 50 or values.value_counts().min() < THRESHOLDS.by_category_min_rows:
            continue
        rates = agrees.groupby(values).mean()
        left = float((agrees.groupby(values).size() * np.minimum(rates, 1 - rates)).sum())
        if left <= THRESHOLDS.by_category_gain * uncertain:
            best, uncertain = replace(best, by=column, rate_by=rates.to_dict()), left
    return best


def synthetic_agreement(metadata: Metadata, rel: Relationship, bridge: Bridge,
                        tables: dict[str, pd.DataFrame]) -> tuple[float, int]:
    """How often ``tables``' rows of ``rel``'s child agree with ``bridge``, over how many rows."""
    child, parent_rows = _child_and_parent_rows(metadata, rel, tables)
    route = route_values(bridge, child, parent_rows)
    return agreement(bridge, route, child[rel.child_foreign_key].to_numpy(dtype=object), tables[bridge.table])


def path_agreements(metadata: Metadata, real: dict[str, pd.DataFrame], synthetic: dict[str, pd.DataFrame],
                    seed: int = 0) -> list[dict]:
    """For the evaluation report: every path the real links agree with, and how often the
    synthetic links agree with it too."""
    out = []
    for table in metadata.topological_order():
        for rel in metadata.second_relationships(table):
            for bridge in _measured(metadata, rel, real, seed):
                if not _holds(bridge):
                    continue
                rate, _ = synthetic_agreement(metadata, rel, bridge, synthetic)
                out.append({"table": table, "foreign_key": rel.child_foreign_key, "path": bridge.label,
                            "real": round(bridge.rate, 4), "synthetic": round(rate, 4),
                            "chance": round(bridge.chance, 4)})
    return out
