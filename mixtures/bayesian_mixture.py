"""A drop-in for ``sklearn.mixture.BayesianGaussianMixture`` on top of :class:`DPMM`.

Coordinate-ascent variational inference (CAVI) written here over the DPMM's public surface:
``resp = local_step(x)``, then the statistics of ``resp`` (plus scikit-learn's ``reg_covar``,
``N_k · reg_covar`` on the diagonal of every scale matrix Ψ_k) become the posterior. Optional
``moves=True`` runs :func:`mixtures.models.dpmm_moves.global_moves` after each iteration.

The weights' factor is the Dirichlet process (the DPMM's sticks) or, for
``weight_concentration_prior_type="dirichlet_distribution"``, a finite symmetric Dirichlet
(posterior ``α₀ + N_k``, ``E[log π_k] = ψ(α_k) − ψ(Σα)``), by the DPMM subclass
:class:`mixtures.bayesian_engine.Engine`.

What was found comparing with scikit-learn 1.9.1 (tests/test_bayesian_mixture.py):

- ``lower_bound_`` is scikit-learn's convention: ``H(r) + Σ log Z(q)`` without the constants it
  drops (π's, the prior's normalisers), where ``Z(q)`` are the normalisers of the posterior
  factors (sticks ``Σ log B(a, b)``, or Dirichlet; per component ``−D/2 log β`` and the
  precision's ``−ν/2 log|Ψ| + νD/2 log 2 + G(ν)``). With ``reg_covar = 0`` it is the ELBO of
  (r, q) up to a constant: ``ELBO = lower_bound − L₀ − N D/2 log 2π``, ``L₀`` the same formula
  at the prior; with ``reg_covar > 0`` the posterior is not the optimum for r and the ELBO is
  ``½ reg_covar Σ_k N_k tr E[Λ_k]`` higher than that. The true ELBO of the fitted posterior
  (with its own optimal responsibilities) is ``elbo_``.
- From the same responsibilities (float64, no moves), with ``_sklearn_compat = True`` (which
  switches differences 1 and 2 off) every iteration's lower bound equals scikit-learn's within
  3e-12 and every fitted attribute within 3e-13, for full, diag, spherical and both prior
  types; without it, full + finite Dirichlet is equal as well (nothing differs there).
  Rounding-level details: scikit-learn's ``N_k`` carries ``+ 10 ε``; its default Ψ₀ for full is
  ``np.cov(X.T)`` and ours adds ``(1e-8 · mean std)²`` to the diagonal (the floor that keeps a
  constant feature's Ψ₀ positive definite); the priors are re-derived from X on a warm start,
  as scikit-learn's ``_check_parameters`` does, after the first E-step.
- Deliberate differences, bounded in the tests (measured near the truth with K = 3: weights
  ≤ 9e-4, means ≤ 5e-4, covariances ≤ 1.1e-3, responsibilities ≤ 3e-3):

  1. *Truncation.* Our K-th stick is 1 (Blei & Jordan), so the weights sum to one and the last
     component has ``E[log v_K] = 0``; scikit-learn keeps a K-th Beta(1 + N_K, α) stick, loses
     its mass and renormalises ``weights_``. Ours reports the last stick as ``b_K = 0``
     (Beta(a, 0) = a point mass at 1) in ``weight_concentration_``. Only the K-th
     ``E[log π_K]`` differs, by ``ψ(1 + N_K + α) − ψ(1 + N_K)``.
  2. *Gamma precisions.* For diag / spherical our posterior precisions are Gamma
     (``G = D lgamma(ν/2)``; spherical ``Gamma(Dν/2, Dψ/2)``), with ``E[log λ]`` of a Gamma;
     scikit-learn applies the Wishart's ``Σ_i ψ((ν − i)/2)`` and normaliser there. Point
     estimates (means, covariances, ν, β) follow the same update; only the responsibilities
     (and so everything after the first E-step) move: each component's log-responsibility by
     ``½ (Σ_i ψ((ν − i)/2) − D ψ(ν/2)) ≈ −D(D − 1)/(4ν)`` for diag (spherical similarly).
  3. ``score_samples`` / ``score`` are the posterior-predictive log-density (Student-t; a
     normalised density); scikit-learn's are ``logsumexp E[log π_k N(x | k)]``, a lower bound
     of it (Jensen). ``predict`` / ``predict_proba`` are scikit-learn's (the variational ones).
     ``sample`` draws from the posterior predictive (scikit-learn: N(means_, covariances_)).
  4. ``degrees_of_freedom_prior`` must exceed 0 for diag / spherical (Gamma), D − 1 for full
     (scikit-learn: D − 1 always). ``covariance_type="tied"`` is refused (the DPMM's priors are
     per component). Data are not rescaled (unlike :class:`GaussianMixture`).

Letters: N points, R restarts, K components, D features.
"""

from __future__ import annotations

import math
import warnings

import numpy as np
import torch
from torch import Tensor

import mixtures.distributions as dist
from mixtures.bayesian_engine import Engine
from mixtures.estimator import (
    ConvergenceWarning,
    InvalidParameterError,
    NotFittedError,
    SklearnEstimator,
    _output_dtype,
    _seed,
)
from mixtures.models.dpmm_moves import global_moves
from mixtures.models.init import initial_responsibilities

__all__ = ["BayesianGaussianMixture"]

_PRIOR_TYPES = ("dirichlet_process", "dirichlet_distribution")


class BayesianGaussianMixture(SklearnEstimator):
    """Variational Bayesian Gaussian mixture with scikit-learn's API (see its documentation and
    this module's docstring for the differences).

    Args: as ``sklearn.mixture.BayesianGaussianMixture`` (n_components, covariance_type "full",
    "diag" or "spherical", tol, reg_covar, max_iter, n_init, init_params,
    weight_concentration_prior_type, weight_concentration_prior, mean_precision_prior,
    mean_prior, degrees_of_freedom_prior, covariance_prior, random_state, warm_start, verbose,
    verbose_interval), plus ``device`` (default "cpu"), ``dtype`` (torch.float32 by default, or
    float64) and ``moves`` (global merge / prune / re-seed moves after each iteration; an
    iteration that accepted a move does not count as converged).

    Fitted attributes (numpy, the data's float dtype): ``weights_`` ``[K]``, ``means_``
    ``[K, D]``, ``covariances_``, ``precisions_``, ``precisions_cholesky_`` (full ``[K, D, D]``,
    diag ``[K, D]``, spherical ``[K]``), ``weight_concentration_`` (DP: ``(a [K], b [K])``; DD:
    ``[K]``), ``mean_precision_`` ``[K]``, ``degrees_of_freedom_`` ``[K]``, ``mean_prior_``
    ``[D]``, ``covariance_prior_``, the ``*_prior_`` values used, ``lower_bound_`` (scikit-learn's
    convention), ``lower_bounds_``, ``elbo_`` (the true ELBO of the fitted posterior),
    ``converged_``, ``n_iter_``, ``n_features_in_``.
    """

    _covariance_types = ("full", "diag", "spherical", "tied")
    #: scikit-learn's K-th stick and Wishart E[log|Λ|] (tests: equality with scikit-learn)
    _sklearn_compat = False

    def __init__(self, n_components=1, *, covariance_type="full", tol=1e-3, reg_covar=1e-6,
                 max_iter=100, n_init=1, init_params="kmeans",
                 weight_concentration_prior_type="dirichlet_process",
                 weight_concentration_prior=None, mean_precision_prior=None, mean_prior=None,
                 degrees_of_freedom_prior=None, covariance_prior=None, random_state=None,
                 warm_start=False, verbose=0, verbose_interval=10, device=None, dtype=None,
                 moves=False) -> None:
        self.n_components, self.covariance_type, self.tol = n_components, covariance_type, tol
        self.reg_covar, self.max_iter, self.n_init = reg_covar, max_iter, n_init
        self.init_params = init_params
        self.weight_concentration_prior_type = weight_concentration_prior_type
        self.weight_concentration_prior = weight_concentration_prior
        self.mean_precision_prior, self.mean_prior = mean_precision_prior, mean_prior
        self.degrees_of_freedom_prior = degrees_of_freedom_prior
        self.covariance_prior, self.random_state = covariance_prior, random_state
        self.warm_start, self.verbose, self.verbose_interval = warm_start, verbose, verbose_interval
        self.device, self.dtype, self.moves = device, dtype, moves

    # -- validation ------------------------------------------------------------------------------
    def _settings(self) -> tuple[torch.device, torch.dtype]:
        device, dtype = super()._settings()
        name = type(self).__name__
        if dist.SKLEARN_COVARIANCE_TYPES[self.covariance_type].shared:
            raise ValueError(f"covariance_type={self.covariance_type!r} is not supported by "
                             f"{name} (its conjugate priors are per component); use 'full', "
                             "'diag' or 'spherical', or mixtures.GaussianMixture for 'tied'.")
        if self.weight_concentration_prior_type not in _PRIOR_TYPES:
            raise InvalidParameterError(
                f"The 'weight_concentration_prior_type' parameter of {name} must be a str among "
                f"{{{', '.join(map(repr, _PRIOR_TYPES))}}}. Got "
                f"{self.weight_concentration_prior_type!r} instead.")
        for param in ("weight_concentration_prior", "mean_precision_prior",
                      "degrees_of_freedom_prior"):
            value = getattr(self, param)
            if value is not None and not (
                    isinstance(value, float | int | np.number) and not isinstance(value, bool)
                    and math.isfinite(value) and value > 0):
                raise InvalidParameterError(
                    f"The {param!r} parameter of {name} must be None or a float in the range "
                    f"(0.0, inf). Got {value!r} instead.")
        if not isinstance(self.moves, bool | np.bool_):
            raise InvalidParameterError(f"The 'moves' parameter of {name} must be an instance "
                                        f"of 'bool'. Got {self.moves!r} instead.")
        return device, dtype

    def _priors(self, x: Tensor) -> dict:
        """The DPMM's prior arguments for the points ``[N, D]``, checked in scikit-learn's
        wording against D."""
        d, kind, name = x.shape[1], self.covariance_type, type(self).__name__
        family = dist.conjugate_prior(dist.covariance_from_sklearn_name(kind))
        nu0 = float(d if self.degrees_of_freedom_prior is None else self.degrees_of_freedom_prior)
        low = d - 1 if self._sklearn_compat else family.min_degrees_of_freedom(d)
        if not nu0 > low:
            raise ValueError(f"The parameter 'degrees_of_freedom_prior' should be greater than "
                             f"{low:g}, but got {nu0:.3f}.")
        mean = None
        if self.mean_prior is not None:
            mean = torch.as_tensor(np.asarray(self.mean_prior, dtype=np.float64))
            if tuple(mean.shape) != (d,) or not bool(torch.isfinite(mean).all()):
                raise ValueError(f"The parameter 'means' should have the shape of {(d,)}, but "
                                 f"got {tuple(mean.shape)} (mean_prior; finite values).")
        cov = self.covariance_prior
        if cov is not None:
            cov = torch.as_tensor(np.asarray(cov, dtype=np.float64))
            shape = family.scatter_shape(d)  # Ψ₀: [D, D], [D] or [1] (then a number)
            shape = () if shape == (1,) else shape
            ok = tuple(cov.shape) == shape and bool(torch.isfinite(cov).all()) and (
                torch.linalg.cholesky_ex(cov)[1] == 0 and torch.allclose(cov, cov.T)
                if cov.dim() == 2 else bool((cov > 0).all()))
            if not ok and shape == ():
                raise InvalidParameterError(
                    f"The 'covariance_prior' parameter of {name} must be None, an array-like or "
                    f"a float in the range (0.0, inf). Got {self.covariance_prior!r} instead.")
            if tuple(cov.shape) != shape:
                raise ValueError(f"The parameter '{kind} covariance_prior' should have the "
                                 f"shape of {shape}, but got {tuple(cov.shape)}.")
            if not ok:
                what = "symmetric, positive-definite" if cov.dim() == 2 else "positive"
                raise ValueError(f"'{kind} covariance_prior' should be {what}.")
        return dict(weight_concentration_prior=self.weight_concentration_prior,
                    mean_precision_prior=float(self.mean_precision_prior or 1.0),
                    mean_prior=mean, degrees_of_freedom_prior=nu0, covariance_prior=cov)

    def _fitted(self, X=None):
        """The engine (NotFittedError before ``fit``), or the points ``X`` checked for it."""
        if getattr(self, "_model", None) is None:
            raise NotFittedError(f"This {type(self).__name__} instance is not fitted yet. Call "
                                 "'fit' with appropriate arguments before using this estimator.")
        if X is None:
            return self._model
        x = self._tensor(X, self._model.counts.device, self._model.counts.dtype)
        if x.shape[1] != self.n_features_in_:
            raise ValueError(f"X has {x.shape[1]} features, but {type(self).__name__} is "
                             f"expecting {self.n_features_in_} features as input.")
        return x

    def _engine(self, d: int, priors: dict, floor: float) -> Engine:
        cov = dist.covariance_from_sklearn_name(self.covariance_type, min_scale=floor)
        return Engine(int(self.n_components), d, cov, **priors,
                       finite=self.weight_concentration_prior_type == "dirichlet_distribution",
                       compat=self._sklearn_compat)

    def _initial_resp(self, x: Tensor) -> Tensor:
        """Initial responsibilities ``[N, R, K]`` of the ``n_init`` restarts (a test hook)."""
        return initial_responsibilities(x, int(self.n_components), int(self.n_init),
                                        self.init_params, _seed(self.random_state))

    # -- fitting -----------------------------------------------------------------------------------
    def fit(self, X, y=None) -> BayesianGaussianMixture:
        """Fit by coordinate-ascent VI (``n_init`` restarts, best lower bound kept)."""
        self._fit(X)
        return self

    def fit_predict(self, X, y=None) -> np.ndarray:
        """Fit, then the most probable component of every point ``[N]``."""
        return self.predict(self._fit(X))

    def _fit(self, X) -> Tensor:
        device, dtype = self._settings()
        out = _output_dtype(X)
        x = self._tensor(X, device, dtype)
        n, d = x.shape
        if n < max(2, self.n_components):
            raise ValueError(f"Expected n_samples >= n_components but got n_components = "
                             f"{self.n_components}, n_samples = {n} (and at least 2 samples); "
                             "lower n_components.")
        priors = self._priors(x)
        warm = self.warm_start and getattr(self, "_model", None) is not None
        if warm and d != self.n_features_in_:
            raise ValueError(f"warm_start: X has {d} features, the model {self.n_features_in_}"
                             "; set warm_start=False to refit from scratch.")
        # floor on scales far below the data's spread (scikit-learn has none)
        floor = self._floor if warm else max(1e-8 * float(x.double().std(0).mean()), 1e-30)
        runs, best = [], None
        for r in range(1 if warm else int(self.n_init)):
            model = self._model if warm else self._engine(d, priors, floor).to(device, dtype)
            if not warm:
                model.m_step(x, self._initial_resp(x)[:, r].to(dtype), self.reg_covar, True)
            lower = self.lower_bound_ if warm else -math.inf
            trace, converged = [], False
            for it in range(int(self.max_iter)):
                previous = lower
                resp, _ = model.local_step(x)
                model.m_step(x, resp, self.reg_covar, priors=warm and it == 0)
                lower = model.lower_bound(resp)
                trace.append(lower)
                moved = self.moves and any(global_moves(model, x).values())
                if abs(lower - previous) < self.tol and not moved:
                    converged = True
                    break
            if self.verbose and self.max_iter:
                self._report(torch.tensor(trace)[:, None], [converged])
            runs.append((lower, model, trace, converged))
            if best is None or lower > best[0] or self.max_iter == 0:
                best = runs[-1]
        lower, model, trace, converged = best
        self._model, self._floor, self._out, self.n_features_in_ = model, floor, out, d
        self.lower_bound_ = lower if self.max_iter else -math.inf
        self.lower_bounds_, self.converged_, self.n_iter_ = trace, converged, len(trace)
        self.elbo_ = float(model.elbo(x))
        self._export()
        if not converged and self.max_iter > 0:
            warnings.warn("Best performing initialization did not converge. Try different init "
                          "parameters, or increase max_iter, tol, or check for degenerate data.",
                          ConvergenceWarning, stacklevel=3)
        return x

    def _export(self) -> None:
        """Fitted attributes in scikit-learn's shapes, as numpy of the data's float dtype."""
        m, out = self._model, self._out
        np_ = lambda t: t.detach().double().cpu().numpy().astype(out)  # noqa: E731
        q = m.posterior()
        cov = m.covariances.double()
        tril = torch.linalg.cholesky(cov)
        eye = torch.eye(cov.shape[-1], dtype=cov.dtype, device=cov.device)
        prec_chol = torch.linalg.solve_triangular(tril, eye, upper=False).mT  # L⁻ᵀ
        sk = m.cov.to_sklearn
        self.weights_, self.means_ = np_(m.weights), np_(m.means)
        self.covariances_, self.precisions_cholesky_ = np_(sk(cov)), np_(sk(prec_chol))
        self.precisions_ = np_(sk(prec_chol @ prec_chol.mT))
        conc = m.concentration()
        self.weight_concentration_ = (np_(conc) if m.finite else tuple(map(np_, conc)))
        self.mean_precision_, self.degrees_of_freedom_ = np_(q.beta), np_(q.nu)
        self.mean_prior_ = np_(m.shift)
        scatter = m.prior_scatter.double()
        self.covariance_prior_ = (float(scatter[0]) if scatter.shape == (1,)  # spherical
                                  else np_(scatter))
        self.weight_concentration_prior_ = m.alpha
        self.mean_precision_prior_, self.degrees_of_freedom_prior_ = m.beta0, m.nu0
        for name in ("weights_", "means_", "covariances_", "precisions_cholesky_"):
            if not np.isfinite(getattr(self, name)).all():
                raise ValueError(f"Fitting gave non-finite {name}; fit with "
                                 "dtype=torch.float64, standardise X or increase reg_covar.")

    # -- the prediction API: the engine's (mixtures.models.base.MixtureDensity), as numpy -------
    def predict(self, X) -> np.ndarray:
        """Most probable component ``[N]`` (by the variational ``E[log π_k N(x | k)]``)."""
        x = self._fitted(X)  # NotFittedError before touching the engine
        return self._model.predict(x).cpu().numpy()

    def predict_proba(self, X) -> np.ndarray:
        """Responsibilities ``[N, K]`` (scikit-learn's, variational)."""
        x = self._fitted(X)
        return self._model.predict_proba(x).cpu().numpy().astype(self._out)

    def score_samples(self, X) -> np.ndarray:
        """Posterior-predictive log-density of every point ``[N]``."""
        x = self._fitted(X)
        return self._model.score_samples(x).double().cpu().numpy().astype(self._out)

    def score(self, X, y=None) -> float:
        """Mean posterior-predictive log-density of the points."""
        x = self._fitted(X)
        return float(self._model.score(x))

    def sample(self, n_samples: int = 1) -> tuple[np.ndarray, np.ndarray]:
        """Points ``[S, D]`` (float64) from the posterior predictive and their components
        ``[S]``, grouped by component; reproducible for an integer ``random_state``."""
        model = self._fitted()
        if not (isinstance(n_samples, int | np.integer) and n_samples >= 1):
            raise ValueError(f"Invalid value for 'n_samples': {n_samples!r} . The sampling "
                             "requires at least one sample (an integer ≥ 1).")
        gen = torch.Generator(device=model.counts.device).manual_seed(_seed(self.random_state))
        torch.manual_seed(_seed(self.random_state))  # the Student-t's χ² draws
        x, y = model.sample(int(n_samples), gen)
        order = torch.argsort(y, stable=True)
        return x[order].double().cpu().numpy(), y[order].cpu().numpy()

    # -- persistence -----------------------------------------------------------------------------
    _FITTED = ("n_features_in_", "converged_", "n_iter_", "lower_bound_", "lower_bounds_",
               "elbo_", "_floor")

    def save(self, path) -> None:
        """``torch.save`` of the constructor arguments and fitted state (no pickled objects:
        :meth:`load` reads it with ``weights_only=True``)."""
        model = self._fitted()
        fitted = {k: getattr(self, k) for k in self._FITTED} | {"_out": np.dtype(self._out).name}
        torch.save({"params": self._saved_params(), "fitted": fitted,
                    "state": model.state_dict()}, path)

    @classmethod
    def load(cls, path, device=None) -> BayesianGaussianMixture:
        """Rebuild a model saved by :meth:`save` (optionally onto another ``device``)."""
        blob = torch.load(path, map_location="cpu", weights_only=True)
        if not (isinstance(blob, dict) and {"params", "fitted", "state"} <= set(blob)):
            raise ValueError(f"{path} is not a BayesianGaussianMixture.save file.")
        params = blob["params"] | ({} if device is None else {"device": device})
        model = cls(**params)
        dev, dtype = model._settings()
        fitted = dict(blob["fitted"])
        model._out = np.dtype(fitted.pop("_out")).type
        d = fitted["n_features_in_"]
        engine = model._engine(d, model._priors(torch.zeros(2, d)), fitted["_floor"])
        engine.load_state_dict(blob["state"])
        model._model = engine.to(dev, dtype)
        for k, v in fitted.items():
            setattr(model, k, v)
        model._export()
        return model
