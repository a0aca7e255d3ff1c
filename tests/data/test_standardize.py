"""Standardizer: fitted statistics, round trip, moments and densities back in original units."""

from __future__ import annotations

import math

import pytest
import torch
from sklearn.preprocessing import StandardScaler
from torch import Tensor

from mixtures.data import Standardizer

N, D = 50, 3


def _points(n: int = N, seed: int = 0) -> Tensor:
    """Points ``[n, D]`` (float64) on very different scales and offsets."""
    gen = torch.Generator().manual_seed(seed)
    scales = torch.tensor([1.0, 30.0, 0.01], dtype=torch.float64)
    return torch.randn(n, D, generator=gen, dtype=torch.float64) * scales + torch.tensor(
        [5.0, -200.0, 0.3], dtype=torch.float64)


def test_population_statistics_match_sklearn() -> None:
    """correction=0 gives scikit-learn's StandardScaler (ddof 0): mean, scale and transform."""
    x = _points()
    std = Standardizer(D).fit(x, correction=0)
    sk = StandardScaler().fit(x.numpy())
    torch.testing.assert_close(std.shift, torch.as_tensor(sk.mean_), rtol=1e-12, atol=1e-12)
    torch.testing.assert_close(std.scale, torch.as_tensor(sk.scale_), rtol=1e-12, atol=1e-12)
    held_out = _points(7, seed=1)
    torch.testing.assert_close(std.transform(held_out),
                               torch.as_tensor(sk.transform(held_out.numpy())))


def test_default_is_the_datamodules_bessel_corrected_std() -> None:
    """The default (the numbers every DataModule has always used): N − 1 in the variance, so
    the standardised training split has torch's unit ``std(0)``."""
    x = _points()
    std = Standardizer(D).fit(x)
    sk = StandardScaler().fit(x.numpy())
    torch.testing.assert_close(std.shift, x.mean(0))
    torch.testing.assert_close(std.scale, x.std(0))
    torch.testing.assert_close(std.scale, torch.as_tensor(sk.scale_) * math.sqrt(N / (N - 1)))
    z = std(x)
    torch.testing.assert_close(z.mean(0), torch.zeros(D, dtype=z.dtype), atol=1e-12, rtol=0)
    torch.testing.assert_close(z.std(0), torch.ones(D, dtype=z.dtype))


def test_constant_feature_and_single_point_get_scale_one() -> None:
    x = _points()
    x[:, 1] = 4.0
    std = Standardizer(D).fit(x)
    assert std.scale[1] == 1.0 and torch.equal(std.transform(x)[:, 1], torch.zeros(N).double())
    single = Standardizer(D).fit(x[:1])
    assert torch.equal(single.scale, torch.ones(D, dtype=x.dtype))
    assert torch.equal(single.transform(x[:1]), torch.zeros(1, D, dtype=x.dtype))


@pytest.mark.parametrize("dtype", [torch.float32, torch.float64])
def test_inverse_round_trip(dtype: torch.dtype) -> None:
    """inverse ∘ transform is the identity, on any leading shape; buffers take x's dtype."""
    x = _points().to(dtype)
    std = Standardizer(D).fit(x)
    assert std.shift.dtype == std.scale.dtype == dtype
    tol = {"rtol": 1e-5, "atol": 1e-4} if dtype == torch.float32 else {}
    torch.testing.assert_close(std.inverse(std.transform(x)), x, **tol)
    z = torch.randn(2, 4, D, dtype=dtype)  # [B, K, D]
    torch.testing.assert_close(std.transform(std.inverse(z)), z, **tol)
    torch.testing.assert_close(std.means_to_original(z), std.inverse(z))


def test_identity_until_fitted_and_state_dict_round_trip() -> None:
    """Built with a size it is the identity; a state_dict carries a fitted map to a new one."""
    x = _points()
    fresh = Standardizer(D, dtype=torch.float64)
    assert torch.equal(fresh.transform(x), x) and float(fresh.log_scale_sum) == 0.0
    fitted = Standardizer(D).fit(x)
    loaded = Standardizer(D, dtype=torch.float64)
    loaded.load_state_dict(fitted.state_dict())
    assert set(fitted.state_dict()) == {"shift", "scale"}
    assert torch.equal(loaded.transform(x), fitted.transform(x))
    assert loaded.num_features == D


def test_covariances_to_original_is_s_sigma_s() -> None:
    """``covariances_to_original(Σ) = S Σ S`` with S = diag(scale), over leading dimensions."""
    std = Standardizer(D).fit(_points())
    gen = torch.Generator().manual_seed(2)
    a = torch.randn(2, 4, D, D, generator=gen, dtype=torch.float64)  # [B, K, D, D]
    cov = a @ a.transpose(-1, -2) + 0.1 * torch.eye(D, dtype=torch.float64)
    s = torch.diag(std.scale)
    torch.testing.assert_close(std.covariances_to_original(cov), s @ cov @ s)
    # float32 estimates stay float32
    assert std.covariances_to_original(cov.float()).dtype == torch.float32


def test_log_scale_sum_is_the_density_change() -> None:
    """For z = (x − shift) / scale: ``log p_x(x) = log p_z(z) − Σ log scale``, the Gaussian
    N(m, Σ) in z being N(inverse(m), S Σ S) in x."""
    x = _points()
    std = Standardizer(D).fit(x)
    torch.testing.assert_close(std.log_scale_sum, std.scale.log().sum())
    mean_z = torch.tensor([0.3, -0.2, 0.1], dtype=torch.float64)
    cov_z = torch.tensor([[1.0, 0.3, 0.0], [0.3, 0.8, 0.1], [0.0, 0.1, 0.5]],
                         dtype=torch.float64)
    p_z = torch.distributions.MultivariateNormal(mean_z, cov_z)
    p_x = torch.distributions.MultivariateNormal(
        std.means_to_original(mean_z[None])[0],
        std.covariances_to_original(cov_z[None])[0],
    )
    torch.testing.assert_close(p_x.log_prob(x), p_z.log_prob(std.transform(x)) - std.log_scale_sum)


def test_bad_sizes_are_named() -> None:
    with pytest.raises(ValueError, match="num_features ≥ 1"):
        Standardizer(0)
    with pytest.raises(ValueError, match=r"expects points \[N, 3\], got \[50, 2\]"):
        Standardizer(D).fit(_points()[:, :2])
