"""Children-per-parent counts: measured on real data, calibrated on generated data."""

from __future__ import annotations

from dataclasses import dataclass
from math import comb, log

import numpy as np
import pandas as pd

from synth_pipeline.modeling.pair_support import NameQuota
from synth_pipeline.schema.metadata import LOOKUP_MAX_ROWS, Column, Metadata
from synth_pipeline.stats import COUNT_PREFIX, count_column, is_count_column, labels
from synth_pipeline.thresholds import THRESHOLDS


def calibrate_counts(generated: np.ndarray, real_counts: np.ndarray, rng: np.random.Generator) -> np.ndarray:
    """Rank-map generated counts onto the real count distribution.

    A generated count keeps its rank among its siblings (so a parent the model gave many
    children still has many), but the values are the real distribution's, which keeps the
    zeros and the long tail (the maximum) that GAN outputs smooth away. Ties are broken at
    random so equal generated counts spread over the real values they straddle.
    """
    n = len(generated)
    if n == 0 or len(real_counts) == 0:
        return np.zeros(n, dtype="int64")
    order = np.lexsort((rng.random(n), generated))
    ranks = np.empty(n)
    ranks[order] = (np.arange(n) + 0.5) / n
    real_sorted = np.sort(real_counts)
    return real_sorted[np.minimum((ranks * len(real_sorted)).astype(int), len(real_sorted) - 1)].astype("int64")


def normal_scores(values: np.ndarray) -> np.ndarray:
    """Column-wise van der Waerden scores (ties broken by position)."""
    from scipy.stats import norm

    ranks = np.argsort(np.argsort(values, axis=0, kind="stable"), axis=0)
    return norm.ppf((ranks + 0.5) / len(values))


def impose_rank_correlation(values: np.ndarray, target: np.ndarray, rng: np.random.Generator) -> np.ndarray:
    """Iman-Conover: re-pair each column's values so the columns' rank correlation is ``target``.

    Every column keeps its own values (so calibrated counts stay calibrated); only which row
    gets which value changes, starting from the generated order so rows move as little as needed.
    """
    orders = rank_correlation_orders(values, target, rng)
    if orders is None:
        return values
    return np.column_stack([values[order, j] for j, order in enumerate(orders)])


def rank_correlation_orders(values: np.ndarray, target: np.ndarray, rng: np.random.Generator) -> list[np.ndarray] | None:
    """For each column, the row whose value each row takes under Iman-Conover (None: nothing to do)."""
    n, k = values.shape
    if n < 3 or k < 2:
        return None
    jitter = rng.random(values.shape) * 1e-6  # ties in counts: break them at random, not by position
    scores = normal_scores(values + jitter)
    current = np.corrcoef(scores, rowvar=False)
    try:
        p_target, p_current = np.linalg.cholesky(target), np.linalg.cholesky(current)
    except np.linalg.LinAlgError:
        return None
    adjusted = scores @ np.linalg.inv(p_current).T @ p_target.T
    return [np.argsort(values[:, j], kind="stable")[np.argsort(np.argsort(adjusted[:, j], kind="stable"), kind="stable")]
            for j in range(k)]


@dataclass
class CountsWithin:
    """Children under one relationship only for parents of some values of a category (only
    Physical Education teachers coach games): each synthetic parent outside those values
    swaps its count with a childless parent inside them, so the counts' distribution stays
    the calibrated one (if no childless parent is left inside, the count is added to one
    that has children)."""

    count: str
    column: str
    values: tuple  # the category's values (as labels, sorted) whose parents have children

    @property
    def label(self) -> str:
        return f"children under {self.count[len(COUNT_PREFIX):]} only where {self.column} is one of " \
               f"{sorted(self.values)}"

    @classmethod
    def fit(cls, frame: pd.DataFrame, count: str, counts: np.ndarray, categories: list[str]) -> "CountsWithin | None":
        """The category whose values hold every parent with children, if one does beyond
        chance and leaves at least ``THRESHOLDS.min_zero_parents`` parents without. Chance: the parents
        with children all falling within some ``k`` of the ``V`` values, bounded by
        ``C(V, k) x (the k largest values' share) ** parents with children`` < ``THRESHOLDS.map_chance``."""
        positive = np.asarray(counts) > 0
        if not positive.any():
            return None
        best = None
        for column in categories:
            values = labels(frame[column]).to_numpy(dtype=object)
            shares = pd.Series(values).value_counts(normalize=True).to_numpy()
            if not 2 <= len(shares) <= 50:
                continue
            hit = sorted(set(values[positive]))
            inside = pd.Series(values).isin(hit).to_numpy()
            outside = int((~inside).sum())
            if outside < THRESHOLDS.min_zero_parents:
                continue
            chance = log(comb(len(shares), len(hit))) + positive.sum() * log(shares[:len(hit)].sum())
            if chance < log(THRESHOLDS.map_chance) and (best is None or outside > best[0]):
                best = (outside, cls(count, column, tuple(hit)))
        return None if best is None else best[1]

    def apply(self, frame: pd.DataFrame, rng: np.random.Generator) -> int:
        """Swap counts so parents outside the values have none; returns the parents changed."""
        if self.count not in frame.columns or self.column not in frame.columns:
            return 0
        counts = frame[self.count].to_numpy().copy()
        inside = labels(frame[self.column]).isin(list(self.values)).to_numpy()
        givers = rng.permutation(np.nonzero(~inside & (counts > 0))[0])
        takers = rng.permutation(np.nonzero(inside & (counts == 0))[0])
        swaps = min(len(givers), len(takers))
        counts[takers[:swaps]], counts[givers[:swaps]] = counts[givers[:swaps]], 0
        left = givers[swaps:]  # no childless parent inside: the count joins one that has children
        if len(left) and inside.any():
            np.add.at(counts, rng.choice(np.nonzero(inside)[0], len(left)), counts[left])
            counts[left] = 0
        frame[self.count] = counts
        return swaps + len(left)


@dataclass
class LabelCounts:
    """A small table whose every real row holds its own label (Chinook's 5 media types, 25
    genres) lists categories: the row *is* the category. Rank calibration would hand the
    real counts to the labels at random (3,034 tracks to the rare "AAC audio file", 11 to
    "MPEG audio file"); here every label appears as often as in the real rows (times the
    scale) and has the real label's children under each foreign key."""

    column: str
    counts: dict[str, dict]  # count column -> label -> the real label's children

    @property
    def label(self) -> str:
        return f"each {self.column} has its real children per foreign key"

    @classmethod
    def fit(cls, frame: pd.DataFrame, categories: list[str], real_counts: dict[str, np.ndarray]) -> "LabelCounts | None":
        if not real_counts or not 2 <= len(frame) <= LOOKUP_MAX_ROWS:
            return None
        for column in categories:
            values = frame[column]
            if values.notna().all() and values.is_unique:
                return cls(column, {c: dict(zip(values.tolist(), counts.tolist())) for c, counts in real_counts.items()})
        return None

    def apply(self, frame: pd.DataFrame, rng: np.random.Generator) -> int:
        """Labels to their real shares, then each row's counts from its label; returns the rows
        whose label moved."""
        if self.column not in frame.columns or frame.empty:
            return 0
        some = next(iter(self.counts.values()))
        values = np.array(list(some), dtype=object)
        moved = NameQuota(self.column, values, np.full(len(values), 1.0 / len(values))).apply(frame, rng)
        for column, by_label in self.counts.items():
            if column in frame.columns:
                frame[column] = frame[self.column].map(by_label).fillna(0).to_numpy(dtype="int64")
        return moved


COUNT_TOTALS_PROPOSALS = 40  # swaps tried per row and count column
COUNT_TOTALS_MAX_PROPOSALS = 50_000


@dataclass
class CountTotals:
    """In a small table, each category's share of all the children under one relationship.

    Generated counts placed at random add up per category as chance has it (in a table of a
    few dozen teachers, one department may lead half its real share of the courses, and every
    course takes its lead teacher's department). Here counts trade places between rows (so the
    counts' distribution stays the calibrated one) while that brings each category's total closer to
    its real share, over all the table's categories at once."""

    count: str
    shares: dict[str, dict[str, float]]  # category column -> value -> real share of the count's total

    @property
    def label(self) -> str:
        return f"children under {self.count[len(COUNT_PREFIX):]} kept to their real totals per " \
               f"{', '.join(self.shares)}"

    @classmethod
    def fit(cls, frame: pd.DataFrame, count: str, counts: np.ndarray, categories: list[str]) -> "CountTotals | None":
        counts = np.asarray(counts, dtype=float)
        if not 2 <= len(frame) <= THRESHOLDS.count_totals_max_rows or counts.sum() <= 0 or len(np.unique(counts)) < 2:
            return None
        shares = {}
        for column in categories:
            values = labels(frame[column]).reset_index(drop=True)
            if not 2 <= values.nunique() <= len(values) / THRESHOLDS.count_totals_min_rows_per_value:
                continue
            totals = pd.Series(counts).groupby(values).sum() / counts.sum()
            shares[column] = totals.to_dict()
        return cls(count, shares) if shares else None

    def apply(self, frame: pd.DataFrame, rng: np.random.Generator) -> int:
        """Swap counts between rows while a swap lowers the summed squared gap between each
        category's total and its real share of the whole; returns the swaps made."""
        columns = [c for c in self.shares if c in frame.columns]
        if self.count not in frame.columns or not columns or len(frame) < 2:
            return 0
        counts = frame[self.count].to_numpy(dtype="int64").copy()
        total = counts.sum()
        if total <= 0:
            return 0
        groups, gaps = [], []
        for column in columns:
            codes, values = pd.factorize(labels(frame[column]), sort=True)
            target = np.array([self.shares[column].get(v, 0.0) for v in values]) * total
            groups.append(codes)
            gaps.append(np.bincount(codes, weights=counts, minlength=len(values)) - target)
        n = len(counts)
        proposals = min(COUNT_TOTALS_PROPOSALS * n, COUNT_TOTALS_MAX_PROPOSALS)
        firsts, seconds = rng.integers(0, n, proposals), rng.integers(0, n, proposals)
        swaps = 0
        for i, j in zip(firsts.tolist(), seconds.tolist()):
            d = counts[j] - counts[i]  # what row i's groups gain and row j's lose
            if d == 0:
                continue
            change = 0.0
            for codes, gap in zip(groups, gaps):
                a, b = codes[i], codes[j]
                if a != b:
                    change += 2 * d * (gap[a] - gap[b]) + 2 * d * d
            if change < -1e-9:
                for codes, gap in zip(groups, gaps):
                    gap[codes[i]] += d
                    gap[codes[j]] -= d
                counts[i], counts[j] = counts[j], counts[i]
                swaps += 1
        frame[self.count] = counts
        return swaps


def root_correlated_columns(metadata: Metadata, name: str, training: pd.DataFrame, modelled: list[Column],
                            tied: set[str]) -> list[str]:
    """A root table's numbers and dates as learned, with the counts of the children it owns
    (a district's inhabitants, crimes and accounts: 77 rows are too few for the GAN to learn
    how they go together), whose joint rank correlation sampling imposes. Not the counts of
    children that link to it as a second parent, nor counts only some category may have
    (``tied``): those follow the row's categories (a route's teacher is linked by department),
    which a re-pairing of numbers would ignore. A child table's numbers are left to the GAN:
    re-pairing them across rows would break their link to each row's parent."""
    owned = {count_column(r) for r in metadata.relationships
             if r.parent_table_name == name and metadata.primary_relationship(r.child_table_name) == r}
    return [c.name for c in modelled if c.name in training.columns and training[c.name].notna().all()
            and ((c.sdtype in ("numerical", "datetime") and not is_count_column(c.name)
                  and (pd.api.types.is_numeric_dtype(training[c.name])
                       or pd.api.types.is_datetime64_any_dtype(training[c.name])))
                 or (c.name in owned and c.name not in tied))]


def _as_floats(frame: pd.DataFrame, columns: list[str]) -> np.ndarray:
    return np.column_stack([frame[c].to_numpy(dtype="datetime64[ns]").astype("int64").astype(float)
                            if pd.api.types.is_datetime64_any_dtype(frame[c]) else frame[c].to_numpy(dtype=float)
                            for c in columns])


def rank_correlation(training: pd.DataFrame, columns: list[str]) -> np.ndarray | None:
    """How the columns go together in the real rows, as the correlation of normal scores."""
    if len(columns) < 2:
        return None
    values = _as_floats(training, columns)
    jitter = np.random.default_rng(0).random(values.shape) * 1e-6
    corr = np.corrcoef(normal_scores(values + jitter), rowvar=False)
    return None if not np.isfinite(corr).all() else corr


def impose_correlation(raw: pd.DataFrame, columns: list[str], target: np.ndarray, rng: np.random.Generator) -> None:
    """Re-pair the columns' generated values (each column keeps its own) to the real rank
    correlation, over the rows where all of them are present."""
    complete = np.nonzero(raw[columns].notna().all(axis=1).to_numpy())[0]
    orders = rank_correlation_orders(_as_floats(raw.iloc[complete], columns), target, rng)
    if orders is None:
        return
    for column, order in zip(columns, orders):
        values = raw[column].to_numpy().copy()
        values[complete] = values[complete][order]
        raw[column] = values
