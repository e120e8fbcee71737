"""Self-Instruct generation with ``tiny-random`` as the teacher: the text is noise, the mechanics are
real. Planted near-duplicates are filtered by ROUGE-L; a killed generation resumes without
duplicates and reaches the same data as an uninterrupted one; the licence is recorded."""

import json
import logging

import pytest

from alignkit.core.errors import DataError
from alignkit.plugins.curation import self_instruct as si
from alignkit.plugins.curation.rouge import rouge_l
from alignkit.plugins.curation.seeds import read_seed_tasks, shipped_path
from alignkit.core.options import build_component
from alignkit.core.registry import Registry
from alignkit.plugins.curation.cli import CommandContext
from alignkit.plugins.curation.teacher import TeacherConfig, build_teacher

TINY = {"hidden_size": 64, "num_hidden_layers": 2, "num_attention_heads": 4, "num_key_value_heads": 4,
        "intermediate_size": 256, "seed": 0}
SEEDS = read_seed_tasks(shipped_path())


def planted_seed_copy(k):
    """A seed instruction with one word changed: ROUGE-L far above 0.7 against the seed."""
    words = SEEDS[k % len(SEEDS)].instruction.split()
    words[1] = "quickly"
    return " ".join(words)


class Killed(BaseException):
    """Stands for SIGKILL: nothing after it runs (BaseException, so no handler swallows it)."""


class PlantingTeacher:
    """The real tiny-random teacher, with near-duplicates planted into its proposals: in every
    request batch, proposal 0 copies a seed task with one word changed and proposal 1 repeats
    proposal 2 with a word added. ``kill_at``: raise on that call of ``complete``."""

    def __init__(self, inner, kill_at=None):
        self.inner, self.kill_at, self.calls = inner, kill_at, 0
        self.name = inner.name
        self.planted: list[tuple[str, str]] = []  # (kind, text)

    def identity(self):
        return self.inner.identity()

    def complete(self, prompts, **kw):
        self.calls += 1
        if self.calls == self.kill_at:
            raise Killed()
        out = self.inner.complete(prompts, **kw)
        if "Come up with a series of tasks" in prompts[0] and len(out) >= 3:
            out[0] = planted_seed_copy(self.calls)
            out[1] = out[2] + " again"
            self.planted += [("seed", out[0]), ("batch", out[1])]
        return out

    def yes_probability(self, prompts):
        return self.inner.yes_probability(prompts)


@pytest.fixture(scope="module")
def real_teacher():
    from alignkit.core.registry import Registry

    return build_teacher(TeacherConfig(model="tiny-random", options=TINY), Registry())  # the plugins' loader


def settings(out_dir, **extra):
    cfg = {"output_dir": str(out_dir), "num_instructions": 5, "request_batch_size": 4,
           "num_prompt_instructions": 4, "temperature": 1.0, "top_p": 1.0, "max_new_tokens": 12,
           "instance_temperature": 1.0, "instance_max_new_tokens": 12, "eval_fraction": 0.2,
           "teacher": {"model": "tiny-random", "options": TINY, "licence": "Apache-2.0 (test)"},
           # noise from a random model is neither English nor long: only the length floor is relaxed
           "filters": {"min_words": 0, "require_ascii_start": False}}
    cfg.update(extra)
    return cfg


REGISTRY = Registry()


def self_instruct_source(node):
    """``data=self_instruct`` built as a run builds it: options checked by the core, the registry lent."""
    return build_component(REGISTRY, "data_source", "self_instruct", node, CommandContext(REGISTRY),
                           group="data source")


def generate(monkeypatch, out_dir, fake, **extra):
    monkeypatch.setattr(si, "build_teacher", lambda cfg, registry=None: fake)
    source = self_instruct_source(settings(out_dir, **extra))
    return source, source.generate()


@pytest.fixture(scope="module")
def uninterrupted(real_teacher, tmp_path_factory):
    mp = pytest.MonkeyPatch()
    teacher = PlantingTeacher(real_teacher)
    out = tmp_path_factory.mktemp("uninterrupted")
    try:
        source, records = generate(mp, out, teacher)
    finally:
        mp.undo()
    return source, records, teacher, out


def test_rouge_l_filter_removes_planted_near_duplicates(uninterrupted):
    source, records, teacher, out = uninterrupted
    kept = [r["instruction"] for r in records]
    assert len(kept) == 5, "the noise proposals pass the filters: the pool fills"
    planted_seed = [t for kind, t in teacher.planted if kind == "seed"]
    assert planted_seed and not set(planted_seed) & set(kept), "copies of seed tasks never enter the pool"
    batch_pairs = [t for kind, t in teacher.planted if kind == "batch"]
    for text in batch_pairs:
        assert not (text in kept and text[: -len(" again")] in kept), "never both members of a planted pair"
    seeds = [t.instruction for t in SEEDS]
    for i, a in enumerate(kept):
        assert all(rouge_l(a, s) <= 0.7 for s in seeds)
        assert all(rouge_l(a, b) <= 0.7 for b in kept[i + 1:])
    meta = json.loads((out / "metadata.json").read_text())
    assert meta["counts"]["rejected"]["rouge"] >= len(planted_seed) + len(batch_pairs)
    assert meta["counts"]["generated"] == 5 and meta["complete"] is True
    assert meta["licence_of_outputs"] == "Apache-2.0 (test)"
    assert meta["teacher"]["licence_source"].startswith("config")
    assert meta["seed_tasks"]["tasks"] == 24 and len(meta["seed_tasks"]["sha256"]) == 64
    lines = (out / "data.jsonl").read_text().splitlines()
    assert [json.loads(x)["instruction"] for x in lines] == kept
    assert all(isinstance(r["is_classification"], bool) and r["output"].strip() for r in records)


def test_a_killed_generation_resumes_without_duplicates(uninterrupted, real_teacher, monkeypatch, tmp_path):
    _, reference, reference_teacher, _ = uninterrupted
    # Call 4 of complete() is the instance step of batch 1: batch 0 is on disk, batch 1 is lost mid-way.
    with pytest.raises(Killed):
        generate(monkeypatch, tmp_path, PlantingTeacher(real_teacher, kill_at=4))
    assert sorted(p.name for p in (tmp_path / "batches").iterdir()) == ["000000.json"]
    assert not (tmp_path / "data.jsonl").exists()
    first_batch = (tmp_path / "batches" / "000000.json").read_bytes()
    resumed_teacher = PlantingTeacher(real_teacher)
    resumed_teacher.calls = 2  # its planting continues where the killed run's was (calls 3, 5, ...)
    _, records = generate(monkeypatch, tmp_path, resumed_teacher)
    instructions = [r["instruction"] for r in records]
    assert len(instructions) == len(set(instructions)) == 5
    assert records == reference, "the resumed generation equals the uninterrupted one"
    assert resumed_teacher.calls == reference_teacher.calls, "batch 0 was read back, not generated again"
    assert (tmp_path / "batches" / "000000.json").read_bytes() == first_batch
    # A third run finds everything on disk and does not call the teacher at all.
    monkeypatch.setattr(si, "build_teacher", lambda cfg, registry=None: pytest.fail("teacher loaded again"))
    again = self_instruct_source(settings(tmp_path))
    assert again.generate() == records


def test_the_data_source_serves_sft_splits_and_checks_its_folder(uninterrupted, monkeypatch, tmp_path, caplog):
    source, records, teacher, out = uninterrupted
    train, held_out = source.sft("train"), source.sft("eval")
    assert len(train) + len(held_out) == 5 and len(held_out) == 1
    assert train[0]["messages"][-1]["role"] == "assistant"
    assert source.preferences("train") is None
    assert len(source.prompts("eval")) == 1
    manifest = source.manifest()
    assert manifest["generated_records"] == 5 and manifest["train"] == 4 and manifest["eval"] == 1
    # Other generation settings in the same folder: a clear error, not mixed data.
    with pytest.raises(Exception, match="other settings .*temperature"):
        generate(monkeypatch, out, teacher, temperature=0.5)
    # Seed tasks only (no teacher) and the unknown-licence warning.
    seeds_only = self_instruct_source({"num_instructions": 0, "include_seed_tasks": True, "eval_fraction": 0})
    assert len(seeds_only.sft("train")) == sum(len(t.instances) for t in SEEDS)
    with caplog.at_level(logging.WARNING, logger="alignkit.curation"):
        src, _ = generate(monkeypatch, tmp_path, teacher,
                          teacher={"model": "tiny-random", "options": TINY}, num_instructions=1)
    assert "licence of the teacher's outputs is unknown" in caplog.text
    assert json.loads((tmp_path / "metadata.json").read_text())["licence_of_outputs"] == "unknown"


def test_filters_that_reject_everything_give_a_clear_error(real_teacher, monkeypatch, tmp_path):
    monkeypatch.setattr(si, "build_teacher", lambda cfg, registry=None: real_teacher)
    source = self_instruct_source(settings(tmp_path, max_batches=1, filters={"min_words": 500}))
    with pytest.raises(DataError, match=r"all failed the filters \(rejected: \{'too_short': \d+\}\)"):
        source.sft("train")
