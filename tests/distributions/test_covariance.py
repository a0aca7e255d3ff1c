"""Covariance parametrisations: factors, log-dets, Mahalanobis, floors, projections, counts.

Letters: N points, B batch, K components, D features, P raw numbers per component.
"""

from __future__ import annotations

import math

import pytest
import torch
import torch.nn.functional as F
from hypothesis import given, settings
from hypothesis import strategies as st
from torch import Tensor

from mixtures.distributions import (
    CovarianceType,
    DiagCovariance,
    FullCovariance,
    ScalarCovariance,
    SharedFullCovariance,
    SharedScalarCovariance,
    UnitCovariance,
    component_log_prob,
)

F64 = torch.float64
K = 3

COVARIANCES = [
    pytest.param(UnitCovariance(), id="unit"),
    pytest.param(UnitCovariance(scale=2.0), id="unit_scale2"),
    pytest.param(ScalarCovariance(), id="scalar"),
    pytest.param(SharedScalarCovariance(), id="shared_scalar"),
    pytest.param(DiagCovariance(), id="diag"),
    pytest.param(FullCovariance(), id="full"),
]
CLASSES = [UnitCovariance, ScalarCovariance, SharedScalarCovariance, DiagCovariance,
           FullCovariance]
LAYOUTS = {"gmm": (), "mdn": (5,)}  # batch shape R of the raw tensor


def make_raw(cov: CovarianceType, batch: tuple[int, ...], d: int, seed: int = 0) -> Tensor:
    """Random raw tensor ``[*R, K, P]`` (``[*R, 1, P]`` for shared types), float64."""
    gen = torch.Generator().manual_seed(seed)
    return 0.7 * torch.randn(*batch, *cov.raw_shape(K, d), generator=gen, dtype=F64)


def sp(v: float, floor: float = 1e-3) -> float:
    """Constrained scale ``softplus(v) + floor`` as a Python float."""
    return math.log1p(math.exp(v)) + floor


# -- the factor L, written out by hand ---------------------------------------------------------
def test_scale_tril_unit_is_fixed():
    """Unit covariance: L = scale · I whatever the (empty) raw tensor."""
    raw = torch.zeros(2, K, 0, dtype=F64)
    eye = torch.eye(3, dtype=F64).expand(2, K, 3, 3)
    torch.testing.assert_close(UnitCovariance().scale_tril(raw, 3), eye)
    torch.testing.assert_close(UnitCovariance(scale=2.0).scale_tril(raw, 3), 2.0 * eye)


@pytest.mark.parametrize("cls", [ScalarCovariance, SharedScalarCovariance])
def test_scale_tril_scalar(cls):
    """Scalar types: L = (softplus(raw) + floor) · I."""
    raw = torch.tensor([[0.3], [-1.2]], dtype=F64)
    tril = cls(min_scale=0.01).scale_tril(raw, 2)
    expected = torch.tensor([[[sp(0.3, 0.01), 0], [0, sp(0.3, 0.01)]],
                             [[sp(-1.2, 0.01), 0], [0, sp(-1.2, 0.01)]]], dtype=F64)
    torch.testing.assert_close(tril, expected)


def test_scale_tril_diag():
    """Diagonal type: L = diag(softplus(raw) + floor), one scale per feature."""
    raw = torch.tensor([[0.3, -1.2, 2.0]], dtype=F64)
    expected = torch.diag(torch.tensor([sp(0.3), sp(-1.2), sp(2.0)], dtype=F64))[None]
    torch.testing.assert_close(DiagCovariance().scale_tril(raw, 3), expected)


def test_scale_tril_full_packing():
    """Full type: row-wise packing of the lower triangle, softplus + floor on the diagonal."""
    raw = torch.tensor([[0.1, -0.5, 0.2, 0.7, 1.5, -0.3]], dtype=F64)
    expected = torch.tensor([[[sp(0.1), 0.0, 0.0],
                              [-0.5, sp(0.2), 0.0],
                              [0.7, 1.5, sp(-0.3)]]], dtype=F64)
    torch.testing.assert_close(FullCovariance().scale_tril(raw, 3), expected)
    torch.testing.assert_close(FullCovariance().scale_tril(raw), expected)  # D from P


# -- log-det, Mahalanobis, whiten / colour -----------------------------------------------------
@pytest.mark.parametrize("cov", COVARIANCES)
@pytest.mark.parametrize("layout", LAYOUTS)
@pytest.mark.parametrize("d", [1, 3])
def test_log_det_matches_dense(cov, layout, d):
    """``log_det`` equals ``torch.logdet`` of the dense covariance."""
    raw = make_raw(cov, LAYOUTS[layout], d)
    expected = torch.logdet(cov.covariance(raw, d))  # [*R, K or 1]
    torch.testing.assert_close(cov.log_det(raw, d), expected, rtol=1e-10, atol=1e-10)


@pytest.mark.parametrize("cov", COVARIANCES)
@pytest.mark.parametrize("layout", LAYOUTS)
@pytest.mark.parametrize("d", [1, 3])
def test_mahalanobis_matches_dense_solve(cov, layout, d):
    """``mahalanobis`` equals ``diffᵀ Σ⁻¹ diff`` by a dense solve (GMM: extra point dim)."""
    batch = LAYOUTS[layout]
    raw = make_raw(cov, batch, d)
    gen = torch.Generator().manual_seed(1)
    lead = (7,) if layout == "gmm" else ()  # extra point dimension E for a GMM
    diff = 2.0 * torch.randn(*lead, *batch, K, d, generator=gen, dtype=F64)
    sigma = cov.covariance(raw, d)  # [*R, K or 1, D, D]
    solved = torch.linalg.solve(sigma, diff.unsqueeze(-1))[..., 0]
    expected = (diff * solved).sum(-1)  # [*E, *R, K]
    torch.testing.assert_close(cov.mahalanobis(raw, diff), expected, rtol=1e-10, atol=1e-10)


@pytest.mark.parametrize("cov", COVARIANCES)
@pytest.mark.parametrize("layout", LAYOUTS)
def test_colour_inverts_whiten(cov, layout):
    """``colour(whiten(diff)) == diff`` and ``colour(eps) == L eps``."""
    batch = LAYOUTS[layout]
    raw = make_raw(cov, batch, 3)
    gen = torch.Generator().manual_seed(2)
    diff = torch.randn(4, *batch, K, 3, generator=gen, dtype=F64)
    torch.testing.assert_close(cov.colour(raw, cov.whiten(raw, diff)), diff)
    tril = cov.scale_tril(raw, 3)
    torch.testing.assert_close(cov.colour(raw, diff), (tril @ diff.unsqueeze(-1))[..., 0])


# -- precision in the type's form ----------------------------------------------------------------
def _old_expected_precision(cov: CovarianceType, raw: Tensor, d: int) -> tuple[Tensor, Tensor]:
    """The computation ``VariationalGMM._expected_precision`` did before ``precision_terms``."""
    log_det = -cov.log_det(raw, d)
    if isinstance(cov, FullCovariance):
        return cov.precision(raw, d), log_det
    return cov.scale(raw).square().reciprocal(), log_det


@pytest.mark.parametrize("cov", [*COVARIANCES, pytest.param(SharedFullCovariance(),
                                                            id="shared_full")])
@pytest.mark.parametrize("layout", LAYOUTS)
@pytest.mark.parametrize("d", [1, 3])
def test_precision_terms(cov, layout, d):
    """``precision_terms`` equals the old per-type computation exactly, and its dense form is
    ``Σ⁻¹`` (a dense inverse) with ``log |Λ| = −log |Σ|``."""
    raw = make_raw(cov, LAYOUTS[layout], d, seed=4)
    precision, log_det = cov.precision_terms(raw, d)
    old_precision, old_log_det = _old_expected_precision(cov, raw, d)
    torch.testing.assert_close(precision, old_precision, rtol=0, atol=0)
    torch.testing.assert_close(log_det, old_log_det, rtol=0, atol=0)
    sigma = cov.covariance(raw, d)  # [*R, K or 1, D, D]
    if precision.dim() == sigma.dim():  # full: dense
        dense = precision
    else:  # λ [..., 1] or diag(λ) [..., D]
        dense = torch.diag_embed(precision.expand(*precision.shape[:-1], d))
    torch.testing.assert_close(dense, torch.linalg.inv(sigma), rtol=1e-10, atol=1e-10)
    torch.testing.assert_close(log_det, -torch.linalg.slogdet(sigma)[1], rtol=1e-10, atol=1e-10)
    # the coefficients are those of the precision form
    means = torch.randn(*LAYOUTS[layout], K, d, generator=torch.Generator().manual_seed(5),
                        dtype=F64)
    for got, want in zip(cov.coefficients(raw, means),
                         cov.precision_coefficients(precision, log_det, means), strict=True):
        torch.testing.assert_close(got, want, rtol=0, atol=0)


# -- floor ---------------------------------------------------------------------------------------
@pytest.mark.parametrize("cov", COVARIANCES)
@pytest.mark.parametrize("dtype", [torch.float32, F64])
def test_floor_keeps_scales_and_densities_finite(cov, dtype):
    """Very negative raw values: every diagonal entry of L ≥ min_scale, finite log-densities."""
    d = 3
    raw = torch.full(cov.raw_shape(K, d), -1e4, dtype=dtype)
    diag = cov.scale_tril(raw, d).diagonal(dim1=-2, dim2=-1)
    assert bool((diag >= cov.min_scale).all())
    assert bool((cov.min_scale_of(raw, d) >= cov.min_scale).all())
    assert bool(torch.isfinite(cov.log_det(raw, d)).all())
    gen = torch.Generator().manual_seed(3)
    means = torch.randn(K, d, generator=gen, dtype=dtype)
    x = means[:1] + 1e-3 * torch.randn(5, d, generator=gen, dtype=dtype)
    assert bool(torch.isfinite(component_log_prob(x, means, raw, cov)).all())


# -- from_covariance -----------------------------------------------------------------------------
@pytest.mark.parametrize("cov", COVARIANCES)
@pytest.mark.parametrize("layout", LAYOUTS)
@pytest.mark.parametrize("d", [1, 3])
def test_from_covariance_round_trip(cov, layout, d):
    """``covariance(from_covariance(covariance(raw))) == covariance(raw)``."""
    raw = make_raw(cov, LAYOUTS[layout], d)
    sigma = cov.covariance(raw, d)
    back = cov.from_covariance(sigma)
    assert back.shape == raw.shape
    torch.testing.assert_close(cov.covariance(back, d), sigma, rtol=1e-9, atol=1e-9)


COV_A = [[4.0, 1.0], [1.0, 9.0]]  # mean variance 6.5
COV_B = [[1.0, -0.5], [-0.5, 3.0]]  # mean variance 2.0


def test_projection_diag_keeps_diagonal():
    """Diagonal projection keeps the variances and drops the correlations."""
    cov = torch.tensor([COV_A, COV_B], dtype=F64)
    dense = DiagCovariance().covariance(DiagCovariance().from_covariance(cov), 2)
    expected = torch.tensor([[[4.0, 0.0], [0.0, 9.0]], [[1.0, 0.0], [0.0, 3.0]]], dtype=F64)
    torch.testing.assert_close(dense, expected)


def test_projection_scalar_is_mean_variance():
    """Scalar projection: σ_k² = mean of the variances of component k."""
    cov = torch.tensor([COV_A, COV_B], dtype=F64)
    dense = ScalarCovariance().covariance(ScalarCovariance().from_covariance(cov), 2)
    eye = torch.eye(2, dtype=F64)
    torch.testing.assert_close(dense, torch.stack([6.5 * eye, 2.0 * eye]))


@pytest.mark.parametrize(("weights", "pooled"), [
    pytest.param(None, 4.25, id="unweighted"),
    pytest.param([0.25, 0.75], 0.25 * 6.5 + 0.75 * 2.0, id="weighted"),
    pytest.param([1.0, 3.0], 0.25 * 6.5 + 0.75 * 2.0, id="unnormalised"),
])
def test_projection_shared_scalar_is_weighted_mean(weights, pooled):
    """Shared scalar projection: one σ² = weighted mean over components of the mean variance."""
    cov_type = SharedScalarCovariance()
    cov = torch.tensor([COV_A, COV_B], dtype=F64)
    w = None if weights is None else torch.tensor(weights, dtype=F64)
    raw = cov_type.from_covariance(cov, w)
    assert raw.shape == (1, 1)
    torch.testing.assert_close(cov_type.covariance(raw, 2), pooled * torch.eye(2, dtype=F64)[None])


def test_projection_shared_scalar_batched():
    """MDN layout: cov ``[B, K, D, D]`` and weights ``[B, K]`` pool per row to ``[B, 1, 1]``."""
    cov_type = SharedScalarCovariance()
    cov = torch.tensor([[COV_A, COV_B], [COV_B, COV_B]], dtype=F64)
    w = torch.tensor([[0.25, 0.75], [0.5, 0.5]], dtype=F64)
    raw = cov_type.from_covariance(cov, w)
    assert raw.shape == (2, 1, 1)
    expected = torch.tensor([3.125, 2.0], dtype=F64)[:, None, None, None] * torch.eye(2, dtype=F64)
    torch.testing.assert_close(cov_type.covariance(raw, 2), expected)


@pytest.mark.parametrize("cov", COVARIANCES)
def test_projection_clamps_to_floor(cov):
    """A zero covariance projects onto scales at the floor (never below, never NaN)."""
    raw = cov.from_covariance(torch.zeros(K, 2, 2, dtype=F64))
    diag = cov.scale_tril(raw, 2).diagonal(dim1=-2, dim2=-1)
    assert bool(torch.isfinite(raw).all())
    assert bool((diag >= cov.min_scale).all())


def test_full_projection_of_bad_matrices():
    """Full type: valid, singular and indefinite inputs all give finite, valid factors; the
    valid one is kept exactly, the singular one up to the jitter, the indefinite one falls back
    to its (floored) diagonal."""
    cov_type = FullCovariance()
    cov = torch.tensor([[[2.0, 0.5], [0.5, 1.0]],  # valid
                        [[1.0, 1.0], [1.0, 1.0]],  # singular
                        [[1.0, 2.0], [2.0, 1.0]],  # indefinite
                        [[-1.0, 0.0], [0.0, -2.0]]], dtype=F64)  # negative variances
    raw = cov_type.from_covariance(cov)
    assert bool(torch.isfinite(raw).all())
    tril = cov_type.scale_tril(raw, 2)
    assert bool((tril.diagonal(dim1=-2, dim2=-1) >= cov_type.min_scale).all())
    dense = cov_type.covariance(raw, 2)
    torch.testing.assert_close(dense[0], cov[0])
    torch.testing.assert_close(dense[1], cov[1], rtol=0, atol=1e-5)
    torch.testing.assert_close(dense[2], torch.eye(2, dtype=F64))
    floor = cov_type.min_scale**2
    torch.testing.assert_close(dense[3], floor * torch.eye(2, dtype=F64), rtol=1e-4, atol=0)
    assert bool((torch.linalg.eigvalsh(dense) > 0).all())


@st.composite
def spd_matrices(draw) -> Tensor:
    """Random ``A Aᵀ + 0.1 I`` with D in 1..4 and entries of A in [-3, 3]."""
    d = draw(st.integers(1, 4))
    entries = draw(st.lists(st.floats(-3.0, 3.0, allow_nan=False), min_size=d * d,
                            max_size=d * d))
    a = torch.tensor(entries, dtype=F64).reshape(d, d)
    return a @ a.T + 0.1 * torch.eye(d, dtype=F64)


@settings(derandomize=True, max_examples=25, deadline=None)
@given(spd_matrices())
def test_full_round_trip_property(sigma):
    """Any well-conditioned SPD matrix survives ``from_covariance`` → ``covariance``."""
    cov_type = FullCovariance()
    back = cov_type.covariance(cov_type.from_covariance(sigma[None]), sigma.shape[-1])[0]
    torch.testing.assert_close(back, sigma, rtol=1e-8, atol=1e-8)


# -- shapes and counts ---------------------------------------------------------------------------
@pytest.mark.parametrize(("cov", "num_params", "raw_shape"), [
    pytest.param(UnitCovariance(), 0, (4, 0), id="unit"),
    pytest.param(ScalarCovariance(), 4, (4, 1), id="scalar"),
    pytest.param(SharedScalarCovariance(), 1, (1, 1), id="shared_scalar"),
    pytest.param(DiagCovariance(), 12, (4, 3), id="diag"),
    pytest.param(FullCovariance(), 24, (4, 6), id="full"),
])
def test_num_parameters_and_raw_shape(cov, num_params, raw_shape):
    """Parameter counts (for BIC) and raw shapes for K=4, D=3."""
    assert cov.num_parameters(4, 3) == num_params
    assert cov.raw_shape(4, 3) == raw_shape


# -- validation ----------------------------------------------------------------------------------
@pytest.mark.parametrize("cls", CLASSES)
@pytest.mark.parametrize("min_scale", [0.0, -1.0, float("nan")])
def test_invalid_min_scale_raises(cls, min_scale):
    """A non-positive floor is refused with a message naming ``min_scale``."""
    with pytest.raises(ValueError, match="min_scale"):
        cls(min_scale=min_scale)


@pytest.mark.parametrize("scale", [0.0, -1.0])
def test_unit_invalid_scale_raises(scale):
    """A non-positive fixed scale is refused with a message naming ``scale``."""
    with pytest.raises(ValueError, match="scale"):
        UnitCovariance(scale=scale)


def test_softplus_constraint_is_exact():
    """The scale constraint is ``softplus(raw) + min_scale`` (σ, not σ², in data units)."""
    raw = torch.linspace(-5, 5, 11, dtype=F64)[:, None]
    cov = ScalarCovariance(min_scale=0.1)
    torch.testing.assert_close(cov.scale(raw), F.softplus(raw) + 0.1)
