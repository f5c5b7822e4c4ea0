"""The paired bootstrap (hstl/bootstrap.py) against answers known without it: exact enumeration of every bootstrap
sample of a 3-sentence test set, and cases where every sample agrees."""

from __future__ import annotations

import itertools
import math

import numpy as np
import pytest

from hstl.bootstrap import paired_bootstrap, sentence_counts

# (num_correct, num_pred, num_gold) per sentence. A finds the mentions of sentences 0 and 1, B only that of 2;
# B predicts nothing in sentence 1.
COUNTS_A = np.array([[1, 1, 1], [1, 1, 1], [0, 1, 1]])
COUNTS_B = np.array([[0, 1, 1], [0, 0, 1], [1, 1, 1]])


def exact_p_values(counts_a: np.ndarray, counts_b: np.ndarray) -> tuple[float, float]:
    """P(delta <= 0) and P(delta >= 0) over all n^n equally likely bootstrap samples, F1 = 2c / (p + g)."""
    def f1(rows):
        correct, predicted, gold = (sum(values) for values in zip(*rows))
        return 2 * correct / (predicted + gold) if predicted + gold else 0.0

    n = len(counts_a)
    deltas = [f1([counts_a[i] for i in sample]) - f1([counts_b[i] for i in sample])
              for sample in itertools.product(range(n), repeat=n)]
    return (sum(d <= 1e-12 for d in deltas) / len(deltas), sum(d >= -1e-12 for d in deltas) / len(deltas))


def test_exact_enumeration_by_hand():
    # A sample drawing sentence i k_i times gives A F1 (k0 + k1) / 3 and B F1 2 k2 / (k0 + k2 + 3). A does not win
    # only when k2 >= 2: (0, 0, 3) once, (1, 0, 2) and (0, 1, 2) three times each: 7 of 27; no ties.
    assert exact_p_values(COUNTS_A, COUNTS_B) == (7 / 27, 20 / 27)


# A finds the mentions of sentences 0 and 2, B those of 0 and 1 but with two false positives in each.
PRECISION_A = np.array([[1, 1, 1], [0, 0, 1], [1, 1, 1], [0, 0, 1]])
PRECISION_B = np.array([[1, 3, 1], [1, 3, 1], [0, 0, 1], [0, 0, 1]])


@pytest.mark.parametrize(("counts_a", "counts_b"), [(COUNTS_A, COUNTS_B), (PRECISION_A, PRECISION_B)])
def test_p_values_match_exact_enumeration(counts_a, counts_b):
    expected_a, expected_b = exact_p_values(counts_a, counts_b)
    num_samples = 40_000
    result = paired_bootstrap(counts_a, counts_b, num_samples=num_samples, seed=3)
    tolerance = 5 * math.sqrt(0.25 / num_samples)
    assert result.p_a_better == pytest.approx(expected_a, abs=tolerance)
    assert result.p_b_better == pytest.approx(expected_b, abs=tolerance)
    assert result.p_two_sided == pytest.approx(min(1.0, 2 * min(expected_a, expected_b)), abs=2 * tolerance)


def test_observed_scores():
    result = paired_bootstrap(COUNTS_A, COUNTS_B, num_samples=10)
    # Observed: A 2 correct of 3 predicted, 3 gold; B 1 of 2 predicted, 3 gold.
    assert (result.f1_a, result.f1_b) == pytest.approx((2 / 3, 2 * 1 / 5))
    assert result.delta == pytest.approx(2 / 3 - 2 / 5)
    assert (result.num_samples, result.num_sentences) == (10, 3)


def test_identical_systems_are_never_different_and_a_system_right_everywhere_always_wins():
    same = paired_bootstrap(COUNTS_A, COUNTS_A, num_samples=500)
    assert (same.delta, same.p_a_better, same.p_b_better, same.p_two_sided) == (0.0, 1.0, 1.0, 1.0)
    right = np.array([[1, 1, 1]] * 5)
    wrong = np.array([[0, 1, 1]] * 5)
    result = paired_bootstrap(right, wrong, num_samples=500)
    assert (result.f1_a, result.f1_b, result.p_a_better, result.p_b_better, result.p_two_sided) == (1.0, 0.0, 0.0, 1.0,
                                                                                                      0.0)


def test_same_seed_same_answer_other_seed_other_samples():
    first = paired_bootstrap(COUNTS_A, COUNTS_B, num_samples=300, seed=1)
    assert first == paired_bootstrap(COUNTS_A, COUNTS_B, num_samples=300, seed=1)
    assert first.p_a_better != paired_bootstrap(COUNTS_A, COUNTS_B, num_samples=300, seed=2).p_a_better


def test_sentence_counts_of_labels():
    gold = [["B-Disease", "I-Disease", "O"], ["O", "B-Disease"], ["O"]]
    pred = [["B-Disease", "I-Disease", "O"], ["B-Disease", "O"], ["B-Chemical"]]
    assert sentence_counts(gold, pred).tolist() == [[1, 1, 1], [0, 1, 1], [0, 1, 0]]
    with pytest.raises(ValueError, match="expected 3 predicted sentences"):
        sentence_counts(gold, pred[:2])


@pytest.mark.parametrize(
    ("counts_b", "num_samples", "message"),
    [(COUNTS_B[:2], 10, "one shape"), (COUNTS_B[:, :2], 10, "one shape"), (COUNTS_B, 0, "num_samples"),
     (COUNTS_B, 2.0, "num_samples")],
)
def test_bad_input_is_refused(counts_b, num_samples, message):
    with pytest.raises(ValueError, match=message):
        paired_bootstrap(COUNTS_A, counts_b, num_samples=num_samples)
