"""Agreement across foreign-key paths and dates across parents, on a constructed database:
each mechanism reproduces what the real rows do, and the same run with it switched off
does not."""

import duckdb
import numpy as np
import pandas as pd
import pytest

from synth_pipeline.config import PipelineConfig
from synth_pipeline.runner import run_pipeline

PAYMENT_PATH = "payment: customer_id = rental.customer_id via rental_id"
SIGNER_DATES = "signer: signer.signed_on >= account.opened (via account_id)"
ORDER_TOTAL = "orders: total = sum of line.price * quantity (via order_id)"

METADATA = {"tables": {
    "region": {"primary_key": "region_id", "columns": {"region_id": {"sdtype": "id"}, "name": {"sdtype": "categorical"}}},
    "client": {"primary_key": "client_id", "columns": {"client_id": {"sdtype": "id"}, "region_id": {"sdtype": "id"},
                                                       "age": {"sdtype": "numerical"}}},
    "account": {"primary_key": "account_id", "columns": {"account_id": {"sdtype": "id"}, "region_id": {"sdtype": "id"},
                                                         "opened": {"sdtype": "datetime", "datetime_format": "%Y-%m-%d"}}},
    "holder": {"primary_key": "holder_id", "columns": {"holder_id": {"sdtype": "id"}, "client_id": {"sdtype": "id"},
                                                       "account_id": {"sdtype": "id"}}},
    "signer": {"primary_key": "signer_id", "columns": {"signer_id": {"sdtype": "id"}, "client_id": {"sdtype": "id"},
                                                       "account_id": {"sdtype": "id"},
                                                       "signed_on": {"sdtype": "datetime", "datetime_format": "%Y-%m-%d"}}},
    "customer": {"primary_key": "customer_id", "columns": {"customer_id": {"sdtype": "id"}, "tier": {"sdtype": "categorical"}}},
    "rental": {"primary_key": "rental_id", "columns": {"rental_id": {"sdtype": "id"}, "customer_id": {"sdtype": "id"},
                                                       "rented": {"sdtype": "datetime", "datetime_format": "%Y-%m-%d"}}},
    "payment": {"primary_key": "payment_id", "columns": {"payment_id": {"sdtype": "id"}, "customer_id": {"sdtype": "id"},
                                                         "rental_id": {"sdtype": "id"}, "amount": {"sdtype": "numerical"}}},
    "orders": {"primary_key": "order_id", "columns": {"order_id": {"sdtype": "id"}, "total": {"sdtype": "numerical"}}},
    "line": {"primary_key": "line_id", "columns": {"line_id": {"sdtype": "id"}, "order_id": {"sdtype": "id"},
                                                   "price": {"sdtype": "numerical"}, "quantity": {"sdtype": "numerical"}}},
}, "relationships": [
    {"parent_table_name": p, "parent_primary_key": k, "child_table_name": c, "child_foreign_key": k}
    for p, k, c in [("region", "region_id", "client"), ("region", "region_id", "account"),
                    ("client", "client_id", "holder"), ("account", "account_id", "holder"),
                    ("client", "client_id", "signer"), ("account", "account_id", "signer"),
                    ("customer", "customer_id", "rental"), ("customer", "customer_id", "payment"),
                    ("rental", "rental_id", "payment"), ("orders", "order_id", "line")]]}

AGREEMENT = {  # SQL: the share of rows whose two paths reach the same row
    "holder": "SELECT avg((c.region_id = a.region_id)::INT) FROM holder h JOIN client c USING (client_id) "
              "JOIN account a USING (account_id)",
    "signer": "SELECT avg((c.region_id = a.region_id)::INT) FROM signer s JOIN client c USING (client_id) "
              "JOIN account a USING (account_id)",
    "payment": "SELECT avg((p.customer_id = r.customer_id)::INT) FROM payment p JOIN rental r USING (rental_id)",
    "signer_dates": "SELECT avg((s.signed_on >= a.opened)::INT) FROM signer s JOIN account a USING (account_id)",
    "order_total": "SELECT avg((abs(o.total - l.total) < 0.005)::INT) FROM orders o JOIN (SELECT order_id, "
                   "sum(price * quantity) AS total FROM line GROUP BY 1) l USING (order_id)",
}


def _database(path, seed: int = 0):
    rng = np.random.default_rng(seed)
    regions, clients = 10, 400
    day = pd.Timestamp("2020-01-01")
    client = pd.DataFrame({"client_id": np.arange(1, clients + 1), "region_id": rng.integers(1, regions + 1, clients),
                           "age": rng.integers(18, 90, clients)})
    account = pd.DataFrame({"account_id": np.arange(1, clients + 1), "region_id": rng.permutation(client.region_id),
                            "opened": day + pd.to_timedelta(rng.integers(0, 700, clients), unit="D")})
    by_region = account.groupby("region_id").account_id.apply(list).to_dict()

    def accounts_for(region_ids, share):
        agree = rng.random(len(region_ids)) < share
        return np.where(agree, [rng.choice(by_region[r]) for r in region_ids], rng.choice(account.account_id, len(region_ids)))

    holder = pd.DataFrame({"holder_id": np.arange(1, clients + 1), "client_id": client.client_id,
                           "account_id": accounts_for(client.region_id.to_numpy(), 1.0)})
    signer = pd.DataFrame({"signer_id": np.arange(1, clients + 1), "client_id": client.client_id,
                           "account_id": accounts_for(client.region_id.to_numpy(), 0.6)})
    opened = signer.account_id.map(account.set_index("account_id").opened)
    signer["signed_on"] = opened + pd.to_timedelta(rng.gamma(2.0, 30.0, clients).astype(int), unit="D")
    customer = pd.DataFrame({"customer_id": np.arange(1, 61), "tier": rng.choice(["basic", "gold"], 60)})
    rental = pd.DataFrame({"rental_id": np.arange(1, 601), "customer_id": rng.integers(1, 61, 600),
                           "rented": day + pd.to_timedelta(rng.integers(0, 700, 600), unit="D")})
    payment = pd.DataFrame({"payment_id": np.arange(1, 601), "rental_id": rental.rental_id,
                            "customer_id": rental.customer_id, "amount": rng.choice([0.99, 2.99, 4.99], 600)})
    line = pd.DataFrame({"line_id": np.arange(1, 1201), "order_id": rng.integers(1, 301, 1200),
                         "price": rng.choice([0.99, 1.99, 4.5, 12.0], 1200), "quantity": rng.integers(1, 6, 1200)})
    sums = (line.price * line.quantity).groupby(line.order_id).sum().round(2)
    orders = pd.DataFrame({"order_id": np.arange(1, 301)})
    orders["total"] = orders.order_id.map(sums).fillna(0.0)
    tables = {"region": pd.DataFrame({"region_id": np.arange(1, regions + 1),
                                      "name": [f"R{i}" for i in range(regions)]}),
              "client": client, "account": account, "holder": holder, "signer": signer, "customer": customer,
              "rental": rental, "payment": payment, "orders": orders, "line": line}
    with duckdb.connect(str(path)) as con:
        for name, frame in tables.items():
            con.register("frame", frame)
            con.execute(f'CREATE TABLE "{name}" AS SELECT * FROM frame')
            con.unregister("frame")
    return path


def _shares(path) -> dict[str, float]:
    with duckdb.connect(str(path), read_only=True) as con:
        return {k: float(con.execute(q).fetchone()[0]) for k, q in AGREEMENT.items()}


@pytest.fixture(scope="module")
def paths_db(tmp_path_factory):
    import json

    tmp = tmp_path_factory.mktemp("paths")
    (tmp / "metadata.json").write_text(json.dumps(METADATA))
    return _database(tmp / "paths.duckdb"), tmp / "metadata.json"


def _run(paths_db, out, **settings):
    source, metadata = paths_db
    config = PipelineConfig(source=source, metadata_path=metadata, out_dir=out, steps=5, seed=3, **settings)
    outcome = run_pipeline(config)
    assert outcome.success, outcome.failures
    assert outcome.report["run"]["totals"]["fk_violations"] == 0
    return outcome


def test_paths_and_dates_across_parents_agree_as_in_the_real_rows(paths_db, tmp_path):
    real = _shares(paths_db[0])
    assert real["holder"] == 1.0 and real["payment"] == 1.0 and real["signer_dates"] == 1.0 and real["order_total"] == 1.0
    outcome = _run(paths_db, tmp_path)
    synthetic = _shares(tmp_path / "synthetic.duckdb")
    assert synthetic["payment"] == 1.0  # a shortcut: the payment's customer is copied along its rental
    assert synthetic["holder"] >= 0.99  # a diamond all real rows keep: linked only among agreeing accounts
    assert abs(synthetic["signer"] - real["signer"]) <= 0.06  # a diamond 60% (plus chance) keep
    assert synthetic["signer_dates"] == 1.0  # a date after the second parent's
    assert synthetic["order_total"] == 1.0  # a total is the sum of its lines' price x quantity
    constraints = {c["description"]: c for c in outcome.report["synth_pipeline"]["constraints"]}
    assert constraints[PAYMENT_PATH.split(": ", 1)[1]]["satisfied_share"] == 1.0
    paths = {p["table"]: p for p in outcome.report["synth_pipeline"]["path_agreements"]}
    assert {"holder", "signer"} <= set(paths) and paths["holder"]["chance"] < 0.3


def test_with_the_mechanisms_switched_off_the_paths_are_lost(paths_db, tmp_path):
    _run(paths_db, tmp_path, constraints_off=(PAYMENT_PATH, SIGNER_DATES, ORDER_TOTAL), mechanisms_off=("bridges",))
    real, synthetic = _shares(paths_db[0]), _shares(tmp_path / "synthetic.duckdb")
    assert synthetic["payment"] < 0.5 and synthetic["holder"] < 0.5
    assert synthetic["signer"] < real["signer"] - 0.2
    assert synthetic["signer_dates"] < 1.0
    assert synthetic["order_total"] < 0.5
