"""What a number column may hold, learned from the real column and applied last.

Every mechanism that computes numbers (the GAN's decoding, derivations, ratios, residuals,
repairs) may leave a value between the real ones. A ``NumberShape`` holds, per column:

* its range: the real minimum and maximum; nothing comes out outside them;
* its support, when the column takes few distinct values (price points, ratings, counts):
  every value is moved to the nearest real value;
* else its grid: the largest step (1000 ... 0.001) every real value sits on, with its offset
  (a price ending in .99 sits on a step of 1 with offset 0.99; half points on 0.5): every
  value is moved to the nearest grid point inside the range.

It is applied at the end of sampling and again after repair, and checked (blocking) on the
published table.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import pandas as pd

from synth_pipeline.thresholds import THRESHOLDS

STEPS = (1000.0, 500.0, 100.0, 50.0, 25.0, 10.0, 5.0, 2.0, 1.0, 0.5, 0.25, 0.1, 0.05, 0.01, 0.005, 0.001)
TOLERANCE = 1e-6


@dataclass
class NumberShape:
    column: str
    low: float
    high: float
    support: np.ndarray | None = None  # sorted real values, when few
    step: float | None = None
    offset: float = 0.0

    @classmethod
    def fit(cls, column: str, values: pd.Series) -> "NumberShape | None":
        numbers = pd.to_numeric(values, errors="coerce").to_numpy(dtype=float)
        numbers = numbers[np.isfinite(numbers)]
        if not len(numbers):
            return None
        distinct = np.unique(numbers)
        shape = cls(column, float(distinct[0]), float(distinct[-1]))
        if len(distinct) <= THRESHOLDS.support_max:
            shape.support = distinct
            return shape
        for step in STEPS:
            k = (distinct - distinct[0]) / step
            if np.allclose(k, np.round(k), rtol=0, atol=TOLERANCE * max(1.0, np.abs(k).max() * 1e-3)):
                shape.step, shape.offset = step, float(np.round(distinct[0] % step, 9))
                break
        return shape

    @property
    def label(self) -> str:
        if self.support is not None:
            return f"{self.column} in its {len(self.support)} real values"
        grid = f" on a step of {self.step:g}" + (f" (+{self.offset:g})" if self.offset else "") if self.step else ""
        return f"{self.column} within [{self.low:g}, {self.high:g}]{grid}"

    def apply(self, values: pd.Series) -> pd.Series:
        """``values`` moved into the range, onto the support or grid (nulls kept, dtype kept)."""
        numbers = pd.to_numeric(values, errors="coerce").to_numpy(dtype=float)
        present = np.isfinite(numbers)
        if not present.any():
            return values
        x = np.clip(numbers[present], self.low, self.high)
        if self.support is not None:
            right = np.clip(np.searchsorted(self.support, x), 1, len(self.support) - 1) if len(self.support) > 1 \
                else np.zeros(len(x), dtype=int)
            left = np.maximum(right - 1, 0)
            pick = np.where(np.abs(self.support[left] - x) <= np.abs(self.support[right] - x), left, right)
            x = self.support[pick]
        elif self.step:
            x = np.round((x - self.offset) / self.step) * self.step + self.offset
            first = self.low
            last = self.low + np.floor((self.high - self.low) / self.step + TOLERANCE) * self.step
            x = np.clip(x, first, last)
            x = np.round(x, 9)
        out = numbers.copy()
        out[present] = x
        if pd.api.types.is_integer_dtype(values.dtype) or str(values.dtype) == "Int64":
            series = pd.Series(np.round(np.where(present, out, 0)).astype("int64"), index=values.index)
            return series.astype("Int64").where(present) if not present.all() else series.astype(values.dtype)
        return pd.Series(out, index=values.index, dtype="float64")

    def breaks(self, values: pd.Series) -> int:
        """Values outside the range, off the support or off the grid (nulls never count)."""
        numbers = pd.to_numeric(values, errors="coerce").to_numpy(dtype=float)
        x = numbers[np.isfinite(numbers)]
        scale = max(1.0, abs(self.low), abs(self.high))
        bad = (x < self.low - TOLERANCE * scale) | (x > self.high + TOLERANCE * scale)
        if self.support is not None:
            bad |= ~np.isclose(x[:, None], self.support[None, :], rtol=0, atol=TOLERANCE * scale).any(axis=1) \
                if len(x) * len(self.support) <= 5e7 else ~np.isin(np.round(x, 9), np.round(self.support, 9))
        elif self.step:
            k = (x - self.offset) / self.step
            bad |= ~np.isclose(k, np.round(k), rtol=0, atol=1e-6)
        return int(bad.sum())


def fit_shapes(frame: pd.DataFrame, columns: list[str]) -> list[NumberShape]:
    return [s for c in columns if c in frame.columns and (s := NumberShape.fit(c, frame[c])) is not None]


def apply_shapes(frame: pd.DataFrame, shapes: list[NumberShape]) -> None:
    for shape in shapes:
        if shape.column in frame.columns:
            frame[shape.column] = shape.apply(frame[shape.column])
