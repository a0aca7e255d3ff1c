"""Optimizer and learning-rate scheduler from the ``optimizer`` / ``scheduler`` config groups."""

from __future__ import annotations

from collections.abc import Callable, Iterable
from typing import Any

import torch

__all__ = ["optimizers_from_config"]


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
