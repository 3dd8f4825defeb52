"""The per-table model: fit on the real table, sample given the synthetic parents.

A model of table ``t`` is an ordered list of fitted mechanisms (``modeling.mechanisms``:
the generator, children-per-parent calibration, categories kept per parent and per pair,
derived columns, second-foreign-key links, ...) plus what every table has: its key formats,
identity-text specs (never real values), each foreign key's null rate, the rules its real
rows satisfy, and digests of its unique real rows (no values) for the copy check.

Rows of a child table are created per synthetic primary parent from that parent's
calibrated count; the mechanisms then apply phase by phase (``mechanism.PHASES``), the keys,
identity text and foreign keys being written between them.
"""

from __future__ import annotations

import logging
import pickle
import time
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
import pandas as pd

from synth_pipeline.errors import ConfigError, SynthPipelineError
from synth_pipeline.modeling import linking
from synth_pipeline.modeling.context import (
    ContextEncoder,
    aligned_parent_rows,
    context_frame,
    modelled_columns,
    training_context,
    with_child_counts,
)
from synth_pipeline.modeling.ctgan_model import with_fixed_threads
from synth_pipeline.modeling.fit_sample import fit_sample
from synth_pipeline.modeling.mechanism import SAMPLING_PHASES, FitContext, SampleContext
from synth_pipeline.modeling.mechanisms import REFIT, REGISTRY, fit_order
from synth_pipeline.modeling.pii import IdentitySpec, guess_locale
from synth_pipeline.modeling.rare_values import RareValues
from synth_pipeline.modeling.settings import ModelSettings, table_seed
from synth_pipeline.schema.constraints import (
    Constraint,
    discover_table,
    functional_map,
    parse_added,
)
from synth_pipeline.schema.keys import WHOLE, KeyFormat, Partition
from synth_pipeline.schema.metadata import ID_SDTYPE, Metadata
from synth_pipeline.stats import (
    copy_columns,
    count_column,
    is_count_column,
    unique_row_digests,
)

log = logging.getLogger(__name__)

MODEL_FORMAT = 7  # bumped whenever a stored model's fields change: an older file is refitted, not loaded


class ModelFormatError(SynthPipelineError):
    """A stored model was written by another version of the model code."""


@dataclass
class TableModel:
    table: str
    real_rows: int = 0
    fitted_rows: int = 0  # the rows the model saw: real_rows, or a subsample of them (fit_rows)
    key_formats: dict[str, KeyFormat] = field(default_factory=dict)
    identities: list[IdentitySpec] = field(default_factory=list)
    real_counts: dict[str, np.ndarray] = field(default_factory=dict)  # count column -> real children per row
    fk_null_rates: dict[str, float] = field(default_factory=dict)
    column_order: list[str] = field(default_factory=list)
    context_encoder: ContextEncoder | None = None
    constraints: list[Constraint] = field(default_factory=list)  # what every real row satisfies, and user rules
    fd_maps: dict[str, dict] = field(default_factory=dict)  # "a -> b": the real b of each a
    copy_columns: list[str] = field(default_factory=list)  # the columns a copied row is judged on
    real_row_digests: np.ndarray | None = None  # sorted 64-bit hashes of unique real rows (no values)
    rare_values: RareValues = field(default_factory=RareValues)  # digests of values too rare to publish
    mechanisms: list = field(default_factory=list)  # fitted, in registry (application) order
    fit_seconds: float = 0.0
    format: int = MODEL_FORMAT

    def get(self, name: str):
        """The fitted mechanism of that registry name, or None."""
        return next((m for m in self.mechanisms if m.name == name), None)

    def kept_by(self) -> dict[str, str]:
        """How each rule is kept: by construction (a derived column, a path copy, a null
        pattern at sampling), when publishing (a parent's sum of its children), or by repair."""
        derived = self.get("derived")
        built = {frozenset((d.column, d.anchor)) for d in (derived.model.derivations if derived is not None else [])}
        held = {"null_pattern": "null_patterns", "path": "path_copies", "child_sum": "publish"}
        links = self.get("links")
        grouped = {fk for fk, link in (links.links.items() if links is not None else []) if link.group}
        out = {}
        for c in self.constraints:
            if frozenset(c.columns) in built:
                out[c.description] = "derived"
            elif c.kind == "shared_parent" and c.foreign_key in grouped:
                out[c.description] = "link_groups"
            elif c.kind in held and (held[c.kind] == "publish" or self.get(held[c.kind]) is not None):
                out[c.description] = held[c.kind]
            else:
                out[c.description] = "repair"
        return out

    def fitted_switches(self) -> list[str]:
        """The switches of what this model holds (a part the table gives nothing to keep is not listed)."""
        out = ["parent_context"] if self.context_encoder is not None else []
        for m in self.mechanisms:
            out += m.fitted_switches() if hasattr(m, "fitted_switches") else [m.name]
        return out

    def columns_set_by(self, *names: str) -> set[str]:
        """The columns the named mechanisms set or tie (repair leaves them to those rules)."""
        return {c for m in self.mechanisms if m.name in names for c in m.columns}

    # ------------------------------------------------------------------- fit
    @classmethod
    @with_fixed_threads
    def fit(cls, metadata: Metadata, name: str, real: dict[str, pd.DataFrame], settings: ModelSettings,
            seed: int) -> "TableModel":
        started = time.perf_counter()
        table = metadata.table(name)
        full = real[name]
        frame = fit_sample(metadata, name, full, settings.fit_rows, seed)
        if len(frame) < len(full):
            log.info("%s: fitting on %d of its %d rows (whole sibling groups; fit_rows %d)", name, len(frame),
                     len(full), settings.fit_rows)
            real = {**real, name: frame}
        category_columns = [c.name for c in table.columns.values() if c.sdtype in ("categorical", "boolean")]
        key_formats = _key_formats(metadata, name, frame, category_columns)
        primary = metadata.primary_relationship(name)
        parent_rows, parent_kinds = None, None  # each real row's primary parent row, and its kinds
        if primary is not None:
            parent_rows = aligned_parent_rows(primary, real)
            parent_kinds = {c.name: c.sdtype for c in modelled_columns(metadata, primary.parent_table_name)}
        training = with_child_counts(metadata, name, real)
        encoder, context = None, None
        if settings.conditional and primary is not None and settings.on("parent_context"):
            encoder, context = training_context(metadata, primary, real)
        fit = FitContext(
            metadata=metadata, table=name, settings=settings, seed=seed, real=real, full=full, frame=frame,
            rows=frame.reset_index(drop=True), primary=primary, parent_rows=parent_rows, parent_kinds=parent_kinds,
            constraints=_constraints(metadata, name, real, settings), raw_training=training, training=training,
            modelled=modelled_columns(metadata, name),
            real_counts={c: training[c].to_numpy() for c in training.columns if is_count_column(c)},
            category_columns=category_columns, context=context)
        for mechanism in fit_order():
            if getattr(mechanism, "required", False) or settings.on(mechanism.name):
                found = mechanism.fit(fit)
                if found is not None:
                    fit.found[mechanism.name] = found
                    log.info("%s: %s", name, found.label)
        # a number published as the sum of its children is theirs, not a real record's value
        summed = {c.columns[0] for c in fit.constraints if c.kind == "child_sum"}
        compared = [c for c in copy_columns(metadata, name, settings.privacy_allow, full) if c not in summed]
        # dates as the synthetic rows hold them (a SQLite source gives text); the compared
        # columns alone, not copied (a copy of the whole real table took 2.8 GB at TPC-H scale 1)
        typed = pd.DataFrame({c: pd.to_datetime(full[c], errors="coerce") if table.columns[c].sdtype == "datetime"
                              and not pd.api.types.is_datetime64_any_dtype(full[c]) else full[c] for c in compared},
                             index=full.index, copy=False)
        return cls(
            table=name, real_rows=len(full), fitted_rows=len(frame), key_formats=key_formats,
            identities=_identities(metadata, name, frame, fit.copies, category_columns, seed), real_counts=fit.real_counts,
            fk_null_rates={r.child_foreign_key: float(frame[r.child_foreign_key].isna().mean())
                           for r in metadata.foreign_keys(name)},
            column_order=list(table.columns) + list(fit.real_counts), context_encoder=encoder,
            constraints=fit.constraints,
            fd_maps={c.description: functional_map(c, frame) for c in fit.constraints
                     if c.kind == "functional_dependency"},
            copy_columns=compared, real_row_digests=unique_row_digests(typed, compared),
            rare_values=RareValues.fit(metadata, name, full, settings.privacy_min_count, settings.privacy_allow,
                                       settings.seed, copied_from(fit, real, settings.privacy_allow)),
            mechanisms=[fit.found[m.name] for m in REGISTRY if m.name in fit.found],
            fit_seconds=time.perf_counter() - started)

    # ---------------------------------------------------------------- sample
    @with_fixed_threads
    def sample(self, metadata: Metadata, parents: dict[str, pd.DataFrame], scale: float, seed: int,
               part: Partition = WHOLE, off: tuple[str, ...] = (), threads: int = 1) -> pd.DataFrame:
        """Synthetic rows of this table given the (repaired) synthetic parent tables; ``part``:
        which partition of a partitioned run (a root table gets its share of ``scale`` x its
        real rows; keys are unique across the partitions); ``off``: mechanisms not applied;
        ``threads``: chunks of rows generated side by side (the same rows with any count)."""
        primary = metadata.primary_relationship(self.table)
        generator = self.get("generator")
        run = SampleContext(metadata=metadata, parents=parents, rng=np.random.default_rng(seed),
                            column_rng=np.random.default_rng(seed + 1), part=part, off=frozenset(off),
                            generated=generator is not None)
        if primary is None:
            require_partition_rows(self.table, self.real_rows, scale, part.count)
            n = part.share(int(round(self.real_rows * scale)))
        else:
            run.parent = parent = parents[primary.parent_table_name]
            run.rows = np.repeat(np.arange(len(parent)), parent[count_column(primary)].to_numpy(dtype="int64"))
            run.owners = parent[primary.parent_primary_key].to_numpy(dtype=object)[run.rows]
            n = len(run.owners)
            if self.context_encoder is not None:  # one per parent, taken per row a chunk at a time
                run.parent_context = self.context_encoder.transform(context_frame(metadata, primary, parent, parents)[0])
        out = pd.DataFrame(index=range(n)) if generator is None else \
            generator.sample(n, seed, run.column_rng, run.parent_context, run.parent, run.rows, run.on, threads,
                             self.table)
        if generator is not None and (self.get("count_calibration") is None or not run.on("count_calibration")):
            for col in self.real_counts:  # uncalibrated: the generated counts, as whole non-negative numbers
                out[col] = np.clip(np.round(out[col].to_numpy(dtype=float)), 0, None).astype("int64")
        for phase in SAMPLING_PHASES[1:]:  # the first, "generate", wrote ``out``
            if phase == "links":  # the keys (a key's year may follow a derived date), then the owners
                self._write_keys(out, n, seed, run.rng, part)
                if primary is not None:
                    out[primary.child_foreign_key] = run.owners
            if phase == "finish":
                self._unique_key_pairs(out, metadata, primary, run.rng)
            if phase != "generated" or generator is not None:
                out = self.apply_phase(phase, out, run)
        return in_order(out, self.column_order)

    def apply_phase(self, phase: str, frame: pd.DataFrame, run: SampleContext) -> pd.DataFrame:
        """Apply the mechanisms of one phase (those switched on) to ``frame``; returns the frame."""
        for mechanism in self.mechanisms:
            if mechanism.phase == phase and (getattr(mechanism, "required", False) or run.on(mechanism.name)):
                changed = mechanism.apply(frame, run)
                if changed is not None:
                    frame = changed
        return frame

    def _write_keys(self, out: pd.DataFrame, n: int, seed: int, rng: np.random.Generator, part: Partition) -> None:
        for name, fmt in self.key_formats.items():
            out[name] = fmt.generate(n, rng, rows=out, part=part)
        for spec in self.identities:
            out[spec.column] = spec.generate(n, table_seed(seed, spec.column), rows=out, part=part).to_numpy()

    def _unique_key_pairs(self, out: pd.DataFrame, metadata: Metadata, primary, rng: np.random.Generator) -> None:
        """A key of (primary parent, other column): the other column made unique per parent."""
        pk = metadata.table(self.table).primary_key
        if primary is not None and len(pk) == 2 and primary.child_foreign_key in pk:
            other = next(c for c in pk if c != primary.child_foreign_key)
            out[other] = linking.make_pairs_unique(out[primary.child_foreign_key].to_numpy(), out[other].to_numpy(), rng)

    # ----------------------------------------------------------- persistence
    def content_digest(self) -> str:
        """A digest of what the model learned (not how long it took): two fits on the same
        input and seed give the same digest, so a refit that learned nothing new leaves
        every table sampled from it fresh in Dagster's eyes."""
        import dataclasses
        import hashlib

        generator = self.get("generator")
        rest = [m for m in self.mechanisms if m is not generator]
        digest = hashlib.sha256(pickle.dumps(dataclasses.replace(self, mechanisms=rest, fit_seconds=0.0),
                                             protocol=pickle.HIGHEST_PROTOCOL))
        if generator is not None:  # its weights (the pickled transformer carries run-specific objects)
            digest.update(pickle.dumps(dataclasses.replace(generator, gan=None), protocol=pickle.HIGHEST_PROTOCOL))
            for name, tensor in sorted(generator.gan.generator.state_dict().items()):
                digest.update(name.encode())
                digest.update(tensor.detach().cpu().numpy().tobytes())
            digest.update(repr(generator.gan.training.generator_loss).encode())
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
        """The stored model; ``ModelFormatError`` when another version of the code wrote it."""
        try:
            with Path(path).open("rb") as fh:
                model = pickle.load(fh)
        except (AttributeError, ModuleNotFoundError, ImportError, TypeError) as exc:
            raise ModelFormatError(f"{path}: written by another version of the model code ({exc})") from None
        stored = model.__dict__.get("format") if isinstance(model, TableModel) else None
        if stored != MODEL_FORMAT:
            raise ModelFormatError(f"{path}: model format {stored}, this code reads format {MODEL_FORMAT}")
        return model

    def describe(self) -> dict[str, object]:
        summary: dict[str, object] = {"real_rows": self.real_rows, "fitted_rows": self.fitted_rows,
                                      "fit_seconds": round(self.fit_seconds, 2),
                                      "key_formats": {k: f.kind for k, f in self.key_formats.items()},
                                      "identity_columns": [s.column for s in self.identities],
                                      "mechanisms": [m.name for m in self.mechanisms],
                                      "rules_kept_by": self.kept_by(),
                                      "switches": {name: name in REFIT for name in self.fitted_switches()}}
        generator = self.get("generator")
        if generator is not None:
            summary["training"] = generator.gan.training.summary()
        return summary


def _key_formats(metadata: Metadata, name: str, frame: pd.DataFrame, categories: list[str]) -> dict[str, KeyFormat]:
    """Each own key's format, with the date or category a run of it follows."""
    table = metadata.table(name)
    fk_columns = {r.child_foreign_key for r in metadata.foreign_keys(name)}
    dates = [c.name for c in table.columns.values() if c.sdtype == "datetime"]
    formats = {c.name: KeyFormat.infer(frame[c.name]) for c in table.columns.values()
               if c.sdtype == ID_SDTYPE and c.name not in fk_columns}
    for k, fmt in formats.items():
        fmt.link_years(frame, k, dates)
        fmt.link_categories(frame, k, categories)
        for i, (column, _) in fmt.follows.items():
            log.info("%s: %s's run %d follows %s", name, k, i + 1, column)
    return formats


def _constraints(metadata: Metadata, name: str, real: dict[str, pd.DataFrame],
                 settings: ModelSettings) -> list[Constraint]:
    """The rules the real rows satisfy (less those switched off), and the user's own."""
    found = [c for c in discover_table(real, metadata, name) if f"{name}: {c.description}" not in settings.constraints_off]
    for rule in settings.constraints_add:
        added = parse_added(rule, metadata)
        if added.table == name and added.description not in {c.description for c in found}:
            found.append(added)
    return found


def _identities(metadata: Metadata, name: str, frame: pd.DataFrame, copies: dict[str, str],
                categories: list[str], seed: int = 0) -> list[IdentitySpec]:
    """Identity text (names, emails, phones, ...): Faker specs in one locale, templates last,
    each with its pools of Faker values drawn."""
    table = metadata.table(name)
    keys = metadata.key_columns(name)
    family = [c.name for c in table.columns.values() if c.sdtype == "last_name"]
    specs = [IdentitySpec.fit(c.name, c.sdtype, frame[c.name], frame, family, categories)
             for c in table.columns.values() if c.is_identity_text and c.name not in keys and c.name not in copies]
    for spec in specs:
        if spec.lookup is not None:
            log.info("%s: %s looked up from %s (the same text for every real row of one %s)", name, spec.column,
                     spec.lookup[0], spec.lookup[0])
    specs.sort(key=lambda spec: spec.family_of is not None or spec.sdtype == "email")  # templates last
    locale = guess_locale(frame, {s.column: s.sdtype for s in specs})
    for i, spec in enumerate(specs):
        spec.locale = locale
        spec.draw_pools(seed + i)
    return specs


def in_order(frame: pd.DataFrame, columns: list[str]) -> pd.DataFrame:
    """``frame[columns]`` without copying the columns (``frame[columns]`` copies every one:
    a whole table held twice at the end of a large table's sampling)."""
    if list(frame.columns) == list(columns):
        return frame
    if not columns:
        return frame[[]]
    return pd.DataFrame({name: frame[name] for name in columns}, copy=False)


def require_partition_rows(table: str, real_rows: int, scale: float, partitions: int) -> None:
    """Every partition needs a row of every root table: one clear error otherwise."""
    if int(round(real_rows * scale)) < partitions:
        raise ConfigError(f"table '{table}': {partitions} partitions for {real_rows} real rows x scale {scale:g}: "
                          "some partitions would get no row of this root table; use fewer partitions")


def copied_from(fit: FitContext, real: dict[str, pd.DataFrame], allow: tuple[str, ...]) -> dict[str, pd.Series]:
    """Per column copied from the primary parent (``parent_copies``), the parent column's real
    values, unless the user allows that column's values published as they are."""
    copies = fit.found.get("parent_copies")
    if copies is None or fit.primary is None or fit.primary.parent_table_name not in real:
        return {}
    parent = fit.primary.parent_table_name
    return {col: real[parent][pcol] for col, pcol in copies.columns_from.items()
            if pcol in real[parent] and f"{parent}.{pcol}" not in allow}
