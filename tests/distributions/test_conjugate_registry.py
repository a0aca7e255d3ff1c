"""The covariance type → conjugate prior registry (``register_conjugate`` / ``conjugate_prior``)
and each family's bound on the degrees of freedom.

Letters: K components, D features.
"""

from __future__ import annotations

import pytest

from mixtures.distributions import (
    ConjugatePrior,
    DiagCovariance,
    DiagNormalGamma,
    FullCovariance,
    NormalWishart,
    ScalarCovariance,
    ScalarNormalGamma,
    SharedFullCovariance,
    SharedScalarCovariance,
    UnitCovariance,
    UnitNormalPrior,
    conjugate_prior,
    register_conjugate,
)
from mixtures.distributions import conjugate as conjugate_module

REGISTERED = [
    pytest.param(UnitCovariance(scale=2.0), UnitNormalPrior, 0.0, id="unit"),
    pytest.param(ScalarCovariance(), ScalarNormalGamma, 0.0, id="scalar"),
    pytest.param(DiagCovariance(), DiagNormalGamma, 0.0, id="diag"),
    pytest.param(FullCovariance(), NormalWishart, 4.0, id="full"),  # D − 1 for D = 5
]


@pytest.fixture
def registry():
    """The registry, restored after the test (tests register their own types)."""
    saved = dict(conjugate_module._CONJUGATES)
    yield conjugate_module._CONJUGATES
    conjugate_module._CONJUGATES.clear()
    conjugate_module._CONJUGATES.update(saved)


@pytest.mark.parametrize(("cov", "family", "min_nu"), REGISTERED)
def test_lookup_by_type(cov, family, min_nu):
    prior = conjugate_prior(cov)
    assert type(prior) is family and prior.cov is cov
    assert prior.min_degrees_of_freedom(5) == min_nu
    assert conjugate_module._CONJUGATES[type(cov)] is family  # keyed by the covariance class


def test_wishart_bound_grows_with_the_dimension():
    family = conjugate_prior(FullCovariance())
    assert [family.min_degrees_of_freedom(d) for d in (1, 2, 7)] == [0.0, 1.0, 6.0]
    gamma = conjugate_prior(DiagCovariance())
    assert [gamma.min_degrees_of_freedom(d) for d in (1, 2, 7)] == [0.0, 0.0, 0.0]


@pytest.mark.parametrize("cov", [SharedScalarCovariance(), SharedFullCovariance()],
                         ids=["shared_scalar", "shared_full"])
def test_shared_types_fail_although_their_bases_are_registered(cov):
    assert type(cov).__mro__[1] in conjugate_module._CONJUGATES  # the MRO would find one
    with pytest.raises(ValueError, match="no conjugate prior") as info:
        conjugate_prior(cov)
    assert type(cov).__name__ in str(info.value)
    assert "covariance=unit, scalar, diag or full" in str(info.value)


def test_subclass_inherits_its_base_family(registry):
    class WideDiag(DiagCovariance):
        pass

    class Deeper(WideDiag):
        pass

    assert type(conjugate_prior(Deeper())) is DiagNormalGamma
    assert WideDiag not in registry  # found by walking the MRO, not by registering


def test_nearest_registration_wins(registry):
    class MyDiag(DiagCovariance):
        pass

    class Deeper(MyDiag):
        pass

    @register_conjugate(MyDiag)
    class MyPrior(DiagNormalGamma):
        pass

    assert type(conjugate_prior(Deeper())) is MyPrior
    assert type(conjugate_prior(DiagCovariance())) is DiagNormalGamma  # the base is untouched


def test_unregistered_type_fails(registry):
    class Other(DiagCovariance):
        pass

    registry.pop(DiagCovariance)
    with pytest.raises(ValueError, match="Other has no conjugate prior"):
        conjugate_prior(Other())


def test_register_rejects_non_covariance_types():
    with pytest.raises(TypeError, match="CovarianceType subclass"):
        register_conjugate(DiagCovariance())  # an instance, not the class
    with pytest.raises(TypeError, match="CovarianceType subclass"):
        register_conjugate(ConjugatePrior)
