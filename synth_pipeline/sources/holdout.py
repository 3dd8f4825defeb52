"""The privacy holdout: real rows the models never see, the reference privacy is scored on.

With ``privacy_holdout: s`` a share ``s`` of the rows of each *lineage head* is held out of
fitting together with every row that descends from them. A lineage head is the highest
table on each line of descent that has rows enough to hold out at least ``MIN_HELD_ROWS``
of them: a root table usually, but a lookup table of six languages is not split (holding out
one language would hold out every film), the films under it are. A row follows its primary
parent (the one that owns it): the held-out rows are whole families the model never saw. A
fitted row whose *other* foreign key names a held-out row is pointed at a random fitted row
instead (holding it out too would hold out a further share of every table with several
parents: half of the school's marks), so the fitted rows keep every parent they reference.

Rows are chosen by a seeded hash of their key, so a rerun holds out the same families.
The held-out rows are scored, never fitted: the report's DCR overfitting protection
(sdmetrics) and membership inference compare the synthetic rows' closeness to the fitted
rows with their closeness to these.
"""

from __future__ import annotations

import math

import numpy as np
import pandas as pd

from synth_pipeline.modeling.fit_sample import _kept
from synth_pipeline.schema.metadata import Metadata

MIN_HELD_ROWS = 10  # fewer held-out rows make no reference: such a table is not split itself


def head_rows(share: float) -> int:
    """The rows a table needs to be a lineage head at ``share``."""
    return math.ceil(MIN_HELD_ROWS / share)


def split_holdout(metadata: Metadata, name: str, frame: pd.DataFrame, held_parents: dict[str, pd.Series],
                  fitted_parents: dict[str, pd.Series], below_head: bool, share: float,
                  seed: int) -> tuple[pd.DataFrame, np.ndarray, bool]:
    """(``frame`` with its fitted rows' other foreign keys kept on fitted parents, which rows are
    held out, whether ``name`` is a lineage head).

    A row follows its primary parent (the parent that owns it: a student's enrollments follow
    the student). ``held_parents`` / ``fitted_parents``: per parent table, the keys of its
    held-out and its fitted rows; ``below_head``: the primary parent is a lineage head or below
    one (the table is then not a head itself). A fitted row whose other foreign key names a
    held-out row is pointed at a random fitted row of that parent instead, so the fitted rows
    stay whole without holding out a second, third... share of every table with several parents."""
    held = np.zeros(len(frame), dtype=bool)
    head = not below_head and len(frame) >= head_rows(share)
    primary = metadata.primary_relationship(name)
    if head:
        keys = list(metadata.table(name).primary_key)
        values = frame[keys[0]] if len(keys) == 1 else frame[keys].astype(str).agg("|".join, axis=1)
        held |= _kept(values, share, seed)
    elif primary is not None and primary.parent_table_name in held_parents and not primary.is_self_reference:
        held |= frame[primary.child_foreign_key].isin(held_parents[primary.parent_table_name]).to_numpy()
    for rel in metadata.foreign_keys(name):  # a row under a held-out row of its own table
        if rel.is_self_reference:
            for _ in range(len(frame)):
                more = frame[rel.child_foreign_key].isin(frame.loc[held, rel.parent_primary_key]).to_numpy() & ~held
                if not more.any():
                    break
                held |= more
    rng = np.random.default_rng(seed)
    frame = frame.copy()
    for rel in metadata.foreign_keys(name):
        parent = rel.parent_table_name
        if rel.is_self_reference or (rel == primary and not head) or parent not in held_parents:
            continue
        dangling = ~held & frame[rel.child_foreign_key].isin(held_parents[parent]).to_numpy()
        if dangling.any() and len(fitted_parents[parent]):
            column = frame[rel.child_foreign_key].astype(object)
            column[dangling] = rng.choice(fitted_parents[parent].to_numpy(dtype=object), int(dangling.sum()))
            frame[rel.child_foreign_key] = column.astype(frame[rel.child_foreign_key].dtype)
    return frame, held, head
