"""mixtures/lit/ood.py: the on-device AUROC equals the host Mann-Whitney AUROC (ties too),
and ScoreList concatenates batches."""

from __future__ import annotations

import pytest
import torch

from mixtures.lit.ood import ScoreList, auroc_tensor
from mixtures.metrics import auroc


def test_auroc_tensor_matches_the_host_auroc_with_ties():
    gen = torch.Generator().manual_seed(0)
    pos = torch.randint(0, 6, (57,), generator=gen).float()  # many ties
    neg = torch.randint(0, 4, (31,), generator=gen).float()
    assert float(auroc_tensor(pos, neg)) == auroc(pos, neg)
    x = torch.randn(100, generator=gen)
    assert float(auroc_tensor(x + 10, x)) == 1.0 and float(auroc_tensor(x, x + 10)) == 0.0
    assert float(auroc_tensor(torch.ones(3), torch.ones(4))) == 0.5
    assert float(auroc_tensor(torch.zeros(0), x)) == 0.5


@pytest.mark.filterwarnings("ignore:The ``compute`` method of metric ScoreList")
def test_score_list_concatenates():
    metric = ScoreList()
    assert metric.compute().numel() == 0
    metric.update(torch.tensor([1.0, 2.0]))
    metric.update(torch.tensor([[3.0]]))
    assert torch.equal(metric.compute(), torch.tensor([1.0, 2.0, 3.0]))
