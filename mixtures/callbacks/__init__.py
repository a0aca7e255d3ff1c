"""Callbacks: divergence guard, early stopping by evaluations, and TensorBoard figures."""

from mixtures.callbacks.base import FigureCallback
from mixtures.callbacks.classifier import ClassifierFigure
from mixtures.callbacks.divergence import DivergenceGuard
from mixtures.callbacks.early_stopping import EarlyStopping
from mixtures.callbacks.figures import MixtureFigure, mixture_figure
from mixtures.callbacks.regression import RegressionFigure

__all__ = [
    "ClassifierFigure", "DivergenceGuard", "EarlyStopping", "FigureCallback", "MixtureFigure",
    "RegressionFigure", "mixture_figure",
]
