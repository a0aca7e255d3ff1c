"""Comparing runs: the summary table of every run and sweep, TensorBoard run names and the
HParams tab, and ``train/bic`` (BIC on the training points) for choosing K over a sweep."""

from __future__ import annotations

import csv
import json
from pathlib import Path

import numpy as np
import pytest
import torch
from omegaconf import OmegaConf

from mixtures.sweep import main as sweep_main
from mixtures.sweep import write_summary
from mixtures.train import train
from tests.conftest import run_train


def _job(root: Path, name: str, overrides: list[str], metrics: dict | None) -> None:
    job = root / name
    (job / ".hydra").mkdir(parents=True)
    OmegaConf.save(OmegaConf.create(overrides), job / ".hydra" / "overrides.yaml")
    if metrics is not None:
        (job / "metrics.json").write_text(json.dumps(metrics))


def _rows(path: Path) -> list[dict[str, str]]:
    with path.open() as fh:
        return list(csv.DictReader(fh))


def test_summary_lists_overrides_and_metrics_best_first(tmp_path) -> None:
    for num, (k, bic) in enumerate([(2, 30.0), (3, 10.0), (4, 20.0)]):
        _job(tmp_path, str(num), [f"model.net.num_components={k}", "trainer.max_epochs=5"],
             {"train/bic": bic, "val/nll": 1.0 + k, "train/nll_step": 9.0,
              "train/nll_epoch": 5.0})
    _job(tmp_path, "3", ["model.net.num_components=10", "trainer.max_epochs=5"], None)
    csv_path, md_path = write_summary(tmp_path, "train/bic")
    rows = _rows(csv_path)
    assert [r["job"] for r in rows] == ["1", "2", "0", "3"]
    assert [r["model.net.num_components"] for r in rows] == ["3", "4", "2", "10"]
    assert rows[0]["train/bic"] == "10.0" and rows[-1]["status"] == "failed"
    assert list(rows[0])[:5] == ["job", "status", "model.net.num_components",
                                 "trainer.max_epochs", "train/bic"]
    md = md_path.read_text()
    assert "Sorted by `train/bic` (lowest first)." in md
    assert "Common overrides: `trainer.max_epochs=5`" in md
    # a metric logged per step and per epoch once, as its epoch value
    assert "| job | model.net.num_components | train/bic | train/nll | val/nll | status |" in md
    assert "| 1 | 3 | 10 | 5 | 4 | ok |" in md
    assert "train/nll_step" in rows[0]  # the CSV keeps every key
    # highest first when the sweep maximises; by hand from the command line
    write_summary(tmp_path, "val/nll", maximize=True)
    assert [r["job"] for r in _rows(csv_path)] == ["2", "1", "0", "3"]
    assert sweep_main([str(tmp_path), "train/bic"]) == 0
    assert [r["job"] for r in _rows(csv_path)] == ["1", "2", "0", "3"]


def test_train_bic_is_the_bic_of_the_fitted_mixture_on_the_training_points(cfg_factory,
                                                                           tmp_path) -> None:
    """``train/bic`` equals GaussianMixture.bic of the run's mixture.pt on the training points,
    in the data's units (file data, standardised for training)."""
    from mixtures import GaussianMixture

    rng = np.random.default_rng(0)
    x = np.concatenate([rng.normal(0, 1, (150, 2)), rng.normal(6, 1, (150, 2))]) * 50 + 7
    cfg = cfg_factory(["model=gmm_em", "covariance=full", "model.net.num_components=2",
                       "data=file", "logger=csv", "test=false",
                       f"data.path={_save(x, tmp_path / 'data')}"])
    metrics, objects = train(cfg)
    dm = objects["datamodule"]
    raw = dm.x_standardizer.inverse(dm.train_tensor.double()).numpy()
    gm = GaussianMixture.load(Path(cfg.paths.output_dir) / "mixture.pt")
    assert metrics["train/bic"] == pytest.approx(gm.bic(raw), rel=1e-5)
    assert metrics["train/aic"] == pytest.approx(gm.aic(raw), rel=1e-5)


def _save(x: np.ndarray, folder: Path) -> Path:
    folder.mkdir(parents=True, exist_ok=True)
    np.save(folder / "points.npy", x)
    return folder / "points.npy"


def _hparams_events(folder: Path) -> dict[str, object]:
    """The HParams plugin's summaries in ``folder``'s event files, by tag."""
    from tensorboard.backend.event_processing.event_file_loader import EventFileLoader
    from tensorboard.plugins.hparams import plugin_data_pb2

    found = {}
    for path in folder.glob("events.out.tfevents.*"):
        for event in EventFileLoader(str(path)).Load():
            for value in event.summary.value:
                if value.metadata.plugin_data.plugin_name == "hparams":
                    found[value.tag] = plugin_data_pb2.HParamsPluginData.FromString(
                        value.metadata.plugin_data.content)
    return found


def test_a_sweep_writes_its_summary_names_its_runs_and_fills_the_hparams_tab(tmp_path) -> None:
    """``train.py -m`` over K: summary.csv / .md at the sweep's root sorted by train/bic, each
    job's TensorBoard run named by its overrides, and hparams with the final metrics."""
    result = run_train(["--multirun", "model.net.num_components=1,3", "trainer.max_epochs=3",
                        "data.num_samples=300", "data.num_components=3",
                        "optimized_metric=train/bic", "trainer.enable_progress_bar=false",
                        "callbacks.mixture_figure.every_n_epochs=1000", "test=false",
                        "hydra.sweep.dir=sweep"], cwd=tmp_path, timeout=400)
    assert result.returncode == 0, result.stderr[-3000:]
    sweep = tmp_path / "sweep"
    rows = _rows(sweep / "summary.csv")
    assert [r["model.net.num_components"] for r in rows] == ["3", "1"]  # three blobs
    assert float(rows[0]["train/bic"]) < float(rows[1]["train/bic"])
    md = (sweep / "summary.md").read_text()
    assert "| job | model.net.num_components | train/bic |" in md
    for job, k in (("0", 1), ("1", 3)):
        named = sweep / job / "tensorboard" / f"model.net.num_components={k}"
        assert list(named.glob("events.out.tfevents.*")), sorted(sweep.rglob("*tfevents*"))
        hp = _hparams_events(named)
        assert "_hparams_/experiment" in hp and "_hparams_/session_start_info" in hp
        tags = {m.name.tag for m in hp["_hparams_/experiment"].experiment.metric_infos}
        assert {"hparams/train/bic", "hparams/val/nll"} <= tags
        start = hp["_hparams_/session_start_info"].session_start_info.hparams
        assert start["model/net/num_components"].number_value == k


def test_a_single_run_writes_its_own_summary(tmp_path) -> None:
    result = run_train(["trainer.fast_dev_run=true", "logger=csv", "data.num_samples=300",
                        "trainer.enable_progress_bar=false", "hydra.run.dir=run"], cwd=tmp_path,
                       timeout=300)
    assert result.returncode == 0, result.stderr[-3000:]
    rows = _rows(tmp_path / "run" / "summary.csv")
    assert len(rows) == 1 and rows[0]["job"] == "." and rows[0]["trainer.fast_dev_run"] == "true"
    assert float(rows[0]["val/nll"]) == pytest.approx(
        json.loads((tmp_path / "run" / "metrics.json").read_text())["val/nll"])
    assert (tmp_path / "run" / "summary.md").is_file()
    assert torch.load(tmp_path / "run" / "mixture.pt")["weights"].numel() > 0
