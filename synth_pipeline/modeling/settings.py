"""The model's settings: one class, built from the run's configuration (``RunSettings.model_settings``)."""

from __future__ import annotations

import zlib
from dataclasses import dataclass

QUALITY_STEPS = {"fast": (60, 150), "default": (250, 900), "best": (1000, 4000)}
SMALL_TABLE_ROWS = 500  # below this many rows, the preset's minimum steps shrink in proportion (to 40%)


@dataclass(frozen=True)
class ModelSettings:
    quality: str = "default"
    steps: int | None = None  # overrides the quality preset
    device: str = "cpu"
    conditional: bool = True  # children generated given their parent row (False: unconditioned)
    constraints_off: tuple[str, ...] = ()  # "table: description" of discovered constraints to ignore
    constraints_add: tuple[str, ...] = ()  # "table: rule" constraints a user adds
    fit_rows: int = 0  # > 0: a larger table is fitted on a consistent subsample of about this many rows
    mechanisms_off: tuple[str, ...] = ()  # registry names neither fitted nor applied (the ablation's switch)
    seed: int = 0  # the run's seed (rare values' stand-ins are a function of it)
    privacy_min_count: int = 5  # category/text values in fewer real rows are not published verbatim
    privacy_allow: tuple[str, ...] = ()  # "table.column" whose rare values may be published

    def on(self, mechanism: str) -> bool:
        return mechanism not in self.mechanisms_off

    def steps_for(self, rows: int) -> int:
        if self.steps is not None:
            return self.steps
        low, high = QUALITY_STEPS[self.quality]
        # a table of a few dozen rows is seen thousands of times over by then: fewer steps
        low = max(int(low * 0.4), int(low * min(1.0, rows / SMALL_TABLE_ROWS)))
        return int(min(high, low + rows // 30))


def table_seed(run_seed: int, table: str, purpose: str = "") -> int:
    """One seed per table and purpose, derived from the run seed and the names."""
    return (run_seed * 1_000_003 + zlib.crc32(f"{table}/{purpose}".encode())) % (2**31)
