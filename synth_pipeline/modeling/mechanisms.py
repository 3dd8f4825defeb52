"""The registry: every mechanism a table model is made of, in the order they apply.

Each entry keeps the ``Mechanism`` contract (``modeling.mechanism``). The column-level work
lives in the modules of each family (``cardinality``, ``siblings``, ``pair_support``,
``conditional``, ``derived``, ``links``, ``generator``); the classes here fit
them for one table from a ``FitContext`` and apply them to a synthetic frame.

``REGISTRY`` is ordered by phase (``PHASES``) and, within a phase, by the order the
mechanisms apply in; a mechanism that reads another's fit names it in ``needs`` and is fitted
after it (``fit_order``).
"""

from __future__ import annotations

import logging
from dataclasses import dataclass, field
from typing import ClassVar

import numpy as np
import pandas as pd

from synth_pipeline.errors import ConfigError
from synth_pipeline.modeling.bridges import copy_along_paths
from synth_pipeline.modeling.cardinality import (
    CountsWithin,
    CountTotals,
    LabelCounts,
    calibrate_counts,
    impose_correlation,
    rank_correlation,
    root_correlated_columns,
)
from synth_pipeline.modeling.conditional import ConditionalQuantiles
from synth_pipeline.modeling.derived import DerivedColumns
from synth_pipeline.modeling.generator import Generator
from synth_pipeline.modeling.links import SecondLinks
from synth_pipeline.modeling.mechanism import PHASES, FitContext, SampleContext
from synth_pipeline.modeling.pair_support import (
    NameQuota,
    PairSupport,
    fit_determined_supports,
    fit_nested_supports,
    fit_pair_supports,
)
from synth_pipeline.modeling.siblings import OnePerParent, SiblingSpread
from synth_pipeline.schema.metadata import ID_SDTYPE, Column, Metadata, Relationship
from synth_pipeline.schema.number_shapes import NumberShape, apply_shapes, fit_shapes
from synth_pipeline.stats import chance_of_equality
from synth_pipeline.thresholds import THRESHOLDS

log = logging.getLogger(__name__)


class _Parts:
    """A mechanism made of column-level parts (one per column or column pair)."""

    parts: list
    name: ClassVar[str]
    phase: ClassVar[str]
    refit: ClassVar[bool] = False
    needs: ClassVar[tuple[str, ...]] = ()

    @property
    def columns(self) -> set[str]:
        return {p.column for p in self.parts}

    @property
    def label(self) -> str:
        return "; ".join(p.label for p in self.parts)

    @classmethod
    def of(cls, parts: list):
        return cls(parts) if parts else None

    def apply(self, frame: pd.DataFrame, context: SampleContext) -> None:
        for part in self.parts:
            part.apply(frame, context.rng)


# ------------------------------------------------------------------ generated
@dataclass
class CountCalibration:
    """Children-per-parent counts mapped by rank onto the real counts (long tails included)."""

    real_counts: dict[str, np.ndarray]
    name: ClassVar[str] = "count_calibration"
    phase: ClassVar[str] = "generated"
    refit: ClassVar[bool] = False
    needs: ClassVar[tuple[str, ...]] = ()

    @classmethod
    def fit(cls, context: FitContext):
        return cls(context.real_counts) if context.real_counts else None

    def apply(self, frame: pd.DataFrame, context: SampleContext) -> None:
        for col, real in self.real_counts.items():
            frame[col] = calibrate_counts(frame[col].to_numpy(dtype=float), real, context.column_rng)

    @property
    def columns(self) -> set[str]:
        return set(self.real_counts)

    @property
    def label(self) -> str:
        return f"children per parent calibrated to the real counts: {', '.join(self.real_counts)}"


@dataclass
class RootCorrelation:
    """A root table's numbers, dates and owned-children counts re-paired to their real rank
    correlation (77 districts are too few rows for the GAN to learn how they go together)."""

    correlated: list[str]  # the columns re-paired
    target: np.ndarray  # their real normal-score correlation
    name: ClassVar[str] = "root_correlation"
    phase: ClassVar[str] = "generated"
    refit: ClassVar[bool] = False
    needs: ClassVar[tuple[str, ...]] = ("derived", "counts_within")

    def apply(self, frame: pd.DataFrame, context: SampleContext) -> None:
        if len(frame) > 2:
            impose_correlation(frame, self.correlated, self.target, context.column_rng)

    @property
    def columns(self) -> set[str]:
        return set(self.correlated)

    @classmethod
    def fit(cls, context: FitContext):
        if context.primary is not None:
            return None
        within = context.found.get("counts_within")
        columns = root_correlated_columns(context.metadata, context.table, context.training, context.modelled,
                                          {p.column for p in within.parts} if within is not None else set())
        target = rank_correlation(context.training, columns)
        return None if target is None else cls(columns, target)

    @property
    def label(self) -> str:
        return f"a root table's columns re-paired to their real rank correlation: {', '.join(self.correlated)}"


# -------------------------------------------------------------------- columns
@dataclass
class ParentCopies:
    """Columns equal to one column of the primary parent row in every real row, copied from
    the synthetic parent (a course's department is its lead teacher's)."""

    columns_from: dict[str, str]  # column -> the primary parent's column it equals
    name: ClassVar[str] = "parent_copies"
    phase: ClassVar[str] = "columns"
    refit: ClassVar[bool] = True
    needs: ClassVar[tuple[str, ...]] = ()

    @classmethod
    def fit(cls, context: FitContext):
        if not context.conditional:
            return None
        found = parent_copies(context.metadata, context.primary, context.frame, context.parent_rows,
                              context.constraints)
        context.modelled = [c for c in context.modelled if c.name not in found]
        return cls(found) if found else None

    def apply(self, frame: pd.DataFrame, context: SampleContext) -> None:
        for col, parent_col in self.columns_from.items():
            frame[col] = context.parent_rows[parent_col].to_numpy()

    @property
    def columns(self) -> set[str]:
        return set(self.columns_from)

    @property
    def label(self) -> str:
        return "copied from the primary parent (equal in every real row): " + ", ".join(
            f"{c} = {p}" for c, p in self.columns_from.items())


# ----------------------------------------------------------------- categories
class _UnderPrimary(_Parts):
    """Parts fitted per generated category under the primary foreign key, applied with each
    row's primary parent."""

    phase: ClassVar[str] = "categories"
    needs: ClassVar[tuple[str, ...]] = ("parent_copies", "derived")

    @classmethod
    def fit(cls, context: FitContext):
        if context.primary is None:
            return None
        fk = context.primary.child_foreign_key
        return cls.of([part for c in context.categories for part in cls.fit_column(context.frame, fk, c, context.seed)])

    def apply(self, frame: pd.DataFrame, context: SampleContext) -> None:
        for part in self.parts:
            part.apply(frame, context.rng, context.owners)


@dataclass
class SiblingSpreads(_UnderPrimary):
    """How many distinct values of a category one parent's children share (``SiblingSpread``)."""

    parts: list[SiblingSpread] = field(default_factory=list)
    name: ClassVar[str] = "sibling_spreads"

    @staticmethod
    def fit_column(frame: pd.DataFrame, fk: str, column: str, seed: int) -> list[SiblingSpread]:
        found = SiblingSpread.fit(frame, fk, column, seed)
        return [] if found is None else [found]


@dataclass
class PairSupports(_Parts):
    """Strongly associated category pairs kept to the real pairs (``pair_support``)."""

    parts: list[PairSupport] = field(default_factory=list)
    name: ClassVar[str] = "pair_supports"
    phase: ClassVar[str] = "categories"
    needs: ClassVar[tuple[str, ...]] = ("parent_copies", "derived")

    @classmethod
    def fit(cls, context: FitContext):
        rows, categories, copies = context.rows, context.categories, context.copies
        found = fit_pair_supports(rows, categories)
        found += fit_determined_supports(rows, categories, [c for c in copies if c in context.category_columns],
                                         {c for s in found for c in (s.leader, s.follower)})
        found += fit_nested_supports(rows, [c for c in categories if c not in copies], found)
        return cls.of(found)

    @property
    def columns(self) -> set[str]:
        return {p.follower for p in self.parts}


@dataclass
class OneValuePerParent(_UnderPrimary):
    """A value each parent's children hold once (one lead instructor per course)."""

    parts: list[OnePerParent] = field(default_factory=list)
    name: ClassVar[str] = "one_per_parent"

    @staticmethod
    def fit_column(frame: pd.DataFrame, fk: str, column: str, seed: int) -> list[OnePerParent]:
        return OnePerParent.fit_all(frame, fk, column)


@dataclass
class NameQuotas(_Parts):
    """Near-unique categories (a playlist's name) kept to their real counts."""

    parts: list[NameQuota] = field(default_factory=list)
    name: ClassVar[str] = "name_quotas"
    phase: ClassVar[str] = "categories"
    needs: ClassVar[tuple[str, ...]] = ("parent_copies", "derived", "pair_supports")

    @classmethod
    def fit(cls, context: FitContext):
        supports = context.found.get("pair_supports")
        supports = supports.parts if supports is not None else []
        return cls.of([q for c in context.categories if (q := NameQuota.fit(context.rows, c, supports))])

    @property
    def columns(self) -> set[str]:
        return {c for q in self.parts for c in (q.column, q.leader) if c}


@dataclass
class LookupLabels:
    """A lookup table's labels and their real children (``LabelCounts``)."""

    counts: LabelCounts
    name: ClassVar[str] = "label_counts"
    phase: ClassVar[str] = "categories"
    refit: ClassVar[bool] = False
    needs: ClassVar[tuple[str, ...]] = ("parent_copies", "derived")

    @classmethod
    def fit(cls, context: FitContext):
        found = LabelCounts.fit(context.rows, context.categories, context.real_counts)
        return None if found is None else cls(found)

    def apply(self, frame: pd.DataFrame, context: SampleContext) -> None:
        self.counts.apply(frame, context.rng)

    @property
    def columns(self) -> set[str]:
        return {self.counts.column}

    @property
    def label(self) -> str:
        return self.counts.label


@dataclass
class Conditionals(_Parts):
    """Numbers kept to their real distribution per category, or per parent value."""

    parts: list[ConditionalQuantiles] = field(default_factory=list)
    name: ClassVar[str] = "conditionals"
    phase: ClassVar[str] = "categories"
    needs: ClassVar[tuple[str, ...]] = ("derived",)

    @classmethod
    def fit(cls, context: FitContext):
        kinds = {c.name: c.sdtype for c in context.modelled if c.name not in context.real_counts}
        parent = (context.parent_rows, context.parent_kinds) if context.settings.conditional else (None, None)
        return cls.of(ConditionalQuantiles.fit_all(context.training, kinds, *parent))

    def apply(self, frame: pd.DataFrame, context: SampleContext) -> None:
        for part in self.parts:
            part.apply(frame, context.parent_rows)


# --------------------------------------------------------------------- derive
@dataclass
class Derived:
    """Columns computed from others (a map, a product, a difference, an offset from the
    parent's date): learned as what is left and rebuilt (``DerivedColumns``)."""

    model: DerivedColumns
    name: ClassVar[str] = "derived"
    phase: ClassVar[str] = "derive"
    refit: ClassVar[bool] = True
    required: ClassVar[bool] = True  # fitted even when switched off (it knows the dates' times of day)
    needs: ClassVar[tuple[str, ...]] = ("parent_copies",)

    @classmethod
    def fit(cls, context: FitContext):
        """Always fitted (it also knows which dates carry a time of day); switched off, it
        derives nothing. Turns the training frame into what the GAN learns."""
        modelled = context.modelled
        found = DerivedColumns.discover(context.training[[c.name for c in modelled]],
                                        {c.name: c.sdtype for c in modelled}, context.parent_rows, context.parent_kinds)
        if not context.on(cls.name):
            found.derivations = []
        training = found.forward(context.training, context.parent_rows)
        modelled = [Column(c.name, "numerical") if c.name in found.learned_as_numbers else c
                    for c in modelled if c.name not in found.dropped]
        modelled += [Column(c, "numerical", computer_representation="Int64") for c in context.real_counts]
        context.training = training[[c.name for c in modelled]]
        context.modelled = modelled
        return cls(found)

    def apply(self, frame: pd.DataFrame, context: SampleContext) -> pd.DataFrame | None:
        return self.model.inverse(frame, context.parent_rows) if context.generated else None

    @property
    def columns(self) -> set[str]:
        return {d.column for d in self.model.derivations}

    @property
    def label(self) -> str:
        return f"derived: {', '.join(sorted(self.columns))}"


# --------------------------------------------------------------------- counts
@dataclass
class CategoryTotals(_Parts):
    """A small table's children per category (a district's accounts by region)."""

    parts: list[CountTotals] = field(default_factory=list)
    name: ClassVar[str] = "count_totals"
    phase: ClassVar[str] = "counts"
    needs: ClassVar[tuple[str, ...]] = ("label_counts",)

    @classmethod
    def fit(cls, context: FitContext):
        if context.found.get("label_counts") is not None:
            return None
        n = len(context.rows)
        return cls.of([found for c, counts in context.real_counts.items() if len(counts) == n
                       and (found := CountTotals.fit(context.rows, c, counts, context.category_columns)) is not None])

    @property
    def columns(self) -> set[str]:
        return {p.count for p in self.parts}


@dataclass
class ChildrenWithin(_Parts):
    """Children only for some values of a category (only sports teachers coach)."""

    parts: list[CountsWithin] = field(default_factory=list)
    name: ClassVar[str] = "counts_within"
    phase: ClassVar[str] = "counts"
    needs: ClassVar[tuple[str, ...]] = ()

    @classmethod
    def fit(cls, context: FitContext):
        return cls.of([found for c, counts in context.real_counts.items()
                       if (found := CountsWithin.fit(context.raw_training, c, counts,
                                                     context.category_columns)) is not None])

    @property
    def columns(self) -> set[str]:
        return {p.column for p in self.parts} | {p.count for p in self.parts}


# ---------------------------------------------------------------------- nulls
@dataclass
class NullPatterns:
    """Columns null together in every real row are null together: a category follows the
    other column's nulls (drawn from its own generated values where it must be filled), two
    numbers or dates share the union of their nulls."""

    pairs: list[tuple[str, str]]  # (leading column, following column)
    follows_category: list[bool]
    name: ClassVar[str] = "null_patterns"
    phase: ClassVar[str] = "nulls"
    refit: ClassVar[bool] = False
    needs: ClassVar[tuple[str, ...]] = ()

    @classmethod
    def fit(cls, context: FitContext):
        kinds = {c.name: c.sdtype for c in context.metadata.table(context.table).columns.values()}
        pairs, categorical = [], []
        for c in context.constraints:
            if c.kind != "null_pattern":
                continue
            a, b = c.columns
            if kinds.get(a) in ("categorical", "boolean") and kinds.get(b) not in ("categorical", "boolean"):
                a, b = b, a  # the category follows
            pairs.append((a, b))
            categorical.append(kinds.get(b) in ("categorical", "boolean"))
        return cls(pairs, categorical) if pairs else None

    def apply(self, frame: pd.DataFrame, context: SampleContext) -> None:
        for (a, b), category in zip(self.pairs, self.follows_category):
            if a not in frame.columns or b not in frame.columns:
                continue
            lead, follow = frame[a].isna().to_numpy(), frame[b].isna().to_numpy()
            if category:
                frame.loc[lead & ~follow, b] = None
                fill = ~lead & follow
                pool = frame[b].dropna().to_numpy(dtype=object)
                if fill.any() and len(pool):
                    frame.loc[fill, b] = context.rng.choice(pool, int(fill.sum()))
            else:
                either = lead | follow
                frame.loc[either, a] = None
                frame.loc[either, b] = None

    @property
    def columns(self) -> set[str]:
        return {c for pair in self.pairs for c in pair}

    @property
    def label(self) -> str:
        return "null together: " + "; ".join(f"{a}, {b}" for a, b in self.pairs)


# --------------------------------------------------------------------- finish
@dataclass
class NumberShapes(_Parts):
    """Each number column's range, support or grid (``schema.number_shapes``), applied by
    repair before the rules between columns (a swap then keeps both)."""

    parts: list[NumberShape] = field(default_factory=list)
    name: ClassVar[str] = "number_shapes"
    phase: ClassVar[str] = "repair_values"
    needs: ClassVar[tuple[str, ...]] = ()

    @classmethod
    def fit(cls, context: FitContext):
        numbers = [c.name for c in context.metadata.table(context.table).columns.values()
                   if c.sdtype == "numerical" and c.name not in context.metadata.key_columns(context.table)]
        return cls.of(fit_shapes(context.full, numbers))

    def apply(self, frame: pd.DataFrame, context: SampleContext) -> None:
        apply_shapes(frame, self.parts)


@dataclass
class PathCopies:
    """A foreign key equal to the one reached along a path in (nearly) every real row is
    copied along it (a payment's customer is its rental's), once the foreign keys it reads
    are repaired."""

    paths: list
    name: ClassVar[str] = "path_copies"
    phase: ClassVar[str] = "repair_links"
    refit: ClassVar[bool] = False
    needs: ClassVar[tuple[str, ...]] = ()

    @classmethod
    def fit(cls, context: FitContext):
        paths = [c for c in context.constraints if c.kind == "path"]
        return cls(paths) if paths else None

    def apply(self, frame: pd.DataFrame, context: SampleContext) -> None:
        copy_along_paths(frame, self.paths, context.parents, context.metadata)

    @property
    def columns(self) -> set[str]:
        return {c.columns[0] for c in self.paths}

    @property
    def label(self) -> str:
        return "; ".join(c.description for c in self.paths)


REGISTRY: tuple[type, ...] = (
    Generator,  # "generate": the GAN's rows, raked to the real shares
    CountCalibration, RootCorrelation,
    ParentCopies,
    SiblingSpreads, PairSupports, OneValuePerParent, NameQuotas, LookupLabels, Conditionals,
    Derived,
    SecondLinks,  # "links": second foreign keys, with their parts' switches
    CategoryTotals, ChildrenWithin,
    NullPatterns,
    NumberShapes,  # applied by repair
    PathCopies,  # applied by repair
)
assert [PHASES.index(m.phase) for m in REGISTRY] == sorted(PHASES.index(m.phase) for m in REGISTRY)


def switches(mechanism: type) -> tuple[str, ...]:
    """The names that switch a mechanism (or its parts) off."""
    return getattr(mechanism, "switches", (mechanism.name,))


NAMES = tuple(name for m in REGISTRY for name in switches(m))
# switched off, these change what is trained or what another mechanism's fit reads: the ablation refits
REFIT = frozenset(name for m in REGISTRY for name in switches(m) if name in getattr(m, "refit_switches", ())
                  or (m.refit and name == m.name)) | frozenset(need for m in REGISTRY for need in m.needs)


def require_known(names) -> tuple[str, ...]:
    unknown = [n for n in names if n not in NAMES]
    if unknown:
        raise ConfigError(f"config: mechanisms_off: unknown mechanism(s) {', '.join(unknown)}; "
                          f"known: {', '.join(NAMES)}")
    return tuple(names)


def fit_order(registry: tuple[type, ...] = REGISTRY) -> list[type]:
    """The registry in an order where each mechanism comes after those it ``needs``."""
    by_name = {m.name: m for m in registry}
    out: list[type] = []

    def visit(m: type, path: tuple[str, ...] = ()) -> None:
        if m in out:
            return
        if m.name in path:
            raise RuntimeError(f"mechanisms need each other: {' -> '.join(path + (m.name,))}")
        for need in m.needs:
            visit(by_name[need], path + (m.name,))
        out.append(m)

    for m in registry:
        visit(m)
    return out


def parent_copies(metadata: Metadata, primary: Relationship, frame: pd.DataFrame, parent_rows: pd.DataFrame,
                  constraints: list = ()) -> dict[str, str]:
    """Columns equal to one column of the primary parent row in every real row (nulls included).

    From the parent's identity text (Faker draws it row by row) only into identity text of the
    same kind: an invoice's billing address and city are its customer's synthetic ones, while
    a category never takes a Faker value. Not where a discovered constraint ties the column to
    one that is not copied (``BillingCity -> BillingCountry`` holds only if both are copied)."""
    if len(frame) < THRESHOLDS.min_copy_rows:
        return {}
    keys = set(metadata.key_columns(primary.child_table_name)) | {
        r.child_foreign_key for r in metadata.foreign_keys(primary.child_table_name)}
    child = [c for c in metadata.table(primary.child_table_name).columns.values()
             if c.sdtype != ID_SDTYPE and c.name not in keys]
    parent = [c for c in metadata.table(primary.parent_table_name).columns.values() if c.sdtype != ID_SDTYPE]
    found = {}
    head = min(len(frame), 200)  # most pairs differ within the first rows: compare those first
    for c in child:
        values = frame[c.name].reset_index(drop=True)
        if values.nunique() < 2:
            continue
        text = values.astype(str).where(values.notna(), None)
        for p in parent:
            if p.is_identity_text and p.sdtype != c.sdtype:
                continue
            other = parent_rows[p.name]
            if (values.isna().to_numpy() != other.isna().to_numpy()).any() or \
                    not text.iloc[:head].equals(other.iloc[:head].astype(str).where(other.iloc[:head].notna(), None)):
                continue
            other_text = other.astype(str).where(other.notna(), None)
            if text.equals(other_text) and chance_of_equality(text, other_text) ** len(text) < 1e-3:
                found[c.name] = p.name
                break
    own = {c.name for c in child}
    changed = True
    while changed:
        changed = False
        for constraint in constraints:
            tied = set(constraint.columns) & own
            if tied & set(found) and not tied <= set(found):
                for col in tied & set(found):
                    del found[col]
                changed = True
    return found
