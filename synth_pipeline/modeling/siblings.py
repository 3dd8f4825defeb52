"""Categories siblings share: the few academic years one student's enrollments fall in; and a
value every parent's children hold exactly once: a course's one lead instructor.

Rows generated one by one, even given their parent, spread a categorical column over more
values per parent than the real data does when siblings share values (a student's five
enrollments span two academic years, not five). Where the real number of distinct values
per parent is clearly below what independent rows would give, each synthetic parent draws
how many distinct values its children have (from real parents with the same number of
children), keeps that many of the values the model generated for them (drawn in
proportion to how many children have each) and moves the other children onto those values.
Parents whose children all share one value (a course's instructors teach in one academic
year, a customer's invoices go to one city) are few and large, so a draw per parent moves
the column's marginal far from the real one (77 instructor rows on 40 courses: one year
drawn 13 times against 24 real); they take their values largest first, each the most
favoured of its generated values that still has room under the real share, else the value
furthest below its share.

Where every real parent's children hold one value exactly once (each course has one
``lead`` among its instructors, each Berka account one ``OWNER`` disposition), each synthetic
parent gets exactly one too: a parent without it has one child, drawn at random, take it; a
parent with several keeps one, and the others take the column's other values at their real
shares. Under a second foreign key (a disposition's account, linked after its client) the
links are fixed instead: a surplus holder of one parent swaps parents with a non-holder of a
parent that has none, which keeps every parent's number of children; only what swaps cannot
settle changes value.
"""

from __future__ import annotations

from dataclasses import dataclass, field

import numpy as np
import pandas as pd

from synth_pipeline.modeling.transforms import put_column
from synth_pipeline.thresholds import THRESHOLDS


@dataclass
class SiblingSpread:
    column: str
    foreign_key: str
    distinct_by_size: dict[int, np.ndarray] = field(default_factory=dict)  # children -> real distinct counts
    shares: dict = field(default_factory=dict)  # value -> its real share of the rows

    @property
    def label(self) -> str:
        return f"{self.column} shared among siblings under {self.foreign_key}"

    @classmethod
    def fit(cls, frame: pd.DataFrame, foreign_key: str, column: str, seed: int) -> "SiblingSpread | None":
        both = frame[[foreign_key, column]].dropna()
        if both[foreign_key].nunique() < THRESHOLDS.min_parents or both[column].nunique() < 2:
            return None
        groups = both.groupby(foreign_key)[column]
        sizes, distinct = groups.size(), groups.nunique()
        shuffled = both.assign(**{column: np.random.default_rng(seed).permutation(both[column].to_numpy())})
        chance = shuffled.groupby(foreign_key)[column].nunique()
        many = sizes > 1
        if not many.any() or distinct[many].mean() > THRESHOLDS.max_share_of_chance * chance[many].mean():
            return None
        by_size = {int(m): distinct[sizes == m].to_numpy(dtype="int64") for m in np.unique(sizes)}
        shares = both[column].value_counts(normalize=True, sort=False)
        return cls(column, foreign_key, by_size, {k: float(v) for k, v in sorted(shares.items(), key=lambda kv: str(kv[0]))})

    def apply(self, frame: pd.DataFrame, rng: np.random.Generator, owners: np.ndarray | None = None) -> int:
        """Concentrate the column within each parent's children (``owners``: each row's parent
        key, else the frame's foreign-key column); returns the rows changed."""
        if owners is None and self.foreign_key in frame.columns:
            owners = frame[self.foreign_key].to_numpy()
        if owners is None or self.column not in frame.columns or frame.empty:
            return 0
        present = frame[self.column].notna().to_numpy() & pd.notna(owners)
        rows = np.nonzero(present)[0]
        if not len(rows):
            return 0
        group = pd.factorize(np.asarray(owners, dtype=object)[rows])[0]
        values, uniques = pd.factorize(frame[self.column].to_numpy()[rows])
        pairs = pd.DataFrame({"g": group, "v": values}).value_counts().rename("n").reset_index()
        # which values a parent keeps: drawn in proportion to how many of its children the
        # model gave each (weighted sampling without replacement, Efraimidis-Spirakis keys),
        # so the column's overall distribution stays the model's; keeping the most common
        # value of every parent would favour values that are common everywhere
        pairs["key"] = rng.random(len(pairs)) ** (1.0 / pairs["n"].to_numpy(dtype=float))
        # by parent, then by key, largest first (stable: pandas' mergesort sort of the two, without
        # coding the keys first)
        pairs = pairs.take(np.lexsort((-pairs["key"].to_numpy(), pairs["g"].to_numpy())))
        pairs["rank"] = pairs.groupby("g").cumcount()
        sizes = np.bincount(group)
        allowed = self._draw_distinct(sizes, rng)
        kept = pairs[pairs["rank"] < allowed[pairs["g"].to_numpy()]]
        if self.shares:
            kept = self._one_value_groups_to_shares(kept, pairs, allowed, sizes, uniques, rng)
        kept = kept.sort_values(["g", "rank"])
        keep_row = pd.MultiIndex.from_arrays([group, values]).isin(pd.MultiIndex.from_arrays([kept["g"], kept["v"]]))
        moved = np.nonzero(~keep_row)[0]
        if len(moved):
            weights = kept["n"].to_numpy(dtype=float)
            cumulative = np.cumsum(weights)
            g_of_kept = kept["g"].to_numpy()
            starts = np.searchsorted(g_of_kept, np.arange(len(sizes)), side="left")
            ends = np.searchsorted(g_of_kept, np.arange(len(sizes)), side="right")
            before = np.where(starts > 0, cumulative[np.maximum(starts - 1, 0)], 0.0)
            total = cumulative[np.maximum(ends - 1, 0)] - before
            g = group[moved]
            target = before[g] + rng.random(len(moved)) * total[g]
            pick = np.minimum(np.searchsorted(cumulative, target, side="right"), ends[g] - 1)
            column = frame[self.column].to_numpy(dtype=object).copy()
            column[rows[moved]] = uniques[kept["v"].to_numpy()[pick]]
            put_column(frame, self.column, column)
        return len(moved)

    def _one_value_groups_to_shares(self, kept: pd.DataFrame, pairs: pd.DataFrame, allowed: np.ndarray,
                                    sizes: np.ndarray, uniques: np.ndarray, rng: np.random.Generator) -> pd.DataFrame:
        """The value of each parent whose children share one, chosen so the column keeps its
        real shares (``pairs``: each parent's generated values, most favoured first)."""
        single = allowed == 1
        if single.sum() < 2:
            return kept
        share = np.array([self.shares.get(u, 0.0) for u in uniques], dtype=float)
        if share.sum() <= 0:
            return kept
        total = float(sizes.sum())
        remaining = share / share.sum() * total
        several = kept[~single[kept["g"].to_numpy()]]
        if len(several):  # rows of parents keeping several values land on them about in proportion
            weight = several["n"].to_numpy(dtype=float)
            g = several["g"].to_numpy()
            landed = sizes[g] * weight / np.bincount(g, weights=weight, minlength=len(sizes))[g]
            remaining -= np.bincount(several["v"].to_numpy(), weights=landed, minlength=len(uniques))
        ranked = pairs[single[pairs["g"].to_numpy()]]
        g_of, v_of = ranked["g"].to_numpy(), ranked["v"].to_numpy()
        starts = np.searchsorted(g_of, np.arange(len(sizes)), side="left")
        ends = np.searchsorted(g_of, np.arange(len(sizes)), side="right")
        members = np.nonzero(single)[0]
        order = members[rng.permutation(len(members))]
        order = order[np.argsort(-sizes[order], kind="stable")]  # largest first, ties at random
        # one parent at a time, each choice moving what is left: in plain Python numbers (a
        # million parents at TPC-H scale 1; numpy's per-call cost was most of the time)
        left, values, first, last, size = remaining.tolist(), v_of.tolist(), starts.tolist(), ends.tolist(), \
            sizes.tolist()
        picks = []
        for g in order.tolist():
            half = size[g] / 2
            for j in range(first[g], last[g]):  # its favoured values first: the first still wanted
                if left[values[j]] >= half:
                    pick = values[j]
                    break
            else:
                pick = max(range(len(left)), key=left.__getitem__)  # the first of the largest
            picks.append(pick)
            left[pick] -= size[g]
        chosen = np.array(picks, dtype="int64")
        generated = pd.Series(ranked["n"].to_numpy(), index=pd.MultiIndex.from_arrays([g_of, v_of]))
        n = generated.reindex(pd.MultiIndex.from_arrays([order, chosen])).fillna(0).to_numpy()
        ones = pd.DataFrame({"g": order, "v": chosen, "n": n, "rank": 0})
        return pd.concat([several[["g", "v", "n", "rank"]], ones], ignore_index=True)

    def _draw_distinct(self, sizes: np.ndarray, rng: np.random.Generator) -> np.ndarray:
        """Distinct values per synthetic parent: drawn from real parents with as many children
        (the nearest size the real data has), never more than the children themselves."""
        known = np.array(sorted(self.distinct_by_size))
        out = np.ones(len(sizes), dtype="int64")
        for m in np.unique(sizes):
            nearest = int(known[np.argmin(np.abs(known - m))])
            members = np.nonzero(sizes == m)[0]
            out[members] = rng.choice(self.distinct_by_size[nearest], size=len(members))
        return np.clip(out, 1, np.maximum(sizes, 1))


@dataclass
class OnePerParent:
    column: str
    foreign_key: str
    value: object
    others: tuple = ((), ())  # the column's other values and their real shares

    @property
    def label(self) -> str:
        return f"one {self.column} = {self.value!r} per {self.foreign_key}"

    @classmethod
    def fit_all(cls, frame: pd.DataFrame, foreign_key: str, column: str) -> "list[OnePerParent]":
        """At most one value per column (two such values would undo each other's fixes): the
        first, in the column's order of values, whose count per parent is one everywhere."""
        both = frame[[foreign_key, column]].dropna()
        sizes = both.groupby(foreign_key).size()
        if len(sizes) < THRESHOLDS.min_parents or (sizes > 1).sum() < THRESHOLDS.min_several or both[column].nunique() < 2:
            return []
        totals = both[column].value_counts()
        for value in sorted(totals.index[totals == len(sizes)], key=str):  # held once per parent, if at all
            held = (both[column] == value).groupby(both[foreign_key]).sum()
            if (held == 1).all() and held.index.equals(sizes.index):
                rest = both.loc[both[column] != value, column].value_counts(normalize=True)
                return [cls(column, foreign_key, value, (rest.index.to_numpy(dtype=object), rest.to_numpy()))]
        return []

    def relink(self, frame: pd.DataFrame, rng: np.random.Generator, strata: np.ndarray | None = None) -> int:
        """Under a second foreign key: swap parents between surplus holders and non-holders of
        parents without one, then ``apply`` what is left; returns the rows changed. ``strata``:
        swap only between rows of the same value (the route of a path the links follow, so a
        swap keeps both rows on it)."""
        if self.foreign_key not in frame.columns or self.column not in frame.columns or frame.empty:
            return 0
        owners = frame[self.foreign_key].to_numpy(dtype=object).copy()
        known = np.nonzero(pd.notna(owners))[0]
        if not len(known):
            return 0
        group = pd.factorize(owners[known])[0]
        holds = frame[self.column].to_numpy(dtype=object)[known] == self.value
        order = rng.permutation(len(known))
        held = pd.Series(holds[order]).groupby(group[order]).cumsum().to_numpy()
        surplus = order[holds[order] & (held > 1)]  # every holder after a parent's first
        has_holder = np.bincount(group, weights=holds, minlength=group.max() + 1) > 0
        # one non-holder row of each parent without a holder, parents in random order
        lacking = order[~holds[order] & ~has_holder[group[order]]]
        lacking = lacking[~pd.Series(group[lacking]).duplicated().to_numpy()]
        if strata is None:
            swaps = min(len(surplus), len(lacking))
            a, b = known[surplus[:swaps]], known[lacking[:swaps]]
        else:
            labels = pd.Series(np.asarray(strata, dtype=object)[known]).astype(str).to_numpy()
            pairs = [(x[:k], y[:k]) for value in np.unique(labels[surplus])
                     for x, y in [(surplus[labels[surplus] == value], lacking[labels[lacking] == value])]
                     for k in [min(len(x), len(y))]]
            a = known[np.concatenate([x for x, _ in pairs])] if pairs else np.array([], dtype=int)
            b = known[np.concatenate([y for _, y in pairs])] if pairs else np.array([], dtype=int)
            swaps = len(a)
        owners[a], owners[b] = owners[b].copy(), owners[a].copy()
        frame[self.foreign_key] = owners
        return 2 * swaps + self.apply(frame, rng, owners)

    def apply(self, frame: pd.DataFrame, rng: np.random.Generator, owners: np.ndarray | None = None) -> int:
        """Give each parent's children the value exactly once; returns the rows changed."""
        if owners is None and self.foreign_key in frame.columns:
            owners = frame[self.foreign_key].to_numpy()
        if owners is None or self.column not in frame.columns or frame.empty or not len(self.others[0]):
            return 0
        present = np.nonzero(pd.notna(owners))[0]
        if not len(present):
            return 0
        group = pd.factorize(np.asarray(owners, dtype=object)[present])[0]
        column = frame[self.column].to_numpy(dtype=object).copy()
        holds = column[present] == self.value
        # one child per parent is the holder: a holder drawn at random where there are any,
        # else any child drawn at random
        order = pd.DataFrame({"g": group, "holds": holds, "key": rng.random(len(present))})
        order = order.sort_values(["g", "holds", "key"], ascending=[True, False, True], kind="mergesort")
        chosen = np.zeros(len(present), dtype=bool)
        chosen[order.index[~order["g"].duplicated()].to_numpy()] = True
        gain = chosen & ~holds
        lose = holds & ~chosen
        column[present[gain]] = self.value
        values, shares = self.others
        column[present[lose]] = np.asarray(values, dtype=object)[rng.choice(len(values), int(lose.sum()), p=shares)]
        put_column(frame, self.column, column)
        return int(gain.sum() + lose.sum())
