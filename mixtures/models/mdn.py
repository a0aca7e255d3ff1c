"""Mixture density network (Bishop 1994) as a plain ``nn.Module``.

An MLP maps an input ``x`` to the parameters of a Gaussian mixture over the target ``y``:

    p(y | x) = Σ_k π_k(x) N(y; μ_k(x), Σ_k(x))

The covariance comes from the shared parametrisations in :mod:`mixtures.distributions` with a
batch dimension (raw tensor ``[B, K, P]``): ``full`` (Cholesky), ``diag``, ``scalar``
(isotropic per component), ``shared_scalar`` (one isotropic σ(x) for all components),
``shared_full`` (one full Σ(x) for all components) and ``unit`` (fixed σ, not learned). Every
scale has the covariance type's floor ``min_scale``.

Letters: B batch (any leading shape), K components, D target dimension (``num_targets``),
F input dimension (``num_features``), S samples.

Example:
    >>> mdn = MixtureDensityNetwork(num_features=1, num_targets=1, num_components=3)
    >>> mdn.initialize(y_train)                      # spread the components over the targets
    >>> opt = torch.optim.Adam(mdn.parameters(), lr=1e-2)
    >>> for _ in range(2000):
    ...     opt.zero_grad(); loss = -mdn.log_prob(x, y).mean(); loss.backward(); opt.step()
    >>> mdn.sample(x_new, 100)                       # [100, B, D]
"""

from __future__ import annotations

from collections.abc import Sequence

import torch
from torch import Tensor, nn

from mixtures.distributions import (
    CovarianceType,
    FullCovariance,
    mixture_covariance,
    mixture_log_prob,
    mixture_marginal_cdf,
    mixture_mean,
    mixture_mode,
    sample_mixture,
)
from mixtures.models.kmeans import kmeans

__all__ = ["MixtureDensityNetwork", "activation_class"]


def activation_class(name: str) -> type[nn.Module]:
    """The ``torch.nn`` activation class called ``name`` (case-insensitive: ``tanh``, ``relu``,
    ``gelu``, ``silu``, ``elu``, ``softplus``, …)."""
    import torch.nn.modules.activation as act

    names = {n.lower(): n for n in act.__all__}
    if not isinstance(name, str) or name.lower() not in names:
        raise ValueError(
            f"model.net.activation={name!r} is not a torch.nn activation; choose one of "
            f"{sorted(n for n in names if n not in ('multiheadattention',))}."
        )
    return getattr(nn, names[name.lower()])


class MixtureDensityNetwork(nn.Module):
    """MLP → mixture weights, means and raw covariances of ``p(y | x)``.

    Args:
        num_features: F, the input dimension.
        num_targets: D, the target dimension.
        num_components: K.
        hidden_sizes: widths of the hidden layers (empty: a linear model).
        activation: name of a ``torch.nn`` activation between hidden layers.
        covariance: covariance parametrisation (default: full).
    """

    def __init__(
        self,
        num_features: int,
        num_targets: int,
        num_components: int = 3,
        hidden_sizes: Sequence[int] = (64, 64),
        activation: str = "tanh",
        covariance: CovarianceType | None = None,
    ) -> None:
        super().__init__()
        for name, value in (("num_features", num_features), ("num_targets", num_targets),
                            ("num_components", num_components)):
            if value is None:
                raise ValueError(f"model.net.{name} is unknown; train() takes it from the "
                                 "data (a regression data set), or pass it.")
            if not (isinstance(value, int) and value >= 1):
                raise ValueError(f"model.net.{name} must be an integer ≥ 1, got {value!r}.")
        hidden = [int(h) for h in (hidden_sizes or [])]
        if any(h < 1 for h in hidden):
            raise ValueError(f"model.net.hidden_sizes must be positive widths, got {hidden}.")
        act = activation_class(activation)
        self.num_features, self.num_targets = num_features, num_targets
        self.num_components = num_components
        self.cov = covariance if covariance is not None else FullCovariance()
        layers: list[nn.Module] = []
        width = num_features
        for h in hidden:
            layers += [nn.Linear(width, h), act()]
            width = h
        self.trunk = nn.Sequential(*layers)
        k, d = num_components, num_targets
        self.raw_components = 1 if self.cov.shared else k  # K' (1 for shared covariances)
        self.raw_size = self.cov.raw_size(d)  # P
        self.split_sizes = [k, k * d, self.raw_components * self.raw_size]
        self.head = nn.Linear(width, sum(self.split_sizes))
        self.register_buffer("initialized", torch.tensor(False))

    # -- the network ----------------------------------------------------------------------------
    def forward(self, x: Tensor) -> tuple[Tensor, Tensor, Tensor]:
        """Mixture parameters for inputs ``x`` ``[*B, F]``.

        Returns:
            ``log_weights`` ``[*B, K]``, ``means`` ``[*B, K, D]`` and the raw covariance
            ``[*B, K', P]`` (K' = 1 for shared types; P = 0 for ``unit``).
        """
        if x.shape[-1] != self.num_features:
            raise ValueError(
                f"inputs have {x.shape[-1]} features but model.net.num_features="
                f"{self.num_features}; check the data's input columns."
            )
        out = self.head(self.trunk(x))
        logits, means, raw = out.split(self.split_sizes, dim=-1)
        means = means.unflatten(-1, (self.num_components, self.num_targets))
        raw = raw.reshape(*raw.shape[:-1], self.raw_components, self.raw_size)
        return torch.log_softmax(logits, -1), means, raw

    def _check_targets(self, y: Tensor) -> None:
        if y.shape[-1] != self.num_targets:
            raise ValueError(
                f"targets have {y.shape[-1]} dimensions but model.net.num_targets="
                f"{self.num_targets}; check the data's target columns."
            )

    # -- the conditional density ------------------------------------------------------------------
    def log_prob(self, x: Tensor, y: Tensor) -> Tensor:
        """``log p(y | x)`` with the full Gaussian constant.

        Args:
            x: ``[*B, F]``.
            y: ``[*E, *B, D]`` (extra leading dimensions ``E``, e.g. a grid or samples, are
                scored against the same mixtures).

        Returns:
            ``[*E, *B]``.
        """
        self._check_targets(y)
        return mixture_log_prob(y, *self(x), self.cov)

    def sample(self, x: Tensor, num_samples: int = 1,
               generator: torch.Generator | None = None) -> Tensor:
        """``num_samples`` draws from ``p(y | x)`` for every input: ``[*B, F]`` → ``[S, *B, D]``.
        """
        with torch.no_grad():
            return sample_mixture(num_samples, *self(x), self.cov, generator)[0]

    def mean(self, x: Tensor) -> Tensor:
        """Predictive mean ``Σ_k π_k μ_k``: ``[*B, D]``."""
        log_weights, means, _ = self(x)
        return mixture_mean(log_weights, means)

    def covariance(self, x: Tensor) -> Tensor:
        """Predictive covariance by the law of total variance: ``[*B, D, D]``."""
        return mixture_covariance(*self(x), self.cov)

    def variance(self, x: Tensor) -> Tensor:
        """Predictive variance of every target dimension: ``[*B, D]``."""
        return self.covariance(x).diagonal(dim1=-2, dim2=-1)

    def mode(self, x: Tensor, num_steps: int = 20) -> Tensor:
        """Approximate most probable ``y`` (mean-shift from every component mean): ``[*B, D]``.
        """
        with torch.no_grad():
            return mixture_mode(*self(x), self.cov, num_steps)

    def marginal_cdf(self, x: Tensor, y: Tensor) -> Tensor:
        """PIT values ``F_j(y_j | x)`` of every target dimension: ``[*E, *B, D]``."""
        self._check_targets(y)
        return mixture_marginal_cdf(y, *self(x), self.cov)

    # -- set-up ---------------------------------------------------------------------------------
    @torch.no_grad()
    def initialize(self, y: Tensor, generator: torch.Generator | None = None,
                   kmeans_iters: int = 10, head_gain: float = 0.1) -> None:
        """Start every input at the same spread-out mixture: k-means centres of the training
        targets ``y`` ``[N, D]`` as the means' biases, the pooled within-cluster covariance as
        the raw covariance's bias, equal weights; the head's weights are scaled by
        ``head_gain`` so that the inputs move the mixture gradually."""
        self._check_targets(y)
        k, d = self.num_components, self.num_targets
        if k > y.shape[0]:
            raise ValueError(
                f"model.net.num_components={k} exceeds the number of training points "
                f"({y.shape[0]}); lower model.net.num_components."
            )
        y = y.detach().to(torch.float64)
        centres, labels = kmeans(y, k, kmeans_iters, generator)
        resid = y - centres[labels]
        pooled = (resid.T @ resid) / y.shape[0]
        pooled = pooled + 1e-6 * torch.eye(d, dtype=pooled.dtype, device=pooled.device)
        raw = self.cov.from_covariance(pooled.expand(self.raw_components, d, d))  # [K', P]
        bias = torch.cat([torch.zeros(k, dtype=y.dtype, device=y.device),
                          centres.flatten(), raw.flatten()])
        self.head.bias.copy_(bias.to(self.head.bias))
        self.head.weight.mul_(head_gain)
        self.initialized.fill_(True)

    def num_parameters(self) -> int:
        """Trainable parameters of the network."""
        return sum(p.numel() for p in self.parameters() if p.requires_grad)
