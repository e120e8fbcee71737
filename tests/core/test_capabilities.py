"""Optional capabilities (core/interfaces.py): declared as Protocols, read through ``isinstance`` or
``capability()``, and the built-in components still declare what they did."""

from pathlib import Path
from types import SimpleNamespace

import pytest

from alignkit.core import interfaces as I
from alignkit.core.types import Judgement


class People:
    """A feedback provider whose judgements wait for people, as a third-party plugin may write it."""

    skip_calibration = True
    url = "http://127.0.0.1:9999"

    def judge(self, prompts, a, b):
        return [Judgement(preferred="pending", probability=0.5, provider="people") for _ in prompts]

    def waiting_message(self, labelled, total):
        return f"{labelled}/{total} labelled"


class Forwarding:
    """A wrapper that shows nothing of its provider to ``isinstance`` (as Python >= 3.12 sees a
    ``__getattr__`` wrapper): only ``wrapped`` leads to it."""

    def __init__(self, inner):
        self.wrapped = inner


def test_capability_finds_a_member_through_a_wrapper():
    people = People()
    assert I.capability(Forwarding(people), I.WaitsForPeople) is people
    assert I.capability(Forwarding(Forwarding(people)), I.CalibrationReference) is people
    assert I.capability(Forwarding(people), I.GivenPreferences) is None
    assert I.capability(None, I.Critic) is None


def test_the_judgement_cache_is_a_wrapper_with_its_own_counters(tmp_path):
    from alignkit.plugins.feedback.cache import CachedFeedback, JudgementCache

    people = People()
    cached = CachedFeedback(people, {"provider": "people"}, JudgementCache(tmp_path))
    assert cached.wrapped is people
    assert I.capability(cached, I.CacheCounters) is cached, "the cache's own hits, not the provider's"
    found = I.capability(cached, I.WaitsForPeople)
    assert found is not None and found.waiting_message(1, 4) == "1/4 labelled"
    assert I.calibrates(cached) is False


@pytest.mark.parametrize(("stage", "parallel"), [
    ("alignkit.plugins.feedback.label:LabelOptimizer", False),
    ("alignkit.plugins.feedback.critique_revise:CritiqueReviseOptimizer", False),
    ("alignkit.plugins.evaluation.evaluate:Evaluator", False),
    ("alignkit.plugins.rejection_sampling.best_of_n:BestOfNOptimizer", False),
    ("alignkit.plugins.sft.sft:SFTOptimizer", True),
])
def test_the_builtin_stages_declare_where_they_run(stage, parallel):
    from alignkit.core.callables import load_callable

    cls = load_callable(stage, what="stage")
    instance = object.__new__(cls)  # the class attribute is the declaration; no model is built
    assert I.runs_data_parallel(instance) is parallel
    assert isinstance(instance, I.DataParallelFlag) is (not parallel)


def test_a_stage_without_the_flag_runs_on_every_process():
    assert I.runs_data_parallel(SimpleNamespace(run=lambda ctx: None)) is True
    assert I.runs_data_parallel(SimpleNamespace(data_parallel=True)) is True


def test_judges_new_answers_defaults_to_true_and_the_dataset_provider_opts_out():
    from alignkit.plugins.feedback.dataset import DatasetFeedback

    assert I.judges_new_answers(People()) is True
    dataset = object.__new__(DatasetFeedback)
    assert I.judges_new_answers(dataset) is False and isinstance(dataset, I.GivenPreferences)


def test_engine_weighs_micro_batches_by_batch_weight():
    from alignkit.core.engine import _micro_weights

    tokens = {0: 3, 1: 1, 2: 2}

    class Task:
        def batch_weight(self, batch):
            return sum(tokens[i] for i in batch)

    assert isinstance(Task(), I.WeightedBatches)
    # scored tokens: [0, 1] has 3 + 1 = 4, [2] has 2; total 6 -> 4/6 and 2/6
    assert _micro_weights(Task(), [[0, 1], [2]]) == pytest.approx([4 / 6, 2 / 6])
    # without batch_weight: by micro-batch, 1/2 each
    assert _micro_weights(SimpleNamespace(), [[0, 1], [2]]) == pytest.approx([0.5, 0.5])


def test_the_label_stage_leaves_any_reference_provider_uncalibrated(tmp_path):
    """A provider declaring ``skip_calibration`` is not calibrated, whatever its name (the label
    stage used to check for the name 'human')."""
    from alignkit.plugins.feedback.calibration import CalibrationConfig
    from alignkit.plugins.feedback.label import LabelConfig, LabelOptimizer

    asked = []
    ctx = SimpleNamespace(
        trainer_settings=lambda: SimpleNamespace(progress=False),
        feedback=People, dir=Path(tmp_path),
        run=SimpleNamespace(cfg=SimpleNamespace(feedback=SimpleNamespace(name="people"),
                                                data=SimpleNamespace(name="demo"))),
        data=SimpleNamespace(preferences=lambda split: asked.append(split)))
    stage = LabelOptimizer(LabelConfig(prompts=0, calibration=CalibrationConfig(enabled=True)))
    assert stage.run(ctx).metrics == {} and asked == [], "calibration read human pairs to judge"

