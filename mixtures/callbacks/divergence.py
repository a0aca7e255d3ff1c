"""Stop a run whose loss, gradients or parameters turn non-finite, naming the culprit."""

from __future__ import annotations

from typing import Any

import lightning as L
import torch
from torch import Tensor

__all__ = ["DivergenceGuard"]


def _finite_flags(tensors: list[Tensor]) -> list[bool]:
    """Whether each tensor is all finite, read from the device in one transfer per device."""
    flags: list[bool | None] = [None] * len(tensors)
    by_device: dict[torch.device, list[int]] = {}
    for i, t in enumerate(tensors):
        by_device.setdefault(t.device, []).append(i)
    for idx in by_device.values():
        values = torch.stack([torch.isfinite(tensors[i]).all() for i in idx]).tolist()
        for i, v in zip(idx, values, strict=True):
            flags[i] = v
    return flags  # type: ignore[return-value]


class DivergenceGuard(L.Callback):
    """Raise ``FloatingPointError`` as soon as training produces NaN or inf.

    Parameters and gradients are checked before every optimizer step (so no update is taken
    from a bad gradient and the last checkpoint stays clean), the loss and the parameters after
    every batch, and the parameters at every epoch end. The message names the parameter and
    suggests fixes.

    Each check reads all its flags from the device at once: one host synchronisation per
    optimizer step. After a batch whose optimizer step was checked, the loss is only flagged on
    the device and read with the next check (the step after, or the epoch end), and the
    parameters are checked there too, so a gradient-trained run synchronises once per step.
    Modules without optimizer steps (EM) are checked after every batch.
    """

    HINT = (
        "lower the learning rate (optimizer.lr, model.component_lr / model.mixture_lr), "
        "raise covariance.min_scale, standardise the data, or train in float64 "
        "(trainer.precision=64)."
    )

    def __init__(self) -> None:
        self._stepped = False  # an optimizer step was checked since the last batch end
        self._pending: tuple[Tensor, int] | None = None  # (a loss not yet read, its step)

    def _check(self, trainer: L.Trainer, pl_module: L.LightningModule,
               grads: bool = False, loss: Tensor | None = None) -> None:
        named = [(n, p) for n, p in pl_module.named_parameters()]
        tensors = [p.detach() for _, p in named]
        if grads:
            with_grad = [(n, p.grad) for n, p in named if p.grad is not None]
            tensors += [g for _, g in with_grad]
        pending, self._pending = self._pending, None
        if pending is not None:
            tensors.append(pending[0])
        if loss is not None:
            tensors.append(loss.detach())
        flags = _finite_flags(tensors)
        bad = [n for (n, _), ok in zip(named, flags, strict=False) if not ok]
        if bad:
            raise FloatingPointError(
                f"parameter(s) {', '.join(repr(b) for b in bad)} became non-finite at step "
                f"{trainer.global_step}. Try to {self.HINT}"
            )
        rest = flags[len(named):]
        if grads:
            bad = [n for (n, _), ok in zip(with_grad, rest, strict=False) if not ok]
            rest = rest[len(with_grad):]
            if bad:
                raise FloatingPointError(
                    f"the gradient of parameter(s) {', '.join(repr(b) for b in bad)} became "
                    f"non-finite at step {trainer.global_step}; training stopped before the "
                    f"update. Try to {self.HINT}"
                )
        losses = ([pending] if pending is not None else []) + \
            ([(loss, trainer.global_step)] if loss is not None else [])
        for (value, step), ok in zip(losses, rest, strict=True):
            if not ok:
                shown = f" ({float(value)})" if value.numel() == 1 else ""
                raise FloatingPointError(
                    f"the training loss became non-finite{shown} at step {step} although all "
                    f"parameters are finite: check the data for extreme values. Otherwise "
                    f"{self.HINT}"
                )

    def on_before_optimizer_step(self, trainer: L.Trainer, pl_module: L.LightningModule,
                                 optimizer: Any) -> None:
        # A bad value is the root cause; bad gradients usually follow from it.
        self._check(trainer, pl_module, grads=True)
        self._stepped = True

    def on_train_batch_end(self, trainer: L.Trainer, pl_module: L.LightningModule,
                           outputs: Any, batch: Any, batch_idx: int) -> None:
        loss = outputs.get("loss") if isinstance(outputs, dict) else outputs
        if not isinstance(loss, Tensor):
            loss = None
        if self._stepped:  # checked before the step; the loss is read with the next check
            self._stepped = False
            if loss is not None:
                self._pending = (loss.detach(), trainer.global_step)
            return
        self._check(trainer, pl_module, loss=loss)

    def on_train_epoch_end(self, trainer: L.Trainer, pl_module: L.LightningModule) -> None:
        self._check(trainer, pl_module)

    def on_train_end(self, trainer: L.Trainer, pl_module: L.LightningModule) -> None:
        self._pending, self._stepped = None, False
