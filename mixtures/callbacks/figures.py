"""TensorBoard figure: data coloured by assignment, with component ellipses.

For D > 2 the data, means and covariances are projected on the validation data's two leading
principal axes (``W``: means ``μ W``, covariances ``Wᵀ Σ W``).
"""

from __future__ import annotations

import math

import lightning as L
import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt  # noqa: E402
import torch  # noqa: E402
from matplotlib.figure import Figure  # noqa: E402
from matplotlib.patches import Ellipse  # noqa: E402
from torch import Tensor  # noqa: E402

from mixtures.callbacks.base import FigureCallback  # noqa: E402
from mixtures.models.base import MixtureDensity  # noqa: E402

__all__ = ["MixtureFigure", "mixture_figure", "weight_figure"]


def _projection(x: Tensor) -> Tensor:
    """Two leading principal axes ``[D, 2]`` (identity for D ≤ 2)."""
    d = x.shape[1]
    if d <= 2:
        return torch.eye(d, dtype=x.dtype, device=x.device)
    cov = torch.cov(x.T)
    _, vecs = torch.linalg.eigh(cov)
    return vecs[:, -2:].flip(-1)


def mixture_figure(x: Tensor, labels: Tensor, params: dict[str, Tensor],
                   title: str = "") -> Figure:
    """Matplotlib figure of points ``[N, D]`` coloured by ``labels`` ``[N]`` and the 1σ / 2σ
    ellipses of every component (line width ∝ weight); ``params`` holds ``weights [K]``,
    ``means [K, D]`` and ``covariances [K, D, D]``."""
    x = x.detach().double().cpu()
    means = params["means"].double().cpu()
    covs = params["covariances"].double().cpu()
    weights = params["weights"].double().cpu()
    w = _projection(x)
    xp, mp = x @ w, means @ w
    cp = w.T @ covs @ w
    fig, ax = plt.subplots(figsize=(6, 6), dpi=80)
    if xp.shape[1] == 1:  # D == 1: plot against a jitter axis
        xp = torch.cat([xp, torch.zeros_like(xp)], 1)
        mp = torch.cat([mp, torch.zeros_like(mp)], 1)
        cp = torch.diag_embed(torch.cat([cp[:, 0], torch.full_like(cp[:, 0], 1e-6)], -1))
    k = means.shape[0]
    ax.scatter(xp[:, 0], xp[:, 1], c=labels.cpu().numpy(), s=4, alpha=0.6,
               cmap="tab10" if k <= 10 else "tab20", vmin=0, vmax=(9 if k <= 10 else 19))
    vals, vecs = torch.linalg.eigh(cp)
    for j in range(k):  # drawing, not a hot path
        angle = math.degrees(math.atan2(vecs[j, 1, 1], vecs[j, 0, 1]))
        for n_std in (1.0, 2.0):
            width, height = (2 * n_std * vals[j].clamp_min(0).sqrt()).flip(0).tolist()
            ax.add_patch(Ellipse(mp[j].tolist(), width, height, angle=angle, fill=False,
                                 lw=0.5 + 4 * float(weights[j]), color="black"))
        ax.plot(*mp[j].tolist(), "k+", ms=8)
    ax.set_title(title)
    ax.set_xlabel("x₁" if x.shape[1] <= 2 else "PC 1")
    ax.set_ylabel("x₂" if x.shape[1] <= 2 else "PC 2")
    ax.autoscale_view()
    fig.tight_layout()
    return fig


def weight_figure(weights: Tensor, threshold: float | None = None, title: str = "") -> Figure:
    """Bar chart of the mixing weights ``[K]`` sorted in decreasing order (the weight spectrum
    of a Dirichlet-process mixture: how many components carry the data), on a linear axis fixed
    to [0, 1] so that equal weights draw equal bars and figures of different epochs compare."""
    w = weights.detach().double().cpu().sort(descending=True).values.clamp_min(0)
    fig, ax = plt.subplots(figsize=(6, 3), dpi=80)
    ax.bar(range(1, w.numel() + 1), w.numpy(), color="tab:blue")
    if threshold is not None:
        ax.axhline(threshold, color="tab:red", lw=1, ls="--", label=f"active > {threshold:g}")
        ax.legend(loc="upper right")
    ax.set_ylim(0.0, 1.0)
    ax.set_xlabel("component (sorted)")
    ax.set_ylabel("weight")
    ax.set_title(title)
    fig.tight_layout()
    return fig


class MixtureFigure(FigureCallback):
    """Every ``every_n_epochs`` validation epochs (and the last), log the mixture figure
    (``val/mixture``) and the weight spectrum (``val/weights``) to TensorBoard, from the
    module's injected model (a :class:`~mixtures.models.base.MixtureDensity`; other modules
    are skipped). When training ends, the figures are drawn once more from the final model
    if it changed since the last ones (a model that stops itself — EM, the DPMM — decides so
    after the validation hooks, and prunes or updates after the last figure).

    Args:
        every_n_epochs: period in epochs.
        max_points: points drawn (a fixed subset of the validation split).
    """

    def __init__(self, every_n_epochs: int = 10, max_points: int = 2000) -> None:
        super().__init__(every_n_epochs)
        self.max_points = max_points
        self._drawn: dict[str, Tensor] | None = None  # parameters of the last figures

    def on_validation_epoch_end(self, trainer: L.Trainer, pl_module: L.LightningModule) -> None:
        if self.due(trainer):
            self._draw(trainer, pl_module, f"epoch {trainer.current_epoch}")

    def on_train_end(self, trainer: L.Trainer, pl_module: L.LightningModule) -> None:
        model = getattr(pl_module, "model", None)
        if not self.can_log(trainer) or not isinstance(model, MixtureDensity):
            return
        if self._drawn is not None and _same(self._drawn, model.mixture_parameters()):
            return
        self._draw(trainer, pl_module, f"final, after {trainer.current_epoch} epochs")

    def _draw(self, trainer: L.Trainer, pl_module: L.LightningModule, title: str) -> None:
        dm, model = trainer.datamodule, getattr(pl_module, "model", None)
        if not isinstance(model, MixtureDensity) or dm is None:
            return
        x = dm.split("val")[0][: self.max_points]
        if x.shape[0] == 0:
            x = dm.split("train")[0][: self.max_points]
        with torch.no_grad():
            labels = model.predict(x.to(pl_module.device))
        params = model.mixture_parameters()
        self._drawn = {k: v.detach().clone() for k, v in params.items()}
        threshold = getattr(model, "active_threshold", None)
        self.log_figures(trainer, {
            "val/mixture": mixture_figure(x, labels, params, title=title),
            "val/weights": weight_figure(params["weights"], threshold, title=title),
        }, step=trainer.global_step)


def _same(a: dict[str, Tensor], b: dict[str, Tensor]) -> bool:
    """Whether two parameter dicts hold the same keys, shapes and values."""
    return a.keys() == b.keys() and all(
        a[k].shape == b[k].shape and torch.equal(a[k], b[k].to(a[k].device)) for k in a)
