"""The E-step pass (:mod:`mixtures.models.em_pass`): statistics from labels, resp or the model.

The statistics' agreement with a direct float64 computation, across chunks and splits, is in
``tests/models/test_em.py`` (through :class:`GaussianMixtureEM`, which holds the pass)."""

from __future__ import annotations

import pytest
import torch

from mixtures.data import make_blobs
from mixtures.distributions import DiagCovariance, FullCovariance, SharedFullCovariance
from mixtures.models.em import GaussianMixtureEM
from mixtures.models.em_pass import EMStatistics, EStepPass
from mixtures.models.init import kmeans_labels


def test_statistics_add_field_by_field():
    a = EMStatistics(*(torch.full((2,), float(i)) for i in range(5)))
    b = EMStatistics(*(torch.full((2,), 10.0 * i) for i in range(5)))
    for got, i in zip((a + b).as_tuple(), range(5), strict=True):
        assert torch.equal(got, torch.full((2,), 11.0 * i))


def test_the_model_reads_data_through_the_pass():
    assert issubclass(GaussianMixtureEM, EStepPass)


@pytest.mark.parametrize("cov", [FullCovariance, SharedFullCovariance, DiagCovariance])
def test_statistics_of_labels_equal_those_of_their_one_hot(cov):
    """``statistics(x, labels=…)`` builds the one-hot rows chunk by chunk: the same sums as
    ``statistics(x, resp)`` with the full ``[N, R, K]`` tensor, and no log-likelihood."""
    x, _, _ = make_blobs(3000, 4, 3, separation=2.0, seed=11, dtype=torch.float64)
    labels = kmeans_labels(x, 3, 2, seed=1)
    one_hot = torch.zeros(3000, 2, 3, dtype=x.dtype).scatter_(2, labels[..., None], 1.0)
    em = GaussianMixtureEM(3, 4, cov(), num_restarts=2, chunk_elements=2048).double()
    em.shift.copy_(x.mean(0))
    got, want = em.statistics(x, labels=labels), em.statistics(x, one_hot)
    for g, w in zip(got.as_tuple(), want.as_tuple(), strict=True):
        torch.testing.assert_close(g, w, rtol=1e-12, atol=1e-9)
    assert float(got.log_likelihood.abs().sum()) == 0.0
