"""The rows a large database is scored on: a lineage sample, read straight from DuckDB.

Scoring every row of a database of millions (TPC-H at scale 1: 6 M line items) costs more
memory and time than the scores are worth: a column's shape or a pair's trend is estimated
as well from a few hundred thousand rows. A database (the real or the synthetic one, each on
its own) with a table of more than ``max_rows`` rows is read as a sample of whole lineages,
as the privacy holdout chooses them (``sources.holdout``):

* every table keeps the same share of its rows: ``max_rows`` / the largest table's rows;
* a *lineage head* (the highest table on a line of descent with rows enough to keep
  ``MIN_KEPT_ROWS`` at that share) keeps the rows whose key hashes below the share;
* a row below a head is kept with its primary parent (the one that owns it), so every kept
  row's owner is there and its children are whole families;
* a table above every head (a lookup of 25 nations) is kept whole;
* the rows a kept row references through another foreign key are brought in (a line item's
  part-supplier row, then that row's part), so no kept row dangles.

What a sample cannot give is counted by DuckDB on every row (``whole_structure``): foreign-key
violations and children per parent. Copies of real rows are judged within the sample. The
sample is chosen by a seeded hash of the keys: the same database and seed give the same rows.
"""

from __future__ import annotations

from pathlib import Path

import duckdb
import numpy as np
import pandas as pd

from synth_pipeline.schema.metadata import Metadata
from synth_pipeline.sources.loaders import _normalise_dtypes, load_tables

MIN_KEPT_ROWS = 1000  # a table keeps at least this many rows to be sampled itself (a lineage head)
SELF_REFERENCE_ROUNDS = 20  # levels of a self-reference (a manager's manager...) brought into the sample


def _columns(names) -> str:
    return ", ".join(f'"{c}"' for c in names)


def row_counts(path: str | Path, tables: list[str]) -> dict[str, int]:
    with duckdb.connect(str(path), read_only=True) as con:
        return {t: con.execute(f'SELECT count(*) FROM "{t}"').fetchone()[0] for t in tables}


def load_sampled(path: str | Path, metadata: Metadata, max_rows: int, seed: int = 0,
                 min_kept: int = MIN_KEPT_ROWS) -> tuple[dict[str, pd.DataFrame], dict]:
    """Every table of ``metadata`` from the DuckDB file at ``path``: whole when none holds more
    than ``max_rows`` rows (``max_rows`` <= 0: always whole), else a lineage sample of share
    ``max_rows`` / the largest table's rows. Returns (tables, what was sampled:
    ``{"share": s, "tables": {name: [kept, of]}}``, empty when whole)."""
    names = list(metadata.tables)
    counts = row_counts(path, names)
    largest = max(counts.values(), default=0)
    if max_rows <= 0 or largest <= max_rows:
        return load_tables(path, names), {}
    share = max_rows / largest
    below = int(share * float(2**64 - 1))
    frames: dict[str, pd.DataFrame] = {}
    sampled: set[str] = set()
    with duckdb.connect(str(path), read_only=True) as con:
        for name in metadata.topological_order():
            primary = metadata.primary_relationship(name)
            query = f'SELECT * FROM "{name}"'
            if primary is not None and primary.parent_table_name in sampled:
                # owned by a kept parent row
                kept = frames[primary.parent_table_name][list(primary.parent_columns)]
                kept = kept.set_axis([f"k{i}" for i in range(kept.shape[1])], axis=1)
                con.register("kept_parent", kept)
                on = " AND ".join(f't."{c}" = k.k{i}' for i, c in enumerate(primary.child_columns))
                # in the table's own row order: a join's rows come back in any order otherwise
                query = f'SELECT t.* FROM "{name}" t SEMI JOIN kept_parent k ON {on} ORDER BY t.rowid'
                sampled.add(name)
            elif counts[name] * share >= min_kept:  # a lineage head
                key = _columns(metadata.table(name).primary_key) or "rowid"  # a key-less table: its row
                query += f" WHERE hash({key}, {int(seed)}) < {below}::UBIGINT"
                sampled.add(name)
            frames[name] = _normalise_dtypes(con.execute(query).df())
        # the rows kept rows reference through their other foreign keys, children first (a
        # line item's part-supplier row, then that row's part), so no kept row dangles
        for name in reversed(metadata.topological_order()):
            for rel in metadata.foreign_keys(name):
                if rel.parent_table_name not in sampled:
                    continue
                for _ in range(SELF_REFERENCE_ROUNDS if rel.is_self_reference else 1):
                    wanted = frames[name][list(rel.child_columns)].dropna().drop_duplicates()
                    wanted = wanted.set_axis([f"k{i}" for i in range(wanted.shape[1])], axis=1)
                    have = frames[rel.parent_table_name][list(rel.parent_columns)]
                    have = have.set_axis(list(wanted.columns), axis=1).drop_duplicates()
                    missing = wanted.merge(have, how="left", indicator=True)
                    missing = missing.loc[missing["_merge"] == "left_only", list(wanted.columns)]
                    if missing.empty:
                        break
                    con.register("wanted", missing)
                    on = " AND ".join(f'p."{c}" = w.k{i}' for i, c in enumerate(rel.parent_columns))
                    found = _normalise_dtypes(con.execute(
                        f'SELECT p.* FROM "{rel.parent_table_name}" p SEMI JOIN wanted w ON {on} '
                        f'ORDER BY p.rowid').df())
                    frames[rel.parent_table_name] = pd.concat([frames[rel.parent_table_name], found],
                                                              ignore_index=True)
    return frames, {"share": round(share, 6),
                    "tables": {t: [len(frames[t]), counts[t]] for t in metadata.topological_order() if t in sampled}}


def fk_violations(path: str | Path, metadata: Metadata) -> dict[str, int]:
    """Per relationship (its label), the child rows whose non-null foreign key names no parent
    row: counted by DuckDB on the whole database."""
    out = {}
    with duckdb.connect(str(path), read_only=True) as con:
        for rel in metadata.relationships:
            on = " AND ".join(f'c."{a}" = p."{b}"' for a, b in zip(rel.child_columns, rel.parent_columns))
            present = " AND ".join(f'c."{a}" IS NOT NULL' for a in rel.child_columns)
            out[rel.label] = con.execute(
                f'SELECT count(*) FROM "{rel.child_table_name}" c ANTI JOIN "{rel.parent_table_name}" p ON {on} '
                f"WHERE {present}").fetchone()[0]
    return out


def load_for_scoring(real_path: str | Path, synthetic_path: str | Path, metadata: Metadata, max_rows: int,
                     seed: int = 0, min_kept: int = MIN_KEPT_ROWS) -> tuple[dict[str, pd.DataFrame], dict[str, pd.DataFrame], dict]:
    """The real and the synthetic tables to score, each database read as a lineage sample when
    one of its tables holds more than ``max_rows`` rows (a real source other than DuckDB: read
    whole), else whole (a real school of 42,000 rows stays whole beside its synthetic twin
    at scale 10); and what was sampled (empty: nothing)."""
    from synth_pipeline.sources.loaders import source_kind

    names = list(metadata.tables)
    if source_kind(Path(real_path)) == "duckdb":
        real, real_info = load_sampled(real_path, metadata, max_rows, seed, min_kept=min_kept)
    else:
        real, real_info = load_tables(real_path, names), {}
    synthetic, synthetic_info = load_sampled(synthetic_path, metadata, max_rows, seed, min_kept=min_kept)
    if not real_info and not synthetic_info:
        return real, synthetic, {}
    return real, synthetic, {"evaluation_rows": max_rows, "real": real_info, "synthetic": synthetic_info}


def child_counts(path: str | Path, rel) -> np.ndarray:
    """Children per parent row under ``rel`` (zeros included), counted by DuckDB on every row."""
    on = " AND ".join(f'c."{a}" = p."{b}"' for a, b in zip(rel.child_columns, rel.parent_columns))
    with duckdb.connect(str(path), read_only=True) as con:
        found = con.execute(f'SELECT count(c."{rel.child_columns[0]}") AS n FROM "{rel.parent_table_name}" p '
                            f'LEFT JOIN "{rel.child_table_name}" c ON {on} GROUP BY p.rowid').fetchnumpy()
    return np.asarray(found["n"], dtype="int64")


def whole_structure(report: dict, real_path: str | Path, synthetic_path: str | Path, metadata: Metadata) -> None:
    """Replace the figures of ``report`` (``evaluate``'s) a sample cannot give with those of the
    whole databases: FK violations of the synthetic database and (with a DuckDB real
    database) children per parent, per relationship (matched by child and parent table, in
    order) and in the summary."""
    from synth_pipeline.sources.loaders import source_kind

    from synth_pipeline.evaluation.report import _histogram, _mean
    from synth_pipeline.evaluation.structure import cardinality_similarity, count_summary

    violations = fk_violations(synthetic_path, metadata)
    whole: dict[tuple[str, str], list] = {}
    for rel in metadata.relationships:
        whole.setdefault((rel.child_table_name, rel.parent_table_name), []).append(rel)
    relationships = report.get("relationships", [])
    for entry in relationships:
        found = whole.get((entry.get("child_table_name"), entry.get("parent_table_name")))
        if not found:
            continue
        rel = found.pop(0)
        entry["fk_violations"] = violations[rel.label]
        entry["counted_on"] = "every row"
        if source_kind(Path(real_path)) != "duckdb":
            continue
        real_counts, synthetic_counts = child_counts(real_path, rel), child_counts(synthetic_path, rel)
        entry.update({"cardinality_similarity": round(cardinality_similarity(real_counts, synthetic_counts), 4),
                      "real_children_per_parent": count_summary(real_counts),
                      "synthetic_children_per_parent": count_summary(synthetic_counts),
                      "real_counts_histogram": _histogram(real_counts),
                      "synthetic_counts_histogram": _histogram(synthetic_counts)})
    summary = report["summary"]
    summary["fk_violations"] = int(sum(violations.values()))
    summary["cardinality_similarity_mean"] = _mean(r["cardinality_similarity"] for r in relationships)
    summary["cardinality_similarity_min"] = min((r["cardinality_similarity"] for r in relationships), default=None)
