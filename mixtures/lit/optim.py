"""Optimizer and learning-rate scheduler from the ``optimizer`` / ``scheduler`` config groups."""

from __future__ import annotations

import functools
from collections.abc import Callable, Iterable
from typing import Any

import torch

__all__ = ["check_lr", "optimizer_factory", "optimizers_from_config"]


def check_lr(name: str, value: float | None) -> None:
    """A learning rate must be positive (None: not set here)."""
    if value is not None and not value > 0:
        raise ValueError(
            f"{name} must be positive, got {value}; use a small positive step such as 0.05."
        )


def optimizer_factory(
    optimizer: Callable[..., torch.optim.Optimizer] | None,
    lr: float | None = None,
    default: Callable[..., torch.optim.Optimizer] = torch.optim.Adam,
) -> Callable[..., torch.optim.Optimizer]:
    """The partial optimizer of the config (``default`` when None), with its learning rate
    replaced by ``lr`` when given (``model.lr``); every learning rate checked once, here."""
    check_lr("model.lr", lr)
    factory = optimizer or default
    if lr is not None:
        base = getattr(factory, "func", factory)
        factory = functools.partial(base, **dict(getattr(factory, "keywords", {}), lr=lr))
    check_lr("optimizer.lr", getattr(factory, "keywords", {}).get("lr"))
    return factory


def optimizers_from_config(
    params: Iterable[torch.nn.Parameter] | list[dict[str, Any]],
    optimizer_factory: Callable[..., torch.optim.Optimizer],
    scheduler_factory: Callable[..., Any] | None = None,
    monitor: str = "val/nll",
) -> Any:
    """``configure_optimizers``' return value: the completed partial optimizer and, when given,
    its scheduler, stepped every epoch (``ReduceLROnPlateau`` watches ``monitor``)."""
    optimizer = optimizer_factory(params)
    if scheduler_factory is None:
        return optimizer
    scheduler = scheduler_factory(optimizer)
    config: dict[str, Any] = {"scheduler": scheduler, "interval": "epoch"}
    if isinstance(scheduler, torch.optim.lr_scheduler.ReduceLROnPlateau):
        config["monitor"] = monitor
    return {"optimizer": optimizer, "lr_scheduler": config}
