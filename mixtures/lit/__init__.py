"""LightningModules: one training regime per model family (steps, metrics, logging)."""

from mixtures.lit.base import MixtureModule
from mixtures.lit.classifier import ClassifierModule
from mixtures.lit.dpmm import DPMMModule
from mixtures.lit.dpmm_memo import MemoizedDPMMModule
from mixtures.lit.gmm_em import GMMEM
from mixtures.lit.gmm_sgd import GMMSGD
from mixtures.lit.gmm_vi import GMMVI
from mixtures.lit.mdn import MDNModule

__all__ = [
    "ClassifierModule", "DPMMModule", "GMMEM", "GMMSGD", "GMMVI", "MDNModule",
    "MemoizedDPMMModule", "MixtureModule",
]
