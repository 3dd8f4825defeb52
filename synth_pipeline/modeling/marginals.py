"""Keep the learned joint structure, correct the categorical marginals.

The generator proposes ``k`` candidate rows per output row (for a child table, all ``k``
share the row's parent context). Raking (iterative proportional fitting) weighs every
candidate so that the weighted share of each category matches the real share, column by
column; each output row then keeps one of its candidates, drawn by weight. An
under-trained GAN's drift on category frequencies is undone without touching which values
go together within a row. In tables with enough rows, pairs of columns are raked too (``PairJoints``): two columns'
real shares, and a child column's real shares given each column of its parent row.
"""

from __future__ import annotations

from dataclasses import dataclass, field

import numba
import numpy as np
import pandas as pd

from synth_pipeline.stats import day_numbers, labels
from synth_pipeline.thresholds import THRESHOLDS

RAKING_ROUNDS = 8
RAKING_ROUNDS_STARTED = RAKING_ROUNDS // 2  # from another chunk's factors (``rake``)
RAKING_CONVERGED = 1e-4  # rounds stop once no cell's kept share is further than this from its target


def category_targets(encoded: pd.DataFrame, discrete_columns: list[str]) -> dict[str, pd.Series]:
    return {c: encoded[c].astype(str).value_counts(normalize=True) for c in discrete_columns}


def target_codes(picks: np.ndarray, labels: np.ndarray, target: pd.Series) -> tuple[np.ndarray, np.ndarray, int]:
    """A category column's raking target: (cell of each candidate, each cell's real share,
    cells), its candidates given as indices into ``labels``."""
    return picks, pd.Series(labels).map(target).fillna(0.0).to_numpy(), len(labels)


def rake_weights(n: int, k: int, codes: list[tuple[np.ndarray, np.ndarray, int]]) -> np.ndarray:
    """Candidate weights whose per-slot draw (see ``choose_per_slot``) meets the real shares
    (``rake``, from even weights)."""
    return rake(n, k, codes)[0]


def rake(n: int, k: int, codes: list[tuple[np.ndarray, np.ndarray, int]],
         start: list[np.ndarray] | None = None) -> tuple[np.ndarray, list[np.ndarray]]:
    """Candidate weights whose per-slot draw (see ``choose_per_slot``) meets the real shares,
    and each target's factors: (weights, one factor per cell of each target).

    Shares are measured as they will come out: each slot keeps one of its ``k``
    candidates with probability proportional to its weight. ``codes``: the targets, each
    as (cell of each candidate, each cell's real share, number of cells).

    Per target: each cell's weighted share, one factor per cell, each candidate's weight
    times its cell's factor, normalised within its slot. The candidates' pass (``_reweigh``,
    compiled) also sums the next target's cells, so a target reads the candidates twice.

    A candidate's weight is, within its slot, the product of its cells' factors, those of
    every round multiplied together: the factors returned. ``start``: factors found on other
    candidates of the same generator (a table's first chunk). Its candidates' weights start
    from them, not evenly, and rake ``RAKING_ROUNDS_STARTED`` rounds: the generator's own
    drift is already undone, what is left is this chunk's. Raking from either start tends
    to the same weights (the only ones of this product form that meet every target); from
    the first chunk's factors, the line items of TPC-H came as close to their targets in
    half the rounds (over 7 chunks: largest miss of a cell 0.9e-3 against 1.8e-3, mean
    total variation 1.21e-3 against 1.18e-3).
    """
    factors = [np.ones(cells) for _, _, cells in codes] if start is None else [f.copy() for f in start]
    if not codes:
        return np.full(n * k, 1.0 / k), factors
    if start is None:
        weights, rounds = np.full(n * k, 1.0 / k), RAKING_ROUNDS
    else:
        weights, rounds = np.ones(n * k), RAKING_ROUNDS_STARTED
        for (cell, _, _), factor in zip(codes, factors):
            _scale(cell, factor, weights)
        slots = weights.reshape(k, n)
        totals = slots.sum(axis=0)
        weights = np.where(totals > 0, slots / np.where(totals > 0, totals, 1.0), 1.0 / k).reshape(-1)
    updated, totals = np.empty(n * k), np.empty(n)
    first = codes[0]
    counts = np.bincount(first[0], weights=weights, minlength=first[2])
    for _ in range(rounds):
        off = 0.0  # the largest miss of a cell's share this round: none left, nothing more to do
        for t, (cell, share, n_cells) in enumerate(codes):
            current = counts / n
            off = max(off, float(np.abs(current - share).max()))
            # one factor per cell (a cell nothing weighs in takes none of the weight)
            factor = np.where(current > 0, share / np.maximum(current, 1e-12), 0.0)
            # kept: a cell without weight here may have candidates elsewhere
            factors[t] *= np.where(current > 0, factor, 1.0)
            largest = factors[t].max()
            if largest > 0:
                factors[t] /= largest  # a slot's weights are relative: bounded, whatever the rounds
            following = codes[(t + 1) % len(codes)]
            counts = np.zeros(following[2])
            _reweigh(cell, factor, weights, updated, totals, k, n, following[0], counts)
        if off < RAKING_CONVERGED:
            break
    return weights, factors


@numba.njit(nogil=True, cache=True)
def _scale(cell, factor, weights):  # pragma: no cover (compiled)
    """Each candidate's weight times its cell's factor, in place (cells clipped as ``_reweigh`` does)."""
    last = len(factor) - 1
    for i in range(len(weights)):
        weights[i] *= factor[min(max(cell[i], 0), last)]


@numba.njit(nogil=True, cache=True)
def _reweigh(cell, factor, weights, updated, totals, k, n, following, counts):  # pragma: no cover (compiled)
    """One raking target's update, in place: each candidate's weight times its cell's
    ``factor``, normalised within its slot (candidate ``j`` of slot ``i`` at ``j * n + i``);
    a slot none of whose candidates the target allows keeps its weights. The new weights
    are summed per cell of the ``following`` target into ``counts``. Sums run candidate by
    candidate (a slot's total) and in candidate order (a cell's), as ``sum(axis=0)`` and
    ``np.bincount`` add large arrays: the same weights as numpy's, to the bit on a line-item
    chunk, within a rounding elsewhere."""
    last = len(factor) - 1
    for j in range(k):
        for i in range(n):
            c = min(max(cell[j * n + i], 0), last)
            value = factor[c] * weights[j * n + i]
            updated[j * n + i] = value
            if j == 0:
                totals[i] = value
            else:
                totals[i] += value
    for i in range(n):
        if totals[i] <= 0:  # nothing allowed: the weights from before this target
            total = 0.0
            for j in range(k):
                updated[j * n + i] = weights[j * n + i]
                total = updated[j * n + i] if j == 0 else total + updated[j * n + i]
            totals[i] = total
        totals[i] = max(totals[i], 1e-300)
    cells = len(counts)
    for j in range(k):
        for i in range(n):
            value = updated[j * n + i] / totals[i]
            weights[j * n + i] = value
            c = following[j * n + i]
            if c < 0 or c >= cells:
                raise IndexError("a raking target's cell is out of its range")
            counts[c] += value


def choose_per_slot(weights: np.ndarray, n: int, k: int, rng: np.random.Generator) -> np.ndarray:
    """Row indices, one per slot; candidate ``j`` of slot ``i`` is row ``j * n + i``."""
    w = weights.reshape(k, n) + 1e-12
    cumulative = np.cumsum(w / w.sum(axis=0), axis=0)
    pick = (rng.random(n)[None, :] > cumulative).sum(axis=0)
    return np.minimum(pick, k - 1) * n + np.arange(n)


def choose_with_quotas(weights: np.ndarray, candidates: pd.DataFrame, targets: dict[str, pd.Series], n: int, k: int,
                       rng: np.random.Generator) -> np.ndarray:
    """Like ``choose_per_slot``, but each category's count among the kept rows is held to its
    real share of ``n`` (remainders rounded at random), where the candidates allow it.

    Independent draws per slot meet the real shares only on average: 60 teachers drawn so
    come out 14 in one department and 6 in another where the real table has 8 or 9 in each.
    Slots are taken in random order; each draws among its candidates by weight times the
    share of its value's quota still left (scarce values are not left to the last slots), a
    candidate whose value has no quota left weighing ``THRESHOLDS.quota_miss`` as much.
    """
    columns = [c for c in targets if c in candidates]
    if not columns:
        return choose_per_slot(weights, n, k, rng)
    codes, remaining, expected_left = [], [], []
    for col in columns:
        values = candidates[col].astype(str).to_numpy()
        shares = targets[col]
        index = pd.Index(shares.index.astype(str))
        code = index.get_indexer(values)
        expected = shares.to_numpy(dtype=float) * n
        quota = np.floor(expected).astype(np.int64)
        fractions = expected - quota
        short = min(n - int(quota.sum()), int((fractions > 0).sum()))  # shares summing to 1 up to rounding
        if short > 0:
            quota[rng.choice(len(quota), short, replace=False, p=fractions / fractions.sum())] += 1
        codes.append(np.where(code < 0, len(quota), code).reshape(k, n))
        remaining.append(np.r_[quota, 0])  # last: a value the real data lacks, never in quota
        expected_left.append(np.r_[np.maximum(quota, 1), 1].astype(float))
    codes_by_slot = np.stack(codes, axis=2)  # (k, n, columns)
    w = weights.reshape(k, n) + 1e-12
    chosen = np.empty(n, dtype=np.int64)
    draws = rng.random(n)
    for i in rng.permutation(n):
        slot = codes_by_slot[:, i, :]
        fits = np.ones(k)
        for c, left in enumerate(remaining):
            fits *= np.where(left[slot[:, c]] > 0, left[slot[:, c]] / expected_left[c][slot[:, c]], THRESHOLDS.quota_miss)
        score = w[:, i] * fits
        j = min(int(np.searchsorted(np.cumsum(score), draws[i] * score.sum())), k - 1)
        chosen[i] = j
        for c, left in enumerate(remaining):
            left[slot[j, c]] -= 1
    return chosen * n + np.arange(n)


def _as_number(values: pd.Series) -> np.ndarray:
    return day_numbers(values, "datetime" if pd.api.types.is_datetime64_any_dtype(values) else "numerical")


# ------------------------------------------------------------------ column pairs


@dataclass
class RakedColumn:
    """A column as pair raking sees it: a category's real labels, or a number's real deciles."""

    name: str  # as the GAN writes it
    edges: np.ndarray | None  # inner decile edges of a number/date (None: a category)
    labels: list[str]
    quantiles: np.ndarray | None = None  # a number's real percentiles

    @property
    def size(self) -> int:
        return len(self.labels) if self.edges is None else len(self.edges) + 1

    def codes(self, values, generated: bool = False) -> np.ndarray:
        """0 .. size - 1; ``size`` for a label the real data never has. ``generated`` numbers
        are binned as they will be published: by their rank among the generated values, taken
        onto the real distribution (the codec's rank map). A category may come as (indices,
        the labels they index)."""
        if isinstance(values, tuple):
            picks, names = values
            found = pd.Index(self.labels).get_indexer(names)
            return np.where(found < 0, self.size, found)[picks]
        if self.edges is None:
            found = pd.Index(self.labels).get_indexer(np.asarray(values).astype(str))
            return np.where(found < 0, self.size, found)
        numbers = np.asarray(values, dtype=float)
        if not generated or not len(numbers):
            return np.digitize(numbers, self.edges)
        known = ~np.isnan(numbers)
        if known.all():
            return self._rank_codes(numbers, len(numbers))
        codes = np.full(len(numbers), len(self.edges))  # a missing number: the last code, as np.digitize gives it
        codes[known] = self._rank_codes(numbers[known], len(numbers))
        return codes

    def _rank_codes(self, numbers: np.ndarray, n: int) -> np.ndarray:
        """The codes of the real quantiles the values' ranks map to: the r-th smallest of
        ``n`` values (``numbers`` and any missing ones) takes the code of the real quantile at
        (r - 0.5) / n. Each rank's code is found once; a value's code then comes from the
        values at the ranks where the code steps up (a partial sort, not a full one; values
        tied across a step take the higher code)."""
        m = len(numbers)
        grid = np.linspace(0, 1, len(self.quantiles))
        by_rank = np.digitize(np.interp((np.arange(m) + 0.5) / n, grid, self.quantiles), self.edges)
        steps = np.searchsorted(by_rank, np.arange(1, self.size))  # the first rank of each code above 0
        steps = steps[steps < m]
        cuts = np.partition(numbers, steps)[steps] if len(steps) else np.empty(0)
        return np.searchsorted(cuts, numbers, side="right")

    def parent_codes(self, values: pd.Series) -> np.ndarray:
        """A parent column's published values as codes (``size``: missing, or never seen)."""
        if self.edges is None:
            found = pd.Index(self.labels).get_indexer(labels(values).to_numpy())
            return np.where(found < 0, self.size, found)
        numbers = _as_number(values)
        return np.where(np.isfinite(numbers), np.digitize(np.nan_to_num(numbers), self.edges), self.size)


@dataclass
class PairJoints:
    """The real shares of every pair of a table's columns (categories, and numbers cut into
    deciles) that has enough rows per cell. Raking candidates to them keeps which values go
    together where an under-trained GAN invents or loses an association (an enrollment's term
    and grade are unrelated; a fee's status goes with its payment mode). Only two-column
    shares are kept, never rows: the low-order marginals marginal-based synthesisers (MST,
    PrivBayes) are built from."""

    columns: list[RakedColumn]
    pairs: list[tuple[int, int, np.ndarray]]  # column indices, real share of each (a, b) cell
    parent_columns: list[RakedColumn] = field(default_factory=list)  # the primary parent's, as published
    # (child column index, parent column index, real shares of the child's codes given each
    # parent code: one row per parent code, the last for a parent value the real data lacks)
    parent_pairs: list[tuple[int, int, np.ndarray]] = field(default_factory=list)

    @classmethod
    def fit(cls, encoded: pd.DataFrame, discrete: list[str], numeric: list[str],
            parent_rows: pd.DataFrame | None = None, parent_kinds: dict[str, str] | None = None,
            not_given: set[str] = frozenset()) -> "PairJoints | None":
        """``not_given``: child columns never raked given the parent (their values are spread
        among siblings afterwards: a student's courses share a few academic years)."""
        n = len(encoded)
        if n < THRESHOLDS.min_pair_rows:
            return None
        columns = []
        for col in discrete:
            columns.append(RakedColumn(col, None, sorted(encoded[col].astype(str).unique().tolist())))
        for col in numeric:
            values = encoded[col].to_numpy(dtype=float)
            edges = np.unique(np.quantile(values, np.linspace(0, 1, THRESHOLDS.pair_bins + 1))[1:-1])
            if len(edges) and len(np.unique(values)) > 1:  # a constant has no pair to keep
                columns.append(RakedColumn(col, edges, [str(i) for i in range(len(edges) + 1)],
                                           np.quantile(values, np.linspace(0, 1, 201))))
        columns = [c for c in columns if c.size >= 2]
        codes = [c.codes(encoded[c.name].to_numpy()) for c in columns]
        pairs = []
        for i in range(len(columns)):
            for j in range(i + 1, len(columns)):
                both_numbers = columns[i].edges is not None and columns[j].edges is not None
                if both_numbers or n < THRESHOLDS.min_rows_per_cell * columns[i].size * columns[j].size:
                    continue  # two numbers keep their correlation through the GAN and its rank map
                a = np.bincount(codes[i], minlength=columns[i].size + 1) / n
                b = np.bincount(codes[j], minlength=columns[j].size + 1) / n
                width = columns[j].size + 1
                joint = np.bincount(codes[i] * width + codes[j], minlength=len(a) * width) / n
                # shrunk a little towards independence: a cell no real row has is rare, not
                # forbidden (the category-pair supports forbid what must never occur)
                pairs.append((i, j, (1 - THRESHOLDS.pair_shrinkage) * joint + THRESHOLDS.pair_shrinkage * np.outer(a, b).reshape(-1)))
        parents, parent_pairs = [], []
        aligned = parent_rows is not None and len(parent_rows) == n
        for col, kind in (parent_kinds or {}).items() if aligned else ():
            if col not in parent_rows:
                continue
            if kind in ("categorical", "boolean"):
                names = labels(parent_rows[col])
                if 2 <= names.nunique() <= THRESHOLDS.max_parent_values:
                    parents.append(RakedColumn(col, None, sorted(names.unique().tolist())))
            elif kind in ("numerical", "datetime"):
                numbers = _as_number(parent_rows[col])
                finite = numbers[np.isfinite(numbers)]
                edges = np.unique(np.quantile(finite, np.linspace(0, 1, THRESHOLDS.pair_bins + 1))[1:-1]) if len(finite) else []
                if len(edges) and len(np.unique(finite)) > 1:  # a constant says nothing of its children
                    parents.append(RakedColumn(col, edges, [str(i) for i in range(len(edges) + 1)]))
        parent_codes = [p.parent_codes(parent_rows[p.name]) for p in parents]
        for p, (parent, given) in enumerate(zip(parents, parent_codes)):
            for i, (child, own) in enumerate(zip(columns, codes)):
                if child.name in not_given or n < THRESHOLDS.min_rows_per_cell * child.size * parent.size:
                    continue
                width = child.size + 1
                table = np.bincount(given * width + own, minlength=(parent.size + 1) * width).reshape(-1, width)
                overall = table.sum(axis=0) / n
                rows = table.sum(axis=1, keepdims=True)
                conditional = np.where(rows > 0, table / np.maximum(rows, 1), overall)
                conditional = (1 - THRESHOLDS.pair_shrinkage) * conditional + THRESHOLDS.pair_shrinkage * overall
                parent_pairs.append((i, p, conditional))
        return cls(columns, pairs, parents, parent_pairs) if pairs or parent_pairs else None

    @property
    def numeric(self) -> list[str]:
        return [c.name for c in self.columns if c.edges is not None]

    @property
    def label(self) -> str:
        names = [f"{self.columns[i].name} x {self.columns[j].name}" for i, j, _ in self.pairs]
        names += [f"{self.columns[i].name} x parent.{self.parent_columns[p].name}" for i, p, _ in self.parent_pairs]
        return f"{len(names)} column pairs raked to their real shares ({', '.join(names)})"

    def given_codes(self, parent_rows: pd.DataFrame) -> dict[int, np.ndarray]:
        """The code of each parent row's value, per parent column a pair reads (coded once for
        all parents: a chunk of slots takes its parents' codes by position)."""
        return {p: self.parent_columns[p].parent_codes(parent_rows[self.parent_columns[p].name])
                for p in sorted({p for _, p, _ in self.parent_pairs})}

    def rake_codes(self, candidates, given: dict[int, np.ndarray] | None = None,
                   k: int = 1) -> list[tuple[np.ndarray, np.ndarray, int]]:
        """(cell of each candidate, each cell's real share, cells) per pair, for ``rake_weights``.
        ``candidates``: each column's values (a category's as indices and their labels).
        ``given``: the codes of each slot's parent row (``given_codes``; the ``k`` candidates
        of a slot share it); a child column is then raked to its real shares given the
        parent's value, weighed by how often the synthetic parents carry that value."""
        codes = [c.codes(candidates[c.name] if isinstance(candidates[c.name], tuple) else np.asarray(candidates[c.name]),
                         generated=True) for c in self.columns]
        out = []
        for i, j, shares in self.pairs:
            cell = codes[i] * (self.columns[j].size + 1) + codes[j]
            out.append((cell, shares, len(shares)))
        if not given or not len(next(iter(given.values()))):
            return out
        for i, p, conditional in self.parent_pairs:
            slots = given[p]
            width = conditional.shape[1]
            present = np.bincount(slots, minlength=conditional.shape[0]) / len(slots)
            shares = (conditional * present[:, None]).reshape(-1)
            cell = np.tile(slots, k) * width + codes[i]
            out.append((cell, shares, len(shares)))
        return out
