"""Post-generation repair: whatever the model could not guarantee, enforce here.

* primary keys: nulls and duplicates get fresh keys of the table's format (composite
  keys: duplicate rows are dropped);
* alternate (business) keys: duplicates get fresh values;
* foreign keys: a value that is not a key of the synthetic parent is pointed at a random
  existing parent (or set null when the real column had nulls);
* constraints (discovered and user-added) the model could not guarantee: ``a -> b`` sets b
  to the real value for a; ``a <= b`` / ``a < b`` swaps the two values of a row that breaks
  it (and moves ``a`` one unit below ``b`` where a strict order meets equal values);
* copies: a row whose non-key values equal a real row that no other real row shares gets
  one number or date moved by its smallest step, or else one value swapped with another
  synthetic row (in a column no constraint involves), so no real record is reproduced;
  the model holds hashes of the unique real rows, not the rows.

Every fix is counted, so the report can say how much repair was needed.
"""

from __future__ import annotations

from dataclasses import dataclass, field

import numpy as np
import pandas as pd

from synth_pipeline.modeling.mechanism import SampleContext
from synth_pipeline.modeling.table_model import TableModel
from synth_pipeline.schema.constraints import unit_of
from synth_pipeline.schema.keys import WHOLE, KeyFormat, Partition
from synth_pipeline.schema.metadata import Metadata
from synth_pipeline.stats import (
    as_datetimes,
    as_labels,
    changed_values,
    digest_in,
    row_digests,
)


@dataclass
class RepairLog:
    fixes: dict[str, int] = field(default_factory=dict)

    def add(self, what: str, count: int) -> None:
        if count:
            self.fixes[what] = self.fixes.get(what, 0) + int(count)

    @property
    def total(self) -> int:
        return sum(self.fixes.values())


def repair_table(frame: pd.DataFrame, metadata: Metadata, name: str, parents: dict[str, pd.DataFrame],
                 model: TableModel, seed: int, part: Partition = WHOLE,
                 off: tuple[str, ...] = ()) -> tuple[pd.DataFrame, RepairLog]:
    rng = np.random.default_rng(seed)
    table = metadata.table(name)
    # a copy: the caller's frame is left as it was (and one read from Parquet has read-only arrays)
    frame = frame.reset_index(drop=True)
    repairs = RepairLog()
    pk = table.single_primary_key
    if pk is not None:
        fmt = model.key_formats.get(pk) or KeyFormat.infer(frame[pk])
        repairs.add(f"primary key {pk}", _refresh_duplicates(frame, pk, fmt, rng, part))
    for key in table.alternate_keys:
        if key in model.key_formats:
            repairs.add(f"alternate key {key}", _refresh_duplicates(frame, key, model.key_formats[key], rng, part))
    for rel in metadata.foreign_keys(name):
        source = frame if rel.is_self_reference else parents[rel.parent_table_name]
        valid = source[rel.parent_primary_key].to_numpy(dtype=object)
        values = frame[rel.child_foreign_key]
        bad = values.notna() & ~values.isin(valid)
        if model.fk_null_rates.get(rel.child_foreign_key, 0.0) == 0.0:
            bad |= values.isna()
        if bad.any():
            if model.fk_null_rates.get(rel.child_foreign_key, 0.0) > 0 or len(valid) == 0:
                frame.loc[bad, rel.child_foreign_key] = None
            else:
                frame.loc[bad, rel.child_foreign_key] = rng.choice(valid, int(bad.sum()))
        repairs.add(f"foreign key {rel.child_foreign_key}", int(bad.sum()))
    run = SampleContext(metadata=metadata, parents=parents, rng=rng, column_rng=rng, part=part, off=frozenset(off))
    frame = _applied(model, "repair_values", frame, run, repairs)  # before the rules: a swap keeps both
    fixes = _enforce_constraints(frame, model)
    fixes.update(_enforce_parent_dates(frame, metadata, name, parents, model, rng, run))
    frame = _applied(model, "repair_links", frame, run, repairs)  # last of the links: a key a path implies
    for description, count in fixes.items():
        repairs.add(f"constraint {description}", count)
    fixed, left = _break_copies(frame, model, rng)
    repairs.add("copied real rows changed", fixed)
    repairs.add("copied real rows left (no free column)", left)
    if len(table.primary_key) > 1:
        dup = frame.duplicated(list(table.primary_key)) | frame[list(table.primary_key)].isna().any(axis=1)
        repairs.add(f"duplicate composite key ({', '.join(table.primary_key)}) rows dropped", int(dup.sum()))
        if dup.any():  # (none: the frame as it is, not copied)
            frame = frame[~dup]
            frame.index = pd.RangeIndex(len(frame))
    return frame, repairs


def _applied(model: TableModel, phase: str, frame: pd.DataFrame, run: SampleContext, repairs: RepairLog) -> pd.DataFrame:
    """The model's mechanisms of a repair phase applied, and the values each changed logged."""
    for mechanism in model.mechanisms:
        if mechanism.phase != phase:
            continue
        columns = [c for c in mechanism.columns if c in frame.columns]
        before = frame[columns].copy()
        if run.on(mechanism.name):
            changed = mechanism.apply(frame, run)
            frame = frame if changed is None else changed
        changed = sum(changed_values(before[c], frame[c]) for c in columns)
        repairs.add(f"{mechanism.name}: {mechanism.label}", changed)
    return frame


def _refresh_duplicates(frame: pd.DataFrame, column: str, fmt: KeyFormat, rng: np.random.Generator,
                        part: Partition = WHOLE) -> int:
    values = frame[column]
    bad = values.isna() | values.duplicated()
    n_bad = int(bad.sum())
    if n_bad == 0:
        return 0
    taken = set(values.dropna().astype(str))
    fresh: list = []
    start = len(frame)
    while len(fresh) < n_bad:
        candidates = fmt.generate(n_bad, rng, start=start, rows=frame.loc[bad], part=part)
        fresh.extend(c for c in candidates if str(c) not in taken)
        start += n_bad
    frame[column] = frame[column].astype(object)
    frame.loc[bad, column] = np.asarray(fresh[:n_bad], dtype=object)
    if fmt.kind == "integer":
        frame[column] = frame[column].astype("int64")
    return n_bad


def _enforce_constraints(frame: pd.DataFrame, model: TableModel) -> dict[str, int]:
    fixes: dict[str, int] = {}
    constraints = model.constraints
    for c in constraints:  # dependencies first: an inequality fix must not undo them
        if c.kind != "functional_dependency" or not set(c.columns) <= set(frame.columns):
            continue
        a, b = c.columns
        mapping = model.fd_maps.get(c.description, {})
        expected = as_labels(frame[a]).map(mapping)
        bad = expected.notna() & (frame[b].astype(str) != expected.astype(str))
        if bad.any():
            frame[b] = frame[b].astype(object)
            frame.loc[bad, b] = expected[bad]
            frame[b] = frame[b].infer_objects()
            fixes[c.description] = int(bad.sum())
    for c in constraints:
        if c.kind != "inequality" or not set(c.columns) <= set(frame.columns):
            continue
        a, b = c.columns
        x, y = frame[a], frame[b]
        swap = (x > y).fillna(False).to_numpy(dtype=bool)
        if swap.any():
            if frame[a].dtype != frame[b].dtype and pd.api.types.is_numeric_dtype(frame[a]) \
                    and pd.api.types.is_numeric_dtype(frame[b]):  # an integer and a float column: swap as floats
                frame[a], frame[b] = frame[a].astype("float64"), frame[b].astype("float64")
            frame.loc[swap, [a, b]] = frame.loc[swap, [b, a]].to_numpy()
        orderable = pd.api.types.is_datetime64_any_dtype(frame[a]) or pd.api.types.is_numeric_dtype(frame[a])
        tie = ((frame[a] == frame[b]).fillna(False).to_numpy(dtype=bool) if c.strict and orderable
               else np.zeros(len(frame), bool))
        if tie.any():
            step = pd.Timedelta(days=1) if pd.api.types.is_datetime64_any_dtype(frame[a]) else unit_of(frame[a])
            frame.loc[tie, a] = frame.loc[tie, b] - step
        if swap.any() or tie.any():
            fixes[c.description] = int(swap.sum() + tie.sum())
    return fixes


def _enforce_parent_dates(frame: pd.DataFrame, metadata: Metadata, name: str, parents: dict[str, pd.DataFrame],
                          model: TableModel, rng: np.random.Generator, run: SampleContext | None = None) -> dict[str, int]:
    """``child date >= parent date`` through a foreign key: a row linked to a second parent
    dated after it (an assignment led by a teacher hired later) swaps parents with a row
    that fits both, so every parent keeps its number of children (else it takes a random
    parent dated on or before it); under the primary parent (which owns the row) the child
    date is moved up to the parent's; under a second parent whose links follow a path
    (a bridge of the model's links) the child date moves instead, to the parent's plus an offset drawn
    from the rows that keep the order (so the offsets keep their shape)."""
    fixes: dict[str, int] = {}
    primary = metadata.primary_relationship(name)
    links = model.get("links")
    bridges = links.bridges if links is not None and (run is None or run.on("bridges")) else {}
    for c in model.constraints:
        if c.kind != "parent_date_order" or c.parent not in parents or c.foreign_key not in frame.columns:
            continue
        if any(p.kind == "path" and p.columns[0] == c.foreign_key for p in model.constraints):
            continue  # the key follows its path (copied after this), not a date
        child_col, parent_col = c.columns
        rel = next(r for r in metadata.foreign_keys(name) if r.child_foreign_key == c.foreign_key)
        parent = parents[c.parent]
        dates = pd.Series(as_datetimes(parent[parent_col]).to_numpy(), index=parent[rel.parent_primary_key].to_numpy())
        linked = as_datetimes(frame[c.foreign_key].map(dates))
        child = as_datetimes(frame[child_col])
        bad = (child < linked).fillna(False).to_numpy(dtype=bool)
        if not bad.any():
            continue
        if primary is not None and rel.child_foreign_key == primary.child_foreign_key:
            frame.loc[bad, child_col] = linked[bad].to_numpy()
            fixes[c.description] = int(bad.sum())
            continue
        if c.foreign_key in bridges:  # the link follows a path: the date moves
            ok = ~bad & child.notna().to_numpy() & linked.notna().to_numpy()  # the rows keeping the order show
            gaps = (child - linked).to_numpy()[ok]
            offsets = rng.choice(gaps, int(bad.sum())) if len(gaps) else np.zeros(int(bad.sum()), "timedelta64[ns]")
            frame.loc[bad, child_col] = linked[bad].to_numpy() + offsets
            fixes[c.description] = int(bad.sum())
            continue
        keys = frame[c.foreign_key].to_numpy(dtype=object).copy()
        child_days, parent_days = child.to_numpy(), linked.to_numpy()
        fixed, left = 0, []
        for r in np.nonzero(bad)[0]:  # swap parents with a row that fits both: every parent keeps its count
            cand = rng.integers(0, len(frame), 64)
            fits = (parent_days[cand] <= child_days[r]) & (parent_days[r] <= child_days[cand])
            if fits.any():
                j = cand[np.argmax(fits)]
                keys[r], keys[j] = keys[j], keys[r]
                parent_days[r], parent_days[j] = parent_days[j], parent_days[r]
                fixed += 1
            else:
                left.append(r)
        if left:  # no such row: a random parent dated on or before the row
            order = np.argsort(dates.to_numpy(), kind="stable")
            sorted_dates, sorted_keys = dates.to_numpy()[order], dates.index.to_numpy()[order]
            eligible = np.searchsorted(sorted_dates, child_days[left], side="right")
            can = eligible > 0
            picks = (rng.random(int(can.sum())) * eligible[can]).astype(int)
            keys[np.asarray(left)[can]] = sorted_keys[picks]
            fixed += int(can.sum())
        frame[c.foreign_key] = pd.Series(keys, index=frame.index).infer_objects()
        fixes[c.description] = fixed
    return fixes


def _swap_away(frame, rows, free, columns, digests, rng, tries, within: dict[str, str] | None = None) -> np.ndarray:
    """Swap a free value of each copied row with a random other row's, keeping the swaps after
    which neither row equals a real row (the column's values only change places, so its
    distribution is untouched). ``within``: columns swapped only between rows of one parent
    (the academic years a student's enrollments share stay that student's). Rounds of one swap
    per pending row, all rows at once; returns the positions still copies after ``tries`` rounds."""
    pending = np.asarray(rows, dtype=int)
    if not free:
        return pending
    n = len(frame)
    groups = {}
    for col, key in (within or {}).items():
        codes = pd.factorize(frame[key].astype(object))[0]
        order = np.argsort(codes, kind="stable")
        starts = np.searchsorted(codes[order], np.arange(codes.max() + 2 if len(codes) else 1))
        groups[col] = (codes, order, starts)
    for round_ in range(tries):
        if not len(pending) or n < 2:
            break
        col = free[round_ % len(free)]
        if col in groups:  # a random row of the same parent (itself where it has no sibling: no swap)
            codes, order, starts = groups[col]
            g = np.maximum(codes[pending], 0)
            size = starts[g + 1] - starts[g]
            partners = np.where(codes[pending] >= 0, order[starts[g] + (rng.random(len(pending)) * size).astype(int)],
                                pending)
        else:
            partners = rng.integers(n, size=len(pending))
        is_pending = np.zeros(n, dtype=bool)
        is_pending[pending] = True
        # within one parent the partner may be a copy too (a student's other enrollment);
        # elsewhere partners are clean rows. Each row takes part in one swap per round.
        ok = partners != pending if col in groups else ~is_pending[partners]
        sequence = np.column_stack([pending, partners]).ravel()
        _, first = np.unique(sequence, return_index=True)
        once = np.zeros(len(sequence), dtype=bool)
        once[first] = True
        ok &= once[0::2] & once[1::2]
        column = frame[col]
        a, b = column.iloc[pending].to_numpy(dtype=object), column.iloc[partners].to_numpy(dtype=object)
        ok &= ~(pd.isna(a) & pd.isna(b)) & (pd.Series(a).ne(pd.Series(b)).to_numpy())
        i, j = pending[ok], partners[ok]
        if not len(i):
            continue
        position = frame.columns.get_loc(col)
        before_i, before_j = frame.iloc[i, position].to_numpy(), frame.iloc[j, position].to_numpy()
        frame.iloc[i, position], frame.iloc[j, position] = before_j, before_i
        copy_i = digest_in(row_digests(frame.iloc[i], columns), digests)
        copy_j = digest_in(row_digests(frame.iloc[j], columns), digests)
        bad = copy_i | (copy_j & ~is_pending[j])  # kept: the row is freed and no clean row became a copy
        frame.iloc[i[bad], position], frame.iloc[j[bad], position] = before_i[bad], before_j[bad]
        is_pending[i[~bad]] = False
        is_pending[j[~bad]] = copy_j[~bad]
        pending = np.nonzero(is_pending)[0]
    return pending


def _nudge_away(frame, rows, numeric, steps, columns, digests, reach: int = 10, signs=(1, -1),
                bounds: dict | None = None) -> np.ndarray:
    """Move a number or date of each copied row by the smallest step(s) the column is written
    in (this also works where swapping cannot: one column, or every combination is a real
    one): per column, +1, -1, +2, -2... steps, the first move that leaves the real rows wins,
    never past the column's real range (``bounds``: column -> (low, high)).
    All rows move at once (one digest pass per move); returns the rows still copies."""
    pending = frame.index[rows]
    bounds = bounds or {}
    for col in numeric:
        if not len(pending):
            break
        original = frame.loc[pending, col]
        moving = original.index[original.notna()]
        for k in range(1, reach + 1):
            for sign in signs:
                if not len(moving):
                    break
                moved = original[moving] + sign * k * steps[col]
                inside = np.ones(len(moving), dtype=bool)
                if col in bounds:
                    inside = ((moved >= bounds[col][0]) & (moved <= bounds[col][1])).to_numpy()
                frame.loc[moving, col] = moved.where(inside, original[moving])
                still = digest_in(row_digests(frame.loc[moving], columns), digests) | ~inside
                moving = moving[still]
        frame.loc[moving, col] = original[moving]
        pending = pending[np.isin(pending, moving) | np.isin(pending, original.index[original.isna()])]
    return frame.index.get_indexer(pending)


def _bounded_below_only(model: TableModel, columns: list[str]) -> list[str]:
    """Columns whose every rule only bounds them from below (``transaction_date >=
    students.enrollment_date``, a date rebuilt as its parent's date plus a gap): moving one
    up keeps every rule."""
    roles: dict[str, set[str]] = {c: set() for c in columns}
    for c in model.constraints:
        for position, col in enumerate(c.columns):
            if col in roles:
                below = (c.kind == "inequality" and position == 1) or (c.kind == "parent_date_order" and position == 0)
                roles[col].add("below" if below else "other")
    derived = model.get("derived")
    for d in derived.model.derivations if derived is not None else []:
        if d.column in roles:
            below = d.kind == "parent_offset" or (d.kind == "offset" and not d.before)
            roles[d.column].add("below" if below else "other")
        for col in (d.anchor, d.by):
            if col in roles and d.kind != "parent_offset":
                roles[col].add("other")
    return [c for c, seen in roles.items() if seen == {"below"}]


def _rule_columns(model: TableModel, spreads: bool = True) -> set[str]:
    """Columns a sampling rule set row by row (one lead per course, one academic year per
    course's instructors, a name within its department, a key prefix or a description
    following a category...): swapping them between rows would undo the rule."""
    out = model.columns_set_by("one_per_parent", "counts_within", "name_quotas", *(("sibling_spreads",) if spreads else ()))
    links = model.get("links")
    for link in links.links.values() if links is not None else []:
        out |= {one.column for one in link.ones} | ({link.bridge.by} if link.bridge is not None and link.bridge.by else set())
    copies = model.get("parent_copies")
    supports = model.get("pair_supports")
    if copies is not None and supports is not None:
        out |= {s.follower for s in supports.parts if s.leader in copies.columns}
    out |= {c for fmt in model.key_formats.values() for c, _ in fmt.follows.values()}
    out |= {spec.lookup[0] for spec in model.identities if spec.lookup}
    return out


def _break_copies(frame: pd.DataFrame, model: TableModel, rng: np.random.Generator, tries: int = 200) -> tuple[int, int]:
    digests = model.real_row_digests
    columns = [c for c in model.copy_columns if c in frame.columns]
    if digests is None or len(digests) == 0 or not columns or frame.empty:
        return 0, 0
    hashes = row_digests(frame, columns)
    copied = np.nonzero(digest_in(hashes, digests))[0]
    if len(copied) == 0:
        return 0, 0
    bound = {col for c in model.constraints for col in c.columns}
    derived = model.get("derived")
    for d in derived.model.derivations if derived is not None else []:  # amount = quantity x price of item
        bound |= {d.column, d.anchor, d.by} - {""}
    bound |= model.columns_set_by("parent_copies")
    # a column siblings share (and no other rule sets) may still change places between two
    # rows of one parent
    spreads = model.get("sibling_spreads")
    within = {found.column: found.foreign_key for found in (spreads.parts if spreads is not None else [])
              if found.column in columns and found.foreign_key in frame.columns
              and found.column not in bound | _rule_columns(model, spreads=False)
              and frame[found.column].nunique() > 1}
    bound |= _rule_columns(model)
    free = [c for c in columns if c not in bound and frame[c].nunique(dropna=False) > 1]
    numeric = [c for c in free if (pd.api.types.is_numeric_dtype(frame[c]) and not pd.api.types.is_bool_dtype(frame[c]))
               or pd.api.types.is_datetime64_any_dtype(frame[c])]
    shapes = model.get("number_shapes")
    shapes = {s.column: s for s in (shapes.parts if shapes is not None else [])}
    # a column of few real values is not nudged between them (a swap keeps it on its support)
    numeric = [c for c in numeric if c not in shapes or shapes[c].support is None]
    numeric.sort(key=lambda c: -frame[c].nunique())  # a step barely shows on a many-valued column
    steps = {c: pd.Timedelta(days=1) if pd.api.types.is_datetime64_any_dtype(frame[c])
             else shapes[c].step if c in shapes and shapes[c].step
             else 1 if pd.api.types.is_integer_dtype(frame[c]) else unit_of(frame[c]) for c in numeric}
    # a number moved by its smallest step first (cheap, the marginal barely moves), then a
    # number or date only bounded from below moved up (a purchase a day later stays after the
    # enrollment), else a swap
    bounds = {c: (s.low, s.high) for c, s in shapes.items() if s.low is not None and s.high is not None}
    left = _nudge_away(frame, copied, numeric, steps, columns, digests, bounds=bounds)
    rising = [c for c in _bounded_below_only(model, columns) if c not in numeric and frame[c].nunique() > 1
              and (pd.api.types.is_datetime64_any_dtype(frame[c]) or pd.api.types.is_numeric_dtype(frame[c]))]
    if len(left) and rising:
        up = {c: pd.Timedelta(days=1) if pd.api.types.is_datetime64_any_dtype(frame[c])
              else 1 if pd.api.types.is_integer_dtype(frame[c]) else unit_of(frame[c]) for c in rising}
        left = _nudge_away(frame, left, rising, up, columns, digests, signs=(1,), bounds=bounds)
    left = _swap_away(frame, left, free + list(within), columns, digests, rng, tries, within)
    # last resort for the few rows no such swap frees: the shared column changes parent
    unfixed = len(_swap_away(frame, left, list(within), columns, digests, rng, tries))
    return len(copied) - unfixed, unfixed
