"""LightningDataModules: in-memory tensors served in large batches."""

from mixtures.data.base import InMemoryDataModule, TensorBatches
from mixtures.data.blobs import BlobsDataModule, make_blobs
from mixtures.data.file import FileDataModule, load_array

__all__ = [
    "BlobsDataModule",
    "FileDataModule",
    "InMemoryDataModule",
    "TensorBatches",
    "load_array",
    "make_blobs",
]
