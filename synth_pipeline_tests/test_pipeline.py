"""End to end on a tiny school database: structure of the published output, and blocking checks."""

import json
import shutil

import dagster as dg
import duckdb
import pandas as pd
import pytest

from synth_pipeline.assets import PUBLISHED_KEY, stage_key
from synth_pipeline_tests.conftest import count_orphans, materialize_all

UUID4 = r"^[0-9a-f]{8}-[0-9a-f]{4}-4[0-9a-f]{3}-[89ab][0-9a-f]{3}-[0-9a-f]{12}$"


def _published(config):
    return duckdb.connect(str(config.out_dir / "synthetic.duckdb"), read_only=True)


def test_run_succeeds_and_publishes_every_table_with_real_columns(tiny_run, school_metadata):
    config, result = tiny_run
    assert result.success
    with _published(config) as con:
        names = {r[0] for r in con.execute("SELECT table_name FROM duckdb_tables()").fetchall()}
        assert names == set(school_metadata.tables)
        for name, table in school_metadata.tables.items():
            assert con.table(name).columns == list(table.columns)
            assert con.execute(f'SELECT count(*) FROM "{name}"').fetchone()[0] > 0


def test_published_database_has_zero_fk_violations_and_declares_keys(tiny_run, school_metadata):
    config, _ = tiny_run
    with _published(config) as con:
        for rel in school_metadata.relationships:
            assert count_orphans(con, rel) == 0, rel.label
        declared = con.execute(
            "SELECT constraint_type, count(*) FROM duckdb_constraints() "
            "WHERE constraint_type IN ('PRIMARY KEY', 'FOREIGN KEY') GROUP BY 1").fetchall()
        assert dict(declared) == {"PRIMARY KEY": len(school_metadata.tables),
                                  "FOREIGN KEY": len(school_metadata.relationships)}


def test_keys_are_unique_and_well_formed(tiny_run, school_metadata):
    config, _ = tiny_run
    with _published(config) as con:
        for name, table in school_metadata.tables.items():
            pk = table.primary_key[0]
            keys = con.execute(f'SELECT "{pk}" FROM "{name}"').df()[pk]
            assert keys.is_unique and keys.notna().all(), name
            assert keys.str.fullmatch(UUID4).all(), name
        formats = {("teachers", "employee_code"): r"EMP-\d{4}", ("students", "enrollment_number"): r"ENR-\d{4}-\d{5}",
                   ("courses", "course_code"): r"[A-Z]{2,4}-\d{3}", ("transport_assignments", "vehicle_number"): r"SCH-[A-Z]{2}-\d{4}"}
        for (name, column), pattern in formats.items():
            values = con.execute(f'SELECT "{column}" FROM "{name}"').df()[column]
            assert values.is_unique, (name, column)
            assert values.str.fullmatch(pattern).all(), (name, column)


def test_enrollment_number_year_follows_the_enrollment_date(tiny_run):
    config, _ = tiny_run
    with _published(config) as con:
        students = con.execute("SELECT enrollment_number, enrollment_date FROM students").df()
    year = students["enrollment_number"].str.split("-").str[1].astype(int)
    assert (year == pd.to_datetime(students["enrollment_date"]).dt.year).all()


def test_guardians_share_the_student_family_name_at_the_real_rate(tiny_run, tiny_school_db):
    config, _ = tiny_run
    query = "SELECT avg(CASE WHEN split_part(guardian_name, ' ', -1) = last_name THEN 1 ELSE 0 END) FROM students"
    with duckdb.connect(str(tiny_school_db), read_only=True) as real, _published(config) as syn:
        real_rate, synthetic_rate = real.execute(query).fetchone()[0], syn.execute(query).fetchone()[0]
    assert real_rate > 0.5 and abs(synthetic_rate - real_rate) < 0.12


def test_identity_text_is_not_copied_from_the_real_data(tiny_run, tiny_school_db):
    config, _ = tiny_run
    with duckdb.connect(str(tiny_school_db), read_only=True) as real, _published(config) as syn:
        for column in ("email", "phone", "address_line1"):
            real_values = set(real.execute(f"SELECT {column} FROM students").df()[column].dropna())
            synthetic = syn.execute(f"SELECT {column} FROM students").df()[column].dropna()
            assert not synthetic.isin(real_values).any(), column
    summary = json.loads((config.out_dir / "report.json").read_text())["synth_pipeline"]["summary"]
    assert summary["verbatim_identity_strings"] == 0
    assert summary["copied_rows"] == 0
    assert summary["constraints_discovered"] >= 10
    assert summary["constraints_fully_satisfied"] == summary["constraints_discovered"]


def test_every_blocking_check_ran_and_passed(tiny_run, school_metadata):
    _, result = tiny_run
    evaluations = result.get_asset_check_evaluations()
    expected = 4 * len(school_metadata.tables) + 2 * len(school_metadata.relationships)  # key, rules, numbers, privacy
    assert len(evaluations) == expected
    failed = [(e.asset_key.to_user_string(), e.check_name, e.metadata) for e in evaluations if not e.passed]
    assert failed == []


def test_report_json_has_row_counts_and_cardinality(tiny_run, school_metadata):
    config, _ = tiny_run
    report = json.loads((config.out_dir / "report.json").read_text())["run"]
    assert set(report["tables"]) == set(school_metadata.tables)
    assert report["totals"]["fk_violations"] == 0
    assert report["totals"]["pk_duplicates"] == 0
    assert report["totals"]["alternate_key_duplicates"] == 0
    assert set(report["tables"]["students"]["alternate_key_duplicates"]) >= {"enrollment_number", "email"}
    assert len(report["relationships"]) == len(school_metadata.relationships)
    # Counts are calibrated to the real children-per-parent distribution.
    assert report["totals"]["mean_cardinality_similarity"] >= 0.9
    fees = next(r for r in report["relationships"] if r["child_table_name"] == "fees" and r["child_foreign_key"] == "student_id")
    assert abs(fees["synthetic_children_per_parent"]["max"] - fees["real_children_per_parent"]["max"]) <= 3


def test_corrupted_parent_fails_its_check_blocks_descendants_and_keeps_the_published_db(
        tiny_run, school_metadata, tmp_path):
    config, _ = tiny_run
    out = tmp_path / "out"
    shutil.copytree(config.out_dir, out)
    corrupted_config = config.replace(out_dir=out)
    published = (out / "synthetic.duckdb").read_bytes()

    students_path = out / "work" / "repaired" / "students.parquet"
    students = pd.read_parquet(students_path)
    students.loc[1, "student_id"] = students.loc[0, "student_id"]  # a duplicate primary key
    students.to_parquet(students_path, index=False)

    students_key = stage_key("repaired", "students")
    selection = (dg.AssetSelection.checks_for_assets(students_key)
                 | dg.AssetSelection.assets(students_key).downstream(include_self=False))
    result = materialize_all(school_metadata, corrupted_config, selection=selection)

    assert not result.success
    pk_check = [e for e in result.get_asset_check_evaluations()
                if e.asset_key == students_key and e.check_name == "primary_key_unique_not_null"]
    assert len(pk_check) == 1 and not pk_check[0].passed
    materialized = {e.event_specific_data.materialization.asset_key
                    for e in result.all_events if e.event_type_value == "ASSET_MATERIALIZATION"}
    assert stage_key("synthetic", "fees") not in materialized
    assert PUBLISHED_KEY not in materialized
    assert (out / "synthetic.duckdb").read_bytes() == published


def test_a_repaired_table_breaking_a_discovered_constraint_fails_its_check(tiny_run, school_metadata, tmp_path):
    from synth_pipeline.checks import CONSTRAINTS_CHECK

    config, _ = tiny_run
    out = tmp_path / "out"
    shutil.copytree(config.out_dir, out)
    fees_path = out / "work" / "repaired" / "fees.parquet"
    fees = pd.read_parquet(fees_path)
    paid = fees["amount_paid"].notna() & (fees["amount_paid"] > 0)
    fees.loc[paid[paid].index[:3], "amount_paid"] = fees.loc[paid[paid].index[:3], "amount_due"] + 500
    fees.to_parquet(fees_path, index=False)

    fees_key = stage_key("repaired", "fees")
    result = materialize_all(school_metadata, config.replace(out_dir=out),
                             selection=dg.AssetSelection.checks_for_assets(fees_key))
    check = next(e for e in result.get_asset_check_evaluations() if e.check_name == CONSTRAINTS_CHECK)
    assert not check.passed
    assert check.metadata["rows_breaking"].value >= 3
    shares = check.metadata["satisfied_share"].value
    assert any("amount_paid" in description and share < 1 for description, share in shares.items())


def test_definitions_load_with_the_default_school_config():
    from synth_pipeline.definitions import defs

    graph = defs.resolve_asset_graph()
    keys = {k.to_user_string() for k in graph.get_all_asset_keys()}
    assert {"real/students", "model/students", "synthetic/students", "repaired/students",
            "published/synthetic_db"} <= keys
    assert graph.get(stage_key("synthetic", "students")).group_name == "students"
    assert defs.resolve_job_def("synthesize") is not None


def test_materializations_carry_what_the_ui_shows(tiny_run):
    _, result = tiny_run
    materializations = {e.event_specific_data.materialization.asset_key.to_user_string():
                        e.event_specific_data.materialization.metadata
                        for e in result.all_events if e.event_type_value == "ASSET_MATERIALIZATION"}
    fees = materializations["repaired/fees"]
    assert fees["row_count"].value > 0 and "|" in fees["preview"].value
    plot = fees["children_per_parent_student_id"].value
    assert plot.startswith("| children | real | synthetic |") and "█" in plot
    assert 0.5 < fees["column_shapes"].value <= 1
    model = materializations["model/marks"]
    assert model["fit_seconds"].value > 0 and model["training_steps"].value == 20
    assert {"training_generator_loss_first", "training_generator_loss_last"} <= set(model)


@pytest.mark.slow
def test_same_seed_same_output_with_one_or_two_threads(tmp_path, tiny_school_db):
    """Two runs with the same seed publish identical tables, whatever the machine's cores (models
    compute with a fixed thread count) and the run's workers (models fitted side by side, rows
    sampled in threads)."""
    import os
    import subprocess
    import sys

    import duckdb

    outs = []
    for threads in ("1", "2"):
        out = tmp_path / f"threads{threads}"
        env = {**os.environ, "OMP_NUM_THREADS": threads, "MKL_NUM_THREADS": threads}
        from synth_pipeline.config import SCHOOL_METADATA

        done = subprocess.run([sys.executable, "-m", "synth_pipeline.cli", "-q", "run", "--source", str(tiny_school_db),
                               "--metadata", str(SCHOOL_METADATA), "--steps", "12", "--out", str(out),
                               "--workers", threads],
                              env=env, capture_output=True, text=True, timeout=600)
        assert done.returncode == 0, done.stderr[-2000:]
        outs.append(out / "synthetic.duckdb")
    with duckdb.connect(str(outs[0]), read_only=True) as a, duckdb.connect(str(outs[1]), read_only=True) as b:
        tables = [r[0] for r in a.execute("SELECT table_name FROM duckdb_tables()").fetchall()]
        assert len(tables) == 10
        for table in tables:
            left = a.execute(f'SELECT * FROM "{table}"').df()
            right = b.execute(f'SELECT * FROM "{table}"').df()
            pd.testing.assert_frame_equal(left, right, obj=table)


def test_sampling_threads_share_the_cpus_among_processes_sampling_at_once(monkeypatch):
    import os

    from synth_pipeline.resources import RunSettings

    monkeypatch.delenv("OMP_NUM_THREADS", raising=False)
    cpus = len(os.sched_getaffinity(0))

    def threads(**settings) -> int:
        return RunSettings(out_dir="out", **settings).sampling_threads()

    # the CLI: one process owns the CPUs; partitions sampled min(workers, partitions) at once share them
    assert {(w, p): threads(workers=w, partitions=p) for w, p in [(1, 1), (2, 1), (1, 4), (2, 2), (2, 8), (64, 4)]} \
        == {(1, 1): cpus, (2, 1): cpus, (1, 4): cpus, (2, 2): max(1, cpus // 2), (2, 8): max(1, cpus // 2),
            (64, 4): max(1, cpus // 4)}
    # the UI: steps the multiprocess executor runs at once share them; a cluster worker's step takes one
    assert threads(executor="multiprocess") == 1
    assert threads(executor="multiprocess", max_concurrent=1) == cpus
    assert threads(executor="celery") == threads(executor="k8s") == 1
    monkeypatch.setenv("OMP_NUM_THREADS", "1")
    assert threads() == 1


def test_a_large_frame_is_written_in_slices_and_reads_back_the_same(tmp_path, monkeypatch):
    import numpy as np

    from synth_pipeline import resources
    from synth_pipeline.resources import Warehouse

    monkeypatch.setattr(resources, "WRITE_SLICE_ROWS", 40)  # 3 slices; the second's text all missing
    n = 100
    text = pd.Series([f"t{i}" for i in range(n)], dtype=object)
    text[40:80] = None
    frame = pd.DataFrame({"id": np.arange(n), "x": np.linspace(0, 1, n), "text": text,
                          "kind": pd.Categorical(np.where(np.arange(n) % 3 == 0, "a", "b")),
                          "at": pd.date_range("2020-01-01", periods=n, freq="D")})
    warehouse = Warehouse(root=str(tmp_path))
    warehouse.write("synthetic", "t", frame)
    back = warehouse.read("synthetic", "t")
    assert len(back) == n and list(back.columns) == list(frame.columns)
    assert back["text"].isna().sum() == 40 and back["text"].dropna().tolist() == text.dropna().tolist()
    pd.testing.assert_frame_equal(back.drop(columns="text"), frame.drop(columns="text"))
