#!/usr/bin/env python
"""One pass over alignkit on a GPU: run by ``bench/gpu_check.sh`` (which makes ``import alignkit``
work from the source tree); every step is checked and reported, a failing step does not stop the rest.

    python bench/gpu_check.py [--out DIR] [--only dpo,fsdp,bench_sft,bench_dpo] [--steps 20]
    python bench/gpu_check.py --cpu     # the same steps, small and on CPU: tests this script

Steps (results in ``DIR/gpu_check.json``, logs beside it):
  env        versions, the GPU, imports
  dpo        ``pipeline=dpo`` (an SFT stage then DPO) in this process, bf16, on a SmolLM2-135M-shaped
             random model: losses finite, the models saved and loadable, GPU memory used
  fsdp       ``alignkit pipeline=sft launcher.config=fsdp launcher.num_processes=1`` through the CLI:
             the launch path, FSDP wrapping, sharded checkpoints, the gathered final model, then a
             resume from the step checkpoint reaching the same weights (``--cpu``: 2 gloo processes)
  bench_sft, bench_dpo
             ``bench/run.py --device cuda --model smollm2-random`` against TRL (DPO: precompute on both sides)
"""

from __future__ import annotations

import argparse
import json
import os
import shutil
import subprocess
import sys
import time
import traceback
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
WORK = Path(os.environ.get("GPU_CHECK_WORK", "/tmp/alignkit-gpu-check"))
SMOLLM2_SHAPE = {"hidden_size": 576, "num_hidden_layers": 30, "num_attention_heads": 9, "num_key_value_heads": 3,
                 "intermediate_size": 1536, "rope_theta": 100000.0, "seed": 0}
TINY_KEYS = {"hidden_size", "num_hidden_layers", "num_attention_heads", "num_key_value_heads", "intermediate_size",
             "seed"}  # the options conf/model/tiny-random.yaml already has (others need a leading +)


def model_overrides(cpu: bool) -> list[str]:
    if cpu:
        return ["model=tiny-random"]
    return ["model=tiny-random", *(f"{'' if k in TINY_KEYS else '+'}model.options.{k}={v}"
                                   for k, v in SMOLLM2_SHAPE.items())]


def common_overrides(cpu: bool, steps: int) -> list[str]:
    small_eval = ["evaluate.num_prompts=2", "evaluate.max_new_tokens=8", "evaluate.safety_prompts=0",
                  "evaluate.sycophancy_prompts=0"] if cpu else []  # the pipelines' closing evaluate stage
    return [*model_overrides(cpu), "logger=none", "trainer.progress=false", f"trainer.max_steps={steps}",
            "trainer.batch_size=8", "trainer.max_length=256", f"trainer.mixed_precision={'no' if cpu else 'bf16'}",
            f"trainer.checkpoint_every={max(1, steps // 2)}", "trainer.warmup_ratio=0", *small_eval]


def env_step(cpu: bool) -> dict:
    import importlib
    import platform

    out: dict = {"python": platform.python_version(), "executable": sys.executable,
                 "pythonpath": os.environ.get("PYTHONPATH", "")}
    missing = []
    for mod in ("torch", "transformers", "accelerate", "peft", "pluggy", "hydra", "omegaconf", "datasets", "trl",
                "safetensors", "pyarrow", "pandas", "alignkit.core.cli"):
        try:
            m = importlib.import_module(mod)
            out[mod] = getattr(m, "__version__", str(getattr(m, "__file__", "")))
        except Exception as exc:  # noqa: BLE001
            out[mod] = f"MISSING: {type(exc).__name__}: {exc}"
            missing.append(mod)
    try:  # tiny-random needs SmolLM2's tokenizer: carried in .gpu_cache/tokenizers/ (no hub there)
        from alignkit.plugins.models.resolve import smollm2_tokenizer

        out["tokenizer"] = smollm2_tokenizer()[1]
    except Exception as exc:  # noqa: BLE001
        out["tokenizer"] = f"MISSING: {type(exc).__name__}: {exc}"
        missing.append("tokenizer")
    import torch

    out["cuda_available"] = torch.cuda.is_available()
    if torch.cuda.is_available():
        out["gpu"] = torch.cuda.get_device_name(0)
        out["gpu_count"] = torch.cuda.device_count()
        out["cuda"] = torch.version.cuda
        out["bf16_supported"] = torch.cuda.is_bf16_supported()
    out["ok"] = not missing and (cpu or torch.cuda.is_available())
    out["missing"] = missing
    return out


def read_metrics(run_dir: Path) -> list[dict]:
    file = run_dir / "metrics.jsonl"
    return [json.loads(line) for line in file.read_text().splitlines()] if file.exists() else []


def check_model(folder: Path, expect_params: int | None = None) -> dict:
    from safetensors.torch import load_file
    from transformers import AutoModelForCausalLM

    files = sorted(folder.glob("*.safetensors"))
    state = {}
    for f in files:
        state.update(load_file(f))
    finite = all(bool(v.float().isfinite().all()) for v in state.values())
    model = AutoModelForCausalLM.from_pretrained(folder)
    params = sum(p.numel() for p in model.parameters())
    return {"files": [f.name for f in files], "tensors": len(state), "finite": finite, "params": params,
            "params_ok": expect_params is None or params == expect_params}


def compose(overrides: list[str]):
    """The config exactly as the ``alignkit`` CLI composes it (alignkit.core.testing needs pytest)."""
    from hydra import compose as hydra_compose
    from hydra import initialize_config_module

    from alignkit.core.cli import CONFIG_MODULE, CONFIG_NAME, registry, rewrite_overrides

    from alignkit.core.config_defaults import register_config_defaults

    register_config_defaults(registry())  # the option files' schema defaults, as the CLI registers them
    with initialize_config_module(config_module=CONFIG_MODULE, version_base="1.3"):
        return hydra_compose(CONFIG_NAME, overrides=rewrite_overrides(overrides, registry().config_searchpath()))


def dpo_step(cpu: bool, steps: int, out_dir: Path) -> dict:
    """``pipeline=dpo`` in this process, as ``run_alignkit`` does: peak GPU memory is ours to read."""
    import torch

    from alignkit.core.pipeline import run_pipeline

    run_dir = WORK / "dpo"
    shutil.rmtree(run_dir, ignore_errors=True)
    cfg = compose([*common_overrides(cpu, steps), "pipeline=dpo", f"optimizer.cache_dir={WORK / 'refcache'}",
                   "optimizer.max_eval_pairs=64"])
    if torch.cuda.is_available():
        torch.cuda.reset_peak_memory_stats()
    started = time.perf_counter()
    run_pipeline(cfg, run_dir)
    seconds = time.perf_counter() - started
    summary = json.loads((run_dir / "summary.json").read_text())
    records = read_metrics(run_dir)
    shutil.copy(run_dir / "summary.json", out_dir / "dpo_summary.json")
    shutil.copy(run_dir / "metrics.jsonl", out_dir / "dpo_metrics.jsonl")
    losses = {stage: [r["loss"] for r in records if r["stage"] == stage and "loss" in r] for stage in ("sft", "dpo")}
    step_s = {stage: [r["step_seconds"] for r in records if r["stage"] == stage and "step_seconds" in r]
              for stage in ("sft", "dpo")}
    models = {stage: check_model(run_dir / folder / "model")
              for stage, folder in (("sft", "01-sft"), ("dpo", "02-dpo"))}
    result = {
        "seconds": round(seconds, 1),
        "status": summary["status"],
        "losses": losses,
        "median_step_seconds": {k: sorted(v)[len(v) // 2] if v else None for k, v in step_s.items()},
        "metrics": {stage: summary["stages"][stage]["metrics"] for stage in summary["stages"]},
        "models": models,
        "cuda_peak_mb": torch.cuda.max_memory_allocated() / 2**20 if torch.cuda.is_available() else None,
    }
    all_losses = [x for v in losses.values() for x in v]
    result["ok"] = (summary["status"] == "completed" and len(losses["sft"]) == steps and len(losses["dpo"]) == steps
                    and all(isinstance(x, float) and x == x for x in all_losses)
                    and all(m["finite"] for m in models.values())
                    and (cpu or (result["cuda_peak_mb"] or 0) > 500))  # 135M fp32 weights alone are ~540 MB
    return result


def alignkit_cli(args: list[str], log: Path, timeout: float) -> subprocess.CompletedProcess:
    env = dict(os.environ, HF_HUB_OFFLINE="1", WANDB_MODE="disabled", TQDM_DISABLE="1")
    for var in ("WORLD_SIZE", "RANK", "LOCAL_RANK", "ALIGNKIT_LAUNCHED"):
        env.pop(var, None)
    proc = subprocess.run([sys.executable, "-m", "alignkit.core.cli", *args], capture_output=True, text=True,
                          env=env, timeout=timeout, cwd=ROOT)
    log.write_text(f"$ alignkit {' '.join(args)}\n--- stdout\n{proc.stdout}\n--- stderr\n{proc.stderr}\n")
    return proc


def fsdp_step(cpu: bool, steps: int, out_dir: Path) -> dict:
    """The launch path: FSDP with one process on the GPU (``--cpu``: DDP, 2 gloo processes), then resume."""
    from safetensors.torch import load_file

    run_dir = WORK / "fsdp"
    shutil.rmtree(run_dir, ignore_errors=True)
    launch = ["launcher.config=cpu", "launcher.num_processes=2"] if cpu else \
        ["launcher.config=fsdp", "launcher.num_processes=1"]
    args = [*common_overrides(cpu, steps), "pipeline=sft", "optimizer.max_eval_examples=32", *launch,
            f"hydra.run.dir={run_dir}"]
    started = time.perf_counter()
    first = alignkit_cli(args, out_dir / "fsdp_first.log", timeout=420)
    result: dict = {"seconds_first": round(time.perf_counter() - started, 1), "returncode_first": first.returncode}
    if first.returncode != 0:
        result.update(ok=False, error=first.stderr[-3000:])
        return result
    stage = run_dir / "01-sft"
    checkpoints = sorted(p.name for p in (stage / "checkpoints").iterdir()) if (stage / "checkpoints").exists() else []
    result["checkpoints"] = checkpoints
    result["checkpoint_files"] = sorted(p.name for p in (stage / "checkpoints" / checkpoints[-1]).iterdir()) \
        if checkpoints else []
    result["model"] = check_model(stage / "model")
    result["losses"] = [r["loss"] for r in read_metrics(run_dir) if "loss" in r]
    shutil.copy(run_dir / "summary.json", out_dir / "fsdp_summary.json")
    straight = load_file(stage / "model" / "model.safetensors")
    # As if the run had died after the step checkpoint: no DONE, no model; the same command resumes.
    (stage / "DONE").unlink()
    shutil.rmtree(stage / "model")
    started = time.perf_counter()
    second = alignkit_cli(args, out_dir / "fsdp_resume.log", timeout=420)
    result["seconds_resume"] = round(time.perf_counter() - started, 1)
    result["returncode_resume"] = second.returncode
    result["resumed"] = "resuming stage 'sft'" in second.stderr
    if second.returncode == 0:
        resumed = load_file(stage / "model" / "model.safetensors")
        result["resume_max_abs_diff"] = max((straight[k].float() - resumed[k].float()).abs().max().item()
                                            for k in straight)
    result["ok"] = (result["model"]["finite"] and bool(checkpoints) and second.returncode == 0 and result["resumed"]
                    and result.get("resume_max_abs_diff", 1.0) < 1e-3)
    return result


def preference_file() -> Path:
    """The benchmark's 512 synthetic pairs when present (``/work/shared`` or carried in ``.gpu_cache/``),
    else the demo pairs flattened to the same plain prompt/chosen/rejected strings."""
    for candidate in (Path("/work/shared/synth_pref_512.jsonl"), ROOT / ".gpu_cache" / "synth_pref_512.jsonl"):
        if candidate.exists():
            return candidate
    dest = WORK / "demo_pref.jsonl"
    rows = [json.loads(line) for line in (ROOT / "plugins/data/demo/preferences.jsonl").read_text().splitlines()]
    with open(dest, "w") as fh:
        for r in rows:
            prompt = r["prompt"] if isinstance(r["prompt"], str) else r["prompt"][-1]["content"]
            fh.write(json.dumps({"prompt": prompt, "chosen": r["chosen"], "rejected": r["rejected"]}) + "\n")
    return dest


def bench_step(task: str, cpu: bool, out_dir: Path) -> dict:
    result_file = out_dir / f"bench_{task}.json"
    cmd = [sys.executable, str(ROOT / "bench" / "run.py"), "--task", task, "--data", str(preference_file()),
           "--wait-quiet", "0", "--attempts", "1", "--out", str(result_file)]
    cmd += (["--model", "tiny-random", "--device", "cpu", "--steps", "2", "--warmup", "1"] if cpu else
            ["--model", "smollm2-random", "--device", "cuda", "--steps", "20", "--warmup", "3", "--threads", "4"])
    if task == "dpo":
        cmd += ["--reference", "precompute"]
    env = dict(os.environ, ALIGNKIT_BENCH_WORK=str(WORK / "bench"))
    started = time.perf_counter()
    proc = subprocess.run(cmd, capture_output=True, text=True, env=env, timeout=480, cwd=ROOT)
    (out_dir / f"bench_{task}.log").write_text(f"$ {' '.join(cmd)}\n{proc.stdout}\n{proc.stderr}")
    result: dict = {"seconds": round(time.perf_counter() - started, 1), "returncode": proc.returncode,
                    "table": proc.stdout[proc.stdout.find("| model"):][:4000]}
    if result_file.exists():
        runs = json.loads(result_file.read_text())["results"]
        result["runs"] = [{k: r.get(k) for k in ("framework", "reference", "failed", "step_s_median", "tokens_per_s",
                                                  "items_per_s", "gflops_6nt", "peak_cuda_mb", "peak_rss_mb",
                                                  "setup_seconds", "precompute_seconds", "losses")} for r in runs]
    runs = result.get("runs") or []
    result["ok"] = proc.returncode == 0 and bool(runs) and not any(r.get("failed") for r in runs)
    return result


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--cpu", action="store_true", help="small and on CPU: test this script without a GPU")
    p.add_argument("--out", default=os.environ.get("OUT") or "/tmp/alignkit-gpu-check-out")
    p.add_argument("--only", default="dpo,fsdp,bench_sft,bench_dpo")
    p.add_argument("--steps", type=int, default=None, help="training steps per stage (default 20; --cpu: 4)")
    args = p.parse_args()
    steps = args.steps or (4 if args.cpu else 20)
    out_dir = Path(args.out) / "gpu_check"
    out_dir.mkdir(parents=True, exist_ok=True)
    WORK.mkdir(parents=True, exist_ok=True)
    report: dict = {"started": time.strftime("%Y-%m-%d %H:%M:%S"), "cpu_mode": args.cpu, "steps": steps}
    report_file = out_dir / "gpu_check.json"

    def save() -> None:
        report_file.write_text(json.dumps(report, indent=1, default=str))

    report["env"] = env_step(args.cpu)
    save()
    print(json.dumps(report["env"], indent=1), flush=True)
    if not report["env"]["ok"]:
        print("gpu_check: environment incomplete; stopping", flush=True)
        raise SystemExit(1)
    steps_to_run = {
        "dpo": lambda: dpo_step(args.cpu, steps, out_dir),
        "fsdp": lambda: fsdp_step(args.cpu, max(4, steps // 2), out_dir),
        "bench_sft": lambda: bench_step("sft", args.cpu, out_dir),
        "bench_dpo": lambda: bench_step("dpo", args.cpu, out_dir),
    }
    for name in [s.strip() for s in args.only.split(",") if s.strip()]:
        started = time.perf_counter()
        print(f"gpu_check: {name} ...", flush=True)
        try:
            report[name] = steps_to_run[name]()
        except Exception as exc:  # noqa: BLE001  one failing step must not hide the others
            report[name] = {"ok": False, "error": f"{type(exc).__name__}: {exc}",
                            "traceback": traceback.format_exc()[-4000:]}
        report[name]["wall_seconds"] = round(time.perf_counter() - started, 1)
        print(f"gpu_check: {name}: {'ok' if report[name].get('ok') else 'FAILED'} "
              f"({report[name]['wall_seconds']} s)", flush=True)
        save()
    report["all_ok"] = all(report[n].get("ok") for n in steps_to_run if n in report)
    save()
    print(f"gpu_check: {'all ok' if report['all_ok'] else 'some steps FAILED'}; report {report_file}", flush=True)


if __name__ == "__main__":
    main()
