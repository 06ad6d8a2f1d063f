"""Real-data loaders.

All loaders return images as ``(N, H, W, C)`` float32 arrays with pixels in
[0, 1] and labels as ``(N,)`` int64 arrays.  Data are read from one root
directory: the environment variable ``TFPERCEPTUAL_DATA`` if set, else
``../shared/data`` (relative to the working directory or to the repository
checkout), whose layout is described in ``../shared/data/README.md``.
"""

from __future__ import annotations

import gzip
import hashlib
import os
import struct
import warnings
from pathlib import Path

import numpy as np
from PIL import Image
from tqdm.auto import tqdm

from .io_utils import atomic_savez, read_npz

__all__ = ["data_root", "cache_dir", "load_mnist", "load_cifar10", "load_imagenet_val", "read_idx",
           "read_image_rgb", "load_sample", "DataNotFoundError", "CIFAR10_CLASSES"]

CIFAR10_CLASSES = ["airplane", "automobile", "bird", "cat", "deer", "dog", "frog", "horse", "ship", "truck"]
CACHE_ENV = "TFPERCEPTUAL_CACHE"

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


def cache_dir() -> Path:
    """Folder for decoded-array caches: ``$TFPERCEPTUAL_CACHE`` or ``~/.cache/tfperceptual``."""
    path = Path(os.environ.get(CACHE_ENV) or Path.home() / ".cache" / "tfperceptual")
    path.mkdir(parents=True, exist_ok=True)
    return path


def read_image_rgb(path, size=None):
    """Decode an image file to an (H, W, 3) uint8 RGB array.

    Greyscale, palette, CMYK and images with an alpha channel are converted to
    RGB (an alpha channel is dropped, as PIL's ``convert("RGB")`` does).  ``size=(W, H)`` resizes bilinearly.

    Raises:
        OSError / ValueError: the file cannot be decoded (the caller reports it by name).
    """
    with Image.open(path) as im:
        im.load()
        if im.mode != "RGB":
            im = im.convert("RGB")
        if size is not None and im.size != tuple(size):
            im = im.resize(tuple(size), Image.BILINEAR)
        return np.asarray(im, dtype=np.uint8)


def _decode_files(files, size=None, desc="decode"):
    """Decode ``files``; returns (uint8 array, kept indices). Corrupt files are warned about by name."""
    arrays, kept = [], []
    for i, f in enumerate(tqdm(files, desc=desc, leave=False, disable=len(files) < 2000)):
        try:
            arrays.append(read_image_rgb(f, size))
            kept.append(i)
        except (OSError, ValueError, SyntaxError) as e:
            warnings.warn(f"skipping unreadable image {f}: {e}", stacklevel=3)
    if not arrays:
        raise DataNotFoundError(f"no readable images among {len(files)} files")
    return np.stack(arrays), np.asarray(kept, np.int64)


def load_cifar10(split: str = "test", root: str | os.PathLike | None = None, cache: bool = True):
    """Load CIFAR-10 from the folder-per-class JPEG layout ``<root>/cifar10/<split>/<class>/*.jpg``.

    Class indices follow the sorted folder names (the standard CIFAR-10 order,
    :data:`CIFAR10_CLASSES`).  The decoded arrays are cached as
    ``<cache_dir()>/cifar10_<split>.npz`` (keyed by the file list) so the
    second load is fast.  The JPEGs were re-encoded by a third party: pixels
    differ slightly from the original binary release.

    Returns:
        ``(images, labels)``: (N, 32, 32, 3) float32 in [0, 1] and (N,) int64
        (50,000 train / 10,000 test).

    Raises:
        ValueError: unknown split.  DataNotFoundError: data missing.
    """
    if split not in ("train", "test"):
        raise ValueError(f"split must be 'train' or 'test', got {split!r}")
    folder = data_root(root) / "cifar10" / split
    if not folder.is_dir():
        raise DataNotFoundError(f"CIFAR-10 folder not found: {folder} (expected cifar10/{split}/<class>/*.jpg "
                                f"under ${DATA_ENV})")
    classes = sorted(p.name for p in folder.iterdir() if p.is_dir())
    files, labels = [], []
    for k, c in enumerate(classes):
        fs = sorted((folder / c).glob("*.jpg"))
        files += fs
        labels += [k] * len(fs)
    key = hashlib.sha1("\n".join(str(f) for f in files).encode()).hexdigest()[:12]
    cpath = cache_dir() / f"cifar10_{split}_{key}.npz"
    cached = read_npz(cpath, required=("images", "labels")) if cache else None
    if cached is not None:  # a corrupt cache file is reported and decoded again
        return cached["images"].astype(np.float32) / 255.0, cached["labels"].astype(np.int64)
    images, kept = _decode_files(files, desc=f"CIFAR-10 {split}")
    labels = np.asarray(labels, np.int64)[kept]
    if cache:
        atomic_savez(cpath, images=images, labels=labels)
    return images.astype(np.float32) / 255.0, labels


def _imagenet_boxes(meta: Path, names):
    sizes, boxes = {}, {n: [] for n in names}
    with open(meta / "image_sizes.txt") as f:
        for line in f:
            path, w, h = line.strip().split(",")
            sizes[path.split("/")[-1]] = (int(w), int(h))
    with open(meta / "localization.txt") as f:
        for line in f:
            path, *xyxy = line.strip().split(",")
            name = path.split("/")[-1]
            if name in boxes:
                boxes[name].append([float(v) for v in xyxy])
    return sizes, boxes


def load_imagenet_val(root: str | os.PathLike | None = None, size: int = 227, with_boxes: bool = True,
                      as_uint8: bool = False, limit: int | None = None):
    """Load the 1,300 ImageNet validation images of ``<root>/imagenet-val1300``.

    The images there are already resized to 227 × 227 (aspect ratio not kept).
    Boxes come from ``imagenet-val-metadata/localization.txt`` in original pixel
    coordinates, which are 0-based *inclusive* pixel indices (no record has
    ``xmax = width`` or ``ymax = height``; 6,086 of 80,477 have ``xmax = width - 1``
    and 7,388 ``xmin = 0``): the box covers the continuous extent
    [xmin, xmax + 1) × [ymin, ymax + 1), which is scaled by (227 / width, 227 / height)
    from ``image_sizes.txt``.

    Returns:
        ``(images, labels, boxes, names)``: (N, 227, 227, 3) float32 in [0, 1],
        (N,) int64 class indices (0..999, order of ``synset_words.txt``), a list
        of (K_i, 4) float arrays ``[xmin, ymin, xmax, ymax]`` in the 227 × 227
        frame (continuous pixel edges: a box of the whole image is [0, 0, 227, 227]),
        and the file names.  With ``with_boxes=False`` only
        ``(images, labels)``.  ``as_uint8=True`` returns the images as uint8
        in 0..255 (a quarter of the memory; compare and the attacks' batch
        loops convert them batch by batch).  ``limit=N`` decodes only the
        first N images of ``dataset.txt``.
    """
    base = data_root(root)
    folder = base / "imagenet-val1300"
    listing = folder / "dataset.txt"
    if not listing.is_file():
        raise DataNotFoundError(f"ImageNet listing not found: {listing} (expected imagenet-val1300/dataset.txt "
                                f"and images/ under ${DATA_ENV})")
    names, labels = [], []
    with open(listing) as f:
        for line in f:
            if line.strip():
                path, label = line.rsplit(",", 1)
                names.append(path.strip().split("/")[-1])
                labels.append(int(label))
    if limit is not None:
        names, labels = names[:limit], labels[:limit]
    images, kept = _decode_files([folder / "images" / n for n in names], size=(size, size), desc="ImageNet val")
    names = [names[i] for i in kept]
    labels = np.asarray(labels, np.int64)[kept]
    if not as_uint8:
        images = images.astype(np.float32) / 255.0
    if not with_boxes:
        return images, labels
    sizes, raw = _imagenet_boxes(base / "imagenet-val-metadata", names)
    boxes = []
    for n in names:
        w, h = sizes[n]
        b = np.asarray(raw[n], np.float64).reshape(-1, 4) + np.array([0.0, 0.0, 1.0, 1.0])  # inclusive → edges
        boxes.append(b * np.array([size / w, size / h, size / w, size / h]))
    return images, labels, boxes, names
