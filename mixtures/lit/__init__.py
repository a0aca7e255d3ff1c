"""LightningModules: one training regime per model family (steps, metrics, logging)."""

from mixtures.lit.gmm_sgd import GMMSGD

__all__ = ["GMMSGD"]
