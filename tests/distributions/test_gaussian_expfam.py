"""The exponential-family view used by EM: F(x)·A + x·b + c and closed-form estimates."""

from __future__ import annotations

import pytest
import torch

from mixtures.distributions import (
    DiagCovariance,
    FullCovariance,
    ScalarCovariance,
    SharedFullCovariance,
    SharedScalarCovariance,
    UnitCovariance,
    component_log_prob,
    expfam_log_prob,
)

TYPES = {
    "unit": lambda: UnitCovariance(2.0),
    "scalar": ScalarCovariance,
    "shared_scalar": SharedScalarCovariance,
    "diag": DiagCovariance,
    "full": FullCovariance,
    "shared_full": SharedFullCovariance,
}
K, N = 4, 60
D = 3
DIMS = [1, 2, 3, 20]  # full: odd D is the packed triangle, even D has a band twice


def _problem(name: str, batch: tuple[int, ...], seed: int = 0, d: int = D):
    gen = torch.Generator().manual_seed(seed)
    cov = TYPES[name]()
    raw = 0.3 * torch.randn(*batch, *cov.raw_shape(K, d), dtype=torch.float64, generator=gen)
    means = torch.randn(*batch, K, d, dtype=torch.float64, generator=gen)
    x = 3.0 * torch.randn(N, d, dtype=torch.float64, generator=gen)
    return cov, raw, means, x


@pytest.mark.parametrize("d", DIMS)
@pytest.mark.parametrize("batch", [(), (2,)])
@pytest.mark.parametrize("name", list(TYPES))
def test_coefficients_give_the_gaussian_log_density(name, batch, d):
    cov, raw, means, x = _problem(name, batch, d=d)
    quad, lin, const = cov.coefficients(raw, means)
    fast = expfam_log_prob(cov.moment_features(x), x, quad, lin, const)  # [N, *batch, K]
    xx = x.reshape(N, *([1] * len(batch)), d).expand(N, *batch, d)
    torch.testing.assert_close(fast, component_log_prob(xx, means, raw, cov),
                               rtol=1e-10, atol=1e-10)
    # the shared-covariance shortcut (quadratic term [..., 1, Q]) equals the general product
    assert quad.shape[-2] == (1 if cov.shared else K)
    general = expfam_log_prob(cov.moment_features(x), x,
                              quad.expand(*const.shape, quad.shape[-1]).contiguous(), lin, const)
    torch.testing.assert_close(fast, general, rtol=1e-12, atol=1e-12)


@pytest.mark.parametrize("d", DIMS)
@pytest.mark.parametrize("name", list(TYPES))
def test_moment_features_fill_a_reused_buffer(name, d):
    cov, _, _, x = _problem(name, (), d=d)
    expected = cov.moment_features(x)
    assert expected.shape == (N, cov.feature_size(d))
    buffer = torch.empty(N + 5, cov.feature_size(d), dtype=torch.float64)
    torch.testing.assert_close(cov.moment_features(x, out=buffer), expected)


@pytest.mark.parametrize("d", [1, 2, 3, 4, 7, 32, 33])
def test_full_features_are_each_pair_of_the_outer_product(d):
    """F(x) = x_i x_{(i+t) mod D}: each unordered pair once in the unpacking layout (D(D+1)/2
    in all), the coefficients give xᵀ Λ x, and the unpacked sums are Σ x xᵀ."""
    cov = FullCovariance()
    gen = torch.Generator().manual_seed(d)
    x = torch.randn(2, N, d, dtype=torch.float64, generator=gen)  # a leading batch dim too
    rows, cols, mult, unique = cov._layout(d, x.device, x.dtype)
    feats = cov.moment_features(x)
    assert feats.shape == (2, N, cov.feature_size(d)) == (2, N, d * (d // 2 + 1))
    torch.testing.assert_close(feats, x[..., rows] * x[..., cols], rtol=0, atol=0)
    pairs = {(min(i, j), max(i, j))
             for i, j in zip(rows[unique].tolist(), cols[unique].tolist(), strict=True)}
    assert len(pairs) == len(unique) == d * (d + 1) // 2
    a = torch.randn(d, d, dtype=torch.float64, generator=gen)
    prec = a @ a.T
    torch.testing.assert_close((feats * (prec[rows, cols] * mult)).sum(-1),
                               torch.einsum("bni,ij,bnj->bn", x, prec, x))
    torch.testing.assert_close(cov._unpack(feats.sum(1), d), x.transpose(-1, -2) @ x)


@pytest.mark.parametrize("name", list(TYPES))
def test_moment_features_write_into_a_column_slice(name):
    """EM writes F(x) into the last Q columns of its design matrix [1 | x | F(x)]."""
    cov, _, _, x = _problem(name, (), d=6)
    q = cov.feature_size(6)
    design = torch.zeros(N + 3, 1 + 6 + q, dtype=torch.float64)
    got = cov.moment_features(x, out=design[:, 7:])
    assert got.data_ptr() == design[:, 7:].data_ptr()
    torch.testing.assert_close(design[:N, 7:], cov.moment_features(x), rtol=0, atol=0)
    assert not bool(design[:, :7].any()) and not bool(design[N:].any())


@pytest.mark.parametrize("d", DIMS)
@pytest.mark.parametrize("batch", [(), (2,)])
@pytest.mark.parametrize("name", list(TYPES))
def test_estimate_equals_weighted_moments(name, batch, d):
    """M-step from sums = the weighted mean and the (pooled) weighted covariance + reg."""
    cov, _, _, x = _problem(name, batch, seed=1, d=d)
    gen = torch.Generator().manual_seed(2)
    resp = torch.softmax(torch.randn(N, *batch, K, dtype=torch.float64, generator=gen), -1)
    feats = cov.moment_features(x)
    counts = resp.sum(0)
    sum_x = torch.einsum("n...k,nd->...kd", resp, x)
    sum_f = torch.einsum("n...k,nq->...kq", resp, feats)
    means, raw = cov.estimate(counts, sum_x, sum_f, reg=1e-3)
    torch.testing.assert_close(means, sum_x / counts[..., None])
    if name == "unit":
        assert raw.shape[-1] == 0
        return
    diff = x.reshape(N, *([1] * len(batch)), 1, d) - means
    dense = torch.einsum("n...k,n...ki,n...kj->...kij", resp, diff, diff) / counts[..., None, None]
    if cov.shared:
        w = counts[..., None, None]
        dense = (w * dense).sum(-3, keepdim=True) / w.sum(-3, keepdim=True)
    dense = dense + 1e-3 * torch.eye(d, dtype=torch.float64)
    expected = cov.covariance(cov.from_covariance(dense, counts), d)
    torch.testing.assert_close(cov.covariance(raw, d), expected, rtol=1e-10, atol=1e-12)
    if cov.shared:  # the total over components is enough
        _, raw_total = cov.estimate(counts, sum_x, sum_f.sum(-2, keepdim=True), reg=1e-3)
        torch.testing.assert_close(raw_total, raw)
