"""Keep the learned joint structure, correct the categorical marginals.

The generator proposes ``k`` candidate rows per output row (for a child table, all ``k``
share the row's parent context). Raking (iterative proportional fitting) weighs every
candidate so that the weighted share of each category matches the real share, column by
column; each output row then keeps one of its candidates, drawn by weight. An
under-trained GAN's drift on category frequencies is undone without touching which values
go together within a row.
"""

from __future__ import annotations

import numpy as np
import pandas as pd

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
        labels = candidates[col].astype(str)
        categories, inverse = np.unique(labels.to_numpy(), return_inverse=True)
        codes.append((inverse, labels.map(target).fillna(0.0).to_numpy(), len(categories)))
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
