"""mixtures.lit.saving: a saved model config rebuilds the model.

The end-to-end load of every module family is in tests/test_train_outcomes.py
(test_load_from_checkpoint_rebuilds_the_model_it_holds)."""

from __future__ import annotations

import pytest
import torch
from omegaconf import OmegaConf

from mixtures.lit import GMMEM
from mixtures.lit.saving import build_net, record_net_config
from mixtures.models import GaussianMixtureEM

CONFIG = {"_target_": "mixtures.models.GaussianMixtureEM", "num_components": 3,
          "num_features": 2,
          "covariance": {"_target_": "mixtures.distributions.covariance.DiagCovariance"}}


def test_a_config_builds_the_model_and_a_model_is_kept():
    net = build_net(CONFIG)
    assert isinstance(net, GaussianMixtureEM)
    assert (net.num_components, net.num_features) == (3, 2)
    assert type(net.cov).__name__ == "DiagCovariance"
    assert build_net(net) is net
    with pytest.raises(TypeError, match="_target_"):
        build_net({"num_components": 3})


def test_the_recorded_config_is_resolved_with_the_data_sizes(tmp_path):
    cfg = OmegaConf.create({"k": 3, "net": {**CONFIG, "num_components": "${k}",
                                            "num_features": None}})
    module = GMMEM(build_net({**CONFIG}))
    record_net_config(module, cfg.net, {"num_features": 2})
    assert module.hparams["net"]["num_components"] == 3  # interpolation resolved
    assert module.hparams["net"]["num_features"] == 2  # filled from the data
    path = tmp_path / "m.ckpt"
    torch.save({"state_dict": module.state_dict(), "hyper_parameters": dict(module.hparams),
                "pytorch-lightning_version": "2.6.0"}, path)
    loaded = GMMEM.load_from_checkpoint(path)
    assert type(loaded.model.cov) is type(module.model.cov)
    for name, value in loaded.state_dict().items():
        assert torch.equal(value, module.state_dict()[name]), name
