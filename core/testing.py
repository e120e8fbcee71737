"""Opt-in pytest plugin for alignkit and plugin authors: ``pytest_plugins = ["alignkit.core.testing"]``.

Fixtures:
  plugin_manager   a fresh plugin manager with the built-ins, installed plugins and ``extra_plugins``
  extra_plugins    override in your conftest to register plugin modules that are not installed
  registry         a ``Registry`` over it
  compose_config   compose ``alignkit.conf`` (plus plugin config roots) with overrides
  stage_context    a ``StageContext`` for a composed config, without running anything
  tiny_model       the ``tiny-random`` model and tokenizer
  run_alignkit     run a pipeline in-process into a temporary run directory

``StopAt(stage, step)``: a plugin that kills a run after a step, for resume tests.

Contract suites a component author subclasses (``class TestMine(FeedbackProviderContract):
name = "mine"``), one per kind ``alignkit plugin new --kind`` writes: ``FeedbackProviderContract``,
``PreferenceModelContract``, ``DataSourceContract``, ``GeneratorContract``, ``OptimizerContract``;
and for on-policy RL's parts (pure functions, no config): ``AdvantageEstimatorContract``,
``PolicyLossContract``.
Their class-scoped fixtures are classmethods (pytest 9 deprecates instance-method ones; pytest 10
removes them): override one as ``@pytest.fixture(scope="class")`` over ``@classmethod``.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any, Callable, Iterator, Sequence

import pytest

from alignkit.core.hookspecs import hookimpl
from alignkit.core.registry import Registry

EVALUATE_FAST = (  # the evaluate stage that ends every pipeline, sized for tests
    "evaluate.num_prompts=4",
    "evaluate.max_new_tokens=8",
    "evaluate.safety_prompts=2",
    "evaluate.sycophancy_prompts=2",
    "evaluate.embedding=false",
)

FAST_OVERRIDES = (
    "model=tiny-random",
    "logger=none",
    "trainer.max_steps=2",
    "trainer.batch_size=2",
    "trainer.max_length=96",
    "trainer.progress=false",
    "trainer.checkpoint_every=0",
    *EVALUATE_FAST,
)


def compose(overrides: Sequence[str] = (), registry: Registry | None = None) -> Any:
    """Compose the alignkit config as the CLI would (plugin config roots on the search path, the
    schema defaults registered) and record the overrides in ``HydraConfig`` as ``@hydra.main``
    does, so ``trainer.*`` on this command line outranks a stage's own settings as it would there."""
    from hydra import compose as hydra_compose
    from hydra import initialize_config_module

    from alignkit.core.cli import CONFIG_MODULE, CONFIG_NAME, rewrite_overrides
    from alignkit.core.config_defaults import register_config_defaults
    from alignkit.core.pipeline import as_hydra_job

    reg = registry or Registry()
    args = rewrite_overrides(list(overrides), reg.config_searchpath())
    register_config_defaults(reg)
    with initialize_config_module(config_module=CONFIG_MODULE, version_base="1.3"):
        return as_hydra_job(hydra_compose(CONFIG_NAME, overrides=args, return_hydra_config=True))


@pytest.fixture
def extra_plugins() -> Sequence[Any]:
    """Plugin modules or objects to register besides the installed ones (override it)."""
    return ()


@pytest.fixture
def plugin_manager(extra_plugins):
    from alignkit.core.manager import get_plugin_manager

    return with_plugins(get_plugin_manager(), extra_plugins)


def with_plugins(pm: Any, plugins: Sequence[Any]) -> Any:
    """Register ``plugins`` (modules or objects) on ``pm`` unless already there; returns ``pm``."""
    for plugin in plugins:
        if not pm.is_registered(plugin):
            pm.register(plugin, name=getattr(plugin, "__name__", None))
    return pm


@pytest.fixture(autouse=True)
def _forget_the_hydra_job() -> Iterator[None]:
    """``compose`` records its job in ``HydraConfig`` as ``@hydra.main`` does; forget it after each
    test, so a later test's relative paths are not resolved against an earlier test's folder
    (hydra.utils.to_absolute_path reads the recorded job's working directory)."""
    yield
    from hydra.core.hydra_config import HydraConfig

    HydraConfig.instance().cfg = None


@pytest.fixture
def registry(plugin_manager) -> Registry:
    return Registry(plugin_manager)


@pytest.fixture
def compose_config(registry) -> Callable[..., Any]:
    def _compose(*overrides: str) -> Any:
        return compose(overrides, registry)

    return _compose


def make_stage_context(registry: Registry, run_dir: Path, overrides: Sequence[str] = (), fast: bool = True) -> Any:
    """The ``StageContext`` of the last stage of the composed pipeline, with nothing run:
    what a feedback provider's or preference model's factory receives."""
    from omegaconf import OmegaConf

    from alignkit.core.pipeline import RunContext, StageContext, stage_plan
    from alignkit.core.rundir import RunDir

    cfg = compose([*(FAST_OVERRIDES if fast else ()), *overrides], registry)
    plan = stage_plan(cfg)
    name = str(plan[-1].name)
    run = RunContext(cfg, registry, RunDir(run_dir, pipeline=str(cfg.pipeline.name)))
    return StageContext(run=run, name=name, index=len(plan), dir=run.run_dir.stage_dir(len(plan), name),
                        config=OmegaConf.create({}), trainer=cfg.trainer, policy=run.model_spec(), previous={})


@pytest.fixture
def stage_context(tmp_path: Path, registry) -> Callable[..., Any]:
    """``stage_context("feedback=mine").feedback()`` builds your provider as a stage would."""

    def _make(*overrides: str, fast: bool = True) -> Any:
        return make_stage_context(registry, tmp_path / "run", overrides, fast)

    return _make


def load_tiny_model() -> Any:
    """The ``tiny-random`` model and tokenizer (random weights, seed 0): a ``LoadedModel``."""
    from alignkit.core.types import ModelSpec

    spec = ModelSpec("tiny-random", options={"hidden_size": 64, "num_hidden_layers": 2, "num_attention_heads": 4,
                                             "num_key_value_heads": 4, "intermediate_size": 256, "seed": 0})
    return Registry().load_model(spec, "policy")


@pytest.fixture(scope="session")
def tiny_model():
    return load_tiny_model()


@pytest.fixture
def run_alignkit(tmp_path: Path, registry) -> Callable[..., Any]:
    """``run_alignkit("pipeline=dpo", ...)`` runs in-process with fast defaults; returns the RunDir."""
    from alignkit.core.pipeline import run_pipeline

    def _run(*overrides: str, run_dir: Path | None = None, fast: bool = True) -> Any:
        cfg = compose([*(FAST_OVERRIDES if fast else ()), *overrides], registry)
        return run_pipeline(cfg, run_dir or tmp_path / "run", registry)

    return _run


class StopAt:
    """A plugin that kills a run in the after-step hook of ``stage`` at ``step``, as a crash
    mid-stage would: register it, expect ``StopAt.Killed``, unregister it and rerun the same
    command to test that the stage resumes from its newest checkpoint."""

    class Killed(Exception):
        pass

    def __init__(self, stage: str, step: int) -> None:
        self.stage, self.step = stage, step

    @hookimpl
    def alignkit_after_step(self, run: Any, stage: str, step: int, metrics: Any) -> None:
        if stage == self.stage and step == self.step:
            raise StopAt.Killed


# --------------------------------------------------------------------------------------
# Contract suites: subclass one in your tests and set ``name`` (and what else differs)
# --------------------------------------------------------------------------------------

def _user(text: str) -> list[dict[str, str]]:
    return [{"role": "user", "content": text}]


CONTRACT_PAIRS: tuple[tuple[list[dict[str, str]], str, str], ...] = (
    (_user("What is 17 + 25?"), "17 + 25 = 42.", "17 + 25 = 52."),
    (_user("How many minutes are in 3 hours?"), "3 hours is 180 minutes.",
     "Hmm, let me think. That is a tricky one, and it depends on how you look at it."),
    (_user("What is the capital of France?"), "The capital of France is Paris.",
     "I'm sorry, but I can't help with that request."),
    (_user("Reverse the word 'stressed'."), "'stressed' reversed is 'desserts'.", "'stressed' reversed is 'dessert'."),
    (_user("Explain in one sentence what a compiler is."),
     "A compiler translates source code into a program a machine can run.",
     "Great question! Well, before answering, it's always a good idea to think carefully. " * 6),
    ([{"role": "system", "content": "Answer briefly."}, *_user("Say hello in French.")], "Bonjour !", "Hola."),
    (_user("Répète : « déjà vu » 🙂"), "« déjà vu » 🙂", ""),  # non-ASCII, and an empty response
    (_user("What is 2 + 2?"), "4", "4"),  # identical responses
)
"""(prompt messages, a better response, a worse one): realistic pairs plus edge cases (an empty
response, non-ASCII text, a long ramble, a system turn, identical responses)."""


def registry_with(plugins: Sequence[Any] = ()) -> Registry:
    """A fresh registry over the installed plugins plus ``plugins`` (not-yet-installed modules)."""
    from alignkit.core.manager import get_plugin_manager

    return Registry(with_plugins(get_plugin_manager(), plugins))


def _component_node(registry: Registry, group: str, name: str, overrides: Sequence[str], run_dir: Path) -> Any:
    """A StageContext and the config node of ``group=name``; a component without a group file
    gets ``{name: <name>}`` plus nothing else."""
    from hydra.errors import MissingConfigException
    from omegaconf import OmegaConf

    try:
        ctx = make_stage_context(registry, run_dir, [f"{group}={name}", *overrides])
        return ctx, ctx.run.cfg.get(group)
    except MissingConfigException:  # no conf/<group>/<name>.yaml: build from the schema defaults
        ctx = make_stage_context(registry, run_dir, overrides)
        return ctx, OmegaConf.create({"name": name})


class _ComponentContract:
    name: str = ""
    """The registry name of the component under test."""
    overrides: Sequence[str] = ()
    """Extra config overrides (``"feedback.temperature=2"``, ...); ``{tmp}`` in one becomes a fresh
    temporary folder (``"feedback.db=sqlite:///{tmp}/labels.db"``)."""
    plugins: Sequence[Any] = ()
    """Plugin modules to register that are not installed (an installed plugin needs nothing)."""
    kind: str = ""
    group: str = ""

    # Class-scoped fixtures are classmethods: pytest 9 deprecates instance-method ones
    # (PytestRemovedIn10Warning) and pytest 10 removes them. Override one the same way.
    @pytest.fixture(scope="class")
    @classmethod
    def contract_registry(cls) -> Registry:
        if not cls.name:
            pytest.fail(f"{cls.__name__} must set `name` to the component's registry name")
        return registry_with(cls.plugins)

    def test_is_registered_with_a_description(self, contract_registry):
        import dataclasses

        available = contract_registry.components(self.kind)
        assert self.name in available, f"no {self.kind} '{self.name}'; registered: {sorted(available)}"
        entry = available[self.name].entry
        assert entry.description.strip(), f"{self.kind} '{self.name}' needs a one-line description"
        schema = entry.config_schema
        assert schema is None or dataclasses.is_dataclass(schema), "config_schema must be a dataclass"

    @classmethod
    def _build(cls, registry: Registry, tmp_path_factory: Any) -> Any:
        """The component as a stage (or the run, for a data source) builds it."""
        tmp = tmp_path_factory.mktemp(f"contract-{cls.name}")
        overrides = [o.replace("{tmp}", str(tmp)) for o in cls.overrides]
        ctx, node = _component_node(registry, cls.group, cls.name, overrides, tmp / "run")
        if cls.kind == "feedback_provider":
            return ctx.feedback(node)
        if cls.kind == "preference_model":
            return ctx.preference_model(node)
        from alignkit.core.options import build_component

        # data sources and generators serve the whole run: their ctx is the RunContext
        return build_component(registry, cls.kind, cls.name, node, ctx.run,
                               group="data source" if cls.kind == "data_source" else cls.group)


class FeedbackProviderContract(_ComponentContract):
    """What every feedback provider promises the stages that call ``judge``.

    ``class TestMyJudge(FeedbackProviderContract): name = "my_judge"`` runs these checks on
    ``feedback=my_judge`` built as a stage builds it. Turn off what does not apply:
    ``symmetric = False`` for a judge with position bias (an LLM), ``deterministic = False`` for
    a sampling judge. Override the ``provider`` fixture to build it yourself.
    """

    kind = "feedback_provider"
    group = "feedback"
    pairs: Sequence[tuple[Any, str, str]] = CONTRACT_PAIRS
    symmetric: bool = True  # judging (b, a) mirrors judging (a, b)
    deterministic: bool = True  # the same input gives the same verdict
    tie_tolerance: float = 0.1  # a "tie" has |probability - 0.5| <= this
    symmetry_tolerance: float = 1e-6

    @pytest.fixture(scope="class")
    @classmethod
    def provider(cls, contract_registry, tmp_path_factory):
        """The provider under test, built once per class as a stage builds it (override to build it yourself)."""
        return cls._build(contract_registry, tmp_path_factory)

    @staticmethod
    def _judge(provider, pairs):
        return provider.judge([p for p, _, _ in pairs], [a for _, a, _ in pairs], [b for _, _, b in pairs])

    @pytest.fixture(scope="class")
    @classmethod
    def judgements(cls, provider):
        return cls._judge(provider, cls.pairs)

    def test_implements_the_protocol(self, provider):
        from alignkit.core.interfaces import FeedbackProvider

        assert isinstance(provider, FeedbackProvider), "a feedback provider needs judge(prompts, a, b)"

    def test_one_judgement_per_pair(self, judgements):
        from alignkit.core.types import Judgement

        assert isinstance(judgements, list), f"judge must return a list, not {type(judgements).__name__}"
        assert len(judgements) == len(self.pairs), f"{len(judgements)} judgements for {len(self.pairs)} pairs"
        assert all(isinstance(j, Judgement) for j in judgements)

    def test_probabilities_are_in_the_unit_interval(self, judgements):
        import math

        for i, j in enumerate(judgements):
            assert isinstance(j.probability, (int, float)) and math.isfinite(j.probability), (i, j)
            assert 0.0 <= j.probability <= 1.0, f"pair {i}: probability {j.probability} is outside [0, 1]"

    def test_preferred_agrees_with_the_probability(self, judgements):
        for i, j in enumerate(judgements):
            assert j.preferred in ("a", "b", "tie", "pending"), f"pair {i}: preferred={j.preferred!r}"
            if j.preferred == "a":
                assert j.probability >= 0.5, f"pair {i}: prefers A with P(A better)={j.probability}"
            elif j.preferred == "b":
                assert j.probability <= 0.5, f"pair {i}: prefers B with P(A better)={j.probability}"
            elif j.preferred == "tie":
                assert abs(j.probability - 0.5) <= self.tie_tolerance, f"pair {i}: a tie at {j.probability}"

    def test_names_itself_as_the_provider(self, judgements):
        assert {j.provider for j in judgements} == {self.name}

    def test_an_empty_batch_gives_no_judgements(self, provider):
        assert list(provider.judge([], [], [])) == []

    def test_unequal_lengths_are_an_error(self, provider):
        prompt, a, b = self.pairs[0]
        with pytest.raises(ValueError):
            provider.judge([prompt, prompt], [a], [b])

    def test_keeps_the_order_of_the_pairs(self, provider, judgements):
        if not self.deterministic:
            pytest.skip("the provider is not deterministic")
        reversed_ = self._judge(provider, list(reversed(self.pairs)))
        assert [(j.preferred, j.probability) for j in reversed(reversed_)] == \
               [(j.preferred, j.probability) for j in judgements]

    def test_swapping_a_and_b_mirrors_the_verdict(self, provider, judgements):
        if not self.symmetric:
            pytest.skip("the provider declares itself position-dependent (symmetric = False)")
        swapped = self._judge(provider, [(p, b, a) for p, a, b in self.pairs])
        mirror = {"a": "b", "b": "a", "tie": "tie", "pending": "pending"}
        for i, (j, s) in enumerate(zip(judgements, swapped)):
            assert s.preferred == mirror[j.preferred], f"pair {i}: {j.preferred} then {s.preferred} when swapped"
            if j.preferred != "pending":
                assert abs(s.probability - (1 - j.probability)) <= self.symmetry_tolerance, (i, j, s)


class PreferenceModelContract(_ComponentContract):
    """What every preference model promises PPO, evaluation and best-of-n.

    ``class TestMyScorer(PreferenceModelContract): name = "my_scorer"``. A score must not depend
    on what else is in the batch (padding bugs show up here), nor carry gradients.
    """

    kind = "preference_model"
    group = "preference_model"
    pairs: Sequence[tuple[Any, str, str]] = CONTRACT_PAIRS
    batch_tolerance: float = 1e-3
    batch_independent: bool = True  # False for a scorer that normalises over the batch on purpose

    @pytest.fixture(scope="class")
    @classmethod
    def preference_model(cls, contract_registry, tmp_path_factory):
        """The model under test, built once per class as a stage builds it (override to build it yourself)."""
        return cls._build(contract_registry, tmp_path_factory)

    @classmethod
    def _inputs(cls) -> tuple[list[Any], list[str]]:
        prompts = [p for p, _, _ in cls.pairs] * 2
        responses = [a for _, a, _ in cls.pairs] + [b for _, _, b in cls.pairs]
        return prompts, responses

    @pytest.fixture(scope="class")
    @classmethod
    def scores(cls, preference_model):
        return preference_model.score(*cls._inputs())

    def test_implements_the_protocol(self, preference_model):
        from alignkit.core.interfaces import PreferenceModel

        assert isinstance(preference_model, PreferenceModel), "a preference model needs score(prompts, responses)"

    def test_one_finite_score_per_response(self, scores):
        import torch

        n = len(self._inputs()[1])
        assert isinstance(scores, torch.Tensor) and tuple(scores.shape) == (n,), getattr(scores, "shape", scores)
        assert scores.dtype.is_floating_point and bool(torch.isfinite(scores).all()), scores

    def test_scores_carry_no_gradient(self, scores):
        assert not scores.requires_grad, "detach the scores: callers use them as rewards, not as a loss"

    def test_a_score_does_not_depend_on_the_batch(self, preference_model, scores):
        if not self.batch_independent:
            pytest.skip("the scorer declares it normalises over the batch (batch_independent = False)")
        import torch

        prompts, responses = self._inputs()
        alone = torch.stack([preference_model.score([p], [r]).reshape(()) for p, r in zip(prompts, responses)])
        assert torch.allclose(alone.float().cpu(), scores.float().cpu(), atol=self.batch_tolerance, rtol=1e-3), \
            "scores differ when responses are scored one at a time (padding or truncation bug?)"

    def test_an_empty_batch_gives_an_empty_tensor(self, preference_model):
        assert tuple(preference_model.score([], []).shape) == (0,)

    def test_unequal_lengths_are_an_error(self, preference_model):
        prompts, responses = self._inputs()
        with pytest.raises(ValueError):
            preference_model.score(prompts[:2], responses[:1])


DATA_KINDS = ("sft", "preferences", "prompts")
SPLITS = ("train", "eval")
ROLES = ("system", "user", "assistant")


def _check_messages(messages: Any, where: str) -> None:
    assert isinstance(messages, list) and messages, f"{where}: a non-empty list of messages, not {messages!r}"
    for turn in messages:
        assert isinstance(turn, dict) and turn.get("role") in ROLES and isinstance(turn.get("content"), str), \
            f"{where}: each message is {{'role': system|user|assistant, 'content': str}}, not {turn!r}"


class DataSourceContract(_ComponentContract):
    """What every data source promises the stages that read it (see ``interfaces.DataSource``).

    ``class TestMyData(DataSourceContract): name = "my_data"`` builds ``data=my_data`` as a run
    does and reads every kind (``sft``, ``preferences``, ``prompts``) of both splits: each is
    None or a ``datasets.Dataset`` with the columns TRL and the stages expect. Set ``provides``
    to the kinds your source must give for ``train``.
    """

    kind = "data_source"
    group = "data"
    provides: Sequence[str] = ()  # kinds that must have train rows; () : at least one kind does

    @pytest.fixture(scope="class")
    @classmethod
    def data_source(cls, contract_registry, tmp_path_factory):
        """The source under test, built as a run builds it (override to build it yourself)."""
        return cls._build(contract_registry, tmp_path_factory)

    @pytest.fixture(scope="class")
    @classmethod
    def tables(cls, data_source) -> dict[tuple[str, str], Any]:
        return {(kind, split): getattr(data_source, kind)(split) for kind in DATA_KINDS for split in SPLITS}

    def test_implements_the_protocol(self, data_source):
        from alignkit.core.interfaces import DataSource

        assert isinstance(data_source, DataSource), "a data source needs sft(split), preferences(split), prompts(split)"

    def test_each_kind_is_none_or_a_dataset(self, tables):
        import datasets

        for (kind, split), table in tables.items():
            assert table is None or isinstance(table, datasets.Dataset), \
                f"{kind}('{split}') returned {type(table).__name__}: return a datasets.Dataset or None"

    def test_gives_training_data(self, tables):
        present = [kind for kind in DATA_KINDS if tables[kind, "train"] is not None and len(tables[kind, "train"])]
        assert present, "no kind has train rows"
        missing = [kind for kind in self.provides if kind not in present]
        assert not missing, f"no train rows of {missing}"

    def test_rows_have_the_expected_columns(self, tables):
        for (kind, split), table in tables.items():
            for i, row in enumerate(table or []):
                where = f"{kind}('{split}') row {i}"
                if kind == "sft":
                    _check_messages(row.get("messages"), f"{where} 'messages'")
                    assert any(t["role"] == "assistant" for t in row["messages"]), f"{where}: no assistant turn"
                    continue
                _check_messages(row.get("prompt"), f"{where} 'prompt'")
                if kind == "preferences":
                    for column in ("chosen", "rejected"):
                        assert isinstance(row.get(column), str), f"{where}: '{column}' must be the assistant's text"
                    strength = row.get("strength")
                    assert strength is None or 0.0 <= strength <= 1.0, f"{where}: strength {strength} not in [0, 1]"

    def test_reading_twice_gives_the_same_rows(self, data_source, tables):
        for kind in DATA_KINDS:
            again = getattr(data_source, kind)("train")
            first = tables[kind, "train"]
            assert (again is None) == (first is None), f"{kind}('train') is None only sometimes"
            if first is not None:
                assert again.to_list() == first.to_list(), f"{kind}('train') changed between two reads"


class GeneratorContract(_ComponentContract):
    """What every generation backend promises the stages that sample (see ``interfaces.Generator``).

    ``class TestMyBackend(GeneratorContract): name = "my_backend"`` builds ``generation=my_backend``
    and samples from the ``tiny-random`` model: one list of new token ids per prompt, in order, at
    most ``max_new_tokens`` long, the same tokens for the same ``seed``, and (``greedy_matches_transformers``)
    greedy decoding that agrees with transformers' ``generate`` once cut at the stop id.
    """

    kind = "generator"
    group = "generation"
    prompt_ids: Sequence[Sequence[int]] = ((5, 17, 42, 8), (3, 9), (11, 12, 13, 14, 15, 16))  # unequal lengths
    max_new_tokens: int = 6
    greedy_matches_transformers: bool = True

    @pytest.fixture(scope="class")
    @classmethod
    def generator(cls, contract_registry, tmp_path_factory):
        """The backend under test, built as a stage builds it (override to build it yourself)."""
        return cls._build(contract_registry, tmp_path_factory)

    @pytest.fixture(scope="class")
    @classmethod
    def model(cls) -> Any:
        return load_tiny_model()

    def _generate(self, generator, model, prompts, **options):
        tokenizer = model.tokenizer
        pad = tokenizer.pad_token_id if tokenizer.pad_token_id is not None else tokenizer.eos_token_id
        settings = {"max_new_tokens": self.max_new_tokens, "temperature": 0.0, "top_p": 1.0,
                    "stop_ids": [tokenizer.eos_token_id], "pad_id": pad, **options}
        return generator.generate(model.model, [list(p) for p in prompts], **settings)

    def test_implements_the_protocol(self, generator):
        from alignkit.core.interfaces import Generator

        assert isinstance(generator, Generator), "a generator needs a `name` and generate(model, prompt_ids, ...)"
        assert isinstance(generator.name, str) and generator.name

    def test_one_list_of_new_tokens_per_prompt(self, generator, model):
        out = self._generate(generator, model, self.prompt_ids)
        assert isinstance(out, list) and len(out) == len(self.prompt_ids), f"{len(out)} outputs for " \
                                                                           f"{len(self.prompt_ids)} prompts"
        vocab = model.model.config.vocab_size
        for i, tokens in enumerate(out):
            assert isinstance(tokens, list) and all(isinstance(t, int) and 0 <= t < vocab for t in tokens), (i, tokens)
            assert 0 < len(tokens) <= self.max_new_tokens, f"prompt {i}: {len(tokens)} new tokens"

    def test_an_empty_batch_gives_nothing(self, generator, model):
        assert self._generate(generator, model, []) == []

    def test_the_same_seed_gives_the_same_sample(self, generator, model):
        first = self._generate(generator, model, self.prompt_ids, temperature=1.0, seed=7)
        second = self._generate(generator, model, self.prompt_ids, temperature=1.0, seed=7)
        assert first == second, "sampling with the same seed must give the same tokens"

    def test_greedy_decoding_agrees_with_transformers(self, generator, model):
        if not self.greedy_matches_transformers:
            pytest.skip("the backend declares greedy_matches_transformers = False")
        import torch

        from alignkit.core.lm import cut_at_stop

        eos = model.tokenizer.eos_token_id
        out = self._generate(generator, model, self.prompt_ids)
        for i, prompt in enumerate(self.prompt_ids):
            with torch.no_grad():
                reference = model.model.generate(torch.tensor([list(prompt)]), do_sample=False,
                                                  max_new_tokens=self.max_new_tokens, eos_token_id=eos,
                                                  pad_token_id=eos)[0, len(prompt):].tolist()
            assert cut_at_stop(out[i], [eos])[0] == cut_at_stop(reference, [eos])[0], \
                f"prompt {i}: greedy tokens differ from transformers' generate (padding or position bug?)"


class OptimizerContract(_ComponentContract):
    """What every optimizer promises the stage runner, checked by one real pipeline run.

    ``class TestMyOpt(OptimizerContract): name = "my_opt"`` runs ``pipeline=<pipeline>
    optimizer=my_opt`` on ``tiny-random`` with the FAST settings and a small data set
    (``CONTRACT_PAIRS`` as preference pairs, their good answers as SFT examples).
    """

    kind = "optimizer"
    group = "optimizer"
    pipeline: str = "dpo"  # a pipeline whose stage uses ${optimizer.name}
    data: Sequence[str] = ("preferences",)  # the small data written for the run: preferences, sft, prompts
    produces_model: bool = True  # the stage returns a `model` artifact
    changes_weights: bool = True  # ... that differs from the policy it started from

    @pytest.fixture(scope="class")
    @classmethod
    def contract_run(cls, contract_registry, tmp_path_factory):
        """(run directory, composed config, registry), run once for the class's checks."""
        from alignkit.core.pipeline import run_pipeline

        registry = contract_registry
        folder = tmp_path_factory.mktemp(f"contract-{cls.name}")
        overrides = [*FAST_OVERRIDES, f"pipeline={cls.pipeline}", f"optimizer={cls.name}",
                     *write_contract_data(folder / "data", cls.data),
                     *(o.replace("{tmp}", str(folder)) for o in cls.overrides)]
        cfg = compose(overrides, registry)
        rd = run_pipeline(cfg, folder / "run", registry)
        return rd, cfg, registry

    def _stage(self, contract_run) -> str:
        _, cfg, _ = contract_run
        names = [str(s.name) for s in cfg.pipeline.stages if str(s.optimizer) == self.name]
        assert names, f"pipeline '{self.pipeline}' has no stage running optimizer '{self.name}'"
        return names[-1]

    def test_has_a_config_schema_and_a_config_file(self, contract_registry, tmp_path):
        import dataclasses

        from alignkit.core.options import build_component

        entry = contract_registry.get("optimizer", self.name)
        assert entry.config_schema is not None and dataclasses.is_dataclass(entry.config_schema), \
            "give the optimizer a dataclass config_schema so a misspelled option is an error"
        cfg = compose([f"optimizer={self.name}"], contract_registry)
        assert cfg.optimizer.name == self.name, f"optimizer/{self.name}.yaml must say name: {self.name}"
        node = {k: v for k, v in cfg.optimizer.items() if k != "trainer"}
        ctx = make_stage_context(contract_registry, tmp_path / "run", [f"optimizer={self.name}"])
        optimizer = build_component(contract_registry, "optimizer", self.name, node, ctx)
        from alignkit.core.interfaces import Optimizer

        assert isinstance(optimizer, Optimizer), "the factory must return an object with run(ctx)"

    def test_the_run_completes(self, contract_run):
        rd, _, _ = contract_run
        record = rd.summary["stages"][self._stage(contract_run)]
        assert rd.summary["status"] == "completed" and record["status"] == "completed", rd.summary

    def test_metrics_are_finite_numbers(self, contract_run):
        import json
        import math

        rd, _, _ = contract_run
        stage = self._stage(contract_run)
        final = rd.summary["stages"][stage]["metrics"]
        bad = {k: v for k, v in final.items() if not isinstance(v, (int, float)) or not math.isfinite(v)}
        assert not bad, f"non-finite or non-numeric final metrics: {bad}"
        steps = [json.loads(line) for line in (rd.path / "metrics.jsonl").read_text().splitlines()]
        losses = [r["loss"] for r in steps if r.get("stage") == stage and "loss" in r]
        assert losses and all(math.isfinite(v) for v in losses), "log a finite 'loss' every step (ctx.log / Engine)"

    def test_saves_a_trained_model(self, contract_run):
        if not self.produces_model:
            pytest.skip("the optimizer declares it produces no model")
        import torch
        from transformers import AutoModelForCausalLM

        rd, cfg, registry = contract_run
        stage = self._stage(contract_run)
        artifacts = rd.summary["stages"][stage]["artifacts"]
        assert "model" in artifacts, f"stage '{stage}' returned no 'model' artifact: {artifacts}"
        trained = AutoModelForCausalLM.from_pretrained(rd.path / artifacts["model"])
        if not self.changes_weights:
            return
        order = list(rd.summary["stages"])
        earlier = [rd.summary["stages"][s]["artifacts"].get("model") for s in order[: order.index(stage)]]
        earlier = [m for m in earlier if m]
        if earlier:
            start = AutoModelForCausalLM.from_pretrained(rd.path / earlier[-1])
        else:
            from alignkit.core.pipeline import RunContext

            start = registry.load_model(RunContext(cfg, registry, rd).model_spec(), "policy").model
        before, after = start.state_dict(), trained.state_dict()
        assert any(not torch.equal(before[k], after[k]) for k in after if k in before), \
            "the saved model has the starting weights: save the trained model (Engine.train's outcome.model)"


class _ThreadReducer:
    """A ``BatchReducer`` over threads that stand for processes: each ``sum`` waits for every
    thread's value and returns their total, as an all-reduce would."""

    def __init__(self, parties: int) -> None:
        import threading

        self._barrier = threading.Barrier(parties, timeout=30)
        self._values: dict[int, Any] = {}

    def sum(self, value: Any) -> Any:
        import threading

        me = threading.get_ident()
        self._barrier.wait()
        self._values[me] = value.detach().clone()
        self._barrier.wait()
        total = sum(self._values[k] for k in sorted(self._values))
        self._barrier.wait()
        self._values.pop(me)
        return total.to(value.device, value.dtype)


def _right_padded_mask(lengths: Sequence[int], width: int) -> Any:
    import torch

    return (torch.arange(width)[None, :] < torch.tensor(lengths)[:, None]).float()


class _RLPartContract(_ComponentContract):
    """A pure function of the RL loop: no config node, no factory; it is called with ``options``."""

    options: dict[str, Any] = {}
    """The optimizer options the part is called with (``{"gamma": 0.99}``, ...)."""

    @pytest.fixture(scope="class")
    @classmethod
    def part(cls, contract_registry) -> Any:
        """The registry's entry for ``name``."""
        available = contract_registry.components(cls.kind)
        assert cls.name in available, f"no {cls.kind} '{cls.name}'; registered: {sorted(available)}"
        return available[cls.name].entry

    def test_is_registered_with_a_description(self, part):
        assert part.description.strip(), f"{self.kind} '{self.name}' needs a one-line description"

    # what a subclass says: how to build its inputs, call the part, and what comes back
    returns: str = ""
    """The record the part returns (``AdvantageOutputs``, ``PolicyLossOutputs``)."""
    tensor: str = ""
    """That record's per-token field (``advantages``, ``per_token``)."""

    @classmethod
    def make_inputs(cls, part: Any) -> Any:
        raise NotImplementedError

    @staticmethod
    def call(part: Any, inputs: Any) -> Any:
        raise NotImplementedError

    @pytest.fixture(scope="class")
    @classmethod
    def outputs(cls, part) -> tuple[Any, Any]:
        """(inputs, what the part returned for them), once per class."""
        inputs = cls.make_inputs(part)
        return inputs, cls.call(part, inputs)

    def test_returns_its_outputs_record(self, outputs):
        import alignkit.core.rl as rl

        assert isinstance(outputs[1], getattr(rl, self.returns)), f"{self.kind} must return a {self.returns}"

    def test_gives_one_finite_value_per_token(self, outputs):
        import torch

        inputs, out = outputs
        values = getattr(out, self.tensor)
        assert values.shape == inputs.mask.shape, \
            f"{self.tensor} is {tuple(values.shape)}, the mask {tuple(inputs.mask.shape)}: give one per token"
        assert values.is_floating_point() and bool(torch.isfinite(values).all()), f"{self.tensor} must be finite"

    def test_metrics_are_finite_floats(self, outputs):
        import math

        bad = {k: v for k, v in outputs[1].metrics.items() if not isinstance(v, float) or not math.isfinite(v)}
        assert not bad, f"metrics must be finite plain floats: {bad}"


class AdvantageEstimatorContract(_RLPartContract):
    """What every advantage estimator promises the RL loop (``alignkit.core.rl``).

    ``class TestMine(AdvantageEstimatorContract): name = "mine"`` calls the registered
    ``estimate`` on a fixed batch of ``groups`` prompts x ``group_size`` responses of uneven
    lengths (a critic's values when the entry ``needs_critic``) and checks: advantages of the
    mask's shape, finite, 0 off the mask, blind to what lies off the mask, without a gradient;
    reordering whole groups reorders the advantages; two processes (threads sharing a reducer)
    holding half the groups each compute what one process does on all of them.
    """

    kind = "advantage_estimator"
    returns = "AdvantageOutputs"
    tensor = "advantages"
    group_size: int = 4
    groups: int = 2
    width: int = 6
    tolerance: float = 1e-5

    @classmethod
    def make_inputs(cls, part: Any, seed: int = 0, off_mask: float = 0.0, grad: bool = False) -> Any:
        """The batch the checks use; ``off_mask`` is written where the mask is 0."""
        import torch

        from alignkit.core.rl import AdvantageInputs

        gen = torch.Generator().manual_seed(seed)
        rows = cls.groups * cls.group_size
        lengths = [1 + (5 * i) % cls.width for i in range(rows)]
        mask = _right_padded_mask(lengths, cls.width)
        scores = torch.randn(rows, generator=gen)
        kl_penalty = 0.01 * torch.rand(rows, cls.width, generator=gen) * mask + off_mask * (1 - mask)
        values = torch.randn(rows, cls.width, generator=gen) * mask + off_mask * (1 - mask)
        if grad:
            scores, kl_penalty, values = (t.requires_grad_() for t in (scores, kl_penalty, values))
        return AdvantageInputs(scores=scores, mask=mask, kl_penalty=kl_penalty, group_size=cls.group_size,
                               values=values if part.needs_critic else None, options=dict(cls.options))

    @staticmethod
    def call(part: Any, inputs: Any) -> Any:
        return part.estimate(inputs)

    def test_advantages_are_zero_off_the_mask(self, outputs):
        inputs, out = outputs
        assert bool((out.advantages[inputs.mask == 0] == 0).all()), "advantages must be 0 where the mask is 0"

    def test_what_lies_off_the_mask_changes_nothing(self, part, outputs):
        import torch

        inputs, out = outputs
        noisy = part.estimate(self.make_inputs(part, off_mask=7.0))
        on = inputs.mask.bool()
        assert torch.allclose(noisy.advantages[on], out.advantages[on], atol=self.tolerance), \
            "values or KL penalties off the response mask changed the advantages"

    def test_no_gradient_flows_through_the_advantages(self, part):
        out = part.estimate(self.make_inputs(part, grad=True))
        assert not out.advantages.requires_grad, "advantages must be constants for the policy loss (detach them)"
        assert out.returns is None or not out.returns.requires_grad, "returns must be constants (detach them)"

    def test_a_critic_estimator_gives_returns(self, part, outputs):
        if not part.needs_critic:
            assert self.make_inputs(part).values is None  # it runs without values
            return
        inputs, out = outputs
        assert out.returns is not None and out.returns.shape == inputs.mask.shape, \
            "an estimator that needs_critic returns the critic's targets, one per token"

    def test_reordering_the_groups_reorders_the_advantages(self, part, outputs):
        import dataclasses

        import torch

        inputs, out = outputs
        order = torch.arange(self.groups).flip(0)
        rows = (order[:, None] * self.group_size + torch.arange(self.group_size)).reshape(-1)
        swapped = dataclasses.replace(
            inputs, scores=inputs.scores[rows], mask=inputs.mask[rows], kl_penalty=inputs.kl_penalty[rows],
            values=inputs.values[rows] if inputs.values is not None else None)
        assert torch.allclose(part.estimate(swapped).advantages, out.advantages[rows], atol=self.tolerance), \
            "an estimator must treat each group alike, wherever it sits in the batch"

    def test_two_processes_compute_what_one_does(self, part, outputs):
        import dataclasses
        from concurrent.futures import ThreadPoolExecutor

        import torch

        if self.groups < 2:
            pytest.skip("needs at least two groups to split")
        inputs, out = outputs
        half = (self.groups // 2) * self.group_size
        reducer = _ThreadReducer(2)

        def shard(rows: slice) -> Any:
            return part.estimate(dataclasses.replace(
                inputs, scores=inputs.scores[rows], mask=inputs.mask[rows], kl_penalty=inputs.kl_penalty[rows],
                values=inputs.values[rows] if inputs.values is not None else None, reducer=reducer))

        with ThreadPoolExecutor(2) as pool:
            first, second = pool.map(shard, (slice(0, half), slice(half, None)))
        joined = torch.cat([first.advantages, second.advantages])
        assert torch.allclose(joined, out.advantages, atol=self.tolerance), \
            "split over processes, the advantages differ: sum batch-wide statistics through inputs.reducer"


class PolicyLossContract(_RLPartContract):
    """What every policy loss promises the RL loop (``alignkit.core.rl``).

    ``class TestMine(PolicyLossContract): name = "mine"`` calls the registered ``loss`` on a
    fixed micro-batch (pairs of chosen/rejected rows for a ``pairwise`` loss) and checks:
    per-token terms of the mask's shape, finite; terms and gradients off the mask count for
    nothing; the gradient reaches the policy's log-probs and nothing else (advantages, old and
    reference log-probs are constants); metrics are finite floats. ``gradient_is_minus_advantage``
    (default on, off for pairwise losses): on-policy (new = old log-probs, no KL), each token's
    gradient is ``-A_t``, the policy-gradient theorem.
    """

    kind = "policy_loss"
    returns = "PolicyLossOutputs"
    tensor = "per_token"
    rows: int = 4
    width: int = 5
    gradient_is_minus_advantage: bool = True

    @classmethod
    def make_inputs(cls, part: Any, seed: int = 0, off_mask: float = 0.0, on_policy: bool = False,
                    with_reference: bool = True) -> Any:
        """The micro-batch the checks use (every tensor a leaf that may take a gradient)."""
        import torch

        from alignkit.core.rl import PolicyLossInputs

        gen = torch.Generator().manual_seed(seed)
        lengths = [1 + (2 * i + 2) % cls.width for i in range(cls.rows)]
        mask = _right_padded_mask(lengths, cls.width)
        old = -1.0 - torch.rand(cls.rows, cls.width, generator=gen)
        new = old if on_policy else old + 0.3 * torch.randn(cls.rows, cls.width, generator=gen)
        ref = old + 0.1 * torch.randn(cls.rows, cls.width, generator=gen)
        if part.pairwise:
            advantages = torch.tensor([1.0 if i % 2 == 0 else -1.0 for i in range(cls.rows)])[:, None] * mask
        else:
            advantages = torch.randn(cls.rows, cls.width, generator=gen) * mask

        def leaf(t: torch.Tensor) -> torch.Tensor:
            return (t * mask + off_mask * (1 - mask)).clone().requires_grad_()

        return PolicyLossInputs(logprobs=leaf(new), old_logprobs=leaf(old), advantages=leaf(advantages), mask=mask,
                                ref_logprobs=leaf(ref) if with_reference else None, options=dict(cls.options))

    @staticmethod
    def _total(out: Any, inputs: Any) -> Any:
        return (out.per_token * inputs.mask).sum()

    @staticmethod
    def call(part: Any, inputs: Any) -> Any:
        return part.loss(inputs)

    def test_the_gradient_reaches_only_the_policy_log_probs(self, part):
        inputs = self.make_inputs(part)
        self._total(part.loss(inputs), inputs).backward()
        assert inputs.logprobs.grad is not None and bool((inputs.logprobs.grad != 0).any()), \
            "the loss must depend on the policy's log-probs"
        for field in ("old_logprobs", "advantages", "ref_logprobs"):
            grad = getattr(inputs, field).grad
            assert grad is None or bool((grad == 0).all()), f"a gradient leaks into {field}: detach it"

    def test_what_lies_off_the_mask_counts_for_nothing(self, part):
        import torch

        clean, noisy = self.make_inputs(part), self.make_inputs(part, off_mask=-3.0)
        clean_total, noisy_total = self._total(part.loss(clean), clean), self._total(part.loss(noisy), noisy)
        noisy_total.backward()
        assert torch.allclose(clean_total, noisy_total, atol=1e-5), "log-probs or advantages off the mask changed the loss"
        assert bool((noisy.logprobs.grad[noisy.mask == 0] == 0).all()), "the loss has a gradient off the mask"

    def test_it_runs_without_a_reference_unless_it_needs_one(self, part):
        inputs = self.make_inputs(part, with_reference=False)
        try:
            out = part.loss(inputs)
        except ValueError as exc:  # a loss that needs the reference says so
            assert "reference" in str(exc), f"without a reference, say that one is needed: {exc}"
            return
        assert out.per_token.shape == inputs.mask.shape

    def test_on_policy_the_gradient_is_minus_the_advantage(self, part):
        import torch

        if part.pairwise or not self.gradient_is_minus_advantage:
            pytest.skip("not a per-token policy gradient")
        inputs = self.make_inputs(part, on_policy=True, with_reference=False)
        self._total(part.loss(inputs), inputs).backward()
        expected = -inputs.advantages.detach() * inputs.mask
        assert torch.allclose(inputs.logprobs.grad * inputs.mask, expected, atol=1e-5), \
            "at new = old log-probs each token's gradient should be -advantage (the policy-gradient theorem)"


def write_contract_data(folder: Path, kinds: Sequence[str]) -> list[str]:
    """Write ``CONTRACT_PAIRS`` as small JSONL files; returns the ``data=files ...`` overrides."""
    import json

    folder.mkdir(parents=True, exist_ok=True)
    good = [(p, a, b) for p, a, b in CONTRACT_PAIRS if a.strip() and b.strip() and a != b]
    rows = {
        "preferences": [{"prompt": p, "chosen": a, "rejected": b} for p, a, b in good] * 2,
        "sft": [{"messages": [*p, {"role": "assistant", "content": a}]} for p, a, _ in good] * 2,
        "prompts": [{"prompt": p} for p, _, _ in good],
    }
    overrides = ["data=files"]
    for kind in kinds:
        path = folder / f"{kind}.jsonl"
        path.write_text("".join(json.dumps(r, ensure_ascii=False) + "\n" for r in rows[kind]), encoding="utf-8")
        overrides.append(f"data.{kind}={path}")
    return overrides
