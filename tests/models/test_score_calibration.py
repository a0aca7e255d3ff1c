"""TailCalibration: upper-tail probabilities of scores under a reference sample, and Fisher's
combination of them (the open-set OOD score of ConvNet with combine_confidence)."""

from __future__ import annotations

import math

import pytest
import torch

from mixtures.models import ConvNet, GaussianMixtureClassifier
from mixtures.models.class_density import ClassDensity
from mixtures.models.score_calibration import TailCalibration


def test_tail_probability_matches_the_normal_oracle():
    """Reference N(0, 1) and Exp(1) samples: inside the reference range log P(S ≥ s) is the
    true upper tail within sampling error; beyond it, it keeps falling (no ties at the top)."""
    gen = torch.Generator().manual_seed(0)
    ref = torch.stack([torch.randn(200_000, generator=gen),
                       -torch.rand(200_000, generator=gen).log()], 1)
    cal = TailCalibration(2, 1000)
    cal.fit(ref)
    s = torch.tensor([-1.0, 0.0, 1.0, 2.0, 2.5])
    log_p = cal.log_tail(torch.stack([s, s.clamp_min(0.1)], 1).double())
    normal = torch.distributions.Normal(0.0, 1.0)
    assert torch.allclose(log_p[:, 0].exp(), (1 - normal.cdf(s)).double(), atol=3e-3)
    assert torch.allclose(log_p[:, 1].exp(), torch.exp(-s.clamp_min(0.1)).double(), atol=3e-3)
    far = cal.log_tail(torch.tensor([[4.0, 8.0], [5.0, 9.0], [6.0, 10.0]]))
    assert (far.diff(dim=0) < 0).all() and (far < math.log(0.5 / 1000) + 1e-9).all()
    # the exponential tail of Exp(1) beyond the 99.95% quantile has slope about −1
    slope = (far[2, 1] - far[0, 1]) / 2
    assert -1.3 < float(slope) < -0.7


def test_fisher_combination_and_checkpoint_round_trip():
    gen = torch.Generator().manual_seed(1)
    cal = TailCalibration(2, 100)
    cal.fit(torch.randn(5000, 2, generator=gen))
    x = torch.tensor([[0.0, 0.0], [3.5, 0.0], [0.0, 3.5], [1.5, 1.5]])
    lt = cal.log_tail(x)
    assert torch.allclose(cal.combined(x), -lt.sum(1))
    # one extreme score is enough; moderately unusual on both beats one moderate score
    c = cal.combined(x)
    assert c[1] > c[0] and c[2] > c[0] and c[3] > cal.combined(torch.tensor([[1.5, 0.0]]))[0]
    other = TailCalibration(2, 100)
    assert not other.is_fitted
    other.load_state_dict(cal.state_dict())
    assert other.is_fitted and torch.equal(other.combined(x), cal.combined(x))


def test_bad_input_is_refused():
    with pytest.raises(RuntimeError, match="not fitted"):
        TailCalibration(2).combined(torch.zeros(3, 2))
    with pytest.raises(ValueError, match=r"\[N ≥ 10, 2\]"):
        TailCalibration(2).fit(torch.zeros(5, 2))
    with pytest.raises(ValueError, match="non-finite"):
        TailCalibration(2).fit(torch.full((20, 2), float("nan")))
    head = GaussianMixtureClassifier(128, 10, 1, seed=0)
    with pytest.raises(ValueError, match="model.net.density too, or model.net"):
        ConvNet(head, combine_confidence=True)


def test_convnet_combines_the_density_with_the_confidence():
    """combine_confidence: after fit_density and calibrate, ood_score (auto) is Fisher's
    statistic of [−log p(z), −max_c log p(c | x)]; the sources stay reachable."""
    torch.manual_seed(0)
    head = GaussianMixtureClassifier(16, 3, 1, seed=0)
    net = ConvNet(head, image_size=12, feature_dim=16,
                  density=ClassDensity(3, 16, 1, reg_covar=1e-3), combine_confidence=True).eval()
    x, y = torch.rand(90, 144), torch.arange(90) % 3
    with pytest.raises(ValueError, match="needs a calibrated combination"):
        net.ood_score(x, source="combined")
    net.fit_density(x, y)
    assert torch.allclose(net.ood_score(x), net.ood_score(x, source="density"))
    net.calibrate(torch.rand(60, 144))
    with torch.no_grad():
        pair = torch.stack([-net.log_density(x, "density"), -net(x).amax(1)], 1)
        assert torch.allclose(net.ood_score(x), net.calibration.combined(pair))
        assert torch.allclose(net.ood_score(x, source="density"), pair[:, 0])
