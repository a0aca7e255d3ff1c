"""The classifiers' out-of-distribution machinery end to end on tiny IDX files: the OOD sets
of the test loop (test/ood_auroc_<set>, held-out classes), the score figure, the post-hoc
density fitted after training and saved in the checkpoint, the generative term."""

from __future__ import annotations

import math
from pathlib import Path

import pytest
import torch
from tensorboard.backend.event_processing.event_accumulator import EventAccumulator

from mixtures.data.mnist import OOD_TRANSFORMS
from mixtures.lit import ClassifierModule
from mixtures.metrics import auroc
from mixtures.train import train
from tests.data.test_mnist import write_tiny_mnist


@pytest.fixture
def mnist_dir(tmp_path):
    write_tiny_mnist(tmp_path / "mnist", n_train=200, n_val=60, n_test=60)
    return tmp_path / "mnist"


def _overrides(mnist_dir, *extra: str) -> list[str]:
    return ["data=mnist", f"data.data_dir={mnist_dir}", "data.num_val=60", "data.batch_size=50",
            "data.eval_batch_size=25", "trainer.max_epochs=1", "logger=csv", *extra]


def test_every_ood_set_is_scored_and_the_heldout_classes_too(cfg_factory, mnist_dir):
    """data.classes trains on 0-5 only; the test loop logs one AUROC per OOD set, equal to
    the host AUROC of the scores it kept, and the held-out digits are the others' test digits."""
    cfg = cfg_factory(_overrides(mnist_dir, "model=gmm_classifier", "covariance=diag",
                                 "data.classes=[0,1,2,3,4,5]"))
    metrics, objects = train(cfg)
    module, dm = objects["model"], objects["datamodule"]
    names = (*OOD_TRANSFORMS, "heldout")
    scores = module.ood_scores
    assert set(scores) == {"in", *names}
    _, y_test = dm.split("test")
    _, y_held = dm.split("heldout")
    assert int(y_test.max()) <= 5 and int(y_held.min()) >= 6
    assert scores["in"].numel() == y_test.numel() == scores["noise"].numel()
    assert scores["heldout"].numel() == y_held.numel() > 0
    for name in names:
        value = metrics[f"test/ood_auroc_{name}"]
        assert value == pytest.approx(auroc(scores[name], scores["in"]), abs=1e-6), name
    # the scores are the module's ood_score of the test digits
    x_test = dm.split("test")[0]
    with torch.no_grad():
        assert torch.allclose(module.eval().ood_score(x_test), scores["in"], atol=1e-4)


def test_posthoc_density_is_fitted_saved_and_scores(cfg_factory, mnist_dir):
    """model.posthoc=true: the class mixtures are fitted by EM to the training features
    after the last epoch; the last checkpoint holds them (weights_only) and reloads the same
    scores; the head still classifies; the score figure reaches TensorBoard."""
    cfg = cfg_factory(_overrides(mnist_dir, "model=gmm_classifier", "covariance=diag",
                                 "model.posthoc=true",
                                 "logger=tensorboard"))
    metrics, objects = train(cfg)
    module, dm = objects["model"], objects["datamodule"]
    density = module.net.density
    assert density.is_fitted and int(density.fitted_step) == objects["trainer"].global_step
    x_tr, y_tr = dm.split("train")
    z = module.net.eval().density_features(x_tr).detach()  # feature + conv channel means
    assert torch.allclose(density.log_class_prior.exp() * y_tr.numel(),
                          torch.bincount(y_tr, minlength=10).float())
    net = module.net
    with torch.no_grad():
        assert torch.allclose(net.ood_score(x_tr[:30], source="density"),
                              -density.log_prob(z[:30]))
        # the default score combines it with the confidence, calibrated on the validation
        # digits: their combined scores' tail probabilities are uniform (Fisher's statistic
        # of two independent uniforms has mean 2)
        pair = torch.stack([-density.log_prob(z[:30]), -net(x_tr[:30]).amax(1)], 1)
        assert torch.allclose(module.ood_score(x_tr[:30]), net.calibration.combined(pair))
        x_val = dm.split("val")[0]
        tails = net.calibration.log_tail(net._score_pair(x_val)).exp()
        assert tails.mean(0).sub(0.5).abs().max() < 0.02
    ckpt = Path(cfg.paths.output_dir) / "checkpoints" / "last.ckpt"
    state = torch.load(ckpt, weights_only=True)["state_dict"]
    assert torch.equal(state["net.density.means"], density.means)
    assert torch.equal(state["net.calibration.quantiles"], net.calibration.quantiles)
    loaded = ClassifierModule.load_from_checkpoint(ckpt).eval()
    assert loaded.net.density.is_fitted and loaded.net.calibration.is_fitted
    x_test = dm.split("test")[0]
    with torch.no_grad():
        assert torch.allclose(loaded.ood_score(x_test), module.ood_score(x_test), atol=1e-5)
        assert torch.allclose(loaded(x_test), module(x_test), atol=1e-5)
    for name in OOD_TRANSFORMS:
        assert 0 <= metrics[f"test/ood_auroc_{name}"] <= 1
    events = list((Path(cfg.paths.output_dir) / "tensorboard").glob("events.out.tfevents.*"))
    acc = EventAccumulator(str(events[0].parent), size_guidance={"images": 0})
    acc.Reload()
    assert "test/ood_scores" in acc.Tags()["images"]


def test_generative_term_is_trained_and_logged(cfg_factory, mnist_dir):
    cfg = cfg_factory(_overrides(mnist_dir, "model=gmm_classifier", "covariance=full",
                                 "model.generative_weight=0.01", "model.ood=false"))
    metrics, objects = train(cfg)
    assert math.isfinite(metrics["train/generative"]) and math.isfinite(metrics["test/nll"])
    assert not any(k.startswith("test/ood_auroc") for k in metrics)


def test_linear_head_scores_by_energy_and_fits_posthoc(cfg_factory, mnist_dir):
    cfg = cfg_factory(_overrides(mnist_dir, "model=cnn_linear", "model.posthoc=true",
                                 "covariance=full"))
    metrics, objects = train(cfg)
    net = objects["model"].net.eval()
    x = objects["datamodule"].split("test")[0]
    with torch.no_grad():
        energy = torch.logsumexp(net.head.linear(net.features(x)), -1)
        assert torch.allclose(net.ood_score(x, source="head"), -energy)
        assert torch.allclose(net.ood_score(x), -net.density.log_prob(net.features(x)))
    assert all(0 <= metrics[f"test/ood_auroc_{n}"] <= 1 for n in OOD_TRANSFORMS)


def test_bad_options_name_the_field(cfg_factory, mnist_dir):
    """Refused at construction (Hydra wraps the ValueError, keeping its message)."""
    with pytest.raises(Exception, match="generative_weight > 0 needs a Gaussian-mixture"):
        train(cfg_factory(_overrides(mnist_dir, "model=cnn_linear",
                                     "+model.generative_weight=0.1"), sub="lin"))
    with pytest.raises(Exception, match="model.generative_weight must be a number"):
        train(cfg_factory(_overrides(mnist_dir, "model=gmm_classifier",
                                     "model.generative_weight=-1"), sub="neg"))
    with pytest.raises(Exception, match="model.posthoc=true needs model.net.density"):
        train(cfg_factory(_overrides(mnist_dir, "model=gmm_classifier", "model.posthoc=true",
                                     "model.net.density=null",
                                     "model.net.combine_confidence=false"), sub="nod"))
    with pytest.raises(Exception, match="set model.net.density too, or "
                                        "model.net.combine_confidence=false"):
        train(cfg_factory(_overrides(mnist_dir, "model=gmm_classifier",
                                     "model.net.density=null"), sub="noc"))


def test_density_is_fitted_when_training_stops_mid_epoch(cfg_factory, mnist_dir):
    """max_steps stops before the epoch's validation: the density is fitted at the end of
    fitting, at the final step, and the last checkpoint is re-saved with it."""
    cfg = cfg_factory(_overrides(mnist_dir, "model=gmm_classifier", "model.posthoc=true",
                                 "+trainer.max_steps=2", "covariance=diag", "model.ood=false"))
    _, objects = train(cfg)
    density = objects["model"].net.density
    assert objects["trainer"].global_step == 2 and int(density.fitted_step) == 2
    state = torch.load(Path(cfg.paths.output_dir) / "checkpoints" / "last.ckpt",
                       weights_only=True)["state_dict"]
    assert bool(state["net.density.fitted"]) and int(state["net.density.fitted_step"]) == 2
    assert torch.equal(state["net.density.means"], density.means)
