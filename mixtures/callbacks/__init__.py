"""Callbacks: divergence guard and TensorBoard figures."""

from mixtures.callbacks.divergence import DivergenceGuard
from mixtures.callbacks.figures import MixtureFigure, mixture_figure

__all__ = ["DivergenceGuard", "MixtureFigure", "mixture_figure"]
