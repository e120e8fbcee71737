"""``alignkit evaluate RUN_DIR`` and ``alignkit report DIR...``: the evaluation plugin's commands
(its ``alignkit_commands`` hook), dispatched by core/cli.py."""

from __future__ import annotations

import argparse
import json
import logging
import sys
from pathlib import Path
from typing import Sequence

from alignkit.core.errors import AlignkitError, ConfigError
from alignkit.core.rundir import SUMMARY, RunDir

STAGE = "evaluate"


def evaluate_run(run_dir: Path, overrides: Sequence[str] = (), registry=None) -> RunDir:
    """Run the evaluate stage on a finished run: its config, its models, its data.

    ``overrides`` are dotted ``key=value`` settings applied to the run's saved config
    (``evaluate.num_prompts=64``, ``evaluate.scorers=[pkg.mod:fn]``). The result is recorded
    like a pipeline stage: ``NN-evaluate/``, the ``evaluate`` entry of summary.json,
    metrics.jsonl, report.md.
    """
    from omegaconf import OmegaConf

    from alignkit.core.pipeline import RunContext, StageContext, validate_config
    from alignkit.core.cli import registry as process_registry
    from alignkit.core.task import resolve_task
    from alignkit.core.options import build_component
    from alignkit.plugins.evaluation.evaluate import EvaluateConfig

    run_dir = Path(run_dir).resolve()
    config_file = run_dir / ".hydra" / "config.yaml"
    if not (run_dir / SUMMARY).exists() or not config_file.exists():
        raise ConfigError(f"{run_dir} is not an alignkit run directory (no {SUMMARY} or .hydra/config.yaml)")
    cfg = OmegaConf.load(config_file)
    _use_recorded_data_files(cfg, json.loads((run_dir / SUMMARY).read_text(encoding="utf-8")))
    bad = [o for o in overrides if "=" not in o]
    if bad:
        raise ConfigError(f"alignkit evaluate: expected key=value overrides, got {' '.join(bad)}")
    if overrides:
        cfg = OmegaConf.merge(cfg, OmegaConf.from_dotlist(list(overrides)))
    registry = registry if registry is not None else process_registry()  # the one `alignkit` loaded
    rd = RunDir(run_dir)
    run = RunContext(cfg, registry, rd)
    stages = list(rd.summary.get("stages", {}))
    previous = {name: rd.stage_result(name) for name in stages
                if name != STAGE and rd.summary["stages"][name].get("status") == "completed"}
    index = stages.index(STAGE) + 1 if STAGE in stages else len(stages) + 1
    policy = run.model_spec()
    for result in previous.values():
        if "model" in result.artifacts:
            policy = type(policy)(name_or_path=str(rd.path / result.artifacts["model"]), dtype=policy.dtype)
    node = cfg.get("evaluate") or {}
    config = validate_config("stage", STAGE, EvaluateConfig, node)
    config = resolve_task(config, lambda: run.data)  # `evaluate.scorers: [task]`: what the data declares
    ctx = StageContext(run=run, name=STAGE, index=index, dir=rd.stage_dir(index, STAGE), config=config,
                       trainer=cfg.trainer, policy=policy, previous=previous)
    status = rd.summary.get("status")
    rd.set_stage(STAGE, "running")
    try:
        result = build_component(registry, "stage", STAGE, config, ctx).run(ctx)
    except BaseException:
        rd.set_stage(STAGE, "failed")
        raise
    rd.mark_done(index, STAGE, result)
    if status:
        rd.finish(status, rd.summary.get("error"))
    return rd


def _use_recorded_data_files(cfg, summary) -> None:
    """Point the saved config's data files at the absolute paths the run recorded (summary.json
    ``data_files``): a relative ``data.sft=train.jsonl`` then works from any folder. A file that
    changed since the run read it gets a warning naming it."""
    from omegaconf import OmegaConf

    from alignkit.core.rundir import file_sha256

    for key, record in (summary.get("data_files") or {}).items():
        if OmegaConf.select(cfg, key, default=None) is None:
            continue
        path = Path(record["path"])
        OmegaConf.update(cfg, key, str(path), merge=False)
        if path.is_file() and record.get("sha256") and file_sha256(path) != record["sha256"]:
            logging.getLogger("alignkit").warning(
                "data file %s (%s) changed since the run read it: the evaluation uses its current content",
                path, key)


def evaluate_command(argv: Sequence[str]) -> int:
    """``alignkit evaluate RUN_DIR [key=value ...]``."""
    parser = argparse.ArgumentParser(prog="alignkit evaluate",
                                     description="Evaluate a finished run against its reference model.")
    parser.add_argument("run_dir", type=Path)
    parser.add_argument("overrides", nargs="*", help="dotted key=value settings, e.g. evaluate.num_prompts=64")
    ns = parser.parse_args(list(argv))
    logging.getLogger("alignkit").setLevel(logging.INFO)
    try:
        rd = evaluate_run(ns.run_dir, ns.overrides)
    except (AlignkitError, ValueError, FileNotFoundError) as exc:
        print(f"alignkit evaluate: error: {exc}", file=sys.stderr)
        return 2
    metrics = rd.summary["stages"][STAGE]["metrics"]
    shown = {k: v for k, v in metrics.items()
             if k.startswith(("reward/", "win/win_rate", "kl/per_", "length/", "safety/", "sycophancy/"))
             and k.rpartition("/")[2].split("_")[-1] not in ("q25", "q75", "p90", "max", "std")}
    print(json.dumps(shown, indent=1))
    print(f"alignkit: report: {rd.path / 'report.md'}")
    return 0


def report_command(argv: Sequence[str]) -> int:
    """``alignkit report DIR... [--kl-budget X] [--metric NAME] [--out DIR]``."""
    parser = argparse.ArgumentParser(prog="alignkit report",
                                     description="Compare runs: a table with the swept parameters as columns, "
                                                 "ranked by a metric; a metric-vs-KL frontier plot; the best run "
                                                 "under a KL budget; each training stage's final metrics; "
                                                 "failed runs marked.")
    parser.add_argument("dirs", nargs="+", type=Path, help="run directories or Hydra multirun folders")
    parser.add_argument("--kl-budget", type=float, default=None, help="nats per response")
    parser.add_argument("--metric", default=None,
                        help="what ranks the runs: a scorer name, an evaluate metric (win/win_rate) or a training "
                             "stage's (dpo/eval/loss); default: the reward, else the win rate, else the last "
                             "training stage's held-out accuracy or loss. An unknown name lists the choices")
    parser.add_argument("--out", type=Path, default=None,
                        help="where comparison.md and frontier.png go (default: the first DIR)")
    ns = parser.parse_args(list(argv))
    from alignkit.plugins.evaluation.report import compare_runs

    try:
        path, text = compare_runs(ns.dirs, ns.out, ns.kl_budget, ns.metric)
    except (AlignkitError, ValueError, FileNotFoundError) as exc:
        print(f"alignkit report: error: {exc}", file=sys.stderr)
        return 2
    print(text)
    print(f"alignkit: comparison: {path}", file=sys.stderr)
    return 0
