"""Key formats, identity text, detection from data and catalogs, and the CLI's error handling."""

import json

import numpy as np
import pandas as pd
import pytest

from synth_pipeline.modeling.pii import IdentitySpec
from synth_pipeline.schema.detect import detect_from_frames, detect_metadata
from synth_pipeline.schema.keys import KeyFormat
from synth_pipeline_tests.conftest import require_dataset, run_cli


@pytest.mark.parametrize("values, kind, pattern", [
    (pd.Series([3, 7, 11]), "integer", r"\d+"),
    (pd.Series(["0b7a54f6-8d4b-4a61-9e58-2c3b0a4d9f11", "5d7c1c8e-3b0a-4f2e-8d7c-1a2b3c4d5e6f"]), "uuid",
     r"[0-9a-f]{8}-[0-9a-f]{4}-4[0-9a-f]{3}-[0-9a-f]{4}-[0-9a-f]{12}"),
    (pd.Series(["ENR-2023-00042", "ENR-2021-00007", "ENR-2023-00100"]), "pattern", r"ENR-(2023|2021)-\d{5}"),
    (pd.Series(["EMP-0042", "EMP-0001"]), "pattern", r"EMP-\d{4}"),
    (pd.Series(["MATH-101", "SCI-204", "CS-330"]), "pattern", r"(MATH|SCI|CS)-\d{3}"),
    (pd.Series(["a b", "cd", "e-f-1"]), "string", r"K\d+"),
])
def test_key_formats_generate_fresh_unique_keys(values, kind, pattern):
    fmt = KeyFormat.infer(values)
    assert fmt.kind == kind
    keys = pd.Series(fmt.generate(2000, np.random.default_rng(0)))
    assert keys.is_unique
    assert keys.astype(str).str.fullmatch(pattern).all()
    assert fmt.matches(keys).all()
    if kind != "string":  # the fallback format describes generated keys only
        assert fmt.matches(values).all()


def test_identity_columns_keep_shape_not_values():
    real = pd.Series(["(555) 123-4567", "(555) 987-6543", None])
    phones = IdentitySpec.fit("phone", "phone_number", real).generate(300, seed=1)
    assert phones.dropna().str.fullmatch(r"\(\d{3}\) \d{3}-\d{4}").all()
    assert 0.2 < phones.isna().mean() < 0.45
    rows = pd.DataFrame({"first_name": ["Ann", "Ann"], "last_name": ["Lee", "Lee"]})
    emails = IdentitySpec.fit("email", "email", pd.Series(["x@school.edu"])).generate(2, seed=1, rows=rows)
    assert emails.tolist() == ["ann.lee@school.edu", "ann.lee1@school.edu"]


def test_detection_from_frames_finds_keys_and_sdtypes(school_tables):
    frames = {k: school_tables[k] for k in ("teachers", "students", "fees")}
    md = detect_from_frames(frames)
    assert md.tables["students"].primary_key == ("student_id",)
    rels = {(r.child_table_name, r.child_foreign_key, r.parent_table_name) for r in md.relationships}
    assert ("fees", "student_id", "students") in rels
    cols = md.tables["students"].columns
    assert cols["email"].sdtype == "email" and cols["phone"].sdtype == "phone_number"
    assert cols["enrollment_date"].sdtype == "datetime" and cols["gender"].sdtype == "categorical"
    assert md.tables["fees"].columns["amount_due"].sdtype == "numerical"


def test_detection_from_the_sqlite_catalog_of_chinook():
    path = require_dataset("chinook") / "Chinook_Sqlite.sqlite"
    md = detect_metadata(path)
    assert md.tables["PlaylistTrack"].primary_key == ("PlaylistId", "TrackId")
    assert len(md.relationships) == 11
    assert any(r.is_self_reference and r.child_foreign_key == "ReportsTo" for r in md.relationships)
    assert set(md.parents("Track")) == {"Album", "Genre", "MediaType"}
    sdtypes = {(t, c): spec.sdtype for t, table in md.tables.items() for c, spec in table.columns.items()}
    # a "Name" is a person's only when its values look like one: genres are categories, track
    # and artist names are titles (free text), first and last names stay identity columns
    assert sdtypes[("Genre", "Name")] == sdtypes[("MediaType", "Name")] == "categorical"
    assert sdtypes[("Track", "Name")] == sdtypes[("Artist", "Name")] == sdtypes[("Album", "Title")] == "text"
    assert sdtypes[("Employee", "FirstName")] == "first_name" and sdtypes[("Customer", "Email")] == "email"


def test_a_name_column_is_a_person_name_only_when_its_values_look_like_one():
    people = pd.DataFrame({"id": range(40), "name": [f"{f} {l}" for f, l in zip(
        ["Anna", "John", "Maria", "David", "Laura"] * 8, ["Smith", "Berg", "Rossi", "Okafor", "Dubois"] * 8)]})
    products = pd.DataFrame({"id": range(40), "name": [f"Widget model {i}" for i in range(40)]})
    assert detect_from_frames({"people": people}).table("people").columns["name"].sdtype == "name"
    assert detect_from_frames({"products": products}).table("products").columns["name"].sdtype == "text"
    titles = IdentitySpec.fit("title", "text", pd.Series(["Balls To The Wall", "Fast As A Shark", "Restless And Wild"]))
    generated = titles.generate(200, seed=0)
    words = generated.str.split().str.len()
    assert words.between(1, 6).all() and abs(words.mean() - 4) < 1.0  # about as long as the real titles
    assert not generated.str.endswith(".").any() and generated.map(str.istitle).all()



def test_cli_detect_prints_sdv_json():
    path = require_dataset("chinook") / "Chinook_Sqlite.sqlite"
    done = run_cli("detect", "--source", str(path))
    assert done.returncode == 0, done.stderr
    meta = json.loads(done.stdout)
    assert {"tables", "relationships"} <= set(meta)
    assert meta["tables"]["Employee"]["primary_key"] == "EmployeeId"


def test_faker_locale_is_told_from_emails_and_phones():
    from synth_pipeline.modeling.pii import guess_locale

    german = pd.DataFrame({"email": ["anna@firma.de", "max@post.de", "li@mail.com"],
                           "phone": ["+49 30 123456", "+49 89 555 1234", "+49 40 99887"]})
    assert guess_locale(german, {"email": "email", "phone": "phone_number"}) == "de_DE"
    assert guess_locale(german.assign(email=["a@x.co.uk"] * 3), {"email": "email"}) == "en_GB"
    mixed = pd.DataFrame({"email": ["a@x.com", "b@y.de", "c@z.fr", "d@w.org"]})
    assert guess_locale(mixed, {"email": "email"}) == "en_US"
    spec = IdentitySpec.fit("name", "name", pd.Series(["Anna Schmidt", "Max Müller"]))
    spec.locale = "de_DE"
    generated = spec.generate(300, seed=0)
    assert generated.str.contains("ä|ö|ü|ß").any()


def test_a_year_in_a_key_follows_the_date_it_repeats():
    rng = np.random.default_rng(0)
    dates = pd.Series(pd.to_datetime("2018-01-01") + pd.to_timedelta(rng.integers(0, 5 * 365, 500), unit="D"))
    real = pd.DataFrame({"code": [f"ENR-{d.year}-{i:05d}" for i, d in enumerate(dates)], "joined": dates,
                         "born": dates - pd.Timedelta(days=6000)})
    fmt = KeyFormat.infer(real["code"])
    fmt.link_years(real, "code", ["born", "joined"])
    assert fmt.year_of == "joined"
    rows = pd.DataFrame({"joined": pd.to_datetime(["2030-03-01", "2019-12-31", "2019-01-01"])})
    keys = pd.Series(fmt.generate(3, np.random.default_rng(1), rows=rows))
    assert keys.str[4:8].tolist() == ["2030", "2019", "2019"] and keys.is_unique and fmt.matches(keys).all()
    unrelated = KeyFormat.infer(real["code"])
    unrelated.link_years(real.assign(joined=real["joined"].sample(frac=1, random_state=0).to_numpy()), "code", ["joined"])
    assert unrelated.year_of is None


@pytest.mark.parametrize("setup, message", [
    (lambda tmp: tmp / "missing.duckdb", "no such file or folder"),
    (lambda tmp: (tmp / "junk.db").write_bytes(b"not a database at all") and tmp / "junk.db",
     "not a DuckDB or SQLite database"),
])
def test_cli_bad_source_is_one_clear_line(tmp_path, setup, message):
    source = setup(tmp_path)
    done = run_cli("run", "--source", str(source), "--out", str(tmp_path / "out"))
    assert done.returncode == 2
    assert message in done.stderr
    assert "Traceback" not in done.stderr
    assert [line.startswith("error: ") for line in done.stderr.strip().splitlines()].count(True) == 1
    assert not (tmp_path / "out" / "synthetic.duckdb").exists()


def test_rows_equal_to_a_unique_real_row_are_moved_off_it():
    from synth_pipeline.modeling.table_model import TableModel
    from synth_pipeline.repair import _break_copies
    from synth_pipeline.stats import row_digests, unique_row_digests

    rng = np.random.default_rng(0)
    real = pd.DataFrame({"score": rng.integers(0, 50, 400), "grade": rng.choice(list("ABC"), 400),
                         "day": pd.Timestamp("2024-01-01") + pd.to_timedelta(rng.integers(0, 30, 400), unit="D")})
    columns = list(real.columns)
    model = TableModel("t", real_row_digests=unique_row_digests(real, columns), copy_columns=columns)
    synthetic = pd.concat([real.sample(300, random_state=1), real.sample(300, random_state=2)], ignore_index=True)
    copies = int(np.isin(row_digests(synthetic, columns), model.real_row_digests).sum())
    assert copies > 50
    before = synthetic.copy()
    fixed, left = _break_copies(synthetic, model, np.random.default_rng(0))
    assert (fixed, left) == (copies, 0)
    assert not np.isin(row_digests(synthetic, columns), model.real_row_digests).any()
    moved = (synthetic != before).any(axis=1)
    assert moved.sum() == copies  # only the copies changed, each by the smallest move
    assert (synthetic["score"] - before["score"]).abs().max() <= 10


def test_a_row_digest_depends_on_the_values_not_on_how_the_column_holds_them():
    from synth_pipeline.stats import row_digests

    real = pd.DataFrame({"n": [5, 6, 7, 8], "x": [0.5, 1.25, -3.0, 2.0], "label": ["a", "b", None, "a"],
                         "day": pd.to_datetime(["2024-01-01", "2024-02-03 10:00", None, "2024-03-01"], format="ISO8601")})
    held_otherwise = pd.DataFrame({"n": pd.array([5.0, 6.0, 7.0, 8.0]), "x": real["x"],
                                   "label": real["label"].astype("string[pyarrow]").astype("category"),
                                   "day": real["day"].astype("datetime64[s]")})
    columns = list(real.columns)
    assert (row_digests(real, columns) == row_digests(held_otherwise, columns)).all()
    assert (row_digests(real.iloc[[2, 0]], columns) == row_digests(real, columns)[[2, 0]]).all()  # a row alone
    changed = [real.assign(n=[5, 6, 7, 9]), real.assign(x=[0.5, 1.25, -3.0, 2.0000001]),
               real.assign(label=["a", "b", None, "A"]), real.assign(day=real["day"].fillna(pd.Timestamp(0))),
               real.assign(day=real["day"] + pd.to_timedelta([0, 0, 0, 1], unit="ns"))]
    for other in changed:  # exactly the changed rows get another digest
        differs = row_digests(other, columns) != row_digests(real, columns)
        assert differs.tolist() == (~((other == real) | (other.isna() & real.isna())).all(axis=1)).tolist()
    assert len(set(row_digests(real, columns).tolist())) == 4
    assert (row_digests(real, ["n", "x"]) != row_digests(real, ["x", "n"])).all()  # the columns' order counts


def test_copies_without_a_number_to_move_are_broken_by_swaps_that_keep_each_column():
    from synth_pipeline.modeling.mechanisms import ParentCopies
    from synth_pipeline.modeling.table_model import TableModel
    from synth_pipeline.repair import _break_copies
    from synth_pipeline.stats import row_digests, unique_row_digests

    rng = np.random.default_rng(0)
    real = pd.DataFrame({"grade": rng.choice(list("ABCDE"), 400), "club": rng.choice([f"c{i}" for i in range(20)], 400),
                         "city": rng.choice([f"t{i}" for i in range(20)], 400)})
    columns = list(real.columns)
    model = TableModel("t", real_row_digests=unique_row_digests(real, columns), copy_columns=columns)
    synthetic = pd.concat([real.sample(300, random_state=1), real.sample(3000, replace=True, random_state=2).assign(
        club=lambda f: rng.permutation(f["club"].to_numpy()))], ignore_index=True)
    copies = int(np.isin(row_digests(synthetic, columns), model.real_row_digests).sum())
    assert copies > 250
    before = synthetic.copy()
    fixed, left = _break_copies(synthetic, model, np.random.default_rng(0))
    assert (fixed, left) == (copies, 0)
    assert not np.isin(row_digests(synthetic, columns), model.real_row_digests).any()
    for col in columns:  # values only changed places
        assert synthetic[col].value_counts().sort_index().equals(before[col].value_counts().sort_index()), col
    # a column copied from the parent row is never the one swapped
    model.mechanisms = [ParentCopies({"city": "city"})]
    again = before.copy()
    fixed, left = _break_copies(again, model, np.random.default_rng(0))
    assert (fixed, left) == (copies, 0) and (again["city"] == before["city"]).all()


def test_copies_move_a_date_bounded_only_from_below_upward():
    from synth_pipeline.modeling.table_model import TableModel
    from synth_pipeline.repair import _break_copies
    from synth_pipeline.schema.constraints import Constraint
    from synth_pipeline.stats import row_digests, unique_row_digests

    rng = np.random.default_rng(0)
    real = pd.DataFrame({"item": rng.choice(["salad", "pasta"], 300),
                         "day": pd.Timestamp("2024-01-01") + pd.to_timedelta(rng.integers(0, 400, 300), unit="D")})
    columns = list(real.columns)
    after_enrollment = Constraint("t", "parent_date_order", ("day", "enrollment_date"),
                                  "t.day >= students.enrollment_date (via student_id)", parent="students",
                                  foreign_key="student_id")
    model = TableModel("t", real_row_digests=unique_row_digests(real, columns), copy_columns=columns,
                       constraints=[after_enrollment])
    synthetic = real.sample(200, random_state=1).reset_index(drop=True)
    copies = int(np.isin(row_digests(synthetic, columns), model.real_row_digests).sum())
    assert copies > 100
    before = synthetic.copy()
    fixed, left = _break_copies(synthetic, model, np.random.default_rng(0))
    assert (fixed, left) == (copies, 0)
    moved = synthetic["day"] - before["day"]
    assert (moved >= pd.Timedelta(0)).all() and moved.max() <= pd.Timedelta(days=10)  # only later, by days
    assert (synthetic["item"] == before["item"]).all()


def test_uuid_keys_are_the_text_the_uuid_module_writes():
    import uuid

    from synth_pipeline.schema.keys import _uuid_text

    raw = np.random.default_rng(5).integers(0, 256, size=(500, 16), dtype=np.uint8)
    for version in (1, 4, None):
        expected = [str(uuid.UUID(bytes=bytes(r), version=version)) for r in raw]
        assert _uuid_text(raw, version).tolist() == expected


def test_identity_values_beyond_the_faker_pool_come_from_it(monkeypatch):
    from synth_pipeline.modeling import pii

    monkeypatch.setattr(pii, "FAKER_POOL", 300)
    real = pd.Series([f"{i} Real Street" for i in range(50)])
    spec = IdentitySpec.fit("address", "street_address", real, pd.DataFrame({"address": real}), [])
    values = spec.generate(5000, seed=1)
    assert len(values) == 5000 and values.notna().all()
    assert 150 < values.nunique() <= 300  # the pool, not 5000 calls
    assert not values.isin(real).any()
    assert values.equals(spec.generate(5000, seed=1))
    # pools drawn once (at fit): sampling only draws among them, each value once up to the pool's size
    spec.draw_pools(seed=7)
    pool = set(spec.pools["values"])
    assert 250 < len(pool) <= 300 and not pool & set(real)
    few, many = spec.generate(200, seed=2), spec.generate(5000, seed=2)
    assert few.is_unique == (len(spec.pools["values"]) == len(pool)) and set(few) <= pool
    assert set(many) <= pool and many.nunique() > 0.9 * len(pool)
    assert many.equals(spec.generate(5000, seed=2)) and not many.equals(spec.generate(5000, seed=3))


def test_a_key_prefix_and_a_description_follow_the_category_that_sets_them():
    rng = np.random.default_rng(0)
    departments = {"Mathematics": "MATH", "Science": "SCI", "English": "ENG", "Arts": "ART"}
    subjects = {"Algebra": "Mathematics", "Statistics": "Mathematics", "Ecology": "Science", "Drama": "English",
                "Theatre": "Arts", "Astronomy": "Science"}
    names = rng.choice([f"{s} {r}" for s in subjects for r in ("I", "II", "III")], 60)
    dept = [subjects[n.split()[0]] for n in names]
    real = pd.DataFrame({
        "code": [f"{departments[d]}-{rng.integers(100, 500)}" for d in dept], "name": names, "department": dept,
        "description": [f"A course in {n.split()[0].lower()} offered by the {d} department." for n, d in zip(names, dept)],
        "active": rng.random(60) < 0.7})
    fmt = KeyFormat.infer(real["code"])
    fmt.link_categories(real, "code", ["name", "department", "active"])
    assert fmt.follows[0][0] == "department"
    rows = pd.DataFrame({"department": ["Arts", "Science", "Science", "Mathematics"]})
    keys = pd.Series(fmt.generate(4, np.random.default_rng(1), rows=rows))
    assert keys.str.split("-").str[0].tolist() == ["ART", "SCI", "SCI", "MATH"] and keys.is_unique
    assert fmt.matches(keys).all()
    spec = IdentitySpec.fit("description", "text", real["description"], real, categories=["name", "department", "active"])
    assert spec.lookup is not None and spec.lookup[0] == "name"
    generated = pd.DataFrame({"name": ["Theatre II", "Algebra III", "Unknown IX"]})
    text = spec.generate(3, seed=0, rows=generated)
    assert text[0] == "A course in theatre offered by the Arts department."
    assert text[1] == "A course in algebra offered by the Mathematics department."
    assert "Unknown" not in text[2] and len(text[2]) > 0  # no lookup: Faker text
    # free text that differs between rows of one category is not looked up
    notes = pd.Series([f"Note {i}: {rng.integers(1e6)}" for i in range(60)])
    assert IdentitySpec.fit("notes", "text", notes, real.assign(notes=notes), categories=["name", "department"]).lookup is None


def test_stored_text_without_missing_values_is_read_into_arrow_with_the_same_text_and_digests():
    import pyarrow as pa

    from synth_pipeline.sources.loaders import arrow_frame
    from synth_pipeline.stats import labels, row_digests

    frame = pd.DataFrame({"name": ["ann", "bo", "ann"], "note": ["x", None, "y"], "n": [1, 2, 3]})
    table = pa.Table.from_pandas(frame, preserve_index=False)
    table = table.set_column(0, "name", table.column(0).cast(pa.string_view()))  # as tpchgen writes text
    read = arrow_frame(table)
    assert isinstance(read["name"].dtype, pd.StringDtype) and read["note"].dtype == object
    assert read["note"].tolist() == ["x", None, "y"]  # a missing value stays None (its text: "None")
    assert np.array_equal(row_digests(read, list(frame.columns)), row_digests(frame, list(frame.columns)))
    for column in frame.columns:
        assert labels(read[column]).tolist() == labels(frame[column]).tolist()
