"""The contract every model mechanism keeps, and what it is given to fit and to apply.

A *mechanism* keeps one property of the real table in the synthetic rows (children per
parent, a category pair's support, a rule between columns, ...). Each is a class with

* ``name``: its switch (``mechanisms_off`` in the configuration; the ablation's label),
* ``phase``: when it runs while sampling (``PHASES``, in order),
* ``refit``: whether switching it off changes what the GAN is trained on,
* ``fit(context) -> Self | None``: learned from the real table (None: nothing to keep here),
* ``apply(frame, context)``: sets its ``columns`` in the synthetic rows, in place,
* ``label``: one line for the log.

``TableModel`` fits the registered mechanisms in registry order (``modeling.mechanisms``:
a later one may read what an earlier one found, through ``FitContext.found``) and applies
them phase by phase.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import TYPE_CHECKING, ClassVar, Protocol

import numpy as np
import pandas as pd

from synth_pipeline.schema.keys import WHOLE, Partition
from synth_pipeline.schema.metadata import Column, Metadata, Relationship

if TYPE_CHECKING:
    from synth_pipeline.modeling.settings import ModelSettings
    from synth_pipeline.schema.constraints import Constraint

# when a mechanism runs while sampling, in this order (before "links" the model itself writes
# the keys, identity text and primary foreign key; before "finish", a composite key's pairs)
PHASES = (
    "generate",  # the generator's rows (raked among candidates)
    "generated",  # on the generated rows: child counts calibrated and correlated
    "columns",  # columns copied from the parent
    "categories",  # categories and numbers kept per parent, per pair, per value
    "derive",  # columns computed from others
    "links",  # second foreign keys (then values held once per second parent)
    "counts",  # children per category (after every step that may change a category)
    "nulls",  # columns null together
    "finish",  # after a composite key's second column is made unique per parent
    # applied by repair (``repair.repair_table``), not while sampling:
    "repair_values",  # before repair enforces the rules between columns (number shapes)
    "repair_links",  # after the foreign keys and dates are repaired (foreign keys copied along paths)
)
SAMPLING_PHASES = PHASES[:PHASES.index("finish") + 1]


@dataclass
class FitContext:
    """What fitting one table's mechanisms reads, built once per table."""

    metadata: Metadata
    table: str
    settings: "ModelSettings"
    seed: int
    real: dict[str, pd.DataFrame]  # the real tables the model reads (the table itself as fitted)
    full: pd.DataFrame  # every real row of the table
    frame: pd.DataFrame  # the rows fitted (all, or a subsample of whole sibling groups)
    rows: pd.DataFrame  # the same, indexed 0..n-1
    primary: Relationship | None
    parent_rows: pd.DataFrame | None  # each fitted row's primary parent row
    parent_kinds: dict[str, str] | None
    constraints: list["Constraint"]
    raw_training: pd.DataFrame  # the fitted rows with their child counts
    training: pd.DataFrame  # ... as the GAN learns them (after ``derived``: the modelled columns only)
    modelled: list[Column]  # the columns the GAN learns (derived ones as numbers)
    real_counts: dict[str, np.ndarray]  # count column -> real children per row
    category_columns: list[str]  # every categorical or boolean column
    context: np.ndarray | None = None  # each row's encoded parent context
    found: dict[str, object] = field(default_factory=dict)  # mechanism name -> what it fitted

    def on(self, name: str) -> bool:
        return self.settings.on(name)

    @property
    def conditional(self) -> bool:
        return self.settings.conditional and self.primary is not None

    @property
    def copies(self) -> dict[str, str]:
        found = self.found.get("parent_copies")
        return found.columns_from if found is not None else {}

    @property
    def categories(self) -> list[str]:
        """Modelled categories that are generated (not derived, not copied from the parent)."""
        derived = self.found.get("derived")
        dropped = derived.model.dropped if derived is not None else set()
        table = self.metadata.table(self.table)
        keys = self.metadata.key_columns(self.table)
        return [c.name for c in table.columns.values() if c.sdtype in ("categorical", "boolean")
                and c.name not in keys and c.name not in dropped and c.name not in self.copies]


class AlignedRows:
    """A parent table's rows, one per child row (``rows``: each child's position in it), read
    like a frame one column at a time: a column is repeated only when a mechanism reads it
    (a table of millions of rows would otherwise hold every parent column once per row)."""

    def __init__(self, parent: pd.DataFrame, rows: np.ndarray):
        self._parent, self._rows, self._columns = parent, rows, {}

    def __contains__(self, column) -> bool:
        return column in self._parent.columns

    def __getitem__(self, column: str) -> pd.Series:
        if column not in self._columns:
            self._columns[column] = self._parent[column].iloc[self._rows].reset_index(drop=True)
        return self._columns[column]

    def __len__(self) -> int:
        return len(self._rows)


@dataclass
class SampleContext:
    """What applying a table's mechanisms reads while sampling."""

    metadata: Metadata
    parents: dict[str, pd.DataFrame]  # the synthetic parent tables (and context tables)
    rng: np.random.Generator
    column_rng: np.random.Generator  # the generator's stream ("columns" phase)
    owners: np.ndarray | None = None  # each row's primary parent key
    parent: pd.DataFrame | None = None  # the primary parent table
    rows: np.ndarray | None = None  # each row's position in it
    parent_context: np.ndarray | None = None  # each parent's encoded context
    _parent_rows: "AlignedRows | None" = field(default=None, repr=False)
    part: Partition = WHOLE
    off: frozenset[str] = frozenset()  # mechanisms switched off for this sampling run
    generated: bool = True  # the table has a generator (else no column was generated)

    def on(self, name: str) -> bool:
        return name not in self.off

    @property
    def parent_rows(self) -> "AlignedRows | None":
        """Each row's primary parent row, a column at a time (see ``AlignedRows``)."""
        if self._parent_rows is None and self.parent is not None:
            self._parent_rows = AlignedRows(self.parent, self.rows)
        return self._parent_rows

    @property
    def context(self) -> np.ndarray | None:
        """Each row's encoded parent context."""
        return None if self.parent_context is None else self.parent_context[self.rows]


class Mechanism(Protocol):
    name: ClassVar[str]
    phase: ClassVar[str]
    refit: ClassVar[bool]

    @classmethod
    def fit(cls, context: FitContext) -> "Mechanism | None": ...

    def apply(self, frame: pd.DataFrame, context: SampleContext) -> None: ...

    @property
    def columns(self) -> set[str]: ...

    @property
    def label(self) -> str: ...
