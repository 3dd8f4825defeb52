"""Privacy figures: copied rows, distance to closest record, verbatim identity strings.

* copied rows: synthetic rows whose every non-key column equals a real row whose values
  are unique in the real table (a combination shared by many real rows, such as a course
  enrollment's year, term and grade, identifies no one and is counted apart as
  ``common_combination_rows``);
* DCR: Gower distance (numbers scaled by the real range, categories 0/1) from each
  synthetic row to its closest real row, set beside the distance from held-out real rows
  to the remaining real rows. The model is fitted on every real row, so the held-out rows
  are a reference for "as close as real rows are to each other", not unseen training data;
  a ratio well under 1 or a large share at distance 0 would mean the model copies;
* verbatim identity strings: synthetic values of identity columns (emails, phones,
  addresses, full names, plates) found in the same real column. Single given names,
  family names, cities and states are reported apart: any name generator reuses them.
"""

from __future__ import annotations

import numpy as np
import pandas as pd
from sklearn.neighbors import NearestNeighbors

from synth_pipeline.schema.metadata import COMMON_TOKENS, Metadata
from synth_pipeline.stats import (
    NUMERIC,
    as_labels,
    as_numbers,
    compared_columns,
    copy_columns,
    row_digests,
)


def copied_rows(real: pd.DataFrame, synthetic: pd.DataFrame, columns: list[str]) -> tuple[int, int]:
    """(copies of unique real rows, rows equal to a combination several real rows share)."""
    if not columns or synthetic.empty:
        return 0, 0
    real_hashes = pd.Series(row_digests(real, columns)).value_counts()
    syn_hashes = pd.Series(row_digests(synthetic, columns))
    multiplicity = syn_hashes.map(real_hashes).fillna(0)
    return int((multiplicity == 1).sum()), int((multiplicity > 1).sum())


def _gower_matrix(frame: pd.DataFrame, kinds: dict[str, str], reference: pd.DataFrame) -> np.ndarray:
    parts = []
    for col, kind in kinds.items():
        if kind in NUMERIC:
            ref = as_numbers(reference[col], kind)
            span = float(ref.max() - ref.min()) or 1.0
            values = as_numbers(frame[col], kind).fillna(ref.median() if ref.notna().any() else 0.0)
            parts.append(((values - ref.min()) / span).to_numpy()[:, None])
        else:
            cats = as_labels(reference[col]).unique()
            labels = as_labels(frame[col]).to_numpy()
            parts.append(0.5 * (labels[:, None] == cats[None, :]).astype(float))
    return np.hstack(parts) / max(len(kinds), 1)


def dcr(real: pd.DataFrame, synthetic: pd.DataFrame, kinds: dict[str, str], max_rows: int = 2000,
        seed: int = 0) -> dict:
    if not kinds or len(real) < 10 or synthetic.empty:
        return {}
    rng = np.random.default_rng(seed)
    order = rng.permutation(len(real))
    holdout_n = max(1, min(len(real) // 5, max_rows))
    holdout, rest = real.iloc[order[:holdout_n]], real.iloc[order[holdout_n:]]
    syn = synthetic.sample(min(len(synthetic), max_rows), random_state=seed)
    index = NearestNeighbors(n_neighbors=1, metric="manhattan").fit(_gower_matrix(rest, kinds, real))
    d_syn = index.kneighbors(_gower_matrix(syn, kinds, real))[0][:, 0]
    d_hold = index.kneighbors(_gower_matrix(holdout, kinds, real))[0][:, 0]
    med_syn, med_hold = float(np.median(d_syn)), float(np.median(d_hold))
    return {"synthetic_to_real_median": round(med_syn, 5), "holdout_to_real_median": round(med_hold, 5),
            "ratio": round(med_syn / med_hold, 4) if med_hold > 0 else None,
            "synthetic_at_zero_share": round(float(np.mean(d_syn < 1e-9)), 4),
            "holdout_at_zero_share": round(float(np.mean(d_hold < 1e-9)), 4)}


def verbatim_identity(real: pd.DataFrame, synthetic: pd.DataFrame, metadata: Metadata, table: str) -> dict:
    out = {}
    for col in metadata.table(table).columns.values():
        if not col.is_identity_text or col.name not in synthetic:
            continue
        real_values = set(real[col.name].dropna().astype(str))
        values = synthetic[col.name].dropna().astype(str)
        hits = int(values.isin(real_values).sum())
        out[col.name] = {"sdtype": col.sdtype, "verbatim": hits, "share": round(hits / max(len(values), 1), 4),
                         "identifying": col.sdtype not in COMMON_TOKENS}
    return out


def table_privacy(real: pd.DataFrame, synthetic: pd.DataFrame, metadata: Metadata, table: str, seed: int = 0) -> dict:
    non_key = copy_columns(metadata, table)
    copies, common = copied_rows(real, synthetic, non_key)
    identity = verbatim_identity(real, synthetic, metadata, table)
    return {
        "copied_rows": copies, "copied_row_share": round(copies / max(len(synthetic), 1), 4),
        "common_combination_rows": common,
        "compared_columns": non_key,
        "dcr": dcr(real, synthetic, compared_columns(metadata, table), seed=seed),
        "identity_columns": identity,
        "verbatim_identity_strings": int(sum(v["verbatim"] for v in identity.values() if v["identifying"])),
    }
