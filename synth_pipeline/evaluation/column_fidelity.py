"""Is every column as real as its type? Per column of a synthetic table against its real twin:

* numbers outside the real range, or off the real support (few values) or grid (step and
  offset), as ``schema.number_shapes`` learns them from the real column;
* for timestamps (with at least ``HOUR_ROWS`` real values that carry a time of day): the
  largest gap between the real and synthetic share of any hour of the day;
* columns constant in the real table (no nulls) that are not the same constant.

Only columns that break something are listed: the report's line per column.
"""

from __future__ import annotations

import pandas as pd

from synth_pipeline.schema.metadata import Metadata
from synth_pipeline.schema.number_shapes import NumberShape

HOUR_ROWS = 2000
HOUR_GAP = 0.02  # a larger gap in any hour's share is listed


def column_fidelity(real: pd.DataFrame, synthetic: pd.DataFrame, metadata: Metadata, name: str) -> dict:
    table, keys = metadata.table(name), metadata.key_columns(name)
    found: dict = {"off_range_or_grid": {}, "hour_share_gap": {}, "constants_lost": []}
    for column, spec in table.columns.items():
        if column in keys or spec.sdtype in ("binary", "id") or column not in synthetic.columns:
            continue
        if spec.sdtype == "numerical" and (shape := NumberShape.fit(column, real[column])) is not None:
            if broken := shape.breaks(synthetic[column]):
                found["off_range_or_grid"][column] = broken
        if spec.sdtype == "datetime":
            a = pd.to_datetime(real[column], errors="coerce").dropna()
            b = pd.to_datetime(synthetic[column], errors="coerce").dropna()
            if len(a) >= HOUR_ROWS and len(b) and bool((a != a.dt.normalize()).any()):
                hours = range(24)
                gap = (a.dt.hour.value_counts(normalize=True).reindex(hours, fill_value=0)
                       - b.dt.hour.value_counts(normalize=True).reindex(hours, fill_value=0)).abs().max()
                found["hour_share_gap"][column] = round(float(gap), 4)
        present = real[column].dropna()
        if len(present) == len(real) and len(present) and present.nunique() == 1 and len(synthetic):
            if not (synthetic[column].astype(str) == present.astype(str).iloc[0]).all():
                found["constants_lost"].append(column)
    return found


def breaks(found: dict) -> int:
    """How many columns break a rule (an hour share more than ``HOUR_GAP`` off counts)."""
    return (len(found["off_range_or_grid"]) + len(found["constants_lost"])
            + sum(gap > HOUR_GAP for gap in found["hour_share_gap"].values()))
