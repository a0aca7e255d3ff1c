"""Gaussian and mixture densities, gradients and sampling against ``torch.distributions``.

Letters: N points, B batch, K components, D features, P raw numbers per component, S samples.
"""

from __future__ import annotations

import math

import pytest
import torch
from torch import Tensor
from torch.distributions import Categorical, MixtureSameFamily, MultivariateNormal

from mixtures.distributions import (
    CovarianceType,
    DiagCovariance,
    FullCovariance,
    ScalarCovariance,
    SharedScalarCovariance,
    UnitCovariance,
    component_log_prob,
    mixture_log_prob,
    responsibilities,
    sample_mixture,
    weighted_log_prob,
)

F64 = torch.float64
K = 3
MIN_SCALE = 1e-3

COVARIANCES = [
    pytest.param(UnitCovariance(), id="unit"),
    pytest.param(UnitCovariance(scale=2.0), id="unit_scale2"),
    pytest.param(ScalarCovariance(), id="scalar"),
    pytest.param(SharedScalarCovariance(), id="shared_scalar"),
    pytest.param(DiagCovariance(), id="diag"),
    pytest.param(FullCovariance(), id="full"),
]
LAYOUTS = ["gmm", "mdn"]


def make_problem(cov: CovarianceType, layout: str, d: int, seed: int = 0) -> dict[str, Tensor]:
    """float64 inputs: GMM x ``[N, D]``, means ``[K, D]``, raw ``[K, P]``, log-weights ``[K]``;
    MDN x ``[B, D]``, means ``[B, K, D]``, raw ``[B, K, P]``, log-weights ``[B, K]``."""
    gen = torch.Generator().manual_seed(seed)
    batch, n = ((), 7) if layout == "gmm" else ((5,), 5)

    def randn(*shape: int) -> Tensor:
        return torch.randn(*shape, generator=gen, dtype=F64)

    return {
        "x": 2.0 * randn(n, d),
        "means": 2.0 * randn(*batch, K, d),
        "raw": 0.5 * randn(*batch, *cov.raw_shape(K, d)),
        "log_weights": randn(*batch, K).log_softmax(-1),
    }


def reference(cov: CovarianceType, means: Tensor, raw: Tensor, log_weights: Tensor):
    """Components and mixture in ``torch.distributions``, from ``cov.scale_tril(raw)``."""
    d = means.shape[-1]
    tril = cov.scale_tril(raw, d).expand(*means.shape, d)  # [*R, K, D, D]
    comps = MultivariateNormal(means, scale_tril=tril)
    return comps, MixtureSameFamily(Categorical(logits=log_weights), comps)


# -- densities -----------------------------------------------------------------------------------
@pytest.mark.parametrize("cov", COVARIANCES)
@pytest.mark.parametrize("layout", LAYOUTS)
@pytest.mark.parametrize("d", [1, 3])
@pytest.mark.parametrize(("dtype", "tol"), [(F64, 1e-5), (torch.float32, 1e-4)],
                         ids=["float64", "float32"])
def test_log_probs_match_torch(cov, layout, d, dtype, tol):
    """``component_log_prob`` / ``mixture_log_prob`` equal MultivariateNormal /
    MixtureSameFamily (float32 results compared with the float64 reference)."""
    p = make_problem(cov, layout, d)
    comps, mix = reference(cov, p["means"], p["raw"], p["log_weights"])
    expected_comp = comps.log_prob(p["x"].unsqueeze(-2))  # [*E, *R, K]
    expected_mix = mix.log_prob(p["x"])  # [*E, *R]
    q = {k: v.to(dtype) for k, v in p.items()}
    comp = component_log_prob(q["x"], q["means"], q["raw"], cov)
    mixed = mixture_log_prob(q["x"], q["log_weights"], q["means"], q["raw"], cov)
    assert comp.dtype == dtype and comp.shape == expected_comp.shape
    assert mixed.shape == expected_mix.shape
    torch.testing.assert_close(comp.double(), expected_comp, rtol=tol, atol=tol)
    torch.testing.assert_close(mixed.double(), expected_mix, rtol=tol, atol=tol)


@pytest.mark.parametrize("cov", COVARIANCES)
@pytest.mark.parametrize("layout", LAYOUTS)
@pytest.mark.parametrize("d", [1, 3])
def test_gradients_match_torch(cov, layout, d):
    """Autograd gradients w.r.t. points, means, raw and weight logits equal the reference's
    (the library takes normalised log-weights, so both sides differentiate through
    ``log_softmax``)."""
    p = make_problem(cov, layout, d)
    names = ["x", "means", "log_weights"] + (["raw"] if p["raw"].numel() else [])

    gen = torch.Generator().manual_seed(4)
    w = torch.rand(p["x"].shape[0], generator=gen, dtype=F64)  # a generic cotangent [N] / [B]

    def grads(fn) -> list[Tensor]:
        leaves = {k: v.clone().requires_grad_(k in names) for k, v in p.items()}
        out = fn(leaves)
        return list(torch.autograd.grad((w * out).sum(), [leaves[k] for k in names]))

    def ours(t: dict[str, Tensor]) -> Tensor:
        log_weights = t["log_weights"].log_softmax(-1)
        return mixture_log_prob(t["x"], log_weights, t["means"], t["raw"], cov)

    def theirs(t: dict[str, Tensor]) -> Tensor:
        return reference(cov, t["means"], t["raw"], t["log_weights"])[1].log_prob(t["x"])

    for name, got, want in zip(names, grads(ours), grads(theirs), strict=True):
        torch.testing.assert_close(got, want, rtol=1e-6, atol=1e-6, msg=f"d/d{name}")


@pytest.mark.parametrize("cov", COVARIANCES)
def test_gradcheck(cov):
    """Finite differences agree with autograd on a tiny float64 mixture."""
    gen = torch.Generator().manual_seed(5)
    x = torch.randn(3, 2, generator=gen, dtype=F64, requires_grad=True)
    means = torch.randn(2, 2, generator=gen, dtype=F64, requires_grad=True)
    log_w = torch.randn(2, generator=gen, dtype=F64).log_softmax(-1).requires_grad_()
    raw = 0.5 * torch.randn(cov.raw_shape(2, 2), generator=gen, dtype=F64)
    if raw.numel():
        raw.requires_grad_()
        inputs = (x, means, log_w, raw)
        assert torch.autograd.gradcheck(lambda a, b, c, r: mixture_log_prob(a, c, b, r, cov),
                                        inputs)
    else:
        inputs = (x, means, log_w)
        assert torch.autograd.gradcheck(lambda a, b, c: mixture_log_prob(a, c, b, raw, cov),
                                        inputs)


def test_feature_mismatch_raises():
    """Points and means with different D are refused with a message naming the fix."""
    with pytest.raises(ValueError, match="num_features"):
        component_log_prob(torch.zeros(4, 2), torch.zeros(K, 3), torch.zeros(K, 1),
                           ScalarCovariance())


@pytest.mark.parametrize("cov", COVARIANCES)
@pytest.mark.parametrize("layout", LAYOUTS)
def test_responsibilities_are_the_posterior(cov, layout):
    """Responsibilities are non-negative, sum to 1 over K, and equal π_k N_k / Σ_j π_j N_j."""
    p = make_problem(cov, layout, 3)
    weighted = weighted_log_prob(p["x"], p["log_weights"], p["means"], p["raw"], cov)
    resp = responsibilities(weighted)  # [*E, *R, K]
    assert bool((resp >= 0).all())
    torch.testing.assert_close(resp.sum(-1), torch.ones(resp.shape[:-1], dtype=F64))
    log_mix = mixture_log_prob(p["x"], p["log_weights"], p["means"], p["raw"], cov)
    torch.testing.assert_close(resp, (weighted - log_mix.unsqueeze(-1)).exp())


# -- sampling ------------------------------------------------------------------------------------
def _inv_softplus(scale: Tensor) -> Tensor:
    """Raw value whose constrained scale ``softplus(raw) + MIN_SCALE`` is ``scale``."""
    return torch.log(torch.expm1(scale - MIN_SCALE))


# Hand-written truths (D = 2): scales far from 1 so that σ ↔ σ² mix-ups show, and full factors
# with large off-diagonals so that L ↔ Lᵀ mix-ups show (L Lᵀ ≠ Lᵀ L).
SIGMA = torch.tensor([[0.5, 2.0], [2.0, 0.5], [1.5, 1.5]], dtype=F64)  # [K, D]
TRIL = torch.tensor([[[1.0, 0.0], [1.5, 0.5]],
                     [[2.0, 0.0], [-1.0, 0.5]],
                     [[0.5, 0.0], [0.3, 1.5]]], dtype=F64)  # [K, D, D]
MEANS = torch.tensor([[0.0, 0.0], [10.0, 0.0], [0.0, -10.0]], dtype=F64)  # [K, D]
WEIGHTS = torch.tensor([0.2, 0.3, 0.5], dtype=F64)  # [K]


def truth(name: str) -> tuple[CovarianceType, Tensor, Tensor]:
    """A covariance type, its raw tensor ``[K, P]`` and the dense ``[K, D, D]`` it encodes."""
    eye = torch.eye(2, dtype=F64)
    if name in ("unit", "unit_scale2"):
        s = 2.0 if name == "unit_scale2" else 1.0
        return UnitCovariance(scale=s), torch.zeros(K, 0, dtype=F64), s**2 * eye.expand(K, 2, 2)
    if name == "scalar":
        s = SIGMA[:, :1]  # [K, 1]
        return ScalarCovariance(), _inv_softplus(s), s[..., None] ** 2 * eye
    if name == "shared_scalar":
        s = torch.tensor([[2.0]], dtype=F64)
        return SharedScalarCovariance(), _inv_softplus(s), (4.0 * eye).expand(K, 2, 2)
    if name == "diag":
        return DiagCovariance(), _inv_softplus(SIGMA), torch.diag_embed(SIGMA**2)
    rows, cols = torch.tril_indices(2, 2)
    raw = TRIL[:, rows, cols].clone()
    raw[:, [0, 2]] = _inv_softplus(raw[:, [0, 2]])
    return FullCovariance(), raw, TRIL @ TRIL.transpose(-1, -2)


TRUTHS = ["unit", "unit_scale2", "scalar", "shared_scalar", "diag", "full"]


def check_moments(points: Tensor, labels: Tensor, weights: Tensor, means: Tensor, dense: Tensor):
    """Label frequencies, per-component means and covariances within ~5 standard errors.

    Args:
        points: ``[S, D]``; labels: ``[S]``; weights ``[K]``; means ``[K, D]``;
        dense: covariances ``[K, D, D]``.
    """
    s = labels.shape[0]
    freq = torch.bincount(labels, minlength=K).double() / s
    torch.testing.assert_close(freq, weights, rtol=0, atol=5 * math.sqrt(0.25 / s))
    for k in range(K):  # K = 3 components, each checked against its own truth
        pts = points[labels == k]
        n = pts.shape[0]
        var = dense[k].diagonal()
        err_mean = (pts.mean(0) - means[k]).abs()
        assert bool((err_mean <= 5 * (var / n).sqrt()).all()), (k, err_mean)
        emp = torch.cov(pts.T)
        scale = (var[:, None] * var[None, :]).sqrt()  # σ_i σ_j
        err_cov = ((emp - dense[k]) / scale).abs()
        assert bool((err_cov <= 5 * math.sqrt(2.0 / n)).all()), (k, emp, dense[k])


@pytest.mark.parametrize("name", TRUTHS)
def test_sample_moments_gmm(name):
    """200k GMM samples: frequencies ≈ weights, per-component mean / covariance ≈ truth."""
    cov, raw, dense = truth(name)
    torch.testing.assert_close(cov.covariance(raw, 2).expand(K, 2, 2), dense)  # the truth holds
    gen = torch.Generator().manual_seed(6)
    points, labels = sample_mixture(200_000, WEIGHTS.log(), MEANS, raw, cov, generator=gen)
    assert points.shape == (200_000, 2) and labels.shape == (200_000,)
    assert points.dtype == F64
    check_moments(points, labels, WEIGHTS, MEANS, dense)


@pytest.mark.parametrize("name", TRUTHS)
def test_sample_moments_mdn(name):
    """Batched (MDN) sampling: each batch row follows its own weights, means and covariances."""
    cov, raw, dense = truth(name)
    weights = torch.stack([WEIGHTS, WEIGHTS.flip(0)])  # [B, K]
    means = torch.stack([MEANS, -MEANS + 3.0])  # [B, K, D]
    raws = torch.stack([raw, raw.flip(0)])  # [B, K or 1, P]
    denses = torch.stack([dense, dense.flip(0)])  # [B, K, D, D]
    gen = torch.Generator().manual_seed(7)
    points, labels = sample_mixture(100_000, weights.log(), means, raws, cov, generator=gen)
    assert points.shape == (100_000, 2, 2) and labels.shape == (100_000, 2)
    check_moments(points[:, 0], labels[:, 0], weights[0], means[0], denses[0])
    check_moments(points[:, 1], labels[:, 1], weights[1], means[1], denses[1])


@pytest.mark.parametrize("cov", COVARIANCES)
def test_sample_is_reproducible(cov):
    """The same generator seed gives the same draw; shapes ``[S, D]`` / ``[S, B, D]``."""
    p = make_problem(cov, "mdn", 3)
    args = (p["log_weights"], p["means"], p["raw"], cov)
    a, la = sample_mixture(10, *args, generator=torch.Generator().manual_seed(8))
    b, lb = sample_mixture(10, *args, generator=torch.Generator().manual_seed(8))
    assert a.shape == (10, 5, 3) and la.shape == (10, 5)
    torch.testing.assert_close(a, b)
    assert torch.equal(la, lb)
