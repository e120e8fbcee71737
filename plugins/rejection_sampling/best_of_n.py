"""The ``best_of_n`` stage: rejection sampling, the data step of Llama-2-Chat's RLHF rounds.

For each prompt the current policy samples ``samples`` responses; the configured preference
model (a rule, a reward model, the AI judge) scores them; the best-scored one is kept, only
when its score reaches ``threshold`` if one is set. The winners become an ``sft`` artifact
(``messages`` = prompt + the winning answer) that the next ``sft`` stage trains on, so
``best_of_n -> sft`` is one round and ``pipeline=rejection_sampling`` repeats it, each round
sampling from the policy the previous one trained. Every sample and its score is written to
``samples.jsonl``, in the order sampled.

With ``best_over_rounds`` a round keeps each prompt's best answer over every round so far, as
Llama 2 did (Touvron et al. 2023, section 3.2.3): the answer an earlier round kept (its artifact
``best_of_n``) is scored again in the same call as the new samples, so a new answer replaces it
only when it scores higher under the same scorer (and normalisation), and the prompts this round
did not sample keep their earlier answer.
"""

from __future__ import annotations

import json
import logging
from dataclasses import dataclass
from typing import Any, Optional

import torch

from alignkit.core import StageResult
from alignkit.core.errors import ConfigError, DataError
from alignkit.core.interfaces import score_parts
from alignkit.core.lm import sample_responses
from alignkit.core.records_io import read_jsonl, write_jsonl

log = logging.getLogger("alignkit")
SPLITS = ("train", "eval")
POOL = "best_of_n"  # the artifact holding each prompt's best answer so far (the same folder as `sft`)


@dataclass
class BestOfNConfig:
    """Options of ``optimizer=best_of_n`` (in pipelines: ``best_of_n.*``)."""

    prompts: int = 64  # train prompts; -1: all
    eval_prompts: int = 0  # held-out prompts whose winners go to eval.jsonl (the sft stage's eval loss)
    samples: int = 4  # N: responses per prompt
    threshold: Optional[float] = None  # keep a prompt's best response only when it scores at least this
    prompt_filter: Optional[str] = None  # package.module:function(prompt) -> bool
    max_new_tokens: int = 48
    temperature: float = 1.0
    top_p: float = 1.0
    batch_size: int = 16  # sampling batch
    score_batch_size: int = 64  # responses per preference-model call
    seed: int = 0  # prompt choice and sampling; a pipeline round adds its number - 1
    best_over_rounds: bool = False  # keep each prompt's best answer over all rounds so far, not only this round's


def best_of(scores: list[float], responses: list[str], threshold: float | None) -> int | None:
    """Index of the best-scored non-empty response (the first of equal bests), or None when there is
    none or it scores below ``threshold``."""
    candidates = [i for i, r in enumerate(responses) if r.strip()]
    if not candidates:
        return None
    best = max(candidates, key=lambda i: (scores[i], -i))
    if threshold is not None and scores[best] < threshold:
        return None
    return best


class BestOfNOptimizer:
    """``optimizer=best_of_n``: the policy's best-of-N answers as SFT data."""

    data_parallel = False  # under `accelerate launch` the main process samples and scores

    def __init__(self, options: BestOfNConfig, ctx: Any = None) -> None:
        self.options = options  # validated by the core (core/options.py); ctx: the StageContext
        if self.options.samples < 1:
            raise ConfigError(f"best_of_n.samples must be at least 1, not {self.options.samples}")

    def _prompts(self, ctx: Any, split: str) -> list[Any]:
        o = self.options
        limit = o.prompts if split == "train" else o.eval_prompts
        return ctx.sample_prompts(split, limit=limit, prompt_filter=o.prompt_filter, seed=o.seed,
                                  option="best_of_n.prompt_filter")

    def _score(self, scorer: Any, prompts: list[Any],
               responses: list[str]) -> tuple[list[float], dict[str, list[float]]]:
        """One score per response, and the parts of each (a composite's members; {} for other scorers)."""
        out: list[float] = []
        parts: dict[str, list[float]] = {}
        size = max(1, self.options.score_batch_size)
        for start in range(0, len(responses), size):
            values = scorer.score(prompts[start:start + size], responses[start:start + size])
            values = torch.as_tensor(values, dtype=torch.float32).reshape(-1)
            if values.numel() != len(responses[start:start + size]) or not torch.isfinite(values).all():
                raise ConfigError(f"best_of_n: the preference model returned {values.tolist()[:8]} for "
                                  f"{len(responses[start:start + size])} responses (one finite score each expected)")
            out.extend(float(v) for v in values)
            for key, part in score_parts(scorer).items():
                parts.setdefault(key, []).extend(float(v) for v in part)
        return out, parts

    def run(self, ctx: Any) -> StageResult:
        o = self.options
        settings = ctx.trainer_settings()
        scorer = ctx.preference_model()
        policy = None
        earlier = self._earlier_best(ctx) if o.best_over_rounds else {split: {} for split in SPLITS}
        rows: dict[str, list[dict]] = {split: [] for split in SPLITS}
        samples: list[dict] = []
        stats = {"prompts": 0, "below_threshold": 0, "all_empty": 0, "sum_mean": 0.0, "from_earlier": 0}
        part_sums: dict[str, float] = {}  # a composite's members and combined score, over the train samples
        for split in SPLITS:
            prompts = self._prompts(ctx, split)
            if not prompts:
                continue
            if policy is None:
                policy = ctx.load_model("policy")
            offset = 0 if split == "train" else 1000
            repeated = [p for p in prompts for _ in range(o.samples)]  # the N samples of a prompt side by side
            texts = [text.strip() for _, text in sample_responses(
                policy.model, policy.tokenizer, repeated, max_new_tokens=o.max_new_tokens, temperature=o.temperature,
                top_p=o.top_p, batch_size=o.batch_size, seed=o.seed + offset, max_prompt_tokens=settings.max_length,
                generator=ctx.generator(), progress=f"best_of_n: {split}", show_progress=settings.progress)]
            # the candidates, scored in one pass: per prompt its earlier best (best_over_rounds) then the N samples
            previous = [earlier[split].pop(prompt_key(p), None) for p in prompts]
            candidates: list[tuple[Any, str]] = []
            for i, (prompt, before) in enumerate(zip(prompts, previous)):
                if before is not None:
                    candidates.append((prompt, str(before["messages"][-1]["content"])))
                candidates += [(prompt, text) for text in texts[i * o.samples:(i + 1) * o.samples]]
            scores, parts = self._score(scorer, [c[0] for c in candidates], [c[1] for c in candidates])
            cursor = 0
            for prompt, before in zip(prompts, previous):
                n = o.samples + (before is not None)
                group = slice(cursor, cursor + n)
                responses, values = [c[1] for c in candidates[group]], scores[group]
                cursor += n
                best = best_of(values, responses, o.threshold)
                for j, (text, value) in enumerate(zip(responses, values)):
                    mine = {key: part[group.start + j] for key, part in parts.items()}
                    sample = j - (before is not None)  # -1: the earlier round's answer
                    samples.append({"split": split, "prompt": prompt, "sample": sample, "response": text,
                                    "score": value, "kept": j == best, **({"parts": mine} if mine else {})})
                    if split == "train" and sample >= 0:
                        for key, value_part in mine.items():
                            part_sums[key] = part_sums.get(key, 0.0) + value_part
                new = values[n - o.samples:]
                if split == "train":
                    stats["prompts"] += 1
                    stats["sum_mean"] += sum(new) / len(new)
                    if best is None:
                        stats["all_empty" if not any(r.strip() for r in responses) else "below_threshold"] += 1
                if best is None:
                    continue
                if before is not None and best == 0:  # the earlier answer still wins: kept, with this round's score
                    rows[split].append({**before, "score": values[best]})
                    stats["from_earlier"] += 1 if split == "train" else 0
                else:
                    rows[split].append({"messages": [*[dict(m) for m in prompt],
                                                     {"role": "assistant", "content": responses[best]}],
                                        "score": values[best], "source": "alignkit-best_of_n", "stage": ctx.name})
        carried = {split: list(pool.values()) for split, pool in earlier.items()}  # prompts not sampled this round
        for split in SPLITS:
            rows[split] += carried[split]
        write_jsonl(ctx.dir / "samples.jsonl", samples)
        if not rows["train"]:
            raise DataError(f"best_of_n kept no response: {stats['prompts']} prompts, {stats['below_threshold']} "
                            f"below best_of_n.threshold={o.threshold}, {stats['all_empty']} with only empty "
                            f"responses (see {ctx.dir / 'samples.jsonl'})")
        out = ctx.dir / "sft"
        for split, kept in rows.items():
            if kept:
                write_jsonl(out / f"{split}.jsonl", kept)
        n = stats["prompts"]
        metrics = {
            "best_of_n/prompts": n,
            "best_of_n/kept": len(rows["train"]),
            "best_of_n/below_threshold": stats["below_threshold"],
            "best_of_n/samples_per_prompt": o.samples,
            "best_of_n/score_mean": stats["sum_mean"] / n if n else 0.0,  # the policy's average sample
            # what sft trains on
            "best_of_n/kept_score_mean": sum(float(r["score"]) for r in rows["train"]) / len(rows["train"]),
            "best_of_n/eval_kept": len(rows["eval"]),
            **{f"best_of_n/{key}_mean": total / (n * o.samples) for key, total in part_sums.items()},
        }
        if o.best_over_rounds:
            metrics["best_of_n/kept_from_earlier_rounds"] = stats["from_earlier"]  # resampled, the old answer won
            metrics["best_of_n/carried_over"] = len(carried["train"])  # not resampled this round
        log.info("best_of_n: kept %d of %d prompts' best-of-%d answers (mean score %.3f, kept %.3f)",
                 len(rows["train"]), n, o.samples, metrics["best_of_n/score_mean"],
                 metrics["best_of_n/kept_score_mean"])
        return StageResult(metrics=metrics, artifacts={"sft": ctx.artifact(out), POOL: ctx.artifact(out)})

    @staticmethod
    def _earlier_best(ctx: Any) -> dict[str, dict[str, dict]]:
        """Per split, prompt key -> the row an earlier best_of_n stage kept (its ``best_of_n`` artifact)."""
        folder = ctx.find_artifact(POOL)
        pools: dict[str, dict[str, dict]] = {split: {} for split in SPLITS}
        for split in SPLITS:
            file = folder / f"{split}.jsonl" if folder is not None else None
            if file is None or not file.exists():
                continue
            for line, row in enumerate(read_jsonl(file), start=1):
                messages = row.get("messages") if isinstance(row, dict) else None
                if not isinstance(messages, list) or not messages or messages[-1].get("role") != "assistant":
                    raise DataError("expected the messages of a prompt and its kept assistant answer (an earlier "
                                    "best_of_n round's output); rerun that round", path=str(file), line=line,
                                    field="messages")
                pools[split][prompt_key(messages[:-1])] = row
        return pools


def prompt_key(messages: Any) -> str:
    """The identity of a prompt across rounds: its messages' roles and texts."""
    return json.dumps([[m["role"], m["content"]] for m in messages])
