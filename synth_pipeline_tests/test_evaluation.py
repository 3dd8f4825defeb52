"""Each metric on constructed cases where the right answer is known."""

import json
import subprocess
import sys

import numpy as np
import pandas as pd
import pytest

from synth_pipeline.evaluation.baseline import HMA_MAX_TABLES, hma_subschema
from synth_pipeline.evaluation.detection import parent_detection
from synth_pipeline.evaluation.fidelity import cross_table_trends, two_hop_chains
from synth_pipeline.evaluation.privacy import table_privacy
from synth_pipeline.evaluation.report import evaluate
from synth_pipeline.schema import constraints
from synth_pipeline.sources import load_tables

TABLES = ["teachers", "courses", "students", "fees", "student_courses", "marks"]


def _school_part(school_tables, students):
    """Some students with their fees and course enrollments (with marks)."""
    frames = {"teachers": school_tables["teachers"], "courses": school_tables["courses"], "students": students}
    frames["fees"] = school_tables["fees"][school_tables["fees"].student_id.isin(students.student_id)]
    frames["student_courses"] = school_tables["student_courses"][school_tables["student_courses"].student_id.isin(students.student_id)]
    frames["marks"] = school_tables["marks"][school_tables["marks"].student_course_id.isin(frames["student_courses"].student_course_id)]
    return {t: f.reset_index(drop=True) for t, f in frames.items()}


@pytest.fixture(scope="module")
def small_school(school_tables, school_metadata):
    return _school_part(school_tables, school_tables["students"].iloc[:400]), school_metadata.restrict(TABLES)


def test_two_samples_of_the_same_school_are_undetectable(school_tables, school_metadata):
    md = school_metadata.restrict(TABLES)
    first = _school_part(school_tables, school_tables["students"].iloc[:500])
    second = _school_part(school_tables, school_tables["students"].iloc[500:])
    detected = parent_detection(first, second, md, "students")
    assert 0.38 <= detected["logistic_regression"] <= 0.62, detected
    assert 0.38 <= detected["gradient_boosting"] <= 0.62, detected


def test_identical_data_scores_one(small_school):
    real, md = small_school
    copy = {t: f.copy() for t, f in real.items()}
    report = evaluate(real, copy, md, privacy=False)
    s = report["summary"]
    assert s["column_shapes"] == pytest.approx(1.0, abs=1e-6)
    assert s["column_pair_trends"] == pytest.approx(1.0, abs=1e-6)
    assert s["cardinality_similarity_min"] == pytest.approx(1.0)
    assert s["intertable_trends"] == pytest.approx(1.0, abs=1e-6)
    assert s["two_hop_trends"] == pytest.approx(1.0, abs=1e-6)
    assert s["fk_violations"] == 0 and s["pk_duplicates"] == 0
    assert s["constraint_satisfaction_mean"] == 1.0
    # Exact duplicates across the two classes leave nothing to learn: at most chance.
    assert s["detection_logistic_regression_max"] <= 0.6 and s["detection_gradient_boosting_max"] <= 0.6


def test_a_shuffled_foreign_key_lowers_intertable_trends_and_is_detected(small_school):
    real, md = small_school
    shuffled = {t: f.copy() for t, f in real.items()}
    rng = np.random.default_rng(0)
    shuffled["fees"]["student_id"] = rng.permutation(shuffled["fees"]["student_id"].to_numpy())
    rel = next(r for r in md.relationships if r.child_table_name == "fees" and r.child_foreign_key == "student_id")
    same = cross_table_trends(real, real, md, [rel])["score"]
    broken = cross_table_trends(real, shuffled, md, [rel])["score"]
    assert same == pytest.approx(1.0, abs=1e-6)
    assert broken < same - 0.02
    # Fee counts per student no longer follow course load: the aggregate table gives it away.
    detected = parent_detection(real, shuffled, md, "students")
    assert detected["gradient_boosting"] > 0.6


def test_a_corrupted_column_lowers_column_shapes_and_breaks_constraints(small_school):
    real, md = small_school
    bad = {t: f.copy() for t, f in real.items()}
    bad["fees"]["amount_paid"] = bad["fees"]["amount_due"] * 1.5  # everyone paid too much
    report = evaluate(real, bad, md, privacy=False, detection=False)
    assert report["tables"]["fees"]["column_shapes_by_column"]["amount_paid"] < 0.7
    paid = next(c for c in report["constraints"] if c["description"] == "amount_paid <= amount_due")
    assert paid["satisfied_share"] == 0.0


def test_constraints_discovered_on_the_school_data(school_tables, school_metadata):
    found = {(c.table, c.description) for c in constraints.discover(school_tables, school_metadata)}
    assert ("fees", "amount_paid <= amount_due") in found
    assert ("transport_assignments", "valid_from < valid_to") in found
    assert ("student_courses", "grade_letter -> grade_points") in found
    assert ("transport_assignments", "route_name -> monthly_fee") in found
    assert any(t == "canteen_transactions" and "transaction_date >= students.enrollment_date" in d for t, d in found)


def test_privacy_flags_a_copied_real_row_and_verbatim_identity(small_school):
    real, md = small_school
    students = real["students"]
    synthetic = students.iloc[:50].copy()
    synthetic["student_id"] = [f"new-{i}" for i in range(50)]
    for col in ("first_name", "last_name", "email", "phone", "address_line1", "postal_code", "guardian_name", "guardian_contact"):
        synthetic[col] = [f"fake-{col}-{i}" for i in range(50)]
    clean = table_privacy(students, synthetic.assign(date_of_birth=pd.Timestamp("1990-01-01")), md, "students")
    assert clean["copied_rows"] == 0 and clean["verbatim_identity_strings"] == 0
    leaked = synthetic.copy()
    leaked.iloc[3] = students.iloc[7]  # one real row, verbatim
    result = table_privacy(students, leaked, md, "students")
    assert result["copied_rows"] >= 1
    assert result["identity_columns"]["email"]["verbatim"] == 1
    assert result["verbatim_identity_strings"] >= 4  # email, phone, address, guardian contact...
    assert result["dcr"]["synthetic_at_zero_share"] > 0


def test_two_hop_chains_cover_grandparent_grandchild_paths(school_metadata):
    paths = {" -> ".join([c[0].parent_table_name, c[0].child_table_name, c[1].child_table_name])
             for c in two_hop_chains(school_metadata)}
    assert "students -> student_courses -> marks" in paths
    assert "courses -> student_courses -> marks" in paths
    assert "teachers -> students -> fees" in paths


def test_hma_subschema_is_one_it_accepts(school_tables, school_metadata):
    tables = hma_subschema(school_metadata, school_tables)
    sub = school_metadata.restrict(tables)
    assert len(tables) == HMA_MAX_TABLES
    assert tables[0] == "students"
    assert all(r.parent_table_name == "students" for r in sub.relationships)  # depth 2 (parent -> child)


@pytest.mark.slow
def test_evaluate_command_with_the_hma_baseline(tiny_run, tmp_path):
    config, _ = tiny_run
    out = tmp_path / "eval"
    done = subprocess.run(
        [sys.executable, "-m", "synth_pipeline.cli", "evaluate", "--real", str(config.out_dir / "real.duckdb"),
         "--synthetic", str(config.out_dir / "synthetic.duckdb"), "--metadata", str(config.metadata_path),
         "--baseline", "hma", "--out", str(out)], capture_output=True, text=True, timeout=600)
    assert done.returncode == 0, done.stderr[-2000:]
    report = json.loads((out / "report.json").read_text())
    comparison = report["comparison"]
    assert len(comparison["tables"]) <= HMA_MAX_TABLES
    for system in ("synth_pipeline", "hma"):
        summary = comparison[system]
        assert summary["fk_violations"] == 0
        assert 0 < summary["column_shapes"] <= 1 and 0 < summary["cardinality_similarity_mean"] <= 1
        assert summary["fit_seconds"] > 0 and summary["sample_seconds"] > 0
    # Keys: ours keep the real format, HMA's do not (the seed's UUID complaint).
    assert comparison["synth_pipeline"]["key_format_adherence_min"] == 1.0
    html = (out / "report.html").read_text()
    assert "Against SDV HMA" in html and html.count("data:image/png;base64") >= 3


def test_pipeline_evaluation_asset_writes_the_report(tiny_run, school_metadata):
    config, result = tiny_run
    report = json.loads((config.out_dir / "report.json").read_text())
    assert {"run", "synth_pipeline"} <= set(report)
    summary = report["synth_pipeline"]["summary"]
    assert summary["fk_violations"] == 0 and summary["pk_duplicates"] == 0
    assert summary["key_format_adherence_min"] == 1.0
    assert summary["verbatim_identity_strings"] <= 3
    assert (config.out_dir / "report.html").exists()
    repaired = result.asset_materializations_for_node("repaired__fees")[0].metadata
    assert repaired["fk_violations"].value == 0
    assert 0 < repaired["column_shapes"].value <= 1
    assert "cardinality_similarity_student_id" in repaired


@pytest.mark.slow
def test_held_out_check_scores_the_fitted_school_like_itself(tiny_school_db, capsys):
    """The fitted school itself, read back from its database as if it were synthetic, scores
    what the simulated real school scores against the same fresh draw; a wrong path is one line."""
    from synth_pipeline.evaluation import resample_reference

    code = resample_reference.main(["--students", "150", "--seed", "7", "--other-seed", "8",
                                    "--synthetic", str(tiny_school_db), "--fresh-seed", "9"])
    out = json.loads(capsys.readouterr().out)
    assert code == 0
    real, synthetic = out["held_out"]["real"], out["held_out"]["synthetic"]
    assert set(real) == {"column_shapes", "column_pair_trends", "intertable_trends", "two_hop_trends"}
    for figure, value in real.items():
        assert 0.3 < value < 0.99, (figure, value)  # a fresh draw is neither identical nor unrelated
        assert synthetic[figure] == pytest.approx(value, abs=1e-3), figure
    assert resample_reference.main(["--synthetic", str(tiny_school_db) + ".missing"]) == 2
    assert "--synthetic" in capsys.readouterr().err


def test_a_large_database_is_scored_on_a_lineage_sample_with_its_fk_violations_counted_on_every_row(
        tiny_run, school_metadata, tmp_path):
    """Above ``evaluation_rows`` rows in a table, both databases are read as a sample of whole
    families (every kept row's parent rows are there, a parent keeps all its children) of about
    the share asked; a foreign-key violation anywhere in the database is still counted."""
    import shutil

    import duckdb

    from synth_pipeline.evaluation.lineage_sample import load_for_scoring, whole_structure
    from synth_pipeline.evaluation.structure import fk_violations

    config, _ = tiny_run
    synthetic_path = tmp_path / "synthetic.duckdb"
    shutil.copy(config.out_dir / "synthetic.duckdb", synthetic_path)
    with duckdb.connect(str(synthetic_path)) as con:
        largest = max(con.execute(f'SELECT count(*) FROM "{t}"').fetchone()[0] for t in school_metadata.tables)
    whole = load_tables(config.out_dir / "real.duckdb", list(school_metadata.tables))
    cap = largest // 4
    real, synthetic, sampled = load_for_scoring(config.out_dir / "real.duckdb", synthetic_path, school_metadata, cap,
                                                min_kept=10)  # a tiny school: 150 students
    assert sampled and 0.2 < sampled["real"]["share"] < 0.3 and sampled["synthetic"]
    for frames in (real, synthetic):
        for rel in school_metadata.relationships:  # nothing kept dangles
            assert fk_violations(frames[rel.child_table_name], frames[rel.parent_table_name], rel) == 0, rel.label
    kept = real["students"]["student_id"]
    assert len(kept) < len(whole["students"])
    for child in ("fees", "student_courses"):  # whole families: every child of a kept student
        assert len(real[child]) == whole[child]["student_id"].isin(kept).sum(), child
    assert len(real["marks"]) < 0.5 * len(whole["marks"])
    # the figures a sample cannot give are replaced by the whole databases': FK violations,
    # children per parent (here the same database on both sides: a similarity of 1)
    report = {"summary": {"fk_violations": 0},
              "relationships": [{**r.to_dict(), "cardinality_similarity": 0.0} for r in school_metadata.relationships]}
    with duckdb.connect(str(synthetic_path)) as con:  # one fee of a student who does not exist
        con.execute("CREATE TABLE fees_copy AS SELECT * FROM fees")
        con.execute("DROP TABLE fees")
        con.execute("CREATE TABLE fees AS SELECT * FROM fees_copy")
        con.execute("DROP TABLE fees_copy")
        con.execute("UPDATE fees SET student_id = 'no-such-student' WHERE rowid = (SELECT max(rowid) FROM fees)")
    whole_structure(report, synthetic_path, synthetic_path, school_metadata)
    assert report["summary"]["fk_violations"] == 1
    assert report["summary"]["cardinality_similarity_min"] == 1.0
    fees = next(r for r in report["relationships"] if r["child_table_name"] == "fees" and r["child_foreign_key"] == "student_id")
    assert fees["fk_violations"] == 1 and fees["synthetic_children_per_parent"]["count"] > 0


def test_key_digests_of_a_row_do_not_depend_on_the_other_rows():
    """pandas writes a date column as '2020-01-01' or '2020-01-01 00:00:00' depending on the
    column's other values: the report's key digests (compared across partitions and chunks of
    rows) must not, or a repeated key goes uncounted."""
    from synth_pipeline.evaluation.run_report import _digests

    dates_only = pd.DataFrame({"day": [pd.Timestamp("2020-01-01"), pd.Timestamp("2020-01-02")], "store": [1, 2]})
    with_times = pd.DataFrame({"day": [pd.Timestamp("2020-01-01"), pd.Timestamp("2020-01-02 05:00")], "store": [1, 2]})
    left, right = _digests(dates_only)["digest"].to_numpy(), _digests(with_times)["digest"].to_numpy()
    assert left[0] == right[0] and left[1] != right[1]



def test_a_values_hash_does_not_depend_on_how_its_text_is_held():
    """Copied real rows and repeated keys are found by hashes: a category read as Arrow text
    (its few values hashed once each), as Python strings, or among many distinct texts hashes
    alike, missing values alike; children per parent count the same with unique parent keys
    (found by position) and repeated ones."""
    from synth_pipeline.stats import NULL_HASH, child_counts, value_hashes

    arrow = pd.StringDtype("pyarrow", na_value=np.nan)
    few = ["AIR", "MAIL", None, "AIR"] * 50  # 3 values in 200 rows: hashed per value
    many = [f"comment {i}" for i in range(196)] + ["AIR", "MAIL", None, "AIR"]  # hashed per row
    held = [value_hashes(pd.Series(few, dtype=arrow)), value_hashes(pd.Series(few, dtype=object))]
    assert (held[0] == held[1]).all() and (held[0][2::4] == NULL_HASH).all()
    assert len(set(held[0][:2])) == 2
    assert (value_hashes(pd.Series(many, dtype=arrow))[-4:] == held[0][:4]).all()
    children = pd.Series([3, 1, 3, None, 7, 3])
    assert child_counts(pd.Series([1, 2, 3]), children).tolist() == [1, 0, 3]
    assert child_counts(pd.Series([3, 1, 3]), children).tolist() == [3, 1, 3]

def test_the_ks_complement_counted_per_value_is_sdmetrics_own_figure():
    """Column shapes, children per parent and date offsets score sdmetrics' KSComplement,
    computed by counting each distinct value: the same figure to the bit on whole numbers,
    decimals, dates and mixed sides, with missing values, on both sides of scipy's exact
    method (10,000 values); a differing distribution still scores lower."""
    from sdmetrics.single_column import KSComplement

    from synth_pipeline.stats import ks_complement

    rng = np.random.default_rng(7)
    cases = [(pd.Series([1.0, np.nan]), pd.Series([np.nan])), (pd.Series([1, 2, 3]), pd.Series([3, 2, 1]))]
    for size in (3, 40, 900, 9_000, 10_001, 25_000):
        n = size + int(rng.integers(0, 7))
        whole = pd.Series(rng.integers(-5, 30, size).astype(float))
        whole[rng.random(size) < 0.1] = np.nan
        cases += [
            (pd.Series(rng.integers(0, 12, size)), pd.Series(rng.integers(0, 14, n))),
            (whole, pd.Series(rng.integers(-3, 33, n))),
            (pd.Series(rng.normal(size=size)), pd.Series(rng.normal(0.1, 1.2, n))),
            (pd.Series(np.round(rng.normal(size=size), 1)), pd.Series(np.round(rng.normal(size=n), 1))),
            (pd.Series(pd.to_datetime(rng.integers(0, 10**5, size), unit="D")),
             pd.Series(pd.to_datetime(rng.integers(0, 10**5, n), unit="D"))),
        ]
    for real, synthetic in cases:
        expected = KSComplement.compute(real, synthetic)
        assert ks_complement(real, synthetic) == pytest.approx(expected, abs=0, rel=0, nan_ok=True)
    assert ks_complement(pd.Series(range(100)), pd.Series(range(50, 150))) == pytest.approx(0.5)


def test_a_large_table_is_scored_in_the_ui_on_a_sample_that_reads_like_every_row(school_metadata, school_tables,
                                                                                 tmp_path):
    from synth_pipeline.assets import table_quality
    from synth_pipeline.resources import Warehouse

    warehouse = Warehouse(root=str(tmp_path))
    parents = {r.parent_table_name: school_tables[r.parent_table_name] for r in school_metadata.foreign_keys("fees")}
    for name in ("fees", *parents):
        warehouse.write("real", name, school_tables[name])
    fees = school_tables["fees"]
    redrawn = fees.sample(frac=1.0, replace=True, random_state=1).reset_index(drop=True)
    broken = redrawn.assign(amount_due=redrawn["amount_due"] * 3, fee_type=redrawn["fee_type"].iloc[0])
    every = table_quality(school_metadata, "fees", warehouse, redrawn, parents)
    sampled = table_quality(school_metadata, "fees", warehouse, redrawn, parents, max_rows=len(fees) // 4, seed=3)
    assert every["column_shapes"] > 0.97 and abs(sampled["column_shapes"] - every["column_shapes"]) < 0.03
    assert table_quality(school_metadata, "fees", warehouse, broken, parents, max_rows=len(fees) // 4,
                         seed=3)["column_shapes"] < every["column_shapes"] - 0.1
    # violations and children per parent still come from every row
    assert sampled["fk_violations"] == every["fk_violations"] == 0
    assert sampled["cardinality_similarity_student_id"] == every["cardinality_similarity_student_id"]


def test_a_lineage_sample_reads_its_rows_in_the_same_order_every_time(tmp_path):
    """DuckDB joins on several threads return rows in any order; scores drawn from a sample
    of the rows (pair trends) must not change between two evaluations of the same databases."""
    import duckdb

    from synth_pipeline.evaluation.lineage_sample import load_sampled
    from synth_pipeline.schema.metadata import Metadata

    rng = np.random.default_rng(0)
    parents, children = 300_000, 900_000
    path = tmp_path / "db.duckdb"
    with duckdb.connect(str(path)) as con:
        con.execute("CREATE TABLE parent AS SELECT range AS id, range % 7 AS kind FROM range(?)", [parents])
        child = pd.DataFrame({"id": np.arange(children), "parent_id": rng.integers(0, parents, children),
                              "amount": rng.random(children)})
        con.register("incoming", child)
        con.execute("CREATE TABLE child AS SELECT * FROM incoming")
    metadata = Metadata.from_dict({
        "tables": {"parent": {"primary_key": "id", "columns": {"id": {"sdtype": "id"}, "kind": {"sdtype": "categorical"}}},
                   "child": {"primary_key": "id", "columns": {"id": {"sdtype": "id"}, "parent_id": {"sdtype": "id"},
                                                              "amount": {"sdtype": "numerical"}}}},
        "relationships": [{"parent_table_name": "parent", "parent_primary_key": "id",
                           "child_table_name": "child", "child_foreign_key": "parent_id"}]})
    first, info = load_sampled(path, metadata, 300_000, seed=1)
    assert info and 0 < len(first["child"]) < children
    for _ in range(3):
        again, _ = load_sampled(path, metadata, 300_000, seed=1)
        for name in ("parent", "child"):
            pd.testing.assert_frame_equal(again[name], first[name], obj=name)
