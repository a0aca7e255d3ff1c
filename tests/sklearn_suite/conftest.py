"""Fixtures that scikit-learn's own conftest gives its mixture tests, deterministic here
(counts before and after the copy: this package's __init__)."""

from __future__ import annotations

import numpy as np
import pytest


@pytest.fixture
def global_random_seed() -> int:
    """scikit-learn's default seed (its SKLEARN_TESTS_GLOBAL_RANDOM_SEED unset): fixed, 42."""
    return 42


@pytest.fixture(params=[np.float32, np.float64], ids=["float32", "float64"])
def global_dtype(request):
    """Both float dtypes (scikit-learn runs float32 only with SKLEARN_RUN_FLOAT32_TESTS=1; the
    drop-in computes in float32 by default, so both run here)."""
    return request.param
