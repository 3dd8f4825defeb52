"""Every column as real as its type: number ranges, supports and grids; timestamps' time of day."""

import numpy as np
import pandas as pd

from synth_pipeline.modeling.transforms import TableCodec
from synth_pipeline.schema.metadata import Column
from synth_pipeline.schema.number_shapes import NumberShape


def test_a_price_grid_ending_in_99_is_learned_and_kept():
    rng = np.random.default_rng(0)
    real = pd.Series(rng.integers(9, 30, 400) + 0.99)  # 9.99 .. 29.99, 21 values: a support
    shape = NumberShape.fit("replacement_cost", real)
    assert shape.support is not None and len(shape.support) == 21
    wild = pd.Series(rng.uniform(0, 120, 1000))  # what a derivation or residual could produce
    kept = shape.apply(wild)
    assert shape.breaks(wild) > 900 and shape.breaks(kept) == 0
    assert kept.min() >= 9.99 and kept.max() <= 29.99 and set(np.round(kept % 1, 2)) == {0.99}


def test_many_valued_columns_keep_their_step_and_range():
    rng = np.random.default_rng(1)
    half_points = pd.Series(rng.integers(0, 400, 3000) / 2)  # 0.0 .. 199.5 on a step of 0.5
    shape = NumberShape.fit("score", half_points)
    assert shape.support is None and shape.step == 0.5 and shape.offset == 0
    kept = shape.apply(pd.Series(rng.uniform(-50, 300, 2000)))
    assert shape.breaks(kept) == 0 and kept.min() >= 0 and kept.max() <= 199.5
    assert set(np.round(kept % 0.5, 9)) == {0.0}
    measures = pd.Series(rng.normal(50, 10, 3000))  # no grid: only the range holds
    loose = NumberShape.fit("weight", measures)
    assert loose.step is None or loose.step <= 0.001
    assert loose.breaks(loose.apply(pd.Series([-1e6, 1e6]))) == 0


def test_integer_columns_stay_integers_and_nulls_stay_null():
    real = pd.Series([1, 2, 3, 4, 5] * 20)
    shape = NumberShape.fit("rating", real)
    kept = shape.apply(pd.Series([0.2, 7.7, None, 3.4], dtype="float64"))
    assert kept.isna().tolist() == [False, False, True, False]
    assert kept.dropna().tolist() == [1, 5, 3]


def test_timestamps_keep_their_hours_and_constants_their_time():
    rng = np.random.default_rng(2)
    n = 5000
    hours = rng.choice(24, n, p=np.r_[np.full(8, 0.01), np.full(16, 0.92 / 16)])  # few rentals at night
    stamps = pd.Series(pd.Timestamp("2005-05-24") + pd.to_timedelta(rng.integers(0, 90, n), "D")) \
        + pd.to_timedelta(hours * 3600 + rng.integers(0, 3600, n), "s")
    frame = pd.DataFrame({"rental_date": stamps, "last_update": pd.Timestamp("2006-02-15 21:30:53")})
    codec = TableCodec.fit(frame, [Column("rental_date", "datetime"), Column("last_update", "datetime")])
    encoded = codec.encode(frame)
    # a generator's output: the right days, its own (uniform) fractions of a day
    encoded["rental_date"] = np.floor(encoded["rental_date"]) + rng.random(n)
    encoded["last_update"] = encoded["last_update"] + rng.normal(0, 0.3, n)
    decoded = codec.decode(encoded)
    real_hours = stamps.dt.hour.value_counts(normalize=True).reindex(range(24), fill_value=0)
    syn_hours = decoded["rental_date"].dt.hour.value_counts(normalize=True).reindex(range(24), fill_value=0)
    assert (real_hours - syn_hours).abs().max() <= 0.02
    assert (decoded["rental_date"] != decoded["rental_date"].dt.normalize()).mean() > 0.99  # not midnight
    assert (decoded["last_update"] == pd.Timestamp("2006-02-15 21:30:53")).all()


def test_dates_without_time_stay_dates():
    days = pd.Series(pd.Timestamp("2023-01-01") + pd.to_timedelta(np.arange(300) % 200, "D"))
    codec = TableCodec.fit(pd.DataFrame({"d": days}), [Column("d", "datetime")])
    encoded = codec.encode(pd.DataFrame({"d": days}))
    encoded["d"] = encoded["d"] + np.random.default_rng(3).normal(0, 0.4, len(days))
    decoded = codec.decode(encoded)["d"]
    assert (decoded == decoded.dt.normalize()).all()


def test_a_wide_category_is_learned_as_one_number_and_decoded_to_its_real_shares():
    """A category with more values than ``wide_category`` is one number to the GAN (not a
    one-hot span hundreds wide); whatever numbers the GAN writes, the decoded values come back
    at the real shares (nulls included), and only real values (or null) come back."""
    rng = np.random.default_rng(0)
    names = [f"Clerk#{i:04d}" for i in range(300)]
    values = pd.Series(rng.choice(names, 20_000, p=np.r_[np.full(10, 0.05), np.full(290, 0.5 / 290)]), dtype=object)
    values[::40] = None
    frame = pd.DataFrame({"clerk": values, "mode": rng.choice(["air", "rail"], 20_000)})
    codec = TableCodec.fit(frame, [Column("clerk", "categorical"), Column("mode", "categorical")])
    assert codec.discrete_columns == ["mode"]  # the wide one is a single continuous column
    encoded = codec.encode(frame)
    assert encoded["clerk"].between(0, 1).all() and encoded["clerk"].nunique() == 301
    for generated in (rng.normal(size=20_000), rng.exponential(size=20_000)):  # any shape of GAN output
        decoded = codec.decode(encoded.assign(clerk=generated))["clerk"]
        assert set(decoded.dropna()) <= set(names)
        real, synthetic = (s.fillna("<null>").value_counts(normalize=True) for s in (values, decoded))
        assert 0.5 * (real - synthetic.reindex(real.index, fill_value=0)).abs().sum() < 0.01
