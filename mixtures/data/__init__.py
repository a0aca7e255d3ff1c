"""LightningDataModules: in-memory tensors served in large batches."""

from mixtures.data.base import InMemoryDataModule, TensorBatches
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

__all__ = [
    "BlobsDataModule",
    "FileDataModule",
    "HeteroscedasticDataModule",
    "InMemoryDataModule",
    "InverseSineDataModule",
    "MNISTDataModule",
    "RegressionDataModule",
    "RingDataModule",
    "SklearnRegressionDataModule",
    "TensorBatches",
    "load_array",
    "make_blobs",
]
