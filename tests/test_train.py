"""End-to-end: config composition, train(cfg), the entry point, resume, DDP, sweeps."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
import torch
from hydra.errors import InstantiationException
from hydra.utils import instantiate
from tensorboard.backend.event_processing.event_accumulator import EventAccumulator

from mixtures.train import train
from tests.conftest import CONF, run_train

COVARIANCES = sorted(p.stem for p in (CONF / "covariance").glob("*.yaml"))
# density models of unlabelled points; model=mdn needs regression data (tests/lit/test_mdn.py),
# the image classifiers data=mnist (tests/lit/test_classifier.py)
MODELS = sorted(p.stem for p in (CONF / "model").glob("*.yaml")
                if p.stem not in ("mdn", "gmm_classifier", "cnn_linear"))


def _write_csv(path: Path, n: int = 300, seed: int = 0) -> Path:
    rng = np.random.default_rng(seed)
    labels = rng.integers(0, 3, n)
    centres = np.array([[0.0, 0.0, 0.0], [6.0, 0.0, 1.0], [0.0, 6.0, -1.0]])
    x = centres[labels] + rng.normal(size=(n, 3))
    table = np.column_stack([x * 10.0 + 100.0, labels])
    np.savetxt(path, table, delimiter=",", header="a,b,c,label", comments="")
    return path


def test_covariance_group_is_complete() -> None:
    """Every covariance type of the shared math has a config."""
    assert COVARIANCES == ["diag", "full", "scalar", "shared_full", "shared_scalar", "unit"]


@pytest.mark.parametrize("model", MODELS)
@pytest.mark.parametrize("covariance", COVARIANCES)
@pytest.mark.parametrize("data", ["blobs", "file"])
def test_every_combination_composes_and_runs(cfg_factory, tmp_path, model, covariance, data):
    """Each model × covariance × data combination composes, instantiates and trains a step."""
    overrides = [f"model={model}", f"covariance={covariance}", f"data={data}",
                 "trainer.fast_dev_run=true", "logger=csv"]
    if data == "file":
        overrides += [f"data.path={_write_csv(tmp_path / 'points.csv')}", "data.label_column=-1"]
    else:
        overrides += ["data.num_samples=400"]
    cfg = cfg_factory(overrides)
    if (model.startswith("dpmm") or model == "gmm_vi") and covariance.startswith("shared"):
        # conjugate priors exist for unit / scalar / diag / full only: a clear error
        with pytest.raises(InstantiationException, match="no conjugate prior"):
            train(cfg)
        return
    metrics, objects = train(cfg)
    assert np.isfinite(metrics["test/nll"])
    assert objects["model"].model.num_features == (3 if data == "file" else 2)
    assert type(objects["model"].model.cov).__name__.lower().startswith(
        covariance.replace("_", "")[:4]
    )


def test_file_data_reports_original_units(cfg_factory, tmp_path) -> None:
    """Standardised training; the saved mixture is back in the file's units."""
    csv = _write_csv(tmp_path / "points.csv", n=3000)
    cfg = cfg_factory(["data=file", f"data.path={csv}", "data.label_column=-1",
                       "model.net.num_components=3", "trainer.max_epochs=30", "logger=csv"])
    metrics, objects = train(cfg)
    assert metrics["test/ari"] > 0.95
    fitted = torch.load(Path(cfg.paths.output_dir) / "mixture.pt")
    means = fitted["means"][fitted["means"][:, 0].argsort()]
    # the file's units are centre × 10 + 100; the largest first coordinate is (160, 100, 110)
    assert torch.allclose(means[-1], torch.tensor([160.0, 100.0, 110.0]).double(), atol=1.5)
    assert fitted["covariances"].diagonal(dim1=-2, dim2=-1).mean() == pytest.approx(100, rel=0.1)


def test_entry_point_writes_tensorboard_scalars_and_images(tmp_path) -> None:
    """`python train.py` (shortened) writes val/nll and a figure to TensorBoard."""
    result = run_train(["trainer.max_epochs=3", "callbacks.mixture_figure.every_n_epochs=1",
                        "hydra.run.dir=run"], cwd=tmp_path)
    assert result.returncode == 0, result.stderr[-3000:]
    assert "final metrics" in result.stdout and "val/nll" in result.stdout
    events = list((tmp_path / "run" / "tensorboard").glob("events.out.tfevents.*"))
    assert events, "no TensorBoard event file"
    acc = EventAccumulator(str(events[0].parent), size_guidance={"images": 0, "scalars": 0})
    acc.Reload()
    tags = acc.Tags()
    assert "val/nll" in tags["scalars"] and "val/ari" in tags["scalars"]
    assert "val/mixture" in tags["images"] and len(acc.Images("val/mixture")) >= 1
    assert (tmp_path / "run" / "checkpoints" / "last.ckpt").exists()


def test_unknown_option_lists_choices(tmp_path) -> None:
    result = run_train(["model=nope"], cwd=tmp_path, timeout=120)
    assert result.returncode != 0
    assert "Could not find 'model/nope'" in result.stderr
    assert "gmm_sgd" in result.stderr  # Hydra lists the available options


def _final_parameters(cfg) -> dict[str, torch.Tensor]:
    _, objects = train(cfg)
    return {k: v.detach().clone() for k, v in objects["model"].state_dict().items()}


def test_killed_run_resumes_to_the_same_parameters(cfg_factory) -> None:
    """Stop after 4 of 8 epochs, resume from last.ckpt: the same final parameters as one run
    of 8 epochs (mini-batches, so the epoch-seeded shuffles are exercised too)."""
    common = ["data.num_samples=3000", "data.batch_size=512", "logger=csv", "test=false",
              "model.component_lr=0.02"]
    full = _final_parameters(cfg_factory(common + ["trainer.max_epochs=8"], sub="full"))
    first = cfg_factory(common + ["trainer.max_epochs=4"], sub="first")
    _final_parameters(first)
    ckpt = Path(first.paths.output_dir) / "checkpoints" / "last.ckpt"
    assert ckpt.exists()
    resumed = _final_parameters(
        cfg_factory(common + ["trainer.max_epochs=8", f"ckpt_path={ckpt}"], sub="resumed")
    )
    half = torch.load(ckpt, weights_only=False)["state_dict"]
    assert not torch.allclose(half["model.means"], full["model.means"])  # it did train on
    for name, value in full.items():
        assert torch.allclose(resumed[name], value, atol=1e-6, rtol=0), name


def test_ddp_cpu_two_processes(tmp_path) -> None:
    """`trainer=ddp_cpu` (2 spawned processes) trains, logs and reports the metrics."""
    result = run_train(["trainer=ddp_cpu", "trainer.max_epochs=3", "data.num_samples=2001",
                        "data.batch_size=300", "hydra.run.dir=run", "logger=csv"],
                       cwd=tmp_path, timeout=400)
    assert result.returncode == 0, result.stderr[-3000:]
    assert "test/nll" in result.stdout
    metrics = (tmp_path / "run" / "csv" / "version_0" / "metrics.csv").read_text()
    assert "val/nll" in metrics.splitlines()[0]


def test_multirun_with_joblib_launcher(tmp_path) -> None:
    """A two-job sweep runs in parallel under the joblib launcher."""
    result = run_train(["--multirun", "model.net.num_components=2,4", "trainer.max_epochs=2",
                        "hydra/launcher=joblib", "hydra.launcher.n_jobs=2", "logger=csv",
                        "hydra.sweep.dir=sweep"], cwd=tmp_path, timeout=400)
    assert result.returncode == 0, result.stderr[-3000:]
    for job in ("0", "1"):
        assert (tmp_path / "sweep" / job / "mixture.pt").exists()
    k = [torch.load(tmp_path / "sweep" / j / "mixture.pt")["weights"].numel() for j in "01"]
    assert k == [2, 4]


def test_instantiated_model_uses_config_sizes(cfg_factory) -> None:
    cfg = cfg_factory(["model.net.num_components=7", "data.num_features=3"])
    module = instantiate(cfg.model)
    assert module.model.means.shape == (7, 3)


PRESETS = [f"{group}={p.stem}" for group in ("experiment", "debug", "hparams_search")
           for p in sorted((CONF / group).glob("*.yaml"))]


@pytest.mark.parametrize("preset", PRESETS)
def test_every_preset_composes_and_runs(cfg_factory, preset):
    """Experiments, debug and sweep presets stay valid (one batch each, small data)."""
    cfg = cfg_factory([preset, "trainer.fast_dev_run=true", "data.num_samples=1000",
                       "logger=csv"])
    metrics, _ = train(cfg)
    assert np.isfinite(metrics["test/nll"])


@pytest.mark.parametrize("optimizer", sorted(p.stem for p in (CONF / "optimizer").glob("*.yaml")))
def test_every_optimizer_trains(cfg_factory, optimizer):
    """Any torch optimizer from the group fits the default problem (LBFGS needs one group)."""
    cfg = cfg_factory([f"optimizer={optimizer}", "trainer.max_epochs=15", "logger=csv",
                       "callbacks=none", "data.num_samples=2000"])
    metrics, _ = train(cfg)
    assert metrics["test/ari"] > 0.95 and metrics["test/nll"] < 4.3


def test_separate_learning_rates_make_two_groups(cfg_factory):
    cfg = cfg_factory(["model.mixture_lr=0.01", "model.component_lr=0.1", "logger=csv",
                       "trainer.max_epochs=1", "callbacks=none"])
    _, objects = train(cfg)
    groups = objects["trainer"].optimizers[0].param_groups
    assert [g["name"] for g in groups] == ["mixture", "components"]
    assert [g["lr"] for g in groups] == [0.01, 0.1]
    cfg = cfg_factory(["optimizer=lbfgs", "model.mixture_lr=0.01", "logger=csv"], sub="lbfgs")
    with pytest.raises(ValueError, match="takes a single learning rate"):
        train(cfg)


def test_float64_by_config(cfg_factory):
    cfg = cfg_factory(["trainer.precision=64", "trainer.max_epochs=3", "logger=csv",
                       "callbacks=none"])
    metrics, objects = train(cfg)
    assert objects["model"].model.means.dtype == torch.float64
    assert metrics["test/nll"] < 4.3


@pytest.mark.parametrize("covariance", ["unit", "scalar", "diag", "full"])
def test_dpmm_presets_pick_their_covariance(cfg_factory, covariance):
    """`model=dpmm_<type>` selects the covariance group; a command-line `covariance=` wins."""
    cfg = cfg_factory([f"model=dpmm_{covariance}"])
    assert cfg.covariance._target_.lower().endswith(f"{covariance}covariance")
    assert cfg.model._target_ == "mixtures.lit.MemoizedDPMMModule"  # memoized VI by default
    other = "full" if covariance != "full" else "diag"
    cfg = cfg_factory([f"model=dpmm_{covariance}", f"covariance={other}"], sub="override")
    assert cfg.covariance._target_.lower().endswith(f"{other}covariance")
