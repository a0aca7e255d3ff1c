"""Truncated stick-breaking weights against independent oracles.

Oracles: the posterior written out by loops, scikit-learn's ``BayesianGaussianMixture``
(``dirichlet_process`` weights), Monte-Carlo averages over Beta sticks drawn with
``torch.distributions.Beta`` (the truncation fixes the last stick at 1), and torch's
``kl_divergence(Beta, Beta)``. Monte-Carlo comparisons are seeded and allowed ``Z`` standard
errors (with ≤ 12 compared entries a correct implementation exceeds 5 SE with probability
~1e-5).

Letters: K components, B batch, S Monte-Carlo samples.
"""

from __future__ import annotations

import math

import numpy as np
import pytest
import torch
from sklearn.mixture import BayesianGaussianMixture
from torch import Tensor
from torch.distributions import Beta, kl_divergence

from mixtures.distributions import (
    expected_log_weights,
    expected_weights,
    kl_sticks,
    stick_posterior,
)

F64 = torch.float64
K = 5
ALPHA = 0.8
S = 400_000
Z = 5.0


def make_counts(seed: int = 0, batch: tuple[int, ...] = ()) -> Tensor:
    """Expected counts ``[*B, K]`` with a range of sizes (and a zero)."""
    g = torch.Generator().manual_seed(seed)
    counts = 20.0 * torch.rand(*batch, K, generator=g, dtype=F64)
    counts[..., 2] = 0.0
    return counts


def stick_weights(v: Tensor) -> Tensor:
    """``π_k = v_k Π_{j<k} (1 − v_j)`` with the truncation ``v_K = 1``: ``[..., K−1]`` →
    ``[..., K]``, by a loop."""
    k = v.shape[-1] + 1
    rest = torch.ones_like(v[..., 0])
    out = []
    for i in range(k):
        vi = v[..., i] if i < k - 1 else torch.ones_like(rest)
        out.append(vi * rest)
        rest = rest * (1 - vi)
    return torch.stack(out, -1)


def test_stick_posterior_matches_loop():
    """``a_k = 1 + n_k``, ``b_k = α + Σ_{j>k} n_j`` for k < K."""
    counts = make_counts()
    a, b = stick_posterior(counts, ALPHA)
    assert a.shape == b.shape == (K - 1,)
    ref_a = torch.tensor([1.0 + float(counts[k]) for k in range(K - 1)], dtype=F64)
    ref_b = torch.tensor([ALPHA + float(counts[k + 1:].sum()) for k in range(K - 1)], dtype=F64)
    torch.testing.assert_close(a, ref_a, rtol=1e-12, atol=1e-12)
    torch.testing.assert_close(b, ref_b, rtol=1e-12, atol=1e-12)


def test_stick_posterior_batched_and_tensor_concentration():
    counts = make_counts(1, batch=(3,))
    alpha = torch.tensor([[0.5], [1.0], [2.0]], dtype=F64)
    a, b = stick_posterior(counts, alpha)
    assert a.shape == b.shape == (3, K - 1)
    for i in range(3):
        ai, bi = stick_posterior(counts[i], float(alpha[i, 0]))
        torch.testing.assert_close(a[i], ai)
        torch.testing.assert_close(b[i], bi)


def test_zero_counts_give_the_prior():
    a, b = stick_posterior(torch.zeros(K, dtype=F64), ALPHA)
    torch.testing.assert_close(a, torch.ones(K - 1, dtype=F64))
    torch.testing.assert_close(b, torch.full((K - 1,), ALPHA, dtype=F64))
    torch.testing.assert_close(kl_sticks(a, b, ALPHA), torch.zeros(K - 1, dtype=F64),
                               rtol=0, atol=1e-12)


def test_matches_sklearn_dirichlet_process():
    """scikit-learn's ``weight_concentration_`` (first K − 1 sticks; it keeps a K-th Beta stick)
    and ``_estimate_log_weights`` (equal for k < K; ours fixes v_K = 1, so the last entry lacks
    sklearn's ``E[log v_K]``)."""
    counts = make_counts()
    bgm = BayesianGaussianMixture(n_components=K,
                                  weight_concentration_prior_type="dirichlet_process")
    bgm.weight_concentration_prior_ = ALPHA
    bgm._estimate_weights(counts.numpy())
    sk_a, sk_b = (torch.from_numpy(np.asarray(t, dtype=np.float64))
                  for t in bgm.weight_concentration_)
    a, b = stick_posterior(counts, ALPHA)
    torch.testing.assert_close(a, sk_a[:-1], rtol=1e-12, atol=1e-12)
    torch.testing.assert_close(b, sk_b[:-1], rtol=1e-12, atol=1e-12)
    sk_log = torch.from_numpy(bgm._estimate_log_weights())
    ours = expected_log_weights(a, b)
    torch.testing.assert_close(ours[:-1], sk_log[:-1], rtol=1e-12, atol=1e-12)
    e_log_v_last = torch.digamma(sk_a[-1]) - torch.digamma(sk_a[-1] + sk_b[-1])
    torch.testing.assert_close(ours[-1] + e_log_v_last, sk_log[-1], rtol=1e-12, atol=1e-12)


@pytest.fixture(scope="module")
def posterior_draws():
    """``(a, b, π [S, K])`` from seeded Beta sticks of a posterior."""
    a, b = stick_posterior(make_counts(), ALPHA)
    torch.manual_seed(0)
    v = Beta(a, b).sample((S,))  # [S, K−1]
    return a, b, stick_weights(v)


def test_expected_weights_monte_carlo(posterior_draws):
    a, b, pi = posterior_draws
    got = expected_weights(a, b)
    assert got.shape == (K,)
    torch.testing.assert_close(got.sum(), torch.tensor(1.0, dtype=F64), rtol=0, atol=1e-12)
    assert bool((got > 0).all())
    z = (pi.mean(0) - got) / (pi.std(0) / math.sqrt(S))
    assert bool((z.abs() < Z).all()), f"E[π] off by {z} SE: MC {pi.mean(0)} vs {got}"


def test_expected_log_weights_monte_carlo(posterior_draws):
    a, b, pi = posterior_draws
    got = expected_log_weights(a, b)
    assert got.shape == (K,)
    log_pi = pi.log()
    z = (log_pi.mean(0) - got) / (log_pi.std(0) / math.sqrt(S))
    assert bool((z.abs() < Z).all()), f"E[log π] off by {z} SE: MC {log_pi.mean(0)} vs {got}"
    # Jensen: E log π < log E π
    assert bool((got < expected_weights(a, b).log()).all())


def test_prior_sticks_monte_carlo():
    """The prior Beta(1, α) sticks, also with a batch of concentrations."""
    alpha = torch.tensor([0.3, 2.5], dtype=F64)[:, None]
    a = torch.ones(2, K - 1, dtype=F64)
    b = alpha.expand(2, K - 1)
    torch.manual_seed(1)
    pi = stick_weights(Beta(a, b).sample((S // 2,)))  # [S, 2, K]
    for got, mc in ((expected_weights(a, b), pi), (expected_log_weights(a, b), pi.log())):
        assert got.shape == (2, K)
        z = (mc.mean(0) - got) / (mc.std(0) / math.sqrt(S // 2))
        assert bool((z.abs() < Z).all()), f"off by {z} SE"
    torch.testing.assert_close(expected_weights(a, b).sum(-1), torch.ones(2, dtype=F64))


def test_kl_sticks_matches_torch():
    counts = make_counts(2, batch=(3,))
    for alpha in (ALPHA, torch.tensor(2.5, dtype=F64)):
        a, b = stick_posterior(counts, alpha)
        got = kl_sticks(a, b, alpha)
        assert got.shape == (3, K - 1)
        alpha_t = torch.as_tensor(alpha, dtype=F64)
        ref = kl_divergence(Beta(a, b), Beta(torch.ones_like(a), alpha_t.expand_as(b)))
        torch.testing.assert_close(got, ref, rtol=1e-10, atol=1e-12)
        assert bool((got > 0).all())


def test_kl_sticks_monte_carlo(posterior_draws):
    """``E_q[log q(v) − log p(v)]`` over the Beta sticks."""
    a, b, _ = posterior_draws
    torch.manual_seed(2)
    v = Beta(a, b).sample((S // 4,))
    ratio = Beta(a, b).log_prob(v) - Beta(torch.ones_like(a), torch.full_like(b, ALPHA)).log_prob(v)
    got = kl_sticks(a, b, ALPHA)
    z = (ratio.mean(0) - got) / (ratio.std(0) / math.sqrt(S // 4))
    assert bool((z.abs() < Z).all()), f"KL off by {z} SE"


def test_single_component():
    """K = 1: no sticks, weight 1, E log π = 0, no KL terms."""
    counts = torch.tensor([7.0], dtype=F64)
    a, b = stick_posterior(counts, ALPHA)
    assert a.shape == b.shape == (0,)
    torch.testing.assert_close(expected_weights(a, b), torch.ones(1, dtype=F64))
    torch.testing.assert_close(expected_log_weights(a, b), torch.zeros(1, dtype=F64))
    kl = kl_sticks(a, b, ALPHA)
    assert kl.shape == (0,) and float(kl.sum()) == 0.0
    batched = stick_posterior(torch.ones(4, 1, dtype=F64), ALPHA)
    torch.testing.assert_close(expected_weights(*batched), torch.ones(4, 1, dtype=F64))
    torch.testing.assert_close(expected_log_weights(*batched), torch.zeros(4, 1, dtype=F64))


def test_two_components_closed_form():
    """K = 2: π₁ = v, π₂ = 1 − v with v ~ Beta(1 + n₁, α + n₂)."""
    counts = torch.tensor([3.0, 5.0], dtype=F64)
    a, b = stick_posterior(counts, ALPHA)
    ea, eb = 1 + 3.0, ALPHA + 5.0
    torch.testing.assert_close(expected_weights(a, b),
                               torch.tensor([ea / (ea + eb), eb / (ea + eb)], dtype=F64))
    dg = torch.digamma(torch.tensor([ea, eb, ea + eb], dtype=F64))
    torch.testing.assert_close(expected_log_weights(a, b),
                               torch.stack([dg[0] - dg[2], dg[1] - dg[2]]))
