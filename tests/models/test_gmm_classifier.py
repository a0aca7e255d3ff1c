"""GaussianMixtureClassifier against torch.distributions, and its mixing weights learn."""

from __future__ import annotations

import pytest
import torch
from torch import distributions as td

from mixtures.distributions import DiagCovariance, FullCovariance, ScalarCovariance
from mixtures.models import ConvNet, GaussianMixtureClassifier, LinearHead

COVS = {"diag": DiagCovariance, "full": FullCovariance, "scalar": ScalarCovariance}


def _randomise(head: GaussianMixtureClassifier, seed: int = 0) -> None:
    gen = torch.Generator().manual_seed(seed)
    with torch.no_grad():
        for p in (head.means, head.raw_cov, head.mixture_logits, head.prior_logits):
            p.copy_(torch.randn(p.shape, generator=gen, dtype=p.dtype))


def _reference(head: GaussianMixtureClassifier, z: torch.Tensor) -> torch.Tensor:
    """log p(z | c) [B, C] by MixtureSameFamily per class, from the dense covariances."""
    c, g, d = head.num_classes, head.num_components, head.feature_dim
    cov = head.cov.covariance(head.raw_cov, d).expand(c * g, d, d).reshape(c, g, d, d)
    comps = td.MultivariateNormal(head.means.view(c, g, d), covariance_matrix=cov)
    mix = td.MixtureSameFamily(td.Categorical(logits=head.mixture_logits), comps)
    return mix.log_prob(z[:, None, :])  # [B, C]


@pytest.mark.parametrize("projection", ["none", "linear", "sparse"])
@pytest.mark.parametrize("name", list(COVS))
def test_log_probs_match_torch_distributions(name, projection):
    torch.manual_seed(0)
    head = GaussianMixtureClassifier(6, 4, num_components=3, covariance=COVS[name](),
                                     projection=projection, feature_dim=5).double()
    _randomise(head)
    x = torch.randn(17, 6, dtype=torch.float64)
    z = head.features(x)
    expected = _reference(head, z)
    assert torch.allclose(head.class_log_likelihood(x), expected, atol=1e-9)
    posterior = torch.log_softmax(expected + torch.log_softmax(head.prior_logits, -1), -1)
    assert torch.allclose(head(x), posterior, atol=1e-9)
    resp = head.component_responsibilities(x)
    assert resp.shape == (17, 4, 3) and torch.allclose(resp.sum(-1), torch.ones(17, 4,
                                                                                 dtype=resp.dtype))


def test_sparse_projection_is_frozen_and_achlioptas():
    head = GaussianMixtureClassifier(400, 3, projection="sparse", feature_dim=50, seed=1)
    assert "project" in dict(head.named_buffers())
    assert all("project" not in n for n, _ in head.named_parameters())
    values = head.project.unique()
    scale = (3.0 / 50) ** 0.5
    assert torch.allclose(values, torch.tensor([-scale, 0.0, scale]))
    assert (head.project == 0).float().mean() == pytest.approx(2 / 3, abs=0.02)


def test_mixing_weights_receive_gradients_and_change():
    """Trained by plain backprop (no manual re-sampling): the within-class mixing weights get
    gradients and move; the component of each class that explains its data gains weight."""
    torch.manual_seed(0)
    # class c has two clusters, at ±3 along axis c, with 80% / 20% of the points
    n, d = 400, 2
    y = torch.randint(0, 2, (n,))
    major = torch.rand(n) < 0.8
    centre = torch.zeros(n, d)
    centre[torch.arange(n), y] = torch.where(major, 3.0, -3.0)
    x = centre + 0.3 * torch.randn(n, d)
    head = GaussianMixtureClassifier(d, 2, num_components=2, covariance=DiagCovariance(),
                                     init_mean_std=2.0, seed=3)
    before = head.log_mixing_weights.detach().exp().clone()
    opt = torch.optim.Adam(head.parameters(), lr=0.05)
    for step in range(150):
        opt.zero_grad()
        loss = torch.nn.functional.nll_loss(head(x), y) - head.class_log_likelihood(x)[
            torch.arange(n), y].mean() / 10
        loss.backward()
        if step == 0:
            grad = head.mixture_logits.grad
            assert grad is not None and grad.abs().max() > 1e-4
        opt.step()
    after = head.log_mixing_weights.detach().exp()
    assert (after - before).abs().max() > 0.1
    # each class ends with a majority component of weight about 0.8
    assert torch.allclose(after.max(-1).values, torch.full((2,), 0.8), atol=0.1)


def test_cnn_with_either_head_gives_log_probs():
    torch.manual_seed(0)
    x = torch.randn(3, 784)
    for head in (LinearHead(128, 10), GaussianMixtureClassifier(128, 10, num_components=2)):
        net = ConvNet(head).eval()
        out = net(x)
        assert out.shape == (3, 10)
        assert torch.allclose(out.exp().sum(-1), torch.ones(3), atol=1e-5)
        assert net.class_log_likelihood(x).shape == (3, 10)


def test_bad_arguments_name_the_field():
    with pytest.raises(ValueError, match="projection='pca'"):
        GaussianMixtureClassifier(4, 2, projection="pca")
    with pytest.raises(ValueError, match="feature_dim"):
        GaussianMixtureClassifier(4, 2, projection="linear")
    with pytest.raises(ValueError, match="num_components"):
        GaussianMixtureClassifier(4, 2, num_components=0)
