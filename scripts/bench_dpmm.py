"""Truncated Dirichlet-process Gaussian mixtures: three ways to fit one, timed to convergence.

Methods (all full-batch coordinate-ascent VI with K = 20 sticks, priors matched):

- ``ours``: ``mixtures.models.DPMM``, ``initialize(x)`` (k-means), then SGD with lr = 1 on the
  natural gradient that its backward returns (one SGD step = one CAVI step).
- ``sklearn``: ``BayesianGaussianMixture(weight_concentration_prior_type="dirichlet_process",
  init_params="kmeans")``.
- ``reference``: the natural-gradient recipe of github.com/danielecastellana22/torch_dpmm,
  re-implemented below (:class:`ReferenceDPMM`): natural parameters of Beta sticks and a
  Normal–inverse-Wishart (full) or its diagonal analogue (diag), an autograd Function whose
  backward returns "current − (prior + expected statistics)", explicit ``torch.linalg.inv`` and
  ``torch.logdet`` of the scale matrices, k-means++ seeds as the initial means.

    python scripts/bench_dpmm.py --sizes 10000 --covariance diag      # smoke run, seconds
    python scripts/bench_dpmm.py                                      # N = 10k, 100k, 1M

Per (N, covariance): ``make_blobs(N, 16, 5, seed=0, covariance_type=...)``, the last 20% held
out. Convergence for ours and the reference: the per-point ELBO changes by less than ``--tol``
between iterations; scikit-learn gets ``tol = --tol × N_train`` because its lower bound is a
total, not a mean. Times exclude data generation; ``init`` is timed apart from the iterations.

Progress goes to stderr; the header and the markdown table go to stdout.
"""

from __future__ import annotations

import argparse
import datetime
import math
import os
import platform
import subprocess
import sys
import time
import warnings
from dataclasses import dataclass, field

import numpy as np
import sklearn
import torch
from _machine import Contention, log  # noqa: E402  (scripts/ is on sys.path when run)
from sklearn.cluster import kmeans_plusplus
from sklearn.exceptions import ConvergenceWarning
from sklearn.mixture import BayesianGaussianMixture
from torch import Tensor, nn
from torch.distributions import Categorical, MixtureSameFamily, MultivariateNormal

from mixtures.data.blobs import make_blobs
from mixtures.distributions import DiagCovariance, FullCovariance
from mixtures.metrics import adjusted_rand_index, contingency_table
from mixtures.models.dpmm import DPMM
from mixtures.models.dpmm_moves import global_moves

D, K_TRUE, K = 16, 5, 20
TEST_FRACTION = 0.2
DTYPES = {"float32": torch.float32, "float64": torch.float64}
LOG_2, LOG_2PI = math.log(2.0), math.log(2.0 * math.pi)


# -- the reference recipe (torch_dpmm), re-implemented -------------------------------------------
def _multidigamma(a: Tensor, d: int) -> Tensor:
    """``Σ_{i=1}^{d} ψ(a + (1 − i)/2)``."""
    offsets = 0.5 * (1 - torch.arange(1, d + 1, dtype=a.dtype, device=a.device))
    return torch.digamma(a[..., None] + offsets).sum(-1)


class _ReferenceStep(torch.autograd.Function):
    """Forward: responsibilities and −ELBO / (N·D) (the reference divides by ``numel(x)``).
    Backward: for each natural parameter, ``η − (η₀ + expected statistics)``, times the incoming
    gradient — so SGD with lr = 1 sets η to its coordinate-ascent update."""

    @staticmethod
    def forward(ctx, x: Tensor, model: ReferenceDPMM, *eta: Tensor):
        r, log_r, data_term, log_pi = model.local_step(x, eta)
        counts = r.sum(0)
        elbo = ((r * data_term).sum() + (counts * log_pi).sum() - (r * log_r).sum()
                - model.kl_sticks(eta[:2]).sum() - model.kl_emission(eta[2:]).sum())
        ctx.model = model
        ctx.save_for_backward(x, r, *eta)
        ctx.mark_non_differentiable(r)
        return r, -elbo / x.numel()

    @staticmethod
    @torch.autograd.function.once_differentiable
    def backward(ctx, grad_r: Tensor | None, grad_loss: Tensor):
        model: ReferenceDPMM = ctx.model
        x, r, *eta = ctx.saved_tensors
        counts = r.sum(0)
        stats = [counts, counts.sum() - counts.cumsum(0),  # sticks: n_k, Σ_{j>k} n_j
                 r.T @ x, counts, model.second_moments(r, x), counts]
        grads = tuple((e - (p + s)) * grad_loss
                      for e, p, s in zip(eta, model.prior_eta(), stats, strict=True))
        return (None, None, *grads)


class ReferenceDPMM(nn.Module):
    """The torch_dpmm recipe: K Beta sticks ``(u, v)`` and, per component, the natural parameters
    of a Normal–inverse-Wishart ``(λ m, λ, Φ + λ m mᵀ, ν)`` on ``(μ, Σ)`` — ``Φ`` a ``[D, D]``
    matrix (``full``) or a ``[D]`` diagonal with the same Wishart formulas (``diag``; the
    reference's ``DiagonalNIW``). Everything is in raw (uncentred) data coordinates.

    Args:
        mahalanobis: ``inverse`` — ``Φ⁻¹`` once per component, then a product with the ``[N, K, D]``
            differences; ``solve`` — the reference's latest form, ``torch.linalg.solve`` with ``Φ``
            broadcast to every point (``N·K`` factorisations; only for small N).
    """

    def __init__(self, k: int, d: int, full: bool, alpha: float, mean_prior: Tensor,
                 mean_precision_prior: float, dof_prior: float, scale_prior: Tensor,
                 mahalanobis: str = "inverse") -> None:
        super().__init__()
        self.k, self.d, self.full, self.mahalanobis = k, d, full, mahalanobis
        dt = scale_prior.dtype
        ones = torch.ones(k, dtype=dt, device=scale_prior.device)
        prior = self.to_natural(mean_prior.expand(k, d), mean_precision_prior * ones,
                                scale_prior.expand(k, *scale_prior.shape), dof_prior * ones)
        for i, p in enumerate([ones, alpha * ones, *prior]):
            self.register_buffer(f"prior_{i}", p.contiguous())
            self.register_parameter(f"eta_{i}", nn.Parameter(torch.empty_like(p)))

    def eta(self) -> list[nn.Parameter]:
        return [getattr(self, f"eta_{i}") for i in range(6)]

    def prior_eta(self) -> list[Tensor]:
        return [getattr(self, f"prior_{i}") for i in range(6)]

    # -- parametrisations ---
    def _outer(self, m: Tensor) -> Tensor:
        return m[..., :, None] * m[..., None, :] if self.full else m.square()

    def _scale(self, lam: Tensor) -> Tensor:
        return lam[:, None, None] if self.full else lam[:, None]

    def to_natural(self, m: Tensor, lam: Tensor, phi: Tensor, nu: Tensor) -> list[Tensor]:
        return [lam[:, None] * m, lam, phi + self._scale(lam) * self._outer(m), nu]

    def to_common(self, eta: list[Tensor]) -> tuple[Tensor, Tensor, Tensor, Tensor]:
        lam_m, lam, second, nu = eta
        m = lam_m / lam[:, None]
        return m, lam, second - self._scale(lam) * self._outer(m), nu

    def _inv_logdet(self, phi: Tensor) -> tuple[Tensor, Tensor]:
        if self.full:
            return torch.linalg.inv(phi), torch.logdet(phi)
        return 1.0 / phi, phi.log().sum(-1)

    # -- expectations and KL (exponential-family form, as the reference) ---
    @staticmethod
    def _beta_expect(eta: list[Tensor]) -> tuple[Tensor, Tensor]:
        u, v = eta
        total = torch.digamma(u + v)
        return torch.digamma(u) - total, torch.digamma(v) - total

    def expected_log_weights(self, eta: list[Tensor]) -> Tensor:
        log_v, log_1mv = self._beta_expect(eta)
        return log_v + log_1mv.cumsum(0) - log_1mv

    def kl_sticks(self, eta: list[Tensor]) -> Tensor:
        u0, v0 = self.prior_eta()[:2]
        u, v = eta
        e_log_v, e_log_1mv = self._beta_expect(eta)

        def log_norm(a: Tensor, b: Tensor) -> Tensor:
            return torch.lgamma(a) + torch.lgamma(b) - torch.lgamma(a + b)

        return (u - u0) * e_log_v + (v - v0) * e_log_1mv - log_norm(u, v) + log_norm(u0, v0)

    def _log_partition(self, m: Tensor, lam: Tensor, logdet_phi: Tensor, nu: Tensor) -> Tensor:
        d = self.d
        return (-0.5 * d * lam.log() - 0.5 * nu * logdet_phi + 0.5 * d * nu * LOG_2
                + torch.mvlgamma(0.5 * nu, d))

    def _expected_log_det_term(self, logdet_phi: Tensor, nu: Tensor) -> Tensor:
        """``E[−½ log|Σ|]``."""
        return -0.5 * logdet_phi + 0.5 * self.d * LOG_2 + 0.5 * _multidigamma(0.5 * nu, self.d)

    def kl_emission(self, eta: list[Tensor]) -> Tensor:
        m, lam, phi, nu = self.to_common(eta)
        phi_inv, logdet = self._inv_logdet(phi)
        if self.full:
            inv_m = (phi_inv @ m[..., None])[..., 0]
        else:
            inv_m = phi_inv * m
        expected_t = [nu[:, None] * inv_m,
                      -0.5 * self.d / lam - 0.5 * nu * (m * inv_m).sum(-1),
                      -0.5 * self._scale(nu) * phi_inv,
                      self._expected_log_det_term(logdet, nu)]
        prior = self.prior_eta()[2:]
        kl = 0.0
        for e, p, t in zip(eta, prior, expected_t, strict=True):
            term = (e - p) * t
            kl = kl + (term.flatten(1).sum(-1) if term.dim() > 1 else term)
        p_m, p_lam, p_phi, p_nu = self.to_common(prior)
        return (kl - self._log_partition(m, lam, logdet, nu)
                + self._log_partition(p_m, p_lam, self._inv_logdet(p_phi)[1], p_nu))

    # -- the data pass ---
    def local_step(self, x: Tensor, eta: list[Tensor]) -> tuple[Tensor, Tensor, Tensor, Tensor]:
        """Responsibilities, their log, ``E[log N(x | μ_k, Σ_k)]`` ``[N, K]`` and ``E[log π]``."""
        m, lam, phi, nu = self.to_common(list(eta[2:]))
        phi_inv, logdet = self._inv_logdet(phi)
        diff = x[:, None, :] - m  # [N, K, D], materialised as in the reference
        if not self.full:
            maha = (diff.square() * phi_inv).sum(-1)
        elif self.mahalanobis == "solve":
            maha = (diff * torch.linalg.solve(phi.expand(x.shape[0], -1, -1, -1), diff)).sum(-1)
        else:
            maha = (torch.einsum("nkd,kde->nke", diff, phi_inv) * diff).sum(-1)
        data_term = (-0.5 * self.d * LOG_2PI + self._expected_log_det_term(logdet, nu)
                     - 0.5 * (self.d / lam + nu * maha))
        log_pi = self.expected_log_weights(list(eta[:2]))
        log_unnorm = data_term + log_pi
        top = log_unnorm.max(-1, keepdim=True).values  # the reference's log-normalise
        log_z = (log_unnorm - top).exp().sum(-1, keepdim=True).log() + top
        log_r = log_unnorm - log_z
        return log_r.exp(), log_r, data_term, log_pi

    def second_moments(self, r: Tensor, x: Tensor) -> Tensor:
        """``Σ_n r_nk x_n x_nᵀ`` (diag: ``x_n²``) from the materialised ``[N, D, D]`` products."""
        if self.full:
            return torch.einsum("nk,nde->kde", r, x[:, :, None] * x[:, None, :])
        return r.T @ x.square()

    def forward(self, x: Tensor) -> tuple[Tensor, Tensor]:
        return _ReferenceStep.apply(x, self, *self.eta())

    @torch.no_grad()
    def initialize(self, x: Tensor, seed: int) -> None:
        """The reference's start: k-means++ seeds (scikit-learn, on CPU numpy) as the means,
        ``λ = 1``, ``ν = D + 2``, ``Φ = var(x) I`` (variance of all entries), sticks ``u = v = 1``.
        """
        seeds, _ = kmeans_plusplus(x.detach().cpu().numpy(), self.k, random_state=seed)
        m = torch.as_tensor(seeds, dtype=x.dtype, device=x.device)
        ones = torch.ones(self.k, dtype=x.dtype, device=x.device)
        var = torch.var(x)
        phi = var * (torch.eye(self.d, dtype=x.dtype, device=x.device).expand(self.k, -1, -1)
                     if self.full else torch.ones_like(m))
        for p, value in zip(self.eta(), [ones, ones, *self.to_natural(m, ones, phi,
                                                                      (self.d + 2) * ones)],
                            strict=True):
            p.copy_(value)

    @torch.no_grad()
    def predict(self, x: Tensor) -> Tensor:
        return self.local_step(x, self.eta())[0].argmax(-1)

    @torch.no_grad()
    def mixture(self) -> tuple[Tensor, Tensor, Tensor]:
        """Weights ``E[π]`` (renormalised over the K sticks), means and ``Φ / ν``."""
        u, v = self.eta()[:2]
        stick = u / (u + v)
        rest = torch.cat([stick.new_ones(1), (1 - stick).cumprod(0)[:-1]])
        w = stick * rest
        m, _, phi, nu = self.to_common(self.eta()[2:])
        cov = phi / self._scale(nu)
        return w / w.sum(), m, cov if self.full else torch.diag_embed(cov)


# -- the three fits -------------------------------------------------------------------------------
@dataclass
class Fit:
    method: str
    iters: int = 0
    init_s: float = float("nan")
    fit_s: float = float("nan")
    converged: bool = False
    capped: bool = False  # stopped by the time budget (--budget) before converging
    others: float = float("nan")  # other processes' CPU share while timing
    pred_ll: float | None = None
    plugin_ll: float = float("nan")
    active: int = 0
    ari: float = float("nan")
    note: str = ""
    mixture: tuple[Tensor, Tensor, Tensor] | None = field(default=None, repr=False)

    @property
    def total_s(self) -> float:
        return self.init_s + self.fit_s

    @property
    def per_iter(self) -> float:
        return self.fit_s / max(self.iters, 1)


def fit_ours(x: Tensor, full: bool, args: argparse.Namespace,
             moves: bool = False) -> tuple[Fit, DPMM]:
    """Coordinate ascent; with ``moves``, also the ELBO-checked sort / merge / prune / re-seed
    moves every 10 iterations, as ``model=dpmm`` does by default (their time included)."""
    model = DPMM(K, D, FullCovariance() if full else DiagCovariance())
    model = model.to(device=x.device, dtype=x.dtype)
    out = Fit("ours+moves" if moves else "ours")
    con = Contention(args.quiet_wait)
    with con.timed(x.device) as init:
        model.initialize(x, seed=args.seed)
    opt = torch.optim.SGD(model.parameters(), lr=1.0)
    prev = None
    with con.timed(x.device) as run:
        for it in range(1, args.max_iter + 1):
            opt.zero_grad()
            _, neg_elbo = model(x)
            loss = neg_elbo.mean()
            loss.backward()
            opt.step()
            elbo = -float(loss.detach())
            out.iters = it
            if moves and it % 10 == 0 and any(global_moves(model, x).values()):
                prev = None  # the ELBO jumped: measure convergence from the next step
                continue
            if prev is not None and abs(elbo - prev) < args.tol:
                out.converged = True
                break
            prev = elbo
    out.init_s, out.fit_s = init.seconds, run.seconds
    out.others = con.share()
    with torch.no_grad():
        out.mixture = (model.weights, model.means, model.covariances)
    return out, model


class _TimedBGM(BayesianGaussianMixture):
    """scikit-learn's estimator, timing its initialisation (k-means + first M-step) apart."""

    def _initialize_parameters(self, X, random_state, **kwargs):  # noqa: N803
        start = time.perf_counter()
        super()._initialize_parameters(X, random_state, **kwargs)
        self.init_seconds_ = time.perf_counter() - start


def fit_sklearn(x: np.ndarray, full: bool, max_iter: int, args: argparse.Namespace
                ) -> tuple[Fit, BayesianGaussianMixture]:
    cov = np.atleast_2d(np.cov(x.T))  # scikit-learn's default, written out
    bgm = _TimedBGM(
        n_components=K, covariance_type="full" if full else "diag",
        weight_concentration_prior_type="dirichlet_process", weight_concentration_prior=1.0 / K,
        mean_precision_prior=1.0, mean_prior=x.mean(0), degrees_of_freedom_prior=float(D),
        covariance_prior=cov if full else np.diag(cov).copy(), init_params="kmeans",
        max_iter=max_iter, tol=args.tol * x.shape[0], n_init=1, random_state=args.seed)
    out = Fit("sklearn")
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", ConvergenceWarning)
        con = Contention(args.quiet_wait)
        with con.timed(torch.device("cpu")) as run:
            bgm.fit(x)
    out.init_s = bgm.init_seconds_
    out.fit_s = run.seconds - out.init_s
    out.others, out.iters, out.converged = con.share(), bgm.n_iter_, bool(bgm.converged_)
    covs = torch.from_numpy(bgm.covariances_)
    out.mixture = (torch.from_numpy(bgm.weights_), torch.from_numpy(bgm.means_),
                   covs if full else torch.diag_embed(covs))
    return out, bgm


def fit_reference(x: Tensor, full: bool, args: argparse.Namespace
                  ) -> tuple[Fit, ReferenceDPMM]:
    xd = x.double()
    cov = torch.atleast_2d(torch.cov(xd.T))
    scale = cov if full else cov.diagonal().clone()
    model = ReferenceDPMM(K, D, full, 1.0 / K, xd.mean(0), 1.0, float(D), scale,
                          args.reference_mahalanobis).to(device=x.device, dtype=x.dtype)
    out = Fit("reference")
    con = Contention(args.quiet_wait)
    with con.timed(x.device) as init:
        model.initialize(x, args.seed)
    opt = torch.optim.SGD(model.parameters(), lr=1.0)
    prev = None
    with con.timed(x.device) as run:
        for it in range(1, args.max_iter + 1):
            opt.zero_grad()
            _, loss = model(x)
            loss.backward()  # the reference backpropagates −ELBO / numel(x) as it is
            opt.step()
            elbo = -float(loss.detach()) * D  # per point
            out.iters = it
            if prev is not None and abs(elbo - prev) < args.tol:
                out.converged = True
                break
            prev = elbo
            if time.perf_counter() - run.start > args.budget:
                out.capped = it < args.max_iter
                break
    out.init_s, out.fit_s = init.seconds, run.seconds
    out.others = con.share()
    out.mixture = model.mixture()
    return out, model


# -- evaluation ------------------------------------------------------------------------------------
def plugin_log_likelihood(x: Tensor, mixture: tuple[Tensor, Tensor, Tensor]) -> float:
    """Mean log-density of the posterior-mean mixture (weights, means, ``E[Λ]⁻¹``), float64 CPU,
    the same code for every method."""
    w, mu, cov = (t.detach().double().cpu() for t in mixture)
    dist = MixtureSameFamily(Categorical(probs=w), MultivariateNormal(mu, covariance_matrix=cov))
    x = x.double().cpu()
    return float(torch.cat([dist.log_prob(c) for c in x.split(50_000)]).mean())


def evaluate(fit: Fit, x_test: Tensor, y_test: Tensor, pred: Tensor) -> None:
    assert fit.mixture is not None
    fit.plugin_ll = plugin_log_likelihood(x_test, fit.mixture)
    fit.active = int((fit.mixture[0] > 0.01).sum())
    table = contingency_table(y_test.cpu(), pred.cpu(), K_TRUE, K)
    fit.ari = float(adjusted_rand_index(table))


# -- report ----------------------------------------------------------------------------------------
def _fmt_s(s: float) -> str:
    return "—" if not math.isfinite(s) else (f"{s:.3g}" if s < 100 else f"{s:.0f}")


def table_rows(n: int, cov: str, fits: list[Fit]) -> list[str]:
    by = {f.method: f for f in fits}
    ours, sk = by.get("ours"), by.get("sklearn")
    rows = []
    for f in fits:
        iters = f"{f.iters}" + ("" if f.converged else " ‡" if f.capped else " †")
        pred = "—" if f.pred_ll is None else f"{f.pred_ll:.4f}"
        d_ll = ("—" if sk is None or f is sk
                else f"{100 * (f.plugin_ll - sk.plugin_ll) / abs(sk.plugin_ll):+.3f}%")
        if ours is None or f is ours:
            ratio_t = ratio_i = "1" if f is ours else "—"
        else:
            ratio_t = ("≥" if f.capped else "") + f"{f.total_s / ours.total_s:.1f}×"
            ratio_i = f"{f.per_iter / ours.per_iter:.1f}×"
        rows.append(
            f"| {f.method} | {n:,} | {cov} | {iters} | {_fmt_s(f.init_s)} | {_fmt_s(f.fit_s)} | "
            f"{_fmt_s(f.total_s)} | {f.per_iter:.3g} | {pred} | {f.plugin_ll:.4f} | {d_ll} | "
            f"{f.active} | {f.ari:.4f} | {ratio_t} | {ratio_i} | {100 * f.others:.0f}% |")
    return rows


HEADER = ("| method | N | cov | iters | init s | iter s | total s | s/iter | pred. LL | plug-in LL"
          " | ΔLL vs sk | active K | ARI | total ÷ ours | s/iter ÷ ours | others' CPU |\n"
          "|---|---|---|---|---|---|---|---|---|---|---|---|---|---|---|---|")


def print_header(args: argparse.Namespace, device: torch.device) -> None:
    try:
        commit = subprocess.run(["git", "rev-parse", "--short", "HEAD"], capture_output=True,
                                text=True, check=False).stdout.strip() or "?"
        dirty = subprocess.run(["git", "status", "--porcelain"], capture_output=True, text=True,
                               check=False).stdout.strip()
    except OSError:
        commit, dirty = "?", ""
    try:
        from threadpoolctl import threadpool_info
        blas = ", ".join(f"{i.get('internal_api')} {i.get('version')} ({i.get('num_threads')} "
                         "threads)" for i in threadpool_info() if i.get("user_api") == "blas")
    except ImportError:
        blas = "?"
    cpu = platform.processor() or platform.machine()
    try:
        with open("/proc/cpuinfo") as f:
            cpu = next(line.split(":", 1)[1].strip() for line in f if "model name" in line)
    except (OSError, StopIteration):
        pass
    gpu = f", GPU {torch.cuda.get_device_name(device)}" if device.type == "cuda" else ""
    print(f"# DPMM fits: ours vs scikit-learn vs the torch_dpmm recipe\n\n"
          f"Command: `python {' '.join(sys.argv)}`\n\n"
          f"{datetime.date.today()}, mixtures at git `{commit}`{' (dirty)' if dirty else ''}, "
          f"torch {torch.__version__} ({torch.get_num_threads()} threads), scikit-learn "
          f"{sklearn.__version__}, numpy {np.__version__} ({blas}), Python "
          f"{platform.python_version()}, {cpu} ({os.cpu_count()} logical cores){gpu}.\n"
          f"D = {D}, K_true = {K_TRUE}, truncation K = {K}, test split {TEST_FRACTION:.0%}, "
          f"device {device}, ours/reference dtype {args.dtype} (scikit-learn float64), "
          f"tol = {args.tol:g} per point (scikit-learn: tol × N_train), max_iter = "
          f"{args.max_iter}, budget {args.budget:g} s per scikit-learn / reference fit.\n",
          flush=True)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--sizes", type=int, nargs="+", default=[10_000, 100_000, 1_000_000],
                        help="total points N (train + test)")
    parser.add_argument("--covariance", nargs="+", choices=["full", "diag"],
                        default=["full", "diag"])
    parser.add_argument("--methods", nargs="+",
                        choices=["ours", "ours+moves", "sklearn", "reference"],
                        default=["ours", "ours+moves", "sklearn", "reference"])
    parser.add_argument("--max-iter", type=int, default=200)
    parser.add_argument("--tol", type=float, default=1e-4,
                        help="stop when the per-point ELBO changes by less than this")
    parser.add_argument("--device", choices=["cpu", "cuda"], default="cpu")
    parser.add_argument("--dtype", choices=list(DTYPES), default="float64",
                        help="dtype of ours and the reference (scikit-learn runs in float64)")
    parser.add_argument("--budget", type=float, default=30.0,
                        help="seconds per scikit-learn / reference fit: the reference stops "
                             "after the iteration that crosses it; scikit-learn's max_iter is "
                             "lowered so that its time, extrapolated from the previous size, "
                             "stays under it (ours always runs to tol or max_iter)")
    parser.add_argument("--quiet-wait", type=float, default=3.0,
                        help="seconds to wait, before each timed block, for other processes "
                             "to use < 15%% of the CPUs")
    parser.add_argument("--reference-mahalanobis", choices=["inverse", "solve"],
                        default="inverse", help="see ReferenceDPMM")
    parser.add_argument("--threads", type=int, default=2)
    parser.add_argument("--seed", type=int, default=0)
    args = parser.parse_args()

    torch.set_num_threads(args.threads)
    device = torch.device(args.device)
    dtype = DTYPES[args.dtype]
    print_header(args, device)
    rows: list[str] = []
    sk_rate: dict[str, tuple[int, float, float]] = {}  # cov → (N, init s, s/iter) last measured
    wall = time.perf_counter()
    for n in sorted(args.sizes):
        for cov in args.covariance:
            full = cov == "full"
            x, y, _ = make_blobs(n, D, K_TRUE, seed=args.seed, covariance_type=cov,
                                 dtype=torch.float64)
            n_train = n - int(round(TEST_FRACTION * n))
            x_train, x_test, y_test = x[:n_train], x[n_train:], y[n_train:]
            xt = x_train.to(device=device, dtype=dtype)
            xs = x_test.to(device=device, dtype=dtype)
            fits: list[Fit] = []
            if "ours" in args.methods:
                log(f"N={n:,} {cov}: ours ...")
                f, model = fit_ours(xt, full, args)
                f.pred_ll = model.score(xs)
                evaluate(f, x_test, y_test, model.predict(xs))
                fits.append(f)
                log(f"  {f.iters} iters, {f.init_s:.2f} + {f.fit_s:.2f} s")
            if "ours+moves" in args.methods:
                log(f"N={n:,} {cov}: ours+moves ...")
                f, model = fit_ours(xt, full, args, moves=True)
                f.pred_ll = model.score(xs)
                evaluate(f, x_test, y_test, model.predict(xs))
                fits.append(f)
                log(f"  {f.iters} iters, {f.init_s:.2f} + {f.fit_s:.2f} s")
            if "sklearn" in args.methods:
                max_iter = args.max_iter
                if cov in sk_rate:
                    n0, init0, per0 = sk_rate[cov]
                    scale = n_train / n0
                    room = args.budget - init0 * scale
                    max_iter = min(max_iter, max(2, int(room / (per0 * scale))))
                log(f"N={n:,} {cov}: scikit-learn (max_iter {max_iter}) ...")
                xn = x_train.numpy()
                f, bgm = fit_sklearn(xn, full, max_iter, args)
                f.capped = max_iter < args.max_iter and not f.converged
                evaluate(f, x_test, y_test, torch.from_numpy(bgm.predict(x_test.numpy())))
                sk_rate[cov] = (n_train, f.init_s, f.per_iter)
                fits.append(f)
                log(f"  {f.iters} iters, {f.init_s:.2f} + {f.fit_s:.2f} s")
            if "reference" in args.methods:
                log(f"N={n:,} {cov}: reference ...")
                f, ref = fit_reference(xt, full, args)
                evaluate(f, x_test, y_test, ref.predict(xs))
                fits.append(f)
                log(f"  {f.iters} iters, {f.init_s:.2f} + {f.fit_s:.2f} s")
            rows += table_rows(n, cov, fits)
            del x, x_train, x_test, xt, xs
    print(HEADER)
    print("\n".join(rows))
    print(f"\n† not converged within max_iter. ‡ stopped by the time budget before converging "
          f"(its total-time ratio is a lower bound). Wall time of the whole run: "
          f"{time.perf_counter() - wall:.0f} s.")


if __name__ == "__main__":
    main()
