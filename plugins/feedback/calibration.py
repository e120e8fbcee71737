"""How far to trust a labeler before it trains anything (the RLAIF paper's first step).

The provider judges pairs that people already labelled, with the human-preferred response
put in slot A or B at random (seeded), so a judge that always picks one slot scores 50%.
Reported: accuracy on decided pairs, soft accuracy (mean probability given to the human
choice), tie rate, position consistency, and a one-sided binomial p-value against chance.
"""

from __future__ import annotations

import logging
import math
import random
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Optional, Sequence

from alignkit.core.records_io import write_jsonl
from alignkit.core.rundir import atomic_write_json
from alignkit.plugins.feedback.judgement import FeedbackError, to_dict

log = logging.getLogger("alignkit")


@dataclass
class CalibrationConfig:
    """``label.calibration.*``: checked before any pair is labelled."""

    enabled: bool = True
    path: Optional[str] = None  # labelled pairs (any format data=files reads); default: the data's eval pairs
    pairs: int = 32
    min_accuracy: float = 0.6  # on decided pairs
    max_p_value: float = 0.05  # one-sided binomial test against a coin flip
    on_fail: str = "warn"  # warn | stop
    seed: int = 0


def binomial_p_value(successes: int, trials: int) -> float:
    """P(X >= successes) for X ~ Binomial(trials, 1/2)."""
    if trials <= 0:
        return 1.0
    return sum(math.comb(trials, k) for k in range(successes, trials + 1)) / 2 ** trials


def labelled_pairs(ctx: Any, options: CalibrationConfig) -> tuple[list[dict], str]:
    """Up to ``options.pairs`` human-labelled pairs and where they came from."""
    if options.path:
        from alignkit.core.options import build_component

        source = build_component(ctx.run.registry, "data_source", "files",
                                 {"preferences": str(options.path), "eval_fraction": 0.0, "on_bad_record": "skip"},
                                 ctx.run, group="data source")
        rows, origin = source.preferences("train"), str(options.path)
    else:
        rows, origin = ctx.data.preferences("eval"), f"data '{ctx.run.cfg.data.name}' (eval preferences)"
        if rows is None:
            rows, origin = ctx.data.preferences("train"), f"data '{ctx.run.cfg.data.name}' (train preferences)"
    if rows is None:
        return [], origin
    usable = [dict(r) for r in rows if r["chosen"] != r["rejected"]]
    random.Random(options.seed).shuffle(usable)
    return usable[: options.pairs], origin


def calibrate(provider: Any, rows: Sequence[dict], seed: int = 0, progress: bool = False,
              chunk: int = 8) -> tuple[dict[str, float], list[dict]]:
    """Judge human-labelled pairs; returns metrics and one record per pair."""
    rng = random.Random(seed)
    prompts, first, second, human = [], [], [], []
    for row in rows:
        swap = rng.random() < 0.5
        prompts.append(row["prompt"])
        first.append(row["rejected"] if swap else row["chosen"])
        second.append(row["chosen"] if swap else row["rejected"])
        human.append("b" if swap else "a")
    from tqdm.auto import tqdm

    judgements: list = []
    with tqdm(total=len(rows), desc="calibrate labeler", unit="pair", disable=not progress) as bar:
        for start in range(0, len(rows), chunk):
            end = start + chunk
            judgements.extend(provider.judge(prompts[start:end], first[start:end], second[start:end]))
            bar.update(len(prompts[start:end]))
    pending = sum(j.preferred == "pending" for j in judgements)
    decided = [(j, h) for j, h in zip(judgements, human) if j.preferred in ("a", "b")]
    agree = sum(j.preferred == h for j, h in decided)
    consistent = [j.position_consistent for j in judgements if getattr(j, "position_consistent", None) is not None]
    soft = [j.probability if h == "a" else 1.0 - j.probability for j, h in zip(judgements, human)
            if j.preferred != "pending"]
    n = len(judgements)
    metrics = {
        "pairs": n,
        "accuracy": agree / len(decided) if decided else 0.0,
        "soft_accuracy": sum(soft) / len(soft) if soft else 0.0,
        "tie_rate": sum(j.preferred == "tie" for j in judgements) / n if n else 0.0,
        "pending": pending,
        "decided": len(decided),
        "p_value": binomial_p_value(agree, len(decided)),
    }
    if consistent:
        metrics["position_consistency"] = sum(consistent) / len(consistent)
    records = [{"prompt": p, "response_a": a, "response_b": b, "human": h, **to_dict(j)}
               for p, a, b, h, j in zip(prompts, first, second, human, judgements)]
    return metrics, records


def check(ctx: Any, provider: Any, options: CalibrationConfig, out_dir: Path, progress: bool = False,
          labels_follow: bool = True) -> dict[str, float]:
    """Run calibration, write ``calibration.json``/``.jsonl``, warn or stop when no better than chance.

    ``labels_follow`` is False when the stage only calibrates (``pipeline=calibrate``: no labels are
    made), so the warning does not claim the labeler's labels will be used.
    """
    if not options.enabled:
        return {}
    if options.on_fail not in ("warn", "stop"):
        from alignkit.core import ConfigError

        raise ConfigError(f"label.calibration.on_fail must be 'warn' or 'stop', not '{options.on_fail}'")
    rows, origin = labelled_pairs(ctx, options)
    if not rows:
        log.warning("label: no human-labelled pairs to calibrate the labeler against (%s); set "
                    "label.calibration.path=<pairs.jsonl> to check it before training", origin)
        return {"calibration/pairs": 0}
    metrics, records = calibrate(provider, rows, options.seed, progress=progress)
    passed = (metrics["decided"] > 0 and metrics["accuracy"] >= options.min_accuracy
              and metrics["p_value"] <= options.max_p_value)
    if metrics["pending"]:
        passed = True  # a human provider answers later; nothing to judge yet
    metrics["passed"] = float(passed)
    write_jsonl(out_dir / "calibration.jsonl", records)
    atomic_write_json(out_dir / "calibration.json", {"source": origin, **metrics,
                                                     "min_accuracy": options.min_accuracy,
                                                     "max_p_value": options.max_p_value})
    summary = (f"accuracy {metrics['accuracy']:.1%} on {metrics['decided']} decided of {metrics['pairs']} "
               f"human-labelled pairs from {origin} (p={metrics['p_value']:.3g} against a coin flip), tie rate "
               f"{metrics['tie_rate']:.1%}" + (f", position consistency {metrics['position_consistency']:.1%}"
                                               if "position_consistency" in metrics else ""))
    if passed:
        log.info("label: labeler calibration: %s", summary)
    elif options.on_fail == "stop":
        raise FeedbackError(f"the labeler is no better than chance: {summary}. Training on its labels would teach "
                            f"noise. Use a better judge (feedback=..., feedback.style=fewshot, a bigger model), or "
                            f"set label.calibration.on_fail=warn to continue anyway. Details: {out_dir / 'calibration.jsonl'}")
    else:
        bar = "!" * 78
        verdict = ("Its labels will be used anyway (label.calibration.on_fail=warn); set on_fail=stop to refuse."
                   if labels_follow else "Calibration only: no labels are made and nothing is trained; do not "
                   "train on this labeler's labels.")
        log.warning("\n%s\nLABELER NO BETTER THAN CHANCE: %s.\n%s\n%s", bar, summary, verdict, bar)
    return {f"calibration/{k}": float(v) for k, v in metrics.items()}
