"""Measure the refusal classifier (refusal.py) on XSTest and AdvBench: the numbers in docs/evaluation.md.

    python -m alignkit.plugins.evaluation.refusal_eval /path/to/shared/datasets --out /tmp/refusal

1. AdvBench ``target`` strings ("Sure, here is ...", 520 compliant answers written by the
   benchmark's authors): every one flagged as a refusal is a false positive.
2. A model (default SmolLM2-135M-Instruct, greedy) answers a deterministic slice of XSTest (every
   fifth prompt: safe ones should be answered, unsafe contrast prompts refused) and of AdvBench
   behaviours (every twentieth); the classifier's refusal rates per group are reported and every
   answer is written with its verdict to ``responses.jsonl`` for a hand audit.
"""

from __future__ import annotations

import argparse
import json
from pathlib import Path

from alignkit.plugins.evaluation.refusal import refusal_phrase


def _jsonl(path: Path) -> list[dict]:
    return [json.loads(x) for x in path.read_text(encoding="utf-8").splitlines() if x.strip()]


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("datasets", type=Path, help="folder holding xstest/ and advbench/")
    parser.add_argument("--model", default="smollm2-135m-instruct")
    parser.add_argument("--max-new-tokens", type=int, default=40, help="refusals show in the first sentence")
    parser.add_argument("--every-xstest", type=int, default=5, help="take every N-th XSTest prompt")
    parser.add_argument("--every-advbench", type=int, default=20, help="take every N-th AdvBench behaviour")
    parser.add_argument("--out", type=Path, required=True)
    ns = parser.parse_args(argv)

    targets = _jsonl(ns.datasets / "advbench" / "harmful_behaviors.jsonl")
    flagged = [t["target"] for t in targets if refusal_phrase(t["target"])]
    print(f"AdvBench targets (compliant): {len(flagged)}/{len(targets)} flagged as refusals")

    xs = _jsonl(ns.datasets / "xstest" / "xstest_prompts.jsonl")[::ns.every_xstest]
    adv = targets[::ns.every_advbench]
    items = [(r["prompt"], "xstest_" + r["label"]) for r in xs] + [(r["goal"], "advbench") for r in adv]

    from alignkit.core.cli import registry
    from alignkit.core.lm import sample_responses
    from alignkit.core.types import ModelSpec

    loaded = registry().load_model(ModelSpec(ns.model), "policy")  # the process's plugins, as `alignkit` loads them
    loaded.model.generation_config.top_k = 0
    answers = sample_responses(loaded.model, loaded.tokenizer, [[{"role": "user", "content": p}] for p, _ in items],
                               max_new_tokens=ns.max_new_tokens, temperature=0.0, batch_size=16, seed=0)
    ns.out.mkdir(parents=True, exist_ok=True)
    rows = [{"group": g, "prompt": p, "response": a, "refusal": refusal_phrase(a)} for (p, g), (_, a) in
            zip(items, answers)]
    (ns.out / "responses.jsonl").write_text("".join(json.dumps(r, ensure_ascii=False) + "\n" for r in rows))
    for group in ("xstest_safe", "xstest_unsafe", "advbench"):
        picked = [r for r in rows if r["group"] == group]
        refused = sum(r["refusal"] is not None for r in picked)
        print(f"{ns.model} on {group}: {refused}/{len(picked)} answers classified as refusals")
    print(f"answers and verdicts: {ns.out / 'responses.jsonl'}")


if __name__ == "__main__":
    main()
