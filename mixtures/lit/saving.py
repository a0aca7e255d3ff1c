"""Checkpoints that rebuild their own model: ``GMMEM.load_from_checkpoint(path)``, no arguments.

Every LightningModule here receives its model (``net``) built from the config, so Lightning's
saved hyper-parameters alone could not rebuild it: ``load_from_checkpoint`` needed the user to
rebuild ``net`` by hand, and a ``net`` of another covariance type failed with a size mismatch.
:func:`record_net_config` stores the model's resolved config (``_target_`` and every argument,
the sizes filled from the data) as the ``net`` hyper-parameter; the modules accept such a
mapping for ``net`` (:func:`build_net`), so a checkpoint rebuilds exactly the model it holds.

Loading is ``weights_only=True`` by default (:class:`CheckpointLoading`): a checkpoint holds
tensors and plain values only, and a crafted one cannot run code — Lightning's own default is
``False`` for ``http(s)://`` paths.
"""

from __future__ import annotations

from collections.abc import Mapping
from pathlib import Path
from typing import IO, Any

import hydra
from lightning.pytorch.core.saving import _load_from_checkpoint
from omegaconf import DictConfig, OmegaConf
from torch import nn

__all__ = ["CheckpointLoading", "build_net", "record_net_config"]


def build_net(net: nn.Module | Mapping[str, Any]) -> nn.Module:
    """``net`` itself, or the model a saved config (a mapping with ``_target_``) describes."""
    if isinstance(net, nn.Module):
        return net
    if isinstance(net, Mapping | DictConfig) and "_target_" in net:
        return hydra.utils.instantiate(net)
    raise TypeError(f"net must be an nn.Module or a config with _target_, got {type(net)!r}.")


def record_net_config(module: Any, net_cfg: DictConfig | Mapping[str, Any] | None,
                      sizes: Mapping[str, Any] | None = None) -> None:
    """Store the model's config (resolved, with the data's ``sizes``) as the ``net``
    hyper-parameter of ``module``, saved in every checkpoint."""
    if net_cfg is None or not hasattr(module, "hparams"):
        return
    config = (OmegaConf.to_container(net_cfg, resolve=True) if isinstance(net_cfg, DictConfig)
              else dict(net_cfg))
    if not isinstance(config, dict) or "_target_" not in config:
        return
    config.update(sizes or {})
    module.hparams["net"] = config


class CheckpointLoading:
    """Mixin of our LightningModules: ``load_from_checkpoint`` with ``weights_only=True`` by
    default, rebuilding ``net`` from the checkpoint when it was recorded."""

    @classmethod
    def load_from_checkpoint(cls, checkpoint_path: str | Path | IO, map_location: Any = None,
                             hparams_file: str | Path | None = None, strict: bool | None = None,
                             weights_only: bool = True, **kwargs: Any) -> Any:
        """Load a module from a checkpoint (see ``LightningModule.load_from_checkpoint``).

        ``net`` may be omitted when the checkpoint was written by ``train.py`` (it records the
        model's config); pass ``net=`` to load into a model of your own.
        """
        return _load_from_checkpoint(cls, checkpoint_path, map_location, hparams_file, strict,
                                     weights_only, **kwargs)
