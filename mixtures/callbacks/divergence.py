"""Stop a run whose loss, gradients or parameters turn non-finite, naming the culprit."""

from __future__ import annotations

from typing import Any

import lightning as L
import torch

__all__ = ["DivergenceGuard"]


class DivergenceGuard(L.Callback):
    """Raise ``FloatingPointError`` as soon as training produces NaN or inf.

    Gradients are checked before every optimizer step (so the last checkpoint stays clean),
    and the loss and parameters after every batch. The message names the parameter and
    suggests fixes.
    """

    HINT = (
        "lower the learning rate (optimizer.lr, model.component_lr / model.mixture_lr), "
        "raise covariance.min_scale, standardise the data, or train in float64 "
        "(trainer.precision=64)."
    )

    @staticmethod
    def _bad(named: Any) -> list[str]:
        return [n for n, t in named if t is not None and not bool(torch.isfinite(t).all())]

    def _check_values(self, trainer: L.Trainer, pl_module: L.LightningModule) -> None:
        bad = self._bad(pl_module.named_parameters())
        if bad:
            raise FloatingPointError(
                f"parameter(s) {', '.join(repr(b) for b in bad)} became non-finite at step "
                f"{trainer.global_step}. Try to {self.HINT}"
            )

    def on_before_optimizer_step(self, trainer: L.Trainer, pl_module: L.LightningModule,
                                 optimizer: Any) -> None:
        # A bad value is the root cause; bad gradients usually follow from it.
        self._check_values(trainer, pl_module)
        bad = self._bad((n, p.grad) for n, p in pl_module.named_parameters())
        if bad:
            raise FloatingPointError(
                f"the gradient of parameter(s) {', '.join(repr(b) for b in bad)} became "
                f"non-finite at step {trainer.global_step}; training stopped before the update. "
                f"Try to {self.HINT}"
            )

    def on_train_batch_end(self, trainer: L.Trainer, pl_module: L.LightningModule,
                           outputs: Any, batch: Any, batch_idx: int) -> None:
        loss = outputs.get("loss") if isinstance(outputs, dict) else outputs
        self._check_values(trainer, pl_module)
        if loss is not None and not bool(torch.isfinite(loss).all()):
            raise FloatingPointError(
                f"the training loss became non-finite ({float(loss)}) at step "
                f"{trainer.global_step} although all parameters are finite: check the data "
                f"for extreme values. Otherwise {self.HINT}"
            )
