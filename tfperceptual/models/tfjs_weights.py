"""Read TensorFlow.js *layers*-format weights (``model.json`` + binary shards) without network access."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np

__all__ = ["read_tfjs_weights", "assign_tfjs_weights"]

_DTYPES = {"float32": np.float32, "int32": np.int32, "uint8": np.uint8}


def read_tfjs_weights(model_dir) -> dict:
    """Return {weight name: array} from ``model_dir/model.json`` and its shards.

    Each manifest group concatenates its shard files; weights are laid out in
    manifest order, little-endian.

    Raises:
        FileNotFoundError: model.json or a shard missing.
        ValueError: a shard is shorter than its manifest says, or an unsupported dtype/quantisation.
    """
    model_dir = Path(model_dir)
    manifest_path = model_dir / "model.json"
    if not manifest_path.is_file():
        raise FileNotFoundError(f"TensorFlow.js model.json not found in {model_dir}")
    manifest = json.loads(manifest_path.read_text())["weightsManifest"]
    out = {}
    for group in manifest:
        buf = b"".join((model_dir / p).read_bytes() for p in group["paths"])
        offset = 0
        for spec in group["weights"]:
            if "quantization" in spec:
                raise ValueError(f"quantised weight {spec['name']} is not supported")
            dtype = np.dtype(_DTYPES[spec["dtype"]]).newbyteorder("<")
            count = int(np.prod(spec["shape"])) if spec["shape"] else 1
            nbytes = count * dtype.itemsize
            if offset + nbytes > len(buf):
                raise ValueError(f"shard data for {spec['name']} is truncated in {group['paths']}")
            out[spec["name"]] = np.frombuffer(buf, dtype, count, offset).reshape(spec["shape"]).astype(dtype.newbyteorder("="))
            offset += nbytes
    return out


def assign_tfjs_weights(model, weights: dict, renames=None):
    """Assign ``weights`` ({"layer/param": array}) to the layers of ``model`` by name.

    ``renames`` maps a Keras 3 parameter name to the manifest's (e.g. a
    depthwise layer's ``kernel`` is the manifest's ``depthwise_kernel``).

    Raises:
        ValueError: a model weight has no counterpart or a shape differs; or
            manifest weights are left unused.
    """
    renames = renames or {}
    used = set()
    for layer in model.layers:
        for var in layer.weights:
            param = var.name.split("/")[-1].split(":")[0]
            key = f"{layer.name}/{renames.get((type(layer).__name__, param), param)}"
            if key not in weights:
                raise ValueError(f"no TensorFlow.js weight named {key} for {var.path}")
            arr = weights[key]
            if tuple(arr.shape) != tuple(var.shape):
                raise ValueError(f"shape of {key} is {arr.shape}, the model expects {tuple(var.shape)}")
            var.assign(arr)
            used.add(key)
    unused = sorted(set(weights) - used)
    if unused:
        raise ValueError(f"TensorFlow.js weights not used by the model: {unused[:5]}")
