"""Which kind of second parent a generated child row points to, learned from the real links.

A second foreign key (a student course's course, a fee's approving teacher) is linked in two
steps: first each child row gets the *signature* of the parent it should point to (the
parent's telling categories: a course's level, a teacher's department), then
``linking.link_by_signature`` picks a parent of that signature under capacities.

The signature is drawn from a multinomial logistic regression of the real signature on the
child row's own columns and its primary parent's context, so a failing grade goes with an
Honors course about as often as it does in the real data, whatever the table's GAN learned.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import pandas as pd

from synth_pipeline.modeling.context import (
    ContextEncoder,
    aligned_parent_rows,
    modelled_columns,
)
from synth_pipeline.schema.metadata import Metadata, Relationship
from synth_pipeline.stats import child_counts, cramers_v
from synth_pipeline.thresholds import THRESHOLDS

MAX_TRAINING_ROWS = 30_000


@dataclass
class SignatureModel:
    classes: np.ndarray
    prior: np.ndarray
    encoder: ContextEncoder | None = None
    classifier: object | None = None  # sklearn LogisticRegression, or None for the prior alone

    @classmethod
    def fit(cls, rows: pd.DataFrame, kinds: dict[str, str], context: np.ndarray | None, signatures: np.ndarray,
            seed: int) -> "SignatureModel":
        classes, counts = np.unique(np.asarray(signatures, dtype=str), return_counts=True)
        model = cls(classes=classes, prior=counts / counts.sum())
        if len(classes) < 2 or len(rows) < 20:
            return model
        rng = np.random.default_rng(seed)
        chosen = np.sort(rng.choice(len(rows), MAX_TRAINING_ROWS, replace=False)) if len(rows) > MAX_TRAINING_ROWS \
            else np.arange(len(rows))
        model.encoder = ContextEncoder.fit(rows.iloc[chosen], kinds)
        features = model._features(rows.iloc[chosen], None if context is None else context[chosen])
        if features.shape[1] == 0:
            return model
        from sklearn.linear_model import LogisticRegression

        classifier = LogisticRegression(C=1.0, max_iter=300)
        classifier.fit(features, np.asarray(signatures, dtype=str)[chosen])
        model.classifier = classifier
        return model

    def _features(self, rows: pd.DataFrame, context: np.ndarray | None) -> np.ndarray:
        own = self.encoder.transform(rows.reset_index(drop=True))
        return own if context is None else np.hstack([own, context.astype("float32")])

    def sample(self, rows: pd.DataFrame, context: np.ndarray | None, rng: np.random.Generator) -> np.ndarray:
        """One signature per row, drawn from the predicted probabilities."""
        n = len(rows)
        if self.classifier is None or n == 0:
            return self.classes[rng.choice(len(self.classes), size=n, p=self.prior)] if n else np.array([], dtype=str)
        probabilities = self.classifier.predict_proba(self._features(rows, context))
        cumulative = np.cumsum(probabilities, axis=1)
        draws = rng.random(n)[:, None] * cumulative[:, -1:]
        picks = np.minimum((cumulative < draws).sum(axis=1), len(self.classifier.classes_) - 1)
        return np.asarray(self.classifier.classes_)[picks]


NO_PARENT = "__no_parent__"


def signature_of(frame: pd.DataFrame, columns: list[str]) -> np.ndarray:
    labels = [frame[c].astype(object).where(frame[c].notna(), "__null__").astype(str) for c in columns]
    joined = labels[0]
    for more in labels[1:]:
        joined = joined + "|" + more
    return joined.to_numpy()


def signature_columns(metadata: Metadata, rel: Relationship, real: dict[str, pd.DataFrame]) -> list[str]:
    """The second parent's categories its children pick it by: those whose share among linked
    parents differs from their share among all parents (coaches come from sports), or that go
    with the child's own categories or its primary parent's (an instructor's department is
    the course's)."""
    if rel.is_self_reference:
        return []
    parent, child = real[rel.parent_table_name], real[rel.child_table_name].reset_index(drop=True)
    linked = parent.set_index(rel.parent_primary_key).reindex(child[rel.child_foreign_key].to_numpy()).reset_index(drop=True)
    present = child[rel.child_foreign_key].notna().to_numpy()
    partners = _categorical_partners(metadata, rel, real, child)
    scored = []
    for col in modelled_columns(metadata, rel.parent_table_name):
        if col.sdtype not in ("categorical", "boolean") or not 2 <= parent[col.name].nunique() <= THRESHOLDS.signature_max_values:
            continue
        everyone = parent[col.name].astype(str).value_counts(normalize=True)
        values = linked[col.name][present].astype(str)
        distance = 0.5 * everyone.subtract(values.value_counts(normalize=True), fill_value=0).abs().sum()
        association = max((cramers_v(values, other[present]) for other in partners), default=0.0)
        score = max(distance / THRESHOLDS.signature_min_distance, association / THRESHOLDS.signature_min_association)
        if score >= 1:
            scored.append((score, col.name))
    return [c for _, c in sorted(scored, reverse=True)[:2]]


def _categorical_partners(metadata: Metadata, rel: Relationship, real, child: pd.DataFrame) -> list[pd.Series]:
    """The child's categorical columns and its primary parent's, aligned with the child rows."""
    partners = [child[c.name].astype(str) for c in modelled_columns(metadata, rel.child_table_name)
                if c.sdtype in ("categorical", "boolean")]
    primary = metadata.primary_relationship(rel.child_table_name)
    if primary is not None and primary != rel:
        parent_rows = aligned_parent_rows(primary, real)
        partners += [parent_rows[c.name].astype(str) for c in modelled_columns(metadata, primary.parent_table_name)
                     if c.sdtype in ("categorical", "boolean") and parent_rows[c.name].nunique() <= THRESHOLDS.signature_max_values]
    return partners


def linked_signature(rel: Relationship, columns: list[str], real: dict[str, pd.DataFrame]) -> np.ndarray:
    """Each real child row's second-parent signature (``NO_PARENT`` where the FK is null)."""
    parent = real[rel.parent_table_name]
    by_key = pd.Series(signature_of(parent, columns), index=parent[rel.parent_primary_key].to_numpy())
    fk = real[rel.child_table_name][rel.child_foreign_key].reset_index(drop=True)
    return fk.map(by_key).fillna(NO_PARENT).to_numpy()


def counts_by_signature(rel: Relationship, columns: list[str], real: dict[str, pd.DataFrame]) -> dict[str, np.ndarray]:
    """Real children per parent under ``rel``, for the parents of each signature."""
    parent = real[rel.parent_table_name]
    counts = child_counts(parent[rel.parent_primary_key], real[rel.child_table_name][rel.child_foreign_key])
    groups = signature_of(parent, columns)
    return {g: counts[groups == g] for g in np.unique(groups)}
