"""GaussianMixtureEM engine: additive statistics, chunking, batched restarts, subnormals."""

from __future__ import annotations

import pytest
import torch

from mixtures.data import make_blobs
from mixtures.distributions import (
    DiagCovariance,
    FullCovariance,
    ScalarCovariance,
    SharedFullCovariance,
    SharedScalarCovariance,
    UnitCovariance,
    component_log_prob,
    expfam_log_prob,
    normalize_log_prob,
)
from mixtures.models.em import GaussianMixtureEM, initial_responsibilities
from mixtures.models.init import kmeans_labels


def _engine(x, cov, restarts=1, chunk=None, init="kmeans", dtype=torch.float64):
    em = GaussianMixtureEM(4, x.shape[1], cov, num_restarts=restarts, chunk_elements=chunk)
    em = em.to(dtype)
    em.initialize_from_responsibilities(x, initial_responsibilities(x, 4, restarts, init, 3))
    return em


@pytest.fixture(scope="module")
def data():
    x, _, _ = make_blobs(4000, 5, 4, separation=3.0, seed=4, dtype=torch.float64)
    return x


@pytest.mark.parametrize("cov", [FullCovariance, SharedFullCovariance, DiagCovariance])
def test_statistics_add_up_over_splits_and_chunks(data, cov):
    em = _engine(data, cov())
    whole = em.statistics(data)
    parts = em.statistics(data[:1234]) + em.statistics(data[1234:])
    em.chunk_elements = 300  # many small chunks
    chunked = em.statistics(data)
    for a, b, c in zip(whole.as_tuple(), parts.as_tuple(), chunked.as_tuple(), strict=True):
        torch.testing.assert_close(b, a, rtol=1e-12, atol=1e-9)
        torch.testing.assert_close(c, a, rtol=1e-12, atol=1e-9)


def test_batched_restarts_equal_separate_runs(data):
    """Restart r of a batched fit equals a single fit from the same initialisation."""
    batched = _engine(data, FullCovariance(), restarts=3, init="random_from_data")
    out = batched.fit(data, max_iter=30, tol=1e-6)
    resp = initial_responsibilities(data, 4, 3, "random_from_data", 3)
    for r in range(3):
        single = GaussianMixtureEM(4, 5, FullCovariance()).double()
        single.initialize_from_responsibilities(data, resp[:, r : r + 1])
        ref = single.fit(data, max_iter=30, tol=1e-6)
        assert int(out["n_iter"][r]) == int(ref["n_iter"][0])
        torch.testing.assert_close(batched.means[r], single.means[0])
        assert out["lower_bound"][r].item() == pytest.approx(ref["lower_bound"][0].item())


def test_no_subnormal_responsibilities_on_separated_data():
    """Far components get exactly 0 (subnormals slow CPUs ~50×); the likelihood is unchanged."""
    x, _, _ = make_blobs(3000, 16, 8, separation=8.0, seed=0)
    em = _engine(x, FullCovariance(), dtype=torch.float32)
    logp = em.restart_weighted_log_prob(x)  # [N, 1, K]
    resp, norm = normalize_log_prob(logp.clone())
    tiny = torch.finfo(torch.float32).tiny
    assert not bool(((resp > 0) & (resp < tiny)).any())
    assert bool((resp == 0).any())  # the cut did something on this data
    torch.testing.assert_close(norm, torch.logsumexp(logp, -1))
    torch.testing.assert_close(resp, torch.softmax(logp, -1), atol=1e-7, rtol=0)


ALL_TYPES = {
    "full": FullCovariance,
    "shared_full": SharedFullCovariance,
    "diag": DiagCovariance,
    "scalar": ScalarCovariance,
    "shared_scalar": SharedScalarCovariance,
    "unit": lambda: UnitCovariance(1.5),
}


def _direct_moments(em, x, resp):
    """Float64 oracle of the statistics: counts [R, K], Σ r (x − shift) [R, K, D] and the
    second moments Σ r (x − shift)(x − shift)ᵀ [R, K, D, D], by einsum over all points."""
    xc = x - em.shift
    counts = resp.sum(0)
    sum_x = torch.einsum("nrk,nd->rkd", resp, xc)
    second = torch.einsum("nrk,ni,nj->rkij", resp, xc, xc)
    return counts, sum_x, second


@pytest.mark.parametrize("d", [5, 6])  # odd D: the packed triangle; even: a band twice
@pytest.mark.parametrize("given_resp", [False, True])
@pytest.mark.parametrize("name", list(ALL_TYPES))
def test_statistics_equal_a_direct_float64_computation(data, name, given_resp, d):
    """The one-pass design-matrix statistics (G = [1 | x | F(x)], scores G C, sums Gᵀ r, many
    chunks) equal per-point log-densities, a softmax and einsum sums; the M-step from them
    equals the weighted mean and covariance of the points, projected onto the type."""
    x = data[:1500] * torch.tensor([1.0, 3.0, 0.5, 2.0, 1.0], dtype=torch.float64)  # [N, 5]
    x = torch.cat([x, x[:, :1] - 0.5 * x[:, 1:2]], 1)[:, :d]  # a correlated sixth feature
    r, k = 2, 4
    cov = ALL_TYPES[name]()
    em = GaussianMixtureEM(k, d, cov, num_restarts=r, chunk_elements=300).double()
    em.initialize_from_responsibilities(x, initial_responsibilities(x, k, r,
                                                                    "random_from_data", 5))
    logp = component_log_prob(x[:, None, :], em.means, em.raw_covariance, cov) + em.log_weights
    if given_resp:  # arbitrary positive weights, rows not normalised
        gen = torch.Generator().manual_seed(7)
        resp = torch.rand(x.shape[0], r, k, dtype=torch.float64, generator=gen)
        stats = em.statistics(x, resp)
        assert torch.equal(stats.log_likelihood, torch.zeros(r, dtype=torch.float64))
    else:
        resp = torch.softmax(logp, -1)  # [N, R, K]
        stats = em.statistics(x)
        torch.testing.assert_close(stats.log_likelihood, torch.logsumexp(logp, -1).sum(0),
                                   rtol=1e-12, atol=0)
    counts, sum_x, second = _direct_moments(em, x, resp)
    torch.testing.assert_close(stats.counts, counts, rtol=1e-12, atol=1e-12)
    torch.testing.assert_close(stats.sum_x, sum_x, rtol=1e-12, atol=1e-10)
    if isinstance(cov, FullCovariance):  # the packed second moments themselves
        unpacked = cov._unpack(stats.sum_f, d)
        expected = second.sum(-3, keepdim=True) if cov.shared else second
        torch.testing.assert_close(unpacked, expected, rtol=1e-12, atol=1e-9)
    em.m_step(stats)
    w = counts + 10 * torch.finfo(torch.float64).eps
    means = sum_x / w[..., None]
    torch.testing.assert_close(em.means, means + em.shift, rtol=1e-12, atol=1e-12)
    if name == "unit":
        return
    dense = second / w[..., None, None] - means[..., :, None] * means[..., None, :]
    dense = dense + em.reg_covar * torch.eye(d, dtype=torch.float64)
    expected = cov.covariance(cov.from_covariance(dense, w), d)
    torch.testing.assert_close(cov.covariance(em.raw_covariance, d), expected, rtol=1e-10,
                               atol=1e-12)


@pytest.mark.parametrize("name", list(ALL_TYPES))
def test_weighted_log_prob_equals_the_component_densities(data, name):
    """Scores through the design matrix, in chunks, for every restart = log π + log N."""
    cov = ALL_TYPES[name]()
    em = GaussianMixtureEM(4, data.shape[1], cov, num_restarts=3, chunk_elements=300).double()
    em.initialize_from_responsibilities(data, initial_responsibilities(data, 4, 3, "kmeans", 1))
    em.fit(data, max_iter=3)
    got = em.restart_weighted_log_prob(data)  # [N, R, K]
    xc = data - em.shift  # the same expanded form by the generic two-product function
    expanded = expfam_log_prob(cov.moment_features(xc), xc, *em._coefficients())
    torch.testing.assert_close(got, expanded, rtol=1e-12, atol=1e-11)
    expected = (component_log_prob(data[:, None, :], em.means, em.raw_covariance, cov)
                + em.log_weights)  # the whitened form
    torch.testing.assert_close(got, expected, rtol=1e-11, atol=1e-10)


def test_statistics_of_no_points_are_zero(data):
    """An empty batch (a DDP rank without points) adds nothing."""
    em = _engine(data, FullCovariance())
    empty = em.statistics(data[:0])
    for t in empty.as_tuple():
        assert not bool(t.any())
    assert em.restart_weighted_log_prob(data[:0]).shape == (0, 1, 4)
    full = em.statistics(data)
    for a, b in zip((empty + full).as_tuple(), full.as_tuple(), strict=True):
        torch.testing.assert_close(a, b, rtol=0, atol=0)


def test_normalize_log_prob_zeros_below_the_cut_and_keeps_minus_infinity():
    """−∞ inputs and points far below the largest get exactly 0, nothing subnormal, and the
    normaliser is the logsumexp (float32 and float64)."""
    for dtype in (torch.float32, torch.float64):
        gen = torch.Generator().manual_seed(0)
        logp = 400.0 * torch.randn(500, 6, generator=gen, dtype=dtype)
        logp[::7, 2] = -torch.inf
        resp, norm = normalize_log_prob(logp.clone())
        tiny = torch.finfo(dtype).tiny
        assert not bool(((resp > 0) & (resp < tiny)).any())
        assert bool((resp[::7, 2] == 0).all())
        torch.testing.assert_close(norm, torch.logsumexp(logp, -1))
        torch.testing.assert_close(resp, torch.softmax(logp, -1), atol=1e-7, rtol=0)
        torch.testing.assert_close(resp.sum(-1), torch.ones(500, dtype=dtype))


@pytest.mark.parametrize("cov", [FullCovariance, SharedFullCovariance, DiagCovariance])
def test_initialize_from_labels_equals_the_one_hot_responsibilities(data, cov):
    """Hard labels ``[N, R]`` give the parameters their one-hot ``[N, R, K]`` give, in chunks
    smaller than the data; ``initialize`` with ``init="kmeans"`` takes this path."""
    x = data
    labels = kmeans_labels(x, 4, 2, seed=5)  # [N, 2]
    one_hot = torch.zeros(x.shape[0], 2, 4, dtype=x.dtype).scatter_(2, labels[..., None], 1.0)
    a = GaussianMixtureEM(4, 5, cov(), num_restarts=2, chunk_elements=4096).double()
    b = GaussianMixtureEM(4, 5, cov(), num_restarts=2, chunk_elements=4096).double()
    a.initialize_from_labels(x, labels)
    b.initialize_from_responsibilities(x, one_hot)
    for name in ("log_weights", "means", "raw_covariance", "shift"):
        torch.testing.assert_close(getattr(a, name), getattr(b, name), rtol=1e-12, atol=1e-12)
    c = GaussianMixtureEM(4, 5, cov(), num_restarts=2, init="kmeans", seed=5).double()
    c.initialize(x)
    torch.testing.assert_close(c.means, a.means, rtol=1e-12, atol=1e-12)


def test_initialize_from_labels_rejects_wrong_shapes(data):
    em = GaussianMixtureEM(4, 5, DiagCovariance(), num_restarts=2).double()
    with pytest.raises(ValueError, match=r"labels must be int64 of shape \[N, R\]"):
        em.initialize_from_labels(data, torch.zeros(data.shape[0], dtype=torch.int64))
