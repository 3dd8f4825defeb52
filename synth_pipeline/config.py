"""One configuration for the CLI and ``dagster dev``: a YAML file, validated with clear errors.

```yaml
source: path/to/db.duckdb        # DuckDB or SQLite file, or a folder of CSV/Parquet files
metadata: path/to/metadata.json  # SDV multi-table JSON; detected from the source when absent
out_dir: data/output             # synthetic.duckdb, real.duckdb and report.json land here
seed: 0
scale: 1.0                       # root tables get scale x their real row count
partitions: 1                    # sample in this many self-contained chunks of root rows (Dagster partitions)
workers: 1                       # CLI: tables fitted at once, own processes; with partitions, partitions sampled at once (a table's rows are sampled in threads, one per CPU)
quality: default                 # fast | default | best
steps: null                      # fixed training steps per table (overrides quality)
conditional: true                # children generated given their parent row
cardinality_threshold: 0.80      # blocking check: KS complement of children per parent
schedule_cron: "0 2 * * *"       # the nightly refresh
nightly_refresh: false           # true: the schedule and the refresh sensor start switched on (else: in the UI)
output_format: duckdb            # duckdb | parquet | csv (folder out_dir/synthetic/, beside synthetic.duckdb)
fit_rows: 200000                 # a table larger than this is fitted on a consistent subsample (0: never)
evaluation_rows: 200000          # a database with a larger table is scored on a lineage sample this size (0: never)
device: cpu                      # cpu | cuda | cuda:N | mps | auto (a GPU when torch sees one)
executor: in_process             # runs from the UI/daemon: in_process | multiprocess | celery | k8s
max_concurrent: 0                # multiprocess: steps at once (0: one per CPU; each computes with one thread)
on_orphans: drop                 # real FK values with no parent row: drop those rows (or fail)
constraints_off:                 # discovered constraints not to enforce nor check, as listed in
  - "fees: payment_date is null exactly when payment_mode is null"   # report.json ("table: description")
constraints_add:                 # rules to enforce and check even where the real data breaks them:
  - "fees: amount_paid <= amount_due"   # "a <= b", "a < b", "a -> b", "a is null exactly when b is null"
mechanisms_off: []               # model mechanisms to switch off (names: docs/ablation.md); for ablations
privacy_holdout: 0.0             # share of each root lineage held out of fitting, the privacy figures' reference
privacy_min_count: 5             # category/text values seen in fewer real rows are never published verbatim
privacy_allow: []                # "table.column": its rare values may be published (public labels)
dcr_threshold: 0.5               # blocking check (with a holdout): least sdmetrics DCR overfitting protection
```
Relative paths are taken from the YAML file's folder. ``SYNTH_PIPELINE_CONFIG`` names the
file ``dagster dev`` uses; without it the embedded school database is synthesized.
"""

from __future__ import annotations

import dataclasses
import os
import re
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from synth_pipeline.errors import ConfigError, SynthPipelineError
from synth_pipeline.schema.metadata import Metadata

PROJECT_ROOT = Path(__file__).resolve().parents[1]
DATA_DIR = PROJECT_ROOT / "data"
SCHOOL_DB = DATA_DIR / "school" / "school.duckdb"
SCHOOL_METADATA = DATA_DIR / "school" / "metadata.json"
CONFIG_ENV = "SYNTH_PIPELINE_CONFIG"
QUALITIES = ("fast", "default", "best")
EXECUTORS = ("in_process", "multiprocess", "celery", "k8s")
MAX_PARTITIONS = 10_000


@dataclass(frozen=True)
class PipelineConfig:
    source: Path = SCHOOL_DB
    metadata_path: Path | None = SCHOOL_METADATA
    out_dir: Path = DATA_DIR / "output"
    work_dir: Path | None = None
    seed: int = 0
    scale: float = 1.0
    partitions: int = 1  # sampling in this many self-contained chunks of root rows (each its share of them)
    workers: int = 1  # CLI runs: tables fitted at once (with partitions: partitions sampled at once)
    quality: str = "default"
    steps: int | None = None
    conditional: bool = True
    cardinality_threshold: float = 0.80
    schedule_cron: str = "0 2 * * *"
    nightly_refresh: bool = False  # the schedule and the refresh sensor start switched on (else: in the UI)
    constraints_off: tuple[str, ...] = ()  # "table: description" of discovered constraints to ignore
    constraints_add: tuple[str, ...] = ()  # "table: rule" a user adds (see constraints.parse_added)
    mechanisms_off: tuple[str, ...] = ()  # model mechanisms neither fitted nor applied (modeling/mechanisms.py)
    privacy_holdout: float = 0.0  # share of each root lineage (with its descendants) held out of fitting
    privacy_min_count: int = 5  # category/text values in fewer real rows are not published verbatim
    privacy_allow: tuple[str, ...] = ()  # "table.column" whose rare values may be published
    dcr_threshold: float = 0.5  # the privacy check's least DCR overfitting protection (with a holdout)
    on_orphans: str = "drop"  # real FK values with no parent row: "drop" those rows or "fail"
    fit_rows: int = 200_000  # a larger table's model is fitted on a consistent subsample this size (0: never)
    evaluation_rows: int = 200_000  # a database with a larger table is scored on a lineage sample (0: never)
    device: str = "cpu"  # where CTGAN trains: cpu, cuda, cuda:N, or auto (a GPU when torch sees one)
    executor: str = "in_process"  # runs from the UI/daemon: in_process, multiprocess, celery or k8s
    max_concurrent: int = 0  # steps the multiprocess executor runs at once (0: one per CPU)
    output_format: str = "duckdb"  # also "parquet" or "csv": a folder of files beside synthetic.duckdb
    school_students: int = 0  # > 0: simulate the school database at `source` when it is missing
    school_seed: int = 0

    def __post_init__(self):
        if self.work_dir is None:
            object.__setattr__(self, "work_dir", Path(self.out_dir) / "work")
        if self.quality not in QUALITIES:
            raise ConfigError(f"config: quality must be one of {', '.join(QUALITIES)}, got '{self.quality}'")
        if self.output_format not in ("duckdb", "parquet", "csv"):
            raise ConfigError(f"config: output_format must be duckdb, parquet or csv, got '{self.output_format}'")
        if self.on_orphans not in ("drop", "fail"):
            raise ConfigError(f"config: on_orphans must be drop or fail, got '{self.on_orphans}'")
        if not self.scale > 0:
            raise ConfigError(f"config: scale must be a positive number, got {self.scale}")
        if not 1 <= self.partitions <= MAX_PARTITIONS:
            raise ConfigError(f"config: partitions must be between 1 and {MAX_PARTITIONS}, got {self.partitions}")
        if self.workers < 1:
            raise ConfigError(f"config: workers must be at least 1, got {self.workers}")
        if self.evaluation_rows < 0:
            raise ConfigError(f"config: evaluation_rows must be 0 (score every row) or a row count, got {self.evaluation_rows}")
        if self.fit_rows < 0:
            raise ConfigError(f"config: fit_rows must be 0 (no subsample) or a row count, got {self.fit_rows}")
        if not re.fullmatch(r"cpu|auto|mps|cuda(:\d+)?", self.device):
            raise ConfigError(f"config: device must be cpu, cuda, cuda:N, mps or auto, got '{self.device}'")
        if self.executor not in EXECUTORS:
            raise ConfigError(f"config: executor must be one of {', '.join(EXECUTORS)}, got '{self.executor}'")
        if self.max_concurrent < 0:
            raise ConfigError(f"config: max_concurrent must be 0 (one per CPU) or more, got {self.max_concurrent}")
        if self.steps is not None and self.steps < 1:
            raise ConfigError(f"config: steps must be at least 1, got {self.steps}")
        object.__setattr__(self, "mechanisms_off", tuple(self.mechanisms_off))
        if self.mechanisms_off:
            from synth_pipeline.modeling.mechanisms import require_known

            require_known(self.mechanisms_off)
        if not 0 <= self.cardinality_threshold <= 1:
            raise ConfigError(f"config: cardinality_threshold must be within [0, 1], got {self.cardinality_threshold}")
        if not 0 <= self.privacy_holdout < 1:
            raise ConfigError(f"config: privacy_holdout must be within [0, 1), got {self.privacy_holdout}")
        if self.privacy_min_count < 1:
            raise ConfigError(f"config: privacy_min_count must be at least 1, got {self.privacy_min_count}")
        if not 0 <= self.dcr_threshold <= 1:
            raise ConfigError(f"config: dcr_threshold must be within [0, 1], got {self.dcr_threshold}")
        object.__setattr__(self, "privacy_allow", tuple(self.privacy_allow))
        for entry in self.privacy_allow:
            if not re.fullmatch(r"[^.\s]+\.[^.\s]+", entry):
                raise ConfigError(f"config: privacy_allow entries are 'table.column', got '{entry}'")

    def metadata(self) -> Metadata:
        """The metadata of the run: the file's (with what only the data tells: empty tables,
        binary columns, a cycle's deferred edge), or detected from the source. Kept in the
        work folder (``metadata.resolved.json``) while the source and the file are unchanged,
        so each process of a run reads the source once at most."""
        import hashlib
        import json

        given = Metadata.load(self.metadata_path) if self.metadata_path is not None else None
        if given is not None and not Path(self.source).exists():
            return given  # nothing to read yet (the school is simulated on first load; else a clear error then)
        cache = Path(self.work_dir) / "metadata.resolved.json"
        key = hashlib.sha256(json.dumps([_source_stamp(self.source), given.to_dict() if given else None],
                                        default=str).encode()).hexdigest()[:16]
        if cache.exists():
            try:
                cached = json.loads(cache.read_text())
                if cached.get("key") == key:
                    return Metadata.from_dict(cached["metadata"])
            except (ValueError, KeyError, SynthPipelineError):
                pass
        from synth_pipeline.schema.detect import detect_metadata, resolve_metadata

        metadata = resolve_metadata(given, self.source) if given is not None else detect_metadata(self.source)
        cache.parent.mkdir(parents=True, exist_ok=True)
        tmp = cache.with_name(f".{cache.name}.{os.getpid()}.tmp")
        tmp.write_text(json.dumps({"key": key, "metadata": metadata.to_dict()}))
        tmp.replace(cache)
        return metadata

    def replace(self, **changes: Any) -> "PipelineConfig":
        if "out_dir" in changes and "work_dir" not in changes:
            changes["work_dir"] = None
        return dataclasses.replace(self, **changes)


def _source_stamp(path: Path) -> list:
    """Names, sizes and modification times of the source's files: a change in any is a new source."""
    path = Path(path)
    if not path.exists():
        return [str(path)]
    files = sorted(path.iterdir()) if path.is_dir() else [path]
    return [str(path)] + [(f.name, f.stat().st_size, f.stat().st_mtime_ns) for f in files if f.is_file()]


def available_cpus() -> int:
    """The CPUs this process may run on (its affinity where the system tells it)."""
    return len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else (os.cpu_count() or 1)


def school_config(students: int = 1000, seed: int = 0, out_dir: Path | None = None, **overrides) -> PipelineConfig:
    """The demo: the embedded school database (rebuilt when missing)."""
    source = SCHOOL_DB if students == 1000 and seed == 0 else DATA_DIR / "school" / f"school_{students}_{seed}.duckdb"
    return PipelineConfig(source=source, metadata_path=SCHOOL_METADATA, out_dir=out_dir or DATA_DIR / "output",
                          school_students=students, school_seed=seed, seed=seed, **overrides)


_FIELDS = {
    "source": Path, "metadata": Path, "out_dir": Path, "work_dir": Path, "seed": int, "scale": float, "partitions": int, "workers": int,
    "quality": str, "steps": int, "conditional": bool, "cardinality_threshold": float, "schedule_cron": str,
    "nightly_refresh": bool,
    "school_students": int, "school_seed": int, "constraints_off": list, "constraints_add": list,
    "mechanisms_off": list, "privacy_holdout": float, "privacy_min_count": int, "privacy_allow": list,
    "dcr_threshold": float,
    "on_orphans": str, "output_format": str, "fit_rows": int, "evaluation_rows": int, "device": str, "executor": str, "max_concurrent": int,
}


_OPTIONAL = {"metadata", "work_dir", "steps"}  # may be left empty (null): detected, derived or the quality's


def config_from_yaml(path: str | Path, require_source: bool = True) -> PipelineConfig:
    import yaml

    path = Path(path)
    try:
        raw = yaml.safe_load(path.read_text()) or {}
    except OSError as exc:
        raise ConfigError(f"config {path}: cannot be read ({exc.strerror or exc})") from None
    except yaml.YAMLError as exc:
        raise ConfigError(f"config {path}: not valid YAML ({str(exc).splitlines()[0]})") from None
    if not isinstance(raw, dict):
        raise ConfigError(f"config {path}: expected a mapping of settings")
    unknown = sorted(set(raw) - set(_FIELDS))
    if unknown:
        raise ConfigError(f"config {path}: unknown setting(s) {', '.join(unknown)} (known: {', '.join(_FIELDS)})")
    values: dict[str, Any] = {}
    for key, value in raw.items():
        kind = _FIELDS[key]
        if value is None:
            if key not in _OPTIONAL:
                raise ConfigError(f"config {path}: '{key}' must be {kind.__name__}, got nothing")
            values[key] = None
            continue
        try:
            if kind is Path:
                value = Path(value)
                values[key] = value if value.is_absolute() else (path.parent / value).resolve()
            elif kind is int and (isinstance(value, bool) or not float(value).is_integer()):
                raise ValueError
            elif kind is bool and not isinstance(value, bool):
                raise ValueError
            elif kind is list:
                if not isinstance(value, list) or not all(isinstance(v, str) for v in value):
                    raise ValueError
                values[key] = tuple(value)
            else:
                values[key] = kind(value)
        except (TypeError, ValueError):
            raise ConfigError(f"config {path}: '{key}' must be {kind.__name__}, got {value!r}") from None
    if "source" not in values and require_source:
        raise ConfigError(f"config {path}: 'source' is required")
    values["metadata_path"] = values.pop("metadata", None)
    return PipelineConfig(**values)


def load_config() -> PipelineConfig:
    path = os.environ.get(CONFIG_ENV)
    if path:
        return config_from_yaml(path)
    return school_config()
