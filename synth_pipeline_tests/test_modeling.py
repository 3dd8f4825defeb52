"""The modelling pieces on constructed data where the right answer is known."""

import json
import logging
import re
from dataclasses import replace

import numpy as np
import pandas as pd
import pytest

from synth_pipeline.modeling.cardinality import calibrate_counts
from synth_pipeline.modeling.derived import DerivedColumns
from synth_pipeline.modeling.linking import link_by_capacity, link_self
from synth_pipeline.modeling.marginals import (
    PairJoints,
    choose_per_slot,
    choose_with_quotas,
    rake_weights,
    target_codes,
)
from synth_pipeline.modeling.settings import ModelSettings
from synth_pipeline.modeling.table_model import TableModel
from synth_pipeline.schema.metadata import Metadata
from synth_pipeline.thresholds import THRESHOLDS


@pytest.fixture
def constrained_frame():
    rng = np.random.default_rng(0)
    n = 400
    route = rng.choice(["north", "south", "east"], n)
    due = np.round(rng.uniform(50, 500, n), 2)
    start = pd.Timestamp("2023-01-01") + pd.to_timedelta(rng.integers(0, 300, n), unit="D")
    frame = pd.DataFrame({
        "route": route, "fee": pd.Series(route).map({"north": 40.0, "south": 55.0, "east": 60.0}),
        "due": due, "paid": np.round(due * rng.uniform(0, 1, n), 2),
        "start": start, "end": start + pd.to_timedelta(rng.integers(30, 90, n), unit="D"),
    })
    kinds = {"route": "categorical", "fee": "numerical", "due": "numerical", "paid": "numerical",
             "start": "datetime", "end": "datetime"}
    parent = pd.DataFrame({"joined": start - pd.to_timedelta(rng.integers(0, 100, n), unit="D")})
    return frame, kinds, parent


def test_derived_columns_are_discovered_and_round_trip(constrained_frame):
    frame, kinds, parent = constrained_frame
    derived = DerivedColumns.discover(frame, kinds, parent, {"joined": "datetime"})
    found = {d.description for d in derived.derivations}
    assert {"route -> fee", "paid = ratio x due", "end = start + gap", "start = parent.joined + gap"} <= found
    learned = derived.forward(frame, parent)
    assert "fee" not in learned.columns
    assert learned["paid"].between(0, 1).all() and (learned["end"] > 0).all() and (learned["start"] >= 0).all()
    rebuilt = derived.inverse(learned, parent)
    assert (rebuilt["fee"] == frame["fee"]).all()
    assert np.allclose(rebuilt["paid"], frame["paid"], atol=0.011)
    # Dates are re-ranked onto the real marginal (interpolated quantiles): nearly the same dates.
    for col in ("start", "end"):
        assert (rebuilt[col] - frame[col]).abs().mean() <= pd.Timedelta(days=2), col
    assert (rebuilt["end"] > rebuilt["start"]).all() and (rebuilt["start"] >= parent["joined"]).all()


def test_derived_constraints_hold_on_arbitrary_generated_values(constrained_frame):
    frame, kinds, parent = constrained_frame
    derived = DerivedColumns.discover(frame, kinds, parent, {"joined": "datetime"})
    learned = derived.forward(frame, parent)
    rng = np.random.default_rng(1)
    noisy = learned.assign(paid=rng.uniform(-0.5, 1.5, len(learned)), end=rng.normal(10, 50, len(learned)),
                           start=rng.normal(50, 80, len(learned)))
    rebuilt = derived.inverse(noisy, parent)
    assert (rebuilt["paid"] <= rebuilt["due"]).all() and (rebuilt["paid"] >= 0).all()
    assert (rebuilt["end"] >= rebuilt["start"] + pd.Timedelta(days=1)).all()
    assert (rebuilt["start"] >= parent["joined"]).all()


def _label_codes(candidates: pd.DataFrame, targets: dict[str, pd.Series]) -> list:
    """Raking targets of candidate columns given as labels (the generator gives label indices)."""
    out = []
    for col, target in targets.items():
        picks, labels = pd.factorize(candidates[col].to_numpy())
        out.append(target_codes(picks, np.asarray(labels, dtype=str), target))
    return out


def test_raking_matches_real_category_shares():
    rng = np.random.default_rng(0)
    n, k = 2000, 3
    candidates = pd.DataFrame({"color": rng.choice(["red", "green", "blue"], n * k, p=[0.5, 0.3, 0.2]),
                               "size": rng.choice(["s", "l"], n * k, p=[0.5, 0.5])})
    targets = {"color": pd.Series({"red": 0.3, "green": 0.3, "blue": 0.4}), "size": pd.Series({"s": 0.8, "l": 0.2})}
    chosen = candidates.iloc[choose_per_slot(rake_weights(n, k, _label_codes(candidates, targets)), n, k, rng)]
    shares = chosen["color"].value_counts(normalize=True)
    # The generator's shares were 0.5 / 0.3 / 0.2; kept rows come within 0.05 of the real ones.
    assert abs(shares["blue"] - 0.4) < 0.05 and abs(shares["red"] - 0.3) < 0.05
    assert abs(chosen["size"].value_counts(normalize=True)["s"] - 0.8) < 0.05


def test_pair_raking_restores_associations_the_generator_lost():
    from synth_pipeline.evaluation.fidelity import pair_trends

    rng = np.random.default_rng(0)
    n, k = 3000, 30
    # Real: a fee's mode follows its status, and its amount follows its type.
    status = rng.choice(["paid", "pending"], n, p=[0.7, 0.3])
    mode = np.where(status == "paid", rng.choice(["card", "cash"], n, p=[0.9, 0.1]),
                    rng.choice(["card", "cash"], n, p=[0.1, 0.9]))
    kind = rng.choice(["tuition", "library"], n, p=[0.5, 0.5])
    amount = np.where(kind == "tuition", rng.normal(1000, 100, n), rng.normal(50, 10, n))
    real = pd.DataFrame({"status": status, "mode": mode, "kind": kind, "amount": amount})
    pairs = PairJoints.fit(real, ["status", "mode", "kind"], ["amount"])
    assert pairs is not None and {(pairs.columns[i].name, pairs.columns[j].name) for i, j, _ in pairs.pairs} >= {
        ("status", "mode"), ("kind", "amount")}
    # A generator that lost both associations: every column drawn on its own (right marginals).
    candidates = pd.DataFrame({c: rng.permutation(np.tile(real[c].to_numpy(), k)) for c in real})
    kinds = {"status": "categorical", "mode": "categorical", "kind": "categorical", "amount": "numerical"}

    def score(chosen):
        trends = pair_trends(real, chosen.reset_index(drop=True), kinds, [("status", "mode"), ("kind", "amount")])
        return [t["score"] for t in trends]

    first = candidates.iloc[:n]
    marginal_only = candidates.iloc[choose_per_slot(
        rake_weights(n, k, _label_codes(candidates, {c: real[c].value_counts(normalize=True) for c in ["status", "mode", "kind"]})),
        n, k, rng)]
    raked = candidates.iloc[choose_per_slot(rake_weights(n, k, pairs.rake_codes(candidates)), n, k, rng)]
    assert max(score(first)) < 0.75 and max(score(marginal_only)) < 0.75  # the associations are gone
    assert min(score(raked)) > 0.95  # raking the pairs brings both back
    assert abs((raked["status"] == "paid").mean() - 0.7) < 0.03  # and keeps the marginals


def test_pair_raking_given_the_parent_keeps_parent_child_associations():
    rng = np.random.default_rng(1)
    n, k = 3000, 20
    # Real: older students (born earlier) mostly pay by card; the plan follows the student's state.
    born = pd.Series(pd.Timestamp("2005-01-01") + pd.to_timedelta(rng.integers(0, 3650, n), unit="D"))
    state = pd.Series(rng.choice(["CA", "OR", "WA"], n))
    parent_rows = pd.DataFrame({"born": born, "state": state})
    older = (born < pd.Timestamp("2010-01-01")).to_numpy()
    mode = np.where(older, rng.choice(["card", "cash"], n, p=[0.9, 0.1]), rng.choice(["card", "cash"], n, p=[0.2, 0.8]))
    plan = np.where(state == "CA", "annual", rng.choice(["annual", "monthly"], n))
    real = pd.DataFrame({"mode": mode, "plan": plan})
    pairs = PairJoints.fit(real, ["mode", "plan"], [], parent_rows, {"born": "datetime", "state": "categorical"})
    assert {(pairs.columns[i].name, pairs.parent_columns[p].name) for i, p, _ in pairs.parent_pairs} == {
        ("mode", "born"), ("mode", "state"), ("plan", "born"), ("plan", "state")}
    # New synthetic parents (another draw), and children whose generator ignored the parent.
    new_parents = pd.DataFrame({"born": born.sample(frac=1, random_state=2).to_numpy(),
                                "state": rng.choice(["CA", "OR", "WA"], n, p=[0.6, 0.2, 0.2])})
    candidates = pd.DataFrame({c: rng.permutation(np.tile(real[c].to_numpy(), k)) for c in real})
    chosen = candidates.iloc[choose_per_slot(
        rake_weights(n, k, pairs.rake_codes(candidates, pairs.given_codes(new_parents), k)), n, k, rng)].reset_index(drop=True)
    new_older = (new_parents["born"] < pd.Timestamp("2010-01-01")).to_numpy()
    card_older, card_younger = (chosen["mode"][new_older] == "card").mean(), (chosen["mode"][~new_older] == "card").mean()
    assert card_older > 0.8 and card_younger < 0.3  # unraked: 0.55 for both
    # the plan follows each synthetic parent's state, at the new parents' state shares
    assert (chosen["plan"][new_parents["state"] == "CA"] == "annual").mean() > 0.9
    assert abs((chosen["plan"] == "annual").mean() - (0.6 + 0.4 * 0.5)) < 0.05


def test_quota_draws_hold_small_tables_to_the_real_counts():
    # 60 teachers in 7 departments (real: 9, 9, 9, 9, 8, 8, 8); the generator favours English.
    departments = ["English", "Science", "Mathematics", "History", "Arts", "Computer Science", "PE"]
    real = pd.Series(np.repeat(departments, [9, 9, 9, 9, 8, 8, 8]))
    targets = {"department": real.value_counts(normalize=True)}
    n, k = 60, 10
    spreads = {"per slot": [], "quotas": []}
    for seed in range(20):
        rng = np.random.default_rng(seed)
        candidates = pd.DataFrame({"department": rng.choice(departments, n * k, p=[.3, .1, .1, .1, .1, .15, .15])})
        weights = rake_weights(n, k, _label_codes(candidates, targets))
        for name, kept in (("per slot", choose_per_slot(weights, n, k, rng)),
                           ("quotas", choose_with_quotas(weights, candidates, targets, n, k, rng))):
            counts = candidates["department"].iloc[kept].value_counts().reindex(departments, fill_value=0)
            spreads[name].append(int((counts - real.value_counts().reindex(departments)).abs().sum()))
    # Raked draws meet the shares only on average (about 14 teachers in the wrong department
    # out of 60); quota draws come within a teacher or two of every department's real count.
    assert np.mean(spreads["per slot"]) > 8 and np.mean(spreads["quotas"]) < 2
    kept = choose_with_quotas(weights, candidates, targets, n, k, rng)
    assert sorted((kept % n).tolist()) == list(range(n))  # one candidate per slot, from that slot


def test_compiled_raking_gives_the_weights_of_plain_iterative_proportional_fitting():
    """``rake_weights``' compiled pass against IPF written in numpy: per target, each cell's
    weighted share, a factor per cell, weights normalised per slot (a slot none of whose
    candidates the target allows keeps its weights)."""
    from synth_pipeline.modeling.marginals import RAKING_CONVERGED, RAKING_ROUNDS

    def reference(n, k, codes):
        weights = np.full((k, n), 1.0 / k)
        for _ in range(RAKING_ROUNDS):
            off = 0.0
            for cell, share, cells in codes:
                current = np.bincount(cell, weights=weights.reshape(-1), minlength=cells) / n
                off = max(off, float(np.abs(current - share).max()))
                factor = np.where(current > 0, share / np.maximum(current, 1e-12), 0.0)
                updated = factor[cell].reshape(k, n) * weights
                totals = updated.sum(axis=0)
                updated[:, totals <= 0] = weights[:, totals <= 0]
                weights = updated / np.maximum(updated.sum(axis=0), 1e-300)
            if off < RAKING_CONVERGED:
                break
        return weights.reshape(-1)

    rng = np.random.default_rng(0)
    for trial in range(40):
        n, k = int(rng.integers(1, 400)), int(rng.integers(1, 16))
        codes = []
        for _ in range(int(rng.integers(1, 6))):
            cells = int(rng.integers(1, 9))
            share = rng.dirichlet(np.ones(cells))
            share[rng.random(cells) < 0.25] = 0  # cells the real data lacks: slots may allow nothing
            codes.append((rng.integers(0, cells, n * k), share / max(share.sum(), 1e-9), cells))
        got, expected = rake_weights(n, k, codes), reference(n, k, codes)
        assert np.allclose(got, expected, rtol=1e-9, atol=1e-12), trial
        assert np.allclose(got.reshape(k, n).sum(axis=0), 1.0)
    with pytest.raises(IndexError, match="out of its range"):
        rake_weights(4, 2, [(np.array([0, 1, 1, 0, 1, 0, 1, 0]), np.array([0.5, 0.5]), 2),
                            (np.array([0, 1, 2, 0, 1, 0, 1, 0]), np.array([0.5, 0.5]), 2)])


def test_raking_from_the_first_chunks_factors_meets_the_targets_in_half_the_rounds():
    """A drifted generator (three related categories; targets on each and on a pair): a
    later chunk raked from the first chunk's factors comes as close to the real shares in
    half the rounds as from even weights in all of them; from even weights, half the rounds
    fall short. The factors are the weights: their product, normalised per slot."""
    from synth_pipeline.modeling.marginals import rake

    def columns(rng, size, pa, pb):
        a = rng.choice(6, size, p=pa)
        b = (a + rng.choice(4, size, p=pb)) % 5
        return a, b, (b * 2 + rng.integers(0, 2, size)) % 7

    real = columns(np.random.default_rng(0), 200_000, np.full(6, 1 / 6), np.full(4, .25))
    shares = [np.bincount(x, minlength=m) / len(x) for x, m in zip((*real, real[0] * 5 + real[1]), (6, 5, 7, 30))]
    rng = np.random.default_rng(3)
    n, k = 3000, 12

    def chunk():
        a, b, c = columns(rng, n * k, [.4, .2, .15, .1, .1, .05], [.55, .25, .15, .05])
        return [(x, s, len(s)) for x, s in zip((a, b, c, a * 5 + b), shares)]

    def miss(weights, codes):
        return max(float(np.abs(np.bincount(c, weights=weights, minlength=m) / n - s).max()) for c, s, m in codes)

    first = chunk()
    weights, factors = rake(n, k, first)
    product = np.prod([f[c] for (c, _, _), f in zip(first, factors)], axis=0).reshape(k, n)
    assert np.allclose(product / product.sum(axis=0), weights.reshape(k, n), rtol=1e-9)
    even, started, short = [], [], []
    for _ in range(6):
        later = chunk()
        assert miss(np.full(n * k, 1 / k), later) > 0.2  # the drift raking undoes
        even.append(miss(rake(n, k, later)[0], later))
        started.append(miss(rake(n, k, later, factors)[0], later))
        short.append(miss(rake(n, k, later, [np.ones(m) for *_, m in later])[0], later))  # even, half the rounds
    assert all(s <= e * 1.02 for s, e in zip(started, even)) and max(started) < 0.03, (started, even)
    assert np.mean(short) > 1.1 * np.mean(even), (short, even)


def test_calibrated_counts_keep_rank_zeros_and_tail():
    rng = np.random.default_rng(0)
    real = np.r_[np.zeros(10), rng.poisson(5, 980), [15] * 10].astype(int)
    generated = rng.normal(5, 1, 1000)  # smooth, no zeros, no tail
    calibrated = calibrate_counts(generated, real, rng)
    assert calibrated.max() == 15 and (calibrated == 0).sum() == (real == 0).sum()
    assert pd.Series(generated).corr(pd.Series(calibrated), method="spearman") > 0.97  # ranks kept


def test_capacity_linking_keeps_the_degree_distribution():
    rng = np.random.default_rng(0)
    capacity = np.array([0, 1, 2, 5, 12])
    keys = link_by_capacity(int(capacity.sum()), np.array(list("abcde"), dtype=object), capacity, rng)
    degree = pd.Series(keys).value_counts().reindex(list("abcde"), fill_value=0).to_numpy()
    assert (degree == capacity).all()


def test_signature_links_fall_back_to_the_first_part_of_the_signature():
    from synth_pipeline.modeling.linking import link_by_signature

    rng = np.random.default_rng(0)
    parents = np.array(["honors|calculus", "honors|poetry", "basic|algebra", "basic|reading"], dtype=object)
    keys = np.array(["P0", "P1", "P2", "P3"], dtype=object)
    wanted = np.array(["honors|algebra"] * 50 + ["basic|calculus"] * 50, dtype=object)  # no such parents
    linked = link_by_signature(wanted, parents, keys, np.array([25, 25, 25, 25]), rng)
    assert set(linked[:50]) == {"P0", "P1"} and set(linked[50:]) == {"P2", "P3"}
    assert pd.Series(linked).value_counts().to_dict() == {"P0": 25, "P1": 25, "P2": 25, "P3": 25}


def test_self_links_form_a_forest():
    rng = np.random.default_rng(0)
    keys = np.arange(50)
    has_parent = np.r_[[False] * 3, [True] * 47]
    parents = link_self(keys, has_parent, np.ones(50), rng)
    for start in range(50):  # following parents always ends at a root: no cycles
        node, seen = start, set()
        while parents[node] is not None:
            assert node not in seen
            seen.add(node)
            node = parents[node]


def test_self_links_keep_every_report_count_when_the_parentless_row_had_none():
    # Chinook's Employee.ReportsTo: counts {3, 2, 2, 0 x5}, one row without a manager
    keys = np.arange(8)
    capacity = np.array([0, 3, 0, 2, 0, 2, 0, 0])
    for seed in range(20):
        has_parent = np.ones(8, dtype=bool)
        has_parent[0] = False  # drawn without a manager, but with no reports of its own
        parents = link_self(keys, has_parent, capacity, np.random.default_rng(seed))
        assert sum(p is None for p in parents) == 1
        reports = pd.Series([p for p in parents if p is not None]).value_counts()
        assert sorted(reports.reindex(keys, fill_value=0)) == sorted(capacity)


def _parent_child_metadata():
    return Metadata.from_dict({
        "tables": {
            "parent": {"primary_key": "id", "columns": {"id": {"sdtype": "id"}, "group": {"sdtype": "categorical"}}},
            "child": {"primary_key": "id", "columns": {"id": {"sdtype": "id"}, "parent_id": {"sdtype": "id"},
                                                       "value": {"sdtype": "numerical"}}},
        },
        "relationships": [{"parent_table_name": "parent", "parent_primary_key": "id",
                           "child_table_name": "child", "child_foreign_key": "parent_id"}],
    })


@pytest.mark.parametrize("conditional", [True, False])
def test_children_follow_their_parent_only_when_conditioned(conditional):
    rng = np.random.default_rng(0)
    parent = pd.DataFrame({"id": np.arange(400), "group": rng.choice(["high", "low"], 400)})
    owner = np.repeat(parent.id, 3)
    value = np.where(parent.group.to_numpy()[owner] == "high", 100.0, 0.0) + rng.normal(0, 5, len(owner))
    child = pd.DataFrame({"id": np.arange(len(owner)), "parent_id": owner, "value": value})
    md, real = _parent_child_metadata(), {"parent": parent, "child": child}
    settings = ModelSettings(steps=300, conditional=conditional)
    parent_model = TableModel.fit(md, "parent", real, settings, seed=1)
    child_model = TableModel.fit(md, "child", real, settings, seed=2)
    synthetic_parent = parent_model.sample(md, {}, 1.0, seed=3)
    synthetic_child = child_model.sample(md, {"parent": synthetic_parent}, 1.0, seed=4)
    joined = synthetic_child.merge(synthetic_parent[["id", "group"]], left_on="parent_id", right_on="id")
    gap = joined.groupby("group").value.mean()
    if conditional:
        assert gap["high"] - gap["low"] > 60  # real gap: 100
    else:
        assert abs(gap["high"] - gap["low"]) < 30


def test_child_counts_get_the_real_rank_correlation_and_keep_their_values():
    from synth_pipeline.modeling.cardinality import impose_rank_correlation

    rng = np.random.default_rng(0)
    counts = np.column_stack([rng.poisson(5, 1000), rng.poisson(3, 1000)]).astype(float)  # independent
    paired = impose_rank_correlation(counts, np.array([[1.0, 0.7], [0.7, 1.0]]), rng)
    assert (np.sort(paired, axis=0) == np.sort(counts, axis=0)).all()
    assert 0.55 <= pd.DataFrame(paired).corr(method="spearman").iloc[0, 1] <= 0.8


def test_a_small_root_table_keeps_the_real_rank_correlation_of_its_numbers_and_child_counts():
    """80 districts: inhabitants, crimes and accounts go together. A barely trained generator
    does not learn that; the re-pairing of each column's generated values does."""
    md = Metadata.from_dict({
        "tables": {
            "district": {"primary_key": "id", "columns": {"id": {"sdtype": "id"}, "inhabitants": {"sdtype": "numerical"},
                                                          "crimes": {"sdtype": "numerical"}}},
            "account": {"primary_key": "id", "columns": {"id": {"sdtype": "id"}, "district_id": {"sdtype": "id"}}},
        },
        "relationships": [{"parent_table_name": "district", "parent_primary_key": "id",
                           "child_table_name": "account", "child_foreign_key": "district_id"}],
    })
    rng = np.random.default_rng(0)
    size = rng.lognormal(10, 1, 80)
    district = pd.DataFrame({"id": np.arange(80), "inhabitants": size.round(),
                             "crimes": (size * rng.lognormal(-3, 0.3, 80)).round()})
    accounts = np.repeat(np.arange(80), np.maximum(1, (size / size.mean() * 5 * rng.lognormal(0, 0.3, 80)).round()
                                                   .astype(int)))
    real = {"district": district, "account": pd.DataFrame({"id": np.arange(len(accounts)), "district_id": accounts})}
    model = TableModel.fit(md, "district", real, ModelSettings(steps=2), seed=0)
    synthetic = model.sample(md, {}, 1.0, seed=1)
    counts = next(c for c in synthetic.columns if c.startswith("__children__"))
    columns = ["inhabitants", "crimes", counts]
    real_rank = district.assign(**{counts: np.bincount(accounts, minlength=80)})[columns].corr(method="spearman")
    synthetic_rank = synthetic[columns].astype(float).corr(method="spearman")
    assert real_rank.min().min() > 0.8
    assert (synthetic_rank - real_rank).abs().max().max() < 0.1


def _planted(tables, foundation="Foundation", honors="Honors"):
    """The school's planted cross-table patterns: level gap in marks, assessor teaches course."""
    m = tables["marks"].merge(tables["student_courses"], on="student_course_id").merge(tables["courses"], on="course_id")
    pct = (100 * m.score_obtained / m.max_score).groupby(m.level).mean()
    pairs = set(map(tuple, tables["course_instructors"][["course_id", "teacher_id"]].to_numpy()))
    rate = float(np.mean([(c, a) in pairs for c, a in zip(m.course_id, m.assessed_by_teacher_id)]))
    return pct[foundation] - pct[honors], rate


def test_marks_keep_the_level_gap_and_assessors_teach_the_course(tiny_run, school_metadata):
    """Through two hops (mark -> student course -> course) and a bridge table (course_instructors),
    even with a 20-step GAN: the gap comes from the parent context and the course signature,
    the assessor rate from path-agreement linking. Unconditioned links would give a gap near 0
    and a rate near 6%. The tiny school has 10 courses, and a 20-step GAN gets their level mix
    wrong (3 Honors courses instead of 1), so the gap is only asked to be clearly positive here;
    the 1,000-student figures are in the README."""
    from synth_pipeline.sources.loaders import load_tables

    from synth_pipeline.privacy_labels import renamed_real

    config, _ = tiny_run
    real = load_tables(config.out_dir / "real.duckdb")
    real_gap, real_rate = _planted(real)
    # a level fewer than privacy_min_count of the tiny school's courses have is published as its stand-in
    levels = renamed_real(real["courses"], school_metadata, "courses", config.seed, config.privacy_min_count)
    published = dict(zip(real["courses"]["level"], levels["level"]))
    gap, rate = _planted(load_tables(config.out_dir / "synthetic.duckdb"), published["Foundation"], published["Honors"])
    assert real_gap > 10 and real_rate > 0.9
    assert 0.25 * real_gap <= gap <= 1.4 * real_gap
    assert abs(rate - real_rate) <= 0.1
    report = json.loads((config.out_dir / "report.json").read_text())["synth_pipeline"]
    assessor = [p for p in report["path_agreements"] if p["path"].startswith("assessed_by_teacher_id is one of course_instructors")]
    assert assessor and abs(assessor[0]["synthetic"] - rate) < 1e-3


def test_signature_model_follows_the_childs_own_category():
    """A child's second-parent kind follows its own category."""
    from synth_pipeline.modeling.signatures import SignatureModel

    rng = np.random.default_rng(0)
    n = 3000
    grade = rng.choice(["A", "F"], n)
    level = np.where(rng.random(n) < 0.85, np.where(grade == "A", "easy", "hard"), np.where(grade == "A", "hard", "easy"))
    context = rng.normal(size=(n, 3)).astype("float32")
    score = 50 + 10 * context[:, 0] + rng.normal(0, 3, n)
    rows = pd.DataFrame({"grade": grade, "score": score})
    model = SignatureModel.fit(rows, {"grade": "categorical"}, None, level, seed=0)
    drawn = model.sample(rows, None, np.random.default_rng(1))
    assert abs(np.mean(drawn[grade == "A"] == "easy") - 0.85) < 0.05
    assert abs(np.mean(drawn[grade == "F"] == "hard") - 0.85) < 0.05


def test_bridge_linking_reaches_the_share_and_keeps_capacities():
    from synth_pipeline.modeling.bridges import link_by_bridge
    from synth_pipeline.schema.paths import Bridge

    rng = np.random.default_rng(0)
    teachers = np.array([f"T{i}" for i in range(20)], dtype=object)
    pairs = pd.DataFrame({"course": [f"C{i % 10}" for i in range(20)], "teacher": teachers})  # two teachers per course
    weights = np.arange(1, 11) / np.arange(1, 11).sum()  # popular and unpopular courses
    route = np.array([f"C{i}" for i in rng.choice(10, 4000, p=weights)], dtype=object)
    # The generated counts have the right sizes but sit on the wrong teachers: linking must
    # move the large counts to the teachers of popular courses.
    capacity = rng.permutation(np.repeat(weights * 4000 / 2, 2))
    bridge = Bridge("fk", "pairs", "course", "teacher", "course_id", True, rate=0.9, chance=0.1)
    linked = link_by_bridge(route, pairs, bridge, teachers, capacity, rng)
    allowed = set(zip(pairs.course, pairs.teacher))
    rate = np.mean([(r, t) in allowed for r, t in zip(route, linked)])
    assert rate > 0.85  # share 0.889 along the bridge, plus chance hits among the rest
    # Every teacher gets one of the generated capacities (the same multiset, re-ranked by
    # demand), give or take the few agreeing rows the flow left out (placed on a paired
    # teacher up to the largest count).
    got = np.sort(pd.Series(linked).value_counts().reindex(teachers, fill_value=0).to_numpy())
    expected = np.sort(np.round(capacity / capacity.sum() * 4000))
    assert np.abs(got - expected).max() <= 2 and np.abs(got - expected).sum() <= 12


def test_a_teacher_of_popular_courses_takes_counts_from_teachers_with_room_to_spare(monkeypatch):
    """Where one parent's routes need more than the largest generated count, a few counts move
    (at most 5% of the parents' counts change): the path agreement rises, the count
    distribution barely moves."""
    from synth_pipeline.modeling import bridges
    from synth_pipeline.modeling.bridges import link_by_bridge
    from synth_pipeline.schema.paths import Bridge

    teachers = np.array([f"T{i}" for i in range(40)], dtype=object)
    pairs = pd.DataFrame({"course": ["C0", "C1", "C2", "C3"], "teacher": teachers[:4]})  # one teacher per course
    route = np.repeat(np.array(["C0", "C1", "C2", "C3"], dtype=object), [2400, 1100, 1000, 900])
    capacity = np.array([1400, 1400, 1400, 1200] + [0] * 36, dtype=float)
    bridge = Bridge("fk", "pairs", "course", "teacher", "course_id", True, rate=0.9, chance=0.0)
    allowed = set(zip(pairs.course, pairs.teacher))
    rates, counts = {}, {}
    for shifted in (0.0, 0.05):  # the shift alone (not the one-row overflow)
        monkeypatch.setattr(bridges, "THRESHOLDS", replace(THRESHOLDS, overflow_per_parent=0, max_shifted_parents=shifted))
        linked = link_by_bridge(route, pairs, bridge, teachers, capacity, np.random.default_rng(0))
        rates[shifted] = np.mean([(r, t) in allowed for r, t in zip(route, linked)])
        counts[shifted] = pd.Series(linked).value_counts().reindex(teachers, fill_value=0).to_numpy()
    assert np.sort(counts[0.0]).tolist() == np.sort(capacity).astype(int).tolist()  # exact multiset
    assert rates[0.05] >= rates[0.0] + 0.05  # T0 gets more of C0's rows
    from collections import Counter

    moved = Counter(counts[0.05].tolist()) - Counter(capacity.astype(int).tolist())
    assert sum(moved.values()) <= 2  # counts changed on max(2, 5% of 40) parents
    assert counts[0.05].sum() == len(route)


def test_discovered_constraints_can_be_switched_off_and_null_patterns_are_enforced(
        school_metadata, school_tables, tmp_path):
    from synth_pipeline.config import config_from_yaml
    from synth_pipeline.modeling.context import sampling_inputs

    (tmp_path / "config.yaml").write_text('source: school.duckdb\nconstraints_off:\n  - "fees: amount_paid <= amount_due"\n')
    config = config_from_yaml(tmp_path / "config.yaml")
    assert config.constraints_off == ("fees: amount_paid <= amount_due",)
    (tmp_path / "bad.yaml").write_text("source: school.duckdb\nconstraints_off: amount_paid\n")
    with pytest.raises(Exception, match="'constraints_off' must be list"):
        config_from_yaml(tmp_path / "bad.yaml")

    untrained = ModelSettings(steps=2)  # an untrained generator: whatever holds comes from enforcement
    model = TableModel.fit(school_metadata, "fees", school_tables, untrained, seed=0)
    described = {c.description for c in model.constraints}
    assert {"amount_paid <= amount_due", "payment_date is null exactly when payment_mode is null"} <= described
    off = TableModel.fit(school_metadata, "fees", school_tables,
                         ModelSettings(steps=2, constraints_off=config.constraints_off), seed=0)
    assert {c.description for c in off.constraints} == described - {"amount_paid <= amount_due"}

    from synth_pipeline.stats import child_counts, count_column

    parents = {p: school_tables[p].copy() for p in sampling_inputs(school_metadata, "fees")}
    for name, parent in parents.items():  # the children counts a sampled parent carries
        for rel in school_metadata.child_relationships(name):
            parent[count_column(rel)] = child_counts(parent[rel.parent_primary_key],
                                                     school_tables[rel.child_table_name][rel.child_foreign_key])
    fees = model.sample(school_metadata, parents, 1.0, seed=1)
    assert 0.05 < fees["payment_date"].isna().mean() < 0.95
    assert (fees["payment_date"].isna() == fees["payment_mode"].isna()).all()


def test_user_added_constraints_are_enforced_where_the_real_data_breaks_them():
    from synth_pipeline.errors import ConfigError
    from synth_pipeline.repair import repair_table
    from synth_pipeline.schema.constraints import parse_added, satisfied

    rng = np.random.default_rng(0)
    n = 600
    plan = rng.choice(["basic", "plus", "pro"], n)
    price = pd.Series(plan).map({"basic": 10.0, "plus": 20.0, "pro": 35.0}).to_numpy()
    price[:20] = 99.0  # 3% of rows break plan -> price
    due = np.round(rng.uniform(50, 500, n), 2)
    paid = np.round(due * rng.uniform(0, 1.05, n), 2)  # about 5% pay more than due
    real = {"pay": pd.DataFrame({"pay_id": np.arange(n), "plan": plan, "price": price, "due": due, "paid": paid})}
    md = Metadata.from_dict({"tables": {"pay": {"primary_key": "pay_id", "columns": {
        "pay_id": {"sdtype": "id"}, "plan": {"sdtype": "categorical"}, "price": {"sdtype": "numerical"},
        "due": {"sdtype": "numerical"}, "paid": {"sdtype": "numerical"}}}}})
    rules = ("pay: paid <= due", "pay: plan -> price")

    plain = TableModel.fit(md, "pay", real, ModelSettings(steps=60), seed=0)
    assert not {"paid <= due", "plan -> price"} & {c.description for c in plain.constraints}  # not discovered
    model = TableModel.fit(md, "pay", real, ModelSettings(steps=60, constraints_add=rules), seed=0)
    added = [c for c in model.constraints if c.description in ("paid <= due", "plan -> price")]
    assert len(added) == 2
    sample = model.sample(md, {}, 1.0, seed=1)
    before = [float(satisfied(c, {"pay": sample}, md, {"pay": real["pay"]}).mean()) for c in added]
    assert min(before) < 1.0  # the GAN alone breaks them, as the real data does
    repaired, _ = repair_table(sample, md, "pay", {}, model, seed=2)
    for c in added:
        assert satisfied(c, {"pay": repaired}, md, {"pay": real["pay"]}).all(), c.description
    assert set(repaired.loc[repaired.plan == "pro", "price"]) == {35.0}

    for rule, message in [("pay: paid <= nosuch", "table 'pay' has no column 'nosuch'"),
                          ("bill: paid <= due", "unknown table 'bill'"),
                          ("pay: plan <= due", "column 'pay.plan' is not a number or date"),
                          ("pay: paid ~ due", "expected 'a <= b'")]:
        with pytest.raises(ConfigError, match=re.escape(message)):
            parse_added(rule, md)


def test_link_pairs_are_made_unique_even_when_one_owner_takes_almost_every_value():
    from synth_pipeline.modeling.linking import make_pairs_unique

    rng = np.random.default_rng(0)
    owners = np.array([0] * 95 + [1] * 90 + [2] * 10)  # like Chinook's two playlists holding most tracks
    linked = np.repeat(np.arange(100), [2] * 85 + [3] * 5 + [1] * 10)
    rng.shuffle(linked)
    out = make_pairs_unique(owners, linked, rng)
    assert not pd.Series(list(zip(owners, out))).duplicated().any()
    assert pd.Series(out).value_counts().sort_index().equals(pd.Series(linked).value_counts().sort_index())


def test_rows_dated_before_their_second_parent_are_linked_to_an_earlier_one():
    from synth_pipeline.repair import _enforce_parent_dates
    from synth_pipeline.schema.constraints import Constraint, satisfied

    md = Metadata.from_dict({"tables": {
        "owner": {"primary_key": "owner_id", "columns": {"owner_id": {"sdtype": "id"}}},
        "lead": {"primary_key": "lead_id", "columns": {"lead_id": {"sdtype": "id"}, "hired": {"sdtype": "datetime"}}},
        "job": {"primary_key": "job_id", "columns": {"job_id": {"sdtype": "id"}, "owner_id": {"sdtype": "id"},
                                                    "lead_id": {"sdtype": "id"}, "start": {"sdtype": "datetime"}}}},
        "relationships": [{"parent_table_name": "owner", "parent_primary_key": "owner_id", "child_table_name": "job",
                           "child_foreign_key": "owner_id"},
                          {"parent_table_name": "lead", "parent_primary_key": "lead_id", "child_table_name": "job",
                           "child_foreign_key": "lead_id"}]})
    rng = np.random.default_rng(0)
    lead = pd.DataFrame({"lead_id": np.arange(20), "hired": pd.Timestamp("2020-01-01") + pd.to_timedelta(np.arange(20) * 15, unit="D")})
    job = pd.DataFrame({"job_id": np.arange(500), "owner_id": 0, "lead_id": rng.integers(0, 20, 500),
                        "start": pd.Timestamp("2020-06-01") + pd.to_timedelta(rng.integers(0, 400, 500), unit="D")})
    counts = job["lead_id"].value_counts()
    rule = Constraint("job", "parent_date_order", ("start", "hired"), "job.start >= lead.hired (via lead_id)",
                      parent="lead", foreign_key="lead_id")
    assert not satisfied(rule, {"job": job, "lead": lead}, md, {}).all()
    fixes = _enforce_parent_dates(job, md, "job", {"lead": lead, "owner": pd.DataFrame({"owner_id": [0]})},
                                  TableModel("job", constraints=[rule]), rng)
    assert fixes[rule.description] > 0
    assert satisfied(rule, {"job": job, "lead": lead}, md, {}).all()
    assert job["lead_id"].isin(lead["lead_id"]).all()
    moved = (job["lead_id"].value_counts().reindex(counts.index, fill_value=0) - counts).abs().sum()
    assert moved <= 0.05 * len(job)  # parents swapped between rows: each lead keeps (nearly) its count


def test_fit_subsample_keeps_whole_sibling_groups_and_the_full_size(school_metadata, school_tables):
    from synth_pipeline.modeling.fit_sample import fit_sample

    marks = school_tables["marks"]
    kept = fit_sample(school_metadata, "marks", marks, 5000, seed=3)
    assert 4000 < len(kept) < 6000
    assert kept.equals(fit_sample(school_metadata, "marks", marks, 5000, seed=3))  # seeded
    assert not kept.equals(fit_sample(school_metadata, "marks", marks, 5000, seed=4))
    sizes = marks.groupby("student_course_id").size()
    kept_sizes = kept.groupby("student_course_id").size()
    assert (kept_sizes == sizes[kept_sizes.index]).all()  # every kept enrollment has all its marks
    assert fit_sample(school_metadata, "marks", marks, 0, seed=3) is marks  # 0: no budget

    settings = ModelSettings(steps=2, fit_rows=5000)
    model = TableModel.fit(school_metadata, "marks", school_tables, settings, seed=0)
    assert model.real_rows == len(marks)
    assert model.fitted_rows == len(fit_sample(school_metadata, "marks", marks, 5000, seed=0))
    # a sampled parent's children are all counted (the child table is not cut)
    parent = TableModel.fit(school_metadata, "student_courses", school_tables, ModelSettings(steps=2, fit_rows=2000), 0)
    from synth_pipeline.stats import count_column

    rel = next(r for r in school_metadata.child_relationships("student_courses") if r.child_table_name == "marks")
    kept_parents = fit_sample(school_metadata, "student_courses", school_tables["student_courses"], 2000, seed=0)
    assert parent.fitted_rows == len(kept_parents) < len(school_tables["student_courses"])
    assert parent.real_counts[count_column(rel)].sum() == marks["student_course_id"].isin(
        kept_parents["student_course_id"]).sum()


def test_sampling_in_chunks_gives_every_row_and_the_same_marginals(school_metadata, school_tables, monkeypatch,
                                                                   caplog):
    from synth_pipeline.modeling import generator
    from synth_pipeline.modeling.context import sampling_inputs
    from synth_pipeline.stats import child_counts, count_column

    model = TableModel.fit(school_metadata, "fees", school_tables, ModelSettings(steps=60), seed=0)
    parents = {p: school_tables[p].copy() for p in sampling_inputs(school_metadata, "fees")}
    for name, parent in parents.items():
        for rel in school_metadata.child_relationships(name):
            parent[count_column(rel)] = child_counts(parent[rel.parent_primary_key],
                                                     school_tables[rel.child_table_name][rel.child_foreign_key])
    whole = model.sample(school_metadata, parents, 1.0, seed=1)
    monkeypatch.setattr(generator, "SAMPLE_CHUNK_ROWS", 700)  # 8 chunks
    # progress of long work is logged (here after every chunk but the last), naming the table
    monkeypatch.setattr(generator.Progress.__init__, "__defaults__", (0.0,))
    with caplog.at_level(logging.INFO, logger=generator.log.name):
        chunked = model.sample(school_metadata, parents, 1.0, seed=1)
    progress = [r.getMessage() for r in caplog.records if "rows generated" in r.getMessage()]
    assert len(progress) == 7 and progress[0].startswith(f"fees: 700 of {len(whole)} rows generated"), progress
    assert len(chunked) == len(whole) == len(school_tables["fees"])
    assert chunked["fee_id"].is_unique and chunked["fee_id"].notna().all()
    for column in ("fee_type", "payment_mode"):
        shares = [f[column].value_counts(normalize=True, dropna=False) for f in (whole, chunked)]
        assert shares[0].subtract(shares[1], fill_value=0).abs().sum() < 0.1, column
    assert abs(chunked["amount_due"].median() / whole["amount_due"].median() - 1) < 0.1
    # chunks drawn side by side in threads: the same rows as one after another
    threaded = model.sample(school_metadata, parents, 1.0, seed=1, threads=2)
    pd.testing.assert_frame_equal(threaded, chunked)
    assert not threaded.equals(model.sample(school_metadata, parents, 1.0, seed=2, threads=2))
    # the later chunks wait for the first chunk's raking factors: if it fails, they fail with it
    raked = generator.rake

    def failing(n, k, codes, start=None):
        if start is None:
            raise ValueError("the first chunk's raking failed")
        return raked(n, k, codes, start)

    monkeypatch.setattr(generator, "rake", failing)
    with pytest.raises(ValueError, match="first chunk's raking failed"):
        model.sample(school_metadata, parents, 1.0, seed=1, threads=2)


def test_sampled_chunks_are_stacked_a_column_at_a_time_into_the_same_table_as_one_concat():
    from synth_pipeline.modeling.generator import stacked

    rng = np.random.default_rng(0)

    def part(n, labels):
        return pd.DataFrame({"n": rng.integers(0, 9, n), "x": rng.random(n),
                             "s": pd.array(rng.choice(["a", None], n), dtype="string"),
                             "c": pd.Categorical(rng.choice(labels, n)),  # categories differ between parts
                             "t": pd.to_datetime(rng.integers(0, 10**9, n), unit="s")}, index=np.arange(n) + 5)

    parts = [part(300, ["u", "v"]), part(200, ["v", "w"]), part(1, ["u"])]
    built = stacked(iter(parts))
    pd.testing.assert_frame_equal(built, pd.concat(parts, ignore_index=True))
    assert isinstance(built.index, pd.RangeIndex) and len(built) == 501
    assert stacked(iter([pd.DataFrame(index=range(4))])).shape == (4, 0)  # rows without columns keep their count


def test_candidates_drawn_again_from_one_pass_are_raked_to_the_real_shares(school_metadata, school_tables):
    import torch

    from synth_pipeline.modeling.context import sampling_inputs
    from synth_pipeline.modeling.ctgan_model import _softmax_pick
    from synth_pipeline.stats import child_counts, count_column

    # draws from one row's scores follow its softmax; draw r of row j comes at r * rows + j
    logits = torch.tensor([[0.0, 1.0, 2.0], [30.0, 0.0, 0.0]])
    draws = _softmax_pick(logits, torch.Generator().manual_seed(0), draws=20_000).numpy().reshape(20_000, 2)
    assert (draws[:, 1] == 0).all()
    assert np.abs(np.bincount(draws[:, 0], minlength=3) / 20_000 - torch.softmax(logits[0], 0).numpy()).max() < 0.01

    model = TableModel.fit(school_metadata, "fees", school_tables, ModelSettings(steps=60), seed=0)
    generator = model.get("generator")
    assert generator.passes is not None and generator.candidates % generator.passes == 0
    parents = {p: school_tables[p].copy() for p in sampling_inputs(school_metadata, "fees")}
    for name, parent in parents.items():
        for rel in school_metadata.child_relationships(name):
            parent[count_column(rel)] = child_counts(parent[rel.parent_primary_key],
                                                     school_tables[rel.child_table_name][rel.child_foreign_key])
    real = school_tables["fees"]

    def miss(candidates: int, passes: int) -> float:
        """The largest total variation of a raked column's shares from the real ones."""
        generator.candidates, generator.passes = candidates, passes
        rows = model.sample(school_metadata, parents, 1.0, seed=1)
        assert len(rows) == len(real) and rows["fee_id"].is_unique
        return max(0.5 * rows[c].value_counts(normalize=True).subtract(real[c].value_counts(normalize=True),
                                                                       fill_value=0).abs().sum()
                   for c in ("fee_type", "payment_mode", "status"))

    one, independent, drawn_again = miss(1, 1), miss(8, 8), miss(8, 2)
    # 8 candidates from 2 passes meet the shares about as closely as 8 passes, far better than one
    assert drawn_again < independent + 0.02 and drawn_again < one / 2, (one, independent, drawn_again)


def test_numbers_raking_reads_are_the_transformers_own_inverse(school_metadata, school_tables, monkeypatch):
    from synth_pipeline.modeling import ctgan_model

    model = TableModel.fit(school_metadata, "fees", school_tables, ModelSettings(steps=30), seed=0)
    gan = model.get("generator").gan
    n = 400
    context = np.random.default_rng(0).normal(size=(n, gan.context_dim)).astype("float32")
    drawn = gan.sample_candidates(n, context, seed=3, k=2)
    columns = [i.column_name for i in gan.transformer._column_transform_info_list if i.column_type == "continuous"]
    assert len(columns) >= 3
    picks = gan.picks(drawn.raw, columns, drawn.generator, draws=3)
    computed = gan.numbers(drawn.raw, columns, picks)
    monkeypatch.setattr(ctgan_model, "_mode_values", lambda *args: None)  # rdt's data-frame inverse instead
    inverse = gan.numbers(drawn.raw, columns, picks)
    for c in columns:
        assert len(computed[c]) == n * 2 * 3 and np.array_equal(computed[c], inverse[c]), c


def test_candidates_in_bfloat16_match_on_any_cpu_and_kept_rows_are_completed_in_float32(school_metadata,
                                                                                       school_tables, monkeypatch):
    import torch

    from synth_pipeline.modeling import ctgan_model

    model = TableModel.fit(school_metadata, "fees", school_tables, ModelSettings(steps=30), seed=0)
    gan = model.get("generator").gan
    n, k = 500, 6
    context = np.random.default_rng(0).normal(size=(n, gan.context_dim)).astype("float32")
    with ctgan_model.fixed_threads():
        drawn = {}
        for native in (True, False):  # bfloat16 instructions, or the same rounded values in float32
            monkeypatch.setattr(ctgan_model, "native_bfloat16", lambda device, native=native: native)
            drawn[native] = gan.sample_candidates(n, context, seed=3, k=k)
        exact = gan.sample_raw(n, context, seed=3, k=k)
    assert drawn[True].raw.shape == exact.shape == (n * k, gan.transformer.output_dimensions)
    # the same numbers up to the order of float32 sums (a rare bfloat16 rounding flip)
    assert float((drawn[True].raw - drawn[False].raw).abs().mean()) < 1e-4
    # candidates are rounded, but close; the kept ones are completed as an exact draw gives them
    assert 0 < float((drawn[True].raw - exact).abs().mean()) < 0.05
    kept = np.random.default_rng(1).integers(0, k, n) * n + np.arange(n)
    other = (kept // n + 1) % k * n + np.arange(n)  # another candidate of each row
    for native in (True, False):
        # a CPU without bfloat16 instructions multiplies bfloat16 in torch's fallback, whose sums'
        # order may follow the batch's shape: a rare rounding flip, never another candidate's row
        completed = drawn[native].complete(kept)
        differs = (completed - exact[torch.from_numpy(kept)]).abs().amax(dim=1)
        assert float((differs > 0).float().mean()) < 0.02 and float(differs.max()) < 0.01, native
        assert float((completed - exact[torch.from_numpy(other)]).abs().amax(dim=1).min()) > 0.05


def test_a_sampling_layer_reads_only_its_own_columns_of_wider_rows():
    """The sampling pass holds each layer's input as a view of wider rows; whatever lies beside
    the view (here NaN) never reaches the result (torch's bfloat16 kernel on AMX CPUs read past
    a strided view: whole generated rows came out NaN, differently from run to run)."""
    import torch

    from synth_pipeline.modeling.ctgan_model import _layer

    generator = torch.Generator().manual_seed(0)
    for trial in range(60):
        m = (3, 7, 50, 130, 1000)[trial % 5]
        rows = torch.full((m, 512 + 75), float("nan"), dtype=torch.bfloat16)
        rows[:, 512:] = torch.randn(m, 75, generator=generator).to(torch.bfloat16)
        weight = (torch.randn(75, 256, generator=generator) * 0.1).to(torch.bfloat16)
        bias = torch.randn(256, generator=generator).to(torch.bfloat16)
        expected = torch.addmm(bias.float(), rows[:, 512:].float(), weight.float())
        for native in (True, False):
            out = _layer(weight, bias, rows[:, 512:], None, 1, native).float()
            assert torch.isfinite(out).all(), (m, native)
            assert float((out - expected).abs().max()) < 0.1, (m, native)


def test_category_pairs_the_real_data_never_shows_are_redrawn():
    from synth_pipeline.modeling.pair_support import fit_pair_supports

    rng = np.random.default_rng(0)
    positions = {"football": ["goalkeeper", "striker", "defender"], "basketball": ["center", "guard"],
                 "chess": ["board 1", "board 2"]}
    game = rng.choice(list(positions), 600)
    real = pd.DataFrame({"game": game, "position": [rng.choice(positions[g]) for g in game],
                         "level": rng.choice(["junior", "senior"], 600)})
    supports = fit_pair_supports(real, ["game", "position", "level"])
    assert [(s.leader, s.follower) for s in supports] == [("game", "position")]  # level is independent
    shuffled = real.assign(position=rng.permutation(real["position"].to_numpy()))  # pairs broken
    impossible = ~shuffled.apply(lambda r: r["position"] in positions[r["game"]], axis=1)
    assert impossible.mean() > 0.4
    changed = supports[0].apply(shuffled, np.random.default_rng(1))
    assert changed == impossible.sum()
    assert shuffled.apply(lambda r: r["position"] in positions[r["game"]], axis=1).all()
    assert (shuffled["game"] == real["game"]).all()  # the leader is left as generated


def test_siblings_share_categories_as_often_as_real_siblings_do():
    from synth_pipeline.modeling.siblings import SiblingSpread

    rng = np.random.default_rng(0)
    years = ["2020", "2021", "2022", "2023", "2024"]
    rows = []
    for student in range(300):
        start = rng.integers(0, 4)
        for _ in range(rng.integers(1, 8)):  # each student's enrollments within two consecutive years
            rows.append((student, years[start + rng.integers(0, 2)]))
    real = pd.DataFrame(rows, columns=["student_id", "year"])
    spread = SiblingSpread.fit(real, "student_id", "year", seed=0)
    assert spread is not None
    assert SiblingSpread.fit(real.assign(year=rng.permutation(real["year"].to_numpy())), "student_id", "year", 0) is None
    synthetic = real.assign(year=rng.permutation(real["year"].to_numpy()))  # siblings independent
    distinct = lambda f: f.groupby("student_id")["year"].nunique().mean()  # noqa: E731
    assert distinct(synthetic) > distinct(real) + 0.5
    changed = spread.apply(synthetic, np.random.default_rng(1))
    assert changed > 0 and len(synthetic) == len(real)
    assert abs(distinct(synthetic) - distinct(real)) < 0.15
    shares = [f["year"].value_counts(normalize=True) for f in (real, synthetic)]
    assert shares[0].subtract(shares[1], fill_value=0).abs().sum() < 0.15  # the marginal barely moves


def test_parents_whose_children_share_one_value_keep_the_real_shares_of_that_value():
    """40 courses, 1-3 instructors each, all in one academic year: one draw per course moves
    the year's marginal far; the spread keeps one year per course and the real counts."""
    from synth_pipeline.modeling.siblings import SiblingSpread

    rng = np.random.default_rng(0)
    years = np.array(["2022", "2023", "2024"])
    sizes = rng.integers(1, 4, 40)
    real = pd.DataFrame({"course_id": np.repeat(np.arange(40), sizes),
                         "year": np.repeat(rng.choice(years, 40, p=[0.3, 0.4, 0.3]), sizes)})
    spread = SiblingSpread.fit(real, "course_id", "year", seed=0)
    assert spread is not None and set(spread.distinct_by_size) == {1, 2, 3}
    real_counts = real["year"].value_counts()
    errors = {}
    for shares in (spread.shares, {}):
        errors[bool(shares)] = []
        for seed in range(20):
            synthetic = real.assign(year=np.random.default_rng(seed).choice(years, len(real)))
            SiblingSpread(spread.column, spread.foreign_key, spread.distinct_by_size, shares).apply(
                synthetic, np.random.default_rng(seed))
            assert (synthetic.groupby("course_id")["year"].nunique() == 1).all()
            counts = synthetic["year"].value_counts().reindex(real_counts.index, fill_value=0)
            errors[bool(shares)].append(int((counts - real_counts).abs().max()))
    assert max(errors[True]) <= 3  # off by at most about one course
    assert np.mean(errors[False]) > 2 * np.mean(errors[True]) + 3  # a draw per course is far off


def test_a_number_that_is_another_times_a_category_price_is_rebuilt_exactly():
    rng = np.random.default_rng(0)
    menu = {"sandwich": 3.5, "juice": 1.5, "cookie": 0.5, "pasta": 4.25}
    item = rng.choice(list(menu), 500)
    qty = rng.choice([1, 2, 3, 4], 500)
    frame = pd.DataFrame({"item": item, "quantity": qty, "amount": np.round(qty * pd.Series(item).map(menu), 2),
                          "tip": np.round(rng.uniform(0, 2, 500), 2)})
    kinds = {"item": "categorical", "quantity": "numerical", "amount": "numerical", "tip": "numerical"}
    derived = DerivedColumns.discover(frame, kinds)
    assert "amount = quantity x factor of item" in {d.description for d in derived.derivations}
    assert "amount" in derived.dropped and "tip" not in derived.dropped
    learned = derived.forward(frame, None).assign(  # generated quantities and items, any pairing
        quantity=rng.choice([1, 2, 3, 4], 500), item=rng.choice(list(menu), 500))
    rebuilt = derived.inverse(learned, None)
    expected = np.round(rebuilt["quantity"] * rebuilt["item"].map(menu), 2)
    assert np.allclose(rebuilt["amount"], expected)
    # a price that varies within an item is not a product rule
    noisy = frame.assign(amount=frame["amount"] * rng.uniform(0.9, 1.1, 500))
    assert "amount" not in DerivedColumns.discover(noisy, kinds).dropped


def test_numbers_take_the_real_distribution_within_the_category_that_shapes_them():
    from synth_pipeline.modeling.conditional import ConditionalQuantiles

    rng = np.random.default_rng(0)
    base = {"tuition": 1200.0, "lab": 200.0, "library": 50.0}
    kind = rng.choice(list(base), 900)
    year = rng.choice(["2021", "2022", "2023"], 900)
    due = pd.Series(kind).map(base).to_numpy() * rng.lognormal(0, 0.1, 900)
    day = pd.Series(year).map({"2021": 0, "2022": 365, "2023": 730}).to_numpy() + rng.integers(0, 300, 900)
    real = pd.DataFrame({"fee_type": kind, "amount_due": np.round(due, 2), "noise": rng.normal(0, 1, 900),
                         "paid_on": pd.Timestamp("2021-01-01") + pd.to_timedelta(day, unit="D")})
    parent = pd.DataFrame({"academic_year": year})
    kinds = {"fee_type": "categorical", "amount_due": "numerical", "noise": "numerical", "paid_on": "datetime"}
    found = {c.column: c for c in ConditionalQuantiles.fit_all(real, kinds, parent, {"academic_year": "categorical"})}
    assert found["amount_due"].leader == "fee_type" and not found["amount_due"].from_parent
    assert found["paid_on"].leader == "academic_year" and found["paid_on"].from_parent
    assert "noise" not in found  # no category explains it
    # generated: right marginals, categories and numbers paired at random
    synthetic = real.assign(fee_type=rng.permutation(kind), paid_on=rng.permutation(real["paid_on"].to_numpy()))
    spread = lambda f: f.groupby("fee_type")["amount_due"].median()  # noqa: E731
    assert (spread(synthetic) / spread(real)).sub(1).abs().max() > 0.5
    order = synthetic["amount_due"].rank().to_numpy()
    for c in found.values():
        c.apply(synthetic, parent)
    assert (spread(synthetic) / spread(real)).sub(1).abs().max() < 0.05
    for fee_type in base:  # the generated order within a category is kept
        rows = (synthetic["fee_type"] == fee_type).to_numpy()
        assert pd.Series(order[rows]).corr(synthetic.loc[rows, "amount_due"].rank().reset_index(drop=True),
                                           method="spearman") > 0.99
    years = synthetic["paid_on"].dt.year.astype(str).str.cat(parent["academic_year"], sep="/")
    assert (synthetic["paid_on"].dt.year == parent["academic_year"].astype(int)).mean() > 0.95, years.head()


def test_tiny_run_keeps_parent_copies_route_owners_and_prices(tiny_run):
    """Rules that hold in every real row hold in the synthetic school, even after a 20-step
    GAN: a course's department is its lead teacher's (copied from the synthetic parent), each
    route has one in-charge teacher (one parent per group), and a canteen amount is the
    quantity times the item's price (rebuilt, not generated)."""
    import duckdb

    config, _ = tiny_run
    checks = {
        "course department is the lead teacher's":
            "SELECT avg((c.department = t.department)::int) FROM courses c JOIN teachers t ON c.lead_teacher_id = t.teacher_id",
        "one in-charge teacher per route":
            "SELECT avg((n = 1)::int) FROM (SELECT route_name, count(DISTINCT route_incharge_teacher_id) n "
            "FROM transport_assignments GROUP BY 1)",
        "one price per item":
            "SELECT avg((n = 1)::int) FROM (SELECT item_description, count(DISTINCT round(amount / quantity, 4)) n "
            "FROM canteen_transactions GROUP BY 1)",
    }
    for db in ("real", "synthetic"):
        con = duckdb.connect(str(config.out_dir / f"{db}.duckdb"), read_only=True)
        for label, sql in checks.items():
            assert con.execute(sql).fetchone()[0] == 1.0, f"{db}: {label}"
        con.close()


def test_an_inequality_that_holds_only_by_units_is_not_learned_as_a_ratio():
    rng = np.random.default_rng(0)
    frame = pd.DataFrame({"price": rng.choice([0.99, 1.99], 300), "milliseconds": rng.integers(60_000, 600_000, 300),
                          "paid": rng.uniform(0, 1, 300)})
    frame["due"] = frame["paid"] + rng.uniform(0, 1, 300)
    kinds = {c: "numerical" for c in frame.columns}
    found = {d.description for d in DerivedColumns.discover(frame, kinds).derivations}
    assert "paid = ratio x due" in found  # overlapping ranges: a real rule
    assert not any("price" in d for d in found)  # price < milliseconds only because of the units


def test_whole_numbers_get_one_label_whether_or_not_the_column_has_nulls():
    from synth_pipeline.stats import labels

    assert labels(pd.Series([9.0, None, 10.0])).tolist() == ["9", "__null__", "10"]  # a parent column with orphans
    assert labels(pd.Series([9, 10])).tolist() == ["9", "10"]
    assert labels(pd.Series([0.5, 1.0])).tolist() == ["0.5", "1.0"]  # real fractions stay as written


def _catalog(rng: np.random.Generator, n: int = 40) -> pd.DataFrame:
    """A small course catalog: the subject sets the department, the numeral the level; most
    names occur once, a few two or three times (as in the school's 40 courses)."""
    subjects = {"Algebra": "Mathematics", "Statistics": "Mathematics", "Drama": "English", "Rhetoric": "English",
                "Ecology": "Science", "Astronomy": "Science", "Networks": "Computer Science",
                "Databases": "Computer Science", "Swimming": "Physical Education", "Theatre": "Arts"}
    levels = {"I": "Foundation", "II": "Intermediate", "III": "Advanced", "IV": "Honors"}
    pairs = [(s, r) for s in subjects for r in levels]
    picked = [pairs[i] for i in rng.choice(len(pairs), n - 8, replace=False)]
    picked += picked[:4] + picked[:4]  # four names taken three times
    return pd.DataFrame({
        "name": [f"{s} {r}" for s, r in picked], "department": [subjects[s] for s, _ in picked],
        "level": [levels[r] for _, r in picked], "credits": rng.choice([2, 3, 4, 5], n),
        "active": rng.random(n) < 0.8})


def test_a_many_valued_category_determines_a_column_only_where_its_repeats_agree_beyond_chance():
    rng = np.random.default_rng(0)
    frame = _catalog(rng)
    kinds = {"name": "categorical", "department": "categorical", "level": "categorical", "credits": "numerical",
             "active": "boolean"}
    found = {d.description for d in DerivedColumns.discover(frame, kinds).derivations}
    assert {"name -> department", "name -> level"} <= found
    assert not any(d.startswith("name -> credits") or d.startswith("name -> active") for d in found)
    # the same catalog without repeated names: every column is trivially "determined", no evidence
    unique = frame.drop_duplicates("name").reset_index(drop=True)
    assert not {d.description for d in DerivedColumns.discover(unique, kinds).derivations} & {
        "name -> department", "name -> level"}
    derived = DerivedColumns.discover(frame, kinds)
    generated = pd.DataFrame({"name": rng.choice(frame["name"].to_numpy(), 200), "credits": 3, "active": True})
    rebuilt = derived.inverse(generated, None)
    truth = frame.drop_duplicates("name").set_index("name")
    assert (rebuilt["department"].to_numpy() == truth.loc[rebuilt["name"], "department"].to_numpy()).all()


def test_a_number_on_a_line_of_a_date_is_rebuilt_from_the_generated_date():
    rng = np.random.default_rng(0)
    n = 60
    years = np.clip(rng.gamma(2.2, 5.0, n).round(), 0, 40).astype(int)
    hired = pd.Timestamp("2025-06-30") - pd.to_timedelta(years * 365 + rng.integers(0, 300, n), unit="D")
    frame = pd.DataFrame({"experience_years": years, "hire_date": hired, "rating": rng.normal(3, 1, n).round(1)})
    kinds = {"experience_years": "numerical", "hire_date": "datetime", "rating": "numerical"}
    derived = DerivedColumns.discover(frame, kinds)
    linear = [d for d in derived.derivations if d.kind == "linear"]
    assert [(d.column, d.anchor) for d in linear] == [("experience_years", "hire_date")]
    learned = derived.forward(frame, None)
    assert learned["experience_years"].abs().max() < 1.5  # the GAN learns a residual of about a year
    rebuilt = derived.inverse(learned, None)
    assert (rebuilt["experience_years"] == frame["experience_years"]).all()
    # generated dates in another order: the years follow the dates, not the rows
    shuffled = learned.assign(hire_date=frame["hire_date"].sample(frac=1, random_state=1).to_numpy())
    rebuilt = derived.inverse(shuffled, None)
    assert np.corrcoef(rebuilt["experience_years"], rebuilt["hire_date"].astype("int64"))[0, 1] < -0.98
    # an unrelated number is left to the GAN
    assert "rating" not in {d.column for d in derived.derivations}


def test_each_course_gets_one_lead_and_the_lead_row_links_the_course_lead_teacher():
    from synth_pipeline.modeling.bridges import link_by_bridge
    from synth_pipeline.modeling.siblings import OnePerParent
    from synth_pipeline.schema.paths import fit_bridge

    rng = np.random.default_rng(0)
    teachers = pd.DataFrame({"teacher_id": [f"T{i}" for i in range(30)]})
    courses = pd.DataFrame({"course_id": [f"C{i}" for i in range(40)],
                            "lead_teacher_id": rng.choice(teachers["teacher_id"], 40)})
    rows = []
    for course, lead in zip(courses["course_id"], courses["lead_teacher_id"]):
        rows.append((course, lead, "lead", rng.choice(["Fall", "Spring"])))
        others = rng.choice(teachers["teacher_id"][teachers["teacher_id"] != lead], rng.integers(0, 3), replace=False)
        rows += [(course, t, rng.choice(["assistant", "co-instructor"]), rng.choice(["Fall", "Spring"])) for t in others]
    instructors = pd.DataFrame(rows, columns=["course_id", "teacher_id", "role", "term"])
    instructors.insert(0, "course_instructor_id", [f"CI{i}" for i in range(len(instructors))])
    metadata = Metadata.from_dict({
        "tables": {
            "teachers": {"primary_key": "teacher_id", "columns": {"teacher_id": {"sdtype": "id"}}},
            "courses": {"primary_key": "course_id", "columns": {"course_id": {"sdtype": "id"},
                                                                "lead_teacher_id": {"sdtype": "id"}}},
            "course_instructors": {"primary_key": "course_instructor_id", "columns": {
                "course_instructor_id": {"sdtype": "id"}, "course_id": {"sdtype": "id"},
                "teacher_id": {"sdtype": "id"}, "role": {"sdtype": "categorical"}, "term": {"sdtype": "categorical"}}}},
        "relationships": [
            {"parent_table_name": "teachers", "parent_primary_key": "teacher_id", "child_table_name": "courses",
             "child_foreign_key": "lead_teacher_id"},
            {"parent_table_name": "courses", "parent_primary_key": "course_id",
             "child_table_name": "course_instructors", "child_foreign_key": "course_id"},
            {"parent_table_name": "teachers", "parent_primary_key": "teacher_id",
             "child_table_name": "course_instructors", "child_foreign_key": "teacher_id"}]})
    real = {"teachers": teachers, "courses": courses, "course_instructors": instructors}
    ones = OnePerParent.fit_all(instructors, "course_id", "role")
    assert [(o.column, o.value) for o in ones] == [("role", "lead")]
    assert OnePerParent.fit_all(instructors, "course_id", "term") == []
    # generated roles ignore the rule: some courses with no lead, some with three
    generated = instructors.assign(role=rng.choice(["lead", "assistant", "co-instructor"], len(instructors)))
    ones[0].apply(generated, rng)
    leads = (generated["role"] == "lead").groupby(generated["course_id"]).sum()
    assert (leads == 1).all() and len(leads) == 40
    bridge = fit_bridge(metadata, metadata.second_relationships("course_instructors")[0], real, 0)
    assert bridge is not None and bridge.by == "role"
    assert bridge.rate_by["lead"] == 1.0 and bridge.rate_by["assistant"] == 0.0
    route = generated["course_id"].to_numpy(dtype=object)
    capacity = np.full(30, len(generated) / 30)
    linked = link_by_bridge(route, courses, bridge, teachers["teacher_id"].to_numpy(dtype=object), capacity, rng,
                            generated["role"].to_numpy(dtype=object))
    lead_of = courses.set_index("course_id")["lead_teacher_id"]
    is_lead = generated["role"].to_numpy() == "lead"
    follows = linked == lead_of.reindex(route).to_numpy()
    assert follows[is_lead].mean() >= 0.9  # as far as the teachers' capacities allow
    assert follows[~is_lead].mean() <= 0.1  # only chance links


def test_a_name_follows_the_department_copied_from_its_parent():
    from synth_pipeline.modeling.pair_support import fit_determined_supports

    rng = np.random.default_rng(0)
    frame = _catalog(rng)
    supports = fit_determined_supports(frame, ["name", "level", "active"], ["department"])
    assert [(s.leader, s.follower) for s in supports] == [("department", "name")]
    # names drawn with no regard to the (copied) department: each is moved to a real name of it
    generated = pd.DataFrame({"department": rng.choice(frame["department"].to_numpy(), 300),
                              "name": rng.choice(frame["name"].to_numpy(), 300)})
    supports[0].apply(generated, rng)
    truth = frame.drop_duplicates("name").set_index("name")["department"]
    assert (generated["name"].map(truth) == generated["department"]).all()
    assert generated["name"].nunique() >= 0.8 * frame["name"].nunique()


def test_near_unique_names_keep_their_real_counts_within_their_department():
    from synth_pipeline.modeling.pair_support import NameQuota, fit_determined_supports

    rng = np.random.default_rng(0)
    frame = _catalog(rng)
    supports = fit_determined_supports(frame, ["name"], ["department"])
    quota = NameQuota.fit(frame, "name", supports)
    assert quota is not None and quota.leader == "department"
    assert NameQuota.fit(frame, "department", supports) is None  # 6 values over 40 rows: no catalog
    # names drawn row by row, each consistent with its department, collide
    generated = frame[["department", "name"]].copy()
    by_department = frame.groupby("department")["name"].apply(list).to_dict()
    generated["name"] = [rng.choice(by_department[d]) for d in generated["department"]]
    before = generated["name"].value_counts()
    quota.apply(generated, rng)
    after = generated["name"].value_counts()
    real = frame["name"].value_counts()
    truth = frame.drop_duplicates("name").set_index("name")["department"]
    assert (generated["name"].map(truth) == generated["department"]).all()
    gap = lambda counts: (counts.reindex(real.index, fill_value=0) - real).abs().sum()  # noqa: E731
    assert gap(after) == 0 and gap(before) > 10


def test_one_owner_per_account_under_a_second_foreign_key_by_swapping_links():
    from synth_pipeline.modeling.siblings import OnePerParent

    rng = np.random.default_rng(0)
    accounts = np.repeat(np.arange(300), rng.choice([1, 2], 300, p=[0.8, 0.2]))
    real = pd.DataFrame({"account_id": accounts, "client_id": rng.permutation(len(accounts)),
                         "type": np.where(pd.Series(accounts).duplicated(), "DISPONENT", "OWNER")})
    ones = OnePerParent.fit_all(real, "account_id", "type")
    assert [(o.value, o.foreign_key) for o in ones] == [("OWNER", "account_id")]
    # generated: the right types and the right accounts' sizes, linked with no regard to type
    generated = real.assign(account_id=rng.permutation(real["account_id"].to_numpy()))
    sizes = generated.groupby("account_id").size()
    assert ((generated["type"] == "OWNER").groupby(generated["account_id"]).sum() != 1).sum() > 30
    ones[0].relink(generated, rng)
    owners = (generated["type"] == "OWNER").groupby(generated["account_id"]).sum()
    assert (owners == 1).all() and len(owners) == 300
    assert generated.groupby("account_id").size().equals(sizes)  # every account keeps its children
    assert (generated["type"] == "OWNER").sum() == 300  # swaps sufficed: no type changed


def test_only_the_department_that_coaches_gets_games_to_coach():
    from synth_pipeline.modeling.cardinality import CountsWithin

    rng = np.random.default_rng(0)
    department = rng.choice(["PE", "Maths", "History", "Arts"], 60)
    coached = np.where(department == "PE", rng.integers(0, 40, 60), 0)
    teachers = pd.DataFrame({"department": department, "status": rng.choice(["active", "retired"], 60),
                             "__children__games__coach_id": coached})
    found = CountsWithin.fit(teachers, "__children__games__coach_id", coached, ["department", "status"])
    assert found is not None and found.column == "department" and found.values == ("PE",)
    # the same counts spread over every department: no rule
    assert CountsWithin.fit(teachers, "__children__games__coach_id", rng.permutation(coached),
                            ["department", "status"]) is None
    # a 30-valued category: ten parents with children cover at most ten values by chance alone
    rooms = np.repeat([f"R{i}" for i in range(30)], 2)
    some = np.zeros(60, dtype=int)
    some[rng.choice(60, 10, replace=False)] = 5
    assert CountsWithin.fit(teachers.assign(room=rooms), "c", some, ["room"]) is None
    generated = teachers.assign(**{"__children__games__coach_id": rng.permutation(coached)})
    found.apply(generated, rng)
    counts = generated["__children__games__coach_id"]
    assert (counts[generated["department"] != "PE"] == 0).all()
    assert sorted(counts) == sorted(coached)  # the same counts, moved onto coaching parents


def test_moving_rows_off_real_rows_keeps_one_lead_and_one_year_per_course():
    """Rows equal to a unique real row are moved off it by swapping values between rows; the
    role a once-per-parent rule set and the year a course's rows share must not be among the
    swapped columns."""
    from synth_pipeline.modeling.mechanisms import OneValuePerParent, SiblingSpreads
    from synth_pipeline.modeling.siblings import OnePerParent, SiblingSpread
    from synth_pipeline.repair import _break_copies
    from synth_pipeline.stats import unique_row_digests

    rng = np.random.default_rng(0)
    sizes = rng.integers(1, 4, 40)
    courses = np.repeat([f"C{i}" for i in range(40)], sizes)
    roles = np.where(pd.Series(courses).duplicated(), rng.choice(["assistant", "co-instructor"], len(courses)), "lead")
    real = pd.DataFrame({"course_id": courses, "role": roles, "term": rng.choice(["Fall", "Spring"], len(courses)),
                         "year": np.repeat(rng.choice(["2023", "2024"], 40), sizes),
                         "room": [f"R{i}" for i in rng.permutation(len(courses))]})  # every real row unique
    columns = ["role", "term", "year", "room"]
    ones, spread = OnePerParent.fit_all(real, "course_id", "role"), SiblingSpread.fit(real, "course_id", "year", seed=0)
    assert ones and spread is not None
    model = TableModel("course_instructors", real_row_digests=unique_row_digests(real, columns), copy_columns=columns,
                       mechanisms=[SiblingSpreads([spread]), OneValuePerParent(ones)])
    assert model.real_row_digests is not None and len(model.real_row_digests)
    synthetic = real.copy()  # odd rows copies of a real row, even rows not
    synthetic.loc[::2, "term"] = synthetic.loc[::2, "term"].map({"Fall": "Spring", "Spring": "Fall"})
    fixed, unfixed = _break_copies(synthetic, model, rng)
    assert fixed > 0 and unfixed == 0
    assert ((synthetic["role"] == "lead").groupby(synthetic["course_id"]).sum() == 1).all()
    assert (synthetic.groupby("course_id")["year"].nunique() == 1).all()
    assert (synthetic[["role", "year"]] == real[["role", "year"]]).all().all()  # broken on the other columns


def test_a_lookup_table_keeps_its_labels_and_each_label_its_real_children():
    """Five media types with 3,034 / 237 / 214 / 11 / 7 tracks: rank calibration alone would
    hand those counts to the labels at random; each label keeps its own."""
    from synth_pipeline.modeling.cardinality import LabelCounts

    real = pd.DataFrame({"name": ["mpeg", "aac protected", "video", "aac", "aac purchased"],
                         "__children__track__media_id": [3034, 237, 214, 11, 7]})
    counts = {"__children__track__media_id": real["__children__track__media_id"].to_numpy()}
    lookup = LabelCounts.fit(real, ["name"], counts)
    assert lookup is not None
    assert LabelCounts.fit(real.assign(name=["a", "a", "b", "c", "d"]), ["name"], counts) is None  # not a label per row
    rng = np.random.default_rng(0)
    for scale in (1, 3):
        synthetic = pd.DataFrame({"name": rng.choice(real["name"], 5 * scale),  # labels repeat, some missing
                                  "__children__track__media_id": rng.permutation(np.tile([3034, 237, 214, 11, 7], scale))})
        lookup.apply(synthetic, rng)
        assert (synthetic["name"].value_counts() == scale).all() and synthetic["name"].nunique() == 5
        per_label = synthetic.groupby("name")["__children__track__media_id"].unique()
        assert {k: list(v) for k, v in per_label.items()} == {k: [v] for k, v in zip(real["name"], counts[
            "__children__track__media_id"])}


def test_a_state_is_redrawn_within_its_country_and_countries_without_states_get_none():
    """Chinook's customers: each state lies in one country, and a country has states or none.
    A generated 'SP' in the United Kingdom becomes no state; a US customer without one gets one."""
    from synth_pipeline.modeling.pair_support import fit_nested_supports

    rng = np.random.default_rng(0)
    states = {"USA": ["CA", "WA", "NY", "TX", "FL"], "Brazil": ["SP", "RJ", "DF"], "Canada": ["ON", "QC", "BC"],
              "United Kingdom": [None], "Germany": [None], "France": [None]}
    country = rng.choice(list(states), 60, p=[0.3, 0.15, 0.15, 0.15, 0.15, 0.1])
    real = pd.DataFrame({"country": country, "state": [rng.choice(states[c]) for c in country]})
    supports = fit_nested_supports(real, ["country", "state"])
    assert [(s.leader, s.follower) for s in supports] == [("country", "state")]
    independent = real.assign(state=rng.permutation(real["state"].to_numpy()))
    assert fit_nested_supports(independent, ["country", "state"]) == []
    synthetic = real.assign(state=rng.permutation(real["state"].to_numpy()))  # states in the wrong countries
    supports[0].apply(synthetic, rng)
    home = {s: c for c, values in states.items() for s in values if s}
    for c, s in zip(synthetic["country"], synthetic["state"]):
        assert (s is None and states[c] == [None]) or home.get(s) == c, (c, s)


def test_a_group_goes_to_a_parent_with_its_signature_only_while_that_parent_has_room():
    """Two routes want a Mathematics in-charge; the one Mathematics teacher has room for one
    route, so the other goes to the teacher with room, not onto the full one."""
    from synth_pipeline.modeling.linking import link_groups

    routes = np.repeat(["R1", "R2", "R3"], [15, 14, 12])
    wanted = np.array(["Mathematics"] * 29 + ["English"] * 12)
    keys = np.array(["t_math", "t_eng", "t_pe", "t_idle"], dtype=object)
    capacity = np.array([15, 12, 14, 0])
    linked = link_groups(routes, keys, capacity, np.random.default_rng(0), wanted,
                         np.array(["Mathematics", "English", "Physical Education", "History"]))
    per_teacher = pd.Series(linked).value_counts().to_dict()
    assert per_teacher == {"t_math": 15, "t_pe": 14, "t_eng": 12}  # each route on one teacher, none twice


def test_a_group_goes_to_a_parent_dated_before_all_its_rows():
    """An assignment is never led by a teacher hired after it starts. The route whose
    passes start earliest goes to the teacher hired before them, even with less room, so
    the repair (which swaps parents between rows to keep that rule) never splits a route."""
    from synth_pipeline.modeling.linking import link_groups

    routes = np.repeat(["R1", "R2"], [20, 10])
    starts = np.r_[np.full(20, 100.0), np.full(10, 500.0)]  # days: R1's passes start early
    keys = np.array(["t_new", "t_old"], dtype=object)
    capacity, hired = np.array([20, 10]), np.array([300.0, 50.0])
    undated = link_groups(routes, keys, capacity, np.random.default_rng(0))
    assert set(undated[:20]) == {"t_new"}  # by room alone, R1 would go to the teacher hired later
    linked = link_groups(routes, keys, capacity, np.random.default_rng(0), dated=[(starts, hired)])
    assert set(linked[:20]) == {"t_old"} and set(linked[20:]) == {"t_new"}


def test_copies_are_broken_by_swapping_a_shared_year_between_one_students_enrollments_first():
    """A student's enrollments span two academic years (a sibling spread). Rows equal to a
    unique real row first swap their year with another enrollment of the same student, which
    keeps that student's years; only what that cannot free swaps with other students."""
    from types import SimpleNamespace

    from synth_pipeline.modeling.mechanisms import SiblingSpreads
    from synth_pipeline.modeling.siblings import SiblingSpread
    from synth_pipeline.repair import _break_copies
    from synth_pipeline.stats import unique_row_digests

    rng = np.random.default_rng(0)
    rows = []
    for student in range(120):  # two to five enrollments over two consecutive years, both used
        start, size = rng.integers(0, 4), rng.integers(2, 6)
        years = rng.permutation([0, 1] + list(rng.integers(0, 2, size - 2)))
        rows += [(student, f"{2019 + start + y}-{2020 + start + y}", f"C{student}-{k}") for k, y in enumerate(years)]
    real = pd.DataFrame(rows, columns=["student_id", "year", "course"])  # every real row unique
    columns = ["year", "course"]
    spread = SiblingSpread.fit(real, "student_id", "year", seed=0)
    assert spread is not None
    fixed_course = [SimpleNamespace(columns=("course",), kind="functional_dependency")]  # only the year may move
    kept = {}
    for spreads in ([spread], []):
        model = TableModel("enrollments", real_row_digests=unique_row_digests(real, columns), copy_columns=columns,
                           constraints=fixed_course, mechanisms=[SiblingSpreads(spreads)] if spreads else [])
        synthetic = real.assign(course=real.groupby("student_id")["course"].transform(lambda c: c.iloc[::-1].to_numpy()))
        before = synthetic.groupby("student_id")["year"].apply(sorted)
        fixed, unfixed = _break_copies(synthetic, model, np.random.default_rng(1))
        assert fixed > 100 and unfixed == 0  # no copy left either way
        kept[bool(spreads)] = (synthetic.groupby("student_id")["year"].apply(sorted) == before).mean()
    assert kept[True] >= kept[False] + 0.05  # more students keep exactly their years


def test_a_small_tables_children_keep_their_real_totals_per_category():
    """Sixty teachers lead forty courses, six or so per department; the generated counts,
    placed at random, give some department three and another nine. Swapping counts between
    teachers brings every department's total (and every status's) back to the real one."""
    from synth_pipeline.modeling.cardinality import CountTotals

    rng = np.random.default_rng(1)
    departments = np.repeat(["Arts", "Maths", "Science", "History", "English", "PE"], 10)
    led = np.zeros(60, dtype=int)
    for d in range(6):  # 6, 7, 6, 7, 6, 8 courses per department, over its ten teachers
        np.add.at(led, d * 10 + rng.integers(0, 10, [6, 7, 6, 7, 6, 8][d]), 1)
    real = pd.DataFrame({"department": departments, "status": rng.choice(["active", "on_leave"], 60, p=[.8, .2]),
                         "name": [f"T{i}" for i in range(60)]})
    found = CountTotals.fit(real, "__children__courses__lead", led, ["department", "status", "name"])
    assert found is not None and set(found.shares) == {"department", "status"}  # a name per row: no totals
    real_totals = pd.Series(led).groupby(departments).sum()

    def gap(frame):
        totals = frame["__children__courses__lead"].groupby(frame["department"].to_numpy()).sum()
        return int((totals - real_totals).abs().sum())

    gaps_before, gaps_after = [], []
    for seed in range(10):
        draw = np.random.default_rng(seed)
        generated = real.assign(status=draw.choice(["active", "on_leave"], 60, p=[.8, .2]),
                                **{"__children__courses__lead": draw.permutation(led)})
        gaps_before.append(gap(generated))
        found.apply(generated, draw)
        gaps_after.append(gap(generated))
        assert sorted(generated["__children__courses__lead"]) == sorted(led)  # the same counts, moved
    assert np.mean(gaps_before) > 8, gaps_before  # chance alone misplaces about ten courses
    assert max(gaps_after) <= 2, gaps_after


def test_a_date_whose_gap_goes_with_the_earlier_date_is_rebuilt_backwards():
    """Students enrol over five years at ages 5 to 16: the age is unrelated to the enrollment
    date, strongly related to the birth date. The birth date is rebuilt as the enrollment
    date minus the age, so an independent generated age keeps both the birth dates' and the
    pair's real shape; a transport pass's length, unrelated to its start, stays a gap forward."""
    rng = np.random.default_rng(0)
    n = 600
    enrolled = pd.Timestamp("2019-08-15") + pd.to_timedelta(rng.integers(0, 5 * 365, n), unit="D")
    born = enrolled - pd.to_timedelta(rng.integers(5 * 365, 17 * 365, n), unit="D")
    start = pd.Timestamp("2022-01-01") + pd.to_timedelta(rng.integers(0, 700, n), unit="D")
    frame = pd.DataFrame({"born": born, "enrolled": enrolled, "start": start,
                          "end": start + pd.to_timedelta(rng.integers(30, 300, n), unit="D")})
    kinds = dict.fromkeys(frame.columns, "datetime")
    derived = DerivedColumns.discover(frame, kinds)
    found = {d.description for d in derived.derivations}
    assert {"born = enrolled - gap", "end = start + gap"} <= found, found
    learned = derived.forward(frame, None)
    assert (learned["born"] > 0).all() and (learned["end"] > 0).all()  # gaps, never negative
    # what a generator learns independently of the anchor comes back with the real correlation
    generated = learned.assign(born=rng.permutation(learned["born"].to_numpy()))
    rebuilt = derived.inverse(generated, None)
    assert (rebuilt["born"] < rebuilt["enrolled"]).all()
    days = lambda s: (s - pd.Timestamp("1970-01-01")).dt.days
    real_r = np.corrcoef(days(frame["born"]), days(frame["enrolled"]))[0, 1]
    new_r = np.corrcoef(days(rebuilt["born"]), days(rebuilt["enrolled"]))[0, 1]
    assert abs(new_r - real_r) < 0.1, (real_r, new_r)
    # both rules are strict in every real row: a generated gap of nothing still leaves a day
    assert all(d.strict for d in derived.derivations if d.kind == "offset")
    touching = derived.inverse(learned.assign(born=0.0, end=0.0), None)
    assert (touching["born"] < touching["enrolled"]).all() and (touching["start"] < touching["end"]).all()


def test_a_payment_date_follows_its_due_date():
    """Fees are paid from 20 days early to 44 days late, some never: the payment date is
    rebuilt as the due date plus the learned residual, so a generated residual, however it
    is drawn, lands within those weeks of its own due date (not anywhere in five years)."""
    rng = np.random.default_rng(0)
    n = 500
    due = pd.Timestamp("2020-01-01") + pd.to_timedelta(rng.integers(0, 5 * 365, n), unit="D")
    paid = due + pd.to_timedelta(rng.integers(-20, 45, n), unit="D")
    frame = pd.DataFrame({"due": due, "paid": pd.Series(paid).where(rng.random(n) > 0.15)})
    kinds = {"due": "datetime", "paid": "datetime"}
    derived = DerivedColumns.discover(frame, kinds)
    assert [d.kind for d in derived.derivations if d.column == "paid"] == ["linear"]
    learned = derived.forward(frame, None)
    assert learned["paid"].abs().max() < 60  # a residual of days, not a date
    generated = learned.assign(paid=rng.permutation(learned["paid"].to_numpy()))
    rebuilt = derived.inverse(generated, None)
    gap = (rebuilt["paid"] - rebuilt["due"]).dt.days.dropna()
    assert pd.api.types.is_datetime64_any_dtype(rebuilt["paid"])
    assert gap.between(-25, 50).all() and rebuilt["paid"].isna().mean() == pytest.approx(0.15, abs=0.04)


def test_a_mark_date_follows_its_enrollments_year_and_term_together():
    """A mark is dated within its enrollment's academic year and, inside it, its term (Fall:
    September to December, Spring: February to May). Year alone would spread the dates over
    both terms; the two lead together and every mapped date falls in its own term."""
    from synth_pipeline.modeling.conditional import ConditionalQuantiles

    rng = np.random.default_rng(0)
    n = 3000
    year = rng.integers(2019, 2025, n)
    term = rng.choice(["Fall", "Spring"], n)
    start = pd.to_datetime([f"{y}-09-01" if t == "Fall" else f"{y + 1}-02-01" for y, t in zip(year, term)])
    dates = start + pd.to_timedelta(rng.integers(0, 110, n), unit="D")
    parent = pd.DataFrame({"academic_year": [f"{y}-{y + 1}" for y in year], "term": term})
    frame = pd.DataFrame({"assessed": dates})
    found = ConditionalQuantiles.fit_all(frame, {"assessed": "datetime"}, parent,
                                         {"academic_year": "categorical", "term": "categorical"})
    assert len(found) == 1 and found[0].leaders == ["academic_year", "term"], [f.label for f in found]
    generated = frame.assign(assessed=rng.permutation(frame["assessed"].to_numpy()))  # no link to the parent
    found[0].apply(generated, parent)
    month = generated["assessed"].dt.month
    in_term = np.where(term == "Fall", month >= 9, (month >= 2) & (month <= 5))
    assert in_term.all()
    # the year alone would not do: inside a year, dates fall in either term
    alone = ConditionalQuantiles.fit_all(frame, {"assessed": "datetime"}, parent, {"academic_year": "categorical"})
    generated = frame.assign(assessed=rng.permutation(frame["assessed"].to_numpy()))
    alone[0].apply(generated, parent)
    month = generated["assessed"].dt.month
    assert np.where(term == "Fall", month >= 9, (month >= 2) & (month <= 5)).mean() < 0.7



def test_a_table_seen_only_as_a_child_is_read_for_its_keys_and_numbers_and_the_model_is_the_same(school_metadata):
    """A fit reads of a table it sees only as a child its keys and numbers (its text can be
    most of a large table's memory); every model learns exactly what it learns from whole
    tables: children per parent, and a parent's total that is the sum of its children's."""
    from synth_pipeline.modeling.context import real_columns_for
    from synth_pipeline.sources.school import simulate_school

    rng = np.random.default_rng(4)
    lines = pd.DataFrame({"invoice_id": np.repeat(np.arange(400), rng.integers(1, 6, 400))})
    lines.insert(0, "line_id", np.arange(len(lines)))
    lines["price"], lines["qty"] = rng.integers(1, 50, len(lines)) + 0.5, rng.integers(1, 4, len(lines))
    lines["note"] = [f"line note {i}" for i in range(len(lines))]
    lines["kind"] = rng.choice(["a", "b"], len(lines))
    invoices = pd.DataFrame({"invoice_id": np.arange(400), "region": rng.choice(["n", "s"], 400),
                             "total": (lines.price * lines.qty).groupby(lines.invoice_id).sum().to_numpy()})
    shop = Metadata.from_dict({"tables": {
        "invoices": {"primary_key": "invoice_id", "columns": {
            "invoice_id": {"sdtype": "id"}, "region": {"sdtype": "categorical"}, "total": {"sdtype": "numerical"}}},
        "lines": {"primary_key": "line_id", "columns": {
            "line_id": {"sdtype": "id"}, "invoice_id": {"sdtype": "id"}, "price": {"sdtype": "numerical"},
            "qty": {"sdtype": "numerical"}, "note": {"sdtype": "text"}, "kind": {"sdtype": "categorical"}}}},
        "relationships": [{"parent_table_name": "invoices", "parent_primary_key": "invoice_id",
                           "child_table_name": "lines", "child_foreign_key": "invoice_id"}]})
    school = simulate_school(students=150, seed=4)
    settings = ModelSettings(steps=3)
    cases = [(shop, {"invoices": invoices, "lines": lines}, "invoices")] + \
        [(school_metadata, school, name) for name in ("teachers", "students", "student_courses")]
    for metadata, real, name in cases:
        columns = real_columns_for(metadata, name)
        assert columns[name] is None  # the table itself is read whole
        projected = {t: c for t, c in columns.items() if c is not None}
        assert projected, name
        for t, kept in projected.items():
            kinds = {c.name: c.sdtype for c in metadata.table(t).columns.values()}
            assert all(kinds[c] in ("numerical", "id") for c in kept) and set(kept) != set(kinds), (t, kept)
        whole = TableModel.fit(metadata, name, {t: real[t] for t in columns}, settings, 5)
        narrow = TableModel.fit(metadata, name, {t: real[t] if c is None else real[t][c]
                                                 for t, c in columns.items()}, settings, 5)
        assert whole.content_digest() == narrow.content_digest(), name
        if metadata is shop:
            assert any(c.kind == "child_sum" for c in narrow.constraints), narrow.constraints


def test_generated_numbers_are_binned_by_their_rank_taken_onto_the_real_distribution():
    """Pair raking bins a generated number by its rank among the generated values, mapped
    onto the real quantiles (as the codec's rank map publishes it); a missing one takes the
    last code. The partial-sort binning gives the codes of that definition, computed here
    with a full ranking."""
    from synth_pipeline.modeling.marginals import RakedColumn

    rng = np.random.default_rng(3)
    for trial in range(12):
        real = rng.gamma(2, 3, 4000) if trial % 2 else rng.integers(0, 4, 4000).astype(float)  # skewed; few values
        edges = np.unique(np.quantile(real, np.linspace(0, 1, 11))[1:-1])
        column = RakedColumn("x", edges, [str(i) for i in range(len(edges) + 1)],
                             np.quantile(real, np.linspace(0, 1, 201)))
        generated = rng.normal(0, 1, int(rng.integers(1, 5000)))
        if trial % 3 == 0:
            generated[rng.random(len(generated)) < 0.1] = np.nan
            generated[:1] = np.inf
        ranks = (pd.Series(generated).rank(method="first").to_numpy() - 0.5) / len(generated)
        expected = np.digitize(np.interp(ranks, np.linspace(0, 1, len(column.quantiles)), column.quantiles), edges)
        assert np.array_equal(column.codes(generated, generated=True), expected), trial
        assert len(np.unique(expected)) > 1
