"""The model as one family of mechanisms: the registry's contract, switches, stored model formats, and
the ablation's decision rule."""

import json
import shutil

import pandas as pd
import pytest

from synth_pipeline.evaluation.ablation import MOVES, effects, verdicts
from synth_pipeline.modeling.mechanism import PHASES
from synth_pipeline.modeling.mechanisms import NAMES, REGISTRY, fit_order, switches
from synth_pipeline.modeling.table_model import (
    MODEL_FORMAT,
    ModelFormatError,
    TableModel,
)
from synth_pipeline.runner import run_pipeline


def test_the_registry_is_ordered_by_phase_and_fitted_after_what_each_mechanism_reads():
    assert len(NAMES) == len(set(NAMES))
    order = fit_order()
    assert set(order) == set(REGISTRY)
    for mechanism in REGISTRY:
        assert mechanism.phase in PHASES and callable(mechanism.fit) and set(switches(mechanism)) <= set(NAMES)
        for need in mechanism.needs:  # what it reads is fitted first
            assert order.index(next(m for m in REGISTRY if m.name == need)) < order.index(mechanism), (mechanism, need)
    phases = [PHASES.index(m.phase) for m in REGISTRY]
    assert phases == sorted(phases)


def test_a_stored_model_lists_its_mechanisms_in_registry_order(tiny_run):
    config, _ = tiny_run
    names = [m.name for m in REGISTRY]
    for path in sorted((config.work_dir / "models").glob("*.pkl")):
        model = TableModel.load(path)
        held = [m.name for m in model.mechanisms]
        assert held == sorted(held, key=names.index)
        summary = json.loads(path.with_suffix(".json").read_text())
        assert summary["mechanisms"] == held and set(summary["switches"]) <= set(NAMES)
        assert set(summary["rules_kept_by"]) == {c.description for c in model.constraints}
    marks = TableModel.load(config.work_dir / "models" / "marks.pkl")  # generated, and linked to its assessor
    assert marks.get("generator") is not None and "assessed_by_teacher_id" in marks.get("links").links


def test_a_mechanism_switched_off_at_sampling_no_longer_keeps_its_property(tiny_run, school_metadata):
    """A fee's payment date and payment mode are null together (``null_patterns``): kept with
    it, lost without it, from the same stored model, parents and seed."""
    from synth_pipeline.modeling.context import sampling_inputs
    from synth_pipeline.resources import Warehouse

    config, _ = tiny_run
    warehouse = Warehouse(root=str(config.work_dir))
    model = warehouse.load_model("fees")
    assert model.get("null_patterns") is not None
    pattern = next(c for c in model.constraints if c.kind == "null_pattern")
    assert model.kept_by()[pattern.description] == "null_patterns"  # kept at sampling, not by repair
    a, b = pattern.columns
    parents = {p: warehouse.read("repaired", p) for p in sampling_inputs(school_metadata, "fees")}
    together = {}
    for off in ((), ("null_patterns",)):
        rows = model.sample(school_metadata, parents, 1.0, seed=3, off=off)
        together[off] = (rows[a].isna() == rows[b].isna()).mean()
    assert together[()] == 1.0
    assert together[("null_patterns",)] < 1.0


def test_a_model_stored_by_another_version_is_refitted_not_loaded(tiny_run, tmp_path):
    config, _ = tiny_run
    out = tmp_path / "out"
    shutil.copytree(config.out_dir, out)
    stale = config.replace(out_dir=out)
    path = stale.work_dir / "models" / "courses.pkl"
    model = TableModel.load(path)
    model.format = MODEL_FORMAT - 1
    model.save(path)
    with pytest.raises(ModelFormatError, match="model format"):
        TableModel.load(path)
    outcome = run_pipeline(stale, only="courses")
    assert outcome.success, outcome.failures
    assert TableModel.load(path).format == MODEL_FORMAT
    assert outcome.report["run"]["totals"]["fk_violations"] == 0


def test_the_ablation_keeps_what_moves_a_figure_beyond_noise_or_keeps_the_output_valid():
    baseline = {"column_shapes": 0.9, "column_pair_trends": 0.9, "path_agreement_max_gap": 0.02}
    noise = effects(baseline, {**baseline, "path_agreement_max_gap": 0.05})  # another seed moves a maximum
    small = effects(baseline, {**baseline, "column_shapes": 0.9 - MOVES / 2})
    large = effects(baseline, {**baseline, "column_pair_trends": 0.9 - 2 * MOVES})
    noisy = effects(baseline, {**baseline, "path_agreement_max_gap": 0.07})  # within twice the seed's move
    lost = effects(baseline, {**baseline, "path_agreement_max_gap": 0.9})
    assert large["column_pair_trends"] == pytest.approx(2 * MOVES) and lost["path_agreement_max_gap"] > 0  # it helped
    results = [{"dataset": "a", "noise": noise, "mechanisms": {
                    "small": {"effects": small}, "large": {"effects": large}, "noisy": {"effects": noisy},
                    "lost": {"effects": lost}, "valid": {"blocked": ["check failed"]}}},
               {"dataset": "b", "noise": {}, "mechanisms": {"small": {"effects": small}}}]
    assert verdicts(results) == {"small": "no effect", "large": "keep", "noisy": "no effect", "lost": "keep",
                                 "valid": "keep"}


def test_a_category_whose_rows_share_one_second_parent_is_a_rule_and_checked():
    """Every row of one route has the route's one teacher in charge: found on the real rows
    (not where one row breaks it), and measured on any frame as the share of rows whose
    route has a single teacher."""
    import numpy as np
    import pandas as pd

    from synth_pipeline.schema.constraints import satisfied, shared_parents
    from synth_pipeline.schema.metadata import Metadata

    md = Metadata.from_dict({"tables": {
        "student": {"primary_key": "sid", "columns": {"sid": {"sdtype": "id"}}},
        "teacher": {"primary_key": "tid", "columns": {"tid": {"sdtype": "id"}}},
        "ride": {"primary_key": "rid", "columns": {"rid": {"sdtype": "id"}, "sid": {"sdtype": "id"},
                                                   "tid": {"sdtype": "id"}, "route": {"sdtype": "categorical"},
                                                   "seat": {"sdtype": "categorical"}}}},
        "relationships": [{"parent_table_name": "student", "parent_primary_key": "sid", "child_table_name": "ride",
                           "child_foreign_key": "sid"},
                          {"parent_table_name": "teacher", "parent_primary_key": "tid", "child_table_name": "ride",
                           "child_foreign_key": "tid"}]})
    rng = np.random.default_rng(0)
    routes = rng.choice([f"R{i}" for i in range(6)], 300)
    ride = pd.DataFrame({"rid": np.arange(300), "sid": rng.integers(0, 100, 300), "route": routes,
                         "tid": pd.Series(routes).map({f"R{i}": i for i in range(6)}).to_numpy(),
                         "seat": rng.choice(list("ABCD"), 300)})
    real = {"ride": ride, "student": pd.DataFrame({"sid": np.arange(100)}), "teacher": pd.DataFrame({"tid": np.arange(6)})}
    found = shared_parents("ride", real, md)
    assert [c.columns for c in found] == [("route", "tid")]
    broken = ride.assign(tid=ride["tid"].where(ride.index != 5, (ride.loc[5, "tid"] + 1) % 6))
    assert shared_parents("ride", {**real, "ride": broken}, md) == []
    share = satisfied(found[0], {**real, "ride": broken}, md, None)
    route = ride.loc[5, "route"]
    assert share.mean() == 1 - (ride["route"] == route).mean()  # the broken route's rows fail


def test_a_mechanism_is_logged_with_the_values_it_changed_nulls_included():
    from synth_pipeline.stats import changed_values

    # nulls and values differ, two nulls do not; counted alike in every dtype
    for before, after, expected in [
        ([1.5, None, None, 2.0], [1.5, 3.0, None, 2.5], 2),
        (["a", None, "b", None], ["a", "a", None, None], 2),
    ]:
        for dtype in ("object", "string[pyarrow]", "float64"):
            if dtype == "float64" and isinstance(before[0], str):
                continue
            assert changed_values(pd.Series(before, dtype=dtype), pd.Series(after, dtype=dtype)) == expected, dtype
    # a column whose type changed counts the values whose labels changed
    assert changed_values(pd.Series([1, 2, 3]), pd.Series([1.0, 2.0, 3.0])) == 3
    assert changed_values(pd.Series([1, 2, 3], dtype="Int64"), pd.Series([1, None, 4], dtype="Int64")) == 2
    # an object column holding pandas' NA compares as labels (NA has no truth value)
    assert changed_values(pd.Series([1, pd.NA, 3], dtype=object), pd.Series([1, pd.NA, 4], dtype=object)) == 1
