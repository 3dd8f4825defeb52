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
* with a privacy holdout (real rows the models never saw): sdmetrics' DCR overfitting
  protection (are synthetic rows nearer the fitted rows than equally many unseen ones?) and
  DCR baseline protection (against uniform random rows), and a distance membership attack
  (how well closeness to a synthetic row tells a fitted row from an unseen one: AUC, and its
  advantage over guessing, 2·AUC − 1);
* verbatim identity strings: synthetic values of identity columns (emails, phones,
  addresses, full names, plates) found in the same real column, among the values fewer than
  five real rows carry. Single given names,
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
    """``_gower_parts`` as one matrix whose L1 distance is the Gower distance (a label as 1/2
    in its one-hot column), for a tree search."""
    numbers, codes, sizes = _gower_parts(frame, kinds, reference)
    onehot = [0.5 * (codes[:, k, None] == np.arange(size)[None, :]) for k, size in enumerate(sizes)]
    return np.hstack([numbers, *onehot]) / max(len(kinds), 1)


def _gower_parts(frame: pd.DataFrame, kinds: dict[str, str],
                 reference: pd.DataFrame) -> tuple[np.ndarray, np.ndarray, list[int]]:
    """``frame``'s rows as Gower coordinates against ``reference``: numbers (and dates) scaled
    by the reference's range (a missing one at its median), labels as codes among the
    reference's labels (-1: a label it lacks), and how many labels each such column has."""
    numbers, labels, sizes = [], [], []
    for col, kind in kinds.items():
        if kind in NUMERIC:
            ref = as_numbers(reference[col], kind)
            span = float(ref.max() - ref.min()) or 1.0
            values = as_numbers(frame[col], kind).fillna(ref.median() if ref.notna().any() else 0.0)
            numbers.append(((values - ref.min()) / span).to_numpy(dtype=float))
        else:
            known = pd.Index(as_labels(reference[col]).unique())
            labels.append(known.get_indexer(as_labels(frame[col])))
            sizes.append(len(known))
    n = len(frame)
    return (np.column_stack(numbers) if numbers else np.zeros((n, 0)),
            np.column_stack(labels) if labels else np.zeros((n, 0), dtype=np.int64), sizes)


GOWER_BLOCK_CELLS = 4_000_000  # query x reference distances held at once


def _nearest(reference: tuple[np.ndarray, np.ndarray, list[int]], queries: tuple[np.ndarray, np.ndarray, list[int]],
             width: int) -> np.ndarray:
    """Each query row's Gower distance to its nearest reference row (``_gower_parts`` of
    both; ``width``: the columns compared): the mean over columns of the absolute difference
    of scaled numbers, and of 1 for differing labels (1/2 where one side's label is not
    among the reference's). A block of queries at a time against every reference row, a
    column at a time: no one-hot column per label (a 1,000-label column made nearest-
    neighbour search 50 times slower)."""
    ref_numbers, ref_codes, _ = reference
    numbers, codes, _ = queries
    ref_known = ref_codes >= 0
    out = np.empty(len(numbers))
    step = max(1, GOWER_BLOCK_CELLS // max(len(ref_numbers), 1))
    for start in range(0, len(numbers), step):
        block_numbers, block_codes = numbers[start:start + step], codes[start:start + step]
        distance = np.zeros((len(block_numbers), len(ref_numbers)))
        for k in range(ref_numbers.shape[1]):
            distance += np.abs(block_numbers[:, k, None] - ref_numbers[None, :, k])
        for k in range(ref_codes.shape[1]):
            known = (block_codes[:, k, None] >= 0).astype(float) + ref_known[None, :, k]
            distance += 0.5 * (block_codes[:, k, None] != ref_codes[None, :, k]) * known
        out[start:start + len(block_numbers)] = distance.min(axis=1) if len(ref_numbers) else np.inf
    return out / max(width, 1)


DCR_REFERENCE_ROWS = 20_000  # real rows the distances are measured to, at most (a seeded sample of the rest)


def dcr(real: pd.DataFrame, synthetic: pd.DataFrame, kinds: dict[str, str], max_rows: int = 2000,
        seed: int = 0) -> dict:
    """Distances to the closest real record: of synthetic rows and of held-back real rows, to
    the other real rows (at most ``DCR_REFERENCE_ROWS`` of them, a seeded sample: the nearest-
    neighbour search scans every reference row for every query, minutes on a 600,000-row table;
    both distances are measured to the same rows, so their ratio stays comparable)."""
    if not kinds or len(real) < 10 or synthetic.empty:
        return {}
    rng = np.random.default_rng(seed)
    order = rng.permutation(len(real))
    holdout_n = max(1, min(len(real) // 5, max_rows))
    holdout, rest = real.iloc[order[:holdout_n]], real.iloc[order[holdout_n:holdout_n + DCR_REFERENCE_ROWS]]
    syn = synthetic.sample(min(len(synthetic), max_rows), random_state=seed)
    reference = _gower_parts(rest, kinds, real)
    d_syn = _nearest(reference, _gower_parts(syn, kinds, real), len(kinds))
    d_hold = _nearest(reference, _gower_parts(holdout, kinds, real), len(kinds))
    med_syn, med_hold = float(np.median(d_syn)), float(np.median(d_hold))
    return {"synthetic_to_real_median": round(med_syn, 5), "holdout_to_real_median": round(med_hold, 5),
            "ratio": round(med_syn / med_hold, 4) if med_hold > 0 else None,
            "synthetic_at_zero_share": round(float(np.mean(d_syn < 1e-9)), 4),
            "holdout_at_zero_share": round(float(np.mean(d_hold < 1e-9)), 4)}


def holdout_scores(training: pd.DataFrame, synthetic: pd.DataFrame, holdout: pd.DataFrame, kinds: dict[str, str],
                   seed: int = 0, max_rows: int = 1000) -> dict:
    """DCR overfitting and baseline protection (sdmetrics) and a distance membership attack,
    on equally many fitted, held-out and synthetic rows (sdmetrics counts a synthetic row as
    nearer the fitted rows only when strictly nearer; equal sizes keep the odds even)."""
    n = min(len(training), len(holdout), len(synthetic), max_rows)
    if not kinds or n < 2:
        return {}
    from sdmetrics.single_table import DCRBaselineProtection, DCROverfittingProtection

    rng = np.random.default_rng(seed)
    columns = list(kinds)

    def pick(frame: pd.DataFrame) -> pd.DataFrame:
        rows = frame.iloc[np.sort(rng.choice(len(frame), n, replace=False))][columns].reset_index(drop=True)
        for col, kind in kinds.items():
            if kind == "datetime":
                rows[col] = pd.to_datetime(rows[col], errors="coerce")
            elif kind in NUMERIC:
                rows[col] = pd.to_numeric(rows[col], errors="coerce").astype(float)
            else:
                rows[col] = as_labels(rows[col])
        return rows

    train, syn, hold = pick(training), pick(synthetic), pick(holdout)
    meta = {"columns": {c: {"sdtype": "numerical" if k in NUMERIC and k != "datetime" else
                            "datetime" if k == "datetime" else "categorical"} for c, k in kinds.items()}}
    state = np.random.get_state()
    np.random.seed(seed % 2**32)  # sdmetrics draws its random baseline rows from numpy's global generator
    try:
        overfit = DCROverfittingProtection.compute_breakdown(train, syn, hold, meta, None)
        baseline = DCRBaselineProtection.compute_breakdown(train, syn, meta, None)
    finally:
        np.random.set_state(state)
    both = pd.concat([training, holdout], ignore_index=True)
    # a tree over the one-hot matrix: the synthetic table may be millions of rows (``_nearest`` scans them all)
    index = NearestNeighbors(n_neighbors=1, metric="manhattan").fit(_gower_matrix(synthetic, kinds, both))
    d_train = index.kneighbors(_gower_matrix(train, kinds, both))[0][:, 0]
    d_hold = index.kneighbors(_gower_matrix(hold, kinds, both))[0][:, 0]
    from sklearn.metrics import roc_auc_score

    auc = float(roc_auc_score(np.r_[np.ones(n), np.zeros(n)], -np.r_[d_train, d_hold]))
    return {"rows_each": int(n),
            "dcr_overfitting_protection": round(float(overfit["score"]), 4),
            "closer_to_training_share": round(float(overfit["synthetic_data_percentages"]["closer_to_training"]), 4),
            "dcr_baseline_protection": None if pd.isna(baseline["score"]) else round(float(baseline["score"]), 4),
            "membership_attack_auc": round(auc, 4),
            "membership_advantage": round(max(0.0, 2 * auc - 1), 4)}


def verbatim_identity(real: pd.DataFrame, synthetic: pd.DataFrame, metadata: Metadata, table: str,
                      min_count: int = 5) -> dict:
    """Per identity column: synthetic values equal to a real value fewer than ``min_count`` real
    rows carry (a placeholder every address has, such as a blank phone, names no one)."""
    out = {}
    for col in metadata.table(table).columns.values():
        if not col.is_identity_text or col.name not in synthetic:
            continue
        counts = real[col.name].dropna().astype(str).value_counts()
        real_values = set(counts.index[counts.to_numpy() < min_count])
        values = synthetic[col.name].dropna().astype(str)
        hits = int(values.isin(real_values).sum())
        out[col.name] = {"sdtype": col.sdtype, "verbatim": hits, "share": round(hits / max(len(values), 1), 4),
                         "identifying": col.sdtype not in COMMON_TOKENS}
    return out


def table_privacy(real: pd.DataFrame, synthetic: pd.DataFrame, metadata: Metadata, table: str, seed: int = 0,
                  holdout: pd.DataFrame | None = None, allow: tuple[str, ...] = (),
                  derived: tuple[str, ...] = ()) -> dict:
    """``derived``: columns computed from other rows (a parent's sum of its children), no record's own."""
    non_key = [c for c in copy_columns(metadata, table, allow, real) if c not in derived]
    copies, common = copied_rows(real, synthetic, non_key)
    identity = verbatim_identity(real, synthetic, metadata, table)
    held = {}
    if holdout is not None and len(holdout):
        held = {"holdout_rows": int(len(holdout)),
                **holdout_scores(real, synthetic, holdout, compared_columns(metadata, table), seed)}
    return {**held,
        "copied_rows": copies, "copied_row_share": round(copies / max(len(synthetic), 1), 4),
        "common_combination_rows": common,
        "compared_columns": non_key,
        "dcr": dcr(real, synthetic, compared_columns(metadata, table), seed=seed),
        "identity_columns": identity,
        "verbatim_identity_strings": int(sum(v["verbatim"] for v in identity.values() if v["identifying"])),
    }
