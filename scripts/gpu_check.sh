#!/usr/bin/env bash
# The one prepared GPU check of issue 18, for a machine with an NVIDIA GPU that receives this repository only
# (no ../shared): it installs the package with TensorFlow's CUDA libraries into its own environment, runs the
# tests marked `gpu` (tests/test_gpu.py: attacks, exact solver, an adversarial training step and the perceptual
# ball placed on the GPU and agreeing with the CPU), then the attack-speed benchmark at GPU sizes on the shipped
# MNIST and CIFAR-10 models (synthetic CIFAR-10 images, no data needed) and on a MobileNet v1 α = 0.75 at
# 224 × 224 (random weights and images: timing only), and the exact solver against the model's gradient at
# ImageNet size, and FPGAP's box ∩ mean projection (Newton against bisection). It writes $OUT/gpu_check.json
# (OUT defaults to runs/gpu_check) with every figure; under 8 minutes.
#
#   bash scripts/gpu_check.sh            # locally
#   (device tool)  run: bash scripts/gpu_check.sh   timeout_s=540
set -uo pipefail
cd "$(dirname "$0")/.."
OUT="${OUT:-runs/gpu_check}"
mkdir -p "$OUT"
export TF_CPP_MIN_LOG_LEVEL=3
start=$(date +%s)
python3 -m venv .venv-gpu
. .venv-gpu/bin/activate
python -m pip install -q --upgrade pip
pip install -q ".[test]" "tensorflow[and-cuda]>=2.21" > "$OUT/pip.log" 2>&1
nvidia-smi > "$OUT/nvidia_smi.txt" 2>&1 || true
python - <<'PY' > "$OUT/devices.json"
import json, tensorflow as tf
print(json.dumps({"tensorflow": tf.__version__, "gpus": [d.name for d in tf.config.list_physical_devices("GPU")]}))
PY
timeout 240 python -m pytest -q -m gpu tests/test_gpu.py --junitxml "$OUT/gpu_tests.xml" > "$OUT/gpu_tests.txt" 2>&1
tests_rc=$?
timeout 90 python scripts/bench_attack_speed.py --data mnist --batch 1024 --steps 50 --out "$OUT/bench_mnist" \
    > "$OUT/bench_mnist.txt" 2>&1
timeout 90 python scripts/bench_attack_speed.py --data cifar10 --synthetic --batch 1024 --steps 20 \
    --out "$OUT/bench_cifar10" > "$OUT/bench_cifar10.txt" 2>&1
timeout 120 python scripts/bench_attack_speed.py --data imagenet --synthetic --batch 64 --steps 10 \
    --methods bare_cw,bare_ce,fpgap,pgap,l1q_fw,l1q_fw_clip,l2_fw --out "$OUT/bench_imagenet" > "$OUT/bench_imagenet.txt" 2>&1
timeout 60 python scripts/bench_projection.py --out "$OUT/bench_projection.json" > "$OUT/bench_projection.txt" 2>&1
python - "$OUT" "$tests_rc" "$start" <<'PY'
import json, pathlib, sys, time
out, rc, start = pathlib.Path(sys.argv[1]), int(sys.argv[2]), int(sys.argv[3])
res = {"tests_rc": rc, "seconds": time.time() - start,
       "devices": json.loads((out / "devices.json").read_text() or "{}")}
for name in ("mnist", "cifar10", "imagenet", "projection"):
    f = out / f"bench_{name}.json"
    res[f"bench_{name}"] = json.loads(f.read_text()) if f.exists() else None
tail = (out / "gpu_tests.txt").read_text().strip().splitlines()[-1:] if (out / "gpu_tests.txt").exists() else []
res["tests_summary"] = tail[0] if tail else None
(out / "gpu_check.json").write_text(json.dumps(res, indent=1))
print(json.dumps({k: v for k, v in res.items() if not k.startswith("bench")}, indent=1))
PY
