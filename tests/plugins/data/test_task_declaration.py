"""A data source declares its task (verifier, scorers); pipelines use what the data declares
(``prompt_filter: task``, ``scorers: [task]``), so a user's own prompts need no nulling overrides."""

import json
from pathlib import Path

import pytest
from omegaconf import OmegaConf

from alignkit.core import ConfigError
from alignkit.core.interfaces import TaskDeclaration
from alignkit.core.task import TASK, Task, declared_task, resolve_task
from alignkit.plugins.data.plugin import DemoDataSource, FilesDataSource

VERIFIABLE = "alignkit.plugins.rules.demo:verifiable"
GRADED = "alignkit.plugins.rules.demo:arithmetic_graded"
CORRECT = "alignkit.plugins.rules.demo:arithmetic_correct"
CONCISE = "alignkit.plugins.rules.demo:concise"


class Declares:
    task_verifier = "mine:verifiable"
    task_scorers = ["mine:exact", "mine:close"]


def data_of(source):
    return lambda: source


# -- the declarations -------------------------------------------------------------------------


def test_the_demo_data_declares_its_arithmetic_rule():
    demo = DemoDataSource()
    assert isinstance(demo, TaskDeclaration)
    assert declared_task(demo) == Task(verifier=VERIFIABLE, scorers=(GRADED, CORRECT))


def test_files_declare_no_task_unless_configured(tmp_path):
    prompts = tmp_path / "prompts.jsonl"
    prompts.write_text('{"prompt": "hi"}\n')
    assert declared_task(FilesDataSource(prompts=str(prompts))) == Task()
    mine = FilesDataSource(prompts=str(prompts), task={"verifier": "m:v", "scorers": ["m:a", "m:b"]})
    assert declared_task(mine) == Task(verifier="m:v", scorers=("m:a", "m:b"))


def test_a_source_without_the_members_declares_nothing():
    assert declared_task(object()) == Task()


@pytest.mark.parametrize(("task", "message"), [
    ({"verifer": "m:v"}, "task has no option 'verifer'"),
    ({"verifier": "not_a_function"}, "task.verifier must be package.module:function"),
    ({"scorers": "m:a"}, "task.scorers must be a list"),
])
def test_a_malformed_task_names_the_option(tmp_path, task, message):
    with pytest.raises(ConfigError, match=message):
        FilesDataSource(prompts=None, task=task)


# -- stage options that defer to it ----------------------------------------------------------


def test_task_options_take_the_datas_verifier_and_scorers():
    options = OmegaConf.create({"prompt_filter": TASK, "scorers": [TASK], "samples": 4})
    resolved = resolve_task(options, data_of(Declares()))
    assert resolved.prompt_filter == "mine:verifiable"
    assert list(resolved.scorers) == ["mine:exact", "mine:close"]
    assert resolved.samples == 4 and options.prompt_filter == TASK, "the stage's own node is left as it was"


def test_task_among_scorers_keeps_the_others_in_order_once_each():
    options = OmegaConf.create({"scorers": ["mine:first", TASK, "mine:close"]})
    assert list(resolve_task(options, data_of(Declares())).scorers) == ["mine:first", "mine:exact", "mine:close"]


def test_an_explicit_option_wins_and_the_data_is_not_built():
    def never():
        raise AssertionError("the data source is read only when an option says `task`")

    options = OmegaConf.create({"prompt_filter": "mine:other", "scorers": ["mine:x"]})
    assert resolve_task(options, never) is options
    assert resolve_task(OmegaConf.create({"prompt_filter": None, "scorers": []}), never).prompt_filter is None


def test_task_on_data_that_declares_nothing_means_every_prompt_and_no_scorer():
    resolved = resolve_task(OmegaConf.create({"prompt_filter": TASK, "scorers": [TASK]}), data_of(object()))
    assert resolved.prompt_filter is None and list(resolved.scorers) == []


def test_the_task_pipelines_name_no_demo_function():
    """preference, rlhf, iterative_dpo, rejection_sampling and rlaif_dpo used to hard-wire the demo's rule."""
    root = Path(__file__).parents[3] / "conf" / "pipeline"
    for name in ("preference", "rlhf", "iterative_dpo", "rejection_sampling", "rlaif_dpo", "rlaif"):
        text = "\n".join(line.split("#", 1)[0] for line in (root / f"{name}.yaml").read_text().splitlines())
        assert "rules.demo" not in text, name


def test_the_demo_pipelines_still_get_the_arithmetic_scorers(compose_config):
    from alignkit.plugins.data.plugin import demo_source

    for pipeline in ("preference", "rlhf", "iterative_dpo", "rejection_sampling"):
        cfg = compose_config(f"pipeline={pipeline}")
        evaluate = resolve_task(cfg.evaluate, lambda: demo_source(cfg.data))
        assert evaluate.prompt_filter == VERIFIABLE and list(evaluate.scorers) == [GRADED, CORRECT], pipeline


# -- the pre-run check ------------------------------------------------------------------------


def test_preflight_imports_the_functions_data_task_names(registry, tmp_path):
    from alignkit.core.preflight import preflight
    from alignkit.core.testing import compose

    prompts = tmp_path / "prompts.jsonl"
    prompts.write_text('{"prompt": "hi"}\n')
    cfg = compose(["pipeline=preference", "model=tiny-random", "data=files", f"data.prompts={prompts}",
                   "data.task.verifier=nosuch.module:keep", f"data.task.scorers=[{CONCISE},nosuch.module:score]"],
                  registry)
    with pytest.raises(ConfigError) as info:
        preflight(cfg, registry)
    message = str(info.value)
    assert "data.task.verifier" in message and "data.task.scorers entry" in message
    assert "the configuration has 2 problems" in message and "concise" not in message


# -- a pipeline on your own prompts -----------------------------------------------------------

MY_PROMPTS = ["Name a colour of the sky.", "Say hello to Ada.", "Suggest a name for a cat.", "Describe rain.",
              "Write a haiku about tea.", "What is 2 + 2?", "Give a synonym for quick.", "Name a fruit.",
              "Recommend a board game.", "Say goodbye politely."]


@pytest.mark.slow  # a whole pipeline on the tiny model (over 3 s)
def test_preference_on_your_own_prompts_needs_no_nulling_overrides(run_alignkit, tmp_path):
    """Before the data declared its task the pipeline kept only the demo's arithmetic questions and
    scored with the demo's rules: here "What is 2 + 2?" alone would have been evaluated."""
    prompts, held_out = tmp_path / "prompts.jsonl", tmp_path / "held_out.jsonl"
    prompts.write_text("".join(json.dumps({"prompt": p}) + "\n" for p in MY_PROMPTS))
    held_out.write_text("".join(json.dumps({"prompt": p}) + "\n" for p in MY_PROMPTS[:4]))
    rd = run_alignkit("pipeline=preference", "data=files", f"data.prompts={prompts}", f"data.eval_prompts={held_out}",
                      "feedback=rule", f"feedback.fn={CONCISE}",  # no sft data: the sft stage is skipped
                      "label.prompts=4", "label.eval_prompts=0", "label.samples=2", "label.max_new_tokens=8",
                      "label.calibration.enabled=false", "label.keep_ties=true", "optimizer.max_eval_pairs=2",
                      "optimizer.kl_prompts=0", f"optimizer.cache_dir={tmp_path / 'ref'}", "evaluate.samples=1",
                      "evaluate.safety_prompts=0", "evaluate.sycophancy_prompts=0")
    summary = json.loads((rd.path / "summary.json").read_text())
    assert summary["status"] == "completed"
    assert [s["status"] for s in summary["stages"].values()] == ["skipped"] + ["completed"] * 3
    judged = [json.loads(line) for line in (rd.path / "02-label/judgements.jsonl").read_text().splitlines()]
    assert len({j["prompt"][-1]["content"] for j in judged}) == 4, "every prompt may be labelled, not only sums"
    results = json.loads((rd.path / "04-evaluate/results.json").read_text())
    assert results["scorers"] == [], "no arithmetic scorer on prompts that are not arithmetic"
    assert not any(key.startswith("reward/arithmetic") for key in summary["stages"]["evaluate"]["metrics"])
    assert summary["stages"]["evaluate"]["metrics"]["eval/prompts"] == 4, "held-out prompts the demo rule cannot check"


def test_an_options_dataclass_is_resolved_as_well():
    from alignkit.plugins.evaluation.evaluate import EvaluateConfig

    options = EvaluateConfig(prompt_filter=TASK, scorers=[TASK, "mine:extra"])
    resolved = resolve_task(options, data_of(Declares()))
    assert isinstance(resolved, EvaluateConfig)
    assert (resolved.prompt_filter, resolved.scorers) == ("mine:verifiable", ["mine:exact", "mine:close", "mine:extra"])
