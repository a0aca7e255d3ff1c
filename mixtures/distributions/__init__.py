"""The one home of Gaussian and mixture math (see DESIGN.md)."""

from mixtures.distributions.conjugate import (
    ConjugatePrior,
    DiagNormalGamma,
    NormalPrecision,
    NormalWishart,
    PrecisionDraw,
    PriorSettings,
    ScalarNormalGamma,
    UnitNormalPrior,
    kl_gamma,
)
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
    normalize_log_prob,
    responsibilities,
    sample_mixture,
    weighted_log_prob,
)
from mixtures.distributions.mixture import (
    component_variances,
    mixture_covariance,
    mixture_marginal_cdf,
    mixture_mean,
    mixture_mode,
)
from mixtures.distributions.stick_breaking import (
    expected_log_weights,
    expected_weights,
    kl_sticks,
    stick_posterior,
)

__all__ = [
    "ConjugatePrior",
    "CovarianceType",
    "DiagNormalGamma",
    "NormalPrecision",
    "NormalWishart",
    "PrecisionDraw",
    "PriorSettings",
    "ScalarNormalGamma",
    "UnitNormalPrior",
    "expected_log_weights",
    "expected_weights",
    "kl_gamma",
    "kl_sticks",
    "normalize_log_prob",
    "stick_posterior",
    "DiagCovariance",
    "FullCovariance",
    "ScalarCovariance",
    "SharedFullCovariance",
    "SharedScalarCovariance",
    "UnitCovariance",
    "component_log_prob",
    "component_variances",
    "mixture_covariance",
    "mixture_marginal_cdf",
    "mixture_mean",
    "mixture_mode",
    "expfam_log_prob",
    "mixture_log_prob",
    "responsibilities",
    "sample_mixture",
    "weighted_log_prob",
]
