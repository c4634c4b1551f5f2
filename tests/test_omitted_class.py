"""The omitted-class lesson's measurements against hand-computed cases."""
import itertools

import pytest
import torch

from distill_lib.core.data import Dataset
from distill_lib.lessons import omitted_class as oc


def test_auc_is_the_share_of_positive_negative_pairs_ranked_right():
    scores = torch.tensor([0.9, 0.8, 0.8, 0.3, 0.1, 0.8])
    positives = torch.tensor([1, 1, 0, 1, 0, 0]).bool()
    pairs = [(p, n) for p, n in itertools.product(scores[positives], scores[~positives])]
    expected = sum(1.0 if p > n else 0.5 if p == n else 0.0 for p, n in pairs) / len(pairs)
    assert oc.auc(scores, positives) == pytest.approx(expected)
    assert oc.auc(torch.tensor([3.0, 2.0, 1.0]), torch.tensor([1, 0, 0]).bool()) == 1.0
    with pytest.raises(ValueError, match="both positive and negative"):
        oc.auc(torch.tensor([1.0, 2.0]), torch.tensor([1, 1]).bool())


def test_the_bias_rule_reaches_the_share_without_labels():
    logits = torch.tensor([[5.0, 0.0, 1.0], [4.0, 0.0, 3.0], [0.0, 1.0, 0.5], [2.0, 1.5, 0.0]])
    # class 2 needs +4 (row 0), +1 (row 1), +0.5 (row 2), +2 (row 3): a half of the rows needs +1
    bias = oc.bias_for_share(logits, 2, 0.5)
    assert bias == pytest.approx(1.0, abs=1e-5)
    shifted = logits.clone()
    shifted[:, 2] += bias
    assert (shifted.argmax(1) == 2).float().mean() >= 0.5
    assert oc.bias_for_share(logits, 0, 0.25) == 0.0  # already predicted often enough: no bias


def test_recall_and_without_class():
    labels = torch.tensor([0, 1, 1, 2])
    logits = torch.tensor([[1.0, 0.0], [0.0, 1.0], [1.0, 0.9], [0.0, 0.0]])
    logits = torch.cat([logits, torch.zeros(4, 1)], 1)
    assert oc.recall(logits, labels, 1) == 0.5
    assert oc.recall(logits, labels, 1, bias=0.2) == 1.0
    data = Dataset("d", "train", torch.rand(4, 1, 2, 2), labels, ["a", "b", "c"])
    kept = oc.without_class(data, 1)
    assert kept.labels.tolist() == [0, 2] and kept.classes == ["a", "b", "c"]
