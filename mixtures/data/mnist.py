"""MNIST digits (``data=mnist``) for the classifiers: tensors on the device, served in slices.

The four IDX files are read by ``torchvision.datasets.MNIST`` from ``<data_dir>/MNIST/raw``
(downloaded when ``download=true`` and online, or built offline by
``python scripts/prepare_mnist.py --data-dir <data_dir>``). Splits are fixed, not random: the
first 50k training digits train, the last 10k validate (the classic deeplearning.net split), the
10k test digits test. Pixels are scaled to [0, 1] and normalised by the usual training mean and
standard deviation (0.1307, 0.3081); images are served flattened, ``x [B, 784]``, and the
networks reshape them. Optional augmentation shifts each training image by up to ``shift``
pixels on the device, per batch.

Out-of-distribution sets that need no download (:meth:`MNISTDataModule.ood_sets`), each made
from a batch of test digits: ``noise`` (uniform pixels in [0, 1]), ``shuffled`` (each digit's
pixels randomly permuted), ``inverted`` (1 − pixel), ``rotated`` (90° anticlockwise). With
``classes=[0, 1, 2, 3, 4, 5]`` only those digits train, validate and test (labels keep their
digit values), and the test digits of the other classes form the split ``heldout`` — the
open-set protocol.

Letters: N points, B batch, D = 784 pixels.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import torch
from torch import Tensor

from mixtures.data.base import InMemoryDataModule

__all__ = ["MNISTDataModule", "OOD_TRANSFORMS", "shift_images"]

#: the out-of-distribution sets made from test digits (besides ``heldout``)
OOD_TRANSFORMS = ("noise", "shuffled", "inverted", "rotated")

MEAN, STD = 0.1307, 0.3081
SIDE = 28


def shift_images(x: Tensor, max_shift: int, generator: torch.Generator | None = None) -> Tensor:
    """Shift every flattened image ``[B, 784]`` by its own random offset in
    ``[-max_shift, max_shift]`` pixels along each axis, filling with the background value.

    The background is the image's minimum pixel value (0 before normalisation, −mean/std
    after), taken over the whole batch.
    """
    if max_shift <= 0 or x.shape[0] == 0:
        return x
    b, s = x.shape[0], max_shift
    img = x.reshape(b, SIDE, SIDE)
    background = float(x.min())
    padded = torch.nn.functional.pad(img, (s, s, s, s), value=background)  # [B, 28+2s, 28+2s]
    offsets = torch.randint(0, 2 * s + 1, (2, b), generator=generator,
                            device=generator.device if generator is not None else "cpu")
    offsets = offsets.to(x.device)
    base = torch.arange(SIDE, device=x.device)
    rows = (base[None, :] + offsets[0][:, None])[:, :, None]  # [B, 28, 1]
    cols = (base[None, :] + offsets[1][:, None])[:, None, :]  # [B, 1, 28]
    batch = torch.arange(b, device=x.device)[:, None, None]
    return padded[batch, rows, cols].reshape(b, SIDE * SIDE)


class MNISTDataModule(InMemoryDataModule):
    """The MNIST digits, 50k / 10k / 10k.

    Args:
        data_dir: folder holding ``MNIST/raw`` (the four IDX files).
        download: let torchvision download the files when they are missing (needs internet).
        batch_size: training batch size.
        eval_batch_size: validation / test batch size (None: one batch).
        normalize: subtract 0.1307 and divide by 0.3081.
        shift: augmentation: random shifts of up to this many pixels (0: none).
        limit_train: use only the first N training digits (None: all 50k), e.g. for tests.
        limit_eval: use only the first N validation and test digits (None: all).
        num_val: digits held out for validation from the end of the 60k training file.
        split_seed: seed of the shuffles and of the augmentation.
        shuffle: reshuffle the training digits every epoch.
        classes: train, validate and test on these digits only (None: all ten); the test
            digits of the others are the split ``heldout`` (an out-of-distribution set).
    """

    #: labelled images (``model=gmm_classifier`` / ``cnn_linear`` need this)
    kind = "images"
    image_shape = (1, SIDE, SIDE)

    def __init__(
        self,
        data_dir: str = "data",
        download: bool = False,
        batch_size: int | None = 128,
        eval_batch_size: int | None = 1000,
        normalize: bool = True,
        shift: int = 0,
        limit_train: int | None = None,
        limit_eval: int | None = None,
        num_val: int = 10_000,
        split_seed: int = 0,
        shuffle: bool = True,
        classes: list[int] | None = None,
    ) -> None:
        super().__init__(batch_size=batch_size, eval_batch_size=eval_batch_size,
                         val_fraction=0.0, test_fraction=0.0, split_seed=split_seed,
                         shuffle=shuffle)
        for name, value in (("limit_train", limit_train), ("limit_eval", limit_eval)):
            if value is not None and (not isinstance(value, int) or value < 1):
                raise ValueError(f"data.{name} must be a positive integer or null, got {value!r}.")
        if not isinstance(shift, int) or not 0 <= shift < SIDE // 2:
            raise ValueError(f"data.shift must be an integer in [0, 13], got {shift!r}; e.g. 2.")
        self.data_dir, self.download = str(data_dir), bool(download)
        self.normalize, self.shift = normalize, shift
        self.limit_train, self.limit_eval, self.num_val = limit_train, limit_eval, num_val
        if classes is not None:
            classes = list(classes)
            if (not classes or len(set(classes)) != len(classes)
                    or not all(isinstance(c, int) and 0 <= c <= 9 for c in classes)
                    or len(classes) == 10):
                raise ValueError(
                    f"data.classes={classes!r} must be distinct digits 0-9, at least one and "
                    "not all ten (null: all ten), e.g. data.classes=[0,1,2,3,4,5].")
        self.classes = classes
        self.num_classes = 10

    def _describe(self) -> str:
        return f"MNIST under {self.data_dir}"

    def _read(self, train: bool) -> tuple[Tensor, Tensor]:
        """``(images uint8 [N, 28, 28], labels [N])`` through torchvision."""
        from torchvision.datasets import MNIST

        raw = Path(self.data_dir) / "MNIST" / "raw"
        try:
            ds = MNIST(self.data_dir, train=train, download=self.download)
        except Exception as err:  # torchvision: "Dataset not found", or a failed download
            raise FileNotFoundError(
                f"data=mnist: no MNIST IDX files in {raw} ({type(err).__name__}: {err}). "
                f"Build them offline with `python scripts/prepare_mnist.py --data-dir "
                f"{self.data_dir}`, or, when online, set data.download=true."
            ) from err
        return ds.data, ds.targets

    def _images(self, u8: Tensor) -> Tensor:
        x = u8.reshape(u8.shape[0], -1).to(torch.get_default_dtype()) / 255.0
        return (x - MEAN) / STD if self.normalize else x

    def _ensure_loaded(self) -> None:
        if self.splits:
            return
        x_all, y_all = self._read(train=True)
        x_test, y_test = self._read(train=False)
        n = x_all.shape[0]
        if not 0 < self.num_val < n:
            raise ValueError(f"data.num_val={self.num_val} must be in (0, {n}).")
        cut = n - self.num_val
        parts: dict[str, tuple[Tensor, Tensor]] = {
            "train": (x_all[:cut], y_all[:cut]),
            "val": (x_all[cut:], y_all[cut:]),
            "test": (x_test, y_test),
        }
        if self.classes is not None:
            keep = torch.tensor(self.classes)
            x, y = parts["test"]
            out = ~torch.isin(y, keep)
            parts = {name: (x[torch.isin(y, keep)], y[torch.isin(y, keep)])
                     for name, (x, y) in parts.items()}
            parts["heldout"] = (x[out], y[out])
        for name, (x, y) in parts.items():
            limit = self.limit_train if name == "train" else self.limit_eval  # heldout too
            if limit is not None:
                x, y = x[:limit], y[:limit]
            self.splits[name] = (self._images(x), y.long())

    # -- out-of-distribution sets ------------------------------------------------------------
    def ood_split_names(self) -> tuple[str, ...]:
        """The OOD sets of the test loop: the transforms, and ``heldout`` with ``classes``."""
        return OOD_TRANSFORMS + (("heldout",) if self.classes is not None else ())

    def ood_sets(self, x: Tensor, generator: torch.Generator) -> dict[str, Tensor]:
        """The transformed copies of test digits ``x [B, 784]`` (served form, normalised or
        not), each ``[B, 784]``: ``noise``, ``shuffled``, ``inverted``, ``rotated``."""
        mean, std = (MEAN, STD) if self.normalize else (0.0, 1.0)
        pixels = x * std + mean  # [B, 784] in [0, 1]
        b = x.shape[0]
        noise = torch.rand(x.shape, generator=generator, device=x.device, dtype=x.dtype)
        perm = torch.rand(x.shape, generator=generator, device=x.device).argsort(dim=1)
        rotated = torch.rot90(pixels.reshape(b, SIDE, SIDE), 1, dims=(1, 2)).reshape(b, -1)
        sets = {"noise": noise, "shuffled": pixels.gather(1, perm), "inverted": 1.0 - pixels,
                "rotated": rotated}
        return {name: (v - mean) / std for name, v in sets.items()}

    # -- augmentation on the device, per training batch -------------------------------------
    def on_after_batch_transfer(self, batch: Any, dataloader_idx: int) -> Any:
        trainer = self.trainer
        if self.shift == 0 or trainer is None or not trainer.training:
            return batch
        x, *rest = batch
        gen = getattr(self, "_shift_gen", None)
        if gen is None or gen.device != x.device:
            gen = torch.Generator(device=x.device).manual_seed(
                self.split_seed * 7919 + trainer.global_rank
            )
            self._shift_gen = gen
        return (shift_images(x, self.shift, gen), *rest)
