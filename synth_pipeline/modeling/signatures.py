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

from synth_pipeline.modeling.context import ContextEncoder

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
