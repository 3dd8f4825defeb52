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


def rake_weights(candidates: pd.DataFrame, targets: dict[str, pd.Series]) -> np.ndarray:
    weights = np.ones(len(candidates))
    codes = {}
    for col, target in targets.items():
        labels = candidates[col].astype(str)
        share = labels.map(target).fillna(0.0).to_numpy()
        categories, inverse = np.unique(labels.to_numpy(), return_inverse=True)
        codes[col] = (inverse, share, len(categories))
    for _ in range(RAKING_ROUNDS):
        for inverse, share, n_categories in codes.values():
            current = np.bincount(inverse, weights=weights, minlength=n_categories) / weights.sum()
            ratio = np.where(current[inverse] > 0, share / np.maximum(current[inverse], 1e-12), 0.0)
            weights = weights * ratio
            if weights.sum() <= 0:  # no candidate carries any real category: give up on raking
                return np.ones(len(candidates))
    return weights


def choose_per_slot(weights: np.ndarray, n: int, k: int, rng: np.random.Generator) -> np.ndarray:
    """Row indices, one per slot; candidate ``j`` of slot ``i`` is row ``j * n + i``."""
    w = weights.reshape(k, n) + 1e-12
    cumulative = np.cumsum(w / w.sum(axis=0), axis=0)
    pick = (rng.random(n)[None, :] > cumulative).sum(axis=0)
    return np.minimum(pick, k - 1) * n + np.arange(n)
