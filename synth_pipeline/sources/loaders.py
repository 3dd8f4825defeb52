"""Read a whole source database into data frames: DuckDB, SQLite, or a folder of files."""

from __future__ import annotations

import decimal
import sqlite3
from dataclasses import dataclass, field
from pathlib import Path

import duckdb
import numpy as np
import pandas as pd

from synth_pipeline.errors import SourceError

DUCKDB_TABLES = "SELECT table_name FROM duckdb_tables() WHERE schema_name = 'main' ORDER BY table_name"
SQLITE_TABLES = "SELECT name FROM sqlite_master WHERE type = 'table' AND name NOT LIKE 'sqlite_%' ORDER BY name"
FILE_SUFFIXES = {".parquet": "parquet", ".csv": "csv", ".tsv": "csv", ".asc": "csv", ".txt": "csv"}


@dataclass
class CatalogKeys:
    """Keys a database catalog declares (what detection trusts before guessing)."""

    primary_keys: dict[str, list[str]] = field(default_factory=dict)
    foreign_keys: list[tuple[str, tuple, str, tuple]] = field(default_factory=list)  # child, fk cols, parent, key cols


def source_kind(path: str | Path) -> str:
    """``duckdb``, ``sqlite`` or ``folder``; a clear SourceError for anything else."""
    path = Path(path)
    if not path.exists():
        raise SourceError(f"source {path}: no such file or folder")
    if path.is_dir():
        return "folder"
    with path.open("rb") as fh:
        head = fh.read(16)
    if head.startswith(b"SQLite format 3"):
        return "sqlite"
    if head[8:12] == b"DUCK":
        return "duckdb"
    raise SourceError(f"source {path}: not a DuckDB or SQLite database, nor a folder of CSV/Parquet files")


def load_tables(path: str | Path, tables: list[str] | None = None) -> dict[str, pd.DataFrame]:
    """Every table of the source (or just ``tables``), keyed by table name."""
    path = Path(path)
    kind = source_kind(path)
    loader = {"duckdb": _load_duckdb, "sqlite": _load_sqlite, "folder": _load_folder}[kind]
    if tables is not None:
        require_tables(path, tables)
    frames = {name: _normalise_dtypes(frame) for name, frame in loader(path, tables).items()}
    if not frames:
        raise SourceError(f"source {path}: holds no tables")
    return frames


def table_names(path: str | Path) -> list[str]:
    """The tables a source holds, without reading them."""
    path = Path(path)
    kind = source_kind(path)
    if kind == "folder":
        return sorted({f.stem for f in path.iterdir() if f.is_file() and f.suffix.lower() in FILE_SUFFIXES})
    try:
        if kind == "sqlite":
            con = _sqlite_connect(path)
            try:
                return [r[0] for r in con.execute(SQLITE_TABLES)]
            finally:
                con.close()
        with duckdb.connect(str(path), read_only=True) as con:
            return [r[0] for r in con.execute(DUCKDB_TABLES).fetchall()]
    except (sqlite3.Error, duckdb.Error) as exc:
        raise SourceError(f"source {path}: cannot be read as {kind} ({_first_line(exc)})") from None


def require_tables(path: str | Path, tables: list[str]) -> None:
    """A clear error when the metadata names tables the source does not hold."""
    present = set(table_names(path))
    missing = [t for t in tables if t not in present]
    if missing:
        raise SourceError(f"source {path}: table(s) {', '.join(missing)} named in the metadata are missing")


def _normalise_dtypes(frame: pd.DataFrame) -> pd.DataFrame:
    """Datetimes as nanosecond, timezone-naive columns: what pandas, rdt and sdv all expect
    (a column with a value outside that range keeps Python datetimes, as dates outside it do)."""
    for col in frame.columns:
        if frame[col].dtype == object and len(frame[col].dropna()) and \
                isinstance(frame[col].dropna().iat[0], decimal.Decimal):  # DECIMAL columns: numbers
            frame[col] = pd.to_numeric(frame[col], errors="coerce").astype("float64")
        if pd.api.types.is_datetime64_any_dtype(frame[col]):
            values = frame[col]
            if getattr(values.dt, "tz", None) is not None:
                values = values.dt.tz_localize(None)
            try:
                frame[col] = values.astype("datetime64[ns]")
            except pd.errors.OutOfBoundsDatetime:  # a 9999-12-31 "open end": kept as Python datetimes
                frame[col] = values.astype(object)
    return frame


def catalog_keys(path: str | Path) -> CatalogKeys:
    """Primary and foreign keys declared in a SQLite or DuckDB catalog (empty for folders)."""
    kind = source_kind(path)
    if kind == "sqlite":
        return _sqlite_keys(Path(path))
    if kind == "duckdb":
        return _duckdb_keys(Path(path))
    return CatalogKeys()


# ------------------------------------------------------------------- duckdb
def _load_duckdb(path: Path, only: list[str] | None) -> dict[str, pd.DataFrame]:
    try:
        with duckdb.connect(str(path), read_only=True) as con:
            names = [r[0] for r in con.execute(DUCKDB_TABLES).fetchall()]
            return {n: con.execute(f'SELECT * FROM "{n}"').df() for n in names if only is None or n in only}
    except duckdb.Error as exc:
        raise SourceError(f"source {path}: cannot be read as DuckDB ({_first_line(exc)})") from None


def _duckdb_keys(path: Path) -> CatalogKeys:
    keys = CatalogKeys()
    with duckdb.connect(str(path), read_only=True) as con:
        rows = con.execute(
            "SELECT table_name, constraint_type, constraint_column_names, referenced_table, referenced_column_names "
            "FROM duckdb_constraints() WHERE schema_name = 'main' AND constraint_type IN ('PRIMARY KEY', 'FOREIGN KEY')"
        ).fetchall()
    for table, kind, cols, ref_table, ref_cols in rows:
        if kind == "PRIMARY KEY":
            keys.primary_keys[table] = list(cols)
        else:
            keys.foreign_keys.append((table, tuple(cols), ref_table, tuple(ref_cols)))
    return keys


# ------------------------------------------------------------------- sqlite
def _sqlite_connect(path: Path) -> sqlite3.Connection:
    return sqlite3.connect(f"file:{path}?mode=ro", uri=True)


def _load_sqlite(path: Path, only: list[str] | None) -> dict[str, pd.DataFrame]:
    try:
        con = _sqlite_connect(path)
        try:
            names = [r[0] for r in con.execute(SQLITE_TABLES)]
            return {n: pd.read_sql_query(f'SELECT * FROM "{n}"', con) for n in names if only is None or n in only}
        finally:
            con.close()
    except (sqlite3.Error, pd.errors.DatabaseError) as exc:
        raise SourceError(f"source {path}: cannot be read as SQLite ({_first_line(exc)})") from None


def _sqlite_keys(path: Path) -> CatalogKeys:
    keys = CatalogKeys()
    con = _sqlite_connect(path)
    try:
        names = [r[0] for r in con.execute(SQLITE_TABLES)]
        for n in names:
            info = con.execute(f'PRAGMA table_info("{n}")').fetchall()
            pk = [row[1] for row in sorted(info, key=lambda r: r[5]) if row[5] > 0]
            if pk:
                keys.primary_keys[n] = pk
            grouped: dict[int, list] = {}
            for fk in con.execute(f'PRAGMA foreign_key_list("{n}")').fetchall():
                grouped.setdefault(fk[0], []).append(fk)
            for rows in grouped.values():  # a composite foreign key is one id over several rows
                rows.sort(key=lambda r: r[1])
                parent = rows[0][2]
                keys.foreign_keys.append((n, tuple(r[3] for r in rows), parent, tuple(r[4] for r in rows)))
        for i, (child, cols, parent, ref) in enumerate(keys.foreign_keys):
            if any(r is None for r in ref):  # REFERENCES parent: its primary key
                keys.foreign_keys[i] = (child, cols, parent, tuple(keys.primary_keys.get(parent, ())))
    finally:
        con.close()
    return keys


# ------------------------------------------------------------------- folder
TEXT = pd.StringDtype("pyarrow", na_value=np.nan)  # text held in Arrow, as pandas reads it


def arrow_frame(table) -> pd.DataFrame:
    """An Arrow table as a pandas frame, each column's Arrow memory released as it is
    converted (nothing else may hold the table): a large table is not held twice at once.
    A text column without missing values stays in Arrow (``TEXT``, pandas' Arrow-backed
    strings): a Python object per value took 1.9 GB for the comments of TPC-H scale 1's 6M
    line items. Its values, their text and hashes are those of an object column; one with
    missing values stays an object column (a missing value reads ``None`` as text there,
    ``nan`` in Arrow). A column per pandas block, except in a wide table (pandas warns on
    every column added to a frame of over 100 blocks)."""
    import pyarrow as pa

    text_types = (pa.string(), pa.large_string(), pa.string_view())
    for i, column in enumerate(table.schema):  # the text kept in Arrow is cast to large strings
        wanted = pa.string() if table.column(i).null_count else pa.large_string()
        if column.type in text_types and column.type != wanted:
            table = table.set_column(i, column.name, table.column(i).cast(wanted))
    frame = table.to_pandas(self_destruct=True, split_blocks=table.num_columns <= 100,
                            types_mapper=lambda arrow_type: TEXT if pa.types.is_large_string(arrow_type) else None)
    del table
    release_arrow_memory()
    return frame


def release_memory(collect: bool = True) -> None:
    """Hand freed heap pages back to the system (Arrow's allocator and glibc's
    ``malloc_trim``), after collecting garbage unless ``collect`` is false (a collection takes
    about 0.1 s in a process holding Dagster's definitions; the rest well under 1 ms): after
    each heavy step and each run of steps, so the next one starts from the same footprint, not
    a fragmented heap (Arrow alone kept 1.3 GB in the main process while the TPC-H scale 1
    models were fitted)."""
    import ctypes
    import gc

    if collect:
        gc.collect()
    release_arrow_memory()
    try:
        ctypes.CDLL("libc.so.6").malloc_trim(0)
    except (OSError, AttributeError):  # not glibc: nothing to trim
        pass


def release_arrow_memory() -> None:
    """Give the memory Arrow freed back to the system: its allocator keeps it for reuse
    otherwise (1.5 GB after reading TPC-H scale 1's line items, held by every process that
    read them until it exits)."""
    import pyarrow as pa

    pa.default_memory_pool().release_unused()


def _compact_columns(table):
    """An Arrow table's DECIMAL columns as float64 and its dates as datetime64[ns], before
    pandas sees them: no Python object per value on the way (``Decimal`` and ``date``
    objects took about 3.4 GB for TPC-H scale 1's line items). Decimals are parsed from
    their text, as ``_normalise_dtypes`` would parse them (Arrow's direct cast is not
    correctly rounded: 24386.67 became 24386.670000000002). A date column with a value
    outside datetime64[ns]'s range (a 9999-12-31 "open end") stays as dates."""
    import pyarrow as pa
    import pyarrow.compute as pc

    for i, column in enumerate(table.schema):
        values = table.column(i)
        if pa.types.is_decimal(column.type):
            table = table.set_column(i, column.name, pc.cast(pc.cast(values, pa.string()), pa.float64()))
        elif pa.types.is_date(column.type):
            bounds = pc.min_max(values)
            low, high = bounds["min"].as_py(), bounds["max"].as_py()
            if low is None or (pd.Timestamp.min.date() < low and high < pd.Timestamp.max.date()):
                table = table.set_column(i, column.name, pc.cast(values, pa.timestamp("ns")))
    return table


def _load_folder(path: Path, only: list[str] | None) -> dict[str, pd.DataFrame]:
    files: dict[str, Path] = {}
    for file in sorted(path.iterdir()):
        if FILE_SUFFIXES.get(file.suffix.lower()) is None or not file.is_file():
            continue
        if file.stem in files:
            raise SourceError(f"source {path}: table '{file.stem}' is given by two files")
        files[file.stem] = file
    return {name: _read_file(file, FILE_SUFFIXES[file.suffix.lower()])
            for name, file in files.items() if only is None or name in only}


def _read_file(file: Path, kind: str) -> pd.DataFrame:
    try:
        if kind == "parquet":
            import pyarrow.parquet as pq

            return arrow_frame(_compact_columns(pq.read_table(file)))
        with duckdb.connect() as con:
            # "?" marks a missing value in many public CSV extracts (Berka's district table)
            return con.execute("SELECT * FROM read_csv(?, header = true, sample_size = -1, nullstr = ['', '?'])",
                               [str(file)]).df()
    except Exception as exc:  # pyarrow and duckdb raise many types for a corrupt file
        raise SourceError(f"source file {file}: cannot be read as {kind.upper()} ({_first_line(exc)})") from None


def _first_line(exc: BaseException) -> str:
    text = str(exc).strip().splitlines()
    return text[0] if text else type(exc).__name__


# ---------------------------------------------------------------- source types
SQLITE_TYPES = [  # (pattern on the declared type, DuckDB type); the first match wins
    (r"^(TINYINT|SMALLINT|BIGINT)\b", None), (r"^INT(EGER)?\b", "BIGINT"), (r"INT", "BIGINT"),
    (r"^(DECIMAL|NUMERIC)\s*\(\s*\d+\s*,\s*\d+\s*\)$", None), (r"^(DECIMAL|NUMERIC)", "DOUBLE"),
    (r"REAL|FLOA|DOUB", "DOUBLE"), (r"^BOOL", "BOOLEAN"), (r"^DATETIME|^TIMESTAMP", "TIMESTAMP"),
    (r"^DATE$", "DATE"), (r"CHAR|CLOB|TEXT|STRING", "VARCHAR"), (r"BLOB|BINARY", "BLOB"),
]


def source_types(path: str | Path) -> dict[str, dict[str, str]]:
    """The SQL type of every column as the source declares it, in DuckDB's terms (``DECIMAL(4,2)``,
    ``SMALLINT``, ``DATE``, ``TIMESTAMP``...): what the published tables are created with. Empty
    for CSV files (their types are what reading them inferred) and for types DuckDB lacks."""
    import re

    path = Path(path)
    kind = source_kind(path)
    out: dict[str, dict[str, str]] = {}
    try:
        if kind == "duckdb":
            with duckdb.connect(str(path), read_only=True) as con:
                for table, column, kind_ in con.execute(
                        "SELECT table_name, column_name, data_type FROM information_schema.columns "
                        "WHERE table_schema = 'main'").fetchall():
                    out.setdefault(table, {})[column] = kind_
        elif kind == "sqlite":
            con = _sqlite_connect(path)
            try:
                for table in [r[0] for r in con.execute(SQLITE_TYPES_QUERY)]:
                    for row in con.execute(f'PRAGMA table_info("{table}")').fetchall():
                        declared = str(row[2] or "").strip().upper()
                        for pattern, mapped in SQLITE_TYPES:
                            if re.search(pattern, declared):
                                out.setdefault(table, {})[row[1]] = (mapped or re.sub(r"\s+", "", declared))
                                break
            finally:
                con.close()
        else:
            with duckdb.connect() as con:
                for file in sorted(path.iterdir()):
                    if file.is_file() and FILE_SUFFIXES.get(file.suffix.lower()) == "parquet":
                        rows = con.execute("DESCRIBE SELECT * FROM read_parquet(?)", [str(file)]).fetchall()
                        out[file.stem] = {r[0]: r[1] for r in rows}
    except (sqlite3.Error, duckdb.Error):
        return {}
    return out


SQLITE_TYPES_QUERY = SQLITE_TABLES
