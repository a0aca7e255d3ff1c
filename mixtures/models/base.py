"""One prediction API for every mixture density, written once (as scikit-learn's ``BaseMixture``).

A model gives its weighted log-probabilities, its parameters and its parameter count; this base
turns them into ``predict``, ``predict_proba``, ``score_samples``, ``score``, ``sample``,
``bic`` and ``aic``. Everything works on torch tensors on the model's device, in batches of
points ``x`` ``[N, D]``.

Hooks (what a subclass writes):

- :meth:`weighted_log_prob` ``[N, K]``: ``log π_k + log p(x | k)`` of the model's density
  (``score_samples`` is its logsumexp). Keep it differentiable when the model trains by
  gradient.
- the properties ``weights`` ``[K]``, ``means`` ``[K, D]``, ``covariances`` ``[K, D, D]``
  (read by :meth:`mixture_parameters`).
- optionally :meth:`effective_components`, the K that :meth:`num_parameters` counts (the DPMM:
  its active components).
- :meth:`sampling_parameters`: ``(log_weights [K], means [K, D], raw [K or 1, P])`` in the
  model's covariance parametrisation ``self.cov``, used by the default :meth:`sample`.
- optionally :meth:`assignment_log_prob` ``[N, K]``, when the model assigns points by another
  score than its density (the DPMM: the variational ``E[log π_k N(x | k)]``); set
  ``assignment_is_density = False`` with it.

Letters: N points, K components, D features, S samples.
"""

from __future__ import annotations

import math
from abc import abstractmethod

import torch
from torch import Tensor, nn

from mixtures.distributions import sample_mixture

__all__ = ["MixtureDensity", "all_finite"]


def all_finite(x: Tensor) -> bool:
    """Whether every element of ``x`` is finite, at the cost of a plain sum (one host sync).

    A NaN or an infinity makes the sum non-finite; only when the sum is (also when huge finite
    values overflow it) are the elements tested one by one. ``torch.isfinite(x).all()`` costs
    ~30× the sum on a CPU (a boolean tensor of x's size).
    """
    if x.numel() == 0 or not x.is_floating_point():
        return True
    return bool(torch.isfinite(x.sum())) or bool(torch.isfinite(x).all())


class MixtureDensity(nn.Module):
    """Base of the mixture-density models (``GaussianMixtureModel``, ``GaussianMixtureEM``,
    ``DPMM``, ``VariationalGMM``)."""

    num_components: int
    num_features: int
    #: whether :meth:`assignment_log_prob` is :meth:`weighted_log_prob` (no second pass needed)
    assignment_is_density: bool = True

    # -- hooks ----------------------------------------------------------------------------------
    @abstractmethod
    def weighted_log_prob(self, x: Tensor) -> Tensor:
        """``log π_k + log p(x_n | k)`` ``[N, K]`` for points ``[N, D]``."""

    def sampling_parameters(self) -> tuple[Tensor, Tensor, Tensor]:
        """``(log_weights [K], means [K, D], raw covariance [K or 1, P])`` for :meth:`sample`."""
        raise NotImplementedError(f"{type(self).__name__} does not define how to sample.")

    def assignment_log_prob(self, x: Tensor) -> Tensor:
        """Unnormalised log-responsibilities ``[N, K]`` (default: :meth:`weighted_log_prob`)."""
        return self.weighted_log_prob(x)

    # -- written once ---------------------------------------------------------------------------
    @torch.no_grad()
    def mixture_parameters(self) -> dict[str, Tensor]:
        """Detached copies of ``weights`` ``[K]``, ``means`` ``[K, D]`` and dense
        ``covariances`` ``[K, D, D]`` (the model's ``weights`` / ``means`` / ``covariances``)."""
        return {"weights": self.weights.detach().clone(), "means": self.means.detach().clone(),
                "covariances": self.covariances.detach().clone()}

    def log_prob(self, x: Tensor) -> Tensor:
        """Mixture log-density ``[N]`` (differentiable where the hook is)."""
        return torch.logsumexp(self.weighted_log_prob(x), -1)

    def effective_components(self) -> int:
        """Components counted by :meth:`num_parameters` (default: all K)."""
        return self.num_components

    def num_parameters(self) -> int:
        """Free parameters, for BIC / AIC: (K − 1) weights + K·D means + the covariances."""
        k, d = self.effective_components(), self.num_features
        return (k - 1) + k * d + self.cov.num_parameters(k, d)

    @torch.no_grad()
    def score_samples(self, x: Tensor) -> Tensor:
        """Log-density of every point ``[N]``."""
        return self.log_prob(x)

    @torch.no_grad()
    def score(self, x: Tensor) -> float:
        """Mean log-density of the points (scikit-learn's ``score``)."""
        return float(self.score_samples(x).double().mean())

    @torch.no_grad()
    def predict_proba(self, x: Tensor) -> Tensor:
        """Responsibilities ``[N, K]`` (rows sum to one)."""
        return torch.softmax(self.assignment_log_prob(x), -1)

    @torch.no_grad()
    def predict(self, x: Tensor) -> Tensor:
        """Most responsible component ``[N]``."""
        return self.assignment_log_prob(x).argmax(-1)

    @torch.no_grad()
    def score_and_predict(self, x: Tensor) -> tuple[Tensor, Tensor]:
        """Log-density ``[N]`` and component labels ``[N]`` (one pass when they share it)."""
        weighted = self.weighted_log_prob(x)
        labels = (weighted if self.assignment_is_density else self.assignment_log_prob(x))
        return torch.logsumexp(weighted, -1), labels.argmax(-1)

    @torch.no_grad()
    def sample(self, num_samples: int, generator: torch.Generator | None = None
               ) -> tuple[Tensor, Tensor]:
        """Points ``[S, D]`` and their component labels ``[S]``."""
        log_weights, means, raw = self.sampling_parameters()
        return sample_mixture(num_samples, log_weights, means, raw, self.cov, generator)

    @torch.no_grad()
    def bic(self, x: Tensor) -> float:
        """Bayesian information criterion ``−2 log L + p log N`` on ``x`` (lower is better)."""
        total = float(self.score_samples(x).double().sum())
        return -2.0 * total + self.num_parameters() * math.log(x.shape[0])

    @torch.no_grad()
    def aic(self, x: Tensor) -> float:
        """Akaike information criterion ``−2 log L + 2 p`` on ``x`` (lower is better)."""
        return -2.0 * float(self.score_samples(x).double().sum()) + 2.0 * self.num_parameters()

    def _check_points(self, x: Tensor, dtype: torch.dtype) -> Tensor:
        """``x`` as ``[N, D]`` points of ``dtype``, or a clear error naming the sizes."""
        if x.dim() != 2 or x.shape[-1] != self.num_features:
            raise ValueError(
                f"expected points of shape [N, {self.num_features}], got {list(x.shape)}; "
                f"the model was built with num_features={self.num_features}."
            )
        return x.to(dtype)

    @staticmethod
    def _check_sizes(num_components: object, num_features: object) -> None:
        """The constructor's size check, with the config key that sets each size."""
        for name, value in (("num_components", num_components),
                            ("num_features", num_features)):
            if not (isinstance(value, int) and not isinstance(value, bool) and value >= 1):
                raise ValueError(
                    f"{name} must be an integer ≥ 1 (got {value!r}); set model.net.{name} "
                    "(num_features defaults to the data's)."
                )
