"""Post-hoc class-conditional density of a classifier's features (the recipe of Deep
Deterministic Uncertainty, Mukhoti et al. 2021): after training, each class's G-component
Gaussian mixture is fitted to that class's training features by exact EM
(:class:`~mixtures.models.GaussianMixtureEM`, any covariance type, ``reg_covar``), and

    log p(z) = logsumexp_c ( log π_c + logsumexp_g ( log w_cg + log N(z | μ_cg, Σ_cg) ) )

with π the classes' training frequencies serves as an out-of-distribution score while the
trained head still classifies. The fitted parameters are buffers (saved in every checkpoint as
tensors); a class without training features (held-out classes) gets no density.

Letters: N points, B batch, C classes, G components per class, D features, P raw covariance
parameters per component.
"""

from __future__ import annotations

import math

import torch
from torch import Tensor, nn

from mixtures.distributions import CovarianceType, FullCovariance, component_log_prob
from mixtures.models.em import GaussianMixtureEM

__all__ = ["ClassDensity"]


def _mirror_fitted(module: nn.Module, incompatible_keys: object) -> None:
    module.is_fitted = bool(module.fitted)


class ClassDensity(nn.Module):
    """C class-conditional Gaussian mixtures of G components over D features, fitted by EM.

    Args:
        num_classes: C.
        feature_dim: D.
        num_components: G, components per class.
        covariance: covariance type of the components (default full).
        reg_covar: added to every variance in the M-step (scikit-learn's ``reg_covar``).
        max_iter, tol: EM's iteration cap and tolerance on the mean log-likelihood.
        seed: seed of EM's k-means initialisation.
    """

    def __init__(self, num_classes: int, feature_dim: int, num_components: int = 1,
                 covariance: CovarianceType | None = None, reg_covar: float = 1e-6,
                 max_iter: int = 100, tol: float = 1e-3, seed: int = 0) -> None:
        super().__init__()
        for name, value in (("num_classes", num_classes), ("feature_dim", feature_dim),
                            ("num_components", num_components), ("max_iter", max_iter)):
            if not isinstance(value, int) or value < 1:
                raise ValueError(f"model.net.density.{name} must be a positive integer, "
                                 f"got {value!r}.")
        if not reg_covar >= 0:
            raise ValueError(f"model.net.density.reg_covar must be ≥ 0, got {reg_covar}; "
                             "e.g. 1e-6.")
        self.cov = covariance if covariance is not None else FullCovariance()
        self.num_classes, self.feature_dim, self.num_components = num_classes, feature_dim, \
            num_components
        self.reg_covar, self.max_iter, self.tol, self.seed = float(reg_covar), max_iter, \
            float(tol), seed
        c, g, d = num_classes, num_components, feature_dim
        raw = self.cov.from_covariance(torch.eye(d).expand(g, d, d), torch.ones(g))  # [G|1, P]
        self.register_buffer("log_weights", torch.full((c, g), -math.log(g)))
        self.register_buffer("means", torch.zeros(c, g, d))
        self.register_buffer("raw_covariance", raw.expand(c, *raw.shape).clone())
        self.register_buffer("log_class_prior", torch.full((c,), -math.log(c)))
        self.register_buffer("fitted", torch.tensor(False))
        #: the training step at which the density was fitted (−1: never)
        self.register_buffer("fitted_step", torch.tensor(-1))
        #: Python mirror of ``fitted`` (kept by fit and checkpoint loading: no device sync)
        self.is_fitted = False
        self.register_load_state_dict_post_hook(_mirror_fitted)

    @torch.no_grad()
    def fit(self, z: Tensor, labels: Tensor, step: int = 0) -> dict[str, Tensor]:
        """Fit every class's mixture to its features ``z [N, D]`` (labels ``[N]``) by EM in
        float64; a class without features gets log-prior −∞.

        Returns:
            ``n_iter`` ``[C]`` (0 for absent classes) and ``converged`` ``[C]`` bool.
        """
        c, g, d = self.num_classes, self.num_components, self.feature_dim
        if z.dim() != 2 or z.shape[1] != d or labels.shape != (z.shape[0],):
            raise ValueError(f"fit needs features [N, {d}] and labels [N]; got "
                             f"{list(z.shape)} and {list(labels.shape)}.")
        counts = torch.bincount(labels, minlength=c).cpu()
        if counts.numel() > c:
            raise ValueError(f"labels reach {counts.numel() - 1}, but the density has "
                             f"{c} classes (model.net.density.num_classes).")
        small = [k for k in range(c) if 0 < int(counts[k]) < g]
        if small:
            raise ValueError(
                f"classes {small} have fewer training features than num_components={g}; "
                "lower model.net.density.num_components or train on more digits.")
        n_iter = torch.zeros(c, dtype=torch.long)
        converged = torch.zeros(c, dtype=torch.bool)
        order = labels.argsort()  # one sort, then each class is a slice
        zs, sizes = z[order].double(), counts.tolist()
        for k, zk in enumerate(zs.split(sizes)):
            if sizes[k] == 0:
                continue
            em = GaussianMixtureEM(g, d, covariance=self.cov, reg_covar=self.reg_covar,
                                   seed=self.seed + k).to(zk.device, torch.float64)
            em.initialize(zk)
            out = em.fit(zk, max_iter=self.max_iter, tol=self.tol)
            log_w, means, raw = em.sampling_parameters()
            self.log_weights[k] = log_w.to(self.log_weights)
            self.means[k] = means.to(self.means)
            self.raw_covariance[k] = raw.to(self.raw_covariance)
            n_iter[k], converged[k] = out["n_iter"][0], out["converged"][0]
        prior = counts.double() / counts.sum()
        self.log_class_prior.copy_(prior.log().to(self.log_class_prior))
        self.fitted.fill_(True)
        self.is_fitted = True
        self.fitted_step.fill_(int(step))
        return {"n_iter": n_iter, "converged": converged}

    def class_log_likelihood(self, z: Tensor) -> Tensor:
        """``log p(z | c)`` ``[B, C]`` (−∞ for a class without training features)."""
        comp = component_log_prob(z[:, None, :], self.means, self.raw_covariance, self.cov)
        ll = torch.logsumexp(comp + self.log_weights, dim=-1)  # [B, C]
        return ll.masked_fill(torch.isinf(self.log_class_prior), -math.inf)

    def log_prob(self, z: Tensor) -> Tensor:
        """``log p(z)`` ``[B]`` under the class mixture weighted by the training frequencies."""
        if not self.is_fitted:
            raise RuntimeError("the class density is not fitted yet: call fit(z, labels) "
                               "(ClassifierModule does after training).")
        return torch.logsumexp(self.class_log_likelihood(z) + self.log_class_prior, dim=-1)

    def extra_repr(self) -> str:
        return (f"num_classes={self.num_classes}, feature_dim={self.feature_dim}, "
                f"num_components={self.num_components}, covariance={self.cov!r}, "
                f"reg_covar={self.reg_covar}")
