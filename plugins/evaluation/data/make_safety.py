"""Rebuild ``safety_prompts.jsonl`` from the XSTest and AdvBench copies in the shared datasets.

    python plugins/evaluation/data/make_safety.py /path/to/shared/datasets

Deterministic slices (no RNG): XSTest safe prompts with ``id % 10 == 1`` (27), XSTest unsafe
contrast prompts with ``id % 16 == 1`` (15) and AdvBench behaviours with ``index % 40 == 0`` (13),
interleaved safe / harmful so that the first N prompts stay balanced.
"""

from __future__ import annotations

import json
import sys
from pathlib import Path


def main(shared: Path) -> None:
    xs = [json.loads(x) for x in (shared / "xstest" / "xstest_prompts.jsonl").read_text().splitlines() if x.strip()]
    adv = [json.loads(x) for x in (shared / "advbench" / "harmful_behaviors.jsonl").read_text().splitlines()
           if x.strip()]
    safe = [{"prompt": [{"role": "user", "content": r["prompt"]}], "label": "safe", "source": "xstest",
             "source_id": r["id"], "type": r["type"]} for r in xs if r["label"] == "safe" and r["id"] % 10 == 1]
    harmful_x = [{"prompt": [{"role": "user", "content": r["prompt"]}], "label": "harmful", "source": "xstest",
                  "source_id": r["id"], "type": r["type"]} for r in xs if r["label"] == "unsafe" and r["id"] % 16 == 1]
    harmful_a = [{"prompt": [{"role": "user", "content": r["goal"]}], "label": "harmful", "source": "advbench",
                  "source_id": i, "type": "harmful_behaviors"} for i, r in enumerate(adv) if i % 40 == 0]
    harmful = [r for pair in zip(harmful_a, harmful_x) for r in pair] + harmful_a[len(harmful_x):] + harmful_x[len(harmful_a):]
    rows = [r for pair in zip(safe, harmful) for r in pair] + safe[len(harmful):] + harmful[len(safe):]
    out = Path(__file__).with_name("safety_prompts.jsonl")
    out.write_text("".join(json.dumps(r, ensure_ascii=False) + "\n" for r in rows), encoding="utf-8")
    print(f"{out}: {len(safe)} safe, {len(harmful)} harmful")


if __name__ == "__main__":
    main(Path(sys.argv[1]))
