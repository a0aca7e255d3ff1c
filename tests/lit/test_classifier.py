"""model=gmm_classifier / cnn_linear end to end with data=mnist on tiny IDX files."""

from __future__ import annotations

import math
from pathlib import Path

import pytest
import torch
from tensorboard.backend.event_processing.event_accumulator import EventAccumulator

from mixtures.lit.classifier import ComponentUsage
from mixtures.metrics import ClassificationScores, auroc
from mixtures.train import train
from tests.data.test_mnist import write_tiny_mnist


@pytest.fixture
def mnist_dir(tmp_path):
    write_tiny_mnist(tmp_path / "mnist", n_train=200, n_val=60, n_test=60)
    return tmp_path / "mnist"


def _overrides(mnist_dir, *extra: str) -> list[str]:
    return ["data=mnist", f"data.data_dir={mnist_dir}", "data.num_val=60", "data.batch_size=50",
            "trainer.max_epochs=1", "logger=csv", *extra]


@pytest.mark.parametrize("covariance", ["diag", "full", "scalar"])
def test_gmm_head_trains_for_every_covariance(cfg_factory, mnist_dir, covariance):
    cfg = cfg_factory(_overrides(mnist_dir, "model=gmm_classifier", f"covariance={covariance}",
                                 "model.net.head.num_components=2", "data.shift=2",
                                 "model.net.head.projection=linear",
                                 "model.net.head.feature_dim=16"))
    metrics, objects = train(cfg)
    for key in ("val/acc", "val/nll", "val/ece", "test/acc", "test/nll", "test/ece",
                "test/usage_min"):
        assert math.isfinite(metrics[key]), key
    head = objects["model"].net.head
    assert type(head.cov).__name__.lower().startswith(covariance)
    usage = objects["model"].component_usage
    assert usage.shape == (10, 2) and torch.allclose(usage.sum(-1), torch.ones(10), atol=1e-5)


def test_learns_the_tiny_digits_with_adadelta_and_step_lr(cfg_factory, mnist_dir):
    """The reference recipe (Adadelta lr 1.0, StepLR γ 0.7) with the diag head: the bar
    digits are easy, so accuracy is high (without data=mnist's default ±2-pixel shifts, which
    the 2 epochs on 200 digits do not absorb); the scheduler decays the learning rate per epoch."""
    cfg = cfg_factory(_overrides(mnist_dir, "model=gmm_classifier", "covariance=diag",
                                 "data.shift=0",
                                 "optimizer=adadelta", "model.lr=null", "+scheduler=step",
                                 "trainer.max_epochs=2", "logger=tensorboard",
                                 "callbacks.classifier_figure.every_n_epochs=2"))
    metrics, objects = train(cfg)
    assert metrics["test/acc"] > 0.9 and metrics["test/nll"] < 0.5
    opt = objects["trainer"].optimizers[0]
    assert type(opt).__name__ == "Adadelta"
    assert opt.param_groups[0]["lr"] == pytest.approx(0.7**2)
    events = list((Path(cfg.paths.output_dir) / "tensorboard").glob("events.out.tfevents.*"))
    acc = EventAccumulator(str(events[0].parent), size_guidance={"images": 0})
    acc.Reload()
    tags = set(acc.Tags()["images"])
    assert {"test/posteriors", "test/component_usage", "val/posteriors"} <= tags


def test_linear_baseline_trains(cfg_factory, mnist_dir):
    cfg = cfg_factory(_overrides(mnist_dir, "model=cnn_linear"))
    metrics, objects = train(cfg)
    assert math.isfinite(metrics["test/nll"]) and objects["model"].component_usage is None
    assert "test/usage_min" not in metrics


def test_wrong_model_data_pairs_fail_clearly(cfg_factory, mnist_dir):
    with pytest.raises(ValueError, match="needs labelled image data: use data=mnist"):
        train(cfg_factory(["model=gmm_classifier", "data=blobs", "trainer.fast_dev_run=true",
                           "logger=csv"], sub="blobs"))
    with pytest.raises(ValueError, match="use model=gmm_classifier or model=cnn_linear"):
        train(cfg_factory(_overrides(mnist_dir, "model=gmm_sgd"), sub="gmm"))
    with pytest.raises(ValueError, match="needs regression targets"):
        train(cfg_factory(_overrides(mnist_dir, "model=mdn"), sub="mdn"))


def test_classification_scores_by_hand():
    probs = torch.tensor([[0.92, 0.08], [0.63, 0.37], [0.26, 0.74], [0.85, 0.15]])
    labels = torch.tensor([0, 1, 1, 0])
    metric = ClassificationScores(num_bins=10)
    metric.update(probs[:2].log(), labels[:2])  # two batches: sums
    metric.update(probs[2:].log(), labels[2:])
    out = metric.compute()
    assert float(out["acc"]) == pytest.approx(0.75)
    nll = -(math.log(0.92) + math.log(0.37) + math.log(0.74) + math.log(0.85)) / 4
    assert float(out["nll"]) == pytest.approx(nll)
    # one point per bin: confidences 0.92 (correct), 0.63 (wrong), 0.74 and 0.85 (correct)
    ece = (abs(1 - 0.92) + abs(0 - 0.63) + abs(1 - 0.74) + abs(1 - 0.85)) / 4
    assert float(out["ece"]) == pytest.approx(ece)


def test_component_usage_and_auroc():
    resp = torch.tensor([[[0.2, 0.8], [0.5, 0.5]], [[0.1, 0.9], [1.0, 0.0]]])
    usage = ComponentUsage(2, 2)
    usage.update(resp, torch.tensor([0, 1]))
    assert torch.allclose(usage.compute().float(), torch.tensor([[0.2, 0.8], [1.0, 0.0]]))
    assert auroc(torch.tensor([3.0, 4.0]), torch.tensor([1.0, 2.0])) == 1.0
    assert auroc(torch.tensor([1.0, 3.0]), torch.tensor([2.0, 2.0])) == 0.5
    assert auroc(torch.tensor([2.0]), torch.tensor([2.0])) == 0.5
