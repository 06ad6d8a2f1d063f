"""Files: atomic writes with the usual permissions, content digests, and cache reads that survive bad files.

* Atomic writes go to a temporary file in the same folder, which is then renamed over the target, so a
  reader never sees half a file; the result gets the permissions a plain ``open(path, "w")`` would give
  (0666 minus the process umask: ``tempfile.mkstemp`` alone would leave 0600).
* :func:`read_json` / :func:`read_npz` return ``None`` (with a warning naming the file and the reason) for
  a missing, unreadable, corrupt or incomplete cache entry, so that the caller recomputes it instead of
  crashing on every rerun.
* :func:`digest` hashes arrays, strings and the weights of Keras models (cache keys, seeds).
"""

from __future__ import annotations

import hashlib
import json
import math
import os
import tempfile
import warnings
import zipfile
from pathlib import Path

import numpy as np

__all__ = ["atomic_write_text", "atomic_write_json", "atomic_savefig", "atomic_savez", "read_json", "read_npz",
           "digest", "weights_digest", "CacheWarning"]


class CacheWarning(UserWarning):
    """A cache file could not be used and its entry is recomputed."""


def _umask():
    """The process umask: read from /proc on Linux (no change to it, so no race with other threads); else
    set and restored at once (the only portable way to read it)."""
    try:
        with open("/proc/self/status", encoding="ascii") as f:
            for line in f:
                if line.startswith("Umask:"):
                    return int(line.split()[1], 8)
    except (OSError, ValueError):
        pass
    mask = os.umask(0o022)
    os.umask(mask)
    return mask


def _atomic(path, writer, suffix=""):
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=f".{path.name}.", suffix=suffix)
    os.close(fd)
    try:
        writer(tmp)
        os.chmod(tmp, 0o666 & ~_umask())
        os.replace(tmp, path)
    except BaseException:
        if os.path.exists(tmp):
            os.unlink(tmp)
        raise
    return path


def atomic_write_text(path, text):
    """Write ``text`` (UTF-8) to ``path`` atomically; returns the path."""
    def w(tmp):
        with open(tmp, "w", encoding="utf-8") as f:
            f.write(text)
    return _atomic(path, w)


def atomic_write_json(path, obj):
    """Write ``obj`` as indented JSON to ``path`` atomically (NaN and ±Inf written as null)."""
    return atomic_write_text(path, json.dumps(_clean(obj), indent=2, allow_nan=False) + "\n")


def atomic_savefig(fig, path, **kwargs):
    """Save a matplotlib figure atomically (format from the path's suffix)."""
    fmt = Path(path).suffix.lstrip(".") or "png"
    return _atomic(path, lambda tmp: fig.savefig(tmp, format=fmt, **kwargs), suffix=f".{fmt}")


def atomic_savez(path, **arrays):
    """Save NumPy arrays to ``path`` (``.npz``, uncompressed) atomically."""
    def w(tmp):
        with open(tmp, "wb") as f:
            np.savez(f, **arrays)
    return _atomic(path, w, suffix=".npz")


def _unusable(path, why):
    warnings.warn(f"ignoring cache file {path}: {why}; recomputing it", CacheWarning, stacklevel=3)
    return None


def read_json(path, required=()):
    """The JSON object in ``path``, or ``None`` if the file is missing or cannot be used.

    A file that exists but is unreadable, not valid JSON, not an object, or lacks one of the ``required``
    keys gives ``None`` and a :class:`CacheWarning` naming the file and the reason.
    """
    path = Path(path)
    if not path.exists():
        return None
    try:
        obj = json.loads(path.read_text(encoding="utf-8"))
    except (OSError, UnicodeDecodeError, json.JSONDecodeError) as e:
        return _unusable(path, f"{type(e).__name__}: {e}")
    if not isinstance(obj, dict):
        return _unusable(path, f"expected a JSON object, found {type(obj).__name__}")
    missing = [k for k in required if k not in obj]
    if missing:
        return _unusable(path, f"missing keys {missing}")
    return obj


def read_npz(path, required=()):
    """The arrays of ``path`` as a dict (loaded into memory), or ``None`` if missing or unusable
    (unreadable, not an ``.npz`` archive, truncated, or without one of the ``required`` arrays)."""
    path = Path(path)
    if not path.exists():
        return None
    try:
        with np.load(path, allow_pickle=False) as z:
            out = {k: z[k] for k in z.files}
    except (OSError, ValueError, EOFError, zipfile.BadZipFile) as e:
        return _unusable(path, f"{type(e).__name__}: {e}")
    missing = [k for k in required if k not in out]
    if missing:
        return _unusable(path, f"missing arrays {missing}")
    return out


def digest(*parts, length=16):
    """Hex SHA-256 of ``parts``: arrays (dtype, shape and bytes), strings, numbers, JSON-able objects."""
    h = hashlib.sha256()
    for p in parts:
        if isinstance(p, np.ndarray) or hasattr(p, "__array__") and not isinstance(p, (str, bytes)):
            a = np.ascontiguousarray(np.asarray(p))
            h.update(f"{a.dtype.str}{a.shape}".encode())
            h.update(a.tobytes())
        elif isinstance(p, bytes):
            h.update(p)
        else:
            h.update(json.dumps(_clean(p), sort_keys=True).encode())
        h.update(b"|")
    return h.hexdigest()[:length]


def weights_digest(model, length=16):
    """Hex SHA-256 of a Keras model's weights (order, shapes and values)."""
    return digest(*model.get_weights(), length=length)


def _clean(obj):
    if isinstance(obj, dict):
        return {str(k): _clean(v) for k, v in obj.items()}
    if isinstance(obj, (list, tuple, range)):
        return [_clean(v) for v in obj]
    if isinstance(obj, np.ndarray):
        return _clean(obj.tolist())
    if isinstance(obj, (np.floating, float)):
        v = float(obj)
        return None if math.isnan(v) or math.isinf(v) else v
    if isinstance(obj, np.integer):
        return int(obj)
    if isinstance(obj, np.bool_):
        return bool(obj)
    return obj
