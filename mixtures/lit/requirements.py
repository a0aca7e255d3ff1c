"""The one check that a DataModule serves what a LightningModule trains on.

A DataModule declares what it provides — ``kind`` (``points``, ``regression`` or ``images``)
and ``sizes()`` (``num_features``, ``num_targets``, ``num_classes``) — and a LightningModule
declares what it needs: ``data_kind`` and ``model_sizes()``, the sizes its model was built
with, keyed by their path under ``model.net`` (the last part names the data's size). Every
LightningModule calls :func:`check_data` in ``setup``, so a plain ``Trainer.fit`` is checked as
``train(cfg)`` is.
"""

from __future__ import annotations

from typing import Any

__all__ = ["check_data", "check_kind"]

#: what a module of each kind needs, and what a data set lacking it lacks
_NEEDS = {
    "points": ("models unlabelled points", "is not such a data set"),
    "regression": ("needs regression targets", "has none"),
    "images": ("needs labelled image data: use data=mnist (prepare it offline with "
               "`python scripts/prepare_mnist.py --data-dir data`)", "is not image data"),
}
#: the fix when data of each kind meets a module that needs another kind
_FIX = {
    "points": "it holds unlabelled points: use a density model (model=gmm_sgd, gmm_em, dpmm, "
              "gmm_vi), or data=file data.target_columns=[...] for a regression table",
    "regression": "it is a regression data set (inputs x, targets y): use model=mdn, or "
                  "data=file without data.target_columns to fit a density to all columns",
    "images": "it is labelled image data for classifiers: use model=gmm_classifier or "
              "model=cnn_linear",
}


def check_kind(module_class: type, datamodule: Any) -> None:
    """The kind part of :func:`check_data`, from the LightningModule's class alone (``train``
    calls it before building the model, whose sizes may depend on the kind)."""
    kind = getattr(datamodule, "kind", None)
    need = module_class.data_kind
    if kind is None or kind == need:
        return
    wants, lacks = _NEEDS[need]
    raise ValueError(f"{module_class.__name__} {wants}, but {type(datamodule).__name__} "
                     f"{lacks}; {_FIX[kind]}.")


_UNITS = {"num_features": "features", "num_targets": "target dimensions",
          "num_classes": "classes"}


def check_data(module: Any, datamodule: Any) -> None:
    """Raise a ``ValueError`` naming the fix when ``datamodule`` does not fit ``module``.

    Args:
        module: a LightningModule with ``data_kind`` and ``model_sizes()``.
        datamodule: a DataModule with ``kind`` and ``sizes()`` (other DataModules pass: the
            module's own checks of the batches then apply).
    """
    if getattr(datamodule, "kind", None) is None:
        return
    check_kind(type(module), datamodule)
    sizes = datamodule.sizes()
    for path, want in module.model_sizes().items():
        got = sizes.get(path.rsplit(".", 1)[-1])
        if got is not None and int(want) != int(got):
            unit = _UNITS.get(path.rsplit(".", 1)[-1], "")
            raise ValueError(
                f"model.net.{path}={want} but the data has {got} {unit}; drop the override (it "
                "defaults to the data's size) or load the right data."
            )
