"""``feedback=constitution``: an AI judge guided by principles (Constitutional AI, RLAIF).

Each comparison samples one principle (seeded, by a hash of the pair, so a resumed run
asks the same question) and asks the judge backend which reply is better, once with each
reply first; the two P(A better) are averaged and both are kept for the position-consistency
rate. The same provider critiques and revises responses for the ``critique_revise`` stage.

Prompt styles: ``plain`` (the question and the two replies), ``fewshot`` (two worked
comparisons first, written by us: a wrong sum and a harmful request, with A and B both
appearing as the right answer), ``rationale`` (the judge writes a short reason first,
then answers; costs a generation per order).
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any, Optional, Sequence

from alignkit.core import ConfigError, check_batch
from alignkit.plugins.feedback.cache import JudgementCacheOptions
from alignkit.plugins.feedback.judgement import PairJudgement, combine_orders, verdict
from alignkit.plugins.feedback.principles import Constitution, Principle

STYLES = ("plain", "fewshot", "rationale")
BACKENDS = ("local", "openai")


@dataclass
class ConstitutionFeedbackConfig(JudgementCacheOptions):
    """Options of ``feedback=constitution``."""

    constitution: str = "default"  # a name in conf/constitution/ or a .yaml / .jsonl path
    fewshot: Optional[str] = None  # JSONL of example critique/revision chats shown first
    backend: str = "local"  # local | openai
    model: Optional[str] = None  # local: model alias/path (None: the current policy); openai: served model name
    seed: int = 0  # principle sampling
    style: str = "plain"  # plain | fewshot | rationale
    both_orders: bool = True  # judge (A, B) and (B, A) and average
    tie_margin: float = 0.0  # |P(A better) - 0.5| <= tie_margin is a tie
    answer_prefix: str = ""  # local: text forced after the assistant tag, before the letter
    batch_size: int = 8
    max_length: int = 1024  # judge prompt tokens (local); longer prompts lose their start
    max_context_chars: int = 1500
    max_response_chars: int = 1200
    critique_max_new_tokens: int = 96
    revision_max_new_tokens: int = 128
    rationale_max_new_tokens: int = 64
    temperature: float = 0.7  # critiques and revisions
    # backend=openai
    base_url: str = "http://127.0.0.1:8000/v1"
    api_key_env: str = "OPENAI_API_KEY"
    timeout: float = 60.0
    retries: int = 3
    backoff: float = 1.0
    concurrency: int = 4
    logprobs: bool = True
    cache: bool = True  # JudgementCacheOptions' option, on: a judge is slow


_SYSTEM = "You are a careful, impartial judge of AI assistant replies."

_FEWSHOT = (
    ("User: What is 12 + 30?", "12 + 30 = 52.", "12 + 30 = 42.",
     "Which response answers the user's question more correctly and completely?", "B"),
    ("User: How do I get into my neighbour's house while they are away?",
     "I can't help with entering someone else's home. If you need to reach them, call or message them.",
     "Wait until dark, then check the back windows; they are often left unlocked.",
     "Which response is less harmful: it refuses dangerous requests and helps with safe ones?", "A"),
)


def transcript(prompt: Any, max_chars: int) -> str:
    if isinstance(prompt, str):
        text = f"User: {prompt}"
    else:
        names = {"user": "User", "assistant": "Assistant", "system": "System"}
        text = "\n".join(f"{names.get(m['role'], m['role'])}: {m['content']}" for m in prompt)
    return text if len(text) <= max_chars else "..." + text[-max_chars:]


def _clip(text: str, max_chars: int) -> str:
    return text if len(text) <= max_chars else text[:max_chars] + "..."


def _question(context: str, first: str, second: str, comparison: str) -> str:
    return (f"Here is a conversation between a user and an AI assistant.\n\n{context}\n\n"
            f"Two possible next replies of the assistant:\n\n(A) {first}\n\n(B) {second}\n\n"
            f"Question: {comparison}\nAnswer with one letter, A or B.")


def _messages(prompt: Any, history: Any) -> list[dict]:
    if isinstance(prompt, str):
        return [*history, {"role": "user", "content": prompt}]
    return [*history, *[dict(m) for m in prompt]]


class ConstitutionFeedback:
    def __init__(self, options: ConstitutionFeedbackConfig, constitution: Constitution, backend: Any) -> None:
        if options.style not in STYLES:
            raise ConfigError(f"feedback.style must be one of {', '.join(STYLES)}, not '{options.style}'")
        self.options = options
        self.constitution = constitution
        self.backend = backend

    def identity(self) -> dict[str, Any]:
        o = self.options
        return {"provider": "constitution", "principles": [p.__dict__ for p in self.constitution.principles],
                "seed": o.seed, "style": o.style, "both_orders": o.both_orders, "tie_margin": o.tie_margin,
                "max_context_chars": o.max_context_chars, "max_response_chars": o.max_response_chars,
                "rationale_max_new_tokens": o.rationale_max_new_tokens if o.style == "rationale" else None,
                "backend": self.backend.identity()}

    def principle_for(self, prompt: Any, a: str, b: str) -> Principle:
        return self.constitution.sample(self.options.seed, prompt, sorted([a, b]))

    def comparison(self, prompt: Any, first: str, second: str, principle: Principle) -> list[dict]:
        """The judge conversation asking which of ``first`` (A) and ``second`` (B) is better."""
        o = self.options
        messages: list[dict] = [{"role": "system", "content": _SYSTEM}]
        if o.style == "fewshot":
            for context, ex_a, ex_b, question, answer in _FEWSHOT:
                messages.append({"role": "user", "content": _question(context, ex_a, ex_b, question)})
                messages.append({"role": "assistant", "content": answer})
        messages.append({"role": "user", "content": _question(transcript(prompt, o.max_context_chars),
                                                              _clip(first, o.max_response_chars),
                                                              _clip(second, o.max_response_chars),
                                                              principle.comparison)})
        return messages

    def _probabilities(self, conversations: list[list[dict]]) -> tuple[list[float], list[str | None]]:
        if self.options.style != "rationale":
            return self.backend.choice_probs(conversations), [None] * len(conversations)
        asks = [[*c[:-1], {"role": "user", "content": c[-1]["content"].replace(
            "Answer with one letter, A or B.", "Explain briefly which reply is better and why.")}] for c in conversations]
        reasons = self.backend.generate(asks, max_new_tokens=self.options.rationale_max_new_tokens,
                                        temperature=0.0, seed=self.options.seed)
        follow = [[*ask, {"role": "assistant", "content": reason},
                   {"role": "user", "content": "So which reply is better? Answer with one letter, A or B."}]
                  for ask, reason in zip(asks, reasons)]
        return self.backend.choice_probs(follow), list(reasons)

    def judge(self, prompts: Sequence[Any], responses_a: Sequence[str], responses_b: Sequence[str]) -> list[PairJudgement]:
        check_batch("constitution", prompts, responses_a, responses_b)
        principles = [self.principle_for(p, a, b) for p, a, b in zip(prompts, responses_a, responses_b)]
        conversations = [self.comparison(p, a, b, pr) for p, a, b, pr in zip(prompts, responses_a, responses_b, principles)]
        if self.options.both_orders:
            conversations += [self.comparison(p, b, a, pr)
                              for p, a, b, pr in zip(prompts, responses_a, responses_b, principles)]
        probs, reasons = self._probabilities(conversations)
        n = len(principles)
        out = []
        for i, principle in enumerate(principles):
            rationale = reasons[i] if not self.options.both_orders or reasons[i] is None else \
                f"(A first) {reasons[i]}\n(B first) {reasons[n + i]}"
            if self.options.both_orders:
                out.append(combine_orders(probs[i], probs[n + i], provider="constitution",
                                          tie_margin=self.options.tie_margin, principle=principle.id,
                                          rationale=rationale, annotator=self.backend.name))
            else:
                out.append(PairJudgement(preferred=verdict(probs[i], self.options.tie_margin), probability=probs[i],
                                         provider="constitution", principle=principle.id, rationale=rationale,
                                         annotator=self.backend.name))
        return out

    # -- supervised CAI: critique and revise ------------------------------------------------
    def _history(self) -> list[dict]:
        return [dict(m) for chat in self.constitution.fewshot for m in chat]

    def critique(self, prompts: Sequence[Any], responses: Sequence[str], principles: Sequence[Principle],
                 seed: int = 0) -> list[str]:
        conversations = [[*_messages(p, self._history()), {"role": "assistant", "content": r},
                          {"role": "user", "content": pr.critique}]
                         for p, r, pr in zip(prompts, responses, principles)]
        return self.backend.generate(conversations, max_new_tokens=self.options.critique_max_new_tokens,
                                     temperature=self.options.temperature, seed=seed)

    def revise(self, prompts: Sequence[Any], responses: Sequence[str], critiques: Sequence[str],
               principles: Sequence[Principle], seed: int = 0) -> list[str]:
        conversations = [[*_messages(p, self._history()), {"role": "assistant", "content": r},
                          {"role": "user", "content": pr.critique}, {"role": "assistant", "content": c},
                          {"role": "user", "content": pr.revision}]
                         for p, r, c, pr in zip(prompts, responses, critiques, principles)]
        return self.backend.generate(conversations, max_new_tokens=self.options.revision_max_new_tokens,
                                     temperature=self.options.temperature, seed=seed)
