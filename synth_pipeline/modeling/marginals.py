"""Keep the learned joint structure, correct the categorical marginals.

The generator proposes ``k`` candidate rows per output row (for a child table, all ``k``
share the row's parent context). Raking (iterative proportional fitting) weighs every
candidate so that the weighted share of each category matches the real share, column by
column; each output row then keeps one of its candidates, drawn by weight. An
under-trained GAN's drift on category frequencies is undone without touching which values
go together within a row. For a child table, a category whose real shares depend on the
primary parent's value (``ParentJoint``) is raked to the real shares given that value.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import pandas as pd

from synth_pipeline.modeling.transforms import day_numbers, labels

RAKING_ROUNDS = 8


def category_targets(encoded: pd.DataFrame, discrete_columns: list[str]) -> dict[str, pd.Series]:
    return {c: encoded[c].astype(str).value_counts(normalize=True) for c in discrete_columns}


def rake_weights(candidates: pd.DataFrame, targets: dict[str, pd.Series], n: int, k: int) -> np.ndarray:
    """Candidate weights whose per-slot draw (see ``choose_per_slot``) meets the real shares.

    Shares are measured as they will come out: each slot keeps one of its ``k``
    candidates with probability proportional to its weight.
    """
    weights = np.ones(len(candidates))
    codes = []
    for col, target in targets.items():
        inverse, categories = pd.factorize(candidates[col].to_numpy(), use_na_sentinel=False)  # hashing, no sort
        share = pd.Series(categories).astype(str).map(target).fillna(0.0).to_numpy()[inverse]
        codes.append((inverse, share, len(categories)))
    for _ in range(RAKING_ROUNDS):
        for inverse, share, n_categories in codes:
            chance = _slot_probabilities(weights, n, k)
            current = np.bincount(inverse, weights=chance, minlength=n_categories) / n
            weights = weights * np.where(current[inverse] > 0, share / np.maximum(current[inverse], 1e-12), 0.0)
            if not np.isfinite(weights).all() or (weights.reshape(k, n).sum(axis=0) <= 0).any():
                weights = np.where(np.isfinite(weights), weights, 0.0)
                empty = weights.reshape(k, n).sum(axis=0) <= 0
                weights.reshape(k, n)[:, empty] = 1.0  # slots with no plausible candidate: any will do
    return weights


def _slot_probabilities(weights: np.ndarray, n: int, k: int) -> np.ndarray:
    w = weights.reshape(k, n)
    return (w / np.maximum(w.sum(axis=0), 1e-300)).reshape(-1)


def choose_per_slot(weights: np.ndarray, n: int, k: int, rng: np.random.Generator) -> np.ndarray:
    """Row indices, one per slot; candidate ``j`` of slot ``i`` is row ``j * n + i``."""
    w = weights.reshape(k, n) + 1e-12
    cumulative = np.cumsum(w / w.sum(axis=0), axis=0)
    pick = (rng.random(n)[None, :] > cumulative).sum(axis=0)
    return np.minimum(pick, k - 1) * n + np.arange(n)


# ------------------------------------------------------------ given the parent
JOINT_SEPARATOR = "\x1f"
MIN_JOINT_ASSOCIATION = 0.2  # Cramér's V between the child's category and the parent's column
PARENT_BINS = 5  # a parent's number or date is cut into quintiles of its real values
MAX_PARENT_VALUES = 30
MIN_JOINT_ROWS = 100


@dataclass
class ParentJoint:
    """A child category whose real shares depend on a column of the primary parent row (an
    enrollment's academic year on the student's enrollment date): raking then meets the real
    shares *given* each synthetic parent's value, not only overall."""

    column: str  # the child's discrete column, as the GAN writes it
    parent_column: str
    edges: np.ndarray | None  # bin edges of a numeric/date parent column (None: a category)
    given: dict  # parent label -> real shares of the child's values (pd.Series)
    association: float
    overall: pd.Series | None = None  # the child's real shares, for a parent label never seen

    @property
    def key(self) -> str:
        return f"{self.column}{JOINT_SEPARATOR}parent.{self.parent_column}"

    @property
    def label(self) -> str:
        return f"{self.column} given parent.{self.parent_column} (V={self.association:.2f})"

    def parent_labels(self, parent_rows: pd.DataFrame) -> np.ndarray:
        values = parent_rows[self.parent_column]
        if self.edges is None:
            return labels(values).to_numpy()
        numbers = _as_number(values)
        binned = np.digitize(np.nan_to_num(numbers, nan=np.inf), self.edges).astype(str)
        return np.where(np.isnan(numbers), "__null__", binned)

    def targets(self, parent_labels: np.ndarray) -> pd.Series:
        """Shares of (child value, parent label) pairs: the real shares of the child's values
        given each label, weighed by how often the synthetic parents carry the label."""
        seen, counts = np.unique(parent_labels, return_counts=True)
        parts = []
        for label, count in zip(seen, counts):
            shares = self.given.get(label, self.overall)
            if shares is None:
                continue
            parts.append(pd.Series(shares.to_numpy() * count / len(parent_labels),
                                   index=shares.index.astype(str) + JOINT_SEPARATOR + label))
        return pd.concat(parts) if parts else pd.Series(dtype=float)


def _as_number(values: pd.Series) -> np.ndarray:
    return day_numbers(values, "datetime" if pd.api.types.is_datetime64_any_dtype(values) else "numerical")


def fit_parent_joints(encoded: pd.DataFrame, discrete_columns: list[str], parent_rows: pd.DataFrame,
                      parent_kinds: dict[str, str]) -> list[ParentJoint]:
    """For each discrete child column, the parent column it depends on most (if enough)."""
    found = []
    candidates = []
    if len(encoded) < MIN_JOINT_ROWS:
        return found
    for col, kind in parent_kinds.items():
        if col not in parent_rows:
            continue
        if kind in ("categorical", "boolean"):
            if 2 <= parent_rows[col].nunique() <= MAX_PARENT_VALUES:
                candidates.append(ParentJoint("", col, None, {}, 0.0))
        elif kind in ("numerical", "datetime"):
            numbers = _as_number(parent_rows[col])
            finite = numbers[np.isfinite(numbers)]
            edges = np.unique(np.quantile(finite, np.linspace(0, 1, PARENT_BINS + 1))[1:-1]) if len(finite) else []
            if len(edges):
                candidates.append(ParentJoint("", col, edges, {}, 0.0))
    for column in discrete_columns:
        child = encoded[column].astype(str).to_numpy()
        if len(np.unique(child)) < 2:
            continue
        best = None
        for candidate in candidates:
            parent_values = candidate.parent_labels(parent_rows)
            table = pd.crosstab(child, parent_values)
            if min(table.shape) < 2:
                continue
            v = corrected_cramers_v(table.to_numpy())
            if v >= MIN_JOINT_ASSOCIATION and (best is None or v > best[0]):
                best = (v, candidate, parent_values)
        if best is None:
            continue
        v, candidate, parent_values = best
        given = {label: pd.Series(child[parent_values == label]).value_counts(normalize=True)
                 for label in np.unique(parent_values)}
        found.append(ParentJoint(column, candidate.parent_column, candidate.edges, given, v,
                                 pd.Series(child).value_counts(normalize=True)))
    return found


def corrected_cramers_v(table: np.ndarray) -> float:
    """Cramér's V with Bergsma's small-sample bias correction: near 0 for independent columns
    even when the table has many cells for its rows (a 40-row table of courses)."""
    from scipy.stats import chi2_contingency

    n = table.sum()
    if n < 2:
        return 0.0
    chi2 = chi2_contingency(table, correction=False)[0]
    r, k = table.shape
    phi2 = max(0.0, chi2 / n - (k - 1) * (r - 1) / (n - 1))
    r_corr, k_corr = r - (r - 1) ** 2 / (n - 1), k - (k - 1) ** 2 / (n - 1)
    denominator = min(k_corr - 1, r_corr - 1)
    return float(np.sqrt(phi2 / denominator)) if denominator > 0 else 0.0
