"""The rows a table's model is fitted on when the real table is larger than the row budget.

A referentially consistent subsample, in the spirit of SDV's ``get_random_subset``: a child
table keeps *whole sibling groups* (every row of a sampled parent, none of the others), so
each kept row still has its parent and the within-parent structure (event sequences, the
gaps between siblings, how many children a parent has) is learned from complete families.
A root table keeps a plain random share of its rows. A group is kept when a seeded hash of
its key falls below the share, so a rerun on slightly grown data keeps nearly the same
families (only the threshold moves). Each table is sampled for its own model; its parents
are read whole, so every kept row's parent row is there.

What the sample does not change: children-per-parent counts (they are counted on the full
child tables), the number of rows generated (the full table's), and the real rows a
synthetic row must not copy (hashed from the full table).
"""

from __future__ import annotations

import numpy as np
import pandas as pd

from synth_pipeline.schema.metadata import Metadata


def fit_sample(metadata: Metadata, name: str, frame: pd.DataFrame, max_rows: int, seed: int) -> pd.DataFrame:
    """``frame`` itself when it fits the budget (``max_rows`` <= 0: no budget), else about
    ``max_rows`` of its rows, whole sibling groups under its primary parent."""
    if max_rows <= 0 or len(frame) <= max_rows:
        return frame
    share = max_rows / len(frame)
    primary = metadata.primary_relationship(name)
    if primary is not None and frame[primary.child_foreign_key].notna().any():
        keys = frame[primary.child_foreign_key]
    else:
        keys = frame[list(metadata.table(name).primary_key)].astype(str).agg("|".join, axis=1) \
            if len(metadata.table(name).primary_key) > 1 else frame[metadata.table(name).primary_key[0]]
    kept = _kept(keys, share, seed)
    return frame.loc[kept].reset_index(drop=True)


def _kept(keys: pd.Series, share: float, seed: int) -> np.ndarray:
    """Rows whose key hashes below ``share`` (rows without a key: drawn at random, same share)."""
    hash_key = f"{seed % 10**16:016d}"
    hashed = pd.util.hash_pandas_object(keys.astype(str), index=False, hash_key=hash_key).to_numpy(dtype="uint64")
    kept = hashed < np.uint64(share * float(2**64 - 1))
    missing = keys.isna().to_numpy()
    if missing.any():
        kept[missing] = np.random.default_rng(seed).random(int(missing.sum())) < share
    return kept
