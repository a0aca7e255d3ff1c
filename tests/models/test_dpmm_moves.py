"""Global moves of the DPMM: accepted only when the ELBO rises; they undo a split cluster."""

from __future__ import annotations

import torch

from mixtures.data import make_blobs
from mixtures.distributions import DiagCovariance, FullCovariance
from mixtures.models import DPMM
from mixtures.models.dpmm_moves import global_moves


def _split_start(cov, k: int = 8):
    """Three clusters; each true cluster's points are split at random over two components, and
    the last components are empty: a start coordinate ascent leaves only slowly."""
    x, y, _ = make_blobs(1500, 2, 3, seed=4, dtype=torch.float64)
    gen = torch.Generator().manual_seed(0)
    half = torch.randint(0, 2, (x.shape[0],), generator=gen)
    resp = torch.zeros(x.shape[0], k, dtype=torch.float64)
    resp[torch.arange(x.shape[0]), 2 * y + half] = 1.0
    model = DPMM(k, 2, cov).double()
    model.initialize(x, resp=resp)
    return model, x, y


def test_moves_merge_split_clusters_and_raise_the_elbo():
    for cov in (FullCovariance(), DiagCovariance()):
        model, x, _ = _split_start(cov)
        before = float(model.elbo(x))
        assert int((model.counts > 1).sum()) == 6
        accepted = global_moves(model, x, max_merges=10)
        after = float(model.elbo(x))
        assert accepted["merge"] >= 3, accepted
        assert after > before
        assert int((model.counts > 1).sum()) == 3


def test_rejected_moves_leave_the_model_unchanged():
    """At a converged, well-separated fit no move helps: every parameter is restored."""
    x, _, _ = make_blobs(1500, 2, 3, seed=4, dtype=torch.float64)
    model = DPMM(3, 2, FullCovariance()).double()
    model.initialize(x)
    opt = torch.optim.SGD(model.parameters(), lr=1.0)
    for _ in range(50):
        opt.zero_grad()
        model(x)[1].mean().backward()
        opt.step()
    state = {k: v.clone() for k, v in model.state_dict().items()}
    before = float(model.elbo(x))
    accepted = global_moves(model, x)
    assert sum(accepted.values()) == 0, accepted
    for name, value in model.state_dict().items():
        torch.testing.assert_close(value, state[name], rtol=0, atol=0)
    assert float(model.elbo(x)) == before


def test_reseed_covers_a_missed_cluster():
    """A cluster no component covers is claimed by an empty component, raising the ELBO."""
    x, y, _ = make_blobs(1500, 2, 3, seed=4, dtype=torch.float64)
    resp = torch.zeros(x.shape[0], 4, dtype=torch.float64)
    resp[:, 0] = (y == 2).double()  # component 0: cluster 2; component 1: clusters 0 and 1
    resp[:, 1] = (y != 2).double()
    model = DPMM(4, 2, FullCovariance()).double()
    model.initialize(x, resp=resp)
    before = float(model.elbo(x))
    accepted = global_moves(model, x, max_merges=0)
    assert accepted["reseed"] == 1
    assert float(model.elbo(x)) > before
