"""Dirichlet-process Gaussian mixture trained by natural-gradient variational inference.

The variational posterior is truncated at K components: Beta sticks for the weights and a
conjugate Normal–precision factor per component (:mod:`mixtures.distributions.conjugate`). Its
natural parameters are the prior's plus *expected sufficient statistics*, and those statistics
are this module's only parameters:

    counts ``[K]`` = Σ r,   sum_x ``[K, D]`` = Σ r (x − m₀),   sum_f ``[K, Q]`` = Σ r F(x − m₀)

``forward(x)`` runs the local step (responsibilities under the current posterior) and returns
``(responsibilities [N, K], negative ELBO per point [N])``. Its backward does not return the
Euclidean gradient: for a loss ``L = Σ_n g_n ℓ_n`` (``g_n = 1/|B|`` for a mean) it puts

    grad = (Σ_n g_n) · s − N · Σ_n g_n r_n T(x_n)

into each statistic's ``.grad`` — N times the natural gradient of L, where N is
``dataset_size``. For a mean over a batch B this is ``s − ŝ`` with ``ŝ = (N/|B|) Σ_B r T(x)``,
so plain SGD with learning rate ρ is the stochastic variational inference step
``s ← (1 − ρ) s + ρ ŝ``, and ρ = 1 on the full batch is coordinate-ascent VI::

    model = DPMM(20, D, FullCovariance())
    model.initialize(x)                                  # priors from the data, k-means
    opt = torch.optim.SGD(model.parameters(), lr=1.0)    # lr = ρ_t (decay it for mini-batches)
    for _ in range(100):
        opt.zero_grad()
        resp, neg_elbo = model(x)                        # or a mini-batch of x
        neg_elbo.mean().backward()
        opt.step()

Letters: N points, K components (truncation), D features, Q moment features.
"""

from __future__ import annotations

import torch
from torch import Tensor, nn

from mixtures.distributions import (
    CovarianceType,
    FullCovariance,
    NormalPrecision,
    expected_log_weights,
    expected_weights,
    expfam_log_prob,
    kl_sticks,
    normalize_log_prob,
    stick_posterior,
)
from mixtures.models.base import MixtureDensity
from mixtures.models.em import CHUNK_ELEMENTS
from mixtures.models.init import check_init, initial_responsibilities
from mixtures.models.priors import PriorSettings

__all__ = ["DPMM"]


class _NaturalGradient(torch.autograd.Function):
    """Local step forward; natural gradient of the global statistics backward."""

    @staticmethod
    def forward(ctx, x: Tensor, counts: Tensor, sum_x: Tensor, sum_f: Tensor,
                model: DPMM) -> tuple[Tensor, Tensor]:
        resp, log_norm = model.local_step(x)
        kl = model.kl().to(x.dtype)
        neg_elbo = kl / model.dataset_size.to(x.dtype) - log_norm  # [N]
        ctx.model = model
        ctx.save_for_backward(x, resp)
        ctx.mark_non_differentiable(resp)
        return resp, neg_elbo

    @staticmethod
    def backward(ctx, grad_resp: Tensor | None, grad_elbo: Tensor | None):
        model: DPMM = ctx.model
        x, resp = ctx.saved_tensors
        params = (model.counts, model.sum_x, model.sum_f)
        if grad_elbo is None:
            return (None, *(torch.zeros_like(p) for p in params), None)
        weights = resp * grad_elbo[:, None].to(resp.dtype)  # [N, K]
        stats = model.statistics(x, weights)
        total = grad_elbo.double().sum()
        n = model.dataset_size.double()
        grads = tuple((total * p.double() - n * s).to(p.dtype)
                      for p, s in zip(params, stats, strict=True))
        return (None, *grads, None)


class DPMM(MixtureDensity):
    """Truncated Dirichlet-process mixture of Gaussians (variational posterior).

    Argument names follow scikit-learn's ``BayesianGaussianMixture``; None means "from the data
    at :meth:`initialize`", as there.

    Args:
        num_components: truncation K ≥ 1.
        num_features: D ≥ 1.
        covariance: ``UnitCovariance``, ``ScalarCovariance``, ``DiagCovariance`` or
            ``FullCovariance`` (default full); its ``min_scale`` floors the covariances.
        weight_concentration_prior: α of the Beta(1, α) sticks (None: 1 / K).
        mean_precision_prior: β₀ > 0.
        mean_prior: m₀ ``[D]`` (None: the data mean).
        degrees_of_freedom_prior: ν₀ (None: D; ν₀ > D − 1 for ``full``, > 0 otherwise).
        covariance_prior: Ψ₀ — a float (times the identity), a ``[D]`` diagonal or a ``[D, D]``
            matrix, projected onto the covariance type (None: the data covariance).
        init: initial responsibilities of :meth:`initialize` — ``kmeans``, ``k-means++``,
            ``random`` or ``random_from_data`` (:mod:`mixtures.models.init`).
        kmeans_iters: Lloyd iterations of the ``kmeans`` init.
        seed: seed of the initialisation.
        active_threshold: expected weight above which a component counts as active (for
            :meth:`active_components` and the BIC's parameter count).
        dataset_size: N, the number of training points the statistics stand for (set by
            :meth:`initialize`; set it yourself when training on a stream).
        chunk_elements: bound on the working set of one pass, in tensor elements.
    """

    #: points are assigned by the variational E[log π_k N(x | k)], scored by the predictive
    assignment_is_density = False

    def __init__(
        self,
        num_components: int,
        num_features: int,
        covariance: CovarianceType | None = None,
        weight_concentration_prior: float | None = None,
        mean_precision_prior: float = 1.0,
        mean_prior: Tensor | list[float] | None = None,
        degrees_of_freedom_prior: float | None = None,
        covariance_prior: float | Tensor | list | None = None,
        init: str = "kmeans",
        kmeans_iters: int = 100,
        seed: int = 0,
        active_threshold: float = 0.01,
        dataset_size: int | None = None,
        chunk_elements: int | None = None,
    ) -> None:
        super().__init__()
        check_init(init, kmeans_iters, name="model.net.init")
        if not 0 < active_threshold < 1:
            raise ValueError(f"active_threshold={active_threshold} must lie in (0, 1).")
        self.init, self.kmeans_iters, self.seed = init, kmeans_iters, seed
        self.active_threshold = float(active_threshold)
        self.cov = covariance if covariance is not None else FullCovariance()
        self.settings = PriorSettings(
            self.cov, num_components, num_features, weight_concentration_prior,
            mean_precision_prior, mean_prior, degrees_of_freedom_prior, covariance_prior)
        k, d = num_components, num_features
        self.num_components, self.num_features = k, d
        self.prior_family = self.settings.family
        self.alpha, self.beta0, self.nu0 = (self.settings.alpha, self.settings.beta0,
                                            self.settings.nu0)
        self.chunk_elements = chunk_elements
        q = self.cov.feature_size(d)
        self.counts = nn.Parameter(torch.zeros(k))
        self.sum_x = nn.Parameter(torch.zeros(k, d))
        self.sum_f = nn.Parameter(torch.zeros(k, q))
        self.register_buffer("shift", torch.zeros(d))  # m₀
        self.register_buffer("prior_scatter", torch.zeros(self.prior_family.scatter_shape(d)))
        self.register_buffer("dataset_size", torch.tensor(float(dataset_size or 0)))
        self.register_buffer("initialized", torch.tensor(False))

    # -- priors and posterior ----
    def prior(self) -> NormalPrecision:
        """The components' prior in centred coordinates (float64)."""
        return self.settings.prior(self.prior_scatter.double())

    def posterior(self) -> NormalPrecision:
        """The components' variational posterior in centred coordinates (float64)."""
        return self.prior_family.posterior(self.prior(), self.counts.detach().double(),
                                           self.sum_x.detach().double(),
                                           self.sum_f.detach().double())

    def sticks(self) -> tuple[Tensor, Tensor]:
        """Beta parameters ``(a, b)`` ``[K − 1]`` of the stick posteriors (float64)."""
        return stick_posterior(self.counts.detach().double().clamp_min(0), self.alpha)

    def kl(self) -> Tensor:
        """``KL(q ‖ p)`` of all global factors (sticks and components), float64 scalar."""
        q, p = self.posterior(), self.prior()
        return kl_sticks(*self.sticks(), self.alpha).sum() + self.prior_family.kl(q, p).sum()

    # -- summaries ----
    @property
    def weights(self) -> Tensor:
        """Expected weights ``E[π]`` ``[K]`` (sum to one)."""
        return expected_weights(*self.sticks()).to(self.counts.dtype)

    @property
    def means(self) -> Tensor:
        """Posterior means ``E[μ]`` ``[K, D]``."""
        return (self.posterior().mean + self.shift.double()).to(self.counts.dtype)

    @property
    def covariances(self) -> Tensor:
        """``E[Λ]⁻¹`` ``[K, D, D]`` (scikit-learn's ``covariances_``)."""
        return self.prior_family.expected_covariance(self.posterior()).to(self.counts.dtype)

    def active_components(self, threshold: float | None = None) -> Tensor:
        """Indices of the components whose expected weight exceeds ``threshold`` (default:
        ``active_threshold``)."""
        threshold = self.active_threshold if threshold is None else threshold
        return (self.weights > threshold).nonzero().flatten()

    def effective_components(self) -> int:
        """The active components: the BIC counts the parameters of their point estimate."""
        return max(int(self.active_components().numel()), 1)

    # -- passes over data ----
    def _chunks(self, x: Tensor) -> list[Tensor]:
        d, k = self.num_features, self.num_components
        width = self.cov.feature_size(d) + d + 3 * k
        budget = self.chunk_elements or CHUNK_ELEMENTS.get(x.device.type, 2**24)
        return list(x.split(max(256, budget // width)))

    def _check(self, x: Tensor) -> Tensor:
        x = self._check_points(x, self.counts.dtype)
        if not bool(self.initialized):
            raise RuntimeError("the DPMM is not initialised; call model.initialize(x) first.")
        return x

    def _coefficients(self) -> tuple[Tensor, Tensor, Tensor]:
        """Expected log-density coefficients plus ``E[log π]``, in the model's dtype."""
        quad, lin, const = self.prior_family.expected_coefficients(self.posterior())
        const = const + expected_log_weights(*self.sticks())
        dt = self.counts.dtype
        return quad.to(dt), lin.to(dt), const.to(dt)

    def local_step(self, x: Tensor) -> tuple[Tensor, Tensor]:
        """The local step: responsibilities ``[N, K]`` under the current posterior and
        ``log Σ_k exp E[log π_k N(x | k)]`` ``[N]`` (the ELBO's data term per point)."""
        x = self._check(x)
        coef = self._coefficients()
        resp, norm = [], []
        for chunk in self._chunks(x):
            xc = chunk - self.shift
            r, lse = normalize_log_prob(expfam_log_prob(self.cov.moment_features(xc), xc, *coef))
            resp.append(r)
            norm.append(lse)
        if not resp:
            return x.new_zeros(0, self.num_components), x.new_zeros(0)
        return torch.cat(resp), torch.cat(norm)

    @torch.no_grad()
    def statistics(self, x: Tensor, weights: Tensor) -> tuple[Tensor, Tensor, Tensor]:
        """Float64 sums ``(Σ w, Σ w (x − m₀), Σ w F(x − m₀))`` for weights ``w`` ``[N, K]``."""
        x = self._check(x)
        k, d = self.num_components, self.num_features
        f64 = dict(dtype=torch.float64, device=x.device)
        counts, sum_x = torch.zeros(k, **f64), torch.zeros(k, d, **f64)
        sum_f = torch.zeros(k, self.cov.feature_size(d), **f64)
        start, buffer = 0, None
        for chunk in self._chunks(x):
            n = chunk.shape[0]
            xc = chunk - self.shift
            feats = buffer = self.cov.moment_features(xc, out=buffer)
            w = weights[start:start + n].to(xc.dtype)
            start += n
            counts += w.sum(0)
            sum_x += w.T @ xc
            sum_f += w.T @ feats
        return counts, sum_x, sum_f

    def forward(self, x: Tensor) -> tuple[Tensor, Tensor]:
        """Responsibilities ``[N, K]`` and negative ELBO per point ``[N]`` (mean over all N
        training points = −ELBO / N); backward gives the natural gradient (module docstring)."""
        if not float(self.dataset_size) > 0:
            raise RuntimeError("model.dataset_size is unset; call model.initialize(x) or set "
                               "model.dataset_size to the number of training points.")
        return _NaturalGradient.apply(x, self.counts, self.sum_x, self.sum_f, self)

    @torch.no_grad()
    def elbo(self, x: Tensor) -> Tensor:
        """The ELBO of the points ``x`` taken as the whole data set (float64 scalar)."""
        _, lse = self.local_step(x)
        return lse.double().sum() - self.kl()

    # -- initialisation ----
    @torch.no_grad()
    def initialize(self, x: Tensor, resp: Tensor | None = None, method: str | None = None,
                   seed: int | None = None, kmeans_iters: int | None = None) -> None:
        """Set data-derived priors, N, and the statistics of initial responsibilities.

        Args:
            x: training points ``[N, D]``.
            resp: initial responsibilities ``[N, K]`` (default: from ``method``).
            method, seed, kmeans_iters: override the constructor's ``init``, ``seed`` and
                ``kmeans_iters``.
        """
        x = self._check_points(x, self.counts.dtype)
        if not bool(torch.isfinite(x).all()):
            raise ValueError("the training points contain NaN or inf; remove them first.")
        self.shift.copy_(self.settings.mean(x))
        self.prior_scatter.copy_(self.settings.scatter(x))
        self.dataset_size.fill_(float(x.shape[0]))
        self.initialized.fill_(True)
        if resp is None:
            resp = initial_responsibilities(
                x, self.num_components, 1, self.init if method is None else method,
                self.seed if seed is None else seed,
                self.kmeans_iters if kmeans_iters is None else kmeans_iters)[:, 0]
        stats = self.statistics(x, resp)
        for p, s in zip((self.counts, self.sum_x, self.sum_f), stats, strict=True):
            p.copy_(s.to(p.dtype))

    # -- the prediction API's hooks (mixtures.models.base) ----------------------------------------
    @torch.no_grad()
    def assignment_log_prob(self, x: Tensor) -> Tensor:
        """Variational ``E[log π_k + log N(x | k)]`` ``[N, K]`` (what ``predict`` ranks)."""
        x = self._check(x)
        coef = self._coefficients()
        out = [expfam_log_prob(self.cov.moment_features(c - self.shift), c - self.shift, *coef)
               for c in self._chunks(x)]
        return torch.cat(out) if out else x.new_zeros(0, self.num_components)

    @torch.no_grad()
    def weighted_log_prob(self, x: Tensor) -> Tensor:
        """``log E[π_k] + log p(x | component k, data)`` (Student-t predictive) ``[N, K]``."""
        x = self._check(x)
        q = self.posterior()
        log_w = self.weights.double().log()
        # every empty component's posterior is the prior: its predictive is computed once
        empty = self.counts.detach() == 0
        unique = torch.cat([(~empty).nonzero().flatten(), empty.nonzero().flatten()[:1]])
        column = torch.zeros_like(empty, dtype=torch.long)
        column[unique] = torch.arange(unique.numel(), device=unique.device)
        column[empty] = unique.numel() - 1 if bool(empty.any()) else 0
        q = NormalPrecision(q.beta[unique], q.mean[unique], q.nu[unique], q.scatter[unique])
        out = [self.prior_family.predictive_log_prob((c - self.shift).double(), q)[:, column]
               + log_w for c in self._chunks(x)]
        return torch.cat(out).to(x.dtype)

    @torch.no_grad()
    def sample(self, num_samples: int, generator: torch.Generator | None = None
               ) -> tuple[Tensor, Tensor]:
        """Points ``[S, D]`` from the posterior predictive and their components ``[S]``."""
        if not bool(self.initialized):
            raise RuntimeError("the DPMM is not initialised; call model.initialize(x) first.")
        labels = torch.multinomial(self.weights.double(), num_samples, replacement=True,
                                   generator=generator)
        points = self.prior_family.sample_predictive(self.posterior(), labels, generator)
        return (points + self.shift.double()).to(self.counts.dtype), labels

    def extra_repr(self) -> str:
        return (f"num_components={self.num_components}, num_features={self.num_features}, "
                f"covariance={self.cov!r}, alpha={self.alpha:g}")

