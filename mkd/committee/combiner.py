"""The committee's combiner: p(Good) = sigmoid(intercept + Σ coef_i · (x_i - mean_i) / scale_i) over the members'
logits x_i, fitted on the validation split; `out_of_fold` is the honest figure of a combiner fitted there."""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

import numpy as np

EPS = 1e-6


def logit(p: np.ndarray) -> np.ndarray:
    p = np.clip(np.asarray(p, dtype=np.float64), EPS, 1 - EPS)
    return np.log(p) - np.log1p(-p)


@dataclass(frozen=True)
class Combiner:
    """p(Good) = sigmoid(intercept + Σ coef_i · (x_i - mean_i) / scale_i), x_i the i-th member's logit."""

    mean: np.ndarray
    scale: np.ndarray
    coef: np.ndarray
    intercept: float

    def __call__(self, features: np.ndarray) -> np.ndarray:
        z = self.intercept + ((features - self.mean) / self.scale) @ self.coef
        return 1.0 / (1.0 + np.exp(-z))

    def to_dict(self) -> dict[str, Any]:
        return {"kind": "logistic", "mean": self.mean.tolist(), "scale": self.scale.tolist(),
                "coef": self.coef.tolist(), "intercept": self.intercept}


def fit_combiner(features: np.ndarray, labels: np.ndarray, c: float = 1.0) -> Combiner:
    """A logistic regression (L2, ``c`` as scikit-learn's C) on standardised member logits."""
    from sklearn.linear_model import LogisticRegression

    mean, scale = features.mean(axis=0), features.std(axis=0)
    scale = np.where(scale > 0, scale, 1.0)
    model = LogisticRegression(C=c, max_iter=1000).fit((features - mean) / scale, labels)
    return Combiner(mean=mean, scale=scale, coef=model.coef_[0].astype(np.float64),
                    intercept=float(model.intercept_[0]))


def out_of_fold(features: np.ndarray, labels: np.ndarray, groups: Sequence[str], folds: int = 5) -> np.ndarray:
    """Each pair's committee score from a combiner fitted on the other folds (folds by query): the honest
    validation figure of a combiner fitted on the validation split."""
    from sklearn.model_selection import GroupKFold

    scores = np.zeros(len(labels), dtype=np.float64)
    for fit_rows, held_rows in GroupKFold(n_splits=folds).split(features, labels, groups=list(groups)):
        scores[held_rows] = fit_combiner(features[fit_rows], labels[fit_rows])(features[held_rows])
    return scores
