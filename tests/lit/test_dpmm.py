"""DPMM under Lightning: finds K, matches scikit-learn, SVI ≈ full batch, DDP = one process."""

from __future__ import annotations

import csv
import warnings
from pathlib import Path

import lightning as L
import numpy as np
import pytest
import torch
from hydra.errors import InstantiationException
from sklearn.mixture import BayesianGaussianMixture
from tensorboard.backend.event_processing.event_accumulator import EventAccumulator

from mixtures.distributions import FullCovariance, mixture_log_prob
from mixtures.train import train
from tests.conftest import run_train

COMMON = ["logger=csv", "callbacks=none", "data.num_components=5"]


def _blobs(d: int, covariance: str, n: int = 4000) -> list[str]:
    return [f"data.num_features={d}", f"data.covariance_type={covariance}",
            f"data.num_samples={n}"]


@pytest.mark.parametrize("regime", ["model=dpmm_svi model.moves_every_n_epochs=null",
                                    "model=dpmm_svi model.moves_every_n_epochs=10",
                                    "model=dpmm model.moves=true"])
@pytest.mark.parametrize("d", [2, 16])
@pytest.mark.parametrize("covariance", ["diag", "full"])
def test_finds_the_five_clusters(cfg_factory, d, covariance, regime):
    """Truncation K = 20 on blobs with 5 clusters: 5 active components, ARI ≥ 0.95 — by plain
    coordinate ascent, with the data-based moves of the SVI regime, and by memoized VI with
    its summary moves (the default)."""
    cfg = cfg_factory([*regime.split(), f"covariance={covariance}", *COMMON,
                       *_blobs(d, covariance), "trainer.max_epochs=500", "trainer.precision=64"])
    metrics, objects = train(cfg)
    assert metrics["val/active_k"] == 5
    assert metrics["test/active_k"] == 5
    assert metrics["val/ari"] >= 0.95 and metrics["test/ari"] >= 0.95
    assert objects["model"].model.num_components == 20
    assert objects["trainer"].current_epoch < 500, "tol should stop the run at convergence"


def _plug_in_log_likelihood(x: torch.Tensor, weights, means, covariances) -> float:
    """Mean log-density of the point-estimate mixture (the same code for both models)."""
    cov = FullCovariance(min_scale=1e-6)
    w = torch.as_tensor(np.asarray(weights), dtype=torch.float64)
    mu = torch.as_tensor(np.asarray(means), dtype=torch.float64)
    sigma = torch.as_tensor(np.asarray(covariances), dtype=torch.float64)
    raw = cov.from_covariance(sigma)
    return float(mixture_log_prob(x.double(), (w / w.sum()).log(), mu, raw, cov).mean())


@pytest.mark.parametrize("d", [2, 16])
@pytest.mark.parametrize("covariance", ["diag", "full"])
def test_held_out_log_likelihood_matches_sklearn(cfg_factory, d, covariance):
    """Same split, same priors and truncation as BayesianGaussianMixture: held-out mean
    log-likelihood within 1% (our Student-t predictive and our plug-in density)."""
    cfg = cfg_factory([f"model=dpmm_{covariance}", *COMMON, *_blobs(d, covariance),
                       "trainer.max_epochs=500", "trainer.precision=64", "model.tol=1e-8"])
    _, objects = train(cfg)
    dm, model = objects["datamodule"], objects["model"].model
    x_train, x_test = dm.split("train")[0].double(), dm.split("test")[0].double()
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")  # ConvergenceWarning is checked below instead
        sk = BayesianGaussianMixture(
            n_components=20, covariance_type=covariance,
            weight_concentration_prior_type="dirichlet_process", max_iter=1000, tol=1e-6,
            random_state=0).fit(x_train.numpy())
    assert sk.converged_
    sk_cov = sk.covariances_ if covariance == "full" else np.stack(
        [np.diag(c) for c in sk.covariances_])
    ours_predictive = model.score(x_test)
    ours_plug_in = _plug_in_log_likelihood(x_test, model.weights, model.means,
                                           model.covariances)
    theirs = _plug_in_log_likelihood(x_test, sk.weights_, sk.means_, sk_cov)
    for ours in (ours_predictive, ours_plug_in):
        assert abs(ours - theirs) <= 0.01 * abs(theirs), (ours, theirs)
    # the priors are scikit-learn's defaults
    assert model.alpha == pytest.approx(sk.weight_concentration_prior_)
    assert model.nu0 == pytest.approx(sk.degrees_of_freedom_prior_)
    torch.testing.assert_close(model.shift, torch.as_tensor(sk.mean_prior_))


def test_minibatch_svi_matches_full_batch(cfg_factory):
    """|B| = N/10 with a decaying step reaches the full-batch held-out log-likelihood (1%)."""
    base = ["model=dpmm_svi", "covariance=full", *COMMON, *_blobs(2, "full", n=5000),
            "trainer.precision=64"]
    full, _ = train(cfg_factory([*base, "trainer.max_epochs=300"], sub="full"))
    svi, objects = train(cfg_factory([*base, "data.batch_size=400", "model.kappa=0.7",
                                      "model.tau=10", "model.tol=null",
                                      "trainer.max_epochs=40"], sub="svi"))
    assert objects["trainer"].num_training_batches == 10
    assert svi["train/rho"] < 0.1  # the step decayed
    assert svi["test/nll"] == pytest.approx(full["test/nll"], rel=0.01)


def test_logs_elbo_active_k_and_figures(cfg_factory):
    """train/elbo, val/elbo, val/nll, val/active_k, val/ari, and the two figures."""
    cfg = cfg_factory(["model=dpmm_diag", "data.num_samples=600", "trainer.max_epochs=3",
                       "callbacks.mixture_figure.every_n_epochs=1"])
    metrics, _ = train(cfg)
    for key in ("train/elbo", "val/elbo", "val/nll", "val/active_k", "val/ari", "test/elbo"):
        assert key in metrics and np.isfinite(metrics[key]), key
    # the predictive density is a better held-out fit than the ELBO's bound
    assert -metrics["val/nll"] > metrics["val/elbo"]
    events = list(Path(cfg.paths.output_dir, "tensorboard").rglob("events.out.tfevents.*"))
    acc = EventAccumulator(str(events[0].parent), size_guidance={"images": 0})
    acc.Reload()
    assert {"val/mixture", "val/weights"} <= set(acc.Tags()["images"])


def test_resume_equals_uninterrupted(cfg_factory):
    """Mini-batch SVI killed after 3 epochs and resumed equals 6 epochs in one go (the step
    schedule and the epoch-seeded shuffles are restored)."""
    base = ["model=dpmm_svi", "covariance=full", *COMMON, "data.num_samples=1000",
            "data.batch_size=300", "model.kappa=0.7", "model.tol=null", "trainer.precision=64"]
    _, whole = train(cfg_factory([*base, "trainer.max_epochs=6"], sub="whole"))
    first = cfg_factory([*base, "trainer.max_epochs=3",
                         "callbacks=default", "callbacks.mixture_figure=null"], sub="first")
    train(first)
    ckpt = Path(first.paths.output_dir) / "checkpoints" / "last.ckpt"
    _, resumed = train(cfg_factory([*base, "trainer.max_epochs=6", f"ckpt_path={ckpt}",
                                    "callbacks=default", "callbacks.mixture_figure=null"],
                                   sub="resumed"))
    for name, value in whole["model"].model.state_dict().items():
        torch.testing.assert_close(resumed["model"].model.state_dict()[name], value,
                                   rtol=1e-9, atol=1e-9)


@pytest.mark.parametrize("batch", ["null", "500"])
def test_ddp_cpu_equals_one_process(tmp_path, batch):
    """SVI: two spawned processes (odd N: unequal shards, one rank ends with an empty batch)
    give the one-process parameters; with mini-batches each rank takes half of the global
    batch."""
    args = ["model=dpmm_svi", "covariance=full", "logger=csv", "callbacks=none",
            "data.num_samples=1251", "trainer.max_epochs=5", "trainer.enable_progress_bar=false",
            "model.tol=null", "model.kappa=0.6", "test=false", "trainer.precision=64"]
    half = batch if batch == "null" else str(int(batch) // 2)
    fitted = {}
    for trainer, size in (("cpu", batch), ("ddp_cpu", half)):
        result = run_train([*args, f"trainer={trainer}", f"data.batch_size={size}",
                            f"hydra.run.dir={trainer}"], cwd=tmp_path)
        assert result.returncode == 0, result.stderr[-3000:]
        fitted[trainer] = torch.load(tmp_path / trainer / "mixture.pt")
    for name, value in fitted["cpu"].items():
        torch.testing.assert_close(fitted["ddp_cpu"][name], value, rtol=1e-5, atol=1e-5)


@pytest.mark.parametrize(("override", "message"), [
    ("covariance=shared_full", "no conjugate prior"),
    ("model=dpmm_svi model.kappa=1.5", "kappa"),
    ("model.init_components=0", "init_components"),
    ("model.max_splits=-1", "max_splits"),
    ("model.net.weight_concentration_prior=0", "weight_concentration_prior"),
    ("model.net.degrees_of_freedom_prior=0.5", "degrees_of_freedom_prior"),
    ("model.net.init=spectral", "init"),
])
def test_bad_configuration_is_named(cfg_factory, override, message):
    cfg = cfg_factory(["model=dpmm", *override.split(), "data.num_samples=300"])
    with pytest.raises((ValueError, InstantiationException), match=message):
        train(cfg)


class _CountsAtValidation(L.Callback):
    """The DPMM's statistics when validation starts and when the training epoch ends."""

    def __init__(self) -> None:
        self.at_validation: dict[int, torch.Tensor] = {}
        self.at_epoch_end: dict[int, torch.Tensor] = {}

    def on_validation_start(self, trainer, pl_module):
        if not trainer.sanity_checking:
            self.at_validation[trainer.current_epoch] = pl_module.model.counts.detach().clone()

    def on_train_epoch_end(self, trainer, pl_module):
        self.at_epoch_end[trainer.current_epoch] = pl_module.model.counts.detach().clone()


def test_epoch_bookkeeping_runs_before_validation_and_the_last_epoch_is_evaluated(cfg_factory):
    """The moves change the model before validation (evaluation, figures and checkpoints see
    the epoch's final model), and the epoch at which tol stops the run is evaluated although
    it is not a multiple of eval_every_n_epochs."""
    cfg = cfg_factory(["model=dpmm_svi", "covariance=diag", "logger=csv", "callbacks=none",
                       *_blobs(2, "diag", n=2000), "data.num_components=5",
                       "trainer.precision=64", "trainer.max_epochs=500",
                       "model.moves_every_n_epochs=3", "model.eval_every_n_epochs=1000",
                       "+callbacks.counts._target_=tests.lit.test_dpmm._CountsAtValidation"])
    metrics, objects = train(cfg)
    counts = next(c for c in objects["trainer"].callbacks if isinstance(c, _CountsAtValidation))
    last = objects["trainer"].current_epoch - 1
    assert 3 < last < 499, "tol should stop the run"
    rows = list(csv.DictReader(next(Path(cfg.paths.output_dir).rglob("metrics.csv")).open()))
    assert sum(float(r["train/moves"]) for r in rows if r.get("train/moves")) > 0
    for epoch, value in counts.at_epoch_end.items():
        torch.testing.assert_close(counts.at_validation[epoch], value, msg=f"epoch {epoch}")
    assert sorted({int(r["epoch"]) for r in rows if r["val/nll"]}) == [0, last]
    assert metrics["val/active_k"] == metrics["test/active_k"] == metrics["train/active_k"]
