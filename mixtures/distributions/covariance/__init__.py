"""Covariance parametrisations: one class per covariance type, one shared interface.

Every type maps an unconstrained *raw* tensor to a covariance and implements the same few
operations, so that models never branch on the covariance name. All methods broadcast over
leading batch dimensions: the raw tensor of a Gaussian mixture has shape ``[K, P]`` and that of a
mixture density network ``[B, K, P]``, where ``P = raw_size(D)`` is the number of raw numbers per
component. *Shared* types (one covariance for all components) keep a component dimension of
size 1 (``[..., 1, P]``) that broadcasts against ``K``.

Letters: N points, B batch, K components, D features.

The canonical factor is the lower Cholesky factor ``L`` of the covariance (``Σ = L Lᵀ``).
Densities use ``L`` through triangular solves and the log-determinant ``2 Σ log diag L``; the
covariance is never inverted. To whiten many points at once, a full type solves ``L X = I`` once
per component (the Cholesky factor of the precision, as scikit-learn's ``precisions_cholesky_``)
and applies it as one matrix product: a triangular solve of D×D, not a general inverse.
Scales are kept above a floor ``min_scale`` (a standard deviation, in data units) so that a
component can never collapse to a singular covariance.

Modules: :mod:`.base` (the interface), :mod:`.elementwise` (unit, scalar, shared scalar, diag),
:mod:`.full` (full, shared full). The conjugate priors of the types live with the priors
(:func:`mixtures.distributions.conjugate.conjugate_prior`), keyed by type.
"""

from __future__ import annotations

from mixtures.distributions.covariance.base import CovarianceType
from mixtures.distributions.covariance.elementwise import (
    DiagCovariance,
    ScalarCovariance,
    SharedScalarCovariance,
    UnitCovariance,
)
from mixtures.distributions.covariance.full import FullCovariance, SharedFullCovariance

__all__ = [
    "SKLEARN_COVARIANCE_TYPES",
    "CovarianceType",
    "UnitCovariance",
    "ScalarCovariance",
    "SharedScalarCovariance",
    "DiagCovariance",
    "FullCovariance",
    "SharedFullCovariance",
    "covariance_from_sklearn_name",
]

#: ``covariance_type`` of the scikit-learn drop-in → covariance class: scikit-learn's four names
#: (each class's ``sklearn_name``) and two of this package's own, "shared_spherical" and "unit".
SKLEARN_COVARIANCE_TYPES: dict[str, type[CovarianceType]] = {
    **{cls.sklearn_name: cls for cls in (FullCovariance, SharedFullCovariance, DiagCovariance,
                                         ScalarCovariance)},
    "shared_spherical": SharedScalarCovariance,
    "unit": UnitCovariance,
}


def covariance_from_sklearn_name(name: str, **kwargs) -> CovarianceType:
    """The covariance type called ``name`` in :data:`SKLEARN_COVARIANCE_TYPES`, built with
    ``kwargs`` (e.g. ``min_scale``); ValueError naming the choices for an unknown name."""
    if name not in SKLEARN_COVARIANCE_TYPES:
        raise ValueError(f"covariance_type={name!r} is unknown; choose one of "
                         f"{tuple(SKLEARN_COVARIANCE_TYPES)}.")
    return SKLEARN_COVARIANCE_TYPES[name](**kwargs)
