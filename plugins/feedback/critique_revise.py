"""The ``critique_revise`` stage: Constitutional AI's supervised phase.

For each prompt (red-team prompts in the CAI paper) the current policy answers; the critic
(``critic=constitution``) critiques the answer against a sampled principle and rewrites it,
``rounds`` times. The critic is its own config group, apart from the labeler (``feedback=``), so
an RLAIF pipeline labels with any provider (a rule, a reward model, people) after this stage.
Everything is kept in ``critiques.jsonl``; the final revisions become an ``sft`` artifact, so a
following ``sft`` stage trains on them.
"""

from __future__ import annotations

import logging
import random
from dataclasses import dataclass
from typing import Any, Optional


from alignkit.core import ConfigError, StageResult
from alignkit.core.interfaces import Critic, capability
from alignkit.core.lm import sample_responses
from alignkit.core.progress import SamplingProgress
from alignkit.core.records_io import write_jsonl

log = logging.getLogger("alignkit")


@dataclass
class CritiqueReviseConfig:
    """Options of ``optimizer=critique_revise`` (in pipelines: ``critique_revise.*``)."""

    prompts: int = 32  # train prompts; -1: all
    eval_prompts: int = 4  # held-out prompts revised into the artifact's eval.jsonl
    prompts_path: Optional[str] = None  # prompts file (any format data=files reads); default: the data's prompts
    rounds: int = 1  # critique-then-revise rounds per prompt
    max_new_tokens: int = 96  # the policy's first answer
    temperature: float = 0.7
    batch_size: int = 8
    seed: int = 0


def critic(ctx: Any) -> Critic:
    """The run's ``critic`` (a feedback provider that can critique and revise), built as a stage builds
    its feedback provider; a missing one, or one without ``Critic``'s members, is a ``ConfigError``."""
    node = ctx.run.cfg.get("critic")
    if node is None or node.get("name") is None:
        raise ConfigError(f"stage '{ctx.name}' critiques and revises with the critic: add critic=constitution "
                          "to the command line (feedback= is the labeler)")
    found = capability(ctx.feedback(node), Critic)
    if found is None or found.constitution is None:
        raise ConfigError(f"stage '{ctx.name}' critiques and revises with the critic, and critic '{node.name}' "
                          "cannot (it has no constitution, critique and revise); use critic=constitution")
    return found


class CritiqueReviseOptimizer:
    data_parallel = False  # under `accelerate launch` the main process samples and judges, the others wait

    def __init__(self, options: CritiqueReviseConfig, ctx: Any = None) -> None:
        self.options = options  # validated by the core (core/options.py); ctx: the StageContext
        if self.options.rounds < 1:
            raise ConfigError("critique_revise.rounds must be at least 1")

    def _prompts(self, ctx: Any, split: str) -> list[Any]:
        o = self.options
        limit = o.prompts if split == "train" else o.eval_prompts
        if limit == 0:
            return []
        if o.prompts_path:
            from alignkit.core.options import build_component

            source = build_component(ctx.run.registry, "data_source", "files",
                                     {"prompts": o.prompts_path, "seed": o.seed, "on_bad_record": "skip"},
                                     ctx.run, group="data source")
            rows = source.prompts(split)
        else:
            rows = ctx.dataset("prompts", split)
        prompts = [row["prompt"] for row in rows] if rows is not None else []
        random.Random(o.seed).shuffle(prompts)
        return prompts if limit < 0 else prompts[:limit]

    def run(self, ctx: Any) -> StageResult:
        o = self.options
        provider = critic(ctx)
        constitution = provider.constitution
        settings = ctx.trainer_settings()
        policy = ctx.load_model("policy")
        splits = {split: self._prompts(ctx, split) for split in ("train", "eval")}
        kept: list[dict] = []
        sft: dict[str, list[dict]] = {"train": [], "eval": []}
        empty = 0
        total = sum(len(p) for p in splits.values()) * (1 + 2 * o.rounds)
        # the critiques and revisions come from the provider, which does not report its tokens: they are
        # counted by tokenising its texts with the policy's tokenizer
        count = lambda texts: sum(len(policy.tokenizer(t, add_special_tokens=False)["input_ids"])  # noqa: E731
                                  for t in texts)
        with SamplingProgress("critique_revise", total, settings.progress, unit="gen") as bar:
            for split, prompts in splits.items():
                if not prompts:
                    continue
                offset = 0 if split == "train" else 1000
                samples = sample_responses(policy.model, policy.tokenizer, prompts, max_new_tokens=o.max_new_tokens,
                                           temperature=o.temperature, batch_size=o.batch_size,
                                           seed=o.seed + offset, max_prompt_tokens=settings.max_length,
                                           generator=ctx.generator(), progress=bar)
                current = [text.strip() for _, text in samples]
                history: list[list[dict]] = [[] for _ in prompts]
                initial = list(current)
                for r in range(o.rounds):
                    principles = [constitution.sample(o.seed, p, r) for p in prompts]
                    critiques = provider.critique(prompts, current, principles, seed=o.seed + offset + 2 * r)
                    bar.update(len(prompts), count(critiques))
                    revisions = provider.revise(prompts, current, critiques, principles,
                                                seed=o.seed + offset + 2 * r + 1)
                    bar.update(len(prompts), count(revisions))
                    for i, (pr, c, rev) in enumerate(zip(principles, critiques, revisions)):
                        history[i].append({"principle": pr.id, "critique_request": pr.critique, "critique": c,
                                           "revision_request": pr.revision, "revision": rev})
                        if rev.strip():
                            current[i] = rev.strip()
                        else:
                            empty += 1  # an empty revision keeps the answer it revised
                for p, first, rounds, final in zip(prompts, initial, history, current):
                    kept.append({"split": split, "prompt": p, "initial": first, "rounds": rounds, "final": final})
                    if final:
                        sft[split].append({"messages": [*[dict(m) for m in p],
                                                        {"role": "assistant", "content": final}]})
        if not sft["train"]:
            raise ConfigError(f"stage '{ctx.name}' had no prompts to revise (critique_revise.prompts, "
                              "critique_revise.prompts_path or the data's prompts)")
        write_jsonl(ctx.dir / "critiques.jsonl", kept)
        out = ctx.dir / "sft"
        for split, rows in sft.items():
            if rows:
                write_jsonl(out / f"{split}.jsonl", rows)
        changed = sum(1 for k in kept if k["final"] != k["initial"])
        metrics = {"critique_revise/prompts": len(kept), "critique_revise/revised": changed,
                   "critique_revise/empty_revisions": empty, "critique_revise/rounds": o.rounds,
                   "critique_revise/mean_initial_chars": sum(len(k["initial"]) for k in kept) / len(kept),
                   "critique_revise/mean_final_chars": sum(len(k["final"]) for k in kept) / len(kept)}
        log.info("critique_revise: %d prompts, %d answers changed by revision; kept in %s", len(kept), changed,
                 ctx.dir / "critiques.jsonl")
        return StageResult(metrics=metrics, artifacts={"sft": ctx.artifact(out)})
