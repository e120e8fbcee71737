"""The kto optimizer: alignkit's optimizer contract on a real tiny run, its data, and that it learns."""

import json

import pytest

from alignkit.core import DataError, Judgement
from alignkit.core.testing import OptimizerContract
from alignkit_kto.examples import examples_from_pairs, read_examples


class TestKTOIsAnOptimizer(OptimizerContract):
    name = "kto"
    overrides = ("feedback=keyword",)  # the plugin's own provider decides which response is desirable

    def test_the_feedback_provider_labelled_the_pairs(self, contract_run):
        rd, _, _ = contract_run
        metrics = rd.summary["stages"][self._stage(contract_run)]["metrics"]
        # CONTRACT_PAIRS: the keyword rules decide the rambling and refusing pairs, tie on the rest
        assert metrics["data/feedback_agrees_with_chosen"] == 1.0
        assert 0 < metrics["data/undecided_pairs"] < metrics["data/pairs"]
        assert metrics["data/desirable"] == metrics["data/undesirable"] > 0


PAIR = {"prompt": [{"role": "user", "content": "q"}], "chosen": "good", "rejected": "bad"}


class PrefersB:
    def judge(self, prompts, a, b):
        return [Judgement("b", 0.1, "test"), Judgement("tie", 0.5, "test")][: len(prompts)]


def test_pairs_split_into_desirable_and_undesirable_examples():
    derived = examples_from_pairs([PAIR, {**PAIR, "strength": 0.2}, {**PAIR, "strength": 0.5}])
    labels = [(e.completion, e.desirable) for e in derived.examples]
    assert labels == [("good", True), ("bad", False), ("bad", True), ("good", False)]  # strength 0.2 flips
    assert derived.dropped == 1 and derived.agreement is None  # strength 0.5: undecided


def test_a_feedback_provider_overrides_the_datasets_labels():
    derived = examples_from_pairs([PAIR, PAIR], PrefersB())
    assert [(e.completion, e.desirable) for e in derived.examples] == [("bad", True), ("good", False)]
    assert derived.dropped == 1 and derived.agreement == 0.0


def test_unpaired_examples_are_validated_with_file_line_and_field(tmp_path):
    bad = tmp_path / "bad.jsonl"
    bad.write_text('{"prompt": "q", "completion": "a", "label": true}\n{"prompt": "q", "completion": "a", "label": 1}\n')
    with pytest.raises(DataError, match=r"bad.jsonl:2: field 'label'.*true or false"):
        read_examples(bad)


def test_kto_learns_unpaired_feedback(tmp_path, run_alignkit):
    """Desirable completions gain implied reward over undesirable ones (a frozen-copy reference)."""
    rows = []
    for i in range(4):
        prompt = f"What is {i} + {i}?"
        rows.append({"prompt": prompt, "completion": f"{i} + {i} = {2 * i}.", "label": True})
        rows.append({"prompt": prompt, "completion": "Hmm, let me think about it for a while.", "label": False})
    data = tmp_path / "unpaired.jsonl"
    data.write_text("".join(json.dumps(r) + "\n" for r in rows))
    rd = run_alignkit("pipeline=kto", f"optimizer.examples={data}", f"optimizer.eval_examples={data}",
                      "optimizer.reference=copy", "optimizer.beta=0.5", "trainer.max_steps=12",
                      "trainer.batch_size=4", "trainer.learning_rate=1e-3", "trainer.warmup_ratio=0")
    metrics = rd.summary["stages"]["kto"]["metrics"]
    assert metrics["data/desirable"] == metrics["data/undesirable"] == 4
    # measured: margin 0.25 and accuracy 0.75 after 12 steps (from 0 and 0.5 at the start)
    assert metrics["eval/rewards/margin"] > 0.1 and metrics["eval/rewards/accuracy"] > 0.5, metrics
