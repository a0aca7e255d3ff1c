"""Callbacks: divergence guard and TensorBoard figures."""

from mixtures.callbacks.divergence import DivergenceGuard
from mixtures.callbacks.figures import MixtureFigure, mixture_figure
from mixtures.callbacks.regression import RegressionFigure

__all__ = ["DivergenceGuard", "MixtureFigure", "RegressionFigure", "mixture_figure"]
