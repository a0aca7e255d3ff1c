"""The gradient-descent regime through train(cfg): accuracy, bad input, divergence, collapse."""

from __future__ import annotations

import lightning as L
import numpy as np
import pytest
import torch
from hydra.errors import InstantiationException
from sklearn.mixture import GaussianMixture

from mixtures.callbacks import DivergenceGuard
from mixtures.data import BlobsDataModule
from mixtures.distributions import FullCovariance
from mixtures.lit import GMMSGD
from mixtures.models import GaussianMixtureModel
from mixtures.train import train

SKLEARN_TYPE = {"full": "full", "diag": "diag", "scalar": "spherical"}


@pytest.mark.parametrize("covariance", ["full", "diag", "scalar"])
def test_blobs_match_sklearn_within_one_percent(cfg_factory, covariance):
    """N=10k, D=2, K=5 well-separated blobs: held-out log-likelihood within 1% of
    scikit-learn's GaussianMixture on the same split, ARI ≥ 0.95."""
    cfg = cfg_factory([f"covariance={covariance}", "trainer.max_epochs=150", "logger=csv",
                       "callbacks=none", "data.covariance_type=full"])
    metrics, objects = train(cfg)
    dm = objects["datamodule"]
    xtr = dm.split("train")[0].double().numpy()
    xte = dm.split("test")[0].double().numpy()
    sk = GaussianMixture(5, covariance_type=SKLEARN_TYPE[covariance], random_state=0).fit(xtr)
    ref = sk.score(xte)
    ours = -metrics["test/nll"]
    assert abs(ours - ref) <= 0.01 * abs(ref), (ours, ref)
    assert metrics["test/ari"] >= 0.95
    assert metrics["val/bic"] > 0 and np.isfinite(metrics["val/nmi"])


@pytest.mark.parametrize(
    ("override", "message"),
    [
        ("optimizer.lr=0", "optimizer.lr must be positive"),
        ("model.component_lr=-0.1", "model.component_lr must be positive"),
        ("model.mixture_lr=0", "model.mixture_lr must be positive"),
        ("model.net.num_components=0", "num_components must be an integer ≥ 1"),
        ("model.net.init=spectral", "model.net.init='spectral' is unknown"),
        ("covariance.min_scale=0", "min_scale must be positive"),
    ],
)
def test_bad_model_config_raises_before_training(cfg_factory, override, message):
    cfg = cfg_factory([override, "logger=csv"])
    with pytest.raises(InstantiationException, match=message):
        train(cfg)


def test_too_many_components_for_the_data(cfg_factory):
    cfg = cfg_factory(["data.num_samples=50", "model.net.num_components=45", "logger=csv"])
    with pytest.raises(ValueError, match="num_components=45 exceeds the number of training"):
        train(cfg)


def test_wrong_feature_count(cfg_factory):
    cfg = cfg_factory(["model.net.num_features=3", "logger=csv"])
    with pytest.raises(ValueError, match="model.net.num_features=3 but the data has 2 features"):
        train(cfg)


@pytest.mark.parametrize("bad", [float("nan"), float("inf")])
def test_non_finite_data_file(cfg_factory, tmp_path, bad):
    x = np.random.default_rng(0).normal(size=(100, 2))
    x[17, 1] = bad
    path = tmp_path / "points.npy"
    np.save(path, x)
    cfg = cfg_factory(["data=file", f"data.path={path}", "logger=csv"])
    with pytest.raises(ValueError, match=r"NaN or inf \(first at row 17"):
        train(cfg)


def test_unknown_test_checkpoint_choice(cfg_factory):
    with pytest.raises(ValueError, match="test_ckpt='worst'"):
        train(cfg_factory(["+test_ckpt=worst"]))


class _Poison(L.Callback):
    """Make the means NaN before the third step: the guard must name them."""

    def on_train_batch_start(self, trainer, pl_module, batch, batch_idx):
        if trainer.global_step == 2:
            with torch.no_grad():
                pl_module.model.means[1, 0] = float("nan")


def _module(k: int = 4) -> GMMSGD:
    return GMMSGD(GaussianMixtureModel(k, 2, FullCovariance()))


def _trainer(callbacks, epochs: int = 5) -> L.Trainer:
    return L.Trainer(accelerator="cpu", max_epochs=epochs, logger=False,
                     enable_checkpointing=False, enable_progress_bar=False,
                     callbacks=callbacks)


def test_divergence_guard_names_the_parameter():
    dm = BlobsDataModule(num_samples=1000, num_components=4)
    match = r"parameter\(s\) 'model.means' became non-finite at step 2"
    with pytest.raises(FloatingPointError, match=match):
        _trainer([_Poison(), DivergenceGuard()]).fit(_module(), datamodule=dm)


class _Collapse(L.Callback):
    """Collapse one component onto a far point and starve another at the start."""

    def on_train_start(self, trainer, pl_module):
        with torch.no_grad():
            pl_module.model.means[0] = 1e4
            pl_module.model.raw_covariance[0] = -60.0
            pl_module.model.weight_logits[1] = -50.0


def test_collapsed_components_are_reseeded_during_training():
    dm = BlobsDataModule(num_samples=3000, num_components=4, seed=2)
    module = _module()
    module.hparams.reseed_every_n_steps = 1
    trainer = _trainer([_Collapse(), DivergenceGuard()], epochs=150)
    trainer.fit(module, datamodule=dm)
    assert int(module.num_reseeded) >= 2
    assert not module.model.collapsed(module.min_weight).any()
    xtr = dm.split("train")[0].double()
    sk = GaussianMixture(4, random_state=0).fit(xtr.numpy())
    ours = module.model.double()(xtr).mean().item()
    assert ours >= sk.score(xtr.numpy()) - 0.01 * abs(sk.score(xtr.numpy()))


class _PoisonGradient(L.Callback):
    """An infinite gradient with finite values: stopped before the update."""

    def on_before_optimizer_step(self, trainer, pl_module, optimizer):
        if trainer.global_step == 1:
            pl_module.model.raw_covariance.grad[0, 0] = float("inf")


def test_divergence_guard_stops_on_a_bad_gradient_before_the_update():
    dm = BlobsDataModule(num_samples=1000, num_components=4)
    module = _module()
    with pytest.raises(FloatingPointError, match="gradient of parameter\\(s\\) "
                                                 "'model.raw_covariance'"):
        _trainer([_PoisonGradient(), DivergenceGuard()]).fit(module, datamodule=dm)
    assert torch.isfinite(module.model.raw_covariance).all()


def test_train_nll_is_logged_per_epoch_not_per_step(tmp_path):
    """Mini-batches: train/nll is the epoch mean, accumulated on the device (a per-step value
    would be copied to the host every step)."""
    from lightning.pytorch.loggers import CSVLogger

    dm = BlobsDataModule(num_samples=1000, num_components=4, batch_size=200)
    module = _module()
    L.Trainer(accelerator="cpu", max_epochs=3, logger=CSVLogger(tmp_path, name="", version=""),
              enable_checkpointing=False, enable_progress_bar=False,
              log_every_n_steps=1).fit(module, datamodule=dm)
    header = (tmp_path / "metrics.csv").read_text().splitlines()[0].split(",")
    assert "train/nll" in header and "train/nll_step" not in header


def test_lagged_flag_on_the_cpu_answers_at_once():
    from mixtures.lit.gmm_sgd import _LaggedFlag

    flag = _LaggedFlag()
    assert flag(torch.tensor(True)) and not flag(torch.tensor(False))


@pytest.mark.skipif(not torch.cuda.is_available(), reason="needs a GPU")
def test_lagged_flag_on_a_gpu_answers_one_call_later():
    from mixtures.lit.gmm_sgd import _LaggedFlag

    flag = _LaggedFlag()
    answers = [flag(torch.tensor(v, device="cuda")) for v in (True, False, False, True, True)]
    assert answers == [False, True, False, False, True]
