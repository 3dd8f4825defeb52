"""Statistical fidelity, with sdmetrics' metrics wherever one is the field's standard.

* Column Shapes: KSComplement (numbers, dates) / TVComplement (categories, booleans);
* Column Pair Trends: CorrelationSimilarity (number x number) / ContingencySimilarity;
* Intertable Trends: the same pair metrics on parent column x child column over the join;
* 2-hop trends: grandparent column x grandchild column over a two-step join (ClavaDDPM's
  k-hop evaluation with k = 2).

Keys and identity text are not compared (they are fresh by design). Large joins are
sampled to ``max_rows`` rows with a fixed seed, so figures are stable and fast.
"""

from __future__ import annotations

import itertools
import warnings

import numpy as np
import pandas as pd

from synth_pipeline.schema.metadata import Metadata, Relationship
from synth_pipeline.stats import (
    NUMERIC,
    as_labels,
    as_numbers,
    compared_columns,
    ks_complement,
)


def column_shape(real: pd.Series, synthetic: pd.Series, sdtype: str) -> float:
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")  # scipy warns on tiny samples; the score is still defined
        return _column_shape(real, synthetic, sdtype)


def _column_shape(real: pd.Series, synthetic: pd.Series, sdtype: str) -> float:
    from sdmetrics.single_column import TVComplement  # ~6 s to import: only when scoring

    if sdtype in NUMERIC:
        r, s = as_numbers(real, sdtype).dropna(), as_numbers(synthetic, sdtype).dropna()
        if len(r) == 0 or len(s) == 0:
            return float(len(r) == len(s))
        score = ks_complement(r, s)
        # A column's null share is part of its shape: weigh it in as sdmetrics' diagnostic does.
        null_gap = abs(real.isna().mean() - synthetic.isna().mean())
        return float(score * (1 - null_gap))
    r, s = as_labels(real), as_labels(synthetic)
    if not r.notna().any() or not s.notna().any():  # an all-null (or empty) side: equal only if both are
        return float(r.notna().any() == s.notna().any())
    return float(TVComplement.compute(r, s))


def column_shapes(real: pd.DataFrame, synthetic: pd.DataFrame, columns: dict[str, str]) -> dict[str, float]:
    return {c: round(column_shape(real[c], synthetic[c], t), 4) for c, t in columns.items()}


def pair_trend(real: pd.DataFrame, synthetic: pd.DataFrame, a: str, b: str, kinds: dict[str, str],
               binned: tuple[pd.DataFrame, pd.DataFrame] | None = None) -> tuple[str, float]:
    """(metric name, score) for one column pair, or (metric, nan) when undefined; ``binned``:
    both frames already cut by ``_discretised`` (the same for every pair a column is in)."""
    from sdmetrics.column_pairs import ContingencySimilarity, CorrelationSimilarity

    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        if kinds[a] in NUMERIC and kinds[b] in NUMERIC:
            r = pd.DataFrame({a: as_numbers(real[a], kinds[a]), b: as_numbers(real[b], kinds[b])}).dropna()
            s = pd.DataFrame({a: as_numbers(synthetic[a], kinds[a]), b: as_numbers(synthetic[b], kinds[b])}).dropna()
            if len(r) < 3 or len(s) < 3 or r.nunique().min() < 2 or s.nunique().min() < 2:
                return "CorrelationSimilarity", float("nan")
            return "CorrelationSimilarity", float(CorrelationSimilarity.compute(r, s))
        if binned is not None:
            r, s = binned[0][[a, b]], binned[1][[a, b]]
        else:
            r, s = _discretised(real, [a, b], kinds, real), _discretised(synthetic, [a, b], kinds, real)
        return "ContingencySimilarity", float(ContingencySimilarity.compute(r, s))


def _discretised(frame: pd.DataFrame, cols: list[str], kinds: dict[str, str], reference: pd.DataFrame) -> pd.DataFrame:
    """Numbers cut into the real data's deciles, so numbers x categories compare as contingency tables."""
    out = {}
    for c in cols:
        if kinds[c] in NUMERIC:
            ref = as_numbers(reference[c], kinds[c]).dropna()
            edges = np.unique(np.quantile(ref, np.linspace(0, 1, 11))) if len(ref) else np.array([0.0])
            values = as_numbers(frame[c], kinds[c])
            binned = np.digitize(values.fillna(np.inf if len(ref) else 0), edges[1:-1])
            out[c] = pd.Series(binned, index=frame.index).astype(str).where(values.notna(), "__null__")
        else:
            out[c] = as_labels(frame[c])
    return pd.DataFrame(out)


def pair_trends(real: pd.DataFrame, synthetic: pd.DataFrame, kinds: dict[str, str],
                pairs: list[tuple[str, str]] | None = None) -> list[dict]:
    pairs = pairs if pairs is not None else list(itertools.combinations(kinds, 2))
    used = sorted({c for pair in pairs for c in pair}, key=list(kinds).index)
    binned = (_discretised(real, used, kinds, real), _discretised(synthetic, used, kinds, real))
    out = []
    for a, b in pairs:
        metric, score = pair_trend(real, synthetic, a, b, kinds, binned)
        if not np.isnan(score):
            out.append({"column_1": a, "column_2": b, "metric": metric, "score": round(score, 4)})
    return out


def joined(tables: dict[str, pd.DataFrame], metadata: Metadata, chain: list[Relationship], max_rows: int,
           seed: int) -> tuple[pd.DataFrame, dict[str, str]]:
    """Rows of the chain's last child joined up to its first parent; columns named table.column."""
    child_rel = chain[-1]
    frame = _prefixed(tables[child_rel.child_table_name], metadata, child_rel.child_table_name, keep_keys=True)
    kinds = {f"{child_rel.child_table_name}.{c}": t for c, t in compared_columns(metadata, child_rel.child_table_name).items()}
    for rel in reversed(chain):
        parent = _prefixed(tables[rel.parent_table_name], metadata, rel.parent_table_name, keep_keys=True)
        frame = frame.merge(parent, how="inner", left_on=f"{rel.child_table_name}.{rel.child_foreign_key}",
                            right_on=f"{rel.parent_table_name}.{rel.parent_primary_key}")
        kinds.update({f"{rel.parent_table_name}.{c}": t for c, t in compared_columns(metadata, rel.parent_table_name).items()})
    if len(frame) > max_rows:
        frame = frame.sample(max_rows, random_state=seed)
    return frame.reset_index(drop=True), kinds


def _prefixed(frame: pd.DataFrame, metadata: Metadata, table: str, keep_keys: bool) -> pd.DataFrame:
    cols = list(compared_columns(metadata, table))
    if keep_keys:
        cols += [c for c in metadata.key_columns(table) if c not in cols]
    return frame[cols].add_prefix(f"{table}.")


def cross_table_trends(real: dict[str, pd.DataFrame], synthetic: dict[str, pd.DataFrame], metadata: Metadata,
                       chain: list[Relationship], max_rows: int = 5000, seed: int = 0, submit=None):
    """Pair similarity of (first parent's columns) x (last child's columns) over the chain's join.
    ``submit`` (an executor's): the pairs are scored there, on the joined rows alone, and a
    function returning the result is returned instead of the result."""
    top, bottom = chain[0].parent_table_name, chain[-1].child_table_name
    r, kinds = joined(real, metadata, chain, max_rows, seed)
    s, _ = joined(synthetic, metadata, chain, max_rows, seed)
    top_cols = [c for c in kinds if c.startswith(f"{top}.")]
    bottom_cols = [c for c in kinds if c.startswith(f"{bottom}.")]
    wanted = [(a, b) for a in top_cols for b in bottom_cols] if len(r) and len(s) else []
    if submit is None:
        return _chain_result(chain, pair_trends(r, s, kinds, wanted) if wanted else [])
    if not wanted:
        return lambda: _chain_result(chain, [])
    used = list(dict.fromkeys(c for pair in wanted for c in pair))
    future = submit(pair_trends, r[used], s[used], {c: kinds[c] for c in used}, wanted)
    return lambda: _chain_result(chain, future.result())


def _chain_result(chain: list[Relationship], pairs: list[dict]) -> dict:
    scores = [p["score"] for p in pairs]
    return {"path": " -> ".join([chain[0].parent_table_name] + [rel.child_table_name for rel in chain]),
            "via": [rel.label for rel in chain], "score": round(float(np.mean(scores)), 4) if scores else None,
            "pairs": len(pairs), "worst_pairs": sorted(pairs, key=lambda p: p["score"])[:5]}


def two_hop_chains(metadata: Metadata) -> list[list[Relationship]]:
    """Every grandparent -> parent -> child path along non-self relationships."""
    out = []
    for upper in metadata.relationships:
        for lower in metadata.child_relationships(upper.child_table_name):
            if not upper.is_self_reference and not lower.is_self_reference \
                    and upper.parent_table_name != lower.child_table_name:  # not round a cycle
                out.append([upper, lower])
    return out
