"""Columns the model derives instead of learning, so real constraints hold by construction.

Discovered on the real table (each must hold in every real row):

* ``map``: a category determines the column (``grade_letter -> grade_points``,
  ``route_name -> monthly_fee``): the column is dropped from the GAN and looked up. A
  many-valued category (40 course names over 40 courses) counts only where its repeated
  values agree on the column more often than chance would (``name -> department``);
* ``product``: a number is another number times a price its category sets
  (``amount = quantity x unit price of item_description``): dropped from the GAN and
  rebuilt from the generated ``quantity`` and ``item_description``;
* ``ratio``: ``a <= b`` with ``b > 0`` (``amount_paid <= amount_due``,
  ``score_obtained <= max_score``): the GAN learns ``a / b`` in [0, 1];
* ``offset``: ``a <= b`` between dates (``valid_from < valid_to``) or other numbers: the GAN
  learns the non-negative gap ``b - a``, and ``b`` is rebuilt as ``a`` plus the gap; or, where
  the gap goes with ``a`` but not with ``b`` (an age at enrollment is independent of the
  enrollment date, not of the birth date), ``a`` is rebuilt as ``b`` minus the gap;
* ``linear``: a number on a straight line of another number or a date, or a date on one of
  another date, up to a small residual (``experience_years`` against ``hire_date``; a fee's
  payment date, a few weeks either side of its due date; |r| >= 0.99): the GAN learns the
  residual, and the column is rebuilt from the generated anchor;
* ``parent_offset``: a child date on or after a date of its primary parent
  (``transaction_date >= enrollment_date``): the GAN learns the gap in days, and the
  date is rebuilt from the *synthetic* parent's date.

Rank calibration later maps each learned value onto the real distribution of the same
derived quantity, so gaps stay non-negative and ratios within [0, 1].
"""

from __future__ import annotations

from dataclasses import dataclass, field

import numpy as np
import pandas as pd

from synth_pipeline.modeling.transforms import as_written, rank_map
from synth_pipeline.stats import (
    EPOCH,
    NUMERIC,
    comparable,
    day_numbers,
    decimals_of,
    determining_category,
    labels,
)
from synth_pipeline.thresholds import THRESHOLDS


@dataclass
class Derivation:
    kind: str  # "map" | "product" | "ratio" | "offset" | "linear" | "parent_offset"
    column: str
    anchor: str
    by: str = ""  # product: the category whose value sets the factor
    strict: bool = False
    mapping: dict = field(default_factory=dict)
    decimals: int | None = None  # of the rebuilt numbers (0: integers)
    quantiles: np.ndarray | None = None  # real marginal of a rebuilt date (days), see _rebuild
    line: tuple[float, float] = (0.0, 0.0)  # linear: intercept and slope on the anchor (days for a date)
    limits: tuple[float, float] | None = None  # linear: the real column's range, kept by the rebuilt numbers
    before: bool = False  # offset: the column is the earlier one, its anchor minus the gap

    @property
    def description(self) -> str:
        if self.kind == "map":
            return f"{self.anchor} -> {self.column}"
        if self.kind == "product":
            return f"{self.column} = {self.anchor} x factor of {self.by}"
        if self.kind == "ratio":
            return f"{self.column} = ratio x {self.anchor}"
        if self.kind == "offset":
            return f"{self.column} = {self.anchor} {'-' if self.before else '+'} gap"
        if self.kind == "linear":
            return f"{self.column} = {self.line[0]:.4g} + {self.line[1]:.4g} x {self.anchor} + residual"
        return f"{self.column} = parent.{self.anchor} + gap"


@dataclass
class DerivedColumns:
    derivations: list[Derivation]
    kinds: dict[str, str]  # original sdtype of every modelled column
    timed: set[str] = field(default_factory=set)  # date columns whose real values carry a time of day

    @property
    def dropped(self) -> set[str]:
        return {d.column for d in self.derivations if d.kind in ("map", "product")}

    @property
    def learned_as_numbers(self) -> set[str]:
        return {d.column for d in self.derivations if d.kind not in ("map", "product")}

    # -------------------------------------------------------------- discover
    @classmethod
    def discover(cls, frame: pd.DataFrame, kinds: dict[str, str], parent: pd.DataFrame | None = None,
                 parent_kinds: dict[str, str] | None = None) -> "DerivedColumns":
        found = cls([], dict(kinds))
        for column, kind in kinds.items():
            if kind == "datetime" and column in frame.columns:
                stamps = pd.to_datetime(frame[column], errors="coerce").dropna()
                if len(stamps) and bool((stamps != stamps.dt.normalize()).any()):
                    found.timed.add(column)
        if len(frame) < THRESHOLDS.derived_min_rows:
            return found
        found._discover_maps(frame)
        found._discover_products(frame)
        found._discover_in_row(frame)
        found._discover_linear(frame)
        if parent is not None:
            found._discover_parent_offsets(frame, parent, parent_kinds or {})
        return found

    def _dependent(self, column: str) -> Derivation | None:
        return next((d for d in self.derivations if d.column == column), None)

    def _would_cycle(self, column: str, anchor: str) -> bool:
        seen = anchor
        while (d := self._dependent(seen)) is not None and d.kind != "parent_offset":
            if d.anchor == column:
                return True
            seen = d.anchor
        return anchor == column

    def _add(self, derivation: Derivation) -> None:
        if self._dependent(derivation.column) is None and not self._would_cycle(derivation.column, derivation.anchor):
            self.derivations.append(derivation)

    def _discover_maps(self, frame: pd.DataFrame) -> None:
        determinants = [c for c, k in self.kinds.items() if k in ("categorical", "boolean")]
        for target in self.kinds:
            values = labels(frame[target])
            if values.nunique() < 2:
                continue
            found = determining_category(values, frame, [d for d in determinants if d != target],
                                         min_keys=values.nunique(), few_keys=len(frame) // 5)
            if found is not None and self._dependent(found[0]) is None:
                mapping = frame[target].groupby(labels(frame[found[0]])).first().to_dict()
                self._add(Derivation("map", target, found[0], mapping=mapping))

    def _discover_products(self, frame: pd.DataFrame) -> None:
        numeric = [c for c, k in self.kinds.items() if k == "numerical"]
        determinants = [c for c, k in self.kinds.items() if k in ("categorical", "boolean") and self._dependent(c) is None]
        distinct = {c: frame[c].nunique() for c in numeric}
        for target in sorted(numeric, key=lambda c: -distinct[c]):  # the many-valued column is the product
            if self._dependent(target) is not None:
                continue
            y = day_numbers(frame[target], "numerical")
            for anchor in numeric:
                if anchor == target or self._dependent(anchor) is not None:
                    continue
                x = day_numbers(frame[anchor], "numerical")
                if np.any(np.isnan(x) != np.isnan(y)) or not np.all(x[~np.isnan(x)] > 0):
                    continue
                known = ~np.isnan(x)
                if known.sum() < THRESHOLDS.derived_min_rows or len(np.unique(x[known])) < 2:
                    continue
                factor = pd.Series(y[known] / x[known])
                for det in determinants:
                    keys = labels(frame[det])[known].reset_index(drop=True)
                    n_keys = keys.nunique()
                    if not 2 <= n_keys <= min(THRESHOLDS.max_determinant_values, known.sum() // 5):
                        continue
                    per_key = factor.groupby(keys)
                    spread = (per_key.max() - per_key.min()).abs() <= 1e-6 * per_key.max().abs().clip(lower=1e-9)
                    if spread.all() and per_key.first().nunique() > 1:
                        self._add(Derivation("product", target, anchor, by=det, decimals=decimals_of(y),
                                             mapping=per_key.median().to_dict()))
                        break
                if self._dependent(target) is not None:
                    break

    def _discover_in_row(self, frame: pd.DataFrame) -> None:
        numeric = [c for c, k in self.kinds.items() if k in NUMERIC]
        candidates = []
        for i, a in enumerate(numeric):
            for b in numeric[i + 1:]:
                if self.kinds[a] != self.kinds[b]:
                    continue
                x, y = day_numbers(frame[a], self.kinds[a]), day_numbers(frame[b], self.kinds[b])
                if self.kinds[a] == "numerical" and not comparable(a, b, x, y):
                    continue  # a rental's days are below its replacement cost only by their units
                for lo, hi, xs, ys in ((a, b, x, y), (b, a, y, x)):
                    rule = _inequality(xs, ys)
                    if rule is not None:
                        candidates.append((float(np.nanmedian(ys - xs)), lo, hi, rule))
        for _, lo, hi, strict in sorted(candidates):  # the tightest pairs first
            x, y = day_numbers(frame[lo], self.kinds[lo]), day_numbers(frame[hi], self.kinds[hi])
            # a column is rebuilt only from an anchor present wherever it is (a rental's date is
            # never rebuilt from a return date that is still missing)
            lo_from_hi = not (np.isnan(y) & ~np.isnan(x)).any()
            hi_from_lo = not (np.isnan(x) & ~np.isnan(y)).any()
            positive = self.kinds[lo] == "numerical" and np.nanmin(x) >= 0 and np.nanmin(y) > 0
            if positive:
                if lo_from_hi:
                    self._add(Derivation("ratio", lo, hi, strict=strict, decimals=decimals_of(x)))
            elif _gap_follows_earlier(x, y) and lo_from_hi or (lo_from_hi and not hi_from_lo):
                self._add(Derivation("offset", lo, hi, strict=strict, decimals=decimals_of(x), before=True,
                                     quantiles=_quantiles(x) if self.kinds[lo] == "datetime" else None))
            elif hi_from_lo:
                self._add(Derivation("offset", hi, lo, strict=strict, decimals=decimals_of(y),
                                     quantiles=_quantiles(y) if self.kinds[hi] == "datetime" else None))

    def _discover_linear(self, frame: pd.DataFrame) -> None:
        """A number on a line of another number or a date (|r| >= THRESHOLDS.linear_r); the anchor with the
        most distinct values keeps its own shape, the other is rebuilt from it."""
        numeric = [c for c, k in self.kinds.items() if k in NUMERIC]
        values = {c: day_numbers(frame[c], self.kinds[c]) for c in numeric}
        distinct = {c: len(np.unique(v[~np.isnan(v)])) for c, v in values.items()}
        candidates = []
        for target in numeric:
            if distinct[target] < THRESHOLDS.linear_min_values:
                continue
            y = values[target]
            for anchor in numeric:
                if anchor == target or distinct[anchor] < distinct[target]:
                    continue
                if self.kinds[target] == "datetime" and self.kinds[anchor] != "datetime":
                    continue  # a date follows a date
                x = values[anchor]
                if np.any(~np.isnan(y) & np.isnan(x)):
                    continue
                both = ~np.isnan(x) & ~np.isnan(y)
                if both.sum() < THRESHOLDS.derived_min_rows or np.std(x[both]) == 0 or np.std(y[both]) == 0:
                    continue
                r = float(np.corrcoef(x[both], y[both])[0, 1])
                if abs(r) >= THRESHOLDS.linear_r:
                    slope, intercept = np.polyfit(x[both], y[both], 1)
                    candidates.append((-abs(r), target, anchor, (float(intercept), float(slope))))
        for _, target, anchor, line in sorted(candidates):
            y = values[target]
            self._add(Derivation("linear", target, anchor, decimals=decimals_of(y), line=line,
                                 limits=(float(np.nanmin(y)), float(np.nanmax(y)))))

    def _discover_parent_offsets(self, frame: pd.DataFrame, parent: pd.DataFrame, parent_kinds: dict[str, str]) -> None:
        parent_dates = [c for c, k in parent_kinds.items() if k == "datetime"]
        for col, kind in self.kinds.items():
            if kind != "datetime" or self._dependent(col) is not None:
                continue
            x = day_numbers(frame[col], "datetime")
            best = None
            for p in parent_dates:
                y = day_numbers(parent[p], "datetime")
                if np.any(~np.isnan(x) & np.isnan(y)):
                    continue
                both = ~np.isnan(x) & ~np.isnan(y)
                if both.sum() >= THRESHOLDS.derived_min_rows and np.all(x[both] >= y[both]):
                    gap = float(np.median(x[both] - y[both]))
                    if best is None or gap < best[0]:
                        best = (gap, p)
            if best is not None:
                self.derivations.append(Derivation("parent_offset", col, best[1], quantiles=_quantiles(x)))

    # ------------------------------------------------------------- transform
    def forward(self, frame: pd.DataFrame, parent: pd.DataFrame | None) -> pd.DataFrame:
        """The frame the GAN learns: derived columns replaced by ratios/gaps, mapped ones dropped."""
        out = frame.copy()
        for d in self.derivations:
            if d.kind in ("map", "product"):
                continue
            value = day_numbers(frame[d.column], self.kinds[d.column])
            if d.kind == "parent_offset":
                anchor = day_numbers(parent[d.anchor], "datetime")
                out[d.column] = value - anchor
            elif d.kind == "offset":
                gap = value - day_numbers(frame[d.anchor], self.kinds[d.anchor])
                out[d.column] = -gap if d.before else gap
            elif d.kind == "linear":
                out[d.column] = value - (d.line[0] + d.line[1] * day_numbers(frame[d.anchor], self.kinds[d.anchor]))
            else:
                anchor = day_numbers(frame[d.anchor], self.kinds[d.anchor])
                with np.errstate(divide="ignore", invalid="ignore"):
                    out[d.column] = np.where(anchor > 0, value / anchor, 0.0)
                out.loc[np.isnan(value), d.column] = np.nan
        return out.drop(columns=list(self.dropped))

    def inverse(self, frame: pd.DataFrame, parent: pd.DataFrame | None) -> pd.DataFrame:
        """Rebuild the real columns from a sampled frame, anchors before what depends on them
        (into a shallow copy: each rebuilt column replaces its array, ``frame``'s are left as
        they were and the others are not copied)."""
        out = frame.copy(deep=False)
        pending = list(self.derivations)
        while pending:
            ready = [d for d in pending if d.kind == "parent_offset" or all(p.column != d.anchor for p in pending)]
            for d in ready:
                out[d.column] = self._rebuild(d, out, parent)
                pending.remove(d)
        return out

    def _rebuild(self, d: Derivation, frame: pd.DataFrame, parent: pd.DataFrame | None) -> pd.Series:
        if d.kind == "map":
            looked_up = labels(frame[d.anchor]).map(d.mapping)
            if self.kinds[d.column] == "numerical":
                looked_up = pd.to_numeric(looked_up, errors="coerce")
            return looked_up
        if d.kind == "product":
            factor = pd.to_numeric(labels(frame[d.by]).map(d.mapping), errors="coerce").to_numpy(dtype=float)
            return as_written(day_numbers(frame[d.anchor], "numerical") * factor, d.decimals, frame.index)
        derived = frame[d.column].to_numpy(dtype=float)
        kind = self.kinds[d.column]
        if d.kind == "parent_offset":
            anchor = day_numbers(parent[d.anchor], "datetime")
        else:
            anchor = day_numbers(frame[d.anchor], self.kinds[d.anchor])
        if d.kind == "linear":
            value = d.line[0] + d.line[1] * anchor + derived
            if d.limits is not None:  # a recent hire's years never below the real minimum
                value = np.clip(value, *d.limits)
            if kind == "datetime":
                return _stamps(value, frame.index, d.column in self.timed)
            return as_written(value, d.decimals, frame.index)
        least = 1.0 if d.strict and kind == "datetime" else 0.0
        sign = -1.0 if d.before else 1.0
        if d.kind == "ratio":
            value = np.clip(derived, 0.0, 1.0) * anchor
        else:
            value = anchor + sign * np.clip(derived, least, None)
        if kind == "datetime":
            # anchor +/- gap has the right joint shape but a blurred marginal: map it by rank
            # onto the real dates, then restore the order the real rows always kept.
            if d.quantiles is not None:
                known = ~np.isnan(value)
                value[known] = rank_map(value[known], d.quantiles)
                limit = anchor + sign * (1.0 if d.strict else 0.0)
                value = np.minimum(value, limit) if sign < 0 else np.maximum(value, limit)
            return _stamps(value, frame.index, d.column in self.timed)
        return as_written(value, d.decimals, frame.index)


def _gap_follows_earlier(x: np.ndarray, y: np.ndarray) -> bool:
    """Whether ``x <= y`` is better learned as ``x = y - gap``: the gap ``y - x`` goes with the
    earlier ``x`` (|Spearman r| at least ``THRESHOLDS.gap_direction_margin`` more) than with the later
    ``y``. A student's age at enrollment is unrelated to the enrollment date but strongly to
    the birth date; rebuilt from the birth date, the enrollment date would have to undo that."""
    both = ~np.isnan(x) & ~np.isnan(y)
    gap = pd.Series(y[both] - x[both])
    if gap.nunique() < 2:
        return False
    with np.errstate(invalid="ignore", divide="ignore"):
        with_earlier = gap.corr(pd.Series(x[both]), method="spearman")
        with_later = gap.corr(pd.Series(y[both]), method="spearman")
    if not (np.isfinite(with_earlier) and np.isfinite(with_later)):
        return False
    return abs(with_earlier) >= abs(with_later) + THRESHOLDS.gap_direction_margin


def _stamps(days: np.ndarray, index: pd.Index, timed: bool = False) -> pd.Series:
    """Day numbers as timestamps: whole days, or (``timed``: the real column has times of day)
    whole seconds."""
    seconds = np.round(np.where(np.isnan(days), 0, days) * 86400 if timed else np.round(np.where(np.isnan(days), 0, days)) * 86400)
    stamps = EPOCH + pd.to_timedelta(seconds.astype("int64"), unit="s")
    return pd.Series(stamps, index=index).where(~np.isnan(days))


def _quantiles(values: np.ndarray, points: int = 1001) -> np.ndarray | None:
    finite = values[~np.isnan(values)]
    return np.quantile(finite, np.linspace(0, 1, points)) if len(finite) else None


def _inequality(x: np.ndarray, y: np.ndarray) -> bool | None:
    """True (strict) / False (non-strict) when x <= y holds wherever both are known, else None;
    also None when the two columns' ranges do not even overlap and their sizes differ a
    hundredfold (a track's price is below its length in milliseconds only because of their
    units: no rule to learn the price by)."""
    both = ~np.isnan(x) & ~np.isnan(y)
    if both.sum() < THRESHOLDS.derived_min_rows:  # which of the two may anchor the other: see _discover_in_row
        return None
    xs, ys = x[both], y[both]
    if not np.all(xs <= ys) or np.all(xs == ys):
        return None
    if xs.max() < ys.min() and abs(np.median(ys)) > THRESHOLDS.units_apart * max(abs(np.median(xs)), 1e-9):
        return None
    return bool(np.all(xs < ys))
