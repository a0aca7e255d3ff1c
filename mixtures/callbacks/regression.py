"""TensorBoard figures of a conditional density model (``model=mdn``), in original units.

- 1-D input, 1-D target: ``p(y | x)`` as a heat map over an (x, y) grid, the validation
  points, and one sample per grid column.
- 1-D input, 2-D target: ``p(y | x)`` over the target plane at three inputs (the 10%, 50% and
  90% quantiles of x), with samples and the validation points of nearby inputs.
- otherwise: observed vs predicted for the first target (predictive median and 90% interval
  from samples).

Plus the histogram of PIT values of the last validation epoch (flat when calibrated).
"""

from __future__ import annotations

import lightning as L
import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt  # noqa: E402
import torch  # noqa: E402
from matplotlib.colors import PowerNorm  # noqa: E402
from matplotlib.figure import Figure  # noqa: E402
from torch import Tensor  # noqa: E402

from mixtures.callbacks.base import FigureCallback  # noqa: E402

__all__ = ["RegressionFigure", "conditional_density_figure", "pit_figure"]


def _span(t: Tensor, margin: float = 0.05) -> tuple[float, float]:
    lo, hi = float(t.min()), float(t.max())
    pad = margin * (hi - lo) if hi > lo else 1.0
    return lo - pad, hi + pad


@torch.no_grad()
def conditional_density_figure(module, x: Tensor, y: Tensor, title: str = "",
                               grid: int = 150, seed: int = 0) -> Figure:
    """Figure of ``module``'s conditional density for validation data ``x [N, F]``,
    ``y [N, D]`` in original units. ``module`` provides ``log_prob_original(x, y)`` and
    ``sample_original(x, n, generator)``."""
    x, y = x.detach(), y.detach()
    dev = x.device
    gen = torch.Generator(device=dev).manual_seed(seed)
    xc, yc = x.double().cpu(), y.double().cpu()
    if x.shape[1] == 1 and y.shape[1] == 1:
        fig, ax = plt.subplots(figsize=(7, 5), dpi=80)
        (x0, x1), (y0, y1) = _span(xc), _span(yc)
        gx = torch.linspace(x0, x1, grid, device=dev, dtype=x.dtype)[:, None]  # [G, 1]
        gy = torch.linspace(y0, y1, grid, device=dev, dtype=x.dtype)  # [G]
        ygrid = gy[:, None, None].expand(grid, grid, 1)  # [G_y, G_x, 1]
        dens = module.log_prob_original(gx, ygrid).exp().cpu()  # [G_y, G_x]
        # square-root colour scale: the narrow single-valued ends do not wash out the rest
        ax.imshow(dens.numpy(), origin="lower", aspect="auto", extent=(x0, x1, y0, y1),
                  cmap="Blues", norm=PowerNorm(0.5, vmin=0.0,
                                               vmax=float(torch.quantile(dens.flatten(), 0.99))))
        ax.scatter(xc[:, 0], yc[:, 0], s=3, c="black", alpha=0.4, label="validation data")
        draws = module.sample_original(gx, 1, gen)[0].cpu()  # [G, 1]
        ax.scatter(gx.cpu()[:, 0], draws[:, 0], s=6, c="tab:red", label="samples")
        ax.set_xlabel("x")
        ax.set_ylabel("y")
        ax.legend(loc="upper left", fontsize=8)
    elif x.shape[1] == 1 and y.shape[1] == 2:
        fig, axes = plt.subplots(1, 3, figsize=(12, 4.2), dpi=80)
        (a0, a1), (b0, b1) = _span(yc[:, 0]), _span(yc[:, 1])
        ga = torch.linspace(a0, a1, grid, device=dev, dtype=x.dtype)
        gb = torch.linspace(b0, b1, grid, device=dev, dtype=x.dtype)
        plane = torch.stack(torch.meshgrid(gb, ga, indexing="ij")[::-1], -1)  # [G, G, 2]
        width = 0.05 * (float(xc.max()) - float(xc.min()))
        for ax, q in zip(axes, (0.1, 0.5, 0.9), strict=True):
            xq = torch.quantile(x[:, 0].double(), q).to(x.dtype).reshape(1, 1)  # [1, F]
            dens = module.log_prob_original(xq, plane[:, :, None, :]).exp()[..., 0].cpu()
            ax.imshow(dens.numpy(), origin="lower", aspect="auto", extent=(a0, a1, b0, b1),
                      cmap="Blues")
            near = (xc[:, 0] - float(xq)).abs() <= width
            ax.scatter(yc[near, 0], yc[near, 1], s=4, c="black", alpha=0.5, label="data")
            draws = module.sample_original(xq, 200, gen)[:, 0].cpu()  # [S, 2]
            ax.scatter(draws[:, 0], draws[:, 1], s=4, c="tab:red", alpha=0.6, label="samples")
            ax.set_title(f"x = {float(xq):.3g}")
            ax.set_xlabel("y₁")
            ax.set_ylabel("y₂")
        axes[0].legend(loc="upper left", fontsize=8)
    else:
        fig, ax = plt.subplots(figsize=(6, 6), dpi=80)
        draws = module.sample_original(x, 200, gen)[..., 0].cpu()  # [S, N]
        lo, mid, hi = torch.quantile(draws, torch.tensor([0.05, 0.5, 0.95]).to(draws), dim=0)
        ax.errorbar(yc[:, 0], mid, yerr=torch.stack([mid - lo, hi - mid]).numpy(), fmt="o",
                    ms=2, lw=0.5, alpha=0.6, label="median, 90% interval")
        ends = _span(yc[:, 0])
        ax.plot(ends, ends, "k--", lw=1)
        ax.set_xlabel("observed y₁")
        ax.set_ylabel("predicted y₁")
        ax.legend(loc="upper left", fontsize=8)
    fig.suptitle(title)
    fig.tight_layout()
    return fig


def pit_figure(histogram: Tensor, title: str = "") -> Figure:
    """Bar chart of PIT histograms ``[D, bins]`` (one colour per target dimension); the dashed
    line is the flat histogram of a calibrated model."""
    hist = histogram.double().cpu()
    d, bins = hist.shape
    freq = hist / hist.sum(-1, keepdim=True).clamp_min(1) * bins  # density on [0, 1]
    fig, ax = plt.subplots(figsize=(6, 3), dpi=80)
    centres = (torch.arange(bins, dtype=torch.float64) + 0.5) / bins
    width = 1.0 / bins / d
    for j in range(d):  # drawing, not a hot path
        ax.bar(centres - 0.5 / bins + (j + 0.5) * width, freq[j].numpy(), width=width,
               label=f"y{j + 1}" if d > 1 else None)
    ax.axhline(1.0, color="black", ls="--", lw=1)
    ax.set_xlabel("PIT  F(y | x)")
    ax.set_ylabel("density")
    if d > 1:
        ax.legend(fontsize=8)
    ax.set_title(title)
    fig.tight_layout()
    return fig


class RegressionFigure(FigureCallback):
    """Every ``every_n_epochs`` validation epochs (and the last), log the conditional density
    figure (``val/conditional_density``) and the PIT histogram (``val/pit``) to TensorBoard.
    Does nothing for modules without ``sample_original``.

    Args:
        every_n_epochs: period in epochs.
        max_points: validation points drawn.
    """

    def __init__(self, every_n_epochs: int = 25, max_points: int = 2000) -> None:
        super().__init__(every_n_epochs)
        self.max_points = max_points

    def on_validation_epoch_end(self, trainer: L.Trainer, pl_module: L.LightningModule) -> None:
        dm = trainer.datamodule
        if not self.due(trainer) or dm is None or not hasattr(pl_module, "sample_original"):
            return
        epoch = trainer.current_epoch
        x, y = dm.split("val")
        if x.shape[0] == 0:
            x, y = dm.split("train")
        x, y = x[: self.max_points].to(pl_module.device), y[: self.max_points].to(pl_module.device)
        # back to the data's original units (the module models the standardised data)
        x, y = pl_module.x_standardizer.inverse(x), pl_module.y_standardizer.inverse(y)
        figs = {"val/conditional_density": conditional_density_figure(
            pl_module, x, y, title=f"epoch {epoch}")}
        if pl_module.pit_histogram is not None:
            figs["val/pit"] = pit_figure(pl_module.pit_histogram, title=f"epoch {epoch}")
        self.log_figures(trainer, figs, step=trainer.global_step)
