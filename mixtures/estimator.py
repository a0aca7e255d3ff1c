"""A drop-in for ``sklearn.mixture.GaussianMixture`` on top of :class:`GaussianMixtureEM`.

Same constructor, methods, fitted attributes and shapes as scikit-learn, so code written for it
runs unchanged; the ``n_init`` restarts run batched in one engine, on a CPU or a GPU. Inputs may be
numpy arrays (or array-likes) or torch tensors on any device; every output is numpy, as in
scikit-learn. scikit-learn itself is optional: its ``NotFittedError`` and ``ConvergenceWarning``
are used when it is installed.

Letters: N points, R restarts, K components, D features.
"""

from __future__ import annotations

import inspect
import math
import warnings

import numpy as np
import torch
from torch import Tensor

import mixtures.distributions as dist
from mixtures.models.base import all_finite
from mixtures.models.em import GaussianMixtureEM
from mixtures.models.init import INIT_METHODS, initial_responsibilities, kmeans_labels

try:
    from sklearn.base import BaseEstimator, DensityMixin
    from sklearn.exceptions import ConvergenceWarning, NotFittedError

    _BASES: tuple[type, ...] = (DensityMixin, BaseEstimator)  # tags: Pipeline, GridSearchCV
except ImportError:  # scikit-learn is a dev dependency only
    _BASES = ()

    class NotFittedError(RuntimeError):  # type: ignore[no-redef]
        """Raised by a method that needs a fitted model, before ``fit``."""
    class ConvergenceWarning(UserWarning):  # type: ignore[no-redef]
        """Warned when the best restart did not converge."""


__all__ = ["GaussianMixture", "InvalidParameterError", "NotFittedError", "ConvergenceWarning",
           "SklearnEstimator"]


class InvalidParameterError(ValueError, TypeError):
    """A constructor argument of the wrong type or out of range (scikit-learn's, by name)."""

_DTYPES = {"float32": torch.float32, "float64": torch.float64}


def _seed(random_state) -> int:
    """The first restart's seed from an int, None, a ``RandomState`` or a ``Generator``
    (restart r uses seed + r, see :func:`initial_responsibilities`)."""
    if isinstance(random_state, int | np.integer):
        return int(random_state)
    if isinstance(random_state, np.random.RandomState):
        return int(random_state.randint(2**31 - 1))
    return int((random_state or np.random.default_rng()).integers(2**31 - 1))


#: data whose largest magnitude lies in [2⁻²⁰, 2²⁰] are fitted as given; others are divided by
#: a power of two (exact) that brings it near 1 (float32 second moments overflow from ~1e18)
_SCALE_LIMIT = 2.0**20


def _output_dtype(X) -> type:
    """numpy dtype of the fitted attributes and outputs for the data ``X``: float32 for
    float32 (or float16) input, float64 otherwise (as scikit-learn, whatever dtype the engine
    computes in)."""
    dtype = getattr(X, "dtype", None)
    if dtype in (np.float32, np.float16, torch.float32, torch.float16, torch.bfloat16):
        return np.float32
    return np.float64


def _data_scale(x) -> float:
    """A power of two near the largest magnitude of the points ``x`` (numpy or torch), or 1
    when that is already in ``[2⁻²⁰, 2²⁰]`` (or zero, or not finite: checked later)."""
    top = max(float(x.max()), -float(x.min()))
    if not (math.isfinite(top) and top > 0) or 1 / _SCALE_LIMIT <= top <= _SCALE_LIMIT:
        return 1.0
    return math.ldexp(1.0, round(math.log2(top)))


class SklearnEstimator(*_BASES):
    """What the scikit-learn drop-ins share: the estimator protocol (parameters from the
    constructor's signature, ``clone``, ``repr``), the constructor checks common to
    scikit-learn's mixtures (:meth:`_settings`, in its wording), device and dtype, and the
    checked conversion of inputs to tensors (:meth:`_tensor`). A subclass sets
    ``_covariance_types``, the names its ``covariance_type`` accepts."""

    _covariance_types: tuple[str, ...] = tuple(dist.SKLEARN_COVARIANCE_TYPES)

    # -- scikit-learn estimator protocol (clone, grid search) ----------------------------------
    @classmethod
    def _get_param_names(cls) -> list[str]:
        return [p for p in inspect.signature(cls.__init__).parameters if p != "self"]

    def get_params(self, deep: bool = True) -> dict:
        return {name: getattr(self, name) for name in self._get_param_names()}

    def set_params(self, **params) -> SklearnEstimator:
        for name, value in params.items():
            if name not in self._get_param_names():
                raise ValueError(f"invalid parameter {name!r}; valid: {self._get_param_names()}")
            setattr(self, name, value)
        return self

    def __repr__(self) -> str:
        defaults = inspect.signature(type(self).__init__).parameters
        args = [f"{k}={v!r}" for k, v in self.get_params().items()
                if not (v is defaults[k].default or np.isscalar(v) and v == defaults[k].default)]
        return f"{type(self).__name__}({', '.join(args)})"

    # -- validation ------------------------------------------------------------------------------
    def _settings(self) -> tuple[torch.device, torch.dtype]:
        """Check the constructor arguments (at fit time, as scikit-learn, in its wording);
        device and dtype."""
        name = type(self).__name__

        def invalid(param: str, what: str) -> InvalidParameterError:
            return InvalidParameterError(f"The {param!r} parameter of {name} must be {what}. "
                                         f"Got {getattr(self, param)!r} instead.")

        def is_int(value) -> bool:
            return isinstance(value, int | np.integer) and not isinstance(value, bool | np.bool_)

        for param in ("n_components", "max_iter", "n_init", "verbose_interval"):
            low = 0 if param == "max_iter" else 1  # max_iter=0: the initialisation alone
            if not (is_int(getattr(self, param)) and getattr(self, param) >= low):
                raise invalid(param, f"an int in the range [{low}, inf)")
        for param in ("tol", "reg_covar"):
            value = getattr(self, param)
            if not (isinstance(value, float | int | np.number) and not isinstance(
                    value, bool | np.bool_ | complex | np.complexfloating) and value >= 0):
                raise invalid(param, "a float in the range [0.0, inf)")
        for param, choices in (("covariance_type", self._covariance_types),
                               ("init_params", INIT_METHODS)):
            if not (isinstance(getattr(self, param), str) and getattr(self, param) in choices):
                raise invalid(param, "a str among {" + ", ".join(map(repr, choices)) + "}")
        if not isinstance(self.warm_start, bool | np.bool_):
            raise invalid("warm_start", "an instance of 'bool'")
        if not (isinstance(self.verbose, bool | np.bool_) or is_int(self.verbose)
                and self.verbose >= 0):
            raise invalid("verbose", "an int in the range [0, inf) or an instance of 'bool'")
        rs = self.random_state
        if not (rs is None or isinstance(rs, np.random.RandomState | np.random.Generator)
                or is_int(rs) and 0 <= rs <= 2**32 - 1):
            raise invalid("random_state", "an int in the range [0, 4294967295], an instance of "
                          "'numpy.random.RandomState' or 'numpy.random.Generator', or None")
        dtype = _DTYPES.get(str(self.dtype or "float32").removeprefix("torch."))
        if dtype is None:
            raise ValueError(f"dtype={self.dtype!r} is not supported; use torch.float32 "
                             "(default) or torch.float64 (or the strings 'float32', 'float64').")
        device = torch.device(self.device if self.device is not None else "cpu")
        if device.type == "cuda" and not torch.cuda.is_available():
            raise ValueError("device='cuda' was requested but CUDA is not available; "
                             "use device='cpu'.")
        return device, dtype

    def _tensor(self, X, device: torch.device, dtype: torch.dtype,
                scale: float | None = 1.0) -> Tensor:
        """Points ``[N, D]`` from an array-like or a tensor, checked (as scikit-learn's
        ``check_array``, numpy only), divided by ``scale`` (None: choose it, see
        :func:`_data_scale`; the choice is left in ``self._fit_scale``) in their own precision
        and moved; no copy of a contiguous tensor of the working dtype and device at scale 1."""
        name = type(self).__name__
        if isinstance(X, Tensor):
            if X.layout != torch.strided:
                raise TypeError(f"{name} requires dense input, got a sparse tensor "
                                f"({X.layout}); convert it with X.to_dense().")
            if X.is_complex():
                raise ValueError(f"Complex data not supported (X has dtype {X.dtype}); pass "
                                 "the real part (X.real) or real and imaginary parts as "
                                 "separate features.")
            x = X.detach()
            if scale is None:
                scale = self._fit_scale = _data_scale(x) if x.numel() else 1.0
            early = scale != 1.0 and x.dtype == torch.float64  # in the input's precision
            if early:  # exact: a power of two
                x = x * (1.0 / scale)
            x = x.to(device, dtype)
            if scale != 1.0 and not early:
                x = x * (1.0 / scale)
        else:  # one conversion, straight to the engine's dtype (no float64 copy on the way)
            if type(X).__module__.startswith("scipy.sparse") or hasattr(X, "tocsr"):
                raise TypeError(f"{name} requires dense input, got a sparse matrix "
                                f"({type(X).__name__}); convert it with X.toarray().")
            arr = np.asarray(X)
            if np.iscomplexobj(arr):
                raise ValueError(f"Complex data not supported (X has dtype {arr.dtype}); pass "
                                 "the real part (X.real) or real and imaginary parts as "
                                 "separate features.")
            if not np.issubdtype(arr.dtype, np.number):
                arr = np.asarray(X, dtype=np.float64)  # as scikit-learn: numeric or an error
            if scale is None:
                scale = self._fit_scale = _data_scale(arr) if arr.size else 1.0
            if scale != 1.0:  # exact: a power of two, in the input's precision
                arr = arr * (np.float32 if arr.dtype == np.float32 else np.float64)(1.0 / scale)
            x = torch.as_tensor(np.ascontiguousarray(arr), device=device).to(dtype)
        if x.dim() != 2:
            raise ValueError(f"Expected a 2-D array [n_samples, n_features], got shape "
                             f"{list(x.shape)}. Reshape your data either using "
                             "X.reshape(-1, 1) if your data has a single feature or "
                             "X.reshape(1, -1) if it contains a single sample.")
        for count, what in ((x.shape[0], "sample"), (x.shape[1], "feature")):
            if count == 0:
                raise ValueError(f"Found array with 0 {what}(s) (shape={tuple(x.shape)}) while "
                                 f"a minimum of 1 is required by {name}.")
        if not all_finite(x):
            raise ValueError("X contains NaN or infinity; remove or impute those values.")
        return x

    def _report(self, trace: Tensor, converged: list[bool]) -> None:
        """scikit-learn-style progress from the lower-bound trace ``[T, R]`` (after the fact)."""
        for r, conv in enumerate(converged if self.verbose else []):
            lb, every = trace[:, r].tolist(), self.verbose_interval
            print(f"Initialization {r}")
            for i in range(every - 1, len(lb) if self.verbose >= 2 else 0, every):
                print(f"  Iteration {i + 1}\t lower bound {lb[i]:.5f}")
            print(f"Initialization {'converged' if conv else 'did not converge'}. "
                  f"lower bound {lb[-1]:.5f}.")

    def _saved_params(self) -> dict:
        """The constructor arguments in a form ``torch.load(weights_only=True)`` reads back
        (numpy arrays become tensors, numpy scalars Python numbers; a ``RandomState`` or
        ``Generator`` instance is stored as None)."""
        params = {k: torch.as_tensor(v) if isinstance(v, np.ndarray) else
                  v.item() if isinstance(v, np.generic) else v
                  for k, v in self.get_params().items()}
        if not isinstance(params["random_state"], int | None):
            params["random_state"] = None
        return params


class GaussianMixture(SklearnEstimator):
    """Gaussian mixture fitted by EM, with scikit-learn's API (see its documentation).

    With scikit-learn installed it is a scikit-learn estimator (``DensityMixin``,
    ``BaseEstimator``: tags, ``clone``), so ``Pipeline``, ``GridSearchCV`` and
    ``cross_val_score`` take it; without, the same class works alone.

    Args: as ``sklearn.mixture.GaussianMixture`` (n_components, covariance_type, tol, reg_covar,
    max_iter, n_init, init_params, weights_init, means_init, precisions_init, random_state,
    warm_start, verbose, verbose_interval), plus ``covariance_type`` "unit" (fixed identity) and
    "shared_spherical" (one σ² for all components; covariances_ shape ``[]``), ``device``
    (default "cpu") and ``dtype`` (torch.float32 by default, or float64; strings accepted).

    Fitted attributes (numpy): ``weights_`` ``[K]``, ``means_`` ``[K, D]``, ``covariances_``,
    ``precisions_``, ``precisions_cholesky_`` (full ``[K, D, D]``, tied ``[D, D]``, diag
    ``[K, D]``, spherical ``[K]``), ``converged_``, ``n_iter_``, ``lower_bound_``,
    ``lower_bounds_``, ``n_features_in_``. They are read-only copies: predictions come from the
    engine. Outputs and fitted attributes have the data's float dtype (float64 unless X is
    float32), as scikit-learn's. Differences: the engine computes in float32 by default whatever
    the input dtype (results agree with scikit-learn's to float32 rounding; ``dtype="float64"``
    for more); ``random_state`` seeds torch generators and our own k-means, so draws, and the
    numbering of the initial components, differ from scikit-learn's (tests/sklearn_suite runs
    scikit-learn's own tests against this class and lists each difference).

    Numerics: points whose largest magnitude lies outside ``[2⁻²⁰, 2²⁰]`` are fitted divided
    by a power of two (exact; ``reg_covar`` and the initial parameters follow, and every
    result is mapped back, log-densities by ``−D log s``), so float32 fits data on a scale of
    1e18 or 1e-15 (a fixed "unit" covariance is not rescaled). A fit whose covariances lie
    within the working dtype's rounding of the data's second moments warns (RuntimeWarning:
    use float64 or a larger ``reg_covar``); with ``reg_covar=0`` it raises, as scikit-learn
    does where its Cholesky factorisation fails, and also where a variance is rounding noise
    that happens to be positive (a singleton component's); non-finite fitted parameters always
    raise.
    """

    def __init__(self, n_components=1, *, covariance_type="full", tol=1e-3, reg_covar=1e-6,
                 max_iter=100, n_init=1, init_params="kmeans", weights_init=None,
                 means_init=None, precisions_init=None, random_state=None, warm_start=False,
                 verbose=0, verbose_interval=10, device=None, dtype=None) -> None:
        self.n_components, self.covariance_type, self.tol = n_components, covariance_type, tol
        self.reg_covar, self.max_iter, self.n_init = reg_covar, max_iter, n_init
        self.init_params, self.weights_init, self.means_init = init_params, weights_init, means_init
        self.precisions_init, self.random_state = precisions_init, random_state
        self.warm_start, self.verbose, self.verbose_interval = warm_start, verbose, verbose_interval
        self.device, self.dtype = device, dtype

    def _engine(self, d: int, restarts: int = 1, scale: float = 1.0) -> GaussianMixtureEM:
        """The engine for points divided by ``scale`` (reg_covar in those units)."""
        reg = self.reg_covar / scale**2  # exact: scale is a power of two
        # the floor on scales stays below √reg_covar, so that reg_covar alone regularises
        floor = 0.5 * reg**0.5 if reg > 0 else 1e-8
        cov = dist.covariance_from_sklearn_name(self.covariance_type, min_scale=floor)
        return GaussianMixtureEM(int(self.n_components), d, cov,
                                 num_restarts=int(restarts), reg_covar=reg)

    def _fitted(self, X=None) -> GaussianMixtureEM | Tensor:
        """The engine (NotFittedError before ``fit``), or the points ``X`` checked for it."""
        if getattr(self, "_em", None) is None:
            raise NotFittedError(f"This {type(self).__name__} instance is not fitted yet. Call "
                                 "'fit' with appropriate arguments before using this estimator.")
        if X is None:
            return self._em
        x = self._tensor(X, self._em.means.device, self._em.means.dtype, self._scale)
        if x.shape[1] != self.n_features_in_:
            raise ValueError(f"X has {x.shape[1]} features, but {type(self).__name__} is "
                             f"expecting {self.n_features_in_} features as input.")
        return x

    # -- initialisation ----------------------------------------------------------------------------
    def _user_init(self, cov: dist.CovarianceType, x: Tensor, scale: float = 1.0
                   ) -> tuple[Tensor | None, Tensor | None, Tensor | None]:
        """weights_init ``[K]``, means_init ``[K, D]`` and precisions_init as dense covariances
        ``[K, D, D]`` (None where not given), checked against scikit-learn's shapes (those of
        the covariance type ``cov``), in the units of the points divided by ``scale``."""
        k, d = int(self.n_components), x.shape[1]
        w, m, p = (None if a is None else torch.as_tensor(
            np.array(a.detach().cpu() if isinstance(a, Tensor) else a, dtype=np.float64) * f,
            dtype=x.dtype, device=x.device)
            for a, f in ((self.weights_init, 1.0), (self.means_init, 1.0 / scale),
                         (self.precisions_init, scale**2)))
        # scikit-learn's wording (its tests match on it), then which argument to fix
        if w is not None:
            if w.shape != (k,):
                raise ValueError(f"The parameter 'weights' should have the shape of {(k,)}, but "
                                 f"got {tuple(w.shape)} (weights_init).")
            if bool((w < 0).any()) or bool((w > 1).any()):
                raise ValueError("The parameter 'weights' should be in the range [0, 1], but got "
                                 f"max value {float(w.max()):.5f}, min value "
                                 f"{float(w.min()):.5f} (weights_init).")
            if abs(float(w.sum()) - 1) > 1e-6:
                raise ValueError("The parameter 'weights' should be normalized, but got "
                                 f"sum(weights) = {float(w.sum()):.5f} (weights_init).")
        if m is not None and m.shape != (k, d):
            raise ValueError(f"The parameter 'means' should have the shape of {(k, d)}, but got "
                             f"{tuple(m.shape)} (means_init).")
        if p is None:
            return w, m, None
        if not cov.learnable:
            raise ValueError("precisions_init cannot be set for covariance_type="
                             f"{self.covariance_type!r} (the covariance is fixed, not fitted); "
                             "leave it None.")
        shape = cov.sklearn_shape(k, d)
        if p.shape != shape:
            raise ValueError(f"The parameter '{self.covariance_type} precision' should have "
                             f"the shape of {tuple(shape)}, but got {tuple(p.shape)} "
                             "(precisions_init).")
        p = cov.from_sklearn(p, k, d)  # dense precisions [K, D, D]
        chol, info = torch.linalg.cholesky_ex(p)
        if bool((info > 0).any()) or not torch.allclose(p, p.mT):
            what = ("should be positive" if self.covariance_type in ("diag", "spherical")
                    else "should be symmetric, positive-definite")
            raise ValueError(f"'{self.covariance_type} precision' {what} (precisions_init).")
        return w, m, torch.cholesky_inverse(chol).expand(k, d, d)

    def _initialize(self, em: GaussianMixtureEM, x: Tensor) -> None:
        """As scikit-learn: an M-step from the init responsibilities of every restart, then the
        user's weights / means / precisions where given (no responsibilities if all are)."""
        given = self._user_init(em.cov, x, self._scale)
        if all(g is not None for g in given):
            em.set_parameters(*given, shift=x.mean(0))
            return
        k, r, seed = int(self.n_components), int(self.n_init), _seed(self.random_state)
        if self.init_params == "kmeans":  # hard labels [N, R]: no one-hot [N, R, K] tensor
            em.initialize_from_labels(x, kmeans_labels(x, k, r, seed))
        else:
            em.initialize_from_responsibilities(
                x, initial_responsibilities(x, k, r, self.init_params, seed))  # [N, R, K]
        if any(g is not None for g in given):
            current = (em.weights, em.means, em.covariances)
            em.set_parameters(*(c if g is None else g for g, c in zip(given, current, strict=True)))

    # -- fitting ---------------------------------------------------------------------------------
    def fit(self, X, y=None) -> GaussianMixture:
        """Fit by EM (``n_init`` batched restarts, best kept by lower bound); returns self.
        Unlike scikit-learn's, no labels are computed for ``X`` (one E-step pass saved)."""
        self._fit(X)
        return self

    def fit_predict(self, X, y=None) -> np.ndarray:
        """Fit, then the most probable component of every point ``[N]``."""
        return self.predict(self._fit(X))

    def _fit(self, X) -> Tensor:
        """Fit on ``X``; returns the checked points on the engine's device and dtype."""
        device, dtype = self._settings()
        self._out = _output_dtype(X)
        warm = self.warm_start and hasattr(self, "converged_")
        # points divided by a power of two (exact, and a GMM is equivariant): parameters and
        # log-densities are mapped back in _export / the prediction methods
        # a fixed (not learnable) covariance is not scale-equivariant: fitted as given
        unscaled = not dist.SKLEARN_COVARIANCE_TYPES[self.covariance_type].learnable
        x = self._tensor(X, device, dtype, self._scale if warm else 1.0 if unscaled else None)
        scale = self._scale if warm else 1.0 if unscaled else self._fit_scale
        n, d = x.shape
        if n < max(2, self.n_components):
            raise ValueError(f"Expected n_samples >= n_components but got n_components = "
                             f"{self.n_components}, n_samples = {n} (and at least 2 samples); "
                             "lower n_components.")
        shift = d * math.log(scale)  # log-densities of the given points: minus this
        if warm:
            if d != self.n_features_in_:
                raise ValueError(f"warm_start: X has {d} features, the model {self.n_features_in_}"
                                 "; set warm_start=False to refit from scratch.")
            em = self._em  # continue from the previous fit's parameters and lower bound
            out = em.fit(x, self.max_iter, self.tol,
                         lower_bound=torch.tensor(self.lower_bound_ + shift))
            self._report(out["trace"], out["converged"].tolist())
            self._check_covariances(em)
            converged, lower = bool(out["converged"][0]), float(out["lower_bound"][0]) - shift
            trace = (out["trace"][:, 0].double() - shift).tolist()
        else:
            em = self._engine(d, self.n_init, scale).to(device, dtype)
            previous, self._scale = getattr(self, "_scale", 1.0), scale  # read by _initialize
            try:
                self._initialize(em, x)
                out = em.fit(x, self.max_iter, self.tol)
                self._report(out["trace"], out["converged"].tolist())
                self._check_covariances(em)
            except BaseException:
                self._scale = previous  # a fitted model stays as it was
                raise
            best = int(out["lower_bound"].nan_to_num(nan=-torch.inf).argmax())  # first of ties
            em.keep_restart(best)
            converged = bool(out["converged"][best])
            lower = float(out["lower_bound"][best]) - shift
            trace = (out["trace"][: int(out["n_iter"][best]), best].double() - shift).tolist()
        self._em, self.n_features_in_ = em, d
        self.converged_, self.n_iter_, self.lower_bound_, self.lower_bounds_ = \
            converged, len(trace), lower, trace
        try:
            self._export()
        except ValueError:  # non-finite parameters: leave no half-fitted model behind
            self._em = None
            del self.converged_
            raise
        # rounding errors of a conditional variance grow with the features before it: D ε
        if self.reg_covar > 0 and bool(self._unresolved(em, float(d)).any()):
            warnings.warn(f"Some fitted covariances are within {dtype} rounding error of the "
                          "data's second moments (too few points for the number of features, "
                          "collapsed points, or data far from their mean compared with their "
                          "spread), so they and the scores are not reliable. Fit with "
                          "dtype=torch.float64, or a larger reg_covar.", RuntimeWarning,
                          stacklevel=3)
        if not converged and self.max_iter > 0:  # max_iter=0 asks for no iteration
            warnings.warn("Best performing initialization did not converge. Try different init "
                          "parameters, or increase max_iter, tol, or check for degenerate data.",
                          ConvergenceWarning, stacklevel=3)
        return x

    @staticmethod
    def _unresolved(em: GaussianMixtureEM, factor: float) -> Tensor:
        """Restarts ``[R]`` (bool) where some component's variance along some feature is within
        rounding noise of its moments: the engine forms ``Σ = E[x xᵀ] − μ μᵀ`` (about its
        shift), so a (conditional) variance ``L_ii²`` under ``factor`` ε ``E[(x_i − shift_i)²]``
        is rounding error, not data (singleton or collapsed points, or too few points for D
        features). Exactly constant features have zero moments and are not flagged."""
        d = em.num_features
        if not em.cov.learnable:
            return torch.zeros(em.num_restarts, dtype=torch.bool, device=em.means.device)
        tril = em.cov.scale_tril(em.raw_covariance, d).double()  # [R, K or 1, D, D]
        variance = tril.square().sum(-1)  # Σ_ii [R, K or 1, D]
        moment = (em.means.double() - em.shift.double()).square() + variance  # [R, K, D]
        if em.cov.shared:
            moment = moment.amax(-2, keepdim=True)
        noise = factor * torch.finfo(em.means.dtype).eps * moment
        conditional = tril.diagonal(dim1=-2, dim2=-1).square()  # L_ii² [R, K or 1, D]
        return (conditional <= noise).flatten(1).any(-1)

    def _check_covariances(self, em: GaussianMixtureEM) -> None:
        """As scikit-learn (whose Cholesky factorisation fails there): with ``reg_covar=0``,
        a covariance that is not resolved from the data in any restart is an error."""
        if self.reg_covar == 0 and bool(self._unresolved(em, 100.0).any()):
            raise ValueError("Fitting the mixture model failed because some components have "
                             "ill-defined empirical covariance (for instance caused by "
                             "singleton or collapsed samples). Try to decrease the number of "
                             "components, increase reg_covar, or scale the input data.")

    def _export(self) -> None:
        """Fitted attributes in scikit-learn's shapes (the covariance type's ``to_sklearn``),
        from the engine's Cholesky factors."""
        em, d = self._em, self.n_features_in_
        tril = em.cov.scale_tril(em.raw_covariance, d)[0]  # L [K or 1, D, D]
        eye = torch.eye(d, dtype=tril.dtype, device=tril.device)
        prec_chol = torch.linalg.solve_triangular(tril, eye, upper=False).mT  # L⁻ᵀ
        s = self._scale  # back to the units of the data: exact (a power of two)
        cov, prec = tril @ tril.mT * s**2, prec_chol @ prec_chol.mT / s**2
        out = getattr(self, "_out", np.float64)  # the fitted data's float dtype
        np_ = lambda t: em.cov.to_sklearn(t).contiguous().cpu().numpy().astype(out, copy=False)  # noqa: E731
        self.weights_ = em.weights[0].cpu().numpy().astype(out, copy=False)
        self.means_ = (em.means[0] * s).cpu().numpy().astype(out, copy=False)
        self.covariances_, self.precisions_, self.precisions_cholesky_ = \
            np_(cov), np_(prec), np_(prec_chol / s)
        for name in ("weights_", "means_", "covariances_", "precisions_", "precisions_cholesky_"):
            if not np.isfinite(getattr(self, name)).all():
                raise ValueError(f"Fitting gave non-finite {name} in {em.means.dtype} (data on "
                                 f"a scale of {s:.3g}, variances up to ~{s * s:.3g}); fit with "
                                 "dtype=torch.float64, or standardise X, or increase reg_covar.")

    # -- inference ---------------------------------------------------------------------------------
    # -- the prediction API: the engine's (mixtures.models.base.MixtureDensity), as numpy -------
    def predict(self, X) -> np.ndarray:
        """Most probable component ``[N]`` (int64)."""
        x = self._fitted(X)  # NotFittedError before touching the engine
        return self._em.predict(x).cpu().numpy()

    def predict_proba(self, X) -> np.ndarray:
        """Responsibilities ``[N, K]``."""
        x = self._fitted(X)  # NotFittedError before touching the engine
        return self._em.predict_proba(x).cpu().numpy().astype(self.means_.dtype, copy=False)

    def _log_scale(self) -> float:
        """``D log s``: log-densities of the given points are the engine's minus this."""
        return self.n_features_in_ * math.log(self._scale)

    def score_samples(self, X) -> np.ndarray:
        """Log-density of every point ``[N]``."""
        x = self._fitted(X)  # NotFittedError before touching the engine
        out = self._em.score_samples(x).cpu().numpy().astype(self.means_.dtype, copy=False)
        return out if self._scale == 1.0 else out - out.dtype.type(self._log_scale())

    def score(self, X, y=None) -> float:
        """Mean log-density of the points."""
        x = self._fitted(X)  # NotFittedError before touching the engine
        return self._em.score(x) - self._log_scale()

    def _n_parameters(self) -> int:
        """Free parameters (weights, means, covariances), as scikit-learn's."""
        return self._fitted().num_parameters()

    def bic(self, X) -> float:
        """Bayesian information criterion ``−2 log L + p log N`` (lower is better)."""
        x = self._fitted(X)  # NotFittedError before touching the engine
        return self._em.bic(x) + 2.0 * x.shape[0] * self._log_scale()

    def aic(self, X) -> float:
        """Akaike information criterion ``−2 log L + 2 p`` (lower is better)."""
        x = self._fitted(X)  # NotFittedError before touching the engine
        return self._em.aic(x) + 2.0 * x.shape[0] * self._log_scale()

    def sample(self, n_samples: int = 1) -> tuple[np.ndarray, np.ndarray]:
        """Points ``[S, D]`` (float64) and their components ``[S]``, grouped by component as in
        scikit-learn; reproducible for an integer ``random_state``."""
        em = self._fitted()
        if not (isinstance(n_samples, int | np.integer) and n_samples >= 1):
            raise ValueError(f"Invalid value for 'n_samples': {n_samples!r} . The sampling "
                             "requires at least one sample (an integer ≥ 1).")
        gen = torch.Generator(device=em.means.device)
        gen.manual_seed(_seed(self.random_state))
        x, y = em.sample(int(n_samples), gen)
        order = torch.argsort(y, stable=True)
        return (x[order].double() * self._scale).cpu().numpy(), y[order].cpu().numpy()

    # -- persistence -----------------------------------------------------------------------------
    def save(self, path) -> None:
        """``torch.save`` of the constructor arguments and fitted state (numpy arguments become
        tensors; a ``RandomState`` instance is stored as None)."""
        em = self._fitted()
        params = self._saved_params()  # loadable with weights_only=True
        fitted = {k: getattr(self, k) for k in ("n_features_in_", "converged_", "n_iter_",
                                                "lower_bound_", "lower_bounds_", "_scale")}
        torch.save({"params": params, "fitted": fitted, "state": em.state_dict()}, path)

    @classmethod
    def load(cls, path, device=None) -> GaussianMixture:
        """Rebuild a model saved by :meth:`save` (optionally onto another ``device``), or a
        fitted ``covariance_type="full"`` model from a run's ``mixture.pt`` (``train.py``: the
        weights, means and covariances in the data's units; ``n_iter_`` 0 and
        ``lower_bound_`` nan, which the file does not hold)."""
        blob = torch.load(path, map_location="cpu", weights_only=True)
        if isinstance(blob, dict) and {"weights", "means", "covariances"} <= set(blob):
            return cls._from_mixture(blob, device)
        if not (isinstance(blob, dict) and {"params", "fitted", "state"} <= set(blob)):
            raise ValueError(f"{path} is neither a GaussianMixture.save file nor a run's "
                             "mixture.pt (weights, means, covariances).")
        params = blob["params"] | ({} if device is None else {"device": device})
        model = cls(**params)
        dev, dtype = model._settings()
        model._scale = float(blob["fitted"].get("_scale", 1.0))  # saved before scaling: 1
        em = model._engine(blob["fitted"]["n_features_in_"], scale=model._scale)  # R = 1
        em.load_state_dict(blob["state"])
        model._em = em.to(dev, dtype)
        for k, v in blob["fitted"].items():
            setattr(model, k, v)
        model._export()
        return model

    @classmethod
    def _from_mixture(cls, blob: dict, device=None) -> GaussianMixture:
        weights, means = blob["weights"].double(), blob["means"].double()
        covariances = blob["covariances"].double()
        k, d = means.shape
        if weights.shape != (k,) or covariances.shape != (k, d, d):
            raise ValueError(f"mixture.pt shapes do not match: weights {list(weights.shape)}, "
                             f"means {list(means.shape)}, covariances "
                             f"{list(covariances.shape)} (expected [K], [K, D], [K, D, D]).")
        model = cls(n_components=k, covariance_type="full", dtype=torch.float64,
                    **({} if device is None else {"device": device}))
        dev, dtype = model._settings()
        model._scale = 1.0
        em = model._engine(d).to(dev, dtype)
        em.set_parameters(weights.to(dev), means.to(dev), covariances.to(dev))
        model._em, model.n_features_in_ = em, d
        model.converged_, model.n_iter_ = True, 0
        model.lower_bound_, model.lower_bounds_ = float("nan"), []
        model._export()
        return model
