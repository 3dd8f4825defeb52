"""SyntheRela-style discriminative detection on parent tables joined with child aggregates.

Each parent row is joined with, per child relationship, its number of children, the mean
of the children's numeric columns and the number of distinct values of their categorical
columns. Two classifiers (logistic regression, gradient boosting) try to tell real rows
from synthetic ones under stratified cross-validation; the mean accuracy is reported.
0.5 means indistinguishable, 1.0 means every row gives itself away.
"""

from __future__ import annotations

import warnings

import numpy as np
import pandas as pd
from sklearn.base import clone
from sklearn.compose import ColumnTransformer
from sklearn.ensemble import HistGradientBoostingClassifier
from sklearn.impute import SimpleImputer
from sklearn.linear_model import LogisticRegression
from sklearn.model_selection import StratifiedKFold, cross_val_score
from sklearn.pipeline import make_pipeline
from sklearn.preprocessing import OneHotEncoder, StandardScaler
from threadpoolctl import threadpool_limits

from synth_pipeline.schema.metadata import Metadata
from synth_pipeline.stats import NUMERIC, as_labels, as_numbers, compared_columns


def aggregate_table(tables: dict[str, pd.DataFrame], metadata: Metadata, parent: str) -> tuple[pd.DataFrame, list[str]]:
    """The parent's compared columns plus child aggregates; returns (frame, numeric column names)."""
    kinds = compared_columns(metadata, parent)
    pk = metadata.table(parent).single_primary_key
    frame = pd.DataFrame(index=tables[parent][pk].to_numpy())
    numeric = []
    for col, kind in kinds.items():
        values = tables[parent][col]
        frame[col] = as_numbers(values, kind).to_numpy() if kind in NUMERIC else as_labels(values).to_numpy()
        if kind in NUMERIC:
            numeric.append(col)
    for rel in metadata.child_relationships(parent):
        if rel.is_self_reference:
            continue
        child = tables[rel.child_table_name]
        prefix = f"{rel.child_table_name}.{rel.child_foreign_key}"
        groups = child.groupby(rel.child_foreign_key)
        frame[f"{prefix}.count"] = groups.size().reindex(frame.index).fillna(0).to_numpy()
        numeric.append(f"{prefix}.count")
        for col, kind in compared_columns(metadata, rel.child_table_name).items():
            name = f"{prefix}.{col}"
            if kind in NUMERIC:
                means = as_numbers(child[col], kind).groupby(child[rel.child_foreign_key]).mean()
                frame[f"{name}.mean"] = means.reindex(frame.index).to_numpy()
                numeric.append(f"{name}.mean")
            else:
                distinct = child[col].groupby(child[rel.child_foreign_key]).nunique()
                frame[f"{name}.nunique"] = distinct.reindex(frame.index).fillna(0).to_numpy()
                numeric.append(f"{name}.nunique")
    return frame.reset_index(drop=True), numeric


def detection_accuracy(real: pd.DataFrame, synthetic: pd.DataFrame, numeric: list[str], max_rows: int = 3000,
                       seed: int = 0, folds: int = 5) -> dict[str, float]:
    """Cross-validated accuracy of both classifiers at telling real rows from synthetic ones."""
    n = min(len(real), len(synthetic), max_rows)
    if n < 2 * folds:
        return {"logistic_regression": float("nan"), "gradient_boosting": float("nan"), "rows_per_class": n}
    data = pd.concat([real.sample(n, random_state=seed), synthetic.sample(n, random_state=seed)], ignore_index=True)
    labels = np.r_[np.zeros(n), np.ones(n)]
    categorical = [c for c in data.columns if c not in numeric]
    data[numeric] = data[numeric].astype(float)
    prep = ColumnTransformer([
        ("num", make_pipeline(SimpleImputer(strategy="median", keep_empty_features=True), StandardScaler()), numeric),
        ("cat", OneHotEncoder(handle_unknown="ignore", max_categories=30), categorical),
    ], sparse_threshold=0.0)
    cv = StratifiedKFold(folds, shuffle=True, random_state=seed)
    out: dict[str, float] = {"rows_per_class": n}
    models = {"logistic_regression": LogisticRegression(max_iter=2000),
              "gradient_boosting": HistGradientBoostingClassifier(max_iter=100, random_state=seed)}
    # one thread (OpenMP and BLAS): the same figures on any machine, and no spinning threads
    # fighting a busy core (beside another step the fit slowed from seconds to minutes)
    with warnings.catch_warnings(), threadpool_limits(limits=1):
        warnings.simplefilter("ignore")
        for name, model in models.items():
            pipeline = make_pipeline(clone(prep), model)
            out[name] = round(float(cross_val_score(pipeline, data, labels, cv=cv).mean()), 4)
    return out


def detection_inputs(real: dict[str, pd.DataFrame], synthetic: dict[str, pd.DataFrame], metadata: Metadata,
                     parent: str) -> tuple[pd.DataFrame, pd.DataFrame, list[str]]:
    """The parent joined with its children's aggregates, real and synthetic, and the numeric columns."""
    r, numeric = aggregate_table(real, metadata, parent)
    s, _ = aggregate_table(synthetic, metadata, parent)
    return r, s, numeric


def parent_detection(real: dict[str, pd.DataFrame], synthetic: dict[str, pd.DataFrame], metadata: Metadata,
                     parent: str, seed: int = 0) -> dict:
    r, s, numeric = detection_inputs(real, synthetic, metadata, parent)
    return {"table": parent, "features": r.shape[1], **detection_accuracy(r, s, numeric, seed=seed)}
