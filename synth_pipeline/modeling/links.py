"""Second foreign keys: each one's link state in one object, and the step that links them all.

A table's primary parent owns its rows; every other foreign key is linked under the second
parent's generated child counts (``linking``), by the first of these that the table has:

* a path the real links follow (``schema.paths.Bridge``: a mark's assessor teaches the
  mark's course), linked along it (``bridges.link_by_bridge``);
* a category whose rows all share one second parent (each route has one teacher in charge:
  the rule ``shared_parent`` of ``schema.constraints``), linked group by group
  (``linking.link_groups``);
* a signature: the second parent's telling categories, drawn per row from a classifier of
  the child row (``signatures.SignatureModel``) and linked within it, under counts
  calibrated per signature;
* else under capacities alone.

Then values each second parent's children hold once are re-dealt (``OnePerParent.relink``).
The parts switch off one by one: ``link_signatures``, ``link_groups``, ``bridges``,
``link_ones``.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import ClassVar

import numpy as np
import pandas as pd

from synth_pipeline.modeling import linking
from synth_pipeline.modeling.bridges import link_by_bridge
from synth_pipeline.modeling.cardinality import calibrate_counts
from synth_pipeline.modeling.context import modelled_columns
from synth_pipeline.modeling.mechanism import FitContext, SampleContext
from synth_pipeline.modeling.siblings import OnePerParent
from synth_pipeline.modeling.signatures import (
    NO_PARENT,
    SignatureModel,
    counts_by_signature,
    linked_signature,
    signature_columns,
    signature_of,
)
from synth_pipeline.schema.metadata import Relationship
from synth_pipeline.schema.paths import Bridge, fit_bridge, route_values
from synth_pipeline.stats import count_column, day_numbers


@dataclass
class SecondLink:
    """How one second foreign key is linked."""

    rel: Relationship
    null_rate: float
    signature: list[str] = field(default_factory=list)  # the parent columns its children pick it by
    signature_counts: dict[str, np.ndarray] = field(default_factory=dict)  # real counts per signature
    signature_model: SignatureModel | None = None
    group: str | None = None  # the child's category whose rows share one parent
    bridge: Bridge | None = None  # the path its links agree with
    ones: list[OnePerParent] = field(default_factory=list)  # values its children hold once per parent
    dates: list[tuple[str, str]] = field(default_factory=list)  # (child date, parent date) kept in order

    @property
    def foreign_key(self) -> str:
        return self.rel.child_foreign_key

    @classmethod
    def fit(cls, context: FitContext, rel: Relationship, index: int) -> "SecondLink":
        fk, frame, real = rel.child_foreign_key, context.frame, context.real
        found = cls(rel, float(frame[fk].isna().mean()))
        found.dates = [tuple(c.columns) for c in context.constraints
                       if c.kind == "parent_date_order" and c.foreign_key == fk]
        if context.on("link_signatures"):
            columns = signature_columns(context.metadata, rel, real)
            if columns:
                kinds = {c.name: c.sdtype for c in modelled_columns(context.metadata, context.table)}
                found.signature = columns
                found.signature_model = SignatureModel.fit(context.rows, kinds, context.context,
                                                           linked_signature(rel, columns, real),
                                                           context.seed + 1 + index)
                found.signature_counts = counts_by_signature(rel, columns, real)
        if context.on("link_groups"):  # the rule "the rows of one <category> share one <fk>"
            found.group = next((c.columns[0] for c in context.constraints
                                if c.kind == "shared_parent" and c.foreign_key == fk), None)
        copied = {c.columns[0] for c in context.constraints if c.kind == "path"}  # copied along their path
        if context.on("bridges") and fk not in copied:
            found.bridge = fit_bridge(context.metadata, rel, real, context.seed)
        if context.on("link_ones") and not rel.is_self_reference:
            found.ones = [one for c in context.categories for one in OnePerParent.fit_all(frame, fk, c)]
        return found

    @property
    def labels(self) -> list[str]:
        out = []
        if self.group:
            out.append(f"the rows of one {self.group} share one {self.foreign_key}")
        if self.bridge is not None:
            out.append(self.bridge.label)
        if self.signature:
            out.append(f"{self.foreign_key} picked by its parent's {', '.join(self.signature)}")
        return out + [one.label for one in self.ones]

    def link(self, rows: pd.DataFrame, context: SampleContext) -> np.ndarray:
        """A parent key (or None) per row."""
        rel, rng = self.rel, context.rng
        n = len(rows)
        source = rows if rel.is_self_reference else context.parents[rel.parent_table_name]
        capacity = source[count_column(rel)].to_numpy(dtype=float)
        keys = source[rel.parent_primary_key].to_numpy(dtype=object)
        signature = self.signature if context.on("link_signatures") else []
        model = self.signature_model if signature else None
        if model is not None:
            wanted = model.sample(rows, context.context, rng).astype(str)
            has_parent = wanted != NO_PARENT
        else:
            has_parent = ~linking.null_mask(n, self.null_rate, rng)
        if rel.is_self_reference:
            return linking.link_self(keys, has_parent, capacity, rng)
        out = np.full(n, None, dtype=object)
        if not has_parent.any():
            return out
        bridge = self.bridge if context.on("bridges") else None
        group = self.group if context.on("link_groups") else None
        if bridge is not None and bridge.table in context.parents:
            route = route_values(bridge, rows, context.parent_rows)[has_parent]
            category = rows[bridge.by].to_numpy(dtype=object)[has_parent] if bridge.by and bridge.by in rows.columns \
                else None
            out[has_parent] = link_by_bridge(route, context.parents[bridge.table], bridge, keys, capacity, rng,
                                             category)
        elif group is not None and group in rows:
            signatures = (wanted[has_parent], signature_of(source, signature)) if model is not None else (None, None)
            dated = [(day_numbers(rows[own], "datetime")[has_parent], day_numbers(source[theirs], "datetime"))
                     for own, theirs in self.dates if own in rows and theirs in source]
            out[has_parent] = linking.link_groups(rows[group].to_numpy()[has_parent], keys, capacity, rng, *signatures,
                                                  dated=dated)
        elif signature:
            parent_signatures = signature_of(source, signature)
            capacity = self._capacity_by_signature(parent_signatures, capacity, rng)
            out[has_parent] = linking.link_by_signature(wanted[has_parent], parent_signatures, keys, capacity, rng)
        else:
            out[has_parent] = linking.link_by_capacity(int(has_parent.sum()), keys, capacity, rng)
        return out

    def _capacity_by_signature(self, parent_signatures: np.ndarray, capacity: np.ndarray,
                               rng: np.random.Generator) -> np.ndarray:
        """Each parent's generated count, rank-mapped onto the real counts of parents with its
        signature: real sports teachers coach many games, others none, and so do synthetic ones."""
        out = capacity.astype(float).copy()
        for group in np.unique(parent_signatures):
            members = parent_signatures == group
            if group in self.signature_counts:
                out[members] = calibrate_counts(capacity[members], self.signature_counts[group], rng)
        # The mix of signatures among synthetic parents differs a little from the real mix:
        # one more rank mapping makes the overall children-per-parent distribution the real one.
        if self.signature_counts:
            out = calibrate_counts(out, np.concatenate(list(self.signature_counts.values())), rng).astype(float)
        return out


@dataclass
class SecondLinks:
    """Every second foreign key of the table, linked in the schema's order."""

    links: dict[str, SecondLink]  # foreign key -> its link state
    name: ClassVar[str] = "links"
    phase: ClassVar[str] = "links"
    refit: ClassVar[bool] = False
    required: ClassVar[bool] = True  # foreign keys must be set: only the parts switch off
    switches: ClassVar[tuple[str, ...]] = ("link_signatures", "link_groups", "bridges", "link_ones")
    needs: ClassVar[tuple[str, ...]] = ("parent_copies", "derived")

    @classmethod
    def fit(cls, context: FitContext):
        links = {rel.child_foreign_key: SecondLink.fit(context, rel, i)
                 for i, rel in enumerate(context.metadata.second_relationships(context.table))}
        return cls(links) if links else None

    def apply(self, frame: pd.DataFrame, context: SampleContext) -> None:
        for fk, link in self.links.items():
            frame[fk] = link.link(frame, context)
            bridge = link.bridge if context.on("bridges") else None
            strata = route_values(bridge, frame, context.parent_rows) \
                if bridge is not None and bridge.table in context.parents else None
            for one in link.ones if context.on("link_ones") else []:
                one.relink(frame, context.rng, strata)

    def fitted_switches(self) -> list[str]:
        """The switches of the parts some foreign key's link state holds."""
        links = self.links.values()
        held = {"link_signatures": any(link.signature for link in links), "link_groups": any(link.group for link in links),
                "bridges": any(link.bridge is not None for link in links), "link_ones": any(link.ones for link in links)}
        return [name for name, fitted in held.items() if fitted]

    @property
    def bridges(self) -> dict[str, Bridge]:
        return {fk: link.bridge for fk, link in self.links.items() if link.bridge is not None}

    @property
    def columns(self) -> set[str]:
        out = set(self.links)
        for link in self.links.values():
            out |= {one.column for one in link.ones} | ({link.group} if link.group else set())
            out |= {link.bridge.by} if link.bridge is not None and link.bridge.by else set()
        return out

    @property
    def label(self) -> str:
        return "; ".join(label for link in self.links.values() for label in link.labels)
