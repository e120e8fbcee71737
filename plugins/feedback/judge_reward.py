"""``preference_model=judge``: the constitution judge's verdicts as the reward (direct RLAIF).

Lee et al. (2023) found that asking the AI labeler for the reward during RL ("d-RLAIF") beat
training a reward model on its labels first. This preference model is that: PPO, RLOO, GRPO,
best-of-n and evaluation call ``score(prompts, responses)`` and the judge answers, with the
constitution, backends (a local model or an OpenAI-compatible server) and judgement cache of
``feedback=constitution``.

Two modes:

``single``     Each response alone: the judge is asked whether the reply is good by one principle
               (sampled per prompt, so every sample of a prompt faces the same question);
               reward = P("Yes") / (P("Yes") + P("No")) read from the answer's log-probs.
``reference``  Each response against the *reference answer* of its prompt: the greedy answer of
               the policy the stage started from (generated once per prompt); reward = P(response
               is better), the pairwise comparison of ``feedback=constitution`` in both orders.

Both are cached per (prompt, response[, reference answer], judge config) in the judgement
cache, so a rerun or another run that meets the same response asks nothing again, and batched:
the missing ones go to the judge ``batch_size`` at a time (``concurrency`` with a server).
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from typing import Any, Callable, Sequence

import torch

from alignkit.core import ConfigError
from alignkit.core.interfaces import CacheCounters, capability
from alignkit.plugins.feedback.constitution import ConstitutionFeedbackConfig, _clip, transcript
from alignkit.plugins.feedback.judgement import PairJudgement, verdict
from alignkit.plugins.feedback.principles import Constitution

MODES = ("single", "reference")


@dataclass
class JudgeRewardConfig(ConstitutionFeedbackConfig):
    """Options of ``preference_model=judge``: ``feedback=constitution``'s, plus these."""

    mode: str = "single"  # single: is this reply good? | reference: is it better than the starting policy's answer?
    scale: float = 1.0  # reward = scale * probability + shift
    shift: float = 0.0
    reference_max_new_tokens: int = 48  # mode=reference: length of the greedy reference answers


_SYSTEM = "You are a careful, impartial judge of AI assistant replies."


def single_question(context: str, reply: str, criterion: str) -> str:
    return (f"Here is a conversation between a user and an AI assistant.\n\n{context}\n\n"
            f"The assistant's next reply:\n\n{reply}\n\n"
            f"Judge the reply by this criterion: \"{criterion}\"\n"
            f"By that criterion, is the reply a good one? Answer with one word, Yes or No.")


class SingleResponseJudge:
    """Judges one reply at a time; shaped like a feedback provider (``judge(prompts, replies, "")``
    -> one ``Judgement`` each, probability = P(yes)) so the judgement cache wraps it unchanged."""

    def __init__(self, options: JudgeRewardConfig, constitution: Constitution, backend: Any) -> None:
        self.options, self.constitution, self.backend = options, constitution, backend

    def identity(self) -> dict[str, Any]:
        o = self.options
        return {"provider": "judge", "mode": "single", "question": single_question("{context}", "{reply}", "{c}"),
                "principles": [p.__dict__ for p in self.constitution.principles], "seed": o.seed,
                "max_context_chars": o.max_context_chars, "max_response_chars": o.max_response_chars,
                "backend": self.backend.identity()}

    def conversation(self, prompt: Any, reply: str) -> list[dict]:
        o = self.options
        principle = self.constitution.sample(o.seed, prompt)  # per prompt: the k samples face one question
        question = single_question(transcript(prompt, o.max_context_chars), _clip(reply, o.max_response_chars),
                                   principle.comparison)
        return [{"role": "system", "content": _SYSTEM}, {"role": "user", "content": question}]

    def judge(self, prompts: Sequence[Any], replies: Sequence[str], unused: Sequence[str]) -> list[PairJudgement]:
        conversations = [self.conversation(p, r) for p, r in zip(prompts, replies)]
        probs = self.backend.choice_probs(conversations, labels=("Yes", "No")) if conversations else []
        return [PairJudgement(preferred=verdict(p, 0.0), probability=float(p), provider="judge",
                              principle=self.constitution.sample(self.options.seed, prompt).id,
                              annotator=self.backend.name) for prompt, p in zip(prompts, probs)]


class JudgeReward:
    """Implements ``PreferenceModel``: ``score(prompts, responses)`` -> float32 tensor [N]."""

    def __init__(self, judge: Any, options: JudgeRewardConfig,
                 references: Callable[[Sequence[Any]], list[str]] | None = None) -> None:
        if options.mode not in MODES:
            raise ConfigError(f"preference_model.mode must be one of {', '.join(MODES)}, not '{options.mode}'")
        if options.mode == "reference" and references is None:
            raise ConfigError("preference_model.mode=reference needs reference answers")
        self.judge, self.options, self.references = judge, options, references

    @property
    def hits(self) -> int | None:
        """Scores answered by the judgement cache (None without a cache)."""
        counters = capability(self.judge, CacheCounters)
        return counters.hits if counters is not None else None

    @property
    def misses(self) -> int | None:
        """Scores the judge was asked for."""
        counters = capability(self.judge, CacheCounters)
        return counters.misses if counters is not None else None

    def score(self, prompts: Sequence[Any], responses: Sequence[str]) -> torch.Tensor:
        if len(prompts) != len(responses):
            raise ValueError(f"preference_model=judge: {len(prompts)} prompts but {len(responses)} responses")
        if not responses:
            return torch.zeros(0, dtype=torch.float32)
        others = [""] * len(responses) if self.options.mode == "single" else self.references(list(prompts))
        verdicts = self.judge.judge(list(prompts), list(responses), others)
        values = torch.tensor([float(v.probability) for v in verdicts], dtype=torch.float32)
        return values * self.options.scale + self.options.shift


class ReferenceAnswers:
    """The greedy answer of a fixed model to each prompt, generated once per distinct prompt."""

    def __init__(self, load: Callable[[], Any], max_new_tokens: int, batch_size: int, max_prompt_tokens: int) -> None:
        self._load, self._loaded = load, None
        self.max_new_tokens, self.batch_size, self.max_prompt_tokens = max_new_tokens, batch_size, max_prompt_tokens
        self.answers: dict[str, str] = {}

    def __call__(self, prompts: Sequence[Any]) -> list[str]:
        from alignkit.core.lm import sample_responses

        keys = [json.dumps(p, sort_keys=True, ensure_ascii=False) for p in prompts]
        missing = list(dict.fromkeys(k for k in keys if k not in self.answers))
        if missing:
            if self._loaded is None:
                self._loaded = self._load()
            model, tokenizer = self._loaded
            todo = [json.loads(k) for k in missing]
            todo = [[{"role": "user", "content": p}] if isinstance(p, str) else p for p in todo]
            out = sample_responses(model, tokenizer, todo, max_new_tokens=self.max_new_tokens, temperature=0.0,
                                   batch_size=self.batch_size, seed=0, max_prompt_tokens=self.max_prompt_tokens)
            self.answers.update({k: text.strip() for k, (_, text) in zip(missing, out)})
        return [self.answers[k] for k in keys]
