"""The one data/model check (mixtures.lit.requirements): each pairing, each size, one message."""

from __future__ import annotations

import lightning as L
import pytest

from mixtures.data import BlobsDataModule, InverseSineDataModule
from mixtures.lit import GMMEM, GMMSGD, GMMVI, ClassifierModule, DPMMModule, MDNModule
from mixtures.lit.requirements import check_data, check_kind
from mixtures.models import GaussianMixtureModel, MixtureDensityNetwork


@pytest.mark.parametrize("module", [GMMSGD, GMMEM, DPMMModule, GMMVI])
def test_density_models_on_regression_data(module):
    with pytest.raises(ValueError, match="InverseSineDataModule is not such a data set; it is a "
                                         "regression data set.*use model=mdn"):
        check_kind(module, InverseSineDataModule(num_samples=100))
    check_kind(module, BlobsDataModule(num_samples=100))  # the right kind passes


def test_the_mdn_and_the_classifier_on_points():
    blobs = BlobsDataModule(num_samples=100)
    with pytest.raises(ValueError, match="MDNModule needs regression targets, but "
                                         "BlobsDataModule has none; it holds unlabelled points"):
        check_kind(MDNModule, blobs)
    with pytest.raises(ValueError, match="needs labelled image data: use data=mnist"):
        check_kind(ClassifierModule, blobs)


def test_sizes_are_compared_with_the_data():
    blobs = BlobsDataModule(num_samples=100, num_features=2)
    check_data(GMMSGD(GaussianMixtureModel(3, 2)), blobs)
    with pytest.raises(ValueError, match="model.net.num_features=3 but the data has 2 features"):
        check_data(GMMSGD(GaussianMixtureModel(3, 3)), blobs)
    sine = InverseSineDataModule(num_samples=100)
    with pytest.raises(ValueError, match="model.net.num_targets=2 but the data has 1 target"):
        check_data(MDNModule(MixtureDensityNetwork(1, 2)), sine)


def test_other_datamodules_are_not_judged():
    """A DataModule that declares nothing (not one of ours) is left to the module's own checks."""
    check_data(GMMSGD(GaussianMixtureModel(3, 2)), L.LightningDataModule())
    check_data(GMMSGD(GaussianMixtureModel(3, 2)), None)
