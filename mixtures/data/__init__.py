"""LightningDataModules: in-memory tensors served in large batches.

Each declares its ``kind`` (a key of :data:`DATA_KINDS`) and its ``sizes()``; a
:class:`Standardizer` fitted on the training split maps features / targets to and from the
original units.
"""

from mixtures.data.base import DATA_KINDS, InMemoryDataModule
from mixtures.data.batches import TensorBatches
from mixtures.data.blobs import BlobsDataModule, make_blobs
from mixtures.data.file import FileDataModule, load_array
from mixtures.data.mnist import MNISTDataModule
from mixtures.data.regression import (
    HeteroscedasticDataModule,
    InverseSineDataModule,
    RegressionDataModule,
    RingDataModule,
    SklearnRegressionDataModule,
)
from mixtures.data.standardize import Standardizer

__all__ = [
    "DATA_KINDS",
    "BlobsDataModule",
    "FileDataModule",
    "HeteroscedasticDataModule",
    "InMemoryDataModule",
    "InverseSineDataModule",
    "MNISTDataModule",
    "RegressionDataModule",
    "RingDataModule",
    "SklearnRegressionDataModule",
    "Standardizer",
    "TensorBatches",
    "load_array",
    "make_blobs",
]
