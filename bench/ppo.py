#!/usr/bin/env python
"""alignkit PPO vs TRL 1.16 GRPO vs plain ``model.generate``: step time and generated tokens/s.

    python bench/ppo.py                          # tiny-random, every row, one subprocess each
    python bench/ppo.py --model smollm2-135m-instruct --steps 5
    python bench/ppo.py --only generate ppo_min  # some rows
    python bench/ppo.py plot RUN_DIR OUT.png     # reward / KL curves of a PPO run (docs/ppo.md)

Protocol (/work/shared/TRL-BASELINE.md): fp32, 2 torch threads, seed 42, 8 rollouts per step of
exactly 64 new tokens (``min_new_tokens=64``), sampling at temperature 1, prompts from
synth_pref_512.jsonl, reward = "the answer string is in the completion"; ``--warmup`` untimed
steps then ``--steps`` timed ones; one configuration per process, strictly one after another.
TRL 1.16 has no PPO: its GRPO (2 prompts x 4 generations, beta 0, one update per batch) is the
nearest on-policy trainer. alignkit PPO does more work per step (a critic, and with
``kl_coef > 0`` a reference forward), so two rows are reported: ``ppo_min`` (1 epoch, shared
value head: GRPO's work plus a reference forward) and ``ppo_default`` (the shipped defaults:
4 epochs, separate critic).

Step time: alignkit's own ``time/step_seconds`` (rollout, scoring, reference, update), TRL's wall
clock between ``on_step_end`` callbacks. Generated tokens/s: alignkit's
``time/generated_tokens_per_second``; for TRL, 512 tokens / the time inside ``model.generate``.
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

BENCH_DIR = Path(__file__).resolve().parent
RESULTS = BENCH_DIR / "results"
DATA = Path(os.environ.get("ALIGNKIT_BENCH_DATA", "/work/shared/synth_pref_512.jsonl"))
WORK = Path(os.environ.get("ALIGNKIT_BENCH_WORK", Path(tempfile.gettempdir()) / "alignkit-bench-ppo"))
TINY = {"hidden_size": 64, "num_hidden_layers": 2, "num_attention_heads": 4, "num_key_value_heads": 4,
        "intermediate_size": 256, "seed": 0}
ROLLOUTS, LENGTH, SEED, THREADS = 8, 64, 42, 2
ROWS = ("generate", "ppo_min", "ppo_default", "trl_grpo")


def answer_in_completion(prompt, response):
    """The TRL baseline's reward: 1 when the row's answer string appears in the response."""
    return 1.0 if _ANSWERS.get(_text(prompt), "\0") in response else 0.0


def _text(prompt):
    return prompt[-1]["content"] if isinstance(prompt, list) else str(prompt)


def _rows():
    return [json.loads(line) for line in DATA.read_text().splitlines() if line.strip()]


_ANSWERS = {r["prompt"]: r["answer"] for r in _rows()} if DATA.exists() else {}


def _model_dir(model: str) -> Path:
    """The weights every row loads: alignkit's loader output saved once (TRL reads the folder)."""
    import torch  # noqa: F401

    from alignkit.core.registry import Registry
    from alignkit.core.types import ModelSpec

    folder = WORK / f"model-{model}"
    if not (folder / "config.json").exists():
        loaded = Registry().load_model(ModelSpec(model, options=TINY if model == "tiny-random" else {}), "policy")
        loaded.model.save_pretrained(folder)
        loaded.tokenizer.save_pretrained(folder)
    return folder


# ------------------------------------------------------------------------------------------
# children (one per process)
# ------------------------------------------------------------------------------------------


def child_generate(spec: dict) -> dict:
    import torch
    from transformers import AutoModelForCausalLM, AutoTokenizer

    torch.set_num_threads(THREADS)
    tok = AutoTokenizer.from_pretrained(spec["model_dir"])
    model = AutoModelForCausalLM.from_pretrained(spec["model_dir"], dtype=torch.float32).eval()
    rows = _rows()
    tok.padding_side = "left"
    times = []
    for step in range(spec["warmup"] + spec["steps"]):
        prompts = [[{"role": "user", "content": rows[(step * ROLLOUTS + i) % len(rows)]["prompt"]}]
                   for i in range(ROLLOUTS)]
        texts = [tok.apply_chat_template(p, tokenize=False, add_generation_prompt=True) for p in prompts]
        enc = tok(texts, return_tensors="pt", padding=True, add_special_tokens=False)
        torch.manual_seed(SEED + step)
        start = time.perf_counter()
        with torch.no_grad():
            out = model.generate(**enc, do_sample=True, temperature=1.0, max_new_tokens=LENGTH,
                                 min_new_tokens=LENGTH, pad_token_id=tok.pad_token_id)
        elapsed = time.perf_counter() - start
        assert out.shape[1] - enc["input_ids"].shape[1] == LENGTH
        if step >= spec["warmup"]:
            times.append(elapsed)
    return {"step_seconds": times, "generated_tokens_per_second": [ROLLOUTS * LENGTH / t for t in times]}


def child_ppo(spec: dict) -> dict:
    from alignkit.core.pipeline import run_pipeline
    from alignkit.core.registry import Registry
    from alignkit.core.testing import compose

    registry = Registry()
    overrides = [
        "model=path", f"model.name_or_path={spec['model_dir']}", "logger=none", "pipeline=ppo", "data=files",
        f"data.preferences={DATA}", "preference_model=rule", f"preference_model.fn=ppo:answer_in_completion",
        f"trainer.max_steps={spec['warmup'] + spec['steps']}", f"trainer.batch_size={ROLLOUTS}",
        "trainer.max_length=256", f"trainer.seed={SEED}", "trainer.checkpoint_every=0", "trainer.progress=false",
        f"trainer.num_threads={THREADS}", f"optimizer.max_new_tokens={LENGTH}", f"optimizer.min_new_tokens={LENGTH}",
        "optimizer.temperature=1.0", "optimizer.eval_prompts=0", "optimizer.sample_every=0",
        "optimizer.trainer.learning_rate=1e-6", *spec["options"],
    ]
    cfg = compose(overrides, registry)
    cfg.pipeline.stages = [s for s in cfg.pipeline.stages if s.optimizer not in ("evaluate", "sft")]
    run_dir = WORK / f"run-{spec['row']}-{os.getpid()}"
    rd = run_pipeline(cfg, run_dir, registry)
    steps = [json.loads(line) for line in (rd.path / "metrics.jsonl").read_text().splitlines()]
    steps = [s for s in steps if "time/step_seconds" in s and s["step"] > spec["warmup"]]
    assert all(s["rollout/response_length_mean"] == LENGTH for s in steps)
    return {"step_seconds": [s["time/step_seconds"] for s in steps],
            "generated_tokens_per_second": [s["time/generated_tokens_per_second"] for s in steps]}


def child_trl(spec: dict) -> dict:
    import torch
    from datasets import Dataset
    from transformers import AutoModelForCausalLM, AutoTokenizer, TrainerCallback
    from trl import GRPOConfig, GRPOTrainer

    torch.set_num_threads(THREADS)
    tok = AutoTokenizer.from_pretrained(spec["model_dir"])
    model = AutoModelForCausalLM.from_pretrained(spec["model_dir"], dtype=torch.float32)
    rows = _rows()
    data = Dataset.from_list([{"prompt": [{"role": "user", "content": r["prompt"]}], "answer": r["answer"]}
                              for r in rows])

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
    marks: list[float] = []

    class Clock(TrainerCallback):
        def on_step_end(self, args, state, control, **kw):
            marks.append(time.perf_counter())

    total = spec["warmup"] + spec["steps"]
    config = GRPOConfig(output_dir=str(WORK / f"trl-{os.getpid()}"), per_device_train_batch_size=ROLLOUTS,
                        num_generations=4, max_completion_length=LENGTH,
                        generation_kwargs={"min_new_tokens": LENGTH}, temperature=1.0, beta=0.0,
                        learning_rate=1e-6, max_steps=total, bf16=False, gradient_checkpointing=False,
                        use_cpu=True, report_to="none", logging_steps=10, seed=SEED, save_strategy="no")
    trainer = GRPOTrainer(model=model, reward_funcs=reward, args=config, train_dataset=data, processing_class=tok)
    trainer.add_callback(Clock())
    trainer.train()
    steps = [b - a for a, b in zip(marks[spec["warmup"] - 1:], marks[spec["warmup"]:])]
    gens = gen_times[spec["warmup"]:]
    return {"step_seconds": steps, "generated_tokens_per_second": [ROLLOUTS * LENGTH / t for t in gens]}


# ------------------------------------------------------------------------------------------
# parent
# ------------------------------------------------------------------------------------------

OPTIONS = {
    "ppo_min": ["optimizer.ppo_epochs=1", "optimizer.critic=shared"],
    "ppo_default": [],
}


def run_row(row: str, model_dir: Path, steps: int, warmup: int) -> dict:
    spec = {"row": row, "model_dir": str(model_dir), "steps": steps, "warmup": warmup, "options": OPTIONS.get(row, [])}
    env = dict(os.environ, PYTHONPATH=f"{BENCH_DIR}{os.pathsep}{os.environ.get('PYTHONPATH', '')}",
               HF_HUB_OFFLINE="1", WANDB_MODE="disabled", TOKENIZERS_PARALLELISM="false")
    started = time.perf_counter()
    out = subprocess.run([sys.executable, "-c", f"import ppo as bench_ppo, json, sys; "
                          f"print('RESULT ' + json.dumps(bench_ppo.CHILD[{row!r}](json.loads(sys.argv[1]))))",
                          json.dumps(spec)], env=env, capture_output=True, text=True)
    if out.returncode != 0:
        raise RuntimeError(f"row {row} failed (exit status {out.returncode}):\n{out.stderr[-4000:]}")
    result = json.loads(next(line for line in out.stdout.splitlines() if line.startswith("RESULT "))[7:])
    result.update(row=row, wall_seconds=round(time.perf_counter() - started, 1))
    return result


def summarise(results: list[dict]) -> str:
    by = {r["row"]: r for r in results}
    lines = ["| row | step s median (min..max) | generated tok/s median | step vs TRL GRPO | gen tok/s vs generate |",
             "|---|---|---|---|---|"]
    trl = statistics.median(by["trl_grpo"]["step_seconds"]) if "trl_grpo" in by else None
    plain = statistics.median(by["generate"]["generated_tokens_per_second"]) if "generate" in by else None
    for r in results:
        step = statistics.median(r["step_seconds"])
        tps = statistics.median(r["generated_tokens_per_second"])
        vs_trl = f"{trl / step:.2f}x faster" if trl and r["row"] != "trl_grpo" else "-"
        vs_gen = f"{tps / plain:.2f}" if plain else "-"
        lines.append(f"| {r['row']} | {step:.2f} ({min(r['step_seconds']):.2f}..{max(r['step_seconds']):.2f}) | "
                     f"{tps:.1f} | {vs_trl} | {vs_gen} |")
    return "\n".join(lines)


def plot(run_dir: Path, out: Path) -> None:
    """Reward and KL per PPO step of a run directory's metrics.jsonl, as a PNG."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    rows = [json.loads(line) for line in (run_dir / "metrics.jsonl").read_text().splitlines()]
    rows = [r for r in rows if r["stage"] == "ppo" and "reward/mean" in r]
    steps = [r["step"] for r in rows]
    scorer = "preference model"
    config = run_dir / ".hydra" / "config.yaml"
    if config.exists():  # name the reward after the run's preference model (rule, bradley_terry, judge)
        from omegaconf import OmegaConf

        scorer = str(OmegaConf.select(OmegaConf.load(config), "preference_model.name", default=scorer))
    fig, axes = plt.subplots(1, 3, figsize=(12, 3.4))
    axes[0].plot(steps, [r["reward/mean"] for r in rows], marker="o", label=f"reward ({scorer})")
    axes[0].plot(steps, [r["reward_with_kl/mean"] for r in rows], marker=".", label="reward - beta * KL")
    axes[0].set_title("reward per rollout batch")
    axes[0].legend()
    axes[1].plot(steps, [r["rollout/kl"] for r in rows], marker="o", color="tab:red")
    axes[1].set_title("KL(policy || reference), nats / response")
    axes[2].plot(steps, [r["rollout/response_length_mean"] for r in rows], marker="o", color="tab:green")
    axes[2].set_title("response length (tokens)")
    for ax in axes:
        ax.set_xlabel("PPO step")
        ax.grid(alpha=0.3)
    fig.tight_layout()
    out.parent.mkdir(parents=True, exist_ok=True)
    fig.savefig(out, dpi=110)
    print(f"wrote {out}")


CHILD = {"generate": child_generate, "ppo_min": child_ppo, "ppo_default": child_ppo, "trl_grpo": child_trl}


def main(argv=None) -> None:
    argv = list(sys.argv[1:] if argv is None else argv)
    if argv and argv[0] == "plot":
        plot(Path(argv[1]), Path(argv[2]))
        return
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--model", default="tiny-random")
    p.add_argument("--steps", type=int, default=8)
    p.add_argument("--warmup", type=int, default=2)
    p.add_argument("--only", nargs="*", choices=ROWS, default=list(ROWS))
    args = p.parse_args(argv)
    WORK.mkdir(parents=True, exist_ok=True)
    model_dir = _model_dir(args.model)
    results = []
    for row in args.only:
        print(f"running {row} ...", file=sys.stderr, flush=True)
        results.append(run_row(row, model_dir, args.steps, args.warmup))
        print(summarise(results), file=sys.stderr)
        print("ROW " + json.dumps(results[-1]), file=sys.stderr, flush=True)
    RESULTS.mkdir(parents=True, exist_ok=True)
    out = RESULTS / f"ppo-{args.model}.json"
    # rows measured by an earlier invocation (e.g. --only trl_grpo later) are kept, newest wins
    kept = json.loads(out.read_text())["results"] if out.exists() else []
    merged = {r["row"]: r for r in kept}
    merged.update({r["row"]: r for r in results})
    results = [merged[row] for row in ROWS if row in merged]
    out.write_text(json.dumps({"argv": sys.argv, "rollouts": ROLLOUTS, "length": LENGTH, "results": results},
                              indent=1))
    print(summarise(results))
    print(f"results: {out}")


if __name__ == "__main__":
    main()
