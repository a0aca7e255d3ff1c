"""DPMM (truncated Dirichlet-process mixture, natural-gradient VI) against closed forms,
scikit-learn's BayesianGaussianMixture M-step, SciPy's Student-t and known truth.

Everything is float64 and seeded. The statistics are ``s = (Σ r, Σ r (x − m₀), Σ r F(x − m₀))``
and the backward pass puts ``(Σ g) s − N Σ g r T(x)`` into ``.grad`` (module docstring), so
SGD(lr=ρ) is the SVI step ``s ← (1 − ρ) s + ρ ŝ``.
"""

from __future__ import annotations

import copy
import math

import numpy as np
import pytest
import torch
from scipy.special import digamma, multigammaln
from scipy.stats import multivariate_t, wishart
from sklearn.mixture import BayesianGaussianMixture
from torch.distributions import Beta, Gamma, kl_divergence

from mixtures.data import make_blobs
from mixtures.distributions import (
    DiagCovariance,
    FullCovariance,
    ScalarCovariance,
    SharedFullCovariance,
    SharedScalarCovariance,
    UnitCovariance,
)
from mixtures.metrics import adjusted_rand_index, contingency_table
from mixtures.models import DPMM

TYPES = {
    "unit": UnitCovariance,
    "scalar": ScalarCovariance,
    "diag": DiagCovariance,
    "full": FullCovariance,
}
SKLEARN_TYPE = {"full": "full", "diag": "diag", "scalar": "spherical"}


def _data(n: int = 400, d: int = 3, k: int = 3, seed: int = 0) -> torch.Tensor:
    x, _, _ = make_blobs(n, d, k, seed=seed, dtype=torch.float64)
    return x


def _params(model: DPMM) -> tuple[torch.Tensor, ...]:
    return tuple(p.detach().clone() for p in (model.counts, model.sum_x, model.sum_f))


def _stats(model: DPMM, x: torch.Tensor, w: torch.Tensor) -> tuple[torch.Tensor, ...]:
    """Independent ``(Σ w, Σ w (x − m₀), Σ w F(x − m₀))`` for weights ``w`` ``[N, K]``."""
    xc = x - model.shift
    feats = model.cov.moment_features(xc)
    return w.sum(0), w.T @ xc, w.T @ feats


def _step(model: DPMM, x: torch.Tensor, lr: float = 1.0) -> float:
    """One SGD step on ``neg_elbo.mean()``; returns the loss (−ELBO / N before the step)."""
    opt = torch.optim.SGD(model.parameters(), lr=lr)
    opt.zero_grad()
    _, neg_elbo = model(x)
    loss = neg_elbo.mean()
    loss.backward()
    opt.step()
    return float(loss.detach())


def _fit(model: DPMM, x: torch.Tensor, steps: int) -> DPMM:
    opt = torch.optim.SGD(model.parameters(), lr=1.0)
    for _ in range(steps):
        opt.zero_grad()
        model(x)[1].mean().backward()
        opt.step()
    return model


def _close(actual, expected, rtol=1e-9, atol=1e-9, msg=""):
    torch.testing.assert_close(torch.as_tensor(actual, dtype=torch.float64),
                               torch.as_tensor(expected, dtype=torch.float64),
                               rtol=rtol, atol=atol, msg=lambda m: f"{msg}\n{m}")


# -- 1. coordinate ascent never lowers the ELBO --------------------------------------------------
@pytest.mark.parametrize("name", list(TYPES))
def test_full_batch_cavi_elbo_is_monotone(name):
    x = _data(300, 2, 3, seed=1)
    n = x.shape[0]
    model = DPMM(6, 2, TYPES[name]()).double()
    model.initialize(x, method="random", seed=0)
    losses, elbos = [], [float(model.elbo(x))]
    for _ in range(30):
        losses.append(_step(model, x))
        elbos.append(float(model.elbo(x)))
    from_loss = [-v * n for v in losses]
    # −loss · N is the ELBO of the parameters before the step
    np.testing.assert_allclose(from_loss, elbos[:-1], rtol=1e-10,
                               err_msg="−N · neg_elbo.mean() differs from model.elbo(x)")
    for seq, what in ((from_loss, "-loss"), (elbos, "model.elbo")):
        for t in range(len(seq) - 1):
            assert seq[t + 1] >= seq[t] - 1e-6 * abs(seq[t]), (
                f"{name}: {what} fell at step {t}: {seq[t]} → {seq[t + 1]}")
    # the test has teeth: from a random start the ELBO must rise substantially
    assert elbos[-1] > elbos[0] + 0.05 * abs(elbos[0]), (name, elbos[0], elbos[-1])


# -- 2. the natural gradient is the coordinate-ascent update -------------------------------------
@pytest.mark.parametrize("method", ["random", "kmeans"])
@pytest.mark.parametrize("name", list(TYPES))
def test_one_full_batch_step_is_the_closed_form_update(name, method):
    x = _data(400, 3, 3, seed=2)
    model = DPMM(5, 3, TYPES[name]()).double()
    model.initialize(x, method=method, seed=0)
    resp = model.predict_proba(x)
    expected = _stats(model, x, resp)
    before = _params(model)
    _step(model, x, lr=1.0)
    for got, want, old, what in zip(_params(model), expected, before,
                                    ("counts", "sum_x", "sum_f"), strict=True):
        _close(got, want, rtol=1e-10, atol=1e-9, msg=f"{name}/{method}: {what}")
        assert not torch.allclose(old, want), f"{what}: the oracle is not discriminating"


def _sklearn_m_step(model: DPMM, x: torch.Tensor, resp: torch.Tensor, kind: str):
    k, d = model.num_components, model.num_features
    bgm = BayesianGaussianMixture(n_components=k, covariance_type=kind,
                                  weight_concentration_prior_type="dirichlet_process",
                                  reg_covar=0.0)
    scatter = model.prior_scatter.double().numpy()
    bgm.mean_prior_ = model.shift.double().numpy()
    bgm.mean_precision_prior_ = model.beta0
    bgm.degrees_of_freedom_prior_ = model.nu0
    if kind == "full":
        assert scatter.shape == (d, d)
        bgm.covariance_prior_ = scatter
    elif kind == "diag":
        assert scatter.shape == (d,)
        bgm.covariance_prior_ = scatter
    else:
        assert scatter.shape == (1,)
        bgm.covariance_prior_ = float(scatter[0])
    bgm.weight_concentration_prior_ = model.alpha
    with np.errstate(divide="ignore"):
        log_resp = np.log(resp.numpy())
    bgm._m_step(x.numpy(), log_resp)
    return bgm


@pytest.mark.parametrize("method", ["random", "kmeans"])
@pytest.mark.parametrize("name", list(SKLEARN_TYPE))
def test_step_matches_sklearn_bayesian_m_step(name, method):
    x = _data(400, 3, 3, seed=2)
    k, d = 5, 3
    model = DPMM(k, d, TYPES[name](), weight_concentration_prior=0.7,
                 mean_precision_prior=0.5, degrees_of_freedom_prior=4.5).double()
    model.initialize(x, method=method, seed=1)
    resp = model.predict_proba(x)
    _step(model, x, lr=1.0)
    bgm = _sklearn_m_step(model, x, resp, SKLEARN_TYPE[name])
    tag = f"{name}/{method}"
    _close(model.means, bgm.means_, msg=f"{tag}: means")
    _close(model.nu0 + model.counts.detach(), bgm.degrees_of_freedom_, msg=f"{tag}: dof")
    _close(model.beta0 + model.counts.detach(), bgm.mean_precision_, msg=f"{tag}: β")
    cov = model.covariances
    assert cov.shape == (k, d, d)
    if name == "full":
        _close(cov, bgm.covariances_, msg=f"{tag}: covariances")
    else:
        diag = cov.diagonal(dim1=-2, dim2=-1)
        _close(cov, torch.diag_embed(diag), msg=f"{tag}: covariances are not diagonal")
        want = bgm.covariances_ if name == "diag" else bgm.covariances_[:, None].repeat(d, 1)
        _close(diag, want, msg=f"{tag}: covariances")
    a, b = model.sticks()
    assert a.shape == b.shape == (k - 1,)
    _close(a, bgm.weight_concentration_[0][: k - 1], msg=f"{tag}: sticks a")
    _close(b, bgm.weight_concentration_[1][: k - 1], msg=f"{tag}: sticks b")


# -- 3. mini-batches: unbiased natural gradient ---------------------------------------------------
@pytest.mark.parametrize("name", ["full", "diag"])
def test_minibatch_steps_average_to_the_full_batch_step(name):
    x = _data(400, 3, 3, seed=3)
    n, rho, m = x.shape[0], 0.3, 4
    x = x[torch.randperm(n, generator=torch.Generator().manual_seed(0))]
    model = DPMM(5, 3, TYPES[name]()).double()
    model.initialize(x, method="random", seed=0)
    s = _params(model)
    resp = model.predict_proba(x)
    batches = x.chunk(m)
    assert all(b.shape[0] == n // m for b in batches)
    stepped = []
    for j, xb in enumerate(batches):
        copy_ = copy.deepcopy(model)
        _step(copy_, xb, lr=rho)
        rb = resp[j * (n // m):(j + 1) * (n // m)]
        s_hat = tuple(m * t for t in _stats(model, xb, rb))
        for p, s0, sh, what in zip((copy_.counts, copy_.sum_x, copy_.sum_f), s, s_hat,
                                   ("counts", "sum_x", "sum_f"), strict=True):
            _close(p.grad, s0 - sh, rtol=1e-10, atol=1e-8, msg=f"batch {j}: grad of {what}")
            _close(p.detach(), (1 - rho) * s0 + rho * sh, rtol=1e-10, atol=1e-8,
                   msg=f"batch {j}: SVI step of {what}")
        stepped.append(_params(copy_))
    # the original model is untouched by the copies
    for p, s0 in zip(_params(model), s, strict=True):
        assert torch.equal(p, s0)
    _step(model, x, lr=rho)
    full = _params(model)
    for j, what in enumerate(("counts", "sum_x", "sum_f")):
        mean = torch.stack([st[j] for st in stepped]).mean(0)
        scale = float(full[j].abs().max())
        _close(mean, full[j], rtol=1e-10, atol=1e-8 * scale, msg=f"average of {what}")
        # the batches disagree: the average is not trivially equal to each
        assert not torch.allclose(stepped[0][j], full[j], rtol=1e-6, atol=1e-6)


# -- 4. weighted losses ---------------------------------------------------------------------------
@pytest.mark.parametrize("name", ["full", "scalar"])
def test_weighted_loss_gradient_contract(name):
    x = _data(200, 2, 3, seed=4)
    n = x.shape[0]
    model = DPMM(4, 2, TYPES[name]()).double()
    model.initialize(x, method="random", seed=0)
    w = torch.rand(n, generator=torch.Generator().manual_seed(1), dtype=torch.float64) + 0.1
    resp, neg_elbo = model(x)
    (neg_elbo * w).sum().backward()
    ref = _stats(model, x, resp * w[:, None])
    for p, st, what in zip((model.counts, model.sum_x, model.sum_f), ref,
                           ("counts", "sum_x", "sum_f"), strict=True):
        want = w.sum() * p.detach() - n * st
        _close(p.grad, want, rtol=1e-10, atol=1e-8, msg=f"{name}: grad of {what}")
    # responsibilities carry no gradient; a loss on resp alone is refused by autograd
    assert not resp.requires_grad


def test_negative_elbo_mean_is_minus_elbo_over_n():
    x = _data(300, 2, 3, seed=5)
    for name, cls in TYPES.items():
        model = DPMM(4, 2, cls()).double()
        model.initialize(x, method="random", seed=0)
        _fit(model, x, 3)
        _, neg_elbo = model(x)
        assert neg_elbo.shape == (x.shape[0],)
        _close(neg_elbo.mean(), -model.elbo(x) / x.shape[0], rtol=1e-12, atol=0, msg=name)


def _reference_elbo(model: DPMM, x: np.ndarray) -> float:
    """The ELBO written out independently (Bishop §10.2 / Blei & Jordan 2006) from the posterior
    summaries ``means``, ``covariances`` (= Ψ / ν), β = β₀ + n, ν = ν₀ + n and the sticks, with
    SciPy / torch.distributions for digamma, the Wishart entropy and the Gamma / Beta KLs."""
    name = type(model.cov).__name__
    k, d = model.num_components, model.num_features
    n_k = model.counts.detach().numpy()
    beta, nu = model.beta0 + n_k, model.nu0 + n_k
    m = model.means.numpy() - model.shift.numpy()  # centred posterior means
    xc = x - model.shift.numpy()
    scatter = model.covariances.numpy() * nu[:, None, None]  # Ψ (dense)
    a, b = (t.numpy() for t in model.sticks())
    # E log π_k with the K-th stick fixed to one
    log_v = np.append(digamma(a) - digamma(a + b), 0.0)
    log_1mv = np.append(digamma(b) - digamma(a + b), 0.0)
    e_log_pi = log_v + np.concatenate([[0.0], np.cumsum(log_1mv[:-1])])
    kl = float(kl_divergence(Beta(torch.tensor(a), torch.tensor(b)),
                             Beta(torch.ones(k - 1, dtype=torch.float64),
                                  torch.full((k - 1,), model.alpha, dtype=torch.float64))).sum())
    e_log_n = np.empty((x.shape[0], k))
    psi0 = model.prior_scatter.numpy()
    for j in range(k):
        diff = xc - m[j]
        if name == "UnitCovariance":
            var = model.cov.fixed_scale**2
            e_prec, e_logdet = np.eye(d) / var, -d * math.log(var)
            kl_prec = 0.0
        elif name == "FullCovariance":
            w = np.linalg.inv(scatter[j])
            e_prec = nu[j] * w
            e_logdet = (sum(digamma((nu[j] + 1 - i) / 2) for i in range(1, d + 1))
                        + d * math.log(2) + np.linalg.slogdet(w)[1])
            entropy = wishart(df=nu[j], scale=w).entropy()
            cross = ((model.nu0 - d - 1) / 2 * e_logdet - 0.5 * np.trace(psi0 @ e_prec)
                     - model.nu0 * d / 2 * math.log(2) + model.nu0 / 2 * np.linalg.slogdet(psi0)[1]
                     - multigammaln(model.nu0 / 2, d))
            kl_prec = -entropy - cross
        else:  # Gamma precisions: per dimension (diag) or one isotropic λ (scalar)
            c = 1.0 if name == "DiagCovariance" else float(d)
            psi = np.diagonal(scatter[j]) if c == 1.0 else np.diagonal(scatter[j])[:1]
            shape, rate = c * nu[j] / 2, c * psi / 2
            e_lam = shape / rate
            e_prec = np.diag(np.broadcast_to(e_lam, (d,)))
            e_log_lam = digamma(shape) - np.log(rate)
            e_logdet = float(np.sum(np.broadcast_to(e_log_lam, (d,))))
            prior_rate = torch.tensor(c * psi0 / 2)
            kl_prec = float(kl_divergence(
                Gamma(torch.full_like(prior_rate, shape), torch.tensor(rate)),
                Gamma(torch.full_like(prior_rate, c * model.nu0 / 2), prior_rate)).sum())
        maha = np.einsum("ni,ij,nj->n", diff, e_prec, diff)
        e_log_n[:, j] = 0.5 * (e_logdet - d * math.log(2 * math.pi) - d / beta[j] - maha)
        ratio = model.beta0 / beta[j]
        kl_mean = 0.5 * (d * (ratio - 1 - math.log(ratio)) + model.beta0 * m[j] @ e_prec @ m[j])
        kl += kl_mean + kl_prec
    log_joint = e_log_n + e_log_pi
    top = log_joint.max(1, keepdims=True)
    lse = (top[:, 0] + np.log(np.exp(log_joint - top).sum(1))).sum()
    return float(lse - kl)


@pytest.mark.parametrize("name", list(TYPES))
def test_elbo_matches_an_independent_closed_form(name):
    x = _data(300, 3, 3, seed=10)
    model = DPMM(4, 3, TYPES[name](), weight_concentration_prior=0.5, mean_precision_prior=0.3,
                 degrees_of_freedom_prior=5.0).double()
    model.initialize(x, method="random", seed=0)
    for steps in (0, 2, 10):
        _fit(model, x, steps)
        _close(model.elbo(x), _reference_elbo(model, x.numpy()), rtol=1e-10, atol=0,
               msg=f"{name}: ELBO after {steps} more steps")


# -- 6. API ---------------------------------------------------------------------------------------
@pytest.fixture(scope="module")
def fitted():
    x = _data(600, 2, 3, seed=6)
    model = DPMM(6, 2, FullCovariance()).double()
    model.initialize(x, seed=0)
    return _fit(model, x, 100), x


def test_prediction_api(fitted):
    model, x = fitted
    proba = model.predict_proba(x)
    assert proba.shape == (x.shape[0], 6) and bool((proba >= 0).all())
    _close(proba.sum(-1), torch.ones(x.shape[0]), rtol=0, atol=1e-12, msg="proba rows")
    assert torch.equal(model.predict(x), proba.argmax(-1))
    _close(model.score_samples(x), torch.logsumexp(model.weighted_log_prob(x), -1),
           rtol=1e-12, atol=1e-12, msg="score_samples")
    _close(model.score(x), model.score_samples(x).mean(), rtol=1e-12, atol=0, msg="score")
    w = model.weights
    assert w.shape == (6,) and bool((w > 0).all())
    _close(w.sum(), 1.0, rtol=0, atol=1e-12, msg="weights sum")
    active = model.active_components(0.01)
    assert torch.equal(active, (w > 0.01).nonzero().flatten())
    assert active.numel() == 3, w
    assert model.active_components(0.0).numel() == 6
    assert model.active_components(1.0).numel() == 0


def test_weighted_log_prob_is_the_student_t_predictive(fitted):
    """Oracle: SciPy's multivariate t with ν − D + 1 dof and shape Ψ (β + 1) / (β (ν − D + 1))."""
    model, x = fitted
    d = model.num_features
    nu = model.nu0 + model.counts.detach()
    beta = model.beta0 + model.counts.detach()
    scatter = model.covariances * nu[:, None, None]  # Ψ
    got = model.weighted_log_prob(x[:50])
    for k in range(model.num_components):
        dof = float(nu[k]) - d + 1
        shape = scatter[k] * (beta[k] + 1) / (beta[k] * dof)
        ref = multivariate_t(loc=model.means[k].numpy(), shape=shape.numpy(), df=dof)
        want = ref.logpdf(x[:50].numpy()) + math.log(float(model.weights[k]))
        _close(got[:, k], want, rtol=1e-9, atol=1e-9, msg=f"component {k}")


def test_sample(fitted):
    model, x = fitted
    torch.manual_seed(0)  # the Student-t scale draws use torch's global generator
    gen = torch.Generator().manual_seed(0)
    points, labels = model.sample(20000, generator=gen)
    assert points.shape == (20000, 2) and points.dtype == torch.float64
    assert labels.shape == (20000,)
    assert int(labels.min()) >= 0 and int(labels.max()) < 6
    freq = torch.bincount(labels, minlength=6).double() / 20000
    _close(freq, model.weights, rtol=0, atol=0.02, msg="label frequencies")
    spread = x.std(0)
    err = (points.mean(0) - x.mean(0)).abs() / spread
    assert bool((err < 0.05).all()), f"sample mean off by {err} data std"
    # each active component's samples sit on its posterior mean
    for k in model.active_components(0.01).tolist():
        mk = points[labels == k].mean(0)
        assert bool(((mk - model.means[k]).abs() / spread < 0.05).all()), k


def _grid_integral(model: DPMM, lo, hi, num: int) -> float:
    axes = [torch.linspace(float(a), float(b), num, dtype=torch.float64)
            for a, b in zip(lo, hi, strict=True)]
    mesh = torch.stack(torch.meshgrid(*axes, indexing="ij"), -1).reshape(-1, len(axes))
    dens = model.score_samples(mesh).exp().reshape([num] * len(axes))
    for axis in reversed(axes):
        dens = torch.trapezoid(dens, axis, dim=-1)
    return float(dens)


@pytest.mark.parametrize("name", list(TYPES))
def test_score_samples_is_a_density_in_one_dimension(name):
    x = _data(150, 1, 2, seed=7)
    model = DPMM(3, 1, TYPES[name]()).double()
    model.initialize(x, seed=0)
    _fit(model, x, 20)
    lo, hi = x.min(0).values - 40, x.max(0).values + 40
    total = _grid_integral(model, lo, hi, 20001)
    assert abs(total - 1.0) < 1e-3, f"{name}: ∫ exp(score) = {total}"


@pytest.mark.parametrize("name", list(TYPES))
def test_score_samples_is_a_density_in_two_dimensions(name):
    x = _data(150, 2, 2, seed=8)
    model = DPMM(3, 2, TYPES[name]()).double()
    model.initialize(x, seed=0)
    _fit(model, x, 20)
    lo, hi = x.min(0).values - 15, x.max(0).values + 15
    total = _grid_integral(model, lo, hi, 401)
    assert abs(total - 1.0) < 1e-2, f"{name}: ∫∫ exp(score) = {total}"


# -- 7. errors ------------------------------------------------------------------------------------
def test_construction_errors():
    for shared in (SharedFullCovariance(), SharedScalarCovariance()):
        with pytest.raises(ValueError, match="conjugate prior"):
            DPMM(3, 2, shared)
    with pytest.raises(ValueError, match="num_components"):
        DPMM(0, 2)
    with pytest.raises(ValueError, match="num_features"):
        DPMM(3, 0)
    with pytest.raises(ValueError, match="degrees_of_freedom_prior"):
        DPMM(3, 3, FullCovariance(), degrees_of_freedom_prior=2.0)  # = D − 1
    with pytest.raises(ValueError, match="degrees_of_freedom_prior"):
        DPMM(3, 3, FullCovariance(), degrees_of_freedom_prior=1.0)
    DPMM(3, 3, FullCovariance(), degrees_of_freedom_prior=2.5)  # > D − 1 is fine
    DPMM(3, 3, DiagCovariance(), degrees_of_freedom_prior=0.5)  # > 0 for the Gamma types
    with pytest.raises(ValueError, match="mean_prior"):
        DPMM(3, 2, mean_prior=[0.0, 0.0, 0.0])


def test_usage_errors():
    x = _data(100, 2, 2, seed=9)
    model = DPMM(3, 2).double()
    with pytest.raises(RuntimeError, match="initialize"):
        model(x)
    streaming = DPMM(3, 2, dataset_size=100).double()  # N known, priors not yet set
    with pytest.raises(RuntimeError, match="initialize"):
        streaming(x)
    with pytest.raises(RuntimeError, match="initialize"):
        model.predict(x)
    with pytest.raises(RuntimeError, match="initialize"):
        model.sample(3)
    with pytest.raises(ValueError, match=r"\[N, 2\]"):
        model.initialize(x[:, :1])
    bad = x.clone()
    bad[5, 1] = float("nan")
    with pytest.raises(ValueError, match="NaN"):
        model.initialize(bad)
    bad[5, 1] = float("inf")
    with pytest.raises(ValueError, match="NaN or inf"):
        model.initialize(bad)
    model.initialize(x)
    x3 = torch.cat([x, x[:, :1]], 1)
    for call in (model, model.predict_proba, model.score_samples, model.elbo):
        with pytest.raises(ValueError, match=r"\[N, 2\]"):
            call(x3)
    indefinite = torch.tensor([[1.0, 2.0], [2.0, 1.0]], dtype=torch.float64)
    with pytest.raises(ValueError, match="positive definite"):
        DPMM(3, 2, FullCovariance(), covariance_prior=indefinite).double().initialize(x)
    with pytest.raises(ValueError, match="covariance_prior"):
        DPMM(3, 2, covariance_prior=torch.ones(3)).double().initialize(x)


# -- 8. truth recovery ----------------------------------------------------------------------------
def test_recovers_the_true_clustering():
    x, labels, truth = make_blobs(3000, 2, 4, seed=3, dtype=torch.float64)
    model = DPMM(10, 2, FullCovariance()).double()
    model.initialize(x, seed=0)
    _fit(model, x, 200)
    w = model.weights
    assert int((w > 0.01).sum()) == 4, f"active weights: {w}"
    pred = model.predict(x)
    ari = float(adjusted_rand_index(contingency_table(labels, pred, 4, 10)))
    assert ari >= 0.95, ari
    # the active components' means sit on the true means
    active = model.active_components(0.01)
    dist = torch.cdist(truth["means"].double(), model.means[active])
    assert float(dist.min(1).values.max()) < 0.3, dist


@pytest.mark.parametrize("cov", [ScalarCovariance(), DiagCovariance()])
@pytest.mark.parametrize("prior", [0.0, -1.0, [1.0, -2.0]])
def test_non_positive_covariance_prior_is_rejected(cov, prior):
    x, _, _ = make_blobs(200, 2, 2, seed=0, dtype=torch.float64)
    model = DPMM(3, 2, cov, covariance_prior=prior).double()
    with pytest.raises(ValueError, match="covariance_prior"):
        model.initialize(x)
