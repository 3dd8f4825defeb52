"""The SDV HMASynthesizer baseline, on the largest sub-schema HMA accepts.

HMA (sdv >= 1.38) refuses schemas with more than 5 tables or a relationship chain longer
than parent -> child. The sub-schema is chosen among trees of primary relationships (a
child's owning parent), by number of tables, then relationships, then rows; both systems
are then scored on it. sdv is an optional dependency (``pip install .[benchmark]``).
"""

from __future__ import annotations

import itertools
import logging
import time
from dataclasses import dataclass

import pandas as pd

from synth_pipeline.errors import SynthPipelineError
from synth_pipeline.schema.metadata import Metadata

log = logging.getLogger(__name__)

HMA_MAX_TABLES = 5
HMA_MAX_DEPTH = 2  # tables on the longest chain, as sdv counts it


class BaselineError(SynthPipelineError):
    """The baseline cannot run (sdv missing, or no sub-schema HMA accepts)."""


@dataclass
class BaselineRun:
    tables: list[str]
    synthetic: dict[str, pd.DataFrame]
    fit_seconds: float
    sample_seconds: float


def hma_subschema(metadata: Metadata, real: dict[str, pd.DataFrame]) -> list[str]:
    """The tables of the largest sub-schema HMA accepts (a parent and up to 4 owned children)."""
    best, best_score = None, None
    for parent in metadata.topological_order():
        if len(metadata.table(parent).primary_key) != 1:
            continue
        owned = [r.child_table_name for r in metadata.child_relationships(parent)
                 if metadata.primary_relationship(r.child_table_name) == r
                 and len(metadata.table(r.child_table_name).primary_key) == 1]
        owned = list(dict.fromkeys(owned))
        for k in range(min(len(owned), HMA_MAX_TABLES - 1), -1, -1):
            for children in itertools.combinations(owned, k):
                tables = [parent, *children]
                sub = metadata.restrict(tables)
                score = (len(tables), len(sub.relationships), sum(len(real[t]) for t in tables))
                if best_score is None or score > best_score:
                    best, best_score = tables, score
            if best_score is not None and best_score[0] == k + 1:
                break
    if best is None:
        raise BaselineError("no sub-schema with a single-column primary key for HMA")
    return best


def sdv_metadata(metadata: Metadata) -> dict:
    """Our metadata as plain SDV multi-table JSON (extensions dropped)."""
    raw = metadata.to_dict()
    for spec in raw["tables"].values():
        spec.pop("primary_parent", None)
        for col in spec["columns"].values():
            col.pop("regex_format", None)  # SDV would generate from it; keys are compared by format anyway
    return raw


def run_hma(metadata: Metadata, real: dict[str, pd.DataFrame], tables: list[str], seed: int = 0) -> BaselineRun:
    try:
        from sdv.metadata import Metadata as SDVMetadata
        from sdv.multi_table import HMASynthesizer
    except ImportError:
        raise BaselineError("the HMA baseline needs sdv: pip install '.[benchmark]'") from None
    import numpy as np

    sub = metadata.restrict(tables)
    data = {t: real[t][list(sub.tables[t].columns)].copy() for t in tables}
    try:
        synthesizer = HMASynthesizer(SDVMetadata.load_from_dict(sdv_metadata(sub)), verbose=False)
    except Exception as exc:  # sdv's own schema checks (SynthesizerInputError, InvalidMetadataError)
        raise BaselineError(f"HMA refuses the sub-schema {', '.join(tables)}: {str(exc).strip().splitlines()[0]}") from None
    np.random.seed(seed)
    log.info("HMA: fitting on %s (%d rows)", ", ".join(tables), sum(len(f) for f in data.values()))
    started = time.perf_counter()
    synthesizer.fit(data)
    fitted = time.perf_counter()
    log.info("HMA: fitted in %.1fs, sampling", fitted - started)
    synthetic = synthesizer.sample_scale(scale=1.0) if hasattr(synthesizer, "sample_scale") \
        else synthesizer.sample(scale=1.0)
    sampled = time.perf_counter()
    log.info("HMA: sampled in %.1fs", sampled - fitted)
    return BaselineRun(tables, synthetic, fitted - started, sampled - fitted)
