"""Plain ``torch.nn.Module`` mixture models, usable without Lightning."""

from mixtures.models.base import MixtureDensity
from mixtures.models.cnn import ConvNet, LinearHead
from mixtures.models.dpmm import DPMM
from mixtures.models.em import EMStatistics, GaussianMixtureEM
from mixtures.models.gmm import GaussianMixtureModel
from mixtures.models.gmm_classifier import GaussianMixtureClassifier
from mixtures.models.init import INIT_METHODS, initial_responsibilities
from mixtures.models.kmeans import kmeans, kmeans_plusplus
from mixtures.models.mdn import MixtureDensityNetwork
from mixtures.models.vi import VariationalGMM

__all__ = [
    "ConvNet",
    "DPMM",
    "EMStatistics",
    "GaussianMixtureClassifier",
    "GaussianMixtureEM",
    "GaussianMixtureModel",
    "INIT_METHODS",
    "LinearHead",
    "MixtureDensity",
    "MixtureDensityNetwork",
    "VariationalGMM",
    "initial_responsibilities",
    "kmeans",
    "kmeans_plusplus",
]
