"""Typed settings and storage the assets use: the real source, the staging warehouse, the run."""

from __future__ import annotations

import dataclasses
import functools
import json
import os
import shutil
from collections.abc import Mapping
from pathlib import Path

import dagster as dg
import pandas as pd
import pyarrow as pa
import pyarrow.parquet as pq

from synth_pipeline.errors import SchemaError
from synth_pipeline.modeling.settings import ModelSettings
from synth_pipeline.modeling.table_model import TableModel
from synth_pipeline.schema.keys import WHOLE, Partition
from synth_pipeline.schema.metadata import Metadata
from synth_pipeline.sources.loaders import arrow_frame, load_tables, release_arrow_memory
from synth_pipeline.sources.validate import SourceNotes


class SourceDatabase(dg.ConfigurableResource):
    """The real database: a DuckDB or SQLite file, or a folder of CSV/Parquet files.

    With ``school_students`` > 0 and no file at ``path``, the embedded school database is
    simulated there first (seeded by ``school_seed``).
    """

    path: str
    school_students: int = 0
    school_seed: int = 0
    on_orphans: str = "drop"  # foreign-key values with no parent row: drop those rows, or "fail"

    def ensure(self) -> Path:
        path = Path(self.path)
        if not path.exists() and self.school_students > 0:
            from synth_pipeline.sources import build_school_database

            build_school_database(path, students=self.school_students, seed=self.school_seed)
        return path

    def load_table(self, metadata: Metadata, name: str) -> pd.DataFrame:
        frame = load_tables(self.ensure(), [name])[name]
        missing = [c for c in metadata.table(name).columns if c not in frame.columns]
        if missing:
            raise SchemaError(f"table '{name}': column(s) {', '.join(missing)} named in the metadata are missing from the source")
        return frame[list(metadata.table(name).columns)]

    def load_valid_table(self, metadata: Metadata, name: str,
                         parents: dict[str, pd.DataFrame]) -> tuple[pd.DataFrame, "SourceNotes"]:
        """The table checked against its metadata, orphan foreign keys handled (see sources.validate)."""
        from synth_pipeline.sources.validate import validate_real_table

        return validate_real_table(metadata, name, self.load_table(metadata, name), parents, self.on_orphans)


WRITE_SLICE_ROWS = 500_000  # rows converted to Arrow at once when a frame is written


def write_parquet(frame: pd.DataFrame, path: Path) -> None:
    """``frame`` as a Parquet file, converted to Arrow ``WRITE_SLICE_ROWS`` rows at a time
    under the schema of the whole frame (inferred a column at a time): the Arrow copy of a
    large table (its text above all) is not held beside the frame at once. A frame of one
    slice is converted once (inferring the schema apart would convert its text twice)."""
    if len(frame) <= WRITE_SLICE_ROWS:
        pq.write_table(pa.Table.from_pandas(frame, preserve_index=False), path)
        release_arrow_memory()
        return
    schema = pa.Schema.from_pandas(frame, preserve_index=False)
    with pq.ParquetWriter(path, schema) as writer:
        for start in range(0, len(frame), WRITE_SLICE_ROWS):
            writer.write_table(pa.Table.from_pandas(frame.iloc[start:start + WRITE_SLICE_ROWS], schema=schema,
                                                    preserve_index=False))
            release_arrow_memory()


class Warehouse(dg.ConfigurableResource):
    """Staging storage of a run: one Parquet file per stage and table (per partition of a
    partitioned run: ``<stage>/<table>/<i>-of-<n>.parquet``), one pickle per model.

    Files rather than one DuckDB file, so tables can be written by parallel processes;
    every write goes to a temporary file first and is moved into place when complete.
    """

    root: str

    def table_path(self, stage: str, table: str, part: Partition = WHOLE) -> Path:
        if part.count == 1:
            return Path(self.root) / stage / f"{table}.parquet"
        # the count in the name: a run with another partition count never reads these files
        return Path(self.root) / stage / table / f"{part.index}-of-{part.count}.parquet"

    def write(self, stage: str, table: str, frame: pd.DataFrame, part: Partition = WHOLE) -> Path:
        path = self.table_path(stage, table, part)
        path.parent.mkdir(parents=True, exist_ok=True)
        tmp = path.with_name(f".{path.name}.{os.getpid()}.tmp")
        write_parquet(frame, tmp)
        tmp.replace(path)
        return path

    def read(self, stage: str, table: str, part: Partition = WHOLE, columns: list[str] | None = None) -> pd.DataFrame:
        """A stored frame (only ``columns``, where given)."""
        path = self.table_path(stage, table, part)
        if not path.exists():
            which = f"{stage}/{table}" + (f" partition {partition_key(part.index, part.count)}" if part.count > 1 else "")
            raise SchemaError(f"table '{table}': no {stage} data yet in {self.root} (materialize {which} first)")
        return arrow_frame(pq.read_table(path, columns=columns))

    def read_among(self, stage: str, table: str, wanted, part: Partition = WHOLE) -> pd.DataFrame:
        """A stored frame's columns that are among ``wanted``, in their stored order (those
        it does not hold are left out; its file's schema says which)."""
        path = self.table_path(stage, table, part)
        names, wanted = pq.read_schema(path).names if path.exists() else [], set(wanted)
        return self.read(stage, table, part, columns=[c for c in names if c in wanted])

    def read_parts(self, stage: str, table: str, partitions: int):
        """Each partition's frame in turn (the one frame of an unpartitioned run)."""
        for index in range(partitions):
            yield self.read(stage, table, Partition(index, partitions))

    def read_all(self, stage: str, table: str, partitions: int) -> pd.DataFrame:
        """The whole table: every partition's rows, in partition order."""
        if partitions == 1:
            return self.read(stage, table)
        return pd.concat(list(self.read_parts(stage, table, partitions)), ignore_index=True)

    def write_holdout(self, table: str, frame: pd.DataFrame, info: dict) -> None:
        """The real rows held out of fitting (none without a privacy holdout) and how they were chosen."""
        self.write("holdout", table, frame)
        path = Path(self.root) / "holdout" / f"{table}.json"
        path.write_text(json.dumps(info))

    def read_holdout(self, table: str, columns: list[str] | None = None) -> pd.DataFrame:
        """The real rows of ``table`` held out of fitting (an empty frame without a holdout)."""
        path = self.table_path("holdout", table)
        return arrow_frame(pq.read_table(path, columns=columns)) if path.exists() else pd.DataFrame()

    def holdout_info(self, table: str) -> dict:
        path = Path(self.root) / "holdout" / f"{table}.json"
        return json.loads(path.read_text()) if path.exists() else {}

    def record_seconds(self, table: str, stage: str, seconds: float, part: Partition = WHOLE) -> None:
        """Wall time of one stage of one table (the evaluation compares them with HMA's); a
        partitioned stage records each partition's (``read_timings`` adds them up)."""
        path = Path(self.root) / "timings" / stage / f"{table}.txt"
        if part.count > 1:
            path.unlink(missing_ok=True)
            path = path.with_suffix("") / f"{part.index}-of-{part.count}.txt"
        else:
            shutil.rmtree(path.with_suffix(""), ignore_errors=True)
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_text(f"{seconds:.3f}\n")

    def record_source_notes(self, table: str, notes: dict) -> None:
        """What loading changed in a real table (orphans dropped); an empty dict clears it."""
        path = Path(self.root) / "source_notes" / f"{table}.json"
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_text(json.dumps(notes))

    def source_notes(self) -> dict[str, dict]:
        return {p.stem: n for p in sorted((Path(self.root) / "source_notes").glob("*.json"))
                if (n := json.loads(p.read_text()))}

    def timings(self) -> dict[str, dict[str, float]]:
        return read_timings(Path(self.root))

    def model_path(self, table: str) -> Path:
        return Path(self.root) / "models" / f"{table}.pkl"

    def save_model(self, model: TableModel) -> Path:
        """The model's pickle, and beside it what it holds (``<table>.json``: mechanisms, timings)."""
        path = self.model_path(model.table)
        model.save(path)
        summary = path.with_suffix(".json")
        tmp = summary.with_name(f".{summary.name}.{os.getpid()}.tmp")
        tmp.write_text(json.dumps(model.describe(), indent=2, default=str) + "\n")
        tmp.replace(summary)
        return path

    def load_model(self, table: str) -> TableModel:
        path = self.model_path(table)
        if not path.exists():
            raise SchemaError(f"table '{table}': no fitted model in {path.parent} (materialize model/{table} first)")
        stat = path.stat()
        return _load_model(str(path), stat.st_mtime_ns, stat.st_size)


@functools.lru_cache(maxsize=64)
def _load_model(path: str, mtime_ns: int, size: int) -> TableModel:
    """One unpickling per stored model file and process (sample, repair and checks each read it);
    a refit writes a new file, so its new mtime and size miss the cache. Sampling does not
    change a model."""
    return TableModel.load(path)


class LazyTables(Mapping):
    """``{table: frame}`` read on first use, at most ``keep`` frames held at once: a report
    over every table (and the published database) never holds the whole database in memory."""

    def __init__(self, names, load, keep: int = 3, parts=None):
        self._names, self._load = list(names), functools.lru_cache(maxsize=keep)(load)
        self._parts = parts
        self.partitioned = parts is not None

    def __getitem__(self, name: str) -> pd.DataFrame:
        if name not in self._names:
            raise KeyError(name)
        return self._load(name)

    def clear(self) -> None:
        """Forget the frames held (each is read again on its next use)."""
        self._load.cache_clear()

    def parts(self, name: str):
        """The table in pieces (its partitions, as ``parts(name)`` reads them), or whole."""
        if name not in self._names:
            raise KeyError(name)
        if self._parts is None:
            yield self[name]
        else:
            yield from self._parts(name)

    def __iter__(self):
        return iter(self._names)

    def __len__(self) -> int:
        return len(self._names)


def read_timings(root: Path) -> dict[str, dict[str, float]]:
    """``{table: {stage: seconds}}`` recorded under a run's work folder (a partitioned stage:
    the sum over its partitions)."""
    out: dict[str, dict[str, float]] = {}
    for path in (root / "timings").glob("*/*.txt"):
        out.setdefault(path.stem, {})[path.parent.name] = float(path.read_text())
    for folder in (root / "timings").glob("*/*/"):
        runs: dict[str, list[Path]] = {}  # by partition count: the latest partitioned run counts
        for path in folder.glob("*-of-*.txt"):
            runs.setdefault(path.stem.split("-of-")[1], []).append(path)
        if runs:
            latest = max(runs.values(), key=lambda paths: max(p.stat().st_mtime_ns for p in paths))
            out.setdefault(folder.name, {})[folder.parent.name] = round(sum(float(p.read_text()) for p in latest), 3)
    return out


def partition_key(index: int, count: int) -> str:
    """Dagster's name for partition ``index`` of ``count``: zero-padded, so they sort."""
    return f"{index:0{len(str(count - 1))}d}"


def partition_keys(count: int) -> list[str]:
    return [partition_key(i, count) for i in range(count)]


class RunSettings(dg.ConfigurableResource):
    """What a run generates and where it publishes."""

    out_dir: str
    seed: int = 0
    scale: float = 1.0
    partitions: int = 1  # > 1: sampled, repaired and checked in self-contained chunks of root rows
    workers: int = 1  # processes of the run at once (CLI); the CPUs a sampling step may use are shared by them
    executor: str = "in_process"  # how the UI's runs execute steps (the CLI runs them in its process)
    max_concurrent: int = 0  # steps the multiprocess executor runs at once (0: one per CPU)
    quality: str = "default"
    steps: int | None = None
    device: str = "cpu"
    conditional: bool = True
    cardinality_threshold: float = 0.80
    constraints_off: list[str] = []
    constraints_add: list[str] = []
    mechanisms_off: list[str] = []  # model mechanisms switched off (modeling/mechanisms.py)
    privacy_holdout: float = 0.0  # share of each root lineage held out of fitting (the privacy reference)
    privacy_min_count: int = 5  # category/text values in fewer real rows are not published verbatim
    privacy_allow: list[str] = []  # "table.column" whose rare values may be published
    dcr_threshold: float = 0.5  # the privacy check's least DCR overfitting protection (with a holdout)
    output_format: str = "duckdb"  # "parquet" / "csv": also a folder out_dir/synthetic/ of files
    fit_rows: int = 0  # > 0: tables above this many rows are fitted on a consistent subsample
    evaluation_rows: int = 0  # > 0: a database with a larger table is scored on a lineage sample

    def sampling_threads(self) -> int:
        """Chunks of rows a sampling step generates side by side: the CPUs this process may
        use (``OMP_NUM_THREADS`` caps them where set), shared among the processes sampling at
        once. Those are the CLI's ``min(workers, partitions)`` partition processes (one process
        without partitions), or the multiprocess executor's ``max_concurrent`` steps (one per
        CPU by default); a cluster worker's step runs beside others', on one thread. Rows do
        not depend on it."""
        import os

        from synth_pipeline.config import available_cpus

        if self.executor in ("celery", "k8s"):
            return 1
        cpus = available_cpus()
        limit = os.environ.get("OMP_NUM_THREADS", "").strip()
        if limit.isdigit() and int(limit) > 0:
            cpus = min(cpus, int(limit))
        if self.executor == "multiprocess":
            at_once = self.max_concurrent or available_cpus()
        else:
            at_once = min(self.workers, self.partitions) if self.partitions > 1 else 1
        return max(1, cpus // at_once)

    def model_settings(self) -> ModelSettings:
        """The model's settings: every field of ``ModelSettings`` is one of these, by name."""
        values = {f.name: getattr(self, f.name) for f in dataclasses.fields(ModelSettings)}
        return ModelSettings(**{k: tuple(v) if isinstance(v, list) else v for k, v in values.items()})

    @classmethod
    def of(cls, config) -> "RunSettings":
        """From the run's configuration: every field of these is one of the configuration's, by name."""
        values = {name: getattr(config, name) for name in cls.model_fields}
        return cls(**{k: list(v) if isinstance(v, tuple) else str(v) if k == "out_dir" else v
                      for k, v in values.items()})
