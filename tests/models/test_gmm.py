"""GaussianMixtureModel against scikit-learn, torch.distributions and known truth."""

from __future__ import annotations

import numpy as np
import pytest
import torch
from sklearn.mixture import GaussianMixture
from torch.distributions import Categorical, MixtureSameFamily, MultivariateNormal

from mixtures.data import make_blobs
from mixtures.distributions import (
    DiagCovariance,
    FullCovariance,
    ScalarCovariance,
    SharedScalarCovariance,
    UnitCovariance,
)
from mixtures.models import GaussianMixtureModel

ALL = {
    "full": FullCovariance,
    "diag": DiagCovariance,
    "scalar": ScalarCovariance,
    "shared_scalar": SharedScalarCovariance,
    "unit": UnitCovariance,
}
SKLEARN_TYPE = {"full": "full", "diag": "diag", "scalar": "spherical"}


def _fit(model: GaussianMixtureModel, x: torch.Tensor, steps: int = 300, lr: float = 0.05):
    opt = torch.optim.Adam(model.parameters(), lr=lr)
    for _ in range(steps):
        opt.zero_grad()
        loss = -model(x).mean()
        loss.backward()
        opt.step()
    return model


@pytest.fixture(scope="module")
def blobs():
    x, y, truth = make_blobs(6000, 2, 4, separation=3.0, covariance_type="full", seed=3,
                             dtype=torch.float64)
    return x[:5000], y[:5000], x[5000:], y[5000:], truth


@pytest.mark.parametrize("name", ["full", "diag", "scalar"])
def test_matches_sklearn_held_out_likelihood(blobs, name):
    """Gradient descent reaches scikit-learn's EM optimum (held-out mean log-likelihood)."""
    xtr, _, xte, yte, _ = blobs
    gen = torch.Generator().manual_seed(0)
    model = GaussianMixtureModel(4, 2, ALL[name]()).double()
    model.initialize(xtr, generator=gen)
    _fit(model, xtr)
    ours = model(xte).mean().item()
    sk = GaussianMixture(4, covariance_type=SKLEARN_TYPE[name], random_state=0, tol=1e-8,
                         max_iter=500).fit(xtr.numpy())
    ref = sk.score(xte.numpy())
    assert abs(ours - ref) <= 0.002 * abs(ref), (ours, ref)
    # the training objective is at least as good as EM's (both are local optima of one NLL)
    assert model(xtr).mean().item() >= sk.score(xtr.numpy()) - 1e-3


@pytest.mark.parametrize("name", ["shared_scalar", "unit"])
def test_recovers_truth_for_types_without_sklearn_equivalent(name):
    """Data drawn from the model's own family: the fit is as good as the true parameters."""
    x, y, truth = make_blobs(6000, 3, 4, separation=4.0, covariance_type="unit", seed=1,
                             dtype=torch.float64)
    xtr, xte = x[:5000], x[5000:]
    model = GaussianMixtureModel(4, 3, ALL[name]()).double()
    model.initialize(xtr, generator=torch.Generator().manual_seed(0))
    _fit(model, xtr)
    true_model = MixtureSameFamily(
        Categorical(probs=truth["weights"]),
        MultivariateNormal(truth["means"], covariance_matrix=truth["covariances"]),
    )
    oracle = true_model.log_prob(xte).mean().item()
    assert abs(model(xte).mean().item() - oracle) <= 0.005 * abs(oracle)
    if name == "shared_scalar":
        assert model.covariances[0, 0, 0].item() == pytest.approx(1.0, rel=0.05)


@pytest.mark.parametrize("name", list(ALL))
def test_log_prob_equals_torch_mixture(name):
    torch.manual_seed(0)
    model = GaussianMixtureModel(3, 4, ALL[name]()).double()
    with torch.no_grad():
        model.weight_logits.normal_()
        if model.raw_covariance.numel():
            model.raw_covariance.normal_()
    x = torch.randn(50, 4, dtype=torch.float64)
    ref = MixtureSameFamily(Categorical(logits=model.weight_logits),
                            MultivariateNormal(model.means, scale_tril=model.scale_tril))
    torch.testing.assert_close(model.log_prob(x), ref.log_prob(x), atol=1e-10, rtol=1e-10)
    proba = model.predict_proba(x)
    torch.testing.assert_close(proba.sum(-1), torch.ones(50, dtype=torch.float64))
    assert torch.equal(model.predict(x), proba.argmax(-1))


@pytest.mark.parametrize("name", ["full", "diag", "scalar"])
def test_parameter_count_matches_sklearn(name):
    x = np.random.default_rng(0).normal(size=(200, 3))
    sk = GaussianMixture(4, covariance_type=SKLEARN_TYPE[name], random_state=0).fit(x)
    assert GaussianMixtureModel(4, 3, ALL[name]()).num_parameters() == sk._n_parameters()


def test_mixing_weights_are_learned():
    """Weights receive gradients and move to the truth (the GMML pitfall: detached weights)."""
    x, y, _ = make_blobs(6000, 2, 2, separation=6.0, seed=0, dtype=torch.float64)
    x = torch.cat([x[y == 0][:2000], x[y == 1][:500]])  # true weights 0.8 / 0.2
    model = GaussianMixtureModel(2, 2, FullCovariance()).double()
    model.initialize(x, generator=torch.Generator().manual_seed(0))
    with torch.no_grad():
        model.weight_logits.zero_()  # start from equal weights
    loss = -model(x).mean()
    loss.backward()
    assert model.weight_logits.grad is not None and model.weight_logits.grad.abs().sum() > 0
    _fit(model, x, steps=200)
    assert sorted(model.weights.tolist()) == pytest.approx([0.2, 0.8], abs=0.01)


@pytest.mark.parametrize("method", ["kmeans", "k-means++", "random", "random_from_data"])
def test_initialisation_methods(blobs, method):
    xtr, ytr, _, _, _ = blobs
    model = GaussianMixtureModel(4, 2, FullCovariance()).double()
    model.initialize(xtr, method, torch.Generator().manual_seed(1))
    assert bool(model.initialized)
    assert torch.isfinite(model(xtr)).all()
    assert model.weights.sum().item() == pytest.approx(1.0)


def test_initialisation_errors():
    model = GaussianMixtureModel(5, 2)
    with pytest.raises(ValueError, match="num_components=5 exceeds the number of training"):
        model.initialize(torch.randn(3, 2))
    with pytest.raises(ValueError, match="unknown init method"):
        model.initialize(torch.randn(30, 2), method="spectral")
    with pytest.raises(ValueError, match=r"expected points of shape \[N, 2\]"):
        model.log_prob(torch.randn(4, 3))
    with pytest.raises(ValueError, match="num_components must be an integer ≥ 1"):
        GaussianMixtureModel(0, 2)


def test_sample_moments():
    model = GaussianMixtureModel(2, 2, FullCovariance()).double()
    cov = torch.tensor([[[2.0, 0.8], [0.8, 1.0]], [[0.5, -0.2], [-0.2, 0.3]]], dtype=torch.float64)
    model._load(torch.tensor([[0.0, 0.0], [10.0, 5.0]], dtype=torch.float64), cov,
                torch.tensor([0.3, 0.7], dtype=torch.float64))
    x, labels = model.sample(100_000, torch.Generator().manual_seed(0))
    assert x.shape == (100_000, 2)
    assert (labels == 1).double().mean().item() == pytest.approx(0.7, abs=0.01)
    for k in range(2):
        torch.testing.assert_close(torch.cov(x[labels == k].T), cov[k], atol=0.03, rtol=0.03)


def test_collapse_detection_and_reseed(blobs):
    """A component with no weight and a floor-sized scale is flagged and moved onto the data."""
    xtr, _, _, _, _ = blobs
    model = GaussianMixtureModel(4, 2, FullCovariance()).double()
    model.initialize(xtr, generator=torch.Generator().manual_seed(0))
    with torch.no_grad():
        model.means[2] = 1e3
        model.raw_covariance[2] = -50.0  # L = min_scale · I
        model.weight_logits[3] = -40.0
    mask = model.collapsed(min_weight=1e-4)
    assert mask.tolist() == [False, False, True, True]
    model.reseed(xtr, mask, torch.Generator().manual_seed(0))
    assert not model.collapsed(min_weight=1e-4).any()
    assert model.means[2].abs().max() < 100  # a data point, not 1e3
    assert model.weights.sum().item() == pytest.approx(1.0)
    _fit(model, xtr, steps=200)
    sk = GaussianMixture(4, random_state=0).fit(xtr.numpy())
    assert model(xtr).mean().item() >= sk.score(xtr.numpy()) - 0.01
