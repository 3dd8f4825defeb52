"""Linking along a path the real links follow (``schema.paths.Bridge``).

A bridge's share of rows is linked to a parent paired with their route (``link_by_bridge``),
under the parents' capacities, re-ranked so the parents with the most agreeing demand get the
largest capacities, as many as the capacities allow (a maximum flow routes -> parents); where
a parent's routes need far more than the largest count (a teacher of three popular courses),
a few counts (at most 5% of the parents) move from parents with room to spare. A binding
path (nearly every real row agrees) links every row whose route has a paired parent.
"""

from __future__ import annotations

import numpy as np
import pandas as pd

from synth_pipeline.modeling.linking import allocate
from synth_pipeline.schema.constraints import path_keys, path_values
from synth_pipeline.schema.metadata import Metadata
from synth_pipeline.schema.paths import Bridge
from synth_pipeline.stats import as_labels
from synth_pipeline.thresholds import THRESHOLDS


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
            headroom = np.maximum(room[parents] + THRESHOLDS.overflow_per_parent, 0).astype(int)
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
    ``THRESHOLDS.max_shifted_parents`` of the parents' counts (at least two parents, one giving, one taking:
    more than 5% of a table under 40 parents): the count distribution moves by about that share
    (KS complement >= 0.95 from 40 parents on), the path agreement gains what those parents block."""
    out = np.asarray(capacity, dtype=float).copy()
    budget = max(2, int(THRESHOLDS.max_shifted_parents * len(out))) if THRESHOLDS.max_shifted_parents > 0 else 0
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


def copy_along_paths(frame: pd.DataFrame, constraints, parents: dict[str, pd.DataFrame], metadata: Metadata) -> int:
    """Sets each path-implied foreign key from its path where the path reaches a row (the
    rest keep their own links); returns the number of values changed. Chains (f1 from f2,
    f2 from f3) settle in as many passes as there are paths."""
    paths = [c for c in constraints if c.kind == "path" and c.parent in parents and c.foreign_key in frame.columns]
    changed = 0
    for _ in range(len(paths)):
        moved = 0
        for c in paths:
            f2, g = path_keys(c, metadata)
            reached = path_values(frame, parents[c.parent], f2, g)
            target = c.columns[0]
            differs = reached.notna() & (frame[target].isna() | (as_labels(frame[target]) != as_labels(reached)))
            if differs.any():
                frame.loc[differs, target] = reached[differs].to_numpy()
                moved += int(differs.sum())
        changed += moved
        if not moved:
            break
    return changed
