"""Turn a table's modelled columns into a frame CTGAN can learn, and back.

Dates become day numbers, booleans and categories become strings (nulls a category of
their own), numeric nulls become a fill value plus a null-indicator category. A category
with very many values (``THRESHOLDS.wide_category``) becomes one number instead: each value
the middle of its slice of the real shares (values in order of frequency); a generated
number's rank among the generated values then picks the value whose slice holds it, so the
real shares come back exactly. After
sampling, numeric and date columns are mapped by rank onto the real marginal
distribution (interpolated quantiles, so values are new, not copied), integers are
rounded and nulls restored: the GAN's joint structure is kept, its marginal errors are not.
"""

from __future__ import annotations

from dataclasses import dataclass, field

import numpy as np
import pandas as pd

from synth_pipeline.schema.metadata import Column
from synth_pipeline.stats import EPOCH, NULL, decimals_of
from synth_pipeline.thresholds import THRESHOLDS

QUANTILES = 1001


@dataclass
class ColumnCodec:
    name: str
    kind: str  # "numerical" | "datetime" | "categorical" | "boolean"
    integer: bool = False
    decimals: int | None = None
    few_values: bool = False  # a numeric column with a handful of values is learned as categories
    null_rate: float = 0.0
    quantiles: np.ndarray | None = None
    categories: list = field(default_factory=list)
    datetime_unit: str = "D"
    dtype: str = "object"
    time_of_day: np.ndarray | None = None  # quantiles of the real seconds past midnight (None: dates only)
    time_step: int = 1  # the real times' resolution in seconds (1, 60, 3600...)
    wide: bool = False  # a category with very many values, learned as one number (``categories`` by frequency)
    cumulative: np.ndarray | None = None  # a wide category's real shares, cumulated in ``categories`` order

    @property
    def null_column(self) -> str:
        return f"{self.name}.__isnull__"


@dataclass
class TableCodec:
    columns: list[ColumnCodec]

    @classmethod
    def fit(cls, frame: pd.DataFrame, columns: list[Column]) -> "TableCodec":
        return cls([_fit_column(frame[c.name], c) for c in columns])

    @property
    def discrete_columns(self) -> list[str]:
        out = []
        for c in self.columns:
            if (c.kind in ("categorical", "boolean") and not c.wide) or c.few_values:
                out.append(c.name)
            elif 0 < c.null_rate < 1 and not c.wide:
                out.append(c.null_column)
        return out

    def encode(self, frame: pd.DataFrame) -> pd.DataFrame:
        out = {}
        for c in self.columns:
            values = frame[c.name]
            if c.wide:  # the middle of the value's slice of the real shares (nulls are a value here)
                labels = values.astype(object).where(values.notna(), NULL).astype(str)
                index = pd.Index([str(v) for v in c.categories]).get_indexer(labels)
                middle = c.cumulative - np.diff(np.r_[0.0, c.cumulative]) / 2
                out[c.name] = np.where(index >= 0, middle[np.maximum(index, 0)], 0.5)
                continue
            if c.few_values:
                values = pd.to_numeric(values, errors="coerce").astype(float)
            if c.kind in ("categorical", "boolean") or c.few_values:
                out[c.name] = values.astype(object).where(values.notna(), NULL).astype(str)
                continue
            numbers = _to_number(values, c)
            fill = np.nanmedian(numbers) if np.isfinite(numbers).any() else 0.0
            out[c.name] = np.where(np.isnan(numbers), fill, numbers)
            if 0 < c.null_rate < 1:
                out[c.null_column] = np.where(np.isnan(numbers), "yes", "no")
        return pd.DataFrame(out, index=frame.index)

    def decode(self, encoded: pd.DataFrame) -> pd.DataFrame:
        out = {}
        for c in self.columns:
            values = encoded[c.name]
            if c.wide:
                ranks = (pd.Series(values.to_numpy(dtype=float)).rank(method="first").to_numpy() - 0.5) / max(len(values), 1)
                picked = np.minimum(np.searchsorted(c.cumulative, ranks, side="right"), len(c.categories) - 1)
                out[c.name] = pd.Series(np.asarray(c.categories, dtype=object)[picked], index=encoded.index)
                continue
            if c.kind in ("categorical", "boolean"):
                out[c.name] = _decode_category(values, c)
                continue
            if c.few_values:
                decoded = _decode_category(values, c)
                numbers = pd.to_numeric(decoded, errors="coerce").to_numpy(dtype=float)
                out[c.name] = _from_number(numbers, np.isnan(numbers), c)
                continue
            numbers = rank_map(values.to_numpy(dtype=float), c.quantiles)
            if c.integer:
                numbers = np.round(numbers)
            elif c.decimals is not None:
                numbers = np.round(numbers, c.decimals)
            if c.null_rate >= 1:
                is_null = np.ones(len(numbers), dtype=bool)
            elif c.null_rate > 0:
                is_null = encoded[c.null_column].astype(str).to_numpy() == "yes"
            else:
                is_null = np.zeros(len(numbers), dtype=bool)
            out[c.name] = _from_number(numbers, is_null, c)
        return pd.DataFrame(out, index=encoded.index)


def _fit_column(values: pd.Series, column: Column) -> ColumnCodec:
    kind = column.sdtype
    codec = ColumnCodec(name=column.name, kind=kind, null_rate=float(values.isna().mean()), dtype=str(values.dtype))
    if kind in ("categorical", "boolean"):
        codec.categories = sorted(values.dropna().unique().tolist(), key=str)
        if kind == "categorical" and len(codec.categories) > THRESHOLDS.wide_category:
            counts = values.astype(object).where(values.notna(), NULL).astype(str).value_counts()
            order = sorted(counts.index, key=lambda v: (-counts[v], v))  # by frequency, then label
            lookup = {str(v): v for v in codec.categories}
            codec.wide = True
            codec.categories = [lookup.get(v) for v in order]  # a null's slot decodes to None
            codec.cumulative = np.cumsum(counts[order].to_numpy(dtype=float)) / counts.sum()
        return codec
    numbers = _to_number(values, codec)
    finite = numbers[np.isfinite(numbers)]
    codec.integer = kind == "numerical" and (column.computer_representation or "").startswith("Int") or (
        kind == "numerical" and len(finite) > 0 and bool(np.all(finite == np.round(finite))))
    if kind == "datetime":
        codec.integer = True
        seconds = _seconds_of_day(values)
        if len(seconds) and (seconds != 0).any():  # timestamps: their time of day is learned too
            codec.integer = False
            codec.time_of_day = np.quantile(seconds, np.linspace(0, 1, QUANTILES))
            codec.time_step = next(step for step in (3600, 60, 1) if not (seconds % step).any()) \
                if not (seconds % 1).any() else 1
    distinct = np.unique(finite)
    if kind == "numerical" and 0 < len(distinct) <= THRESHOLDS.few_values:
        codec.few_values = True
        codec.categories = distinct.tolist()
    if kind == "numerical" and not codec.integer:
        codec.decimals = decimals_of(finite)
    codec.quantiles = np.quantile(finite, np.linspace(0, 1, QUANTILES)) if len(finite) else np.zeros(QUANTILES)
    return codec


def _to_number(values: pd.Series, codec: ColumnCodec) -> np.ndarray:
    if codec.kind == "datetime":
        stamps = pd.to_datetime(values, errors="coerce")
        return ((stamps - EPOCH) / pd.Timedelta(1, codec.datetime_unit)).to_numpy(dtype=float)
    return pd.to_numeric(values, errors="coerce").to_numpy(dtype=float)


def _seconds_of_day(values: pd.Series) -> np.ndarray:
    stamps = pd.to_datetime(values, errors="coerce").dropna()
    return ((stamps - stamps.dt.normalize()) / pd.Timedelta(seconds=1)).to_numpy(dtype=float)


def _with_time_of_day(days: np.ndarray, codec: ColumnCodec) -> np.ndarray:
    """Day numbers whose fraction is replaced by a real time of day: the fraction's rank among
    the rows is mapped onto the real times' quantiles (so the hours keep their real shares),
    rounded to the real resolution (whole seconds, minutes or hours)."""
    whole = np.floor(days)
    finite = np.isfinite(days)
    seconds = np.zeros(len(days))
    if finite.any():
        seconds[finite] = rank_map(days[finite] - whole[finite], codec.time_of_day)
    seconds = np.clip(np.round(seconds / codec.time_step) * codec.time_step, 0, 86400 - codec.time_step)
    return whole + seconds / 86400


def _from_number(numbers: np.ndarray, is_null: np.ndarray, codec: ColumnCodec) -> pd.Series:
    if codec.kind == "datetime":
        if codec.time_of_day is not None:
            numbers = _with_time_of_day(numbers, codec)
        seconds = np.round(np.where(is_null, 0, numbers) * 86400).astype("int64")
        stamps = EPOCH + pd.to_timedelta(seconds, unit="s")
        return pd.Series(stamps).where(~is_null)
    if codec.integer:
        series = pd.Series(np.where(is_null, 0, numbers).astype("int64"))
        return series.astype("Int64").where(~is_null) if is_null.any() else series
    return pd.Series(np.where(is_null, np.nan, numbers))


def as_written(value: np.ndarray, decimals: int | None, index: pd.Index) -> pd.Series:
    """Rebuilt numbers rounded to the real column's decimals; whole numbers as integers
    (``Int64`` where some are missing)."""
    if decimals is not None:
        value = np.round(value, decimals)
    series = pd.Series(value, index=index)
    if decimals == 0:
        return series.astype("Int64") if series.isna().any() else series.astype("int64")
    return series


def rank_map(values: np.ndarray, quantiles: np.ndarray) -> np.ndarray:
    """Keep each value's rank among the samples, take the real distribution's value there."""
    if len(values) == 0:
        return values
    ranks = (pd.Series(values).rank(method="first").to_numpy() - 0.5) / len(values)
    return np.interp(ranks, np.linspace(0, 1, len(quantiles)), quantiles)


def put_column(frame: pd.DataFrame, column: str, values: np.ndarray) -> None:
    """Write values (an object array of the column's own values) back in the column's dtype."""
    dtype = frame[column].dtype
    frame[column] = pd.Series(values, index=frame.index).astype(dtype) if dtype != object else values


def _decode_category(values: pd.Series, codec: ColumnCodec) -> pd.Series:
    lookup = {str(v): v for v in codec.categories}
    if codec.few_values:
        lookup = {str(float(v)): v for v in codec.categories}
    decoded = values.astype(str).map(lookup)
    if codec.kind == "boolean":
        return decoded.astype("boolean") if decoded.isna().any() else decoded.astype(bool)
    return decoded.astype(object)
