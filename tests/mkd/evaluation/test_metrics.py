"""Metrics against values computed by hand."""

from __future__ import annotations

import math

import numpy as np
import pytest

from mkd.evaluation.longtail import LongTail
from mkd.evaluation.metrics import compute_metrics, ndcg_at_k, neg_pr_auc, roc_auc


def test_roc_auc_by_hand() -> None:
    # Good pairs score 0.9 and 0.4; Bad pairs 0.5 and 0.1: 3 of the 4 (Good, Bad) pairs are ordered right.
    assert roc_auc(np.array([1, 1, 0, 0]), np.array([0.9, 0.4, 0.5, 0.1])) == pytest.approx(0.75)


def test_neg_pr_auc_treats_bad_as_positive() -> None:
    # Ranked by -score: 0.1 (Bad, precision 1/1), 0.4 (Good), 0.5 (Bad, precision 2/3), 0.9 (Good).
    assert neg_pr_auc(np.array([1, 1, 0, 0]), np.array([0.9, 0.4, 0.5, 0.1])) == pytest.approx((1 + 2 / 3) / 2)


def test_undefined_metrics_are_none() -> None:
    assert roc_auc(np.array([1, 1]), np.array([0.2, 0.3])) is None
    assert neg_pr_auc(np.array([0, 0]), np.array([0.2, 0.3])) is None


def test_ndcg10_graded_per_query_by_hand() -> None:
    queries = ["a", "a", "a", "b", "c", "c"]
    ratings = np.array([3.0, 1.0, 2.0, 3.0, 1.0, 1.0])
    scores = np.array([0.1, 0.9, 0.5, 0.7, 0.3, 0.2])
    # Query a: gains (rating - 1) = [2, 0, 1], ranked by score -> [0, 1, 2].
    dcg = 0 / math.log2(2) + 1 / math.log2(3) + 2 / math.log2(4)
    idcg = 2 / math.log2(2) + 1 / math.log2(3)
    # Query b has one pair and query c only zero gains: both have no defined ranking quality.
    value, count = ndcg_at_k(queries, ratings, scores)
    assert count == 1
    assert value == pytest.approx(dcg / idcg)


def test_ndcg_cutoff_and_averaging() -> None:
    # Two queries of different sizes; k=1 keeps only the top-ranked pair.
    queries = ["a", "a", "b", "b", "b"]
    ratings = np.array([2.0, 3.0, 3.0, 2.0, 1.0])
    scores = np.array([0.9, 0.1, 0.9, 0.5, 0.1])
    value, count = ndcg_at_k(queries, ratings, scores, k=1)
    assert count == 2
    assert value == pytest.approx((1 / 2 + 1.0) / 2)  # a: gain 1 of ideal 2; b: ideal order


def test_compute_metrics_rejects_bad_scores() -> None:
    with pytest.raises(ValueError, match="NaN"):
        compute_metrics(["a", "b"], np.array([3.0, 1.0]), np.array([np.nan, 0.1]))
    with pytest.raises(ValueError, match="length mismatch"):
        compute_metrics(["a"], np.array([3.0, 1.0]), np.array([0.3, 0.1]))


def test_compute_metrics_fields() -> None:
    out = compute_metrics(["a", "a", "b", "b"], np.array([3.0, 1.0, 2.67, 1.33]), np.array([0.8, 0.2, 0.6, 0.4]))
    assert out["roc_auc"] == 1.0
    assert out["neg_pr_auc"] == 1.0
    assert out["ndcg10"] == 1.0
    assert (out["n"], out["n_queries"], out["ndcg10_queries"], out["good_rate"]) == (4, 2, 2, 0.5)


def test_long_tail_membership() -> None:
    tail = LongTail(["angle bracket", "Angle Bracket", "angle iron", "l bracket", "bracket"], min_queries=2)
    # distinct normalised queries: angle (2), bracket (3), iron (1), l (1)
    assert not tail.is_long_tail("bracket angle")
    assert tail.is_long_tail("angle iron")
    assert tail.is_long_tail("anglee bracket")  # a typo is an unseen token
    assert "fewer than 2" in tail.definition
