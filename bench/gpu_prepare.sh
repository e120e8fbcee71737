#!/usr/bin/env bash
# Stage what bench/gpu_check.sh needs on a GPU machine that has no hub access and no alignkit install.
# Run: bash bench/gpu_prepare.sh            here, from the repository root, before lending the tree to the GPU
# Writes .gpu_cache/ (SmolLM2's tokenizer for tiny-random, the benchmark's preference pairs);
# .whl/ (hydra-core, omegaconf, antlr4-python3-runtime, datasets, dill, multiprocess, trl wheels for
# the GPU machine's Python) is expected to exist already. Carry both paths (or keep them untracked),
# never commit them.
set -euo pipefail
CACHE=${ALIGNKIT_CACHE:-$HOME/.cache/alignkit}
mkdir -p .gpu_cache/tokenizers
if [ -f "$CACHE/tokenizers/smollm2-135m-instruct/tokenizer.json" ]; then
  cp -r "$CACHE/tokenizers/smollm2-135m-instruct" .gpu_cache/tokenizers/
else  # the converted model folder holds the tokenizer too; copy only the tokenizer files
  mkdir -p .gpu_cache/tokenizers/smollm2-135m-instruct
  cp "$CACHE"/models/smollm2-135m-instruct/{tokenizer.json,tokenizer_config.json,special_tokens_map.json,chat_template.jinja} \
     .gpu_cache/tokenizers/smollm2-135m-instruct/ 2>/dev/null || true
fi
[ -f /work/shared/synth_pref_512.jsonl ] && cp /work/shared/synth_pref_512.jsonl .gpu_cache/
ls .whl/*.whl > /dev/null 2>&1 || echo "gpu_prepare: no .whl/*.whl yet (see bench/gpu_check.sh)" >&2
du -sh .gpu_cache .whl 2>/dev/null
