"""Numeric child columns that the parent context explains are learned as residuals.

A GAN given a context vector learns the dependence on it only partly: marks follow their
course's level and grade, but flattened. Where a ridge regression on the context explains
a numeric column well enough (R² ≥ ``THRESHOLDS.min_r2``), the GAN learns ``value - prediction`` and
sampling adds the prediction for the synthetic context back; the sum is then mapped by rank
onto the real column's distribution, so the marginal stays the real one and the dependence
on the parent is as strong as a linear model of the real data says.
"""

from __future__ import annotations

from dataclasses import dataclass, field

import numpy as np
import pandas as pd

from synth_pipeline.modeling.transforms import QUANTILES, rank_map
from synth_pipeline.stats import decimals_of
from synth_pipeline.thresholds import THRESHOLDS

MAX_TRAINING_ROWS = 50_000


@dataclass
class _Fit:
    coef: np.ndarray
    intercept: float
    r2: float
    quantiles: np.ndarray
    decimals: int | None


@dataclass
class ContextResiduals:
    fits: dict[str, _Fit] = field(default_factory=dict)

    @classmethod
    def fit(cls, training: pd.DataFrame, numeric: list[str], context: np.ndarray | None,
            seed: int) -> "ContextResiduals":
        out = cls()
        if context is None or context.shape[1] == 0 or len(training) < 50:
            return out
        from sklearn.linear_model import Ridge

        rng = np.random.default_rng(seed)
        for col in numeric:
            y = pd.to_numeric(training[col], errors="coerce").to_numpy(dtype=float)
            known = np.nonzero(np.isfinite(y))[0]
            if len(known) < 50 or len(np.unique(y[known])) <= THRESHOLDS.few_values:
                continue
            if len(known) > MAX_TRAINING_ROWS:
                known = np.sort(rng.choice(known, MAX_TRAINING_ROWS, replace=False))
            model = Ridge(alpha=1.0).fit(context[known], y[known])
            r2 = float(model.score(context[known], y[known]))
            if r2 >= THRESHOLDS.min_r2:
                finite = y[np.isfinite(y)]
                quantiles = np.quantile(finite, np.linspace(0, 1, QUANTILES))
                out.fits[col] = _Fit(model.coef_.astype(float), float(model.intercept_), r2, quantiles,
                                     decimals_of(finite))
        return out

    def _predict(self, col: str, context: np.ndarray) -> np.ndarray:
        fit = self.fits[col]
        return context.astype(float) @ fit.coef + fit.intercept

    def forward(self, training: pd.DataFrame, context: np.ndarray) -> pd.DataFrame:
        out = training.copy()
        for col in self.fits:
            out[col] = pd.to_numeric(out[col], errors="coerce").to_numpy(dtype=float) - self._predict(col, context)
        return out

    def inverse(self, frame: pd.DataFrame, context: np.ndarray | None) -> pd.DataFrame:
        if not self.fits or context is None:
            return frame
        out = frame.copy()
        for col, fit in self.fits.items():
            values = pd.to_numeric(out[col], errors="coerce").to_numpy(dtype=float) + self._predict(col, context)
            known = np.isfinite(values)
            values[known] = rank_map(values[known], fit.quantiles)
            if fit.decimals is not None:
                values = np.round(values, fit.decimals)
            out[col] = values
        return out

    def describe(self) -> dict[str, float]:
        return {col: round(fit.r2, 3) for col, fit in self.fits.items()}
