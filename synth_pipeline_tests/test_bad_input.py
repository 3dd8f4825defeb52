"""Bad real input: one clear error naming the table and column, or correct handling; never a
traceback, never a changed published output."""

import json

import duckdb
import numpy as np
import pandas as pd
import pytest

from synth_pipeline.errors import SourceError
from synth_pipeline.schema.detect import detect_from_frames
from synth_pipeline.schema.metadata import Metadata
from synth_pipeline.sources.validate import MAX_CATEGORIES, validate_real_table
from synth_pipeline_tests.conftest import count_orphans, run_cli

SHOP_METADATA = {
    "tables": {
        "customers": {"primary_key": "customer_id", "columns": {
            "customer_id": {"sdtype": "id"}, "referred_by": {"sdtype": "id"},
            "tier": {"sdtype": "categorical"}, "spend": {"sdtype": "numerical"}}},
        "coupons": {"primary_key": "coupon_id", "columns": {"coupon_id": {"sdtype": "id"}}},
        "orders": {"primary_key": "order_id", "columns": {
            "order_id": {"sdtype": "id"}, "customer_id": {"sdtype": "id"}, "coupon_id": {"sdtype": "id"},
            "amount": {"sdtype": "numerical"}, "channel": {"sdtype": "categorical"}}},
    },
    "relationships": [
        {"parent_table_name": "customers", "parent_primary_key": "customer_id",
         "child_table_name": "customers", "child_foreign_key": "referred_by"},
        {"parent_table_name": "customers", "parent_primary_key": "customer_id",
         "child_table_name": "orders", "child_foreign_key": "customer_id"},
        {"parent_table_name": "coupons", "parent_primary_key": "coupon_id",
         "child_table_name": "orders", "child_foreign_key": "coupon_id"},
    ],
}


def shop_tables(seed: int = 0) -> dict[str, pd.DataFrame]:
    """A small shop: a self-referencing customer table with two orphan referrers, a key-only
    coupon table, orders with a nullable coupon and three orders of unknown customers."""
    rng = np.random.default_rng(seed)
    n = 80
    referred = pd.array([pd.NA] * n, dtype="Int64")
    referred[10:40] = rng.integers(1, 11, 30)
    referred[40], referred[41] = 500, 501  # no such customers
    customers = pd.DataFrame({"customer_id": np.arange(1, n + 1), "referred_by": referred,
                              "tier": rng.choice(["gold", "silver", "bronze"], n, p=[0.1, 0.3, 0.6]),
                              "spend": rng.gamma(2.0, 50.0, n).round(2)})
    coupons = pd.DataFrame({"coupon_id": np.arange(100, 110)})
    m = 300
    coupon = pd.array(np.where(rng.random(m) < 0.5, rng.integers(100, 110, m), -1), dtype="Int64")
    coupon[coupon == -1] = pd.NA
    owner = rng.integers(1, n + 1, m)
    owner[:3] = 9999  # orders of customers that are not in the customer table
    orders = pd.DataFrame({"order_id": np.arange(1, m + 1), "customer_id": owner, "coupon_id": coupon,
                           "amount": rng.gamma(3.0, 20.0, m).round(2),
                           "channel": rng.choice(["web", "store"], m)})
    return {"customers": customers, "coupons": coupons, "orders": orders}


@pytest.fixture
def shop() -> tuple[Metadata, dict[str, pd.DataFrame]]:
    return Metadata.from_dict(SHOP_METADATA), shop_tables()


def _validated(metadata, tables, name, on_orphans="drop"):
    parents = {}
    for t in metadata.topological_order():
        frame, notes = validate_real_table(metadata, t, tables[t], parents, on_orphans if t == name else "drop")
        parents[t] = frame
        if t == name:
            return frame, notes
    raise AssertionError(name)


def test_orphans_are_dropped_and_counted_null_fks_kept_self_references_nulled(shop):
    metadata, tables = shop
    orders, notes = _validated(metadata, tables, "orders")
    assert notes.orphans_dropped == {"customer_id": 3}
    assert len(orders) == len(tables["orders"]) - 3 and not orders["customer_id"].eq(9999).any()
    assert orders["coupon_id"].isna().sum() == tables["orders"]["coupon_id"].isna().sum() > 100
    customers, notes = _validated(metadata, tables, "customers")
    assert notes.orphans_nulled == {"referred_by": 2} and len(customers) == 80
    assert customers["referred_by"].dropna().isin(customers["customer_id"]).all()


def test_orphans_fail_when_asked(shop):
    metadata, tables = shop
    with pytest.raises(SourceError, match=r"table 'orders': column 'customer_id' has 3 value\(s\) with no row "
                                          r"in customers.customer_id \(e.g. 9999\)"):
        _validated(metadata, tables, "orders", on_orphans="fail")


@pytest.mark.parametrize("corrupt, message", [
    (lambda t: t["customers"].assign(customer_id=t["customers"]["customer_id"].where(lambda s: s != 5)),
     r"table 'customers': primary key column 'customer_id' is null in 1 row\(s\)"),
    (lambda t: t["customers"].assign(customer_id=t["customers"]["customer_id"].replace(6, 5)),
     r"table 'customers': primary key column 'customer_id' repeats in 2 rows \(e.g. 5\)"),
    (lambda t: t["customers"].iloc[0:0],
     r"table 'customers': the source table has no rows"),
    (lambda t: t["customers"].assign(tier=[b"\x00\x01"] * len(t["customers"])),
     r"table 'customers': column 'tier' holds binary values"),
    (lambda t: t["customers"].assign(tier=[{"a": 1}] * len(t["customers"])),
     r"table 'customers': column 'tier' holds nested \(struct/list\) values"),
])
def test_unusable_real_tables_get_one_clear_error(shop, corrupt, message):
    metadata, tables = shop
    with pytest.raises(SourceError, match=message):
        validate_real_table(metadata, "customers", corrupt(tables), {})


def test_duplicate_composite_key_names_the_key():
    metadata = Metadata.from_dict({"tables": {"links": {"primary_key": ["a", "b"], "columns": {
        "a": {"sdtype": "id"}, "b": {"sdtype": "id"}}}}})
    frame = pd.DataFrame({"a": [1, 1, 2], "b": [7, 7, 7]})
    with pytest.raises(SourceError, match=r"table 'links': primary key key '\(a, b\)' repeats in 2 rows \(e.g. \(1, 7\)\)"):
        validate_real_table(metadata, "links", frame, {})


def test_a_categorical_column_with_100k_values_is_an_id_not_categories():
    n = 100_001
    frame = pd.DataFrame({"event_id": np.arange(n), "code": [f"C{i % 60_000:06d}" for i in range(n)],
                          "kind": np.where(np.arange(n) % 3 == 0, "a", "b")})
    detected = detect_from_frames({"events": frame})
    assert detected.table("events").columns["code"].sdtype == "id"  # 60k distinct, 0.6 of rows
    declared = Metadata.from_dict({"tables": {"events": {"primary_key": "event_id", "columns": {
        "event_id": {"sdtype": "id"}, "code": {"sdtype": "categorical"}, "kind": {"sdtype": "categorical"}}}}})
    with pytest.raises(SourceError, match=rf"table 'events': column 'code' is declared categorical but has 60,000 "
                                          rf"distinct values \(at most {MAX_CATEGORIES:,}"):
        validate_real_table(declared, "events", frame, {})


def test_detection_marks_binary_and_nested_columns_left_out():
    frame = pd.DataFrame({"photo_id": [1, 2, 3], "blob": [b"\x89PNG", b"\x89PNG", None], "tags": [[1], [2, 3], []],
                          "label": ["a", "b", "a"]})
    detected = detect_from_frames({"photos": frame})
    columns = detected.table("photos").columns
    assert set(columns) == {"photo_id", "blob", "tags", "label"}  # the output keeps every column ...
    assert columns["blob"].sdtype == columns["tags"].sdtype == "binary"  # ... NULL, never modelled


def test_fk_cycle_is_broken_at_one_deferred_edge():
    metadata = {"tables": {t: {"primary_key": "id", "columns": {"id": {"sdtype": "id"}, "other": {"sdtype": "id"}}}
                           for t in ("a", "b")},
                "relationships": [{"parent_table_name": "a", "parent_primary_key": "id", "child_table_name": "b",
                                   "child_foreign_key": "other"},
                                  {"parent_table_name": "b", "parent_primary_key": "id", "child_table_name": "a",
                                   "child_foreign_key": "other"}]}
    resolved = Metadata.from_dict(metadata).break_cycles()
    assert len(resolved.deferred) == 1 and not resolved.has_cycles
    assert sorted(resolved.topological_order()) == ["a", "b"]


# ---------------------------------------------------------------- through the command line
def _write_shop(folder, tables=None, metadata=None):
    folder.mkdir(parents=True, exist_ok=True)
    for name, frame in (tables or shop_tables()).items():
        frame.to_parquet(folder / f"{name}.parquet", index=False)
    path = folder.parent / "metadata.json"
    path.write_text(json.dumps(metadata or SHOP_METADATA))
    return path



def test_cli_synthesizes_a_shop_with_orphans_null_fks_a_key_only_table_and_a_self_reference(tmp_path):
    metadata_path = _write_shop(tmp_path / "src")
    out = tmp_path / "out"
    done = run_cli("run", "--source", str(tmp_path / "src"), "--metadata", str(metadata_path), "--out", str(out),
                "--steps", "30")
    assert done.returncode == 0, done.stderr
    assert "note: orders.customer_id: 3 real value(s) matched no parent row (rows dropped)" in done.stdout
    assert "note: customers.referred_by: 2 real value(s) matched no parent row (set null)" in done.stdout
    metadata = Metadata.from_dict(SHOP_METADATA)
    with duckdb.connect(str(out / "synthetic.duckdb"), read_only=True) as con:
        assert all(count_orphans(con, rel) == 0 for rel in metadata.relationships)
        orders = con.execute("SELECT * FROM orders").df()
        coupons = con.execute("SELECT * FROM coupons").df()
    assert len(coupons) == 10 and coupons["coupon_id"].is_unique
    assert 0.35 < orders["coupon_id"].isna().mean() < 0.65  # the real orders have half their coupons null
    report = json.loads((out / "report.json").read_text())
    assert report["run"]["tables"]["orders"]["real_rows"] == 297


@pytest.mark.parametrize("case, message", [
    ("duplicate_pk", "table 'customers': primary key column 'customer_id' repeats in 2 rows"),
    ("orphans_fail", "table 'customers': column 'referred_by' has 2 value(s) with no row in customers.customer_id"),
    ("missing_column", "table 'orders': column(s) discount named in the metadata are missing from the source"),
    ("missing_table", "table(s) refunds named in the metadata are missing"),
    ("corrupt_file", "cannot be read as PARQUET"),
])
def test_cli_bad_input_fails_cleanly_and_keeps_the_published_output(tmp_path, case, message):
    tables, metadata, extra = shop_tables(), json.loads(json.dumps(SHOP_METADATA)), []
    if case == "duplicate_pk":
        tables["customers"]["customer_id"] = tables["customers"]["customer_id"].replace(6, 5)
    elif case == "orphans_fail":
        extra = ["--on-orphans", "fail"]
    elif case == "missing_column":
        metadata["tables"]["orders"]["columns"]["discount"] = {"sdtype": "numerical"}
    elif case == "missing_table":
        metadata["tables"]["refunds"] = {"primary_key": "refund_id", "columns": {"refund_id": {"sdtype": "id"}}}
    metadata_path = _write_shop(tmp_path / "src", tables, metadata)
    if case == "corrupt_file":
        (tmp_path / "src" / "orders.parquet").write_bytes(b"PAR1 this is not a parquet file")
    out = tmp_path / "out"
    out.mkdir()
    (out / "synthetic.duckdb").write_bytes(b"the previous good output")
    done = run_cli("run", "--source", str(tmp_path / "src"), "--metadata", str(metadata_path), "--out", str(out),
                "--steps", "5", *extra)
    assert done.returncode != 0
    assert message in done.stderr
    if case == "missing_table":  # found before any step runs: one "error:" line, status 2
        assert done.returncode == 2 and done.stderr.strip().splitlines() == [next(
            line for line in done.stderr.splitlines() if message in line)]
    assert "Traceback" not in done.stderr and "Traceback" not in done.stdout
    assert (out / "synthetic.duckdb").read_bytes() == b"the previous good output"
    assert not (out / "report.json").exists()


def test_a_question_mark_in_a_csv_is_a_missing_value(tmp_path):
    """Berka's district table writes '?' for one district's 1995 unemployment: the column is a
    number with one missing value, not a category of 77 strings."""
    from synth_pipeline.sources.loaders import load_tables

    (tmp_path / "district.csv").write_text("id,name,unemployment\n1,Praha,0.29\n2,Jesenik,?\n3,Beroun,1.51\n")
    frame = load_tables(tmp_path)["district"]
    assert pd.api.types.is_float_dtype(frame["unemployment"]) and frame["unemployment"].isna().tolist() == [False, True, False]
    assert frame["name"].tolist() == ["Praha", "Jesenik", "Beroun"]


def test_parquet_decimals_are_numbers_and_dates_out_of_range_are_kept(tmp_path):
    """DECIMAL values come as the floats their text reads as (Arrow's own cast would give
    24386.670000000002); dates and timestamps load as datetime64, except a column holding a
    value outside its range (a 9999-12-31 "open end"), which keeps its values as they are."""
    import datetime
    import decimal

    import pyarrow as pa
    import pyarrow.parquet as pq

    from synth_pipeline.sources.loaders import load_tables

    pq.write_table(pa.table({
        "price": pa.array([decimal.Decimal("24386.67"), None, decimal.Decimal("0.10")], pa.decimal128(15, 2)),
        "shipped": pa.array([datetime.date(1995, 3, 1), None, datetime.date(1998, 12, 31)], pa.date32()),
        "valid_to": pa.array([datetime.date(2001, 1, 1), datetime.date(9999, 12, 31), None], pa.date32()),
        "closed_at": pa.array([datetime.datetime(2001, 1, 1, 8), datetime.datetime(9999, 12, 31), None],
                              pa.timestamp("us")),
    }), tmp_path / "items.parquet")
    frame = load_tables(tmp_path)["items"]
    assert frame["price"].dtype == "float64" and frame["price"].tolist()[0] == 24386.67
    assert frame["price"].isna().tolist() == [False, True, False] and frame["price"].tolist()[2] == 0.1
    assert frame["shipped"].dtype == "datetime64[ns]"
    assert frame["shipped"].tolist()[0] == pd.Timestamp("1995-03-01") and pd.isna(frame["shipped"].tolist()[1])
    assert frame["valid_to"].tolist()[:2] == [datetime.date(2001, 1, 1), datetime.date(9999, 12, 31)]
    assert frame["closed_at"].tolist()[1] == datetime.datetime(9999, 12, 31)
