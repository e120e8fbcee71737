"""Built-in plugin: feedback providers ``rule``, ``reward_model``, ``dataset``, ``constitution``,
the ``label`` and ``critique_revise`` stages, and preference model ``judge`` (the constitution
judge as the reward)."""

from __future__ import annotations

from typing import Any

from alignkit.core import FeedbackProviderEntry, StageEntry, hookimpl
from alignkit.plugins.feedback.cache import cached


# Every factory here is factory(options, ctx): ``cfg`` is the entry's config_schema instance the core
# validated (core/options.py), ``ctx`` the StageContext of the stage that asked.


def rule_factory(options: Any, ctx: Any) -> Any:
    from alignkit.plugins.feedback.rule import RuleFeedback

    return cached(RuleFeedback(options), options)


def reward_model_factory(options: Any, ctx: Any) -> Any:
    from alignkit.plugins.feedback.reward_model import RewardModelFeedback

    node = ctx.run.cfg.get("preference_model")
    name = str(node.get("name")) if node is not None and node.get("name") is not None else ""
    return cached(RewardModelFeedback(options, ctx.preference_model(), name=name), options)


def dataset_factory(options: Any, ctx: Any) -> Any:
    from alignkit.plugins.feedback.dataset import DatasetFeedback

    return DatasetFeedback(options, ctx)


def constitution_factory(options: Any, ctx: Any) -> Any:
    from alignkit.plugins.feedback.constitution import ConstitutionFeedback
    from alignkit.plugins.feedback.principles import load_constitution

    constitution = load_constitution(options.constitution, options.fewshot)
    backend = _judge_backend(options, ctx, "feedback")
    # a failing server loses at most one chunk of answers: the cache stores each chunk as it completes
    chunk = options.concurrency if options.backend == "openai" else options.batch_size
    return cached(ConstitutionFeedback(options, constitution, backend), options, chunk_size=chunk)


def _judge_backend(options: Any, ctx: Any, group: str) -> Any:
    """The constitution judge's backend: an OpenAI-compatible server, or a local model (default:
    the policy the stage starts from)."""
    import dataclasses

    from alignkit.core import ConfigError
    from alignkit.plugins.feedback.constitution import BACKENDS

    if options.backend not in BACKENDS:
        raise ConfigError(f"{group}.backend must be one of {', '.join(BACKENDS)}, not '{options.backend}'")
    if options.backend == "openai":
        from alignkit.plugins.feedback.judges.openai import OpenAIJudge

        if not options.model:
            raise ConfigError(f"{group}.backend=openai needs {group}.model=<the served model's name>")
        return OpenAIJudge(base_url=options.base_url, model=options.model, api_key_env=options.api_key_env,
                           timeout=options.timeout, retries=options.retries, backoff=options.backoff,
                           concurrency=options.concurrency, logprobs=options.logprobs)
    from alignkit.plugins.feedback.judges.local import LocalJudge, model_fingerprint

    spec = ctx.policy if not options.model else dataclasses.replace(ctx.policy, name_or_path=str(options.model),
                                                                      options={})
    loaded = ctx.load_model("judge", spec)
    return LocalJudge(loaded.model, loaded.tokenizer, name=spec.name_or_path,
                      fingerprint=model_fingerprint(spec.name_or_path, spec.options),
                      batch_size=options.batch_size, max_length=options.max_length,
                      answer_prefix=options.answer_prefix,
                      generator=ctx.generator() if hasattr(ctx, "generator") else None,
                      progress=ctx.trainer_settings().progress if hasattr(ctx, "trainer_settings") else None)


def judge_reward_factory(options: Any, ctx: Any) -> Any:
    """``preference_model=judge``: the constitution judge scoring responses, cached and batched."""
    from alignkit.core import ConfigError
    from alignkit.plugins.feedback.constitution import ConstitutionFeedback
    from alignkit.plugins.feedback.judge_reward import (
        MODES,
        JudgeReward,
        ReferenceAnswers,
        SingleResponseJudge,
    )
    from alignkit.plugins.feedback.principles import load_constitution

    if options.mode not in MODES:
        raise ConfigError(f"preference_model.mode must be one of {', '.join(MODES)}, not '{options.mode}'")
    constitution = load_constitution(options.constitution, options.fewshot)
    backend = _judge_backend(options, ctx, "preference_model")
    chunk = options.concurrency if options.backend == "openai" else options.batch_size
    if options.mode == "single":
        judge = SingleResponseJudge(options, constitution, backend)
        return JudgeReward(cached(judge, options, chunk_size=chunk), options)

    def load() -> Any:  # the policy the stage starts from; the local judge's own copy when it is that model
        if getattr(backend, "model", None) is not None and not options.model:
            return backend.model, backend.tokenizer
        loaded = ctx.load_model("reference")
        return loaded.model, loaded.tokenizer

    references = ReferenceAnswers(load, options.reference_max_new_tokens, options.batch_size,
                                  ctx.trainer_settings().max_length)
    judge = ConstitutionFeedback(options, constitution, backend)
    return JudgeReward(cached(judge, options, chunk_size=chunk), options, references)


@hookimpl
def alignkit_feedback_providers():
    from alignkit.plugins.feedback.constitution import ConstitutionFeedbackConfig
    from alignkit.plugins.feedback.dataset import DatasetFeedbackConfig
    from alignkit.plugins.feedback.reward_model import RewardModelFeedbackConfig
    from alignkit.plugins.feedback.rule import RuleFeedbackConfig

    yield FeedbackProviderEntry(name="rule", factory=rule_factory, config_schema=RuleFeedbackConfig,
                                description="A Python function fn(prompt, response) -> float; the higher score wins.")
    yield FeedbackProviderEntry(name="reward_model", factory=reward_model_factory,
                                config_schema=RewardModelFeedbackConfig,
                                description="The configured preference_model scores both; P(A) = sigmoid(rA - rB).")
    yield FeedbackProviderEntry(name="dataset", factory=dataset_factory, config_schema=DatasetFeedbackConfig,
                                description="Labels already in the data (chosen/rejected), passed through.")
    yield FeedbackProviderEntry(name="constitution", factory=constitution_factory,
                                config_schema=ConstitutionFeedbackConfig,
                                description="AI judge guided by principles (local model or OpenAI-compatible server).")


@hookimpl
def alignkit_preference_models():
    from alignkit.core import PreferenceModelEntry
    from alignkit.plugins.feedback.judge_reward import JudgeRewardConfig

    yield PreferenceModelEntry(name="judge", factory=judge_reward_factory, config_schema=JudgeRewardConfig,
                               description="The constitution judge as the reward (direct RLAIF), cached and batched.")


@hookimpl
def alignkit_stages():  # they train nothing: label makes preference pairs, critique_revise SFT data
    from alignkit.plugins.feedback.critique_revise import CritiqueReviseConfig, CritiqueReviseOptimizer
    from alignkit.plugins.feedback.label import LabelConfig, LabelOptimizer

    yield StageEntry(name="label", factory=LabelOptimizer, config_schema=LabelConfig,
                     description="Sample two responses per prompt and label them with the feedback provider.")
    yield StageEntry(name="critique_revise", factory=CritiqueReviseOptimizer, config_schema=CritiqueReviseConfig,
                     description="Constitutional AI's supervised phase: critique, revise, keep the revisions as SFT data.")
