"""The ``label`` stage: sample two responses per prompt from the current policy, have the
configured feedback provider judge them, and hand the pairs on as a ``preferences`` artifact.
With ``pair_selection=best_worst|divpo`` it samples k, scores each, and judges one pair a prompt
picked from them (DivPO: the most diverse good answer against the least diverse bad one).

This is the only place RLHF and RLAIF differ, and it does not know which it runs:
``feedback=rule|reward_model|constitution|human|dataset`` changes where the verdicts come
from. The sampled pairs are written before judging, so a rerun of a stopped stage judges
the same pairs (and the judgement cache answers those already judged).
"""

from __future__ import annotations

import logging
from dataclasses import dataclass, field
from typing import Any, Optional


from alignkit.core import StageResult
from alignkit.core.diversity import diversity_measure
from alignkit.core.errors import ConfigError, WaitingForFeedback
from alignkit.core.interfaces import (CacheCounters, GivenPreferences, PreferenceModel, WaitsForPeople, calibrates,
                                     capability)
from alignkit.core.lm import sample_responses
from alignkit.core.pair_selection import SELECTIONS, best_worst_pair, check_rho, divpo_pair
from alignkit.core.progress import SamplingProgress
from alignkit.core.records_io import read_jsonl, write_jsonl
from alignkit.plugins.feedback.calibration import CalibrationConfig, check
from alignkit.plugins.feedback.judgement import FeedbackError, to_dict

log = logging.getLogger("alignkit")
SPLITS = ("train", "eval")
SAMPLED_PROMPTS = {"train": 64, "eval": 16}  # label.prompts / label.eval_prompts when null and a judge samples


@dataclass
class LabelConfig:
    """Options of ``optimizer=label`` (in pipelines: ``label.*``)."""

    # train prompts to label; null: 64 sampled ones, or every pair with feedback=dataset;
    # -1: all; 0: calibrate only, no artifact
    prompts: Optional[int] = None
    eval_prompts: Optional[int] = None  # held-out prompts labelled into eval.jsonl; null: 16, or every pair
    samples: int = 2  # responses per prompt; pair_selection=pairs judges them as (1st, 2nd), (3rd, 4th), ...
    # pairs: as sampled | best_worst: the best- against the worst-scored of the samples | divpo: DivPO
    # (Lanchantin et al. 2025): the most diverse of the top divpo_rho by score against the least
    # diverse of the bottom divpo_rho (core/pair_selection.py); best_worst and divpo give one pair a prompt
    pair_selection: str = "pairs"
    divpo_rho: float = 0.5  # share of the samples in each of DivPO's chosen and rejected pools, in (0, 0.5]
    diversity: str = "distinct_n"  # DivPO's criterion: distinct_n | embedding | package.module:function(texts)
    diversity_n: int = 2  # n-gram order of diversity=distinct_n
    embedder: Optional[str] = None  # diversity=embedding: package.module:function(texts) -> vectors; null: MiniLM
    prompt_filter: Optional[str] = None  # package.module:function(prompt) -> bool: only label these prompts
    max_new_tokens: int = 48
    temperature: float = 1.0
    top_p: float = 1.0
    batch_size: int = 16  # sampling batch
    judge_batch_size: int = 16  # pairs per provider call (and per progress update)
    seed: int = 0
    keep_ties: bool = False  # keep ties as strength-0.5 pairs (DPO learns nothing from them)
    source: Optional[str] = None  # the records' 'source'; default alignkit-label/<provider>
    calibration: CalibrationConfig = field(default_factory=CalibrationConfig)


class LabelOptimizer:
    """``optimizer=label``: AI / rule / human labels on the policy's own samples."""

    data_parallel = False  # under `accelerate launch` the main process samples and judges, the others wait

    def __init__(self, options: LabelConfig, ctx: Any = None) -> None:
        self.options = options  # validated by the core (core/options.py), calibration included
        if self.options.samples < 2:
            raise ConfigError(f"label.samples must be at least 2 (a pair), not {self.options.samples}")
        o = self.options
        if o.pair_selection not in SELECTIONS:
            raise ConfigError(f"label.pair_selection must be one of {', '.join(SELECTIONS)}, not '{o.pair_selection}'")
        self._diversity = None
        if o.pair_selection == "divpo":
            check_rho(o.divpo_rho, "label.divpo_rho")
            self._diversity = diversity_measure(o.diversity, n=o.diversity_n, embedder=o.embedder,
                                                what="label.diversity")

    def run(self, ctx: Any) -> StageResult:
        o = self.options
        settings = ctx.trainer_settings()
        provider = ctx.feedback()
        provider_name = str(ctx.run.cfg.feedback.name)
        scorer = self._scorer(provider, provider_name)
        if not calibrates(provider):  # people are the reference labels; their agreement is measured by overlap
            metrics: dict[str, float] = {}
        else:
            metrics = dict(check(ctx, provider, o.calibration, ctx.dir, progress=settings.progress,
                                 labels_follow=o.prompts != 0))
        if o.prompts == 0:
            return StageResult(metrics=metrics)
        out = ctx.dir / "preferences"
        given = capability(provider, GivenPreferences)
        if given is not None:  # feedback=dataset: the labels are given
            for split in SPLITS:
                rows = given.existing_preferences(split)
                limit = self._option(split)
                if limit is not None and 0 <= limit < len(rows):
                    log.info("label: label.%s=%d keeps the first %d of the data's %d %s pairs",
                             "prompts" if split == "train" else "eval_prompts", limit, limit, len(rows), split)
                    rows = rows[:limit]
                if rows:
                    write_jsonl(out / f"{split}.jsonl", rows)
                metrics[f"label/{split}_pairs"] = len(rows)
            return StageResult(metrics=metrics, artifacts={"preferences": ctx.artifact(out)})

        pairs = {split: self._pairs(ctx, split, scorer) for split in SPLITS}
        judged: list[dict] = []
        records: dict[str, list[dict]] = {split: [] for split in SPLITS}
        counts = {"identical": 0, "ties": 0, "pending": 0}
        from tqdm.auto import tqdm

        total = sum(1 for split in SPLITS for p in pairs[split] if p["response_a"] != p["response_b"])
        with tqdm(total=total, desc=f"label ({provider_name})", unit="pair", disable=not settings.progress) as bar:
            for split in SPLITS:
                todo = [p for p in pairs[split] if p["response_a"] != p["response_b"]]
                counts["identical"] += len(pairs[split]) - len(todo)
                for start in range(0, len(todo), max(1, o.judge_batch_size)):
                    chunk = todo[start:start + o.judge_batch_size]
                    answers = provider.judge([p["prompt"] for p in chunk], [p["response_a"] for p in chunk],
                                             [p["response_b"] for p in chunk])
                    for pair, judgement in zip(chunk, answers):
                        judged.append({"split": split, **pair, **to_dict(judgement)})
                        record = self._record(pair, judgement, o.source or f"alignkit-label/{provider_name}")
                        if judgement.preferred == "pending":
                            counts["pending"] += 1
                        elif judgement.preferred == "tie":
                            counts["ties"] += 1
                        if record is not None:
                            records[split].append(record)
                    bar.update(len(chunk))
        write_jsonl(ctx.dir / "judgements.jsonl", judged)
        if counts["pending"]:
            write_jsonl(ctx.dir / "pending.jsonl", [j for j in judged if j["preferred"] == "pending"])
            answered = len(judged) - counts["pending"]
            people = capability(provider, WaitsForPeople)
            message = people.waiting_message(answered, len(judged)) if people is not None else (
                f"{answered} of {len(judged)} pairs are labelled by feedback '{provider_name}'; "
                "rerun the same command to continue")
            raise WaitingForFeedback(message, labelled=answered, total=len(judged),
                                     url=people.url if people is not None else None)
        if not records["train"]:
            raise FeedbackError(f"label: feedback '{provider_name}' preferred neither response in any of the "
                                f"{len(judged)} train pairs ({counts['ties']} ties, {counts['identical']} identical "
                                f"samples); nothing to learn from. See {ctx.dir / 'judgements.jsonl'}")
        for split in SPLITS:
            if records[split]:
                write_jsonl(out / f"{split}.jsonl", records[split])
        consistent = [j.get("orders") for j in judged if j.get("orders")]
        metrics.update({
            "label/train_pairs": len(records["train"]),
            "label/eval_pairs": len(records["eval"]),
            "label/judged": len(judged),
            "label/ties": counts["ties"],
            "label/identical": counts["identical"],
            "label/mean_strength": sum(r["strength"] for s in SPLITS for r in records[s])
            / max(1, sum(len(records[s]) for s in SPLITS)),
        })
        if scorer is not None:
            metrics.update(self._selection_metrics(ctx))
        if consistent:
            metrics["label/position_consistency"] = sum(
                (a > 0.5) == (b > 0.5) and a != 0.5 and b != 0.5 for a, b in consistent) / len(consistent)
        counters = capability(provider, CacheCounters)
        if counters is not None and counters.hits is not None:
            metrics["label/cache_hits"] = counters.hits
            metrics["label/cache_misses"] = counters.misses
        log.info("label: %d train and %d eval pairs labelled by '%s' (%d ties dropped, %d identical samples)",
                 len(records["train"]), len(records["eval"]), provider_name, counts["ties"], counts["identical"])
        return StageResult(metrics=metrics, artifacts={"preferences": ctx.artifact(out)})

    def _scorer(self, provider: Any, provider_name: str) -> Any:
        """What scores single responses for ``pair_selection=best_worst|divpo`` (the provider
        itself, e.g. a rule or a reward model); None for ``pairs``. Checked before calibration."""
        selection = self.options.pair_selection
        if selection == "pairs":
            return None
        if capability(provider, GivenPreferences) is not None:
            raise ConfigError(f"label.pair_selection={selection} selects among sampled responses, but feedback "
                              f"'{provider_name}' hands on the data's own pairs; use label.pair_selection=pairs")
        scorer = capability(provider, PreferenceModel)
        if scorer is None:
            raise ConfigError(f"label.pair_selection={selection} scores each sampled response, and feedback "
                              f"'{provider_name}' only compares two; use a feedback that scores (rule, reward_model) "
                              "or label.pair_selection=pairs")
        return scorer

    def _option(self, split: str) -> Optional[int]:
        """``label.prompts`` (train) or ``label.eval_prompts`` as set; None when left at null."""
        return self.options.prompts if split == "train" else self.options.eval_prompts

    def _record(self, pair: dict, judgement: Any, source: str) -> dict | None:
        a, b, p = pair["response_a"], pair["response_b"], float(judgement.probability)
        if judgement.preferred == "a":
            return {"prompt": pair["prompt"], "chosen": a, "rejected": b, "strength": p, "source": source}
        if judgement.preferred == "b":
            return {"prompt": pair["prompt"], "chosen": b, "rejected": a, "strength": 1.0 - p, "source": source}
        if judgement.preferred == "tie" and self.options.keep_ties:
            return {"prompt": pair["prompt"], "chosen": a, "rejected": b, "strength": 0.5, "source": source}
        return None

    def _pairs(self, ctx: Any, split: str, scorer: Any = None) -> list[dict]:
        """The pairs to judge, written to ``pairs-<split>.jsonl`` once and reused: the samples two by
        two, or (``scorer`` given) one pair per prompt chosen by ``pair_selection``."""
        o = self.options
        file = ctx.dir / f"pairs-{split}.jsonl"
        if file.exists():
            return read_jsonl(file)
        limit = self._option(split)
        limit = SAMPLED_PROMPTS[split] if limit is None else limit
        prompts = ctx.sample_prompts(split, limit=limit, prompt_filter=o.prompt_filter, seed=o.seed,
                                     option="label.prompt_filter")
        if not prompts:
            return []
        if not hasattr(self, "_policy"):
            self._policy = ctx.load_model("policy")
        model, tokenizer = self._policy.model, self._policy.tokenizer
        settings = ctx.trainer_settings()
        offset = 0 if split == "train" else 1000
        with SamplingProgress(f"label: sampling {split}", o.samples * len(prompts), settings.progress) as bar:
            samples = [[text.strip() for _, text in sample_responses(
                model, tokenizer, prompts, max_new_tokens=o.max_new_tokens, temperature=o.temperature, top_p=o.top_p,
                batch_size=o.batch_size, seed=o.seed + offset + k, max_prompt_tokens=settings.max_length,
                generator=ctx.generator(), progress=bar)]
                for k in range(o.samples)]
        if scorer is None:  # pair_selection=pairs
            pairs = [{"prompt": p, "response_a": samples[k][i], "response_b": samples[k + 1][i]}
                     for i, p in enumerate(prompts) for k in range(0, o.samples - 1, 2)
                     if samples[k][i] and samples[k + 1][i]]
        else:
            pairs = self._select(ctx, split, scorer, prompts, samples)
        write_jsonl(file, pairs)
        return pairs

    def _select(self, ctx: Any, split: str, scorer: Any, prompts: list, samples: list[list[str]]) -> list[dict]:
        """One pair per prompt out of its non-empty samples, by ``pair_selection``; every sample,
        score and diversity value is kept in ``samples-<split>.jsonl`` (the selection's metrics
        are read back from it)."""
        o = self.options
        pools = [[samples[k][i] for k in range(o.samples) if samples[k][i]] for i in range(len(prompts))]
        flat_prompts = [p for p, pool in zip(prompts, pools) for _ in pool]
        flat = [r for pool in pools for r in pool]
        scores: list[float] = []
        size = max(1, o.judge_batch_size)
        for start in range(0, len(flat), size):
            got = scorer.score(flat_prompts[start:start + size], flat[start:start + size])
            scores.extend(float(s) for s in (got.tolist() if hasattr(got, "tolist") else got))
        rows, pairs, offset = [], [], 0
        for prompt, pool in zip(prompts, pools):
            mine, offset = scores[offset:offset + len(pool)], offset + len(pool)
            diversity = self._diversity(pool) if self._diversity is not None and len(pool) > 1 else None
            if o.pair_selection == "divpo":
                picked = divpo_pair(mine, diversity, o.divpo_rho) if diversity is not None else None
            else:
                picked = best_worst_pair(mine)
            chosen, rejected = picked if picked is not None else (None, None)
            rows.append({"prompt": prompt, "responses": pool, "scores": mine, "diversity": diversity,
                         "chosen": chosen, "rejected": rejected})
            if picked is not None:
                pairs.append({"prompt": prompt, "response_a": pool[chosen], "response_b": pool[rejected]})
        write_jsonl(ctx.dir / f"samples-{split}.jsonl", rows)
        return pairs

    def _selection_metrics(self, ctx: Any) -> dict[str, float]:
        """What ``pair_selection`` did, over both splits: pairs formed, prompts left without one
        (every sample scored the same), the chosen and rejected samples' mean score and, for
        divpo, their mean diversity next to that of all samples."""
        rows = [r for split in SPLITS if (ctx.dir / f"samples-{split}.jsonl").exists()
                for r in read_jsonl(ctx.dir / f"samples-{split}.jsonl")]
        picked = [r for r in rows if r["chosen"] is not None]

        def mean(values: list[float]) -> float:
            return sum(values) / len(values) if values else 0.0

        m = {"label/selected_pairs": len(picked), "label/prompts_without_pair": len(rows) - len(picked),
             "label/chosen_score": mean([r["scores"][r["chosen"]] for r in picked]),
             "label/rejected_score": mean([r["scores"][r["rejected"]] for r in picked])}
        if self.options.pair_selection == "divpo":
            m["label/chosen_diversity"] = mean([r["diversity"][r["chosen"]] for r in picked])
            m["label/rejected_diversity"] = mean([r["diversity"][r["rejected"]] for r in picked])
            m["label/sample_diversity"] = mean([d for r in rows if r["diversity"] for d in r["diversity"]])
            log.info("label: divpo (rho %g, diversity %s) formed %d pairs from %d prompts (%d had no pair: every "
                     "sample scored the same); mean diversity of chosen %.3f, rejected %.3f, all samples %.3f",
                     self.options.divpo_rho, self.options.diversity, len(picked), len(rows),
                     len(rows) - len(picked), m["label/chosen_diversity"], m["label/rejected_diversity"],
                     m["label/sample_diversity"])
        else:
            log.info("label: best_worst formed %d pairs from %d prompts (%d had no pair: every sample scored the "
                     "same)", len(picked), len(rows), len(rows) - len(picked))
        return m
