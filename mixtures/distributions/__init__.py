"""The one home of Gaussian and mixture math (see DESIGN.md)."""

from mixtures.distributions.covariance import (
    CovarianceType,
    DiagCovariance,
    FullCovariance,
    ScalarCovariance,
    SharedFullCovariance,
    SharedScalarCovariance,
    UnitCovariance,
)
from mixtures.distributions.gaussian import (
    component_log_prob,
    expfam_log_prob,
    mixture_log_prob,
    responsibilities,
    sample_mixture,
    weighted_log_prob,
)

__all__ = [
    "CovarianceType",
    "DiagCovariance",
    "FullCovariance",
    "ScalarCovariance",
    "SharedFullCovariance",
    "SharedScalarCovariance",
    "UnitCovariance",
    "component_log_prob",
    "expfam_log_prob",
    "mixture_log_prob",
    "responsibilities",
    "sample_mixture",
    "weighted_log_prob",
]
