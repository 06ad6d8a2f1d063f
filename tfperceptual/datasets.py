"""Real-data loaders.

All loaders return images as ``(N, H, W, C)`` float32 arrays with pixels in
[0, 1] and labels as ``(N,)`` int64 arrays.  Data are read from one root
directory: the environment variable ``TFPERCEPTUAL_DATA`` if set, else
``../shared/data`` (relative to the working directory or to the repository
checkout), whose layout is described in ``../shared/data/README.md``.
"""

from __future__ import annotations

import gzip
import os
import struct
from pathlib import Path

import numpy as np

__all__ = ["data_root", "load_mnist", "read_idx", "load_sample", "DataNotFoundError"]

DATA_ENV = "TFPERCEPTUAL_DATA"
_ASSETS = Path(__file__).resolve().parent / "assets"


class DataNotFoundError(FileNotFoundError):
    """Raised when the data root or an expected file is missing."""


def data_root(root: str | os.PathLike | None = None) -> Path:
    """Return the data root directory.

    Order: the explicit ``root`` argument, the ``TFPERCEPTUAL_DATA`` environment
    variable, ``./../shared/data`` from the working directory, then
    ``../shared/data`` beside the repository checkout.

    Raises:
        DataNotFoundError: if none of these exists; the message names the
            environment variable and the expected layout.
    """
    candidates = []
    if root is not None:
        candidates.append(Path(root))
    elif os.environ.get(DATA_ENV):
        candidates.append(Path(os.environ[DATA_ENV]))
    else:
        candidates.append(Path.cwd() / ".." / "shared" / "data")
        candidates.append(Path(__file__).resolve().parents[2] / "shared" / "data")
    for c in candidates:
        if c.is_dir():
            return c.resolve()
    raise DataNotFoundError(
        f"data root not found (tried {', '.join(str(c) for c in candidates)}). "
        f"Set the environment variable {DATA_ENV} to a folder laid out as "
        "mnist/{train,t10k}-{images-idx3,labels-idx1}-ubyte.gz, "
        "cifar10/{train,test}/<class>/*.jpg, imagenet-val1300/, imagenet-val-metadata/ "
        "(see ../shared/data/README.md)."
    )


def read_idx(path: str | os.PathLike) -> np.ndarray:
    """Read an IDX file (optionally gzip-compressed) into a NumPy array.

    Supports unsigned-byte data (type code 0x08), the format of MNIST.

    Raises:
        DataNotFoundError: if the file does not exist.
        ValueError: on a bad magic number or truncated data.
    """
    path = Path(path)
    if not path.is_file():
        raise DataNotFoundError(f"IDX file not found: {path}")
    opener = gzip.open if path.suffix == ".gz" else open
    with opener(path, "rb") as f:
        raw = f.read()
    if len(raw) < 4 or raw[0] != 0 or raw[1] != 0:
        raise ValueError(f"{path}: not an IDX file (bad magic)")
    dtype_code, ndim = raw[2], raw[3]
    if dtype_code != 0x08:
        raise ValueError(f"{path}: unsupported IDX data type 0x{dtype_code:02x}")
    dims = struct.unpack(">" + "I" * ndim, raw[4 : 4 + 4 * ndim])
    data = np.frombuffer(raw, dtype=np.uint8, offset=4 + 4 * ndim)
    if data.size != int(np.prod(dims)):
        raise ValueError(f"{path}: expected {int(np.prod(dims))} values, found {data.size}")
    return data.reshape(dims)


def load_mnist(split: str = "test", root: str | os.PathLike | None = None):
    """Load MNIST from the IDX files under ``<root>/mnist``.

    Args:
        split: ``"train"`` (60,000 images) or ``"test"`` (10,000 images).
        root: data root; see :func:`data_root`.

    Returns:
        ``(images, labels)``: images ``(N, 28, 28, 1)`` float32 in [0, 1],
        labels ``(N,)`` int64 in 0..9.

    Raises:
        ValueError: unknown split.
        DataNotFoundError: data missing.
    """
    prefix = {"train": "train", "test": "t10k"}.get(split)
    if prefix is None:
        raise ValueError(f"split must be 'train' or 'test', got {split!r}")
    folder = data_root(root) / "mnist"
    images = read_idx(folder / f"{prefix}-images-idx3-ubyte.gz")
    labels = read_idx(folder / f"{prefix}-labels-idx1-ubyte.gz")
    if images.shape[0] != labels.shape[0]:
        raise ValueError(f"MNIST {split}: {images.shape[0]} images but {labels.shape[0]} labels")
    return (images.astype(np.float32) / 255.0)[..., None], labels.astype(np.int64)


def load_sample(name: str = "mnist"):
    """Load the real data sample shipped with the package.

    ``"mnist"``: the first 1,000 images of the MNIST test set (uint8 in the
    package, returned as ``(1000, 28, 28, 1)`` float32 in [0, 1]) and their
    labels ``(1000,)`` int64.
    """
    if name != "mnist":
        raise ValueError(f"no shipped sample named {name!r}; available: 'mnist'")
    with np.load(_ASSETS / "mnist_test_sample.npz") as z:
        return z["images"].astype(np.float32)[..., None] / 255.0, z["labels"].astype(np.int64)
