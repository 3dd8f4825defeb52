"""Great Expectations suites for a published table: keys unique, foreign keys resolvable.

GE is imported lazily (it takes seconds) and runs on an ephemeral context with its
analytics and progress bars off. One validation per table runs every expectation.
"""

from __future__ import annotations

import os
from dataclasses import dataclass
from functools import lru_cache

import pandas as pd


@dataclass
class ExpectationOutcome:
    name: str
    success: bool
    unexpected_count: int
    examples: list


def warm_context() -> None:
    """Import GE and make its context ahead of the first validation (``workers.preload_later_stages``)."""
    _context()


@lru_cache(maxsize=1)
def _context():
    os.environ.setdefault("GX_ANALYTICS_ENABLED", "false")
    import great_expectations as gx

    context = gx.get_context(mode="ephemeral")
    try:
        context.variables.progress_bars = {"globally": False}
    except Exception:  # older GE: progress bars cannot be configured; validation still works
        pass
    return gx, context


def validate_table(frame: pd.DataFrame, table: str, expectations: dict[str, tuple[str, dict]]) -> dict[str, ExpectationOutcome]:
    """Run ``{check_name: (expectation class name, kwargs)}`` on ``frame`` in one batch."""
    gx, context = _context()
    # A data source per validation, deleted afterwards: a source keeps every batch it loaded
    # (the whole frame), which a long run of many tables or partitions would pile up.
    source_name = f"synthetic_{table}"
    try:
        context.data_sources.delete(source_name)
    except (KeyError, ValueError):
        pass
    source = context.data_sources.add_pandas(source_name)
    try:
        batch = source.add_dataframe_asset(name=table).add_batch_definition_whole_dataframe("whole") \
            .get_batch(batch_parameters={"dataframe": frame})
        suite = gx.ExpectationSuite(name=f"{table}_checks")
        for name, (kind, kwargs) in expectations.items():
            suite.add_expectation(getattr(gx.expectations, kind)(**kwargs, meta={"check": name}))
        result = batch.validate(suite)
        del batch
    finally:
        context.data_sources.delete(source_name)
    outcomes = {}
    for r in result.results:
        name = r.expectation_config.meta["check"]
        outcomes[name] = ExpectationOutcome(
            name=name, success=bool(r.success),
            unexpected_count=int(r.result.get("unexpected_count") or 0),
            examples=[_example(v) for v in (r.result.get("partial_unexpected_list") or [])[:5]],
        )
    return outcomes


def _example(value) -> str:
    """An unexpected value as text; for a column pair, the first column's value."""
    if isinstance(value, (tuple, list)) and value:
        value = value[0]
    elif isinstance(value, dict) and value:
        value = next(iter(value.values()))
    return str(value.item() if hasattr(value, "item") else value)
