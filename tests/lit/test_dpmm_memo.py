"""Memoized DPMM under Lightning (``model=dpmm``): finds K from too many or too few clusters,
two processes holding half the data each equal one process, a killed run resumes exactly."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
import torch

from mixtures.train import train
from tests.conftest import run_train

COMMON = ["logger=csv", "callbacks=none", "data.num_components=5", "trainer.precision=64",
          "data.num_features=3", "data.num_samples=3000"]


@pytest.mark.parametrize("start", ["null", "1"])
def test_finds_the_five_clusters_from_too_many_or_one(cfg_factory, start):
    """Truncation 20: from 20 k-means clusters the merges, from one cluster the splits reach
    the 5 true clusters (ARI 1), with mini-batches; the run stops by tol."""
    cfg = cfg_factory(["model=dpmm_full", *COMMON, "data.batch_size=600",
                       f"model.init_components={start}", "trainer.max_epochs=60"])
    metrics, objects = train(cfg)
    assert metrics["val/active_k"] == metrics["test/active_k"] == 5
    assert metrics["test/ari"] > 0.99
    assert objects["trainer"].current_epoch < 60, "tol should stop the run"
    assert objects["trainer"].datamodule.shuffle is False  # fixed batches


@pytest.mark.parametrize("batch", ["500"])  # (one batch per rank: also equal, 25 s more)
def test_ddp_cpu_each_rank_with_its_half_equals_one_process(tmp_path, batch):
    """Two processes, each holding only its own shard of the data and caching only its
    summaries (odd N: unequal shards, a short last batch), with merges and splits: the
    one-process mixture (batches of 500 = two halves of 250) to 1e-5 in float64, spawned
    (trainer=ddp_cpu) or relaunched by Lightning (trainer=ddp on CPU), and the same train/bic."""
    args = ["model=dpmm_full", "logger=csv", "callbacks=none", "data.num_samples=1251",
            "data.num_components=4", "model.init_components=2", "trainer.max_epochs=8",
            "trainer.enable_progress_bar=false", "test=false", "trainer.precision=64"]
    half = batch if batch == "null" else str(int(batch) // 2)
    fitted, bic = {}, {}
    # ddp: Lightning relaunches train.py per rank (the cluster path), where every rank also
    # computes train/bic from its own shard: the sums are reduced
    for run, trainer, size in (("cpu", ["trainer=cpu"], batch),
                               ("ddp_cpu", ["trainer=ddp_cpu"], half),
                               ("ddp", ["trainer=ddp", "trainer.accelerator=cpu",
                                        "trainer.devices=2"], half)):
        result = run_train([*args, *trainer, f"data.batch_size={size}",
                            f"hydra.run.dir={run}"], cwd=tmp_path)
        assert result.returncode == 0, result.stderr[-3000:]
        if run != "cpu":  # the DataModule kept only each rank's shard
            assert ("each of the 2 processes holds only its shard of the data (rank 0: 501 of "
                    "1,001 training points)") in result.stdout + result.stderr
        fitted[run] = torch.load(tmp_path / run / "mixture.pt", weights_only=True)
        bic[run] = json.loads((tmp_path / run / "metrics.json").read_text())["train/bic"]
    assert int((fitted["cpu"]["weights"] > 0.01).sum()) == 4  # the splits happened
    for run in ("ddp_cpu", "ddp"):
        for name, value in fitted["cpu"].items():
            torch.testing.assert_close(fitted[run][name], value, rtol=1e-5, atol=1e-5)
        assert bic[run] == pytest.approx(bic["cpu"], rel=1e-7), run


def test_a_killed_run_resumes_to_the_uninterrupted_result(cfg_factory):
    """Mini-batches with moves, stopped after 3 laps and resumed to 6 = 6 in one go: the
    checkpoint holds the batch summaries (tensors, weights_only)."""
    base = ["model=dpmm_full", *COMMON, "data.batch_size=700", "model.init_components=1",
            "model.tol=null"]
    _, whole = train(cfg_factory([*base, "trainer.max_epochs=6"], sub="whole"))
    first = cfg_factory([*base, "trainer.max_epochs=3", "callbacks=default",
                         "callbacks.mixture_figure=null"], sub="first")
    train(first)
    ckpt = Path(first.paths.output_dir) / "checkpoints" / "last.ckpt"
    assert "memoized_vi" in torch.load(ckpt, weights_only=True)
    _, resumed = train(cfg_factory([*base, "trainer.max_epochs=6", f"ckpt_path={ckpt}",
                                    "callbacks=default", "callbacks.mixture_figure=null"],
                                   sub="resumed"))
    for name, value in whole["model"].model.state_dict().items():
        torch.testing.assert_close(resumed["model"].model.state_dict()[name], value,
                                   rtol=1e-9, atol=1e-9)
