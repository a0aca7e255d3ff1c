"""EM under Lightning: exact under mini-batches and DDP, same trace as the engine, resumable."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
import torch

from mixtures.models.em import GaussianMixtureEM, initial_responsibilities
from mixtures.train import train
from tests.conftest import run_train

COMMON = ["model=gmm_em", "logger=csv", "callbacks=none", "data.num_samples=3001",
          "data.num_components=4", "data.separation=2.0", "model.tol=0"]


def _state(objects) -> dict[str, torch.Tensor]:
    return {k: v.detach().clone() for k, v in objects["model"].model.state_dict().items()}


@pytest.mark.parametrize("covariance", ["full", "shared_full", "diag", "scalar"])
def test_mini_batches_equal_full_batch(cfg_factory, covariance):
    """Uneven batches (2400 training points in batches of 777) give the full-batch EM."""
    over = [*COMMON, f"covariance={covariance}", "trainer.max_epochs=6", "trainer.precision=64"]
    _, full = train(cfg_factory(over, sub="full"))
    _, mini = train(cfg_factory([*over, "data.batch_size=777"], sub="mini"))
    for name, value in _state(full).items():
        torch.testing.assert_close(_state(mini)[name], value, rtol=1e-10, atol=1e-10)
    assert int(full["model"].model.n_iter[0]) == 6


def test_lightning_trace_equals_the_engine(cfg_factory):
    """One epoch = one iteration of GaussianMixtureEM.fit from the same initialisation."""
    cfg = cfg_factory([*COMMON, "trainer.max_epochs=5", "trainer.precision=64"])
    metrics, objects = train(cfg)
    x = objects["datamodule"].split("train")[0].double()
    engine = GaussianMixtureEM(4, 2, objects["model"].model.cov).double()
    engine.initialize_from_responsibilities(
        x, initial_responsibilities(x, 4, 1, "kmeans", seed=cfg.seed, kmeans_iters=100))
    out = engine.fit(x, max_iter=5, tol=-1)
    # the logged value is stored as float32 by Lightning
    assert metrics["train/nll"] == pytest.approx(-out["lower_bound"].item(), rel=1e-7)
    torch.testing.assert_close(objects["model"].model.means, engine.means, rtol=1e-10,
                               atol=1e-10)


def test_stops_at_convergence_and_keeps_the_best_restart(cfg_factory):
    cfg = cfg_factory(["model=gmm_em", "logger=csv", "callbacks=none", "model.net.num_restarts=3",
                       "model.net.init=random_from_data", "trainer.max_epochs=300",
                       "data.num_samples=3000"])
    metrics, objects = train(cfg)
    module = objects["model"]
    assert bool(module.model.converged.all())
    assert objects["trainer"].current_epoch < 300
    assert int(module.model.best_restart) == int(module.model.lower_bound.argmax())
    assert metrics["test/ari"] > 0.95


def test_killed_em_run_resumes_to_the_same_parameters(cfg_factory):
    over = [*COMMON, "data.batch_size=1000", "test=false"]
    _, full = train(cfg_factory([*over, "trainer.max_epochs=8"], sub="full"))
    first = cfg_factory([*over, "trainer.max_epochs=3",
                         "+callbacks.ckpt._target_=lightning.pytorch.callbacks.ModelCheckpoint",
                         "+callbacks.ckpt.save_last=true"], sub="first")
    train(first)
    ckpt = next(Path(first.paths.output_dir).rglob("last.ckpt"))
    _, resumed = train(cfg_factory([*over, "trainer.max_epochs=8", f"ckpt_path={ckpt}"],
                                   sub="resumed"))
    for name, value in _state(full).items():
        torch.testing.assert_close(_state(resumed)[name], value, rtol=1e-6, atol=1e-6)


def test_ddp_cpu_two_processes_equal_one(tmp_path):
    """2 spawned processes (uneven shards: 2401 training points) reach the one-process fit."""
    args = ["model=gmm_em", "logger=csv", "callbacks=none", "data.num_samples=3001",
            "data.separation=2.0", "model.tol=0", "trainer.max_epochs=5",
            "trainer.precision=64", "data.batch_size=500"]
    one = run_train([*args, "hydra.run.dir=one"], cwd=tmp_path, timeout=300)
    assert one.returncode == 0, one.stderr[-3000:]
    two = run_train([*args, "trainer=ddp_cpu", "hydra.run.dir=two"], cwd=tmp_path,
                    timeout=400)
    assert two.returncode == 0, two.stderr[-3000:]
    a = torch.load(tmp_path / "one" / "mixture.pt")
    b = torch.load(tmp_path / "two" / "mixture.pt")
    for name in ("weights", "means", "covariances"):
        torch.testing.assert_close(b[name], a[name], rtol=1e-9, atol=1e-9)


def test_given_initial_means(cfg_factory):
    """model.means_init seeds the means (as scikit-learn's means_init); bad shapes fail early."""
    means = "[[0.0,0.0],[5.0,5.0],[-5.0,5.0],[5.0,-5.0]]"
    cfg = cfg_factory(["model=gmm_em", "logger=csv", "callbacks=none", "data.num_samples=2000",
                       "data.num_components=4", "trainer.max_epochs=1", "test=false",
                       f"model.net.means_init={means}", "model.tol=0"])
    _, objects = train(cfg)
    module = objects["model"]
    x = objects["datamodule"].split("train")[0].double()
    # after one M-step from the given means, the means are the data's responsibility-weighted
    # means under the initial model: check the first E-step used the given means
    engine = GaussianMixtureEM(4, 2, module.model.cov).double()
    engine.initialize_from_responsibilities(
        x, initial_responsibilities(x, 4, 1, "kmeans", seed=cfg.seed, kmeans_iters=100))
    engine.means.copy_(torch.tensor(json.loads(means), dtype=torch.float64)[None])
    engine.fit(x, max_iter=1, tol=-1)
    torch.testing.assert_close(module.model.means.double(), engine.means, rtol=1e-4, atol=1e-4)
    bad = cfg_factory(["model=gmm_em", "model.net.means_init=[[0.0,0.0]]"], sub="bad")
    with pytest.raises(Exception, match="means_init has shape"):
        train(bad)


@pytest.mark.parametrize("tol", [None, "1e-3", -1.0, float("nan")])
def test_tol_is_validated_in_the_users_terms(tol):
    """model.tol=None gave a raw TypeError ('>=' not supported …); issue 15."""
    from mixtures.lit import GMMEM
    from mixtures.models import GaussianMixtureEM

    with pytest.raises(ValueError, match="model.tol must be a number"):
        GMMEM(GaussianMixtureEM(2, 2), tol=tol)
