#!/usr/bin/env bash
# alignkit on one GPU, once: the engine in bf16 on a SmolLM2-135M-shaped random model, the
# accelerate launch path with FSDP and a resume, and bench/run.py against TRL (docs/scaling.md).
# Run: bash bench/gpu_check.sh            from the repository root on the GPU machine (results in $OUT/gpu_check/)
#      bash bench/gpu_check.sh --cpu      the same steps, small and on CPU (tests the script here)
# Needs, in the working tree (bench/gpu_prepare.sh stages both):
#   .whl/*.whl    hydra-core, omegaconf, antlr4-python3-runtime, datasets and its deps, trl
#   .gpu_cache/   SmolLM2's tokenizer (tokenizers/smollm2-135m-instruct) and synth_pref_512.jsonl
# The project is not installed: .gpu_pkg/alignkit/{core,plugins,conf} link to this tree, and the
# built-in plugins load from alignkit.plugins.BUILTIN_PLUGINS (no entry points needed).
set -euo pipefail
if [ "${1:-}" != "--cpu" ]; then  # --cpu: test the script where the packages are installed already
  python3 -m pip install -q --no-index --no-deps --no-compile --no-cache-dir --upgrade --target /tmp/site .whl/*.whl && export PYTHONPATH=/tmp/site:$PWD/.gpu_pkg${PYTHONPATH:+:$PYTHONPATH} \
    || { echo "gpu_check: installing .whl/*.whl failed" >&2; exit 1; }
else
  export PYTHONPATH=$PWD/.gpu_pkg${PYTHONPATH:+:$PYTHONPATH}
fi
PY=${PYTHON:-python3}
mkdir -p .gpu_pkg/alignkit
for part in core plugins conf; do ln -sfn "$PWD/$part" ".gpu_pkg/alignkit/$part"; done
if [ -d .gpu_cache/tokenizers ]; then export ALIGNKIT_CACHE=$PWD/.gpu_cache; fi
export HF_HUB_OFFLINE=1 HF_DATASETS_OFFLINE=1 TRANSFORMERS_OFFLINE=1 WANDB_MODE=disabled TOKENIZERS_PARALLELISM=false
export OUT=${OUT:-/tmp/alignkit-gpu-check-out}
command -v nvidia-smi > /dev/null && nvidia-smi --query-gpu=name,memory.total,driver_version --format=csv || true
exec "$PY" bench/gpu_check.py --out "$OUT" "$@"
