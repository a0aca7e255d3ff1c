"""Plain ``torch.nn.Module`` mixture models, usable without Lightning."""

from mixtures.models.cnn import ConvNet, LinearHead
from mixtures.models.dpmm import DPMM
from mixtures.models.em import EMStatistics, GaussianMixtureEM
from mixtures.models.gmm import INIT_METHODS, GaussianMixtureModel
from mixtures.models.gmm_classifier import GaussianMixtureClassifier
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
    "MixtureDensityNetwork",
    "VariationalGMM",
    "kmeans",
    "kmeans_plusplus",
]
