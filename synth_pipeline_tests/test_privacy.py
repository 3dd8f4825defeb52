"""The privacy gate: rare values get stand-ins, a held-out lineage is never fitted, a model
that copies real rows is blocked before anything is published, dates are not replayed."""

import json

import duckdb
import numpy as np
import pandas as pd
import pytest

from synth_pipeline.checks import PRIVACY_CHECK
from synth_pipeline.config import ConfigError, PipelineConfig
from synth_pipeline.modeling.rare_values import RareValues
from synth_pipeline.modeling.transforms import TableCodec
from synth_pipeline.schema.constraints import Constraint, satisfied
from synth_pipeline.schema.metadata import Column, Metadata
from synth_pipeline_tests.conftest import count_orphans, materialize_all, tiny_config


def _lookup_metadata() -> Metadata:
    return Metadata.from_dict({"tables": {"items": {"primary_key": "id", "columns": {
        "id": {"sdtype": "id"}, "composer": {"sdtype": "categorical"}, "label": {"sdtype": "categorical"},
        "kind": {"sdtype": "categorical"}, "flag": {"sdtype": "categorical"}}}}, "relationships": []})


def test_rare_values_get_one_stand_in_each_never_a_real_value():
    metadata = _lookup_metadata()
    real = pd.DataFrame({
        "id": range(40),
        "composer": ["Angus Young"] * 30 + ["Miles Davis"] * 3 + ["Nina Simone"] * 2 + [f"Solo Artist {i}" for i in range(5)],
        "label": ["COMMON"] * 30 + ["RARE ONE"] * 3 + ["rare two"] * 7,
        "kind": ["a"] * 40,  # a constant says nothing of anyone: kept
        "flag": ["x"] * 20 + ["y"] * 20})
    rare = RareValues.fit(metadata, "items", real, min_count=5, allow=("items.flag",), seed=3)
    assert set(rare.digests) == {"composer", "label"}  # the constant has none, the allowed column is skipped
    synthetic = real.sample(frac=1.0, random_state=0).reset_index(drop=True)
    before = synthetic.copy()
    replaced = rare.replace(synthetic)
    assert replaced == {"composer": 10, "label": 3}
    real_values = set(real["composer"]) | set(real["label"])
    moved = before["composer"] != synthetic["composer"]
    assert not set(synthetic.loc[moved, "composer"]) & real_values
    # one stand-in per rare value: its rows stay one category
    pairs = pd.DataFrame({"was": before.loc[moved, "composer"], "now": synthetic.loc[moved, "composer"]})
    assert (pairs.groupby("was")["now"].nunique() == 1).all()
    assert pairs["now"].nunique() == pairs["was"].nunique()
    assert (synthetic["kind"] == "a").all() and synthetic["flag"].equals(before["flag"])
    # the stand-in keeps the value's case and word count
    label = synthetic.loc[before["label"] == "RARE ONE", "label"].iloc[0]
    assert label.isupper() and len(label.split()) == 2
    assert not rare.is_rare("composer", synthetic["composer"]).any()
    # the same model (salt) gives the same stand-ins on another run
    again = before.copy()
    rare.replace(again)
    assert again.equals(synthetic)


def test_a_rule_between_rare_labels_still_holds_between_their_stand_ins():
    metadata = Metadata.from_dict({"tables": {"courses": {"primary_key": "id", "columns": {
        "id": {"sdtype": "id"}, "name": {"sdtype": "categorical"}, "description": {"sdtype": "categorical"}}}},
        "relationships": []})
    real = pd.DataFrame({"id": range(12), "name": ["Algebra"] * 2 + ["Physics"] * 10,
                         "description": ["Equations"] * 2 + ["Forces and motion"] * 10})
    rare = RareValues.fit(metadata, "courses", real, min_count=5, allow=(), seed=1)
    synthetic = real.copy()
    rare.replace(synthetic)
    assert "Algebra" not in set(synthetic["name"]) and "Equations" not in set(synthetic["description"])
    rule = Constraint("courses", "functional_dependency", ("name", "description"), "name -> description")
    assert satisfied(rule, {"courses": synthetic}, metadata, reference={"courses": real}).all()
    broken = synthetic.copy()
    broken.loc[0, "description"] = "Something else"
    assert not satisfied(rule, {"courses": broken}, metadata, reference={"courses": real}).all()


def test_a_near_unique_date_column_keeps_its_shape_not_its_values():
    rng = np.random.default_rng(0)
    # 400 distinct dates over ten years, more of them early on (a skewed shape to keep)
    days = rng.choice(3650, 400, replace=False, p=np.linspace(2, 1, 3650) / np.linspace(2, 1, 3650).sum())
    dates = pd.Series(pd.Timestamp("2010-01-01") + pd.to_timedelta(np.sort(days), unit="D"))
    real = pd.DataFrame({"when": dates})
    codec = TableCodec.fit(real, [Column("when", "datetime")])
    generated = pd.DataFrame({"when": rng.normal(size=400)})  # any model output: mapped by rank
    decoded = codec.decode(generated)["when"]
    real_days = set(real["when"])
    # the shape: every decile within a month of the real one
    q = np.linspace(0.1, 0.9, 9)
    gap = (decoded.quantile(q) - real["when"].quantile(q)).abs().max()
    assert gap <= pd.Timedelta(days=31)
    # not the values: as often on a real date as unseen real dates fall on a fitted one by chance
    hit = decoded.isin(real_days).mean()
    fitted, unseen = real["when"].iloc[::2], real["when"].iloc[1::2]
    chance = unseen.isin(set(fitted)).mean() + 400 / 3650  # a date drawn anywhere in the range
    assert hit <= max(2 * chance, 0.3), (hit, chance)
    assert sorted(decoded) != sorted(real["when"])


def test_privacy_settings_are_checked():
    with pytest.raises(ConfigError, match="privacy_holdout"):
        PipelineConfig(privacy_holdout=1.0)
    with pytest.raises(ConfigError, match="privacy_allow"):
        PipelineConfig(privacy_allow=("no_column",))
    with pytest.raises(ConfigError, match="dcr_threshold"):
        PipelineConfig(dcr_threshold=2.0)


def test_a_model_forced_to_copy_real_rows_is_blocked_before_publishing(tmp_path, tiny_school_db, school_metadata,
                                                                       monkeypatch):
    from synth_pipeline import repair
    from synth_pipeline.modeling.table_model import TableModel

    sample = TableModel.sample
    copied = {}

    def copying(self, metadata, parents, scale, seed, *args, **kwargs):
        frame = sample(self, metadata, parents, scale, seed, *args, **kwargs)
        if self.table == "teachers":  # the real rows themselves, as an overfitted model could emit
            with duckdb.connect(str(tiny_school_db), read_only=True) as con:
                real = con.execute("SELECT * FROM teachers").df()
            frame = frame.copy()
            n = min(len(frame), len(real))
            for column in real.columns.intersection(frame.columns):
                frame.loc[: n - 1, column] = real[column].to_numpy()[:n]
            copied["rows"] = n
        return frame

    monkeypatch.setattr(TableModel, "sample", copying)
    # repair cannot help: no copy moved, no rare value given a stand-in
    monkeypatch.setattr(repair, "_break_copies", lambda frame, model, rng, tries=200: (0, 0))
    monkeypatch.setattr(RareValues, "replace", lambda self, frame: {})
    config = tiny_config(tmp_path, tiny_school_db, steps=5)
    result = materialize_all(school_metadata, config)
    assert copied["rows"] > 0 and not result.success
    checks = {(e.asset_key.path[-1], e.check_name): e for e in result.get_asset_check_evaluations()}
    blocked = checks[("teachers", PRIVACY_CHECK)]
    assert not blocked.passed
    assert blocked.metadata["copied_rows"].value > 0
    assert "equal a real row" in blocked.metadata["why_blocked"].value
    assert not (config.out_dir / "synthetic.duckdb").exists()  # nothing published


@pytest.mark.slow
def test_a_privacy_holdout_is_never_fitted_and_scores_the_run(tmp_path, tiny_school_db, school_metadata):
    config = tiny_config(tmp_path, tiny_school_db, privacy_holdout=0.2)
    result = materialize_all(school_metadata, config)
    assert result.success
    work = config.work_dir
    heads = {}
    for name in school_metadata.tables:
        info = json.loads((work / "holdout" / f"{name}.json").read_text())
        fitted = pd.read_parquet(work / "real" / f"{name}.parquet")
        held = pd.read_parquet(work / "holdout" / f"{name}.parquet")
        assert len(fitted) + len(held) == info["rows"]
        heads[name] = info["head"]
        for rel in school_metadata.foreign_keys(name):  # fitted rows reference fitted parents only
            if rel.is_self_reference:
                continue
            parent_fitted = pd.read_parquet(work / "real" / f"{rel.parent_table_name}.parquet")
            values = fitted[rel.child_foreign_key].dropna()
            assert values.isin(parent_fitted[rel.parent_primary_key]).all(), rel.label
    assert sum(heads.values()) >= 1
    infos = [json.loads((work / "holdout" / f"{name}.json").read_text()) for name in school_metadata.tables]
    share = sum(i["held_out"] for i in infos) / sum(i["rows"] for i in infos)
    assert 0.1 <= share <= 0.45  # about the share, whole families (not a share of a share per parent)
    with duckdb.connect(str(config.out_dir / "synthetic.duckdb"), read_only=True) as con:
        for rel in school_metadata.relationships:
            assert count_orphans(con, rel) == 0, rel.label
        for name in school_metadata.tables:  # a root is generated at the size of its fitted rows
            if not school_metadata.parents(name):
                info = json.loads((work / "holdout" / f"{name}.json").read_text())
                rows = info["rows"] - info["held_out"]
                assert con.execute(f'SELECT count(*) FROM "{name}"').fetchone()[0] == rows
    report = json.loads((config.out_dir / "report.json").read_text())["synth_pipeline"]
    scored = {t: v["privacy"] for t, v in report["tables"].items() if "dcr_overfitting_protection" in v["privacy"]}
    assert "students" in scored and "marks" in scored
    for table, privacy in scored.items():
        assert 0 <= privacy["dcr_overfitting_protection"] <= 1
        assert 0 <= privacy["membership_attack_auc"] <= 1
        assert privacy["copied_rows"] == 0, table
    assert report["summary"]["dcr_overfitting_protection_min"] >= config.dcr_threshold


def test_rare_values_counted_by_digest_are_the_rare_values_of_the_value_counts():
    from synth_pipeline.privacy_labels import rare_digests, rare_values, value_digests
    from synth_pipeline.sources.loaders import TEXT

    rng = np.random.default_rng(0)
    for trial in range(12):
        n, k = int(rng.integers(1, 3000)), int(rng.integers(1, 300))
        values = pd.Series([f"v{x}" for x in rng.zipf(1.5, n) % k], dtype=object)
        if trial % 3 == 0:
            values[rng.random(n) < 0.1] = None
        for column in (values, values.dropna().astype(TEXT)):  # object text, and text held in Arrow
            for min_count in (1, 2, 5):
                rare = rare_values(column, min_count)
                wanted = np.unique(value_digests(pd.Series(rare))) if len(rare) else np.array([], dtype="uint64")
                assert np.array_equal(rare_digests(column, min_count), wanted), (trial, min_count)
    assert len(rare_digests(pd.Series(["a", "a", "b"]), 2)) == 1
    assert not len(rare_digests(pd.Series([1, 1, 2]), 2))  # numbers kept as categories are published as they are


def test_nearest_record_distances_are_the_gower_distances_a_tree_search_finds():
    from sklearn.neighbors import NearestNeighbors

    from synth_pipeline.evaluation.privacy import _gower_matrix, _gower_parts, _nearest

    rng = np.random.default_rng(3)

    def rows(n, labels):
        return pd.DataFrame({"amount": rng.normal(100, 30, n).round(1), "day": pd.Timestamp("2024-01-01")
                             + pd.to_timedelta(rng.integers(0, 90, n), unit="D"),
                             "clerk": rng.choice(labels, n), "flag": rng.choice(["Y", "N", None], n)})

    kinds = {"amount": "numerical", "day": "datetime", "clerk": "categorical", "flag": "categorical"}
    real = rows(3000, [f"clerk {i}" for i in range(300)])
    real.loc[real.sample(100, random_state=0).index, "amount"] = np.nan
    reference = real.iloc[:2000]
    queries = pd.concat([real.iloc[2000:2300], rows(300, [f"clerk {i}" for i in range(250, 400)]),  # unseen labels
                         reference.iloc[:50]], ignore_index=True)  # and exact matches
    index = NearestNeighbors(n_neighbors=1, metric="manhattan").fit(_gower_matrix(reference, kinds, real))
    expected = index.kneighbors(_gower_matrix(queries, kinds, real))[0][:, 0]
    found = _nearest(_gower_parts(reference, kinds, real), _gower_parts(queries, kinds, real), len(kinds))
    assert np.allclose(found, expected, rtol=0, atol=1e-12)
    assert (found[-50:] == 0).all() and (found[:-50] > 0).mean() > 0.9
    assert 0.05 < np.median(found) < 0.6
