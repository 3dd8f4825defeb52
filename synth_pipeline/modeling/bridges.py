"""Path agreement: a second foreign key that follows another path through the schema.

In the school data a mark's assessor is, 95% of the time, one of the teachers who teach the
mark's course: ``marks.assessed_by_teacher_id`` agrees with the path
marks -> student_courses.course_id -> course_instructors.teacher_id. A *bridge* is such a
path: a table ``B`` holding (route, parent) pairs, where the route is a key the child row
already knows (its own earlier foreign key, or one of its primary parent's). Bridges are
found structurally (``bridge_candidates``; tables owned by the same primary ancestors, such
as a student's fees for a student's canteen purchases, are not paths), kept where the real agreement rate is well above
what random links would give (``fit_bridge``), and reproduced at sampling time by linking
that share of rows to a parent paired with their route (``link_by_bridge``), under the
parents' capacities, re-ranked so the teachers with the most agreeing demand get the
largest capacities, as many as the capacities allow (a maximum flow routes -> parents);
where a parent's routes need far more than the largest count (a teacher of three popular
courses), a few counts (at most 5% of the parents) move from parents with room to spare.

Where a category of the child row tells which rows agree (a course instructor is the
course's lead teacher exactly when the row's role is ``lead``), the share is taken per
value of that category (``Bridge.by``) instead of one share for all rows.
"""

from __future__ import annotations

from dataclasses import dataclass, field, replace

import numpy as np
import pandas as pd

from synth_pipeline.modeling.linking import allocate
from synth_pipeline.schema.metadata import Metadata, Relationship

MIN_RATE = 0.2
PATH_RATE = 0.99  # agreement in nearly every real row (a handful off is noise) is a rule
MIN_LIFT = 0.15  # the real rate must beat the rate of shuffled links by this much
OVERFLOW_PER_PARENT = 1  # rows a parent may take beyond its count for a partial path
MAX_SHIFTED_PARENTS = 0.05  # share of parents whose child count may move toward their routes' demand
BY_CATEGORY_GAIN = 0.5  # a category must halve the rows whose agreement is uncertain to set the share
BY_CATEGORY_MIN_ROWS = 10  # rows of every value of that category (a rate of 0 or 1 on two rows means nothing)


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
        if getattr(self, "by", ""):
            given = ", by " + self.by + ": " + ", ".join(f"{v} {r:.0%}" for v, r in sorted(self.rate_by.items()))
        return (f"{self.fk} is one of {self.table}.{self.pair_parent} paired with the row's {where}{self.route_fk} "
                f"({self.rate:.1%} of real rows, {self.chance:.1%} by chance{given})")

    @property
    def binding(self) -> bool:
        """Nearly every real row agrees (``PATH_RATE``): every synthetic row whose route has a
        paired parent is linked to one, beyond the capacities if it must."""
        return self.rate >= PATH_RATE and not getattr(self, "by", "")

    @property
    def share(self) -> float:
        """The share of rows to link along the bridge: random links add the chance rate."""
        return self._share(self.rate)

    def _share(self, rate):
        return np.clip((rate - self.chance) / max(1 - self.chance, 1e-9), 0, 1)

    def shares(self, n: int, category: np.ndarray | None = None) -> np.ndarray:
        """Each row's share: its category value's where the share is by category."""
        if not getattr(self, "by", "") or category is None:
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
    return bridge.rate >= MIN_RATE and bridge.rate - bridge.chance >= MIN_LIFT


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
        if not 2 <= values.nunique() <= 50 or values.value_counts().min() < BY_CATEGORY_MIN_ROWS:
            continue
        rates = agrees.groupby(values).mean()
        left = float((agrees.groupby(values).size() * np.minimum(rates, 1 - rates)).sum())
        if left <= BY_CATEGORY_GAIN * uncertain:
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


def link_by_bridge(route: np.ndarray, pairs: pd.DataFrame, bridge: Bridge, parent_keys: np.ndarray,
                   capacity: np.ndarray, rng: np.random.Generator, category: np.ndarray | None = None) -> np.ndarray:
    """A parent key per row: ``bridge.share`` of the rows (or each row's category's share,
    ``category`` holding the rows' values of ``bridge.by``) go to a parent paired with their
    route; every parent receives its capacity's share of rows, as in ``link_by_capacity``."""
    n = len(route)
    parent_keys = np.asarray(parent_keys, dtype=object)
    position = {str(k): i for i, k in enumerate(parent_keys)}
    allowed: dict[str, list[int]] = {}
    for r, p in pairs[[bridge.pair_route, bridge.pair_parent]].dropna().itertuples(index=False):
        if str(p) in position:
            allowed.setdefault(str(r), []).append(position[str(p)])
    candidates = {r: np.unique(np.asarray(v, dtype=int)) for r, v in allowed.items()}
    route = pd.Series(route, dtype=object)
    route = route.where(route.notna(), "").astype(str).to_numpy(dtype=object)
    agree = rng.random(n) < bridge.shares(n, category)
    # Re-rank the capacities (the same multiset of counts) by each parent's agreeing demand,
    # so parents paired with many routes get the large counts, as they do in the real data.
    demand = np.zeros(len(parent_keys))
    for r, count in zip(*np.unique(route[agree], return_counts=True)):
        if r in candidates:
            demand[candidates[r]] += count / len(candidates[r])
    ranked = np.empty(len(parent_keys))
    ranked[np.lexsort((rng.random(len(parent_keys)), demand))] = np.sort(np.asarray(capacity, dtype=float))
    room = allocate(n, _shift_toward_demand(ranked, demand), rng)
    chosen = np.full(n, -1)
    # The agreeing rows go to paired parents with room: the most rows that capacities allow
    # (a maximum flow from routes to parents), placed on the parents as the flow says.
    agreeing = np.nonzero(agree)[0]
    groups = pd.Series(agreeing).groupby(route[agreeing], sort=True).indices
    names = [name for name in groups if name in candidates]
    for name, taken in zip(names, _route_flows(names, [len(groups[g]) for g in names], candidates, room)):
        rows = rng.permutation(agreeing[groups[name]])
        places = rng.permutation(np.repeat(candidates[name], taken))
        chosen[rows[:len(places)]] = places
        np.subtract.at(room, places, 1)
    # Agreeing rows the capacities left out: to a paired parent anyway, one row beyond its
    # generated count at most (small counts move a step, large ones barely), any number
    # for a binding path.
    for name in names:
        left = agreeing[groups[name]]
        left = rng.permutation(left[chosen[left] < 0])
        if not len(left):
            continue
        parents = candidates[name]
        if bridge.binding:
            weights = np.maximum(room[parents], 0) + 1.0  # parents with room first
            places = rng.choice(parents, len(left), p=weights / weights.sum())
        else:
            headroom = np.maximum(room[parents] + OVERFLOW_PER_PARENT, 0).astype(int)
            places = rng.permutation(np.repeat(parents, headroom))[:len(left)]
        chosen[left[:len(places)]] = places
        np.subtract.at(room, places, 1)
    room = np.maximum(room, 0)
    rest = np.nonzero(chosen < 0)[0]
    pool = rng.permutation(np.repeat(np.arange(len(parent_keys)), room.astype(int)))
    if len(pool) < len(rest):  # capacities overdrawn by binding rows: the rest by capacity share
        extra = rng.choice(len(parent_keys), len(rest) - len(pool), p=_shares(capacity))
        pool = np.concatenate([pool, extra])
    chosen[rest] = pool[:len(rest)]
    return parent_keys[chosen]


def _shares(capacity: np.ndarray) -> np.ndarray:
    weights = np.maximum(np.asarray(capacity, dtype=float), 0) + 1e-9
    return weights / weights.sum()


def _shift_toward_demand(capacity: np.ndarray, demand: np.ndarray) -> np.ndarray:
    """Move children from the parents with the most room to spare to the parents whose paired
    routes need more than their count (a teacher of three popular courses), changing at most
    ``MAX_SHIFTED_PARENTS`` of the parents' counts (at least two parents, one giving, one taking:
    more than 5% of a table under 40 parents): the count distribution moves by about that share
    (KS complement >= 0.95 from 40 parents on), the path agreement gains what those parents block."""
    out = np.asarray(capacity, dtype=float).copy()
    budget = max(2, int(MAX_SHIFTED_PARENTS * len(out))) if MAX_SHIFTED_PARENTS > 0 else 0
    changed: set[int] = set()
    while True:
        deficit = demand - out
        short, spare = int(np.argmax(deficit)), int(np.argmin(deficit))
        if deficit[short] <= 0.5 or deficit[spare] >= -0.5 or len(changed | {short, spare}) > budget:
            return out
        amount = min(deficit[short], -deficit[spare])
        out[short] += amount
        out[spare] -= amount
        changed |= {short, spare}


def _route_flows(names: list[str], sizes: list[int], candidates: dict[str, np.ndarray], room: np.ndarray) -> list[np.ndarray]:
    """Per route, how many of its rows each of its candidate parents takes: a maximum flow
    source -> route (its rows) -> paired parent -> sink (the parent's room)."""
    from scipy.sparse import csr_matrix
    from scipy.sparse.csgraph import maximum_flow

    n_routes, n_parents = len(names), len(room)
    if not n_routes:
        return []
    sink = n_routes + n_parents + 1
    heads, tails, caps = [], [], []
    for i, (name, size) in enumerate(zip(names, sizes)):
        heads.append(0), tails.append(1 + i), caps.append(size)
        for p in candidates[name]:
            heads.append(1 + i), tails.append(1 + n_routes + p), caps.append(size)
    for p in range(n_parents):
        heads.append(1 + n_routes + p), tails.append(sink), caps.append(int(room[p]))
    graph = csr_matrix((np.asarray(caps, dtype=np.int32), (heads, tails)), shape=(sink + 1, sink + 1))
    flow = maximum_flow(graph, 0, sink, method="dinic").flow.tocsr()
    return [np.maximum(flow[1 + i, 1 + n_routes + candidates[name]].toarray().ravel(), 0).astype(int)
            for i, name in enumerate(names)]
