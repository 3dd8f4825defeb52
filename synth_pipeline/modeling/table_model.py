"""The per-table model: fit on the real table, sample given the synthetic parents.

What a model of table ``t`` holds:

* a CTGAN over ``t``'s modelled columns plus one child-count column per relationship in
  which ``t`` is the parent, so counts correlate with the row's attributes and each other;
* the real children-per-parent distributions, to calibrate generated counts by rank;
* key formats (primary and alternate keys) and identity-column specs, never real values;
* each foreign key's null rate;
* the columns that equal a column of the primary parent in every real row (a course's
  department is its lead teacher's, an invoice line's price its track's): copied from the
  synthetic parent instead of generated.

Rows of a child table are created per synthetic primary parent from that parent's
calibrated count; other foreign keys are linked under the second parent's own counts.
"""

from __future__ import annotations

import logging
import pickle
import time
import zlib
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
import pandas as pd

from synth_pipeline.errors import ConfigError
from synth_pipeline.modeling import linking
from synth_pipeline.schema.constraints import Constraint, discover_table, functional_map, parse_added
from synth_pipeline.modeling.bridges import copy_along_paths
from synth_pipeline.modeling.bridges import link_by_bridge
from synth_pipeline.schema.paths import Bridge, bridge_tables, fit_bridge, route_values
from synth_pipeline.modeling.cardinality import (CountTotals, CountsWithin, LabelCounts, calibrate_counts,
                                                 rank_correlation_orders, normal_scores)
from synth_pipeline.stats import (chance_of_equality, child_counts, copy_columns, count_column, cramers_v,
                                  is_count_column, unique_row_digests)
from synth_pipeline.modeling.context import ContextEncoder
from synth_pipeline.modeling.derived import DerivedColumns
from synth_pipeline.modeling.marginals import (JOINT_SEPARATOR, QUOTA_MAX_ROWS, PairJoints, ParentJoint,
                                               category_targets, choose_per_slot, choose_with_quotas,
                                               fit_parent_joints, rake_weights)
from synth_pipeline.modeling.ctgan_model import ContextCTGAN, GanSettings, with_fixed_threads
from synth_pipeline.schema.keys import WHOLE, KeyFormat, Partition
from synth_pipeline.schema.number_shapes import NumberShape, apply_shapes, fit_shapes
from synth_pipeline.modeling.pii import IdentitySpec, guess_locale
from synth_pipeline.modeling.residuals import ContextResiduals
from synth_pipeline.modeling.signatures import SignatureModel
from synth_pipeline.modeling.fit_sample import fit_sample
from synth_pipeline.modeling.pair_support import (NameQuota, PairSupport, fit_determined_supports, fit_nested_supports,
                                                  fit_pair_supports)
from synth_pipeline.modeling.siblings import OnePerParent, SiblingSpread
from synth_pipeline.modeling.conditional import ConditionalQuantiles
from synth_pipeline.modeling.transforms import TableCodec
from synth_pipeline.stats import day_numbers
from synth_pipeline.schema.metadata import ID_SDTYPE, MODELLED_SDTYPES, Column, Metadata, Relationship

log = logging.getLogger(__name__)

MIN_COPY_ROWS = 5  # and equal often enough that chance cannot explain it (chance_of_equality)
MIN_GROUP_ROWS = 20  # linked rows needed to find a category whose rows share one second parent
CANDIDATES_PER_ROW = 10  # generated per output row; raking keeps the one that fits the (conditional) shares
PAIR_CANDIDATES_PER_ROW = 20  # ... where column pairs are raked too (more targets need more choice)
SAMPLE_CHUNK_ROWS = 25_000  # rows generated at once
SAMPLE_CHUNK_CANDIDATES = 250_000  # ... and at most this many candidate rows
SMALL_TABLE_ROWS = 500  # below this many rows, the preset's minimum steps shrink in proportion (to 40%)
QUALITY_STEPS = {"fast": (60, 150), "default": (250, 900), "best": (1000, 4000)}


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


@dataclass
class TableModel:
    table: str
    real_rows: int
    codec: TableCodec | None
    gan: ContextCTGAN | None
    key_formats: dict[str, KeyFormat]
    identities: list[IdentitySpec]
    real_counts: dict[str, np.ndarray]  # count column -> real children-per-parent values
    fk_null_rates: dict[str, float]
    column_order: list[str]
    context_encoder: ContextEncoder | None = None
    derived: DerivedColumns | None = None
    category_targets: dict[str, pd.Series] = field(default_factory=dict)
    link_signatures: dict[str, list[str]] = field(default_factory=dict)  # second FK -> parent columns
    signature_counts: dict[str, dict[str, np.ndarray]] = field(default_factory=dict)  # real counts per group
    link_models: dict[str, SignatureModel] = field(default_factory=dict)  # second FK -> signature model
    residuals: ContextResiduals | None = None  # numeric columns learned as residuals of the context
    bridges: dict[str, Bridge] = field(default_factory=dict)  # second FK -> the path its links agree with
    constraints: list[Constraint] = field(default_factory=list)  # what every real row satisfies, and user rules
    fd_maps: dict[str, dict] = field(default_factory=dict)  # "a -> b": the real b of each a
    copy_columns: list[str] = field(default_factory=list)  # the columns a copied row is judged on
    real_row_digests: np.ndarray | None = None  # sorted 64-bit hashes of unique real rows (no values)
    count_correlation: np.ndarray | None = None  # real normal-score correlation of the child counts
    correlated_columns: list[str] = field(default_factory=list)  # a root table's numbers and own-children counts
    numeric_correlation: np.ndarray | None = None  # ... and their real normal-score correlation
    fit_seconds: float = 0.0
    notes: list[str] = field(default_factory=list)
    fitted_rows: int = 0  # the rows the model saw: real_rows, or a subsample of them (fit_rows)
    pair_supports: list[PairSupport] = field(default_factory=list)  # strongly associated category pairs
    sibling_spreads: list[SiblingSpread] = field(default_factory=list)  # categories siblings share
    one_per_parent: list[OnePerParent] = field(default_factory=list)  # a value each parent's children hold once
    link_ones: dict[str, list[OnePerParent]] = field(default_factory=dict)  # the same under a second foreign key
    counts_within: list[CountsWithin] = field(default_factory=list)  # children only for some values of a category
    count_totals: list[CountTotals] = field(default_factory=list)  # a small table's children per category
    name_quotas: list[NameQuota] = field(default_factory=list)  # near-unique categories kept to their real counts
    label_counts: LabelCounts | None = None  # a lookup table's labels and their real children
    conditionals: list[ConditionalQuantiles] = field(default_factory=list)  # numbers a category shapes
    parent_copies: dict[str, str] = field(default_factory=dict)  # column -> primary parent's column it equals
    link_groups: dict[str, str] = field(default_factory=dict)  # FK -> the category whose rows share one parent
    parent_joints: list[ParentJoint] = field(default_factory=list)  # categories raked given the parent's value
    pair_joints: PairJoints | None = None  # column pairs raked to their real shares
    number_shapes: list[NumberShape] = field(default_factory=list)  # each number column's range, support or grid

    # ------------------------------------------------------------------- fit
    @classmethod
    @with_fixed_threads
    def fit(cls, metadata: Metadata, name: str, real: dict[str, pd.DataFrame], settings: ModelSettings,
            seed: int) -> "TableModel":
        started = time.perf_counter()
        on = settings.on
        table = metadata.table(name)
        full = real[name]
        frame = fit_sample(metadata, name, full, settings.fit_rows, seed)
        if len(frame) < len(full):
            log.info("%s: fitting on %d of its %d rows (whole sibling groups; fit_rows %d)", name, len(frame),
                     len(full), settings.fit_rows)
            real = {**real, name: frame}
        keys = metadata.key_columns(name)
        fk_columns = {r.child_foreign_key for r in metadata.foreign_keys(name)}
        id_keys = [c.name for c in table.columns.values() if c.sdtype == ID_SDTYPE and c.name not in fk_columns]
        key_formats = {k: KeyFormat.infer(frame[k]) for k in id_keys}
        dates = [c.name for c in table.columns.values() if c.sdtype == "datetime"]
        category_columns = [c.name for c in table.columns.values() if c.sdtype in ("categorical", "boolean")]
        for k, fmt in key_formats.items():
            fmt.link_years(frame, k, dates)
            fmt.link_categories(frame, k, category_columns)
            for i, (column, _) in getattr(fmt, "follows", {}).items():
                log.info("%s: %s's run %d follows %s", name, k, i + 1, column)
        found_constraints = [c for c in discover_table(real, metadata, name)
                             if f"{name}: {c.description}" not in settings.constraints_off]
        for rule in settings.constraints_add:
            added = parse_added(rule, metadata)
            if added.table == name and added.description not in {c.description for c in found_constraints}:
                found_constraints.append(added)
        primary = metadata.primary_relationship(name)
        parent_rows, parent_kinds = None, None  # each real row's primary parent row, and its kinds
        if primary is not None:
            parent_rows = _aligned_parent_rows(primary, real)
            parent_kinds = {c.name: c.sdtype for c in modelled_columns(metadata, primary.parent_table_name)}
        copies = {} if primary is None or not settings.conditional or not on("parent_copies") else parent_copies(
            metadata, primary, frame, parent_rows, found_constraints)
        for col, parent_col in copies.items():
            log.info("%s: %s copied from %s.%s (equal in every real row)", name, col, primary.parent_table_name,
                     parent_col)
        family = [c.name for c in table.columns.values() if c.sdtype == "last_name"]
        identities = [IdentitySpec.fit(c.name, c.sdtype, frame[c.name], frame, family, category_columns)
                      for c in table.columns.values() if c.is_identity_text and c.name not in keys and c.name not in copies]
        for spec in identities:
            if getattr(spec, "lookup", None) is not None:
                log.info("%s: %s looked up from %s (the same text for every real row of one %s)", name, spec.column,
                         spec.lookup[0], spec.lookup[0])
        identities.sort(key=lambda spec: spec.family_of is not None or spec.sdtype == "email")  # templates last
        locale = guess_locale(frame, {s.column: s.sdtype for s in identities})
        for spec in identities:
            spec.locale = locale
        modelled = [c for c in modelled_columns(metadata, name) if c.name not in copies]
        training = with_child_counts(metadata, name, real)
        real_counts = {c: training[c].to_numpy() for c in training.columns if is_count_column(c)}
        counts_within = [found for c, counts in real_counts.items()
                         if (found := CountsWithin.fit(training, c, counts, category_columns)) is not None]
        for found in counts_within:
            log.info("%s: %s", name, found.label)
        derived = DerivedColumns.discover(training[[c.name for c in modelled]], {c.name: c.sdtype for c in modelled},
                                          parent_rows, parent_kinds)
        if not on("derived"):
            derived.derivations = []
        training = derived.forward(training, parent_rows)
        modelled = [Column(c.name, "numerical") if c.name in derived.learned_as_numbers else c
                    for c in modelled if c.name not in derived.dropped]
        modelled += [Column(c, "numerical", computer_representation="Int64") for c in real_counts]
        training = training[[c.name for c in modelled]]
        encoder, context = None, None
        if settings.conditional and primary is not None and on("parent_context"):
            encoder, context = _training_context(metadata, primary, real)
        signatures, group_counts, link_models = {}, {}, {}
        original = {c.name: c.sdtype for c in modelled_columns(metadata, name)}
        for i, rel in enumerate(metadata.second_relationships(name)):
            columns = signature_columns(metadata, rel, real) if on("link_signatures") else []
            if columns:
                signatures[rel.child_foreign_key] = columns
                link_models[rel.child_foreign_key] = SignatureModel.fit(
                    frame.reset_index(drop=True), original, context, linked_signature(rel, columns, real), seed + 1 + i)
                group_counts[rel.child_foreign_key] = counts_by_signature(rel, columns, real)
        groups = {}
        for rel in metadata.second_relationships(name) if on("link_groups") else []:
            found = link_group_column(frame, rel, [c.name for c in modelled_columns(metadata, name)
                                                   if c.sdtype in ("categorical", "boolean")])
            if found is not None:
                groups[rel.child_foreign_key] = found
                log.info("%s: the rows of one %s share one %s", name, found, rel.child_foreign_key)
        fd_maps = {c.description: functional_map(c, frame) for c in found_constraints
                   if c.kind == "functional_dependency"}
        compared = copy_columns(metadata, name)
        bridges = {}
        copied = {c.columns[0] for c in found_constraints if c.kind == "path"}  # copied along their path
        for rel in metadata.second_relationships(name):
            if rel.child_foreign_key in copied or not on("bridges"):
                continue
            found = fit_bridge(metadata, rel, real, seed)
            if found is not None:
                bridges[rel.child_foreign_key] = found
                log.info("%s: %s", name, found.label)
        categories = [c.name for c in modelled_columns(metadata, name) if c.sdtype in ("categorical", "boolean")
                      and c.name not in derived.dropped and c.name not in copies]
        rows = frame.reset_index(drop=True)
        pair_supports = []
        if on("pair_supports"):
            pair_supports = fit_pair_supports(rows, categories)
            pair_supports += fit_determined_supports(rows, categories, [c for c in copies if c in category_columns],
                                                     {c for s in pair_supports for c in (s.leader, s.follower)})
            pair_supports += fit_nested_supports(rows, [c for c in categories if c not in copies], pair_supports)
        for support in pair_supports:
            log.info("%s: category pair kept to the real support: %s", name, support.label)
        quotas = [q for c in categories if (q := NameQuota.fit(rows, c, pair_supports))]
        for quota in quotas:
            log.info("%s: %s", name, quota.label)
        lookup = LabelCounts.fit(rows, categories, real_counts)
        if lookup is not None:
            log.info("%s: %s", name, lookup.label)
        count_totals = [] if lookup is not None else [
            found for c, counts in real_counts.items()
            if len(counts) == len(rows) and (found := CountTotals.fit(rows, c, counts, category_columns)) is not None]
        for found in count_totals:
            log.info("%s: %s", name, found.label)
        spreads = [] if primary is None else [
            found for c in categories
            if (found := SiblingSpread.fit(frame, primary.child_foreign_key, c, seed)) is not None]
        for spread in spreads:
            log.info("%s: %s", name, spread.label)
        ones = [] if primary is None else [
            found for c in categories for found in OnePerParent.fit_all(frame, primary.child_foreign_key, c)]
        link_ones = {rel.child_foreign_key: found for rel in metadata.second_relationships(name)
                     if not rel.is_self_reference and (found := [
                         one for c in categories for one in OnePerParent.fit_all(frame, rel.child_foreign_key, c)])}
        for found in ones + [one for group in link_ones.values() for one in group]:
            log.info("%s: %s", name, found.label)
        conditionals = ConditionalQuantiles.fit_all(
            training, {c.name: c.sdtype for c in modelled if not is_count_column(c.name)},
            *((parent_rows, parent_kinds) if settings.conditional else (None, None)))
        residuals = ContextResiduals.fit(
            training, [c.name for c in modelled if c.sdtype == "numerical" and not is_count_column(c.name)],
            context if on("residuals") else None, seed)
        # a number the parent context already predicts keeps that link (a mark follows its
        # course's level through the context, not only through the enrollment's grade)
        conditionals = [c for c in conditionals if not (c.from_parent and c.column in residuals.fits)]
        for found in conditionals:
            log.info("%s: kept to the real distribution per category: %s", name, found.label)
        if residuals.fits:
            training = residuals.forward(training, context)
            log.info("%s: learned as residuals of the parent context: %s", name, residuals.describe())
        correlated = [] if primary is not None else root_correlated_columns(
            metadata, name, training, modelled, {found.column for found in counts_within})
        codec = gan = None
        targets: dict = {}
        joints: list[ParentJoint] = []
        pairs = None
        if modelled and len(frame):
            codec = TableCodec.fit(training, modelled)
            steps = settings.steps_for(len(frame))
            gan = ContextCTGAN(GanSettings(steps=steps, device=settings.device))
            log.info("%s: fitting CTGAN on %d rows x %d columns%s, %d steps", name, len(frame), len(modelled),
                     f" given {primary.parent_table_name} ({encoder.dim} context values)" if encoder else "", steps)
            encoded = codec.encode(training)
            gan.fit(encoded, codec.discrete_columns, context=context, seed=seed, label=name)
            targets = category_targets(encoded, codec.discrete_columns)
            if settings.conditional and parent_rows is not None:
                joints = fit_parent_joints(encoded, codec.discrete_columns, parent_rows, parent_kinds)
                for joint in joints:
                    log.info("%s: raked given the parent: %s", name, joint.label)
            # numbers learned as residuals of the context, or mapped per category afterwards, are
            # not binned as the GAN writes them: left out
            remapped = set(residuals.fits) | {found.column for found in conditionals}
            pairs = PairJoints.fit(encoded, list(codec.discrete_columns), [
                c.name for c in codec.columns if c.kind in ("numerical", "datetime") and not c.few_values
                and c.null_rate < 1 and c.name not in remapped],
                *((parent_rows, parent_kinds) if settings.conditional else (None, None)),
                not_given={spread.column for spread in spreads})
            if pairs is not None:
                log.info("%s: %s", name, pairs.label)
        return cls(
            table=name, real_rows=len(full), fitted_rows=len(frame), codec=codec, gan=gan, key_formats=key_formats,
            identities=identities, real_counts=real_counts,
            fk_null_rates={r.child_foreign_key: float(frame[r.child_foreign_key].isna().mean())
                           for r in metadata.foreign_keys(name)},
            column_order=list(table.columns) + list(real_counts),
            context_encoder=encoder,
            derived=derived,
            category_targets=targets,
            link_signatures=signatures,
            signature_counts=group_counts,
            link_models=link_models,
            residuals=residuals,
            bridges=bridges,
            constraints=found_constraints,
            fd_maps=fd_maps,
            copy_columns=compared,
            real_row_digests=unique_row_digests(full, compared),
            pair_supports=pair_supports,
            sibling_spreads=spreads,
            one_per_parent=ones,
            counts_within=counts_within,
            count_totals=count_totals,
            link_ones=link_ones,
            name_quotas=quotas,
            label_counts=lookup,
            conditionals=conditionals,
            parent_copies=copies,
            link_groups=groups,
            parent_joints=joints,
            pair_joints=pairs,
            number_shapes=fit_shapes(full, [c.name for c in modelled_columns(metadata, name) if c.sdtype == "numerical"]),
            count_correlation=_rank_correlation(training, list(real_counts)),
            correlated_columns=correlated,
            numeric_correlation=_rank_correlation(training, correlated),
            fit_seconds=time.perf_counter() - started,
        )

    # ---------------------------------------------------------------- sample
    @with_fixed_threads
    def sample(self, metadata: Metadata, parents: dict[str, pd.DataFrame], scale: float, seed: int,
               part: Partition = WHOLE, off: tuple[str, ...] = ()) -> pd.DataFrame:
        """Synthetic rows of this table given the (repaired) synthetic parent tables; ``part``:
        which partition of a partitioned run (a root table gets its share of ``scale`` x its
        real rows; keys are unique across the partitions)."""
        rng = np.random.default_rng(seed)
        self._off = set(off)
        on = self._on
        primary = metadata.primary_relationship(self.table)
        context, parent_rows = None, None
        if primary is None:
            require_partition_rows(self.table, self.real_rows, scale, part.count)
            n = part.share(int(round(self.real_rows * scale)))
            owners = None
        else:
            parent = parents[primary.parent_table_name]
            counts = parent[count_column(primary)].to_numpy(dtype="int64")
            rows = np.repeat(np.arange(len(parent)), counts)
            owners = parent[primary.parent_primary_key].to_numpy(dtype=object)[rows]
            n = len(owners)
            parent_rows = parent.iloc[rows].reset_index(drop=True)
            if self.context_encoder is not None:
                context = self.context_encoder.transform(context_frame(metadata, primary, parent, parents)[0])[rows]
        out = self._sample_columns(n, seed, context, parent_rows)
        if self.residuals is not None:
            out = self.residuals.inverse(out, context)
        for col, parent_col in getattr(self, "parent_copies", {}).items():
            out[col] = parent_rows[parent_col].to_numpy()
        # categories siblings share, then category pairs (some follow a copied column): before
        # the looked-up columns are derived from them (BillingCity -> BillingState)
        for spread in getattr(self, "sibling_spreads", []) if on("sibling_spreads") else []:
            spread.apply(out, rng, owners)
        for support in getattr(self, "pair_supports", []) if on("pair_supports") else []:
            support.apply(out, rng)
        for found in getattr(self, "one_per_parent", []) if on("one_per_parent") else []:
            found.apply(out, rng, owners)
        for quota in getattr(self, "name_quotas", []) if on("name_quotas") else []:
            quota.apply(out, rng)
        if getattr(self, "label_counts", None) is not None and on("label_counts"):
            self.label_counts.apply(out, rng)
        for found in getattr(self, "conditionals", []) if on("conditionals") else []:
            found.apply(out, parent_rows)
        if self.derived is not None and self.gan is not None:
            out = self.derived.inverse(out, parent_rows)
        for name, fmt in self.key_formats.items():  # after the copies: a key's year may follow a copied date
            out[name] = fmt.generate(n, rng, rows=out, part=part)
        for spec in self.identities:
            out[spec.column] = spec.generate(n, table_seed(seed, spec.column), rows=out, part=part).to_numpy()
        if primary is not None:
            out[primary.child_foreign_key] = owners
        for rel in metadata.second_relationships(self.table):
            out[rel.child_foreign_key] = self._link(rel, out, context, parent_rows, parents, rng)
            bridge = self.bridges.get(rel.child_foreign_key) if on("bridges") else None
            strata = route_values(bridge, out, parent_rows) if bridge is not None and bridge.table in parents else None
            for found in getattr(self, "link_ones", {}).get(rel.child_foreign_key, []) if on("link_ones") else []:
                found.relink(out, rng, strata)
        if on("path_copies"):
            copy_along_paths(out, self.constraints, parents, metadata)  # a payment's customer is its rental's
        for found in getattr(self, "count_totals", []) if on("count_totals") else []:  # after every category step
            found.apply(out, rng)
        for found in getattr(self, "counts_within", []) if on("counts_within") else []:
            found.apply(out, rng)
        if on("null_patterns"):
            self._keep_null_patterns(out, {c.name: c.sdtype for c in metadata.table(self.table).columns.values()}, rng)
        pk = metadata.table(self.table).primary_key
        if primary is not None and len(pk) == 2 and primary.child_foreign_key in pk:
            other = next(c for c in pk if c != primary.child_foreign_key)
            out[other] = linking.make_pairs_unique(out[primary.child_foreign_key].to_numpy(), out[other].to_numpy(), rng)
        if on("number_shapes"):
            apply_shapes(out, getattr(self, "number_shapes", []))  # last: whatever computed a number
        return out[self.column_order]

    def _sample_columns(self, n: int, seed: int, context: np.ndarray | None,
                        parent_rows: pd.DataFrame | None = None) -> pd.DataFrame:
        if self.gan is None:
            return pd.DataFrame(index=range(n))
        rng = np.random.default_rng(seed + 1)
        on = self._on
        pairs = getattr(self, "pair_joints", None) if on("pair_joints") else None
        k = PAIR_CANDIDATES_PER_ROW if pairs is not None else CANDIDATES_PER_ROW if self.category_targets else 1
        k = k if on("raking") else 1
        chunk = max(1, min(SAMPLE_CHUNK_ROWS, SAMPLE_CHUNK_CANDIDATES // k))
        parts = []
        # In chunks of rows (with their parents' context): the candidates and the transformer's
        # matrices are bounded by the chunk, not by the scale.
        for i, start in enumerate(range(0, max(n, 1), chunk)):
            size = min(chunk, n - start)
            ctx = None if context is None else np.tile(context[start:start + size], (k, 1))
            if size == 0:
                parts.append(self.codec.decode(self.gan.sample(0)))
                continue
            matrix = self.gan.sample_matrix(size * k, context=ctx, seed=seed + i)
            if k > 1:
                candidates = self.gan.discrete_labels(matrix, list(self.category_targets))
                targets = dict(self.category_targets)
                for joint in getattr(self, "parent_joints", []) if parent_rows is not None and on("parent_joints") else []:
                    labels = joint.parent_labels(parent_rows.iloc[start:start + size])
                    candidates[joint.key] = candidates[joint.column].astype(str).to_numpy() + JOINT_SEPARATOR \
                        + np.tile(labels, k)
                    targets[joint.key] = joint.targets(labels)
                coded = []
                if pairs is not None:
                    numbers = self.gan.numeric_values(matrix, pairs.numeric)
                    coded = pairs.rake_codes(pd.concat([candidates, numbers], axis=1),
                                             None if parent_rows is None else parent_rows.iloc[start:start + size], k)
                weights = rake_weights(candidates, targets, size, k, coded)
                if size <= QUOTA_MAX_ROWS and on("quotas"):  # few rows: category counts held to the real shares
                    kept = choose_with_quotas(weights, candidates, self.category_targets, size, k, rng)
                else:
                    kept = choose_per_slot(weights, size, k, rng)
                matrix = matrix[kept]
            parts.append(self.codec.decode(self.gan.decode(matrix)))  # only the kept rows are decoded
        raw = parts[0] if len(parts) == 1 else pd.concat(parts, ignore_index=True)
        for col, real in self.real_counts.items():
            raw[col] = calibrate_counts(raw[col].to_numpy(dtype=float), real, rng) if on("count_calibration") \
                else np.clip(np.round(raw[col].to_numpy(dtype=float)), 0, None).astype("int64")
        if self.count_correlation is not None and n > 2 and on("count_correlation"):
            _impose_correlation(raw, list(self.real_counts), self.count_correlation, rng)
        numeric = getattr(self, "numeric_correlation", None)
        if numeric is not None and n > 2 and on("root_correlation"):
            _impose_correlation(raw, self.correlated_columns, numeric, rng)
        return raw.reset_index(drop=True)

    def _keep_null_patterns(self, out: pd.DataFrame, kinds: dict[str, str], rng: np.random.Generator) -> None:
        """Columns null together in every real row are null together here: a category follows
        the other column's nulls (drawn from its own generated values where it must be filled),
        two numbers/dates share the union of their nulls."""
        for c in self.constraints:
            if c.kind != "null_pattern" or not set(c.columns) <= set(out.columns):
                continue
            a, b = c.columns
            if kinds.get(a) in ("categorical", "boolean") and kinds.get(b) not in ("categorical", "boolean"):
                a, b = b, a  # the category follows
            lead, follow = out[a].isna().to_numpy(), out[b].isna().to_numpy()
            if kinds.get(b) in ("categorical", "boolean"):
                out.loc[lead & ~follow, b] = None
                fill = ~lead & follow
                pool = out[b].dropna().to_numpy(dtype=object)
                if fill.any() and len(pool):
                    out.loc[fill, b] = rng.choice(pool, int(fill.sum()))
            else:
                either = lead | follow
                out.loc[either, a] = None
                out.loc[either, b] = None

    def _link(self, rel: Relationship, rows: pd.DataFrame, context: np.ndarray | None, parent_rows: pd.DataFrame | None,
              parents: dict[str, pd.DataFrame], rng: np.random.Generator) -> np.ndarray:
        n = len(rows)
        source = rows if rel.is_self_reference else parents[rel.parent_table_name]
        capacity = source[count_column(rel)].to_numpy(dtype=float)
        keys = source[rel.parent_primary_key].to_numpy(dtype=object)
        signature = self.link_signatures.get(rel.child_foreign_key) if self._on("link_signatures") else None
        link_model = self.link_models.get(rel.child_foreign_key)
        if signature and link_model is not None:
            wanted = link_model.sample(rows, context, rng).astype(str)
            has_parent = wanted != NO_PARENT
        else:
            has_parent = ~linking.null_mask(n, self.fk_null_rates.get(rel.child_foreign_key, 0.0), rng)
        if rel.is_self_reference:
            return linking.link_self(keys, has_parent, capacity, rng)
        out = np.full(n, None, dtype=object)
        if not has_parent.any():
            return out
        bridge = self.bridges.get(rel.child_foreign_key) if self._on("bridges") else None
        if bridge is not None and bridge.table in parents:
            route = route_values(bridge, rows, parent_rows)[has_parent]
            by = getattr(bridge, "by", "")
            category = rows[by].to_numpy(dtype=object)[has_parent] if by and by in rows.columns else None
            out[has_parent] = link_by_bridge(route, parents[bridge.table], bridge, keys, capacity, rng, category)
        elif (group := getattr(self, "link_groups", {}).get(rel.child_foreign_key)) is not None and group in rows \
                and self._on("link_groups"):
            signatures = (wanted[has_parent], _signature(source, signature)) if signature and link_model is not None \
                else (None, None)
            dated = [(day_numbers(rows[c.columns[0]], "datetime")[has_parent], day_numbers(source[c.columns[1]], "datetime"))
                     for c in self.constraints if c.kind == "parent_date_order" and c.foreign_key == rel.child_foreign_key
                     and c.columns[0] in rows and c.columns[1] in source]
            out[has_parent] = linking.link_groups(rows[group].to_numpy()[has_parent], keys, capacity, rng, *signatures,
                                                  dated=dated)
        elif signature:
            parent_signatures = _signature(source, signature)
            capacity = self._capacity_by_signature(rel, parent_signatures, capacity, rng)
            out[has_parent] = linking.link_by_signature(wanted[has_parent], parent_signatures, keys, capacity, rng)
        else:
            out[has_parent] = linking.link_by_capacity(int(has_parent.sum()), keys, capacity, rng)
        return out

    def _capacity_by_signature(self, rel: Relationship, parent_signatures: np.ndarray, capacity: np.ndarray,
                               rng: np.random.Generator) -> np.ndarray:
        """Each parent's generated count, rank-mapped onto the real counts of parents with its
        signature: real sports teachers coach many games, others none, and so do synthetic ones."""
        by_group = self.signature_counts.get(rel.child_foreign_key, {})
        out = capacity.astype(float).copy()
        for group in np.unique(parent_signatures):
            members = parent_signatures == group
            if group in by_group:
                out[members] = calibrate_counts(capacity[members], by_group[group], rng)
        # The mix of signatures among synthetic parents differs a little from the real mix:
        # one more rank mapping makes the overall children-per-parent distribution the real one.
        if by_group:
            out = calibrate_counts(out, np.concatenate(list(by_group.values())), rng).astype(float)
        return out

    def _on(self, mechanism: str) -> bool:
        return mechanism not in getattr(self, "_off", ())

    # ----------------------------------------------------------- persistence
    def content_digest(self) -> str:
        """A digest of what the model learned (not how long it took): two fits on the same
        input and seed give the same digest, so a refit that learned nothing new leaves
        every table sampled from it fresh in Dagster's eyes."""
        import dataclasses
        import hashlib

        digest = hashlib.sha256(pickle.dumps(dataclasses.replace(self, gan=None, fit_seconds=0.0),
                                             protocol=pickle.HIGHEST_PROTOCOL))
        if self.gan is not None:  # its weights (the pickled transformer carries run-specific objects)
            for name, tensor in sorted(self.gan.generator.state_dict().items()):
                digest.update(name.encode())
                digest.update(tensor.detach().cpu().numpy().tobytes())
            digest.update(repr(self.gan.training.generator_loss).encode())
        return digest.hexdigest()[:16]

    def save(self, path: str | Path) -> None:
        path = Path(path)
        path.parent.mkdir(parents=True, exist_ok=True)
        tmp = path.with_suffix(".tmp")
        with tmp.open("wb") as fh:
            pickle.dump(self, fh, protocol=pickle.HIGHEST_PROTOCOL)
        tmp.replace(path)

    @staticmethod
    def load(path: str | Path) -> "TableModel":
        with Path(path).open("rb") as fh:
            return pickle.load(fh)

    def describe(self) -> dict[str, object]:
        summary: dict[str, object] = {"real_rows": self.real_rows, "fitted_rows": self.fitted_rows or self.real_rows,
                                      "fit_seconds": round(self.fit_seconds, 2),
                                      "key_formats": {k: f.kind for k, f in self.key_formats.items()},
                                      "identity_columns": [s.column for s in self.identities]}
        if self.residuals is not None and self.residuals.fits:
            summary["residual_r2"] = self.residuals.describe()
        if self.gan is not None:
            summary["training"] = self.gan.training.summary()
        return summary


def require_partition_rows(table: str, real_rows: int, scale: float, partitions: int) -> None:
    """Every partition needs a row of every root table: one clear error otherwise."""
    if int(round(real_rows * scale)) < partitions:
        raise ConfigError(f"table '{table}': {partitions} partitions for {real_rows} real rows x scale {scale:g}: "
                          "some partitions would get no row of this root table; use fewer partitions")


def real_subset_for(metadata: Metadata, name: str) -> list[str]:
    """The real tables a model of ``name`` reads: itself and its children (for counts), its
    parents (second parents' signatures), and its primary parent's children (for the context)."""
    tables = [name] + metadata.children(name) + metadata.parents(name)
    primary = metadata.primary_relationship(name)
    if primary is not None:
        tables += [primary.parent_table_name] + metadata.children(primary.parent_table_name)
        tables += [r.parent_table_name for r in context_links(metadata, primary)]
    return list(dict.fromkeys(tables + bridge_tables(metadata, name)))


def parent_copies(metadata: Metadata, primary: Relationship, frame: pd.DataFrame, parent_rows: pd.DataFrame,
                  constraints: list[Constraint] = ()) -> dict[str, str]:
    """Columns equal to one column of the primary parent row in every real row (nulls included).

    From the parent's identity text (Faker draws it row by row) only into identity text of the
    same kind: an invoice's billing address and city are its customer's synthetic ones, while
    a category never takes a Faker value. Not where a discovered constraint ties the column to
    one that is not copied (``BillingCity -> BillingCountry`` holds only if both are copied)."""
    if len(frame) < MIN_COPY_ROWS:
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


def link_group_column(frame: pd.DataFrame, rel: Relationship, categories: list[str]) -> str | None:
    """A category whose rows all share one second parent in the real table (each route has one
    in-charge teacher), the one with the fewest values; None when no category does."""
    if rel.is_self_reference:
        return None
    linked = frame[frame[rel.child_foreign_key].notna()]
    if len(linked) < MIN_GROUP_ROWS or linked[rel.child_foreign_key].nunique() < 2:
        return None
    best = None
    for col in categories:
        keys = linked[col].astype(str)
        sizes = keys.value_counts()
        if len(sizes) < 2 or len(sizes) > len(linked) // 2 or (sizes >= 2).sum() < 2:
            continue
        if (linked.groupby(keys.to_numpy())[rel.child_foreign_key].nunique() == 1).all() \
                and (best is None or len(sizes) < best[1]):
            best = (col, len(sizes))
    return None if best is None else best[0]


def modelled_columns(metadata: Metadata, name: str) -> list[Column]:
    """Columns the table's GAN learns: modelled sdtypes that are not keys."""
    keys = metadata.key_columns(name)
    return [c for c in metadata.table(name).columns.values()
            if c.sdtype in MODELLED_SDTYPES and c.name not in keys]


def with_child_counts(metadata: Metadata, name: str, real: dict[str, pd.DataFrame]) -> pd.DataFrame:
    """The real table plus one children-per-row column per relationship it is the parent of."""
    frame = real[name].reset_index(drop=True)
    pk = metadata.table(name).single_primary_key
    for rel in metadata.child_relationships(name):
        frame[count_column(rel)] = child_counts(frame[pk], real[rel.child_table_name][rel.child_foreign_key])
    return frame


NO_PARENT = "__no_parent__"
SIGNATURE_MAX_VALUES = 20
SIGNATURE_MIN_DISTANCE = 0.15
SIGNATURE_MIN_ASSOCIATION = 0.3


def link_column(rel: Relationship) -> str:
    return f"__link__{rel.child_foreign_key}"


def _signature(frame: pd.DataFrame, columns: list[str]) -> np.ndarray:
    labels = [frame[c].astype(object).where(frame[c].notna(), "__null__").astype(str) for c in columns]
    joined = labels[0]
    for more in labels[1:]:
        joined = joined + "|" + more
    return joined.to_numpy()


def signature_columns(metadata: Metadata, rel: Relationship, real: dict[str, pd.DataFrame]) -> list[str]:
    """The second parent's categories its children pick it by: those whose share among linked
    parents differs from their share among all parents (coaches come from sports), or that go
    with the child's own categories or its primary parent's (an instructor's department is
    the course's)."""
    if rel.is_self_reference:
        return []
    parent, child = real[rel.parent_table_name], real[rel.child_table_name].reset_index(drop=True)
    linked = parent.set_index(rel.parent_primary_key).reindex(child[rel.child_foreign_key].to_numpy()).reset_index(drop=True)
    present = child[rel.child_foreign_key].notna().to_numpy()
    partners = _categorical_partners(metadata, rel, real, child)
    scored = []
    for col in modelled_columns(metadata, rel.parent_table_name):
        if col.sdtype not in ("categorical", "boolean") or not 2 <= parent[col.name].nunique() <= SIGNATURE_MAX_VALUES:
            continue
        everyone = parent[col.name].astype(str).value_counts(normalize=True)
        values = linked[col.name][present].astype(str)
        distance = 0.5 * everyone.subtract(values.value_counts(normalize=True), fill_value=0).abs().sum()
        association = max((cramers_v(values, other[present]) for other in partners), default=0.0)
        score = max(distance / SIGNATURE_MIN_DISTANCE, association / SIGNATURE_MIN_ASSOCIATION)
        if score >= 1:
            scored.append((score, col.name))
    return [c for _, c in sorted(scored, reverse=True)[:2]]


def _categorical_partners(metadata: Metadata, rel: Relationship, real, child: pd.DataFrame) -> list[pd.Series]:
    """The child's categorical columns and its primary parent's, aligned with the child rows."""
    partners = [child[c.name].astype(str) for c in modelled_columns(metadata, rel.child_table_name)
                if c.sdtype in ("categorical", "boolean")]
    primary = metadata.primary_relationship(rel.child_table_name)
    if primary is not None and primary != rel:
        parent_rows = _aligned_parent_rows(primary, real)
        partners += [parent_rows[c.name].astype(str) for c in modelled_columns(metadata, primary.parent_table_name)
                     if c.sdtype in ("categorical", "boolean") and parent_rows[c.name].nunique() <= SIGNATURE_MAX_VALUES]
    return partners


def linked_signature(rel: Relationship, columns: list[str], real: dict[str, pd.DataFrame]) -> np.ndarray:
    """Each real child row's second-parent signature (``NO_PARENT`` where the FK is null)."""
    parent = real[rel.parent_table_name]
    by_key = pd.Series(_signature(parent, columns), index=parent[rel.parent_primary_key].to_numpy())
    fk = real[rel.child_table_name][rel.child_foreign_key].reset_index(drop=True)
    return fk.map(by_key).fillna(NO_PARENT).to_numpy()


def root_correlated_columns(metadata: Metadata, name: str, training: pd.DataFrame, modelled: list[Column],
                            tied: set[str]) -> list[str]:
    """A root table's numbers and dates as learned, with the counts of the children it owns
    (a district's inhabitants, crimes and accounts: 77 rows are too few for the GAN to learn
    how they go together), whose joint rank correlation sampling imposes. Not the counts of
    children that link to it as a second parent, nor counts only some category may have
    (``tied``): those follow the row's categories (a route's teacher is linked by department),
    which a re-pairing of numbers would ignore. A child table's numbers are left to the GAN:
    re-pairing them across rows would break their link to each row's parent."""
    owned = {count_column(r) for r in metadata.relationships
             if r.parent_table_name == name and metadata.primary_relationship(r.child_table_name) == r}
    return [c.name for c in modelled if c.name in training.columns and training[c.name].notna().all()
            and ((c.sdtype in ("numerical", "datetime") and not is_count_column(c.name)
                  and (pd.api.types.is_numeric_dtype(training[c.name])
                       or pd.api.types.is_datetime64_any_dtype(training[c.name])))
                 or (c.name in owned and c.name not in tied))]


def _as_floats(frame: pd.DataFrame, columns: list[str]) -> np.ndarray:
    return np.column_stack([frame[c].to_numpy(dtype="datetime64[ns]").astype("int64").astype(float)
                            if pd.api.types.is_datetime64_any_dtype(frame[c]) else frame[c].to_numpy(dtype=float)
                            for c in columns])


def _rank_correlation(training: pd.DataFrame, columns: list[str]) -> np.ndarray | None:
    """How the columns go together in the real rows, as the correlation of normal scores."""
    if len(columns) < 2:
        return None
    values = _as_floats(training, columns)
    jitter = np.random.default_rng(0).random(values.shape) * 1e-6
    corr = np.corrcoef(normal_scores(values + jitter), rowvar=False)
    return None if not np.isfinite(corr).all() else corr


def _impose_correlation(raw: pd.DataFrame, columns: list[str], target: np.ndarray, rng: np.random.Generator) -> None:
    """Re-pair the columns' generated values (each column keeps its own) to the real rank
    correlation, over the rows where all of them are present."""
    complete = np.nonzero(raw[columns].notna().all(axis=1).to_numpy())[0]
    orders = rank_correlation_orders(_as_floats(raw.iloc[complete], columns), target, rng)
    if orders is None:
        return
    for column, order in zip(columns, orders):
        values = raw[column].to_numpy().copy()
        values[complete] = values[complete][order]
        raw[column] = values


def counts_by_signature(rel: Relationship, columns: list[str], real: dict[str, pd.DataFrame]) -> dict[str, np.ndarray]:
    """Real children per parent under ``rel``, for the parents of each signature."""
    parent = real[rel.parent_table_name]
    counts = child_counts(parent[rel.parent_primary_key], real[rel.child_table_name][rel.child_foreign_key])
    groups = _signature(parent, columns)
    return {g: counts[groups == g] for g in np.unique(groups)}


def _aligned_parent_rows(primary: Relationship, real: dict[str, pd.DataFrame]) -> pd.DataFrame:
    """For each real child row, its parent's row (all-null where the parent is missing)."""
    parent = real[primary.parent_table_name]
    position = pd.Series(np.arange(len(parent)), index=parent[primary.parent_primary_key].to_numpy())
    rows = real[primary.child_table_name][primary.child_foreign_key].map(position)
    aligned = parent.reset_index(drop=True).reindex(rows.fillna(-1).astype(int).to_numpy())  # -1: nulls
    return aligned.reset_index(drop=True)


def context_links(metadata: Metadata, primary: Relationship) -> list[Relationship]:
    """The primary parent's own other parents, whose rows join the context (a mark is
    generated knowing its student course *and* that course's level)."""
    return [r for r in metadata.second_relationships(primary.parent_table_name) if not r.is_self_reference]


def sampling_inputs(metadata: Metadata, name: str) -> list[str]:
    """The synthetic tables ``name`` is sampled from: its parents and its context's tables."""
    tables = metadata.parents(name)
    primary = metadata.primary_relationship(name)
    if primary is not None:
        tables += [r.parent_table_name for r in context_links(metadata, primary)]
    return list(dict.fromkeys(tables + bridge_tables(metadata, name)))


def context_frame(metadata: Metadata, primary: Relationship, parent: pd.DataFrame,
                  tables: dict[str, pd.DataFrame]) -> tuple[pd.DataFrame, dict[str, str]]:
    """The parent rows (with their child counts) joined with their own second parents' columns,
    named ``<fk>.<column>``; and each context column's sdtype."""
    frame = parent.reset_index(drop=True).copy()
    kinds = {c.name: c.sdtype for c in modelled_columns(metadata, primary.parent_table_name)}
    kinds.update({c: "numerical" for c in frame.columns if is_count_column(c)})
    for rel in context_links(metadata, primary):
        other = tables[rel.parent_table_name].drop_duplicates(rel.parent_primary_key).set_index(rel.parent_primary_key)
        joined = other.reindex(frame[rel.child_foreign_key].to_numpy())
        for col in modelled_columns(metadata, rel.parent_table_name):
            name = f"{rel.child_foreign_key}.{col.name}"
            frame[name] = joined[col.name].to_numpy()
            kinds[name] = col.sdtype
    return frame, kinds


def _training_context(metadata: Metadata, primary: Relationship, real: dict[str, pd.DataFrame]):
    """The encoder of the primary parent's rows, and each real child row's context."""
    parent_name = primary.parent_table_name
    parent, kinds = context_frame(metadata, primary, with_child_counts(metadata, parent_name, real), real)
    encoder = ContextEncoder.fit(parent, kinds)
    encoded = encoder.transform(parent)
    position = pd.Series(np.arange(len(parent)), index=parent[primary.parent_primary_key].to_numpy())
    rows = real[primary.child_table_name][primary.child_foreign_key].map(position).to_numpy(dtype=float)
    context = np.zeros((len(rows), encoder.dim), dtype="float32")
    known = ~np.isnan(rows)
    context[known] = encoded[rows[known].astype(int)]
    return encoder, context
