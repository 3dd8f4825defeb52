"""Statistics shared by the model, the rules and the evaluation: how values read as labels and
numbers, children per parent, association of two categories, and row digests.

Nothing here knows of models or reports: ``modeling``, ``schema`` and ``evaluation`` all build
on this module, and it on none of them.
"""

from __future__ import annotations

import math
import re

import numpy as np
import pandas as pd

from synth_pipeline.schema.metadata import Metadata, Relationship
from synth_pipeline.thresholds import THRESHOLDS

NUMERIC = ("numerical", "datetime")


DISCRETE = ("categorical", "boolean")


def compared_columns(metadata: Metadata, table: str) -> dict[str, str]:
    """Columns fidelity is measured on: modelled sdtypes, no keys."""
    keys = metadata.key_columns(table)
    return {c.name: c.sdtype for c in metadata.table(table).columns.values()
            if c.sdtype in NUMERIC + DISCRETE and c.name not in keys and not is_count_column(c.name)}


def as_numbers(values: pd.Series, sdtype: str) -> pd.Series:
    if sdtype == "datetime":
        stamps = as_datetimes(values)
        return (stamps - pd.Timestamp("1970-01-01")) / pd.Timedelta(days=1)
    return pd.to_numeric(values, errors="coerce").astype(float)


def ks_complement(real, synthetic) -> float:
    """sdmetrics' ``KSComplement.compute``, exactly: 1 minus the two-sided two-sample
    Kolmogorov-Smirnov statistic (scipy's ``ks_2samp``) of the values, missing ones dropped,
    datetimes as numbers, rounded to 14 decimals; ``nan`` when a side is empty. The two
    empirical CDFs are compared at each distinct value, counted by hashing rather than by
    sorting both samples: millions of date offsets or children-per-parent counts take few
    distinct values (the same differences, to the bit, as scipy's per-value search)."""
    a, b = pd.Series(real).dropna(), pd.Series(synthetic).dropna()
    if pd.api.types.is_datetime64_any_dtype(a):
        a, b = pd.to_numeric(a), pd.to_numeric(b)
    if not (pd.api.types.is_numeric_dtype(a) and pd.api.types.is_numeric_dtype(b)) \
            or pd.api.types.is_bool_dtype(a) or pd.api.types.is_bool_dtype(b):
        from sdmetrics.single_column import KSComplement

        return float(KSComplement.compute(real, synthetic))
    if len(a) == 0 or len(b) == 0:
        return float("nan")
    values = np.concatenate([a.round(14).to_numpy(), b.round(14).to_numpy()])
    codes, uniques = pd.factorize(values)
    order = np.argsort(uniques, kind="stable")
    cdfs = [np.cumsum(np.bincount(side, minlength=len(uniques))[order]) / len(side)
            for side in (codes[:len(a)], codes[len(a):])]
    diffs = cdfs[0] - cdfs[1]
    low, high = np.clip(-diffs.min(), 0, 1), diffs.max()
    statistic = low if low > high else high
    if max(len(a), len(b)) <= 10_000:  # scipy's exact method: the statistic as a multiple of 1/lcm
        lcm = len(a) // math.gcd(len(a), len(b)) * len(b)
        statistic = int(np.round(statistic * lcm)) * 1.0 / lcm
    return float(1 - statistic)


def as_datetimes(values: pd.Series) -> pd.Series:
    """Dates as datetimes (unparseable ones NaT); a datetime column as it is (pandas' parser
    would hash and map every value of it again)."""
    return values if pd.api.types.is_datetime64_any_dtype(values) else pd.to_datetime(values, errors="coerce")


def distinct_count(values: pd.Series) -> int:
    """``values.nunique()`` (missing values not counted); text held in Arrow is counted by
    Arrow (pandas' own count held 0.9 GB more for TPC-H scale 1's 6M comments)."""
    if isinstance(values.dtype, pd.StringDtype) and values.dtype.storage == "pyarrow":
        import pyarrow as pa
        import pyarrow.compute as pc

        return int(pc.count_distinct(pa.array(values.array), mode="only_valid").as_py())
    return int(values.nunique())


def as_labels(values: pd.Series) -> pd.Series:
    return values.astype(object).where(values.notna(), "__null__").astype(str)


def changed_values(before: pd.Series, after: pd.Series) -> int:
    """How many values differ between two aligned columns (a null and a value differ, two
    nulls do not): as ``as_labels`` reads them, compared without text where the dtype is kept."""
    if before.dtype != after.dtype or before.dtype == object or not before.index.equals(after.index):
        return int((as_labels(before) != as_labels(after)).sum())
    a_null, b_null = before.isna().to_numpy(), after.isna().to_numpy()
    differ = np.asarray(before.ne(after).fillna(True), dtype=bool)
    return int(((differ & ~(a_null | b_null)) | (a_null != b_null)).sum())


NULL = "__null__"


EPOCH = pd.Timestamp("1970-01-01")


def labels(values: pd.Series) -> pd.Series:
    """Values as category labels, nulls a label of their own; whole numbers read the same
    whether the column holds nulls (float) or not (int): ``9``, not ``9.0``."""
    if pd.api.types.is_float_dtype(values):
        finite = values.dropna()
        if len(finite) and bool((finite == np.round(finite)).all()) and finite.abs().max() < 2**53:
            values = values.astype("Int64")
    return values.astype(object).where(values.notna(), NULL).astype(str)


def decimals_of(values: np.ndarray, most: int = 6) -> int | None:
    """The number of decimals every value fits in (None when more than ``most``)."""
    sample = values[~np.isnan(values)][:5000]
    for d in range(most + 1):
        if np.allclose(sample, np.round(sample, d), rtol=0, atol=1e-9):
            return d
    return None


def day_numbers(values: pd.Series, sdtype: str) -> np.ndarray:
    """Numbers as floats, dates as days since 1970 (NaN where missing)."""
    if sdtype == "datetime":
        return ((as_datetimes(values) - EPOCH) / pd.Timedelta(days=1)).to_numpy(dtype=float)
    return pd.to_numeric(values, errors="coerce").to_numpy(dtype=float)


COUNT_PREFIX = "__children__"


def count_column(rel: Relationship) -> str:
    """The parent-table column that carries a parent row's number of children under ``rel``."""
    return f"{COUNT_PREFIX}{rel.child_table_name}__{rel.child_foreign_key}"


def is_count_column(name: str) -> bool:
    return name.startswith(COUNT_PREFIX)


def child_counts(parent_keys: pd.Series, child_fk: pd.Series) -> np.ndarray:
    """For each parent key, how many child rows point at it (zeros included). Unique parent
    keys (a primary key): each child row's parent found by position, then counted."""
    keys = pd.Index(parent_keys)
    if keys.is_unique:
        found = keys.get_indexer(child_fk.dropna())
        return np.bincount(found[found >= 0], minlength=len(keys)).astype("int64")
    counts = child_fk.dropna().value_counts()
    return parent_keys.map(counts).fillna(0).to_numpy(dtype="int64")


def determining_category(values: pd.Series, frame: pd.DataFrame, categories: list[str], min_keys: int = 2,
                         few_keys: int = 0) -> tuple[str, dict] | None:
    """The category of ``frame`` (rows aligned with ``values``; fewest values first, ``min_keys``
    to THRESHOLDS.max_determinant_values of them) under which every row of one value has the same value,
    more consistently than chance would (a category of at most ``few_keys`` values needs no
    chance test): ``(category, {category label: value})``, or None."""
    best = None
    for category in categories:
        keys = labels(frame.loc[values.index, category])
        n_keys = keys.nunique()
        if not max(min_keys, 2) <= n_keys <= THRESHOLDS.max_determinant_values or (best is not None and n_keys >= best[1]):
            continue
        if (values.groupby(keys).nunique() == 1).all() and (
                n_keys <= few_keys or agreement_by_chance(values, keys) < THRESHOLDS.map_chance):
            best = (category, n_keys, values.groupby(keys).first().to_dict())
    return None if best is None else (best[0], best[2])


def agreement_by_chance(values: pd.Series, keys: pd.Series) -> float:
    """How likely the rows sharing a key would all agree on the column if the column were
    independent of the key: the product over repeated keys of sum_v p_v ** (rows of the key)."""
    sizes = keys.value_counts()
    sizes = sizes[sizes > 1].to_numpy()
    if not len(sizes):
        return 1.0
    shares = values.value_counts(normalize=True).to_numpy()
    return float(np.exp(sum(np.log(np.sum(shares ** k)) for k in sizes)))


def comparable(a: str, b: str, x, y) -> bool:
    """Two number columns compare when their names share a word (``score <= max_score``) or
    their ranges overlap (``amount_paid <= amount_due``, crimes among inhabitants). Over
    disjoint ranges an order says nothing about the rows (a film's rental days are below its
    replacement cost by their units alone): each column's own range keeps it anyway."""
    if _words(a) & _words(b):
        return True
    x, y = np.asarray(x, dtype=float), np.asarray(y, dtype=float)
    return bool(max(np.nanmin(x), np.nanmin(y)) < min(np.nanmax(x), np.nanmax(y)))


def _words(name: str) -> set[str]:
    return set(re.findall(r"[a-z]+", re.sub(r"(?<=[a-z])(?=[A-Z])", "_", name).lower())) - {"id", "no"}


def chance_of_equality(a: pd.Series, b: pd.Series) -> float:
    """How often two independent draws of the two columns' values are equal."""
    shares = a.fillna("\x00").value_counts(normalize=True)
    return float((shares * b.fillna("\x00").value_counts(normalize=True).reindex(shares.index, fill_value=0)).sum())


def copy_columns(metadata: Metadata, name: str, allow: tuple[str, ...] = (),
                 real: pd.DataFrame | None = None) -> list[str]:
    """Every non-key column (one alone included: a client's one birth number is the client):
    a synthetic row equal to a unique real row on these is a copy. Columns the user allows
    published as they are (``privacy_allow``: public labels) are not compared. One number
    alone that takes few real values (``real``: the real rows) is not either: each synthetic
    row draws one of them, as a category, and no row of it can be other than a real one."""
    keys = metadata.key_columns(name)
    columns = [c for c in metadata.table(name).columns if c not in keys and f"{name}.{c}" not in allow]
    if len(columns) == 1 and real is not None and metadata.table(name).columns[columns[0]].sdtype == "numerical" \
            and real[columns[0]].nunique() <= THRESHOLDS.support_max:
        return []
    return columns


DIGEST_CHUNK_ROWS = 200_000  # rows turned into text at once by ``text_hashes`` and ``value_hashes``


def text_hashes(values: pd.Series | pd.DataFrame, as_text) -> np.ndarray:
    """A 64-bit hash per row of ``as_text(rows)`` (a Series or frame of text), taken
    ``DIGEST_CHUNK_ROWS`` rows at a time: the text of a whole large table (a string per
    value) would take several times the table's memory. A row's hash does not depend on the
    rows beside it."""
    out = np.empty(len(values), dtype="uint64")
    for start in range(0, len(values), DIGEST_CHUNK_ROWS):
        rows = values.iloc[start:start + DIGEST_CHUNK_ROWS]
        out[start:start + len(rows)] = pd.util.hash_pandas_object(as_text(rows), index=False).to_numpy(dtype="uint64")
    return out


def digest_in(hashes: np.ndarray, digests: np.ndarray) -> np.ndarray:
    """Which of ``hashes`` are among ``digests``, by a hash table (``np.isin`` sorts both:
    8 s for 6 M hashes against 4.5 M digests, against 0.7 s)."""
    if not len(hashes) or not len(digests):
        return np.zeros(len(hashes), dtype=bool)
    return pd.Series(hashes, copy=False).isin(digests).to_numpy()


def row_digests(frame: pd.DataFrame, columns: list[str]) -> np.ndarray:
    """A 64-bit hash per row of its values in ``columns`` (``value_hashes`` of each, combined
    in order), the same for a row alone as within its table: what a synthetic row is
    compared with the real rows by (copies), without writing the values as text."""
    return combined_hashes(len(frame), (value_hashes(frame[col]) for col in columns), len(columns))


def combined_hashes(rows: int, hashes, count: int) -> np.ndarray:
    """One 64-bit hash per row from ``count`` arrays of hashes (one per column, in order):
    the tuple hash pandas combines a frame's columns with."""
    out = np.full(rows, 0x345678, dtype="uint64")
    multiplier = np.uint64(1000003)
    with np.errstate(over="ignore"):
        for i, column in enumerate(hashes):
            out ^= column
            out *= multiplier
            multiplier += np.uint64(82520 + 2 * (count - i))
    return out + np.uint64(97531)


NULL_HASH = np.uint64(0x9E3779B97F4A7C15)  # any missing value (NaN, None, NaT, <NA>)


def value_hashes(values: pd.Series) -> np.ndarray:
    """A 64-bit hash of each value, whatever the column's other values and how it is held:
    a whole number hashes the same held as an integer or as a float (5 and 5.0), a date as
    its nanoseconds in any unit, text the same as object, Arrow string or category, and
    every missing value alike. Numbers are hashed from their 64 bits, text from its
    characters (any other object as its ``str``; a category's text once)."""
    from pandas.api import types

    missing = values.isna().to_numpy()
    dtype = values.dtype
    if types.is_datetime64_any_dtype(dtype) or types.is_timedelta64_dtype(dtype):
        if getattr(dtype, "tz", None) is not None:  # its local wall time, as the text digests read it
            values = values.dt.tz_localize(None)
        unit = "datetime64[ns]" if types.is_datetime64_any_dtype(dtype) else "timedelta64[ns]"
        bits = values.to_numpy(dtype=unit).view("int64").view("uint64")
    elif types.is_bool_dtype(dtype):
        bits = values.to_numpy(dtype=bool, na_value=False).astype("uint64")
    elif types.is_integer_dtype(dtype):
        unsigned = types.is_unsigned_integer_dtype(dtype)
        bits = values.to_numpy(dtype="uint64" if unsigned else "int64", na_value=0).view("uint64")
    elif types.is_float_dtype(dtype):
        numbers = values.to_numpy(dtype="float64", na_value=np.nan)
        whole = np.isfinite(numbers) & (np.floor(numbers) == numbers) & (np.abs(numbers) < 2.0 ** 63)
        bits = numbers.view("uint64").copy()
        bits[whole] = numbers[whole].astype("int64").view("uint64")
    elif isinstance(dtype, pd.CategoricalDtype):  # each category's text once
        codes = values.cat.codes.to_numpy()
        out = _string_hashes(values.cat.categories.to_numpy(dtype=object))[np.maximum(codes, 0)] \
            if len(values.cat.categories) else np.zeros(len(values), dtype="uint64")
        out[missing] = NULL_HASH
        return out
    else:  # a chunk of rows at a time: a large table's text as Python strings would take gigabytes
        out = np.empty(len(values), dtype="uint64")
        text = isinstance(dtype, pd.StringDtype)
        for start in range(0, len(values), DIGEST_CHUNK_ROWS):
            chunk = values.iloc[start:start + DIGEST_CHUNK_ROWS]
            if text:  # text of a few values (a category): each value's text hashed once
                codes, uniques = pd.factorize(chunk)
                if len(uniques) <= len(chunk) // 4:
                    hashes = _string_hashes(np.asarray(uniques, dtype=object))
                    out[start:start + len(chunk)] = hashes[np.maximum(codes, 0)] if len(uniques) else 0
                    continue
            out[start:start + len(chunk)] = _string_hashes(chunk.to_numpy(dtype=object, na_value=""))
        out[missing] = NULL_HASH
        return out
    out = pd.util.hash_array(bits)
    out[missing] = NULL_HASH
    return out


def _string_hashes(objects: np.ndarray) -> np.ndarray:
    """pandas' hash of each object's text (``str`` of what is not text already)."""
    if len(objects) and pd.api.types.infer_dtype(objects, skipna=False) != "string":
        objects = np.array([v if isinstance(v, str) else str(v) for v in objects], dtype=object)
    return pd.util.hash_array(objects, categorize=False)


def unique_row_digests(frame: pd.DataFrame, columns: list[str]) -> np.ndarray | None:
    """Hashes of the real rows whose non-key values no other real row shares."""
    if not columns or frame.empty:
        return None
    hashes = pd.Series(row_digests(frame, columns))
    counts = hashes.value_counts(sort=False)  # sorted below, the few unique ones alone
    return np.sort(counts.index[counts.to_numpy() == 1].to_numpy(dtype="uint64"))


def cramers_v(a, b) -> float:
    """Cramér's V of two aligned columns of labels (0: independent, 1: one determines the other)."""
    from scipy.stats.contingency import association

    table = pd.crosstab(np.asarray(a), np.asarray(b))
    if min(table.shape) < 2:
        return 0.0
    return float(association(table.to_numpy(), method="cramer"))
