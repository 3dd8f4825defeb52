"""Write a set of tables as one DuckDB database with PRIMARY KEY / FOREIGN KEY declared,
and optionally export it as a folder of Parquet or CSV files.

DuckDB verifies every key on insert, so a database this module finishes writing is
referentially sound. The file is built beside its destination and moved into place only
when complete: a reader never sees a half-written database. A folder export is written
beside its destination too and swapped in whole.

A run publishes a set of files (the databases, metadata.json, report.json, an export
folder) into its own staging folder, ``OUT/.staging/<run id>/``, and only then moves them
into ``OUT`` (``promote``), one rename each: a run that is interrupted while it writes leaves
the last published output as it was, and two runs never write into the same files.
"""

from __future__ import annotations

import logging
import os
import re
import shutil
from collections.abc import Mapping
from pathlib import Path

import duckdb
import numpy as np
import pandas as pd

from synth_pipeline.errors import SynthPipelineError
from synth_pipeline.schema.metadata import Metadata, Table

log = logging.getLogger(__name__)


class PublishError(SynthPipelineError):
    """DuckDB refused the tables (a key constraint failed)."""


def write_database(tables: Mapping[str, pd.DataFrame], metadata: Metadata, path: str | Path,
                   constraints: bool = True, sql_types: dict[str, dict[str, str]] | None = None) -> Path:
    """Write ``tables`` to ``path`` atomically (of each frame, the metadata's columns);
    returns the path. Where ``tables`` is
    ``partitioned`` (its ``parts(name)`` yields a table's partitions), each table is inserted
    one partition at a time. ``sql_types``: the source's column types, used where the values
    fit them (a column whose values do not takes the type its values show, logged)."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_name(f".{path.name}.{os.getpid()}.tmp")
    tmp.unlink(missing_ok=True)
    key_types: dict[tuple[str, str], str] = {}
    try:
        with duckdb.connect(str(tmp)) as con:
            for name in metadata.topological_order():
                partitioned = getattr(tables, "partitioned", False)
                # a partition may hold no value of a column: its type comes from every partition
                types = _column_types(metadata, name, tables.parts(name)) if partitioned else {}
                declared = {c: t for c, t in (sql_types or {}).get(name, {}).items() if c in metadata.tables[name].columns}
                while True:
                    try:
                        _write_table(con, metadata, name, tables, {**types, **declared}, constraints, key_types)
                        break
                    except (duckdb.ConversionException, duckdb.InvalidInputException, duckdb.OutOfRangeException,
                            duckdb.BinderException) as exc:
                        if not declared:
                            raise
                        # the column the values do not fit (all declared types where it is not named)
                        column = re.search(r"column \"?([^\s\"]+)\"?\s*$", str(exc).splitlines()[0])
                        dropped = [column.group(1)] if column and column.group(1) in declared else list(declared)
                        log.warning("%s: %s written with the type of its values, not the source's (%s)", name,
                                    ", ".join(dropped), str(exc).splitlines()[0])
                        for c in dropped:
                            del declared[c]
                        con.execute(f'DROP TABLE IF EXISTS "{name}"')
            con.execute("CHECKPOINT")
        os.replace(tmp, path)
    except duckdb.ConstraintException as exc:
        raise PublishError(f"publishing {path.name}: {str(exc).splitlines()[0]}") from None
    finally:
        tmp.unlink(missing_ok=True)
        Path(f"{tmp}.wal").unlink(missing_ok=True)
    return path


def _write_table(con, metadata: Metadata, name: str, tables, types: dict[str, str], constraints: bool,
                 key_types: dict) -> None:
    pieces = tables.parts(name) if getattr(tables, "partitioned", False) else [tables[name]]
    for i, piece in enumerate(pieces):
        # the table's columns without copying their values (a large table is not held twice)
        columns = {c: piece[c] for c in metadata.tables[name].columns}
        frame = _with_key_types(metadata, name, pd.DataFrame(columns, copy=False), key_types)
        if i == 0:
            con.execute(_create_statement(metadata, metadata.tables[name], frame, constraints, types))
        for batch in _insert_batches(metadata, name, frame):
            con.register("incoming", batch)
            con.execute(f'INSERT INTO "{name}" SELECT * FROM incoming')
            con.unregister("incoming")


def read_columns(con, table: str, columns: list[str]) -> pd.DataFrame:
    """Some columns of one table of a written database (``con``: a connection to it), in its
    rows' order (no column: as many rows, without columns)."""
    if not columns:
        return pd.DataFrame(index=pd.RangeIndex(con.execute(f'SELECT count(*) FROM "{table}"').fetchone()[0]))
    return con.execute(f'SELECT {_quoted(columns)} FROM "{table}"').df()


OUTPUT_FORMATS = ("duckdb", "parquet", "csv")


def export_folder(database: str | Path, metadata: Metadata, folder: str | Path, fmt: str) -> Path:
    """Every table of ``database`` as ``folder/<table>.<fmt>`` (DuckDB's COPY), swapped in whole."""
    if fmt not in ("parquet", "csv"):
        raise PublishError(f"output format '{fmt}': expected one of {', '.join(OUTPUT_FORMATS)}")
    folder = Path(folder)
    tmp = folder.with_name(f".{folder.name}.{os.getpid()}.tmp")
    old = folder.with_name(f".{folder.name}.{os.getpid()}.old")
    shutil.rmtree(tmp, ignore_errors=True)
    tmp.mkdir(parents=True)
    try:
        with duckdb.connect(str(database), read_only=True) as con:
            for name in metadata.topological_order():
                target = str(tmp / f"{name}.{fmt}").replace("'", "''")
                options = "FORMAT parquet" if fmt == "parquet" else "FORMAT csv, HEADER true"
                con.execute(f"COPY \"{name}\" TO '{target}' ({options})")
        if folder.exists():
            folder.rename(old)
        tmp.rename(folder)
    finally:
        shutil.rmtree(tmp, ignore_errors=True)
        shutil.rmtree(old, ignore_errors=True)
    return folder


STAGING = ".staging"


def staging_dir(out: str | Path, run_id: str) -> Path:
    """An empty folder where run ``run_id`` writes what it publishes to ``out``. What other
    runs left there (a run killed while it wrote) is removed: at most one run publishes to an
    output at a time (the refresh schedule and sensor skip while one is active)."""
    root = Path(out) / STAGING
    if root.exists():
        for leftover in root.iterdir():
            if leftover.name != run_id:
                log.warning("removing %s, left by an interrupted run", leftover)
                shutil.rmtree(leftover, ignore_errors=True)
    stage = root / run_id
    shutil.rmtree(stage, ignore_errors=True)
    stage.mkdir(parents=True)
    return stage


def promote(stage: Path, out: str | Path, last: tuple[str, ...] = ("report.json",)) -> list[Path]:
    """Move every entry of ``stage`` into ``out`` by rename (atomic on one file system), the
    names in ``last`` after the others (the report names what was published); a folder
    replaces its namesake whole. Removes ``stage``; returns the published paths."""
    out = Path(out)
    entries = sorted(stage.iterdir(), key=lambda e: (e.name in last, e.name))
    published = []
    for entry in entries:
        target = out / entry.name
        if entry.is_dir():
            old = stage.with_name(f"{stage.name}.old")
            shutil.rmtree(old, ignore_errors=True)
            if target.exists():
                target.rename(old)
            entry.rename(target)
            shutil.rmtree(old, ignore_errors=True)
        else:
            entry.replace(target)
        published.append(target)
    shutil.rmtree(stage, ignore_errors=True)
    if stage.parent.name == STAGING and not any(stage.parent.iterdir()):
        stage.parent.rmdir()
    return published


def duckdb_type(series: pd.Series, sdtype: str, datetime_format: str | None) -> str:
    if sdtype == "binary":
        return "BLOB"
    if sdtype == "datetime" or pd.api.types.is_datetime64_any_dtype(series):
        fmt = datetime_format or ""
        return "TIMESTAMP" if any(tok in fmt for tok in ("%H", "%M", "%S")) else "DATE"
    if pd.api.types.is_bool_dtype(series):
        return "BOOLEAN"
    if pd.api.types.is_integer_dtype(series):
        return "BIGINT"
    if pd.api.types.is_float_dtype(series):
        return "DOUBLE"
    return "VARCHAR"


def _with_key_types(metadata: Metadata, name: str, frame: pd.DataFrame, key_types: dict) -> pd.DataFrame:
    """Foreign keys take their parent key's type (a nullable integer FK is not a DOUBLE)."""
    table = metadata.table(name)
    for pk in table.primary_key:
        key_types[(name, pk)] = duckdb_type(frame[pk], table.columns[pk].sdtype, None)
    for key in table.alternate_keys:
        key_types[(name, key)] = duckdb_type(frame[key], table.columns[key].sdtype, None)
    frame = frame.copy(deep=False)  # a column is replaced below, never written into
    for rel in metadata.relationships:
        if rel.child_table_name != name:
            continue
        for child_col, parent_col in zip(rel.child_columns, rel.parent_columns):
            if key_types.get((rel.parent_table_name, parent_col)) == "BIGINT" \
                    and not pd.api.types.is_integer_dtype(frame[child_col]):
                frame[child_col] = pd.to_numeric(frame[child_col]).round().astype("Int64")
    return frame


def _column_types(metadata: Metadata, name: str, pieces) -> dict[str, str]:
    """The DuckDB type of each column over all ``pieces`` (ignoring pieces where it is all null):
    integers with floats are DOUBLE, dates with timestamps TIMESTAMP, any other mix VARCHAR."""
    table, seen = metadata.table(name), {}
    for piece in pieces:
        for c in table.columns.values():
            if piece[c.name].notna().any():
                seen.setdefault(c.name, set()).add(duckdb_type(piece[c.name], c.sdtype, c.datetime_format))
    out = {}
    for column, kinds in seen.items():
        if len(kinds) == 1:
            out[column] = kinds.pop()
        elif kinds <= {"BIGINT", "DOUBLE"}:
            out[column] = "DOUBLE"
        elif kinds <= {"DATE", "TIMESTAMP"}:
            out[column] = "TIMESTAMP"
        else:
            out[column] = "VARCHAR"
    return out


def _create_statement(metadata: Metadata, table: Table, frame: pd.DataFrame, constraints: bool,
                      types: dict[str, str] | None = None) -> str:
    types = types or {}
    cols = [f'"{c.name}" {types.get(c.name) or duckdb_type(frame[c.name], c.sdtype, c.datetime_format)}'
            for c in table.columns.values()]
    if constraints:
        if table.primary_key:
            cols.append("PRIMARY KEY (" + _quoted(table.primary_key) + ")")
        for key in table.alternate_keys:
            if any(r.parent_table_name == table.name and r.parent_columns == (key,) for r in metadata.relationships):
                cols.append(f'UNIQUE ("{key}")')  # DuckDB refers only to a primary or unique key
        # A cycle's deferred edge is not declared: DuckDB needs the referenced table to exist
        # when the referring one is created, and cannot add a foreign key afterwards.
        for rel in metadata.foreign_keys(table.name):
            cols.append(f'FOREIGN KEY ({_quoted(rel.child_columns)}) REFERENCES "{rel.parent_table_name}" '
                        f'({_quoted(rel.parent_columns)})')
    return f'CREATE TABLE "{table.name}" (' + ", ".join(cols) + ")"


def _quoted(columns) -> str:
    return ", ".join(f'"{c}"' for c in columns)


def _insert_batches(metadata: Metadata, name: str, frame: pd.DataFrame):
    """One batch, or for a self-referencing table one batch per level of its hierarchy."""
    self_refs = [r for r in metadata.foreign_keys(name) if r.is_self_reference]
    if not self_refs:
        yield frame
        return
    rel = self_refs[0]
    level = hierarchy_levels(frame[rel.parent_primary_key], frame[rel.child_foreign_key])
    for depth in np.unique(level):
        yield frame[level == depth]


def hierarchy_levels(keys: pd.Series, parents: pd.Series) -> np.ndarray:
    """Depth of each row in a self-referencing hierarchy (roots and dangling links: 0)."""
    position = pd.Series(np.arange(len(keys)), index=keys.to_numpy())
    parent_pos = parents.map(position).to_numpy()
    level = np.zeros(len(keys), dtype=int)
    for _ in range(len(keys)):
        has_parent = ~pd.isna(parent_pos)
        new = level.copy()
        idx = parent_pos[has_parent].astype(int)
        new[has_parent] = level[idx] + 1
        if np.array_equal(new, level):
            break
        level = new
    return level
