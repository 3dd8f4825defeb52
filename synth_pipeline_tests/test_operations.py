"""Operations: subtree re-runs, sources and output formats, scale, configuration errors, the UI."""

import json
import os
import shutil
import signal
import socket
import sqlite3
import subprocess
import sys
import time
import urllib.request
from pathlib import Path

import duckdb
import pandas as pd
import pytest

from synth_pipeline.config import config_from_yaml
from synth_pipeline.errors import ConfigError
from synth_pipeline.runner import run_pipeline
from synth_pipeline.schema.metadata import Metadata
from synth_pipeline.sources import load_tables
from synth_pipeline_tests.conftest import run_cli
from synth_pipeline_tests.test_bad_input import SHOP_METADATA, shop_tables

PROJECT = Path(__file__).resolve().parents[1]


def _orphans(tables: dict[str, pd.DataFrame], metadata: Metadata) -> int:
    total = 0
    for rel in metadata.relationships:
        child, parent = tables[rel.child_table_name], tables[rel.parent_table_name]
        values = child[rel.child_foreign_key]
        total += int((values.notna() & ~values.isin(parent[rel.parent_primary_key])).sum())
    return total


def test_subtree_rerun_resamples_one_table_and_its_descendants_only(tiny_run, school_metadata, tmp_path):
    config, _ = tiny_run
    out = tmp_path / "out"
    shutil.copytree(config.out_dir, out)
    before = load_tables(out / "synthetic.duckdb")
    outcome = run_pipeline(config.replace(out_dir=out, seed=2), only="courses")  # another seed: new rows
    assert outcome.success, outcome.failures
    after = load_tables(out / "synthetic.duckdb")
    subtree = {"courses", "course_instructors", "student_courses", "marks"}
    for name in school_metadata.tables:
        if name in subtree:
            assert not before[name].equals(after[name]), name
        else:
            pd.testing.assert_frame_equal(before[name], after[name], obj=name)
    assert _orphans(after, school_metadata) == 0
    assert outcome.report["run"]["totals"]["fk_violations"] == 0


SAMPLING = 'key:"synthetic/*"+ and not key:"published/evaluation"'


@pytest.mark.slow
def test_partitioned_sampling_is_one_sound_database_and_each_partition_stands_alone(tiny_run, school_metadata,
                                                                                   tmp_path):
    """Three partitions at scale 1.5 from the tiny run's models: together one database with
    unique keys (alternate keys and emails too) and no orphan; each partition's children
    point only at that partition's parents; the same seed gives the same database, whether
    the partitions run one after another or two at once in worker processes."""
    from synth_pipeline.resources import Warehouse
    from synth_pipeline.schema.keys import Partition

    config, _ = tiny_run
    outputs = []
    for attempt, workers in (("a", 1), ("b", 2)):  # b: two partitions at once, in worker processes
        work = tmp_path / attempt / "work"
        shutil.copytree(Path(config.work_dir) / "models", work / "models")
        shutil.copytree(Path(config.work_dir) / "real", work / "real")
        partitioned = config.replace(out_dir=tmp_path / attempt, work_dir=work, scale=1.5, partitions=3,
                                     workers=workers)
        outcome = run_pipeline(partitioned, selection=SAMPLING)
        assert outcome.success, outcome.failures
        assert outcome.report["run"]["totals"]["fk_violations"] == 0
        outputs.append(load_tables(tmp_path / attempt / "synthetic.duckdb"))
    published = outputs[0]
    assert _orphans(published, school_metadata) == 0
    real = load_tables(config.source)
    for name, table in school_metadata.tables.items():
        frame = published[name]
        single = [table.single_primary_key] if table.single_primary_key else []
        for key in single + list(table.alternate_keys):
            assert frame[key].notna().all() and frame[key].is_unique, f"{name}.{key}"
        pd.testing.assert_frame_equal(frame, outputs[1][name], obj=name)
    # the root table: its partitions' shares add up to scale x its real rows
    assert len(published["teachers"]) == round(len(real["teachers"]) * 1.5)
    roots = len(published["teachers"]) / len(real["teachers"])
    for name in ("students", "marks"):  # descendants follow their roots
        assert 0.7 < len(published[name]) / len(real[name]) / roots < 1.4, name
    warehouse = Warehouse(root=str(tmp_path / "a" / "work"))
    for index in range(3):
        part = Partition(index, 3)
        students = warehouse.read("repaired", "students", part)
        teachers = warehouse.read("repaired", "teachers", part)
        fees = warehouse.read("repaired", "fees", part)
        assert len(students) > 0
        assert students["homeroom_teacher_id"].dropna().isin(teachers["teacher_id"]).all()
        assert fees["student_id"].isin(students["student_id"]).all()
        assert fees["approved_by_teacher_id"].dropna().isin(teachers["teacher_id"]).all()


def test_more_partitions_than_root_rows_is_one_clear_error(tiny_run, school_metadata):
    from synth_pipeline.modeling.table_model import TableModel
    from synth_pipeline.schema.keys import Partition

    config, _ = tiny_run
    teachers = TableModel.load(Path(config.work_dir) / "models" / "teachers.pkl")
    assert sum(Partition(i, 7).share(100) for i in range(7)) == 100
    with pytest.raises(ConfigError, match="table 'teachers': 1000 partitions for .* real rows x scale 1: some "
                                          "partitions would get no row of this root table"):
        teachers.sample(school_metadata, {}, 1.0, seed=0, part=Partition(0, 1000))


def test_only_needs_a_stored_run_and_a_known_table(tiny_school_db, tmp_path):
    from synth_pipeline_tests.conftest import tiny_config

    done = run_cli("demo", "--students", "10", "--out", str(tmp_path / "fresh"), "--only", "courses")
    assert done.returncode == 2 and "no stored run" in done.stderr and "Traceback" not in done.stderr
    with pytest.raises(Exception, match="--only nosuch: no such table"):
        run_pipeline(tiny_config(tmp_path, tiny_school_db), only="nosuch")


def _write_source(kind: str, folder: Path, tables: dict[str, pd.DataFrame]) -> Path:
    folder.mkdir(parents=True)
    if kind == "csv":
        for name, frame in tables.items():
            frame.to_csv(folder / f"{name}.csv", index=False)
        return folder
    path = folder / "shop.sqlite"
    with sqlite3.connect(path) as con:
        for name, frame in tables.items():
            frame.to_sql(name, con, index=False)
    return path



@pytest.mark.parametrize("source_kind, output_format, scale", [("csv", "csv", 0.5), ("sqlite", "parquet", 3.0)])
def test_sources_formats_and_scale(tmp_path, source_kind, output_format, scale):
    tables = shop_tables()
    source = _write_source(source_kind, tmp_path / "src", tables)
    metadata_path = tmp_path / "metadata.json"
    metadata_path.write_text(json.dumps(SHOP_METADATA))
    out = tmp_path / "out"
    done = run_cli("run", "--source", str(source), "--metadata", str(metadata_path), "--out", str(out),
                "--steps", "30", "--scale", str(scale), "--format", output_format)
    assert done.returncode == 0, done.stderr
    files = sorted(p.name for p in (out / "synthetic").iterdir())
    assert files == [f"{t}.{output_format}" for t in sorted(SHOP_METADATA["tables"])]
    synthetic = load_tables(out / "synthetic")
    metadata = Metadata.from_dict(SHOP_METADATA)
    assert _orphans(synthetic, metadata) == 0
    assert len(synthetic["customers"]) == round(scale * len(tables["customers"]))  # roots: scale x real
    assert len(synthetic["coupons"]) == round(scale * len(tables["coupons"]))
    ratio = len(synthetic["orders"]) / (len(tables["orders"]) - 3)  # children follow their parents' counts
    assert abs(ratio - scale) < 0.3 * scale
    with duckdb.connect(str(out / "synthetic.duckdb"), read_only=True) as con:
        assert con.execute("SELECT count(*) FROM orders").fetchone()[0] == len(synthetic["orders"])


@pytest.mark.parametrize("text, message", [
    ("seed: 1\n", "'source' is required"),
    ("source: x.duckdb\nquality: fastest\n", "quality must be one of fast, default, best, got 'fastest'"),
    ("source: x.duckdb\nscale: -1\n", "scale must be a positive number"),
    ("source: x.duckdb\nsteps: 2.5\n", "'steps' must be int, got 2.5"),
    ("source: x.duckdb\nsead: 1\n", "unknown setting(s) sead"),
    ("source: x.duckdb\noutput_format: xlsx\n", "output_format must be duckdb, parquet or csv"),
    ("source: x.duckdb\non_orphans: ignore\n", "on_orphans must be drop or fail"),
    ("source: [unclosed\n", "not valid YAML"),
    ("source: x.duckdb\ndevice: gpu\n", "device must be cpu, cuda, cuda:N, mps or auto, got 'gpu'"),
    ("source: x.duckdb\nexecutor: dask\n", "executor must be one of in_process, multiprocess, celery, k8s"),
    ("source: x.duckdb\nfit_rows: -5\n", "fit_rows must be 0 (no subsample) or a row count"),
    ("source: x.duckdb\npartitions: 0\n", "partitions must be between 1 and 10000, got 0"),
    ("source: x.duckdb\nworkers: 0\n", "workers must be at least 1, got 0"),
    ("source: x.duckdb\npartitions:\n", "'partitions' must be int, got nothing"),
    ("source: x.duckdb\nmechanisms_off: [rakng]\n", "mechanisms_off: unknown mechanism(s) rakng; known: parent_context, raking"),
])
def test_config_errors_are_one_clear_line(tmp_path, text, message):
    path = tmp_path / "config.yaml"
    path.write_text(text)
    with pytest.raises(ConfigError) as err:
        config_from_yaml(path)
    assert message in str(err.value) and "\n" not in str(err.value)


def test_executor_and_device_settings_reach_the_definitions_or_fail_clearly(tmp_path):
    import torch

    from synth_pipeline.config import school_config
    from synth_pipeline.pipeline import build_definitions

    config = school_config(out_dir=tmp_path)
    metadata = config.metadata()
    job = build_definitions(metadata, config.replace(executor="multiprocess", max_concurrent=2)).resolve_job_def(
        "synthesize")
    assert job.executor_def.name == "multiprocess"
    assert build_definitions(metadata, config.replace(executor="in_process")).resolve_job_def(
        "synthesize").executor_def.name == "in_process"
    for executor, package in (("k8s", "dagster-k8s"), ("celery", "dagster-celery")):
        try:
            __import__(package.replace("-", "_"))
        except ImportError:
            with pytest.raises(ConfigError, match=f"executor {executor} needs the {package} package"):
                build_definitions(metadata, config.replace(executor=executor))
    if not torch.cuda.is_available():
        with pytest.raises(ConfigError, match="device 'cuda': torch .* sees no such GPU here"):
            build_definitions(metadata, config.replace(device="cuda"))


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def test_dagster_dev_serves_the_asset_graph(tmp_path):
    port = _free_port()
    env = {**os.environ, "DAGSTER_HOME": str(tmp_path), "GX_ANALYTICS_ENABLED": "false"}
    dagster = Path(sys.executable).with_name("dagster")
    proc = subprocess.Popen([str(dagster), "dev", "-h", "127.0.0.1", "-p", str(port)], cwd=PROJECT, env=env,
                            stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL, start_new_session=True)
    query = json.dumps({"query": "{ assetNodes { assetKey { path } } }"}).encode()
    try:
        keys, deadline = None, time.time() + 180
        while time.time() < deadline and keys is None:
            assert proc.poll() is None, "dagster dev exited"
            try:
                request = urllib.request.Request(f"http://127.0.0.1:{port}/graphql", data=query,
                                                 headers={"Content-Type": "application/json"})
                with urllib.request.urlopen(request, timeout=10) as response:
                    nodes = json.loads(response.read())["data"]["assetNodes"]
                    keys = {"/".join(n["assetKey"]["path"]) for n in nodes} if nodes else None
            except OSError:
                time.sleep(2)
    finally:
        os.killpg(proc.pid, signal.SIGKILL)  # dagster dev ignores SIGTERM when started in the background
        proc.wait(timeout=30)
    assert keys is not None, "the webserver never answered"
    assert {"real/students", "model/students", "synthetic/marks", "repaired/fees", "published/synthetic_db"} <= keys


@pytest.mark.slow
def test_changed_only_refits_nothing_when_unchanged_and_resamples_only_what_a_change_reaches(
        tiny_school_db, school_metadata, tmp_path):
    from synth_pipeline.modeling.context import real_subset_for
    from synth_pipeline_tests.conftest import tiny_config

    source = tmp_path / "school.duckdb"
    shutil.copy(tiny_school_db, source)
    config = tiny_config(tmp_path, source)
    first = run_pipeline(config, changed_only=True)
    assert first.success, first.failures
    assert {k for k in first.materialized if k.startswith("model/")} == {f"model/{t}" for t in school_metadata.tables}
    published = (config.out_dir / "synthetic.duckdb").read_bytes()

    again = run_pipeline(config, changed_only=True)
    assert again.success and sorted(again.materialized) == sorted(f"real/{t}" for t in school_metadata.tables)
    assert (config.out_dir / "synthetic.duckdb").read_bytes() == published

    with duckdb.connect(str(source)) as con:  # one real mark changes (no count changes)
        con.execute("UPDATE marks SET score_obtained = score_obtained - 1 WHERE mark_id = (SELECT min(mark_id) FROM marks)")
    changed = run_pipeline(config, changed_only=True)
    assert changed.success, changed.failures
    refitted = {k.split("/")[1] for k in changed.materialized if k.startswith("model/")}
    # the models that read real marks: marks itself, and its parents (their children-per-parent counts)
    assert refitted == {t for t in school_metadata.tables if "marks" in real_subset_for(school_metadata, t)}
    # only the marks model learned something new, so only marks is sampled again
    assert {k for k in changed.materialized if k.startswith(("synthetic/", "repaired/"))} == {"synthetic/marks",
                                                                                             "repaired/marks"}
    assert "published/synthetic_db" in changed.materialized
    assert _orphans(load_tables(config.out_dir / "synthetic.duckdb"), school_metadata) == 0


def test_models_fitted_in_worker_processes_are_the_ones_fitted_in_process(tiny_run, tmp_path):
    """``workers: 2``: the tables' models are fitted two at once in worker processes, and each
    learns exactly what the in-process fit learned (same content digest)."""
    from synth_pipeline.modeling.table_model import TableModel

    config, _ = tiny_run
    work = tmp_path / "work"
    shutil.copytree(config.work_dir, work, ignore=shutil.ignore_patterns("models", "dagster"))
    parallel = config.replace(out_dir=tmp_path, work_dir=work, workers=2)
    outcome = run_pipeline(parallel, selection='key:"model/*"')
    assert outcome.success, outcome.failures
    fitted = sorted(p.stem for p in (Path(config.work_dir) / "models").glob("*.pkl"))
    assert sorted(p.stem for p in (work / "models").glob("*.pkl")) == fitted and len(fitted) == 10
    for name in fitted:
        assert TableModel.load(work / "models" / f"{name}.pkl").content_digest() == \
            TableModel.load(Path(config.work_dir) / "models" / f"{name}.pkl").content_digest(), name


def test_fits_run_side_by_side_only_while_their_memory_stays_within_the_largest_fits(tiny_run):
    from synth_pipeline.resources import Warehouse
    from synth_pipeline.runner import FIT_MEMORY_FLOOR, fit_data_bytes, fit_memory_bytes, next_within

    config, _ = tiny_run
    metadata = config.metadata()
    warehouse = Warehouse(root=str(config.work_dir))
    sizes = {t: fit_data_bytes(warehouse, metadata, t) for t in metadata.tables}
    assert all(size > 0 for size in sizes.values())
    # a fit reading its children's and parents' whole tables reads more than one reading a few key columns
    assert sizes["students"] > sizes["course_instructors"]
    # a small database's fits run side by side (each holds little beyond its process)
    held = sorted((fit_memory_bytes(size) for size in sizes.values()), reverse=True)
    assert next_within(held[1:], held[0], max(held[0], FIT_MEMORY_FLOOR)) == 0
    # TPC-H scale 1's real data per fit (MB): the line items alone; orders beside customers (not
    # beside part supplies: that pair took a run to 4.07 GB); part supplies beside parts
    queue = [fit_memory_bytes(mb * 2**20) for mb in (617, 272, 266, 55, 35, 22, 3, 1)]
    budget = max(queue[0], FIT_MEMORY_FLOOR)
    assert next_within(queue, 0, budget) == 0
    assert next_within(queue[1:], queue[0], budget) is None
    assert next_within(queue[1:], 0, budget) == 0 and next_within(queue[2:], queue[1], budget) == 1
    assert next_within(queue[2:3], queue[1], budget) is None
    assert next_within(queue[5:], queue[2], budget) == 0
    assert next_within([700, 5], 600, 617) == 1  # a smaller queued fit goes first when the next does not fit
    assert next_within([9000], 0, budget) == 0  # alone, any fit starts


def test_the_largest_tables_fits_start_first(tiny_run):
    """The longest fits start first (fits side by side end together): the largest real tables,
    not the ones reading the most data of other tables (a small parent reads its children)."""
    from synth_pipeline.resources import Warehouse
    from synth_pipeline.runner import fit_data_bytes, fit_order

    config, _ = tiny_run
    metadata = config.metadata()
    warehouse = Warehouse(root=str(config.work_dir))
    rows = {t: len(warehouse.read("real", t)) for t in metadata.tables}
    order = fit_order(warehouse, {t: fit_data_bytes(warehouse, metadata, t) for t in metadata.tables})
    assert sorted(order) == sorted(metadata.tables)
    assert order[0] == max(rows, key=rows.get) == "marks"
    # the courses read their children's tables (more data than the marks' fit reads) but have few rows
    assert fit_data_bytes(warehouse, metadata, "courses") > fit_data_bytes(warehouse, metadata, "marks")
    assert order.index("courses") > order.index("students")
    assert order.index("courses") > len(order) // 2


def test_worker_processes_started_early_are_handed_on_with_the_fits_imports_done():
    """``workers.start`` spawns the fits' processes at once; ``take`` hands the same ones on,
    the pipeline already imported in each; a different count gets new ones. An idle worker
    can be stopped (while a large fit runs alone) and is started again for the next task."""
    import os

    from synth_pipeline import workers

    workers.start(2)
    try:
        slots = workers.take(2)
        try:
            assert slots.running() == 2
            first, i = slots.submit(_imported, "synth_pipeline.pipeline")
            second, j = slots.submit(os.getpid)
            assert i != j and first.result() and second.result() != os.getpid()
            slots.done(j)
            slots.stop_idle()  # worker i is still busy: only j's process ends
            assert slots.pools[j] is None and slots.pools[i] is not None and slots.running() == 1
            slots.done(i)
            again, k = slots.submit(os.getpid)
            assert k == i  # a running process is used before a stopped one is started again
            pid = again.result()
            third, m = slots.submit(_imported, "synth_pipeline.pipeline")
            assert m == j and third.result() and slots.running() == 2  # started again, imports done
            slots.done(k)
            slots.done(m)
            assert slots.submit(os.getpid)[0].result() == pid
        finally:
            slots.close()
        assert slots.running() == 0
        workers.start(2)
        other = workers.take(3)
        assert other.running() == 0 and len(other.pools) == 3  # the two started ones were not three: ended
        other.close()
        fresh = workers.take(2)  # nothing left started: new processes, spawned as tasks need them
        assert fresh.running() == 0
        fresh.close()
    finally:
        workers.discard()


def test_workers_start_before_staging_only_beside_a_small_source(tmp_path):
    """Idle workers hold memory while the source is staged: they start early only for a small one."""
    from synth_pipeline import workers

    small = tmp_path / "small"
    small.mkdir()
    (small / "a.parquet").write_bytes(b"x" * 1000)
    assert workers.start_early(2, small)
    assert workers.start_early(2, tmp_path / "not built yet")
    assert not workers.start_early(1, small)  # one worker: the fits run in this process
    large = tmp_path / "large"
    large.mkdir()
    with (large / "big.parquet").open("wb") as fh:  # sparse: its size without the disk
        fh.truncate(workers.EARLY_MAX_SOURCE_BYTES // 2 + 1)
    with (large / "other.parquet").open("wb") as fh:
        fh.truncate(workers.EARLY_MAX_SOURCE_BYTES // 2 + 1)
    assert not workers.start_early(2, large)
    assert workers.start_early(2, large / "big.parquet")  # one file, below the bound


def _imported(module: str) -> bool:
    import sys

    return module in sys.modules
