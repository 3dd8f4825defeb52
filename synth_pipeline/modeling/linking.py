"""Point generated child rows at generated parent rows.

Primary parents own their children (a parent with 5 generated fees gets 5 fee rows).
Other foreign keys are linked under capacities: each candidate parent's capacity is the
child count generated for it, so the second parent's own children-per-parent
distribution survives too.
"""

from __future__ import annotations

import numpy as np
import pandas as pd


def allocate(total: int, capacity: np.ndarray, rng: np.random.Generator) -> np.ndarray:
    """Integer shares of ``total`` proportional to ``capacity`` (largest remainder, random ties)."""
    capacity = np.asarray(capacity, dtype=float)
    if len(capacity) == 0:
        raise ValueError("no parent rows to link to")
    if capacity.sum() <= 0:
        capacity = np.ones_like(capacity)
    target = capacity / capacity.sum() * total
    base = np.floor(target).astype("int64")
    short = total - int(base.sum())
    if short > 0:
        remainder = target - base
        extra = rng.choice(len(capacity), size=short, replace=False, p=remainder / remainder.sum()) \
            if np.count_nonzero(remainder) >= short else rng.choice(len(capacity), size=short, p=capacity / capacity.sum())
        np.add.at(base, extra, 1)
    return base


def link_by_capacity(n_rows: int, parent_keys: np.ndarray, capacity: np.ndarray,
                     rng: np.random.Generator) -> np.ndarray:
    """``n_rows`` parent keys, parent i used about ``capacity[i]`` times (rescaled to fit)."""
    shares = allocate(n_rows, capacity, rng)
    keys = np.repeat(np.asarray(parent_keys, dtype=object), shares)
    rng.shuffle(keys)
    return keys


def link_by_signature(row_signatures: np.ndarray, parent_signatures: np.ndarray, parent_keys: np.ndarray,
                      capacity: np.ndarray, rng: np.random.Generator) -> np.ndarray:
    """Like ``link_by_capacity``, but a row goes to a parent with its generated signature
    (e.g. a course's level and name) wherever capacities allow; a row whose signature has no
    parent with room left goes to a parent sharing the signature's first part (an Honors
    course, if not that Honors course), and only then to any parent with room.

    Every parent receives exactly its (rescaled) capacity, so the degree distribution is kept.
    """
    n = len(row_signatures)
    room = allocate(n, capacity, rng)
    chosen = np.full(n, -1)
    rows_full = pd.Series(np.asarray(row_signatures, dtype=object)).astype(str)
    parents_full = pd.Series(np.asarray(parent_signatures, dtype=object)).astype(str)
    levels = [(rows_full, parents_full),
              (rows_full.str.split("|", n=1).str[0], parents_full.str.split("|", n=1).str[0])]
    for row_level, parent_level in levels:
        pending = np.nonzero(chosen < 0)[0]
        if not len(pending):
            break
        row_groups = row_level.to_numpy()[pending]
        parent_groups = parent_level.to_numpy()
        for g, members in pd.Series(np.arange(len(pending))).groupby(row_groups, sort=True).indices.items():
            owners = np.nonzero((parent_groups == g) & (room > 0))[0]
            places = np.repeat(owners, room[owners])
            if not len(places):
                continue
            rows = rng.permutation(pending[members])
            taken = places[rng.choice(len(places), size=min(len(rows), len(places)), replace=False)]
            chosen[rows[:len(taken)]] = taken
            np.subtract.at(room, taken, 1)
    rest = np.nonzero(chosen < 0)[0]
    chosen[rest] = rng.permutation(np.repeat(np.arange(len(room)), room))[:len(rest)]
    return np.asarray(parent_keys, dtype=object)[chosen]


def link_groups(groups: np.ndarray, parent_keys: np.ndarray, capacity: np.ndarray, rng: np.random.Generator,
                row_signatures: np.ndarray | None = None, parent_signatures: np.ndarray | None = None,
                dated: list[tuple[np.ndarray, np.ndarray]] = ()) -> np.ndarray:
    """One parent per group value: every row of a route gets the route's one in-charge teacher.
    ``dated``: (each row's date, each parent's date) in days, for a rule that a row is never
    dated before its parent (an assignment is not led by a teacher hired after it starts):
    a group only goes to a parent dated on or before all its rows, where one has room, so
    the repair that swaps parents between rows never has to split a route.

    Groups are placed largest first, each on the parent with the most room left among the
    parents with the group's most common generated signature that have room for half the
    group, else among those holding no group yet (a route keeps an in-charge of its
    department without piling two routes on one teacher), else among all parents with room;
    so the parents the model gave many children take the big groups and childless ones stay so.
    """
    values, inverse, sizes = np.unique(np.asarray(groups).astype(str), return_inverse=True, return_counts=True)
    room = np.asarray(capacity, dtype=float).copy() + rng.random(len(capacity)) * 1e-3  # random ties
    everyone = np.arange(len(parent_keys))
    chosen = np.empty(len(values), dtype=int)
    wanted = None
    if row_signatures is not None and parent_signatures is not None:  # each group's most common signature
        counts = pd.crosstab(inverse, np.asarray(row_signatures).astype(str))
        wanted = counts.idxmax(axis=1).reindex(range(len(values)))
        parent_signatures = np.asarray(parent_signatures).astype(str)
    used = np.zeros(len(parent_keys), dtype=bool)
    fits = np.ones((len(values), len(parent_keys)), dtype=bool)  # group x parent: dated no later than the group
    for row_days, parent_days in dated:
        earliest = pd.Series(np.asarray(row_days, dtype=float)).groupby(inverse).min().reindex(range(len(values)))
        fits &= ~(np.asarray(parent_days, dtype=float)[None, :] > earliest.to_numpy()[:, None])  # unknown dates fit
    for g in np.argsort(-sizes, kind="stable"):
        room_g = np.where(fits[g], room, -np.inf) if fits[g].any() else room
        open_ = room_g >= sizes[g] / 2
        candidates = everyone[open_] if open_.any() else everyone[np.isfinite(room_g)]
        if wanted is not None and pd.notna(wanted.iloc[g]):
            match = parent_signatures == wanted.iloc[g]
            for pick in (match & open_, match & ~used & np.isfinite(room_g)):  # with room, else holding no group
                if pick.any():
                    candidates = everyone[pick]
                    break
        best = candidates[np.argmax(room_g[candidates])]
        chosen[g] = best
        used[best] = True
        room[best] -= sizes[g]
    return np.asarray(parent_keys, dtype=object)[chosen[inverse]]


def link_self(keys: np.ndarray, has_parent: np.ndarray, capacity: np.ndarray,
              rng: np.random.Generator) -> np.ndarray:
    """Parents within the same table, always earlier in the order: a forest, no cycles.

    Rows without a parent come first, then the others by falling capacity (managers before
    the people they manage); each row takes an earlier row that still has room, so every
    row's number of reports follows its generated count wherever the hierarchy allows.
    """
    n = len(keys)
    capacity = np.asarray(capacity, dtype=float)
    has_parent = np.asarray(has_parent, dtype=bool).copy()
    roots = np.nonzero(~has_parent)[0]
    if len(roots) and has_parent.any() and not (np.round(capacity[roots]) > 0).any():
        # A tree starts at a root with room for children: the parentless place goes to the
        # row with the most, or the first linked row would overfill a root meant to have none.
        top = np.nonzero(has_parent)[0][np.argmax(capacity[has_parent])]
        has_parent[roots[0]], has_parent[top] = True, False
    with_parent = np.nonzero(has_parent)[0]
    with_parent = with_parent[np.lexsort((rng.random(len(with_parent)), -capacity[with_parent]))]
    order = np.concatenate([np.nonzero(~has_parent)[0], with_parent])
    room = np.maximum(np.round(capacity[order]), 0)
    out = np.full(n, None, dtype=object)
    for pos in range(1, n):
        row = order[pos]
        if not has_parent[row]:
            continue
        free = np.nonzero(room[:pos] > 0)[0]
        choice = rng.choice(free) if len(free) else rng.integers(pos)
        room[choice] -= 1
        out[row] = keys[order[choice]]
    return out


def null_mask(n: int, null_rate: float, rng: np.random.Generator) -> np.ndarray:
    """Exactly round(null_rate * n) positions, so linked row totals match the real share."""
    mask = np.zeros(n, dtype=bool)
    mask[rng.choice(n, size=int(round(null_rate * n)), replace=False)] = True
    return mask


def make_pairs_unique(owners: np.ndarray, linked: np.ndarray, rng: np.random.Generator, tries: int = 50) -> np.ndarray:
    """Swap linked values between rows until no (owner, linked) pair repeats, where possible.

    A link table keyed by both foreign keys (a playlist holds a track once) must not repeat a
    pair; swapping keeps every parent's number of children on both sides.
    """
    duplicated = np.nonzero(_repeated_pairs(owners, linked))[0]
    if len(duplicated) == 0:
        return np.asarray(linked)
    linked = np.asarray(linked, dtype=object).copy()
    taken = {}
    for owner, value in zip(owners, linked):
        taken.setdefault(owner, set()).add(value)
    for i in duplicated:
        for j in rng.integers(0, len(linked), size=tries):
            a, b = owners[i], owners[j]
            if a == b or linked[j] in taken[a] or linked[i] in taken[b]:
                continue
            taken[b].discard(linked[j])
            taken[b].add(linked[i])
            taken[a].add(linked[j])  # linked[i] stays in taken[a]: its first occurrence keeps it
            linked[i], linked[j] = linked[j], linked[i]
            break
    if _repeated_pairs(owners, linked).any():
        linked = _realize_pairs(owners, linked, rng)
    return linked


def _repeated_pairs(owners: np.ndarray, linked: np.ndarray) -> np.ndarray:
    """Rows whose (owner, linked) pair came before, found on each column's codes (no tuple
    per row: a 6 M-row table's pairs as Python tuples took over a gigabyte)."""
    return pd.DataFrame({"owner": owners, "linked": linked}, copy=False).duplicated().to_numpy()


EXACT_PAIRS_MAX_WORK = 50_000_000  # owners x linked values the exact realization may scan


def _realize_pairs(owners: np.ndarray, linked: np.ndarray, rng: np.random.Generator) -> np.ndarray:
    """Where swaps cannot (a playlist holding 94% of all tracks), rebuild the links so no
    pair repeats while every owner keeps its number of rows and every linked value its
    number of uses, when such an assignment exists: owners in decreasing size each take the
    distinct values with the most uses left (the Gale-Ryser greedy). A row keeps its value
    when that value is among its owner's picks."""
    values, uses = np.unique(linked.astype(str), return_counts=True)
    first = {v: x for x, v in zip(linked, linked.astype(str))}
    owner_ids, rows_of = pd.factorize(pd.Series(owners))[0], None
    sizes = np.bincount(owner_ids)
    if len(sizes) * len(values) > EXACT_PAIRS_MAX_WORK or sizes.max() > len(values):
        return linked
    left = uses.astype(float) + rng.random(len(values)) * 1e-3  # random tie-break
    rows_of = pd.Series(np.arange(len(owners))).groupby(owner_ids).apply(list)
    out = linked.copy()
    for o in np.argsort(-sizes, kind="stable"):
        k = sizes[o]
        picks = np.argpartition(-left, k - 1)[:k]
        if (left[picks] < 1 - 1e-6).any():
            return linked  # not realizable: leave it to repair
        left[picks] -= 1
        chosen = [first[values[i]] for i in picks]
        chosen_set = set(chosen)
        kept_values, free_rows = set(), []
        for r in rows_of[o]:
            if linked[r] in chosen_set and linked[r] not in kept_values:
                kept_values.add(linked[r])
            else:
                free_rows.append(r)
        rest = [v for v in chosen if v not in kept_values]
        for r, v in zip(free_rows, rest):
            out[r] = v
    return out
