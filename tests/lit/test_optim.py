"""Optimizers from the config (mixtures.lit.optim): one learning-rate check, lr replacement."""

from __future__ import annotations

import functools

import pytest
import torch

from mixtures.lit.optim import check_lr, optimizer_factory, optimizers_from_config


def test_lr_replaces_the_optimizers_and_keeps_its_other_arguments():
    partial = functools.partial(torch.optim.SGD, lr=0.1, momentum=0.9)
    opt = optimizer_factory(partial, lr=0.01)([torch.nn.Parameter(torch.zeros(2))])
    assert opt.param_groups[0]["lr"] == 0.01 and opt.param_groups[0]["momentum"] == 0.9
    kept = optimizer_factory(partial)([torch.nn.Parameter(torch.zeros(2))])
    assert kept.param_groups[0]["lr"] == 0.1


def test_the_default_when_the_config_has_none():
    default = functools.partial(torch.optim.Adam, lr=0.05)
    opt = optimizer_factory(None, default=default)([torch.nn.Parameter(torch.zeros(2))])
    assert isinstance(opt, torch.optim.Adam) and opt.param_groups[0]["lr"] == 0.05
    plain = optimizer_factory(None, lr=0.2)([torch.nn.Parameter(torch.zeros(2))])
    assert isinstance(plain, torch.optim.Adam) and plain.param_groups[0]["lr"] == 0.2


@pytest.mark.parametrize(("kwargs", "message"), [
    ({"lr": 0.0}, "model.lr must be positive"),
    ({"lr": -1.0}, "model.lr must be positive"),
    ({"optimizer": functools.partial(torch.optim.SGD, lr=0.0)}, "optimizer.lr must be positive"),
])
def test_non_positive_learning_rates_fail_early(kwargs, message):
    with pytest.raises(ValueError, match=message):
        optimizer_factory(kwargs.pop("optimizer", None), **kwargs)


def test_check_lr_accepts_none_and_names_the_field():
    check_lr("model.mixture_lr", None)
    with pytest.raises(ValueError, match="model.mixture_lr must be positive, got 0"):
        check_lr("model.mixture_lr", 0)


def test_plateau_scheduler_monitors_the_metric():
    params = [torch.nn.Parameter(torch.zeros(2))]
    plateau = functools.partial(torch.optim.lr_scheduler.ReduceLROnPlateau, patience=1)
    sgd = functools.partial(torch.optim.SGD, lr=0.1)
    config = optimizers_from_config(params, sgd, plateau, monitor="val/nll")
    assert config["lr_scheduler"]["monitor"] == "val/nll"
    assert config["lr_scheduler"]["interval"] == "epoch"
    assert isinstance(optimizers_from_config(params, sgd), torch.optim.SGD)
