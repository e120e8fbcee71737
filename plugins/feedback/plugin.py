"""Built-in plugin: feedback providers ``rule``, ``reward_model``, ``dataset``, ``constitution``
and the ``label`` and ``critique_revise`` stages."""

from __future__ import annotations

from typing import Any

from alignkit.core import FeedbackProviderEntry, OptimizerEntry, hookimpl


def _options(cfg: Any, schema: type) -> Any:
    from omegaconf import OmegaConf

    data = OmegaConf.to_container(cfg, resolve=True)
    data.pop("name", None)
    return schema(**data)


def _cached(provider: Any, options: Any, chunk_size: int = 16) -> Any:
    """Wrap ``provider`` in the on-disk judgement cache when its config asks for it."""
    if not getattr(options, "cache", False):
        return provider
    from alignkit.plugins.feedback.cache import CachedFeedback, JudgementCache

    return CachedFeedback(provider, provider.identity(), JudgementCache(options.cache_dir), chunk_size=chunk_size)


def rule_factory(cfg: Any, ctx: Any) -> Any:
    from alignkit.plugins.feedback.rule import RuleFeedback, RuleFeedbackConfig

    options = _options(cfg, RuleFeedbackConfig)
    return _cached(RuleFeedback(options), options)


def reward_model_factory(cfg: Any, ctx: Any) -> Any:
    from alignkit.plugins.feedback.reward_model import RewardModelFeedback, RewardModelFeedbackConfig

    options = _options(cfg, RewardModelFeedbackConfig)
    node = ctx.run.cfg.get("preference_model")
    name = str(node.get("name")) if node is not None and node.get("name") is not None else ""
    return _cached(RewardModelFeedback(options, ctx.preference_model(), name=name), options)


def dataset_factory(cfg: Any, ctx: Any) -> Any:
    from alignkit.plugins.feedback.dataset import DatasetFeedback, DatasetFeedbackConfig

    return DatasetFeedback(_options(cfg, DatasetFeedbackConfig), ctx)


def constitution_factory(cfg: Any, ctx: Any) -> Any:
    import dataclasses

    from alignkit.core import ConfigError
    from alignkit.plugins.feedback.constitution import BACKENDS, ConstitutionFeedback, ConstitutionFeedbackConfig
    from alignkit.plugins.feedback.principles import load_constitution

    options = _options(cfg, ConstitutionFeedbackConfig)
    if options.backend not in BACKENDS:
        raise ConfigError(f"feedback.backend must be one of {', '.join(BACKENDS)}, not '{options.backend}'")
    constitution = load_constitution(options.constitution, options.fewshot)
    if options.backend == "openai":
        from alignkit.plugins.feedback.judges.openai import OpenAIJudge

        if not options.model:
            raise ConfigError("feedback.backend=openai needs feedback.model=<the served model's name>")
        backend: Any = OpenAIJudge(base_url=options.base_url, model=options.model, api_key_env=options.api_key_env,
                                   timeout=options.timeout, retries=options.retries, backoff=options.backoff,
                                   concurrency=options.concurrency, logprobs=options.logprobs)
    else:
        from alignkit.plugins.feedback.judges.local import LocalJudge, model_fingerprint

        spec = ctx.policy if not options.model else dataclasses.replace(ctx.policy, name_or_path=str(options.model),
                                                                          options={})
        loaded = ctx.load_model("judge", spec)
        backend = LocalJudge(loaded.model, loaded.tokenizer, name=spec.name_or_path,
                             fingerprint=model_fingerprint(spec.name_or_path, spec.options),
                             batch_size=options.batch_size, max_length=options.max_length,
                             answer_prefix=options.answer_prefix)
    # a failing server loses at most one chunk of answers: the cache stores each chunk as it completes
    chunk = options.concurrency if options.backend == "openai" else options.batch_size
    return _cached(ConstitutionFeedback(options, constitution, backend), options, chunk_size=chunk)


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
def alignkit_optimizers():
    from alignkit.plugins.feedback.critique_revise import CritiqueReviseConfig, CritiqueReviseOptimizer
    from alignkit.plugins.feedback.label import LabelConfig, LabelOptimizer

    yield OptimizerEntry(name="label", factory=LabelOptimizer, config_schema=LabelConfig,
                         description="Sample two responses per prompt and label them with the feedback provider.")
    yield OptimizerEntry(name="critique_revise", factory=CritiqueReviseOptimizer, config_schema=CritiqueReviseConfig,
                         description="Constitutional AI's supervised phase: critique, revise, keep the revisions as SFT data.")
