"""TensorBoard figures of an image classifier (``model=gmm_classifier`` / ``cnn_linear``):
a few test digits with their class posteriors, and for a Gaussian-mixture head the per-class
component usage (mean responsibility of each component over the digits of its class), and
after testing the histograms of the out-of-distribution scores (test digits vs each OOD set).

Letters: M digits drawn, H × W pixels, C classes, G components per class.
"""

from __future__ import annotations

import lightning as L
import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt  # noqa: E402
import torch  # noqa: E402
from matplotlib.figure import Figure  # noqa: E402
from torch import Tensor  # noqa: E402

from mixtures.callbacks.base import FigureCallback  # noqa: E402

__all__ = ["ClassifierFigure", "ood_figure", "posterior_figure", "usage_figure"]


def posterior_figure(images: Tensor, probs: Tensor, labels: Tensor) -> Figure:
    """Digits ``[M, H, W]`` above bar charts of their class posteriors ``[M, C]``; ``labels``
    ``[M]`` are the true classes (their bars are green)."""
    m, c = probs.shape
    fig, axes = plt.subplots(2, m, figsize=(1.6 * m, 3.4), dpi=80)
    axes = axes.reshape(2, m)
    for i in range(m):
        axes[0, i].imshow(images[i].numpy(), cmap="gray_r")
        axes[0, i].set_title(f"label {int(labels[i])}", fontsize=8)
        axes[0, i].axis("off")
        colours = ["tab:green" if k == int(labels[i]) else "tab:gray" for k in range(c)]
        axes[1, i].bar(range(c), probs[i].numpy(), color=colours)
        axes[1, i].set_ylim(0, 1)
        axes[1, i].set_xticks(range(c))
        axes[1, i].tick_params(labelsize=6)
        if i:
            axes[1, i].set_yticks([])
    fig.suptitle("test digits: p(c | x)", fontsize=9)
    fig.tight_layout()
    return fig


def usage_figure(usage: Tensor) -> Figure:
    """Heat map of the component usage ``[C, G]`` (rows sum to 1)."""
    c, g = usage.shape
    fig, ax = plt.subplots(figsize=(1.2 + 0.5 * g, 3.5), dpi=80)
    im = ax.imshow(usage.numpy(), vmin=0, vmax=1, cmap="viridis", aspect="auto")
    ax.set_xlabel("component g")
    ax.set_ylabel("class c")
    ax.set_xticks(range(g))
    ax.set_yticks(range(c))
    fig.colorbar(im, ax=ax)
    ax.set_title("mean p(g | x, c)", fontsize=9)
    fig.tight_layout()
    return fig


def ood_figure(scores: dict[str, Tensor]) -> Figure:
    """Histograms of the OOD scores (higher: more anomalous): the test digits ``scores["in"]``
    against each OOD set, one panel per set, on shared bins."""
    names = [n for n in scores if n != "in"]
    every = torch.cat([s.flatten() for s in scores.values()]).double()
    lo, hi = float(every.min()), float(every.max())
    bins = torch.linspace(lo, hi if hi > lo else lo + 1, 41).numpy()
    fig, axes = plt.subplots(1, len(names), figsize=(2.8 * len(names), 2.6), dpi=80,
                             squeeze=False)
    for ax, name in zip(axes[0], names, strict=True):
        ax.hist(scores["in"].numpy(), bins=bins, alpha=0.6, density=True, label="test digits")
        ax.hist(scores[name].numpy(), bins=bins, alpha=0.6, density=True, label=name)
        ax.set_title(name, fontsize=9)
        ax.set_yticks([])
        ax.tick_params(labelsize=6)
        ax.legend(fontsize=6)
    fig.suptitle("OOD score −log p(z) (higher: more anomalous)", fontsize=9)
    fig.tight_layout()
    return fig


class ClassifierFigure(FigureCallback):
    """After testing (and every ``every_n_epochs`` validations, and the last), log
    ``num_digits`` test digits with their posteriors and the component usage; after testing
    also the OOD score histograms (``test/ood_scores``). Does nothing for other models or
    without a TensorBoard logger.

    Args:
        every_n_epochs: period in epochs.
        num_digits: M, the test digits drawn.
    """

    def __init__(self, every_n_epochs: int = 5, num_digits: int = 8) -> None:
        super().__init__(int(every_n_epochs))
        self.num_digits = int(num_digits)

    def _draw(self, trainer: L.Trainer, pl_module: L.LightningModule, prefix: str) -> None:
        dm = trainer.datamodule
        if dm is None or not hasattr(pl_module, "class_log_likelihood"):
            return
        x, y = dm.split("test")
        x, y = x[: self.num_digits], y[: self.num_digits]
        was_training = pl_module.training
        pl_module.eval()
        with torch.no_grad():
            probs = pl_module(x).exp().float().cpu()
        pl_module.train(was_training)
        side = dm.image_shape[-1]
        images = x.float().cpu().reshape(-1, side, side)
        figs = {f"{prefix}/posteriors": posterior_figure(images, probs, y.cpu())}
        if getattr(pl_module, "component_usage", None) is not None:
            figs[f"{prefix}/component_usage"] = usage_figure(pl_module.component_usage.cpu())
        ood = getattr(pl_module, "ood_scores", None)
        if prefix == "test" and ood and len(ood) > 1:
            figs["test/ood_scores"] = ood_figure(ood)
        self.log_figures(trainer, figs, step=trainer.current_epoch)

    # *_end, not *_epoch_end: the module's own epoch-end hook has computed the usage by then
    def on_validation_end(self, trainer: L.Trainer, pl_module: L.LightningModule) -> None:
        if self.due(trainer):
            self._draw(trainer, pl_module, "val")

    def on_test_end(self, trainer: L.Trainer, pl_module: L.LightningModule) -> None:
        if self.can_log(trainer):
            self._draw(trainer, pl_module, "test")
