"""Early stopping that counts evaluations, for modules that evaluate every n epochs.

A :class:`~mixtures.lit.base.MixtureModule` with ``eval_every_n_epochs > 1`` logs ``val/…``
only on its evaluation epochs (it sets ``evaluating``); Lightning's ``EarlyStopping`` would
compare the last logged value again on every epoch in between and spend its patience on
epochs that measured nothing. This one checks only after an evaluation, so ``patience``
counts evaluations (as Lightning's does under ``trainer.check_val_every_n_epoch``) and a run
it stops ends on an evaluated epoch.
"""

from __future__ import annotations

import lightning as L
from lightning.pytorch.callbacks import EarlyStopping as _LightningEarlyStopping

__all__ = ["EarlyStopping"]


class EarlyStopping(_LightningEarlyStopping):
    """Lightning's ``EarlyStopping`` (same arguments), skipping epochs whose validation did not
    evaluate (``pl_module.evaluating`` False; modules without the attribute always count)."""

    def _should_skip_check(self, trainer: L.Trainer) -> bool:
        module = trainer.lightning_module
        return super()._should_skip_check(trainer) or not getattr(module, "evaluating", True)
