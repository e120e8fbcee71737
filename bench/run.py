#!/usr/bin/env python
"""alignkit vs TRL on identical work: one configuration per subprocess, strictly sequential.

    python bench/run.py --model tiny-random --task sft [--lora] [--steps 20] [--warmup 3]
    python bench/run.py --model tiny-random --task dpo            # alignkit precompute + copy, TRL default + precompute
    python bench/run.py --model tiny-random --task reward         # Bradley-Terry reward model vs TRL RewardTrainer
    python bench/run.py --model tiny-random --task grpo --steps 10  # alignkit grpo vs TRL GRPOTrainer (also: rloo)
    python bench/run.py --model tiny-random --task online_dpo       # alignkit online_dpo vs TRL OnlineDPOTrainer
    python bench/run.py --all                                     # the matrix (see MATRIX)
    python bench/run.py --seqlen 128 256 512                      # alignkit tiny SFT cost vs max_length

Protocol (docs/benchmarks.md, /work/shared/TRL-BASELINE.md): the same weights (the tiny model is
built once by alignkit's loader and saved, TRL loads that folder; SmolLM2 is alignkit's converted
safetensors folder), the same rows in the same order (alignkit's shuffle of the training rows, fed
to TRL in that order through a sequential sampler), batch 8, max_length 256, fp32, 2 torch threads,
fused AdamW, the same learning rate and schedule, seed 42, no evaluation, no checkpoints;
``--warmup`` untimed optimizer steps then ``--steps`` timed ones.

alignkit runs through its product path (``run_pipeline`` on a config composed exactly like the
``alignkit`` CLI does); its per-step times are the engine's ``step_seconds`` in metrics.jsonl.
TRL's step time is the wall clock between successive ``on_step_end`` callbacks.

``--task grpo`` / ``--task rloo`` (on-policy, TRL-BASELINE.md's protocol): 8 completions per step =
2 prompts x 4 samples, exactly 64 new tokens (``min_new_tokens``), temperature 1, reward 1 when the
row's answer string is in the completion, learning rate 1e-6 constant, one update per batch; GRPO
with beta 0 (no reference model on either side), RLOO with beta 0.05 (KL in the reward, a reference
copy on both sides). The prompts of each step are alignkit's (``prompt_indices``), fed to TRL in
that order (``shuffle_dataset=False``). A step is generation + scoring + reference + update on both
sides: alignkit's ``time/step_seconds``, TRL's wall clock between ``on_step_end`` callbacks; tokens are
prompt + completion tokens of the 8 sequences the policy's training forward processes.

``--task online_dpo``: the same 8 completions per step as 4 prompts x 2 samples, the same reward, then
one sigmoid-DPO step (beta 0.1, TRL's default learning rate 5e-7) against a frozen reference copy on
both sides; a tie (both samples scored alike) still trains with the first sample as chosen, as TRL
does (alignkit ``optimizer.ties=keep``), so both sides run the same forwards and backwards.
"""

from __future__ import annotations

import argparse
import json
import os
import random
import shutil
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

BENCH_DIR = Path(__file__).resolve().parent
RESULTS_DIR = BENCH_DIR / "results"
DEFAULT_DATA = "/work/shared/synth_pref_512.jsonl"
WORK = Path(os.environ.get("ALIGNKIT_BENCH_WORK", Path(tempfile.gettempdir()) / "alignkit-bench"))
MODELS = ("tiny-random", "smollm2-135m-instruct", "smollm2-random")
SHORT = {"tiny-random": "tiny", "smollm2-135m-instruct": "smol", "smollm2-random": "smolr"}
TINY_OPTIONS = {"hidden_size": 64, "num_hidden_layers": 2, "num_attention_heads": 4, "num_key_value_heads": 4,
                "intermediate_size": 256, "seed": 0}
SMOLLM2_SHAPE = {"hidden_size": 576, "num_hidden_layers": 30, "num_attention_heads": 9, "num_key_value_heads": 3,
                 "intermediate_size": 1536, "rope_theta": 100000.0, "seed": 0}
"""``--model smollm2-random``: ``tiny-random`` built in SmolLM2-135M's shape (random weights, nothing to download)."""
DEVICE = "cpu"  # --device; cuda: both sides in bf16 autocast on fp32 weights
LEARNING_RATE = {"sft": 5e-5, "dpo": 5e-6, "reward": 5e-5,  # alignkit's defaults; TRL gets the same explicitly
                 "grpo": 1e-6, "rloo": 1e-6, "online_dpo": 5e-7}
ONLINE = ("grpo", "rloo", "online_dpo")  # on-policy tasks: generation inside every step
ONLINE_BETA = {"grpo": 0.0, "rloo": 0.05, "online_dpo": 0.1}  # TRL 1.16's defaults (TRL-BASELINE.md); DPO's beta
GENERATIONS = {"grpo": 4, "rloo": 4, "online_dpo": 2}  # samples per prompt
COMPLETION_TOKENS = 64
WARMUP_RATIO = 0.1  # alignkit's default linear warm-up; TRL gets int(0.1 * total) warm-up steps
SEED = 42
THREADS = 2

# (model, task, lora, timed steps or None for --steps); DPO rows use fewer steps, as TRL-BASELINE.md did
MATRIX = [
    ("tiny-random", "sft", False, None),
    ("tiny-random", "dpo", False, 10),
    ("tiny-random", "sft", True, None),
    ("tiny-random", "dpo", True, 10),
    ("smollm2-135m-instruct", "sft", False, 10),
    ("smollm2-135m-instruct", "dpo", False, 5),
    ("smollm2-135m-instruct", "sft", True, 10),
    ("smollm2-135m-instruct", "dpo", True, 5),
    ("tiny-random", "reward", False, None),
    ("smollm2-135m-instruct", "reward", False, 10),
    ("tiny-random", "grpo", False, 10),
    ("tiny-random", "rloo", False, 10),
]


# ------------------------------------------------------------------------------------
# shared helpers (parent and children)
# ------------------------------------------------------------------------------------


def read_jsonl(path: str | Path) -> list[dict]:
    with open(path, encoding="utf-8") as fh:
        return [json.loads(line) for line in fh if line.strip()]


def alignkit_order(n: int, batch_size: int, steps: int, seed: int = SEED) -> list[int]:
    """Row indices in the order alignkit's SFT/DPO tasks train on them (epoch 0, then 1, ...).

    Mirrors ``SFTTask.batches`` / ``DPOTask.batches``: ``random.Random(seed * 1000 + epoch)``
    shuffles the training rows, full batches only. The alignkit child checks this against the
    task's own ``batches()``.
    """
    out: list[int] = []
    epoch = 0
    while len(out) < steps * batch_size:
        order = list(range(n))
        random.Random(seed * 1000 + epoch).shuffle(order)
        usable = len(order) - len(order) % batch_size
        out.extend(order[:usable])
        epoch += 1
    return out[: steps * batch_size]


def vm_hwm_mb() -> float:
    with open("/proc/self/status") as fh:
        for line in fh:
            if line.startswith("VmHWM:"):
                return int(line.split()[1]) / 1024
    return float("nan")


def cuda_peak_mb() -> float | None:
    import torch

    return torch.cuda.max_memory_allocated() / 2**20 if torch.cuda.is_available() else None


def alignkit_model_overrides(model: str) -> list[str]:
    """``model=...`` overrides; ``smollm2-random`` is ``tiny-random`` with SmolLM2's shape."""
    if model != "smollm2-random":
        return [f"model={model}"]
    return ["model=tiny-random", *(f"{'' if k in TINY_OPTIONS else '+'}model.options.{k}={v}"
                                   for k, v in SMOLLM2_SHAPE.items())]


def cpu_busy_seconds() -> float:
    """Busy CPU time of the whole machine (all processes) from /proc/stat."""
    with open("/proc/stat") as fh:
        fields = [int(v) for v in fh.readline().split()[1:]]
    user, nice, system, idle, iowait, irq, softirq, steal = (fields + [0] * 8)[:8]
    return (user + nice + system + irq + softirq + steal) / os.sysconf("SC_CLK_TCK")


# ------------------------------------------------------------------------------------
# child: alignkit
# ------------------------------------------------------------------------------------


def child_alignkit(spec: dict) -> dict:
    import torch

    torch.set_num_threads(spec["threads"])
    from alignkit.core import hookimpl
    from alignkit.core.pipeline import as_hydra_job, run_pipeline
    from alignkit.core.registry import Registry
    from hydra import compose as hydra_compose
    from hydra import initialize_config_module

    from alignkit.core.cli import CONFIG_MODULE, CONFIG_NAME, rewrite_overrides

    t_start = time.perf_counter()
    total = spec["warmup"] + spec["steps"]
    lr = spec["lr"]
    overrides = [
        *alignkit_model_overrides(spec["model"]),
        "logger=none",
        f"trainer.max_steps={total}",
        f"trainer.batch_size={spec['batch_size']}",
        f"trainer.max_length={spec['max_length']}",
        f"trainer.num_threads={spec['threads']}",
        f"trainer.learning_rate={lr}",
        f"trainer.warmup_ratio={WARMUP_RATIO}",
        f"trainer.seed={SEED}",
        "trainer.checkpoint_every=0",
        "trainer.progress=false",
        "trainer.grad_accum=1",
        f"trainer.mixed_precision={'bf16' if spec.get('device') == 'cuda' else 'no'}",
        "trainer.gradient_checkpointing=false",
        "data=files",
        "data.eval_fraction=0",  # no held-out split: every row trains, no evaluation cost anywhere
    ]
    if spec["lora"]:
        overrides += ["trainer.lora=true", "trainer.lora_r=16", "trainer.lora_alpha=32", "trainer.lora_dropout=0.0",
                      "trainer.lora_target_modules=all-linear"]
    if spec["task"] == "sft":
        overrides += ["pipeline=sft", f"data.sft={spec['sft_file']}",
                      "pipeline.stages=[{name:sft,optimizer:sft,requires:sft}]"]  # the timed work only: no evaluate stage
    elif spec["task"] == "reward":  # preferences only: the optional SFT stage is skipped, no evaluation
        overrides += ["pipeline=reward_model", f"data.preferences={spec['pref_file']}",
                      "pipeline.stages=[{name:reward_model,optimizer:reward,requires:preferences}]"]
    else:  # preferences only: the optional SFT stage of pipeline=dpo is skipped
        overrides += ["pipeline=dpo", f"data.preferences={spec['pref_file']}", "optimizer.beta=0.1",
                      "optimizer.loss_type=sigmoid", f"optimizer.reference={spec['reference']}",
                      f"optimizer.trainer.learning_rate={lr}", "pipeline.stages=[{name:dpo,optimizer:dpo,requires:preferences}]"]

    registry = Registry()
    step_ends: list[tuple[int, float]] = []

    class Probe:  # a plugin, as any user's would be: records when each step was logged
        @hookimpl
        def alignkit_after_step(self, run, stage, step, metrics):
            if "step_seconds" in metrics:
                step_ends.append((step, time.perf_counter()))

    registry.pm.register(Probe(), name="bench-probe")
    loads: list[float] = []
    tokenizers: list = []
    original_load = registry.load_model

    def timed_load(spec_, role="policy"):
        t = time.perf_counter()
        loaded = original_load(spec_, role)
        loads.append(time.perf_counter() - t)
        tokenizers.append(loaded.tokenizer)
        return loaded

    registry.load_model = timed_load
    precompute: list[float] = []
    if spec["task"] == "dpo":
        from alignkit.plugins.dpo import dpo as dpo_mod

        original_fill = dpo_mod.ReferenceCache.fill

        def timed_fill(self, *args, **kwargs):
            t = time.perf_counter()
            try:
                return original_fill(self, *args, **kwargs)
            finally:
                precompute.append(time.perf_counter() - t)

        dpo_mod.ReferenceCache.fill = timed_fill

    # Composed exactly as the ``alignkit`` CLI composes it (plugin config roots on the search path).
    from alignkit.core.config_defaults import register_config_defaults

    register_config_defaults(registry)  # the option files' schema defaults, as the CLI registers them
    with initialize_config_module(config_module=CONFIG_MODULE, version_base="1.3"):
        args = rewrite_overrides(overrides, registry.config_searchpath())
        cfg = as_hydra_job(hydra_compose(CONFIG_NAME, overrides=args, return_hydra_config=True))  # command-line precedence
    run_dir = Path(spec["run_dir"])
    t_run = time.perf_counter()
    run_pipeline(cfg, run_dir, registry)
    t_end = time.perf_counter()
    peak_train = vm_hwm_mb()

    records = [r for r in read_jsonl(run_dir / "metrics.jsonl") if "step_seconds" in r]
    stage = {"sft": "sft", "dpo": "dpo", "reward": "reward_model"}[spec["task"]]
    records = [r for r in records if r["stage"] == stage]
    summary = json.loads((run_dir / "summary.json").read_text())
    first_start = step_ends[0][1] - records[0]["step_seconds"]

    # The rows each step trained on (from the task's own batches()) and their token counts.
    tokenizer = tokenizers[0]
    from alignkit.plugins.data.plugin import FilesDataSource
    from alignkit.core.engine import TrainerConfig

    settings = TrainerConfig(batch_size=spec["batch_size"], max_length=spec["max_length"], seed=SEED)
    if spec["task"] == "sft":
        from alignkit.plugins.sft.sft import SFTConfig, SFTTask, encode_sft

        rows = FilesDataSource(sft=spec["sft_file"], eval_fraction=0).sft("train")
        encoded, dropped = encode_sft(tokenizer, rows, spec["max_length"], True)
        task = SFTTask(encoded, [], settings, SFTConfig(), 0)
        lengths = [len(e.input_ids) for e in encoded]
        scored = [sum(e.scored[1:]) for e in encoded]
    elif spec["task"] == "reward":
        from alignkit.plugins.reward.trainer import RewardConfig, RewardTask
        from alignkit.plugins.reward.trainer import encode_pairs as encode_reward_pairs

        rows = FilesDataSource(preferences=spec["pref_file"], eval_fraction=0).preferences("train")
        encoded, dropped = encode_reward_pairs(tokenizer, rows, spec["max_length"])
        task = RewardTask(RewardConfig(), encoded, [], settings, tokenizer.pad_token_id or 0)
        lengths = [len(p.chosen.input_ids) + len(p.rejected.input_ids) for p in encoded]
        scored = [2 for _ in encoded]  # one reward read out per sequence
    else:
        from alignkit.plugins.dpo.dpo import DPOTask, encode_pairs

        rows = FilesDataSource(preferences=spec["pref_file"], eval_fraction=0).preferences("train")
        encoded, dropped = encode_pairs(tokenizer, rows, spec["max_length"])
        task = DPOTask(None, encoded, [], settings, None)
        lengths = [len(p.chosen.input_ids) + len(p.rejected.input_ids) for p in encoded]
        scored = [sum(p.chosen.scored[1:]) + sum(p.rejected.scored[1:]) for p in encoded]
    batches = []
    epoch = 0
    while len(batches) < total:
        batches.extend(task.batches(epoch))
        epoch += 1
    batches = batches[:total]
    order = [i for b in batches for i in b]
    expected = alignkit_order(len(encoded), spec["batch_size"], total)
    step_tokens = [sum(lengths[i] for i in b) for b in batches]
    if spec["task"] == "sft":  # cross-check against what the engine logged
        logged = [int(r["sequence_tokens"]) for r in records]
        assert logged == step_tokens[: len(logged)], (logged, step_tokens)

    return {
        "step_seconds": [r["step_seconds"] for r in records],
        "step_wall": [b - a for (_, a), (_, b) in zip(step_ends, step_ends[1:])],  # end-to-end, like TRL's
        "step_windows": [(t - r["step_seconds"], t) for (_, t), r in zip(step_ends, records)],
        "step_tokens": step_tokens,
        "step_scored_tokens": [sum(scored[i] for i in b) for b in batches],
        "losses": [r.get("loss") for r in records],
        "order_matches_protocol": order == expected,
        "rows_dropped": dropped,
        "load_seconds": loads[0] if loads else None,
        "setup_seconds": first_start - t_run - (loads[0] if loads else 0.0),
        "precompute_seconds": sum(precompute) if precompute else None,
        "precompute_pairs": total * spec["batch_size"] if precompute else None,
        "after_train_seconds": t_end - step_ends[-1][1],
        "stage_seconds": summary["stages"][stage]["metrics"].get("stage_seconds"),
        "import_seconds": t_run - t_start,
        "peak_rss_mb_train": peak_train,
        "peak_cuda_mb": cuda_peak_mb(),
        "params": None,
    }


# ------------------------------------------------------------------------------------
# child: TRL
# ------------------------------------------------------------------------------------


def child_trl(spec: dict) -> dict:
    import torch

    torch.set_num_threads(spec["threads"])
    from datasets import Dataset
    from transformers import AutoModelForCausalLM, AutoTokenizer, TrainerCallback

    total = spec["warmup"] + spec["steps"]
    t0 = time.perf_counter()
    tokenizer = AutoTokenizer.from_pretrained(spec["tokenizer_dir"])
    if spec["task"] == "reward":  # a scalar head on the same backbone, as alignkit builds it
        from transformers import AutoModelForSequenceClassification

        model = AutoModelForSequenceClassification.from_pretrained(spec["model_dir"], num_labels=1,
                                                                   dtype=torch.float32)
        model.config.pad_token_id = tokenizer.pad_token_id
    else:
        model = AutoModelForCausalLM.from_pretrained(spec["model_dir"], dtype=torch.float32)
    load_seconds = time.perf_counter() - t0
    params = sum(p.numel() for p in model.parameters())

    order = spec["order"]  # alignkit's order, (warmup + steps) * batch rows
    if spec["task"] == "sft":  # the very file alignkit reads (prompt, completion strings)
        source = read_jsonl(spec["sft_file"])
        rows = [{"prompt": [{"role": "user", "content": source[i]["prompt"]}],
                 "completion": [{"role": "assistant", "content": source[i]["completion"]}]} for i in order]
    else:
        source = read_jsonl(spec["pref_file"])
        rows = [{"prompt": [{"role": "user", "content": source[i]["prompt"]}],
                 "chosen": [{"role": "assistant", "content": source[i]["chosen"]}],
                 "rejected": [{"role": "assistant", "content": source[i]["rejected"]}]} for i in order]
    dataset = Dataset.from_list(rows)

    # Non-pad tokens of every sequence the policy forward processes (grad-enabled forwards only:
    # TRL's reference forwards, also the adapter-disabled policy with LoRA, run under no_grad).
    counted: list[int] = [0]
    how: set[str] = set()

    def count(module, args, kwargs):
        if not torch.is_grad_enabled():
            return
        mask = kwargs.get("attention_mask")
        ids = kwargs.get("input_ids", args[0] if args else None)
        if mask is not None and mask.dim() == 2:
            counted[0] += int(mask.sum())
            how.add("attention_mask")
        elif ids is not None:
            counted[0] += int(ids.numel())
            how.add("input_ids.numel")

    decoder = model.model if spec["task"] == "reward" else model.get_decoder()
    decoder.register_forward_pre_hook(count, with_kwargs=True)

    ends: list[float] = []
    step_tokens: list[int] = []
    losses: list = []

    class Timer(TrainerCallback):
        def on_train_begin(self, args, state, control, **kw):
            ends.append(time.perf_counter())

        def on_step_end(self, args, state, control, **kw):
            ends.append(time.perf_counter())
            step_tokens.append(counted[0])
            counted[0] = 0

        def on_log(self, args, state, control, logs=None, **kw):
            if logs and "loss" in logs:
                losses.append(logs["loss"])

    common = dict(
        output_dir=spec["run_dir"], max_steps=total, per_device_train_batch_size=spec["batch_size"],
        gradient_accumulation_steps=1, learning_rate=spec["lr"], lr_scheduler_type="linear",
        warmup_steps=int(WARMUP_RATIO * total), weight_decay=0.0, max_grad_norm=1.0, optim="adamw_torch_fused",
        bf16=spec.get("device") == "cuda", fp16=False, gradient_checkpointing=False,
        use_cpu=spec.get("device", "cpu") == "cpu", report_to="none", seed=SEED,
        save_strategy="no", eval_strategy="no", disable_tqdm=True, dataloader_num_workers=0,
        train_sampling_strategy="sequential", max_length=spec["max_length"],
    )
    peft_config = None
    if spec["lora"]:
        from peft import LoraConfig

        peft_config = LoraConfig(r=16, lora_alpha=32, lora_dropout=0.0, target_modules="all-linear",
                                 task_type="SEQ_CLS" if spec["task"] == "reward" else "CAUSAL_LM")
    precompute: list[float] = []
    t1 = time.perf_counter()
    if spec["task"] == "sft":
        from trl import SFTConfig, SFTTrainer

        args = SFTConfig(**common, packing=False, completion_only_loss=True)
        trainer = SFTTrainer(model=model, args=args, train_dataset=dataset, processing_class=tokenizer,
                             peft_config=peft_config, callbacks=[Timer()])
    elif spec["task"] == "reward":
        from trl import RewardConfig, RewardTrainer

        args = RewardConfig(**common)
        trainer = RewardTrainer(model=model, args=args, train_dataset=dataset, processing_class=tokenizer,
                                peft_config=peft_config, callbacks=[Timer()])
    else:
        from trl import DPOConfig, DPOTrainer

        original = DPOTrainer._precompute_ref_logps

        def timed(self, *a, **k):
            t = time.perf_counter()
            try:
                return original(self, *a, **k)
            finally:
                precompute.append(time.perf_counter() - t)

        DPOTrainer._precompute_ref_logps = timed
        args = DPOConfig(**common, beta=0.1, loss_type=["sigmoid"],
                         precompute_ref_log_probs=spec["reference"] == "precompute")
        trainer = DPOTrainer(model=model, ref_model=None, args=args, train_dataset=dataset,
                             processing_class=tokenizer, peft_config=peft_config, callbacks=[Timer()])
    setup_seconds = time.perf_counter() - t1
    counted[0] = 0
    trainer.train()
    peak_train = vm_hwm_mb()
    steps = [b - a for a, b in zip(ends, ends[1:])]
    return {
        "step_seconds": steps,
        "step_wall": steps,
        "step_windows": list(zip(ends, ends[1:])),
        "step_tokens": step_tokens,
        "losses": losses,
        "token_count_from": sorted(how),
        "load_seconds": load_seconds,
        "setup_seconds": setup_seconds,
        "precompute_seconds": sum(precompute) if precompute else None,
        "precompute_pairs": len(rows) if precompute else None,
        "ref_model": type(trainer.ref_model).__name__ if getattr(trainer, "ref_model", None) is not None else None,
        "peak_rss_mb_train": peak_train,
        "peak_cuda_mb": cuda_peak_mb(),
        "params": params,
    }


# ------------------------------------------------------------------------------------
# children: on-policy (grpo, rloo)
# ------------------------------------------------------------------------------------


def online_prompts(spec: dict) -> tuple[list, list[list[int]]]:
    """alignkit's prompt pool (the preference file's distinct prompts, no held-out split) and the
    pool indices of each step's prompts (``prompt_indices``), for both sides."""
    from alignkit.plugins.data.plugin import FilesDataSource
    from alignkit.plugins.rl.prompts import prompt_indices

    pool = [row["prompt"] for row in FilesDataSource(preferences=spec["pref_file"], eval_fraction=0).prompts("train")]
    per_step = spec["batch_size"] // GENERATIONS[spec["task"]]
    return pool, [prompt_indices(len(pool), per_step, SEED, step) for step in range(spec["warmup"] + spec["steps"])]


def child_alignkit_online(spec: dict) -> dict:
    import torch

    torch.set_num_threads(spec["threads"])
    os.environ["ALIGNKIT_BENCH_DATA"] = spec["pref_file"]  # read by the reward (bench/ppo.py)
    from alignkit.core import hookimpl
    from alignkit.core.pipeline import run_pipeline
    from alignkit.core.registry import Registry
    from alignkit.core.testing import compose

    t_start = time.perf_counter()
    total = spec["warmup"] + spec["steps"]
    task = spec["task"]
    beta = ONLINE_BETA[task]
    overrides = [
        *alignkit_model_overrides(spec["model"]), "logger=none", f"pipeline={task}", "data=files",
        f"data.preferences={spec['pref_file']}", "data.eval_fraction=0", "preference_model=rule",
        "preference_model.fn=ppo:answer_in_completion", f"trainer.max_steps={total}",
        f"trainer.batch_size={spec['batch_size']}", f"trainer.max_length={spec['max_length']}",
        f"trainer.num_threads={spec['threads']}", f"trainer.seed={SEED}", "trainer.checkpoint_every=0",
        "trainer.progress=false", "trainer.grad_accum=1", "trainer.gradient_checkpointing=false",
        f"trainer.mixed_precision={'bf16' if spec.get('device') == 'cuda' else 'no'}",
        f"optimizer.samples_per_prompt={GENERATIONS[task]}", f"optimizer.max_new_tokens={COMPLETION_TOKENS}",
        f"optimizer.min_new_tokens={COMPLETION_TOKENS}", "optimizer.temperature=1.0", "optimizer.eval_prompts=0",
        "optimizer.sample_every=0", f"optimizer.trainer.learning_rate={spec['lr']}",
        *([f"optimizer.beta={beta}", "optimizer.ties=keep", "optimizer.reference=copy"] if task == "online_dpo" else
          [f"optimizer.kl_coef={beta}"]),
        *(["optimizer.reference=none"] if beta == 0 else
          ["optimizer.kl_penalty=reward", "optimizer.kl_estimator=k1"] if task == "rloo" else []),
        f"pipeline.stages=[{{name:{task},optimizer:{task},requires:prompts}}]",
    ]
    registry = Registry()
    step_ends: list[float] = []

    class Probe:  # a plugin, as any user's would be: records when each step was logged
        @hookimpl
        def alignkit_after_step(self, run, stage, step, metrics):
            if "time/step_seconds" in metrics:
                step_ends.append(time.perf_counter())

    registry.pm.register(Probe(), name="bench-probe")
    cfg = compose(overrides, registry)
    run_dir = Path(spec["run_dir"])
    t_run = time.perf_counter()
    run_pipeline(cfg, run_dir, registry)
    t_end = time.perf_counter()
    peak_train = vm_hwm_mb()
    records = [r for r in read_jsonl(run_dir / "metrics.jsonl") if "time/step_seconds" in r and r["stage"] == task]
    assert all(r["rollout/response_length_mean"] == COMPLETION_TOKENS for r in records)
    first_start = step_ends[0] - records[0]["time/step_seconds"]
    return {
        "step_seconds": [r["time/step_seconds"] for r in records],
        "step_wall": [b - a for a, b in zip(step_ends, step_ends[1:])],
        "step_windows": [(t - r["time/step_seconds"], t) for t, r in zip(step_ends, records)],
        "step_tokens": [int(r["rollout/sequence_tokens"]) for r in records],
        "generate_seconds": [r["time/generate_seconds"] for r in records],
        "generated_tokens_per_second": [r["time/generated_tokens_per_second"] for r in records],
        "rewards": [r["reward/mean"] for r in records],
        "losses": [r.get("loss") for r in records],
        "load_seconds": None,
        "setup_seconds": first_start - t_run,
        "precompute_seconds": None,
        "after_train_seconds": t_end - step_ends[-1],
        "import_seconds": t_run - t_start,
        "peak_rss_mb_train": peak_train,
        "peak_cuda_mb": cuda_peak_mb(),
        "params": None,
    }


def child_trl_online(spec: dict) -> dict:
    import torch

    torch.set_num_threads(spec["threads"])
    from datasets import Dataset
    from transformers import AutoModelForCausalLM, AutoTokenizer, TrainerCallback

    total = spec["warmup"] + spec["steps"]
    task = spec["task"]
    t0 = time.perf_counter()
    tokenizer = AutoTokenizer.from_pretrained(spec["tokenizer_dir"])
    model = AutoModelForCausalLM.from_pretrained(spec["model_dir"], dtype=torch.float32)
    load_seconds = time.perf_counter() - t0
    params = sum(p.numel() for p in model.parameters())
    answers = {r["prompt"]: r["answer"] for r in read_jsonl(spec["pref_file"])}
    pool, steps = online_prompts(spec)
    # alignkit's prompts in alignkit's order; GRPO's and RLOO's sampler repeats each num_generations
    # times, OnlineDPOTrainer samples two completions of each row
    dataset = Dataset.from_list([{"prompt": pool[i], "answer": answers[pool[i][-1]["content"]]}
                                 for step in steps for i in step])

    def reward(completions, answer, **_):
        return [1.0 if a in c[-1]["content"] else 0.0 for c, a in zip(completions, answer)]

    gen_times: list[float] = []
    original = model.generate

    def timed_generate(*args, **kwargs):
        start = time.perf_counter()
        out = original(*args, **kwargs)
        gen_times.append(time.perf_counter() - start)
        return out

    model.generate = timed_generate
    counted: list[int] = [0]

    def count(module, args, kwargs):  # grad-enabled forwards only: the policy's training forward
        if not torch.is_grad_enabled():
            return
        mask = kwargs.get("attention_mask")
        ids = kwargs.get("input_ids", args[0] if args else None)
        counted[0] += int(mask.sum()) if mask is not None and mask.dim() == 2 else int(ids.numel())

    model.get_decoder().register_forward_pre_hook(count, with_kwargs=True)
    ends: list[float] = []
    step_tokens: list[int] = []
    logged: list[dict] = []

    class Timer(TrainerCallback):
        def on_train_begin(self, args, state, control, **kw):
            ends.append(time.perf_counter())

        def on_step_end(self, args, state, control, **kw):
            ends.append(time.perf_counter())
            step_tokens.append(counted[0])
            counted[0] = 0

        def on_log(self, args, state, control, logs=None, **kw):
            if logs:
                logged.append(dict(logs))

    common = dict(
        output_dir=spec["run_dir"], max_steps=total, per_device_train_batch_size=spec["batch_size"],
        gradient_accumulation_steps=1, learning_rate=spec["lr"], lr_scheduler_type="constant", warmup_steps=0,
        weight_decay=0.0, max_grad_norm=1.0, optim="adamw_torch_fused", bf16=spec.get("device") == "cuda",
        fp16=False, gradient_checkpointing=False, use_cpu=spec.get("device", "cpu") == "cpu", report_to="none",
        seed=SEED, save_strategy="no", disable_tqdm=True, logging_steps=10,
        generation_kwargs={"min_new_tokens": COMPLETION_TOKENS}, temperature=1.0, beta=ONLINE_BETA[task],
    )
    if task != "online_dpo":
        common.update(num_generations=GENERATIONS[task], max_completion_length=COMPLETION_TOKENS,
                      shuffle_dataset=False)
    t1 = time.perf_counter()
    if task == "online_dpo":  # the batch counts prompts (2 samples each); prompts in alignkit's order
        from trl.experimental.online_dpo import OnlineDPOConfig, OnlineDPOTrainer

        common.update(per_device_train_batch_size=spec["batch_size"] // GENERATIONS[task], top_k=0,
                      max_new_tokens=COMPLETION_TOKENS, max_length=spec["max_length"], loss_type="sigmoid",
                      train_sampling_strategy="sequential")
        trainer = OnlineDPOTrainer(model=model, reward_funcs=reward, args=OnlineDPOConfig(**common),
                                   train_dataset=dataset, processing_class=tokenizer, callbacks=[Timer()])
    elif task == "grpo":
        from trl import GRPOConfig, GRPOTrainer

        trainer = GRPOTrainer(model=model, reward_funcs=reward, args=GRPOConfig(**common), train_dataset=dataset,
                              processing_class=tokenizer, callbacks=[Timer()])
    else:
        from trl import RLOOConfig, RLOOTrainer

        trainer = RLOOTrainer(model=model, reward_funcs=reward, args=RLOOConfig(**common), train_dataset=dataset,
                              processing_class=tokenizer, callbacks=[Timer()])
    setup_seconds = time.perf_counter() - t1
    counted[0] = 0
    trainer.train()
    peak_train = vm_hwm_mb()
    steps_s = [b - a for a, b in zip(ends, ends[1:])]
    return {
        "step_seconds": steps_s,
        "step_wall": steps_s,
        "step_windows": list(zip(ends, ends[1:])),
        "step_tokens": step_tokens,
        "generate_seconds": gen_times,
        "generated_tokens_per_second": [spec["batch_size"] * COMPLETION_TOKENS / t for t in gen_times],
        "rewards": [entry.get("reward", entry.get("objective/scores")) for entry in logged
                    if "reward" in entry or "objective/scores" in entry],
        "losses": [entry["loss"] for entry in logged if "loss" in entry],
        "load_seconds": load_seconds,
        "setup_seconds": setup_seconds,
        "precompute_seconds": None,
        "ref_model": type(trainer.ref_model).__name__ if getattr(trainer, "ref_model", None) is not None else None,
        "peak_rss_mb_train": peak_train,
        "peak_cuda_mb": cuda_peak_mb(),
        "params": params,
    }


def child_main(kind: str, spec_path: str) -> None:
    spec = json.loads(Path(spec_path).read_text())
    if spec["task"] in ONLINE:
        out = child_alignkit_online(spec) if kind == "alignkit" else child_trl_online(spec)
    else:
        out = child_alignkit(spec) if kind == "alignkit" else child_trl(spec)
    Path(spec["result_file"]).write_text(json.dumps(out))


def child_prepare_model(model: str, out_dir: str) -> None:
    """Load ``model`` through alignkit's loader; save the tiny model once for TRL; report folders."""
    from alignkit.core.registry import Registry
    from alignkit.core.types import ModelSpec

    options = {"tiny-random": TINY_OPTIONS, "smollm2-random": SMOLLM2_SHAPE}.get(model, {})
    name = "tiny-random" if model == "smollm2-random" else model
    loaded = Registry().load_model(ModelSpec(name, options=options), "policy")
    params = sum(p.numel() for p in loaded.model.parameters())
    if name == "tiny-random":
        target = Path(out_dir)
        if target.exists():
            shutil.rmtree(target)
        loaded.model.save_pretrained(target, safe_serialization=True)
        loaded.tokenizer.save_pretrained(target)
        model_dir = tokenizer_dir = str(target)
    else:
        from alignkit.plugins.models.resolve import smollm2_cache_dir, smollm2_tokenizer_dir

        model_dir = str(smollm2_cache_dir())
        tokenizer_dir = model_dir if (Path(model_dir) / "tokenizer.json").exists() else str(smollm2_tokenizer_dir())
    print(json.dumps({"model_dir": model_dir, "tokenizer_dir": tokenizer_dir, "params": params}))


# ------------------------------------------------------------------------------------
# parent
# ------------------------------------------------------------------------------------


MALLOC_TUNING = {"MALLOC_MMAP_THRESHOLD_": str(4 << 30), "MALLOC_TRIM_THRESHOLD_": str(4 << 30),
                 "MALLOC_TOP_PAD_": str(1 << 30)}
"""``--malloc-tune``: glibc keeps freed large blocks instead of unmapping them, so the big logit
buffers of every step are not page-faulted (and zeroed by the kernel) afresh. Applied to both sides."""
OPTIONS = {"malloc_tune": False}


def code_version() -> dict:
    """Which alignkit code ran: git HEAD and a hash of the working tree's core/ and plugins/ sources."""
    import hashlib

    root = BENCH_DIR.parent
    digest = hashlib.sha256()
    for folder in ("core", "plugins"):
        for file in sorted((root / folder).rglob("*.py")):
            digest.update(str(file.relative_to(root)).encode())
            digest.update(file.read_bytes())
    try:
        head = subprocess.run(["git", "rev-parse", "--short", "HEAD"], cwd=root, capture_output=True, text=True,
                              timeout=10).stdout.strip()
    except Exception:  # noqa: BLE001
        head = None
    return {"git_head": head, "sources_sha256": digest.hexdigest()[:16]}


def child_env() -> dict:
    env = dict(os.environ)  # THREADS is read at call time (``--threads``)
    if OPTIONS["malloc_tune"]:
        env.update(MALLOC_TUNING)
    env.update({"OMP_NUM_THREADS": str(THREADS), "MKL_NUM_THREADS": str(THREADS), "TOKENIZERS_PARALLELISM": "false",
                "HF_HUB_OFFLINE": "1", "HF_DATASETS_OFFLINE": "1", "TRANSFORMERS_OFFLINE": "1",
                "TQDM_DISABLE": "1", "PYTHONUNBUFFERED": "1", "ACCELERATE_USE_CPU": "1"})
    if DEVICE != "cpu":
        env.pop("ACCELERATE_USE_CPU")
    return env


def process_cpu_seconds(pid: int) -> float | None:
    """utime + stime of ``pid`` (all its threads) from /proc/<pid>/stat."""
    try:
        with open(f"/proc/{pid}/stat") as fh:
            fields = fh.read().rsplit(")", 1)[1].split()
    except OSError:
        return None
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")


def run_child(argv: list[str], log_file: Path, env: dict | None = None) -> dict:
    """Run one child: its own ru_maxrss (os.wait4), wall time, load average, and every 0.1 s the
    machine's busy CPU time and the child's, so that other processes' CPU use can be told per step."""
    load_before = os.getloadavg()[0]
    busy0, wall0 = cpu_busy_seconds(), time.perf_counter()
    samples: list[tuple[float, float, float]] = []  # (perf_counter, machine busy s, child cpu s)
    with open(log_file, "w") as log:
        proc = subprocess.Popen(argv, stdout=log, stderr=subprocess.STDOUT, env=env or child_env(), cwd=BENCH_DIR.parent)
        loads: list[float] = []
        last_load = 0.0
        try:
            while True:
                pid, status, usage = os.wait4(proc.pid, os.WNOHANG)
                if pid:
                    break
                own = process_cpu_seconds(proc.pid)
                now = time.perf_counter()
                if own is not None:
                    samples.append((now, cpu_busy_seconds(), own))
                if now - last_load >= 1.0:
                    loads.append(os.getloadavg()[0])
                    last_load = now
                time.sleep(0.1)
        except BaseException:  # interrupted: leave no orphan behind
            proc.kill()
            proc.wait()
            raise
    proc.returncode = os.waitstatus_to_exitcode(status)
    wall = time.perf_counter() - wall0
    busy = cpu_busy_seconds() - busy0
    own = usage.ru_utime + usage.ru_stime
    return {
        "returncode": proc.returncode,
        "wall_seconds": wall,
        "peak_rss_mb": usage.ru_maxrss / 1024,
        "child_cpu_seconds": own,
        "foreign_cpu_cores": max(0.0, (busy - own) / wall),  # other processes' average CPU use during the run
        "load_before": load_before,
        "load_max": max(loads) if loads else load_before,
        "load_after": os.getloadavg()[0],
        "samples": samples,
    }


def foreign_cores(samples: list[tuple[float, float, float]], start: float, end: float) -> float | None:
    """Other processes' average CPU use (cores) within [start, end], interpolated between samples."""
    if len(samples) < 2 or end <= start:
        return None

    def at(t: float) -> tuple[float, float]:
        if t <= samples[0][0]:
            return samples[0][1], samples[0][2]
        for (t0, b0, c0), (t1, b1, c1) in zip(samples, samples[1:]):
            if t0 <= t <= t1:
                w = (t - t0) / (t1 - t0) if t1 > t0 else 0.0
                return b0 + w * (b1 - b0), c0 + w * (c1 - c0)
        return samples[-1][1], samples[-1][2]

    # widen short windows to at least 0.3 s: /proc/stat counts in 10 ms ticks
    pad = max(0.0, (0.3 - (end - start)) / 2)
    b0, c0 = at(start - pad)
    b1, c1 = at(end + pad)
    return max(0.0, ((b1 - b0) - (c1 - c0)) / (end - start + 2 * pad))


QUIET = {"max_wait": 0.0}


def wait_quiet(max_wait: float, threshold: float = 0.3, window: float = 5.0) -> float:
    """Wait (up to ``max_wait`` s) until other processes use under ``threshold`` cores over ``window`` s.

    Returns the foreign CPU use of the last window. Nothing of ours runs while this waits.
    """
    deadline = time.perf_counter() + max_wait
    while True:
        busy0, t0 = cpu_busy_seconds(), time.perf_counter()
        time.sleep(window)
        used = (cpu_busy_seconds() - busy0) / (time.perf_counter() - t0)
        if used < threshold or time.perf_counter() >= deadline:
            return used
        print(f"[bench]   waiting for a quiet CPU (others use {used:.2f} cores)", flush=True)


_prepared: dict[str, dict] = {}


def prepare_model(model: str) -> dict:
    if model not in _prepared:
        out = WORK / "models" / model
        out.parent.mkdir(parents=True, exist_ok=True)
        res = subprocess.run([sys.executable, __file__, "--prepare-model", model, str(out)], capture_output=True,
                             text=True, env=child_env(), cwd=BENCH_DIR.parent)
        if res.returncode != 0:
            raise SystemExit(f"preparing {model} failed:\n{res.stdout}\n{res.stderr}")
        _prepared[model] = json.loads(res.stdout.strip().splitlines()[-1])
    return _prepared[model]


def prepare_data(data: str, long_tokens: int = 0) -> dict:
    """The preference file as is; an SFT file of prompt -> chosen; optionally a long SFT file."""
    rows = read_jsonl(data)
    folder = WORK / "data"
    folder.mkdir(parents=True, exist_ok=True)
    sft = folder / (Path(data).stem + ".sft.jsonl")
    with open(sft, "w", encoding="utf-8") as fh:
        for r in rows:
            fh.write(json.dumps({"prompt": r["prompt"], "completion": r["chosen"]}) + "\n")
    out = {"pref_file": str(Path(data).resolve()), "sft_file": str(sft), "rows": len(rows), "source": data}
    if long_tokens:
        # For the max_length sweep: completions long enough that every sequence is cut at max_length.
        long_file = folder / (Path(data).stem + f".sft-long{long_tokens}.jsonl")
        filler = " ".join(["The quick brown fox jumps over the lazy dog, and then it counts to ten."] * 60)
        with open(long_file, "w", encoding="utf-8") as fh:
            for r in rows:
                fh.write(json.dumps({"prompt": r["prompt"], "completion": r["chosen"] + " " + filler}) + "\n")
        out["long_sft_file"] = str(long_file)
    return out


def one_run(framework: str, model: str, task: str, lora: bool, reference: str, steps: int, warmup: int,
            data: dict, max_length: int = 256, sft_file: str | None = None, label: str = "") -> dict:
    info = prepare_model(model)
    stamp = time.strftime("%Y%m%d-%H%M%S")
    name = f"{stamp}-{framework}-{SHORT[model]}-{task}-{'lora' if lora else 'full'}-{reference}-L{max_length}"
    run_dir = WORK / "runs" / name
    run_dir.mkdir(parents=True, exist_ok=True)
    total = warmup + steps
    spec = {
        "framework": framework, "model": model, "task": task, "lora": lora, "reference": reference, "steps": steps,
        "warmup": warmup, "batch_size": 8, "max_length": max_length, "threads": THREADS, "lr": LEARNING_RATE[task],
        "device": DEVICE,
        "run_dir": str(run_dir / "out"), "result_file": str(run_dir / "result.json"),
        "sft_file": sft_file or data["sft_file"], "pref_file": data["pref_file"], "model_dir": info["model_dir"], "tokenizer_dir": info["tokenizer_dir"],
        "order": alignkit_order(data["rows"], 8, total),
    }
    (run_dir / "spec.json").write_text(json.dumps(spec))
    env = child_env()
    if framework == "alignkit":
        # A fresh reference-log-prob cache per run (every run pays its precompute), sharing the model cache.
        cache = run_dir / "cache"
        cache.mkdir(exist_ok=True)
        real = Path(os.environ.get("ALIGNKIT_CACHE", Path.home() / ".cache" / "alignkit"))
        for sub in ("models", "tokenizers", "gguf"):
            if (real / sub).exists():
                (cache / sub).symlink_to(real / sub)
        env["ALIGNKIT_CACHE"] = str(cache)
    quiet = wait_quiet(QUIET["max_wait"], threshold=quiet_limit() + 0.1) if QUIET["max_wait"] > 0 else None
    print(f"[bench] {framework:8s} {SHORT[model]} {task} {'LoRA' if lora else 'full'} ref={reference} "
          f"L={max_length} steps={warmup}+{steps} ...", flush=True)
    proc = run_child([sys.executable, __file__, "--child", framework, str(run_dir / "spec.json")], run_dir / "log.txt",
                     env)
    proc["foreign_cores_before"] = quiet
    if proc["returncode"] != 0:
        tail = (run_dir / "log.txt").read_text()[-3000:]
        print(f"[bench]   FAILED (rc {proc['returncode']}), log {run_dir / 'log.txt'}:\n{tail}", flush=True)
        return {"framework": framework, "model": model, "task": task, "lora": lora, "reference": reference,
                "failed": True, **proc}
    child = json.loads((run_dir / "result.json").read_text())
    params = child.get("params") or info["params"]
    timed = range(warmup, warmup + steps)
    samples = proc.pop("samples")
    foreign = [foreign_cores(samples, *child["step_windows"][i]) for i in timed]
    quiet = [i for i, f in zip(timed, foreign) if f is not None and f < quiet_limit()]
    use = quiet if len(quiet) >= max(3, steps // 2) else list(timed)

    def stats(idx: list[int]) -> dict:
        secs = [child["step_seconds"][i] for i in idx]
        toks = [child["step_tokens"][i] for i in idx]
        return {"step_s_median": statistics.median(secs), "step_s_min": min(secs), "step_s_max": max(secs),
                "tokens_per_s": sum(toks) / sum(secs), "items_per_s": 8 * len(idx) / sum(secs),
                "gflops_6nt": 6 * params * sum(toks) / sum(secs) / 1e9}

    every = stats(list(timed))
    res = {
        "framework": framework, "model": model, "task": task, "lora": lora, "reference": reference,
        "max_length": max_length, "warmup": warmup, "steps": steps, "label": label, "run_dir": str(run_dir),
        "threads": THREADS,
        "malloc_tune": OPTIONS["malloc_tune"],
        "alignkit_code": code_version(),
        **stats(use),  # the headline figures: quiet timed steps when there are enough, else all timed steps
        "figures_from": f"{len(use)} quiet of {steps} timed steps" if use is quiet else f"all {steps} timed steps",
        "quiet_steps": len(quiet),
        "all_steps": every,
        "step_foreign_cores": foreign,
        "step_wall_median": (statistics.median(child["step_wall"][warmup:warmup + steps]) if framework == "trl"
                             else statistics.median(child["step_wall"][warmup - 1: warmup - 1 + steps])),
        "params": params,
        "timed_tokens": sum(child["step_tokens"][i] for i in timed),
        "timed_scored_tokens": (sum(child["step_scored_tokens"][i] for i in timed)
                                if child.get("step_scored_tokens") else None),
        "step_tokens": child["step_tokens"],
        "generated_tokens_per_s_median": (statistics.median(child["generated_tokens_per_second"][warmup:])
                                          if child.get("generated_tokens_per_second") else None),
        "generate_share": (sum(child["generate_seconds"][warmup:warmup + steps])
                           / sum(child["step_seconds"][warmup:warmup + steps]) if child.get("generate_seconds") else None),
        **{k: child.get(k) for k in ("load_seconds", "setup_seconds", "precompute_seconds", "precompute_pairs",
                                     "after_train_seconds", "peak_rss_mb_train", "peak_cuda_mb", "token_count_from",
                                     "ref_model", "order_matches_protocol", "rows_dropped", "losses", "step_seconds",
                                     "rewards")},
        **proc,
    }
    print(f"[bench]   step {res['step_s_median']:.3f}s  {res['tokens_per_s']:.1f} tok/s  "
          f"{res['gflops_6nt']:.1f} GFLOP/s  RSS {res['peak_rss_mb']:.0f} MB  setup {res['setup_seconds']:.1f}s"
          f"{'' if res['precompute_seconds'] is None else ' (precompute %.1fs)' % res['precompute_seconds']}  "
          f"load {proc['load_before']:.2f}/{proc['load_max']:.2f}/{proc['load_after']:.2f} "
          f"foreign {proc['foreign_cpu_cores']:.2f} cores; quiet steps {len(quiet)}/{steps} "
          f"(all steps: {every['step_s_median']:.3f}s, {every['tokens_per_s']:.1f} tok/s)", flush=True)
    return res


ATTEMPTS = {"n": 3}
QUIET_MARGIN = 0.2


def quiet_limit() -> float:
    """Other processes' CPU use (cores) below which a step counts as quiet: the cores our THREADS leave
    free, plus a margin (2 threads on 2 cores: 0.2; 1 thread: 1.2)."""
    return max(0.0, (os.cpu_count() or THREADS) - THREADS) + QUIET_MARGIN


def measure(*args, **kwargs) -> list[dict]:
    """``one_run`` until other processes stayed off the CPU
    or ATTEMPTS['n'] tries: a try is good when >= 75 % of its timed steps were quiet (other processes
    under ``quiet_limit()`` cores during the step). Every try is returned, all but the best marked ``superseded``.

    Why: with 2 torch threads on 2 cores, a third busy process makes every parallel op wait for a
    descheduled thread (a 511x64 @ 64x64 matmul goes from ~0.07 ms to ~16 ms), so a disturbed run
    measures the scheduler, not the framework.
    """
    tries: list[dict] = []
    for attempt in range(max(1, ATTEMPTS["n"])):
        res = one_run(*args, **kwargs)
        res["attempt"] = attempt + 1
        tries.append(res)
        record(res)
        if res.get("failed") or res["quiet_steps"] >= 0.75 * res["steps"]:
            break
        if attempt + 1 < ATTEMPTS["n"]:
            print(f"[bench]   only {res['quiet_steps']}/{res['steps']} steps ran without other processes on the "
                  f"CPU; trying again", flush=True)
    ok = [t for t in tries if not t.get("failed")]
    keep = max(ok, key=lambda t: (t["quiet_steps"], -t["foreign_cpu_cores"])) if ok else tries[-1]
    for t in tries:
        t["superseded"] = t is not keep
    flush()
    return tries


_SINK: dict = {"runs": [], "out": None, "meta": {}}


def record(res: dict) -> None:
    """Keep a finished run and rewrite the results file: an interrupted matrix loses nothing."""
    _SINK["runs"].append(res)
    flush()


def flush() -> None:
    if _SINK["out"] is None:
        return
    runs = _SINK["runs"]
    payload = {**_SINK["meta"], "results": [r for r in runs if r.get("label") != "seqlen"],
               "seqlen": [r for r in runs if r.get("label") == "seqlen"]}
    tmp = Path(str(_SINK["out"]) + ".tmp")
    tmp.write_text(json.dumps(payload, indent=1))
    os.replace(tmp, _SINK["out"])


def variants(task: str, lora: bool) -> list[tuple[str, str]]:
    """(framework, reference) pairs to run for one task."""
    if task in ("sft", "reward"):
        return [("alignkit", "-"), ("trl", "-")]
    if task in ONLINE:  # beta 0: no reference model on either side; else a frozen copy on both
        ref = "none" if ONLINE_BETA[task] == 0 else "copy"
        return [("alignkit", ref), ("trl", ref)]
    if lora:  # both sides: the reference is the adapter-disabled policy
        return [("alignkit", "adapter"), ("trl", "adapter")]
    return [("alignkit", "precompute"), ("alignkit", "copy"), ("trl", "copy"), ("trl", "precompute")]


def run_config(model: str, task: str, lora: bool, steps: int, warmup: int, data: dict,
               frameworks: tuple[str, ...], reference: str | None = None) -> list[dict]:
    out = []
    for framework, ref in variants(task, lora):
        if framework in frameworks and (reference is None or ref == reference):
            out += measure(framework, model, task, lora, ref, steps, warmup, data)
    return out


def best(results: list[dict]) -> list[dict]:
    return [r for r in results if not r.get("failed") and not r.get("superseded")]


def table(results: list[dict]) -> str:
    rows = best(results)
    lines = ["| model | task | variant | framework | warm-up+timed steps | step s median (min..max) | non-pad tok/s | "
             "pairs or samples/s | 6NT GFLOP/s | peak RSS MB | setup s (precompute s) | load before→after (max) / foreign cores |",
             "|---|---|---|---|---|---|---|---|---|---|---|---|"]
    for r in rows:
        variant = ("LoRA r16" if r["lora"] else "full") + ("" if r["reference"] == "-" else f", ref={r['reference']}")
        variant += f", {r.get('threads', 2)} thr" + (", malloc-tuned" if r.get("malloc_tune") else "")
        pre = "" if r["precompute_seconds"] is None else f" ({r['precompute_seconds']:.1f})"
        lines.append(
            f"| {SHORT[r['model']]} | {r['task']} | {variant} | {r['framework']} | {r['warmup']}+{r['steps']} "
            f"({r['quiet_steps']} quiet) | "
            f"{r['step_s_median']:.3f} ({r['step_s_min']:.2f}..{r['step_s_max']:.2f}) | {r['tokens_per_s']:,.1f} | "
            f"{r['items_per_s']:.2f} | {r['gflops_6nt']:.1f} | {r['peak_rss_mb']:.0f} | "
            f"{r['setup_seconds']:.1f}{pre} | {r['load_before']:.2f}→{r['load_after']:.2f} ({r['load_max']:.2f}) / "
            f"{r['foreign_cpu_cores']:.2f} |")
    return "\n".join(lines)


def ratio_table(results: list[dict]) -> str:
    rows = best(results)
    lines = ["| model | task | variant | alignkit step s | TRL step s | speed-up (TRL s / alignkit s) | "
             "tok/s alignkit / TRL | peak RSS alignkit / TRL | setup s alignkit / TRL | quiet steps alignkit / TRL |",
             "|---|---|---|---|---|---|---|---|---|---|"]
    keys = []
    for r in rows:
        key = (r["model"], r["task"], r["lora"], r.get("max_length", 256), r.get("threads", 2), bool(r.get("malloc_tune")))
        if key not in keys:
            keys.append(key)
    for key in keys:
        model, task, lora, max_length, threads, tuned = key
        group = [r for r in rows if (r["model"], r["task"], r["lora"], r.get("max_length", 256), r.get("threads", 2),
                                     bool(r.get("malloc_tune"))) == key]
        ak = [r for r in group if r["framework"] == "alignkit"]
        trl = [r for r in group if r["framework"] == "trl"]
        pairs = []
        if task == "dpo" and not lora:
            pairs = [(a, t) for a in ak for t in trl if a["reference"] == t["reference"]]
            pairs += [(a, t) for a in ak for t in trl if a["reference"] == "precompute" and t["reference"] == "copy"]
        else:
            pairs = [(a, t) for a in ak for t in trl]
        for a, t in pairs:
            variant = ("LoRA r16" if lora else "full") + f", {threads} thr" + (", malloc-tuned" if tuned else "")
            if task == "dpo" and not lora:
                variant += f", alignkit ref={a['reference']} vs TRL ref={t['reference']}"
            setup_a = a["setup_seconds"]
            lines.append(
                f"| {SHORT[model]} | {task} | {variant} | {a['step_s_median']:.3f} | {t['step_s_median']:.3f} | "
                f"**{t['step_s_median'] / a['step_s_median']:.2f}x** | {a['tokens_per_s'] / t['tokens_per_s']:.2f} | "
                f"{a['peak_rss_mb'] / t['peak_rss_mb']:.2f} | {setup_a:.1f} / {t['setup_seconds']:.1f} | "
                f"{a['quiet_steps']}/{a['steps']} / {t['quiet_steps']}/{t['steps']}"
                f"{'' if min(a['quiet_steps'], t['quiet_steps']) >= max(3, t['steps'] // 2) else ' (disturbed)'} |")
    return "\n".join(lines)


def seqlen_table(results: list[dict]) -> str:
    lines = ["| max_length | framework | quiet steps | tokens/step (scored) | step s median (min..max) | non-pad tok/s | s per 1k tokens | "
             "6NT GFLOP/s | peak RSS MB | load before→after (max) / foreign cores |", "|---|---|---|---|---|---|---|---|---|---|"]
    for r in best(results):
        per_step = r["timed_tokens"] / r["steps"]
        scored = r.get("timed_scored_tokens")
        if scored is None:  # older results: read the child's own file
            try:
                child = json.loads((Path(r["run_dir"]) / "result.json").read_text())
                scored = sum(child["step_scored_tokens"][r["warmup"]:r["warmup"] + r["steps"]])
            except (OSError, KeyError, ValueError):
                scored = None
        per_step_scored = "" if scored is None else f" ({scored / r['steps']:.0f})"
        lines.append(f"| {r['max_length']} | {r['framework']} | {r['quiet_steps']}/{r['steps']} | {per_step:.0f}{per_step_scored} | {r['step_s_median']:.3f} "
                     f"({r['step_s_min']:.2f}..{r['step_s_max']:.2f}) | {r['tokens_per_s']:,.1f} | "
                     f"{1000 / r['tokens_per_s']:.3f} | {r['gflops_6nt']:.1f} | {r['peak_rss_mb']:.0f} | "
                     f"{r['load_before']:.2f}→{r['load_after']:.2f} ({r['load_max']:.2f}) / "
                     f"{r['foreign_cpu_cores']:.2f} |")
    return "\n".join(lines)


def machine() -> dict:
    import platform

    cpu = ""
    try:
        for line in open("/proc/cpuinfo"):
            if line.startswith("model name"):
                cpu = line.split(":", 1)[1].strip()
                break
    except OSError:
        pass
    mem = ""
    try:
        mem = open("/proc/meminfo").readline().split(":", 1)[1].strip()
    except OSError:
        pass
    versions = {}
    for mod in ("torch", "transformers", "trl", "peft", "accelerate", "datasets"):
        try:
            versions[mod] = __import__(mod).__version__
        except Exception:  # noqa: BLE001
            versions[mod] = None
    import torch

    gpu = torch.cuda.get_device_name(0) if torch.cuda.is_available() else None
    return {"cpu": cpu, "cores": os.cpu_count(), "memory": mem, "python": platform.python_version(), "gpu": gpu,
            **versions}


PEAK_SCRIPT = """
import sys, time, torch
torch.set_num_threads(int(sys.argv[1]))
n = 4096
a, b = torch.randn(n, n), torch.randn(n, n)
for _ in range(2):
    a @ b
rates = []
for _ in range(7):
    t = time.perf_counter()
    a @ b
    rates.append(2 * n ** 3 / (time.perf_counter() - t) / 1e9)
print(sorted(rates)[len(rates) // 2])
"""


def matmul_peak(threads: int) -> float | None:
    """The machine's fp32 matmul rate (GFLOP/s, median of 7 timings of 4096x4096 @ 4096x4096) on
    ``threads`` torch threads, in a fresh process: the ceiling the 6NT figures are read against
    (smaller products run slower here: 1024: ~81, 2048: ~97, 4096: ~112 GFLOP/s on 2 threads)."""
    if DEVICE != "cpu":
        return None
    try:
        out = subprocess.run([sys.executable, "-c", PEAK_SCRIPT, str(threads)], capture_output=True, text=True,
                             timeout=300, check=True)
        return float(out.stdout.strip().splitlines()[-1])
    except (subprocess.SubprocessError, ValueError, IndexError):
        return None


def peak_note(peak: float | None, results: list[dict]) -> str:
    if not peak:
        return ""
    lines = [f"fp32 matmul peak on {THREADS} thread(s): {peak:.1f} GFLOP/s; 6NT share of it:"]
    for r in best(results):
        lines.append(f"  {SHORT[r['model']]} {r['task']} {'LoRA' if r['lora'] else 'full'} {r['framework']}"
                     f" ref={r['reference']}: {r['gflops_6nt']:.1f} GFLOP/s = {100 * r['gflops_6nt'] / peak:.0f}%")
    return "\n".join(lines)


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--model", choices=MODELS, default="tiny-random")
    p.add_argument("--task", choices=("sft", "dpo", "reward", *ONLINE), default="sft")
    p.add_argument("--lora", action="store_true")
    p.add_argument("--steps", type=int, default=20, help="timed steps (default 20)")
    p.add_argument("--warmup", type=int, default=3, help="untimed warm-up steps (default 3)")
    p.add_argument("--data", default=DEFAULT_DATA, help="preference JSONL with prompt/chosen/rejected")
    p.add_argument("--all", action="store_true", help="run the whole matrix (SmolLM2 DPO with 5 timed steps)")
    p.add_argument("--only-tiny", action="store_true", help="with --all: tiny-random rows only")
    p.add_argument("--only-smol", action="store_true", help="with --all: SmolLM2 rows only")
    p.add_argument("--frameworks", default="alignkit,trl",
                   help="comma list: alignkit,trl (default both; --seqlen: alignkit only)")
    p.add_argument("--reference", default=None, help="DPO only: run just this reference mode (precompute|copy)")
    p.add_argument("--seqlen", type=int, nargs="*", default=None,
                   help="alignkit tiny SFT cost at these max_length values (long completions, cut at max_length)")
    p.add_argument("--wait-quiet", type=float, default=120.0,
                   help="before each run wait up to this many seconds for other processes to leave the CPU")
    p.add_argument("--threads", type=int, default=THREADS,
                   help="torch threads of every run (default 2 = the cores; 1 resists other processes on the machine)")
    p.add_argument("--malloc-tune", action="store_true",
                   help="run both sides with glibc malloc settings that keep large freed blocks (see MALLOC_TUNING)")
    p.add_argument("--attempts", type=int, default=3,
                   help="tries per configuration while other processes disturb it (default 3; the least disturbed is kept)")
    p.add_argument("--out", default=None, help="results JSON (default bench/results/<timestamp>.json)")
    p.add_argument("--device", choices=("cpu", "cuda"), default="cpu",
                   help="cuda: both sides on the GPU in bf16 autocast (fp32 weights); peak GPU memory is recorded")
    p.add_argument("--report", nargs="+", metavar="JSON", help="print the tables of saved results files and exit")
    # internal
    p.add_argument("--child", choices=("alignkit", "trl"), help=argparse.SUPPRESS)
    p.add_argument("--prepare-model", nargs=2, help=argparse.SUPPRESS)
    p.add_argument("spec", nargs="?", help=argparse.SUPPRESS)
    args = p.parse_args()
    if args.child:
        child_main(args.child, args.spec)
        return
    if args.prepare_model:
        child_prepare_model(*args.prepare_model)
        return
    if args.report:
        runs = [r for f in args.report for key in ("results", "seqlen") for r in json.loads(Path(f).read_text())[key]]
        results = [r for r in runs if r.get("label") != "seqlen"]
        seq = [r for r in runs if r.get("label") == "seqlen"]
        if results:
            print(table(results) + "\n\n" + ratio_table(results))
        if seq:
            print("\n" + seqlen_table(seq))
        return

    QUIET["max_wait"] = args.wait_quiet
    import signal

    def _stop(*_):
        raise KeyboardInterrupt

    signal.signal(signal.SIGTERM, _stop)  # background jobs ignore SIGINT: SIGTERM also stops cleanly
    globals()["THREADS"] = args.threads
    globals()["DEVICE"] = args.device
    ATTEMPTS["n"] = args.attempts
    OPTIONS["malloc_tune"] = args.malloc_tune
    frameworks = tuple(f.strip() for f in args.frameworks.split(",") if f.strip())
    if args.seqlen and "--frameworks" not in " ".join(sys.argv):
        frameworks = ("alignkit",)  # the sweep measures alignkit's own scaling unless asked otherwise
    started = time.strftime("%Y%m%d-%H%M%S")
    RESULTS_DIR.mkdir(parents=True, exist_ok=True)
    _SINK["out"] = Path(args.out) if args.out else RESULTS_DIR / f"{started}.json"
    _SINK["meta"] = {"machine": machine(), "argv": sys.argv, "threads": THREADS, "device": DEVICE,
                     "matmul_peak_gflops": matmul_peak(THREADS)}
    data = prepare_data(args.data, long_tokens=1 if args.seqlen else 0)
    try:
        if args.seqlen:
            for length in args.seqlen:
                for fw in frameworks:
                    measure(fw, "tiny-random", "sft", False, "-", args.steps, args.warmup, data,
                            max_length=length, sft_file=data["long_sft_file"], label="seqlen")
        elif args.all:
            for model, task, lora, steps in MATRIX:
                if args.only_tiny and model != "tiny-random":
                    continue
                if args.only_smol and model == "tiny-random":
                    continue
                run_config(model, task, lora, steps or args.steps, args.warmup, data, frameworks)
        else:
            run_config(args.model, args.task, args.lora, args.steps, args.warmup, data, frameworks, args.reference)
    finally:
        flush()
        results = [r for r in _SINK["runs"] if r.get("label") != "seqlen"]
        seq_results = [r for r in _SINK["runs"] if r.get("label") == "seqlen"]
        if results:
            print("\n" + table(results) + "\n\n" + ratio_table(results))
            print("\n" + peak_note(_SINK["meta"].get("matmul_peak_gflops"), results))
        if seq_results:
            print("\n" + seqlen_table(seq_results))
        print(f"\n[bench] results: {_SINK['out']}")


if __name__ == "__main__":
    main()
