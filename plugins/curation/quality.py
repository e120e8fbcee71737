"""Quality scores of SFT examples: from any registered preference model, or a judge model.

* ``preference_model``: a ``preference_model`` config node (``{name: bradley_terry, path:
  runs/.../reward_model}``, ``{name: rule, fn: pkg.mod:fn}``, a third-party scorer) built through
  the registry, as a stage would, but without a run (its factory gets ``ctx=None``, so a reward
  model needs its ``path``). Score = the model's score of (prompt, response).
* ``judge``: a teacher (``teacher.TeacherConfig`` keys: a local model or an OpenAI-compatible
  server) asked whether the response is a correct, helpful answer; score = P("Yes").
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any, Dict, Optional, Sequence

from alignkit.core.errors import ConfigError
from alignkit.plugins.curation.records import Example, options, plain, prompt_of
from alignkit.plugins.curation.teacher import TeacherConfig, build_teacher

JUDGE_PROMPT = ("Here is an instruction and a response.\n\nInstruction:\n{prompt}\n\nResponse:\n{response}\n\n"
                "Is the response a correct, complete and helpful answer to the instruction? Answer Yes or No.")


@dataclass
class QualityConfig:
    """Where quality scores come from (one of the two; null: none)."""

    preference_model: Optional[Dict[str, Any]] = None  # a preference_model node: {name: ..., ...}
    judge: Optional[Dict[str, Any]] = None  # teacher options: {model: ...} or {base_url: ..., model: ...}
    batch_size: int = 16


class PreferenceModelScorer:
    def __init__(self, node: dict[str, Any], registry: Any, batch_size: int = 16) -> None:
        from alignkit.core.options import build_component

        name = node.get("name")
        if not name:
            raise ConfigError("quality.preference_model needs a 'name' (e.g. bradley_terry or rule)")
        # ctx None: curation scores data outside any stage (no run artifacts to find)
        self.model = build_component(registry, "preference_model", str(name), node, None,
                                     group="quality.preference_model")
        self.name = f"preference_model:{name}"
        self.batch_size = max(1, int(batch_size))

    def score(self, examples: Sequence[Example]) -> list[float]:
        out: list[float] = []
        for start in range(0, len(examples), self.batch_size):
            chunk = examples[start:start + self.batch_size]
            scores = self.model.score([prompt_of(e.messages) for e in chunk], [e.response for e in chunk])
            out.extend(float(s) for s in (scores.tolist() if hasattr(scores, "tolist") else scores))
        return out


class JudgeScorer:
    def __init__(self, node: dict[str, Any], registry: Any) -> None:
        self.teacher = build_teacher(options(TeacherConfig, node, "quality.judge"), registry)
        self.name = f"judge:{self.teacher.name}"

    def score(self, examples: Sequence[Example]) -> list[float]:
        return self.teacher.yes_probability([JUDGE_PROMPT.format(prompt=e.prompt, response=e.response)
                                             for e in examples])


def build_scorer(cfg: QualityConfig | None, registry: Any) -> Any:
    """The configured scorer (``.name``, ``.score(examples) -> list[float]``), or None. Its preference
    model or judge is built through ``registry``: the run's, or the one ``alignkit data`` loaded."""
    if cfg is None or (not cfg.preference_model and not cfg.judge):
        return None
    if cfg.preference_model and cfg.judge:
        raise ConfigError("quality: give either preference_model or judge, not both")
    if registry is None:
        raise ConfigError("quality: the scorer is built through the run's plugins, and none were given "
                          "(build the data source as the core does, factory(options, ctx))")
    if cfg.preference_model:
        return PreferenceModelScorer(dict(plain(cfg.preference_model)), registry, cfg.batch_size)
    return JudgeScorer(dict(plain(cfg.judge)), registry)
