"""Numbers whose distribution a category shapes, mapped onto the real conditional distribution.

A short GAN training keeps a number's overall distribution (rank calibration sees to that)
but blurs how it differs between categories: a library fee drawn at tuition's size, a
weightage that ignores the assessment type, a mark dated outside its enrollment's academic
year. For each numeric column, the categorical column of the same table or of the primary
parent row that explains most of its variance (correlation ratio η², adjusted for the
number of groups) leads it: within every category value with enough real rows, the generated numbers keep their
order and take the real numbers' distribution in that category (interpolated quantiles,
so values are new, not copied; a handful-of-values column takes the real values). The
order within a category is the GAN's, so the number's links to the other columns and to
the parent stay; categories rarer than ``THRESHOLDS.conditional_min_group_rows`` real rows keep the GAN's values.
Two categories of one row lead together where their combinations explain clearly more than
either alone (a mark's date follows its enrollment's academic year *and* term).
"""

from __future__ import annotations

from dataclasses import dataclass, field

import numpy as np
import pandas as pd

from synth_pipeline.modeling.transforms import QUANTILES, as_written
from synth_pipeline.stats import EPOCH, day_numbers, decimals_of, labels
from synth_pipeline.thresholds import THRESHOLDS

LEADER_SEPARATOR = "\x1f"  # between the names of two leading columns


@dataclass
class ConditionalQuantiles:
    column: str
    leader: str
    kind: str  # "numerical" | "datetime"
    from_parent: bool
    eta2: float
    few_values: bool
    decimals: int | None
    groups: dict = field(default_factory=dict)  # leader value (text) -> sorted quantiles of the column

    @property
    def label(self) -> str:
        where = "parent." if self.from_parent else ""
        leader = f" and {where}".join(self.leaders)
        return f"{self.column} given {where}{leader} (eta2={self.eta2:.2f})"

    @property
    def leaders(self) -> list[str]:
        """The leading column, or the two leading together."""
        return self.leader.split(LEADER_SEPARATOR)

    @classmethod
    def fit_all(cls, frame: pd.DataFrame, kinds: dict[str, str], parent: pd.DataFrame | None = None,
                parent_kinds: dict[str, str] | None = None) -> list["ConditionalQuantiles"]:
        """One leader per numeric/date column of ``frame`` (the frame as the model learns it);
        ``parent`` holds each row's primary parent row, aligned with ``frame``."""
        if len(frame) < THRESHOLDS.conditional_min_group_rows * 2:
            return []
        leaders = {(c, False): labels(frame[c]) for c, k in kinds.items() if k in ("categorical", "boolean")
                   and c in frame and 2 <= frame[c].nunique(dropna=False) <= THRESHOLDS.conditional_max_categories}
        if parent is not None:
            leaders.update({(c, True): labels(parent[c]).reset_index(drop=True).set_axis(frame.index)
                            for c, k in (parent_kinds or {}).items() if k in ("categorical", "boolean")
                            and c in parent and 2 <= parent[c].nunique(dropna=False) <= THRESHOLDS.conditional_max_categories})
        found = []
        for col, kind in kinds.items():
            if kind not in ("numerical", "datetime") or col not in frame:
                continue
            y = day_numbers(frame[col], kind)
            known = np.isfinite(y)
            if known.sum() < THRESHOLDS.conditional_min_group_rows * 2 or np.nanstd(y) == 0:
                continue
            scores = {leader: _correlation_ratio(y[known], keys.to_numpy()[known]) for leader, keys in leaders.items()}
            best = max(((leader, eta2) for leader, eta2 in scores.items() if eta2 >= THRESHOLDS.min_eta2),
                       key=lambda item: item[1], default=None)
            if best is None:
                continue
            (leader, from_parent), eta2 = best
            keys = leaders[(leader, from_parent)]
            # a second category of the same row that, combined with the first, explains more
            pair = None
            for (other, other_from_parent), other_keys in leaders.items():
                if other_from_parent != from_parent or other == leader:
                    continue
                combined = keys + LEADER_SEPARATOR + other_keys
                if combined.nunique() > THRESHOLDS.conditional_max_categories:
                    continue
                together = _correlation_ratio(y[known], combined.to_numpy()[known])
                if together >= max(eta2, scores[(other, other_from_parent)]) + THRESHOLDS.pair_leader_gain \
                        and together > (pair[1] if pair else 0.0):
                    pair = (f"{leader}{LEADER_SEPARATOR}{other}", together, combined)
            if pair is not None:
                leader, eta2, keys = pair
            keys = keys.to_numpy()[known]
            values = y[known]
            distinct = np.unique(values)
            found_one = cls(col, leader, kind, from_parent, eta2, few_values=len(distinct) <= THRESHOLDS.few_values,
                            decimals=0 if kind == "datetime" else decimals_of(values))
            for key in np.unique(keys):
                group = np.sort(values[keys == key])
                if len(group) >= THRESHOLDS.conditional_min_group_rows:
                    points = group if found_one.few_values else np.quantile(
                        group, np.linspace(0, 1, min(QUANTILES, len(group))))
                    found_one.groups[str(key)] = points
            if found_one.groups:
                found.append(found_one)
        return found

    def apply(self, frame: pd.DataFrame, parent: pd.DataFrame | None = None) -> None:
        """Within each category value, map the column by rank onto its real distribution there."""
        source = parent if self.from_parent else frame
        if source is None or self.column not in frame or frame.empty or any(c not in source for c in self.leaders):
            return
        y = day_numbers(frame[self.column], self.kind)
        keys = labels(source[self.leaders[0]])
        for other in self.leaders[1:]:
            keys = keys + LEADER_SEPARATOR + labels(source[other])
        keys = keys.to_numpy()
        out = y.copy()
        for key, points in self.groups.items():
            rows = np.nonzero((keys == key) & np.isfinite(y))[0]
            if len(rows) == 0:
                continue
            ranks = (pd.Series(y[rows]).rank(method="first").to_numpy() - 0.5) / len(rows)
            if self.few_values:
                out[rows] = points[np.minimum((ranks * len(points)).astype(int), len(points) - 1)]
            else:
                out[rows] = np.interp(ranks, np.linspace(0, 1, len(points)), points)
        if self.kind == "datetime":
            out = np.round(out)
            stamps = EPOCH + pd.to_timedelta(np.where(np.isnan(out), 0, out), unit="D")
            frame[self.column] = pd.Series(stamps, index=frame.index).where(~np.isnan(out))
        else:
            frame[self.column] = as_written(out, self.decimals, frame.index)


def _correlation_ratio(values: np.ndarray, keys: np.ndarray) -> float:
    """Share of the variance of ``values`` between the groups ``keys`` forms (η²)."""
    total = float(np.var(values)) * len(values)
    if total <= 0:
        return 0.0
    _, inverse, counts = np.unique(keys, return_inverse=True, return_counts=True)
    means = np.bincount(inverse, weights=values) / counts
    between = float(np.sum(counts * (means - values.mean()) ** 2))
    # small groups explain variance by chance; adjust like ω² so many-valued leaders do not win by size
    adjusted = (between - (len(counts) - 1) * total / len(values)) / total
    return max(adjusted, 0.0)
