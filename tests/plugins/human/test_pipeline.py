"""``feedback=human`` in a pipeline: the run stops as ``waiting``, people label through the app,
the same command resumes and completes. Also the provider on its own."""

from __future__ import annotations

import json
import subprocess
import sys

import pytest

from alignkit.core.errors import WaitingForFeedback
from alignkit.core.records_io import read_jsonl
from alignkit.core.testing import EVALUATE_FAST
from alignkit.plugins.human.provider import HumanFeedback, HumanFeedbackConfig
from alignkit.plugins.human.store import Store


def test_provider_pending_then_judged(tmp_path, make_pairs):
    store = Store(f"sqlite:///{tmp_path / 'p.db'}")
    provider = HumanFeedback(HumanFeedbackConfig(db=store.url, overlap=2, project="run"), store)
    pairs = make_pairs(3)
    args = ([p["prompt"] for p in pairs], [p["response_a"] for p in pairs], [p["response_b"] for p in pairs])
    assert [j.preferred for j in provider.judge(*args)] == ["pending"] * 3
    assert [j.preferred for j in provider.judge(*args)] == ["pending"] * 3  # nothing pushed twice
    assert len(store.items("run")) == 3
    ids = [i.id for i in store.items("run")]
    x, y = (store.authenticate(store.add_annotator(n)).id for n in ("x", "y"))
    store.submit(ids[0], x, "a"), store.submit(ids[0], y, "a")  # two votes for A
    store.submit(ids[1], x, "b"), store.submit(ids[1], y, "tie")  # P(A) = (0 + 1/2) / 2
    store.submit(ids[2], x, "b")  # one of the two labels it needs
    out = provider.judge(*args)
    assert (out[0].preferred, out[0].probability, out[0].annotator) == ("a", 1.0, "x,y")
    assert (out[1].preferred, out[1].probability) == ("b", 0.25)
    assert out[2].preferred == "pending"
    assert provider.label_noise() == 0.0  # the one pair of a/b votes on an item agrees
    store.submit(ids[2], y, "a")
    assert provider.label_noise() == pytest.approx(0.5)  # one agreeing, one disagreeing comparison
    strict = HumanFeedback(HumanFeedbackConfig(db=store.url, project="other", wait=True), store)
    with pytest.raises(WaitingForFeedback, match="0 of 3 pairs are labelled") as info:
        strict.judge(*args)
    assert (info.value.labelled, info.value.total) == (0, 3)


PIPELINE = [  # InstructGPT's loop with people as the labellers: label -> reward model -> PPO -> evaluate
    "pipeline=rlhf", "feedback=human", "model=tiny-random", "logger=none", "data=files",
    "data.eval_fraction=0", "trainer.max_steps=2", "trainer.batch_size=2", "trainer.max_length=96",
    "trainer.progress=false", "trainer.checkpoint_every=0", "label.prompts=-1", "label.eval_prompts=0",
    "label.max_new_tokens=8", "label.calibration.enabled=false", "optimizer.eval_prompts=0",
    "optimizer.max_new_tokens=6", *EVALUATE_FAST,
]


@pytest.mark.slow  # a whole pipeline through the CLI, twice
def test_pipeline_waits_for_people_then_resumes(tmp_path, label_server, http, registry):
    prompts = tmp_path / "prompts.jsonl"
    prompts.write_text("".join(json.dumps({"prompt": [{"role": "user", "content": f"What is {i} + {i}?"}]}) + "\n"
                               for i in range(5)))
    held_out = tmp_path / "held_out.jsonl"  # for the evaluate stage
    held_out.write_text("".join(json.dumps({"prompt": [{"role": "user", "content": f"What is {i} - 1?"}]}) + "\n"
                                for i in range(2)))
    run_dir = tmp_path / "run"
    overrides = [*PIPELINE, f"data.prompts={prompts}", f"data.eval_prompts={held_out}", f"feedback.db={label_server.db}",
                 f"feedback.url={label_server.url}"]
    # 1. the command stops: nothing is labelled yet
    first = subprocess.run([sys.executable, "-m", "alignkit.core.cli", *overrides, f"hydra.run.dir={run_dir}"],
                           capture_output=True, text=True, cwd=tmp_path, timeout=600)
    assert first.returncode == WaitingForFeedback.EXIT_WAITING, first.stdout + first.stderr
    summary = json.loads((run_dir / "summary.json").read_text())
    assert summary["status"] == "waiting" and summary["stages"]["label"]["status"] == "waiting"
    store = Store(label_server.db)
    total = len(store.items("default"))
    assert total >= 3
    assert "rerun the same command" in summary["message"]
    output = first.stdout + first.stderr
    assert f"0 of {total} pairs are labelled" in output and label_server.url in output  # how far, and where
    assert f"hydra.run.dir={run_dir}" in first.stdout  # the exact command to resume with

    # 2. an annotator labels every pair through the app's HTTP API: the shorter answer wins
    token = store.add_annotator("ann")
    chosen = {}
    while True:
        status, item = http("GET", f"{label_server.url}/api/next?project=default", token=token)
        assert status == 200
        if item["item_id"] is None:
            break
        side = "left" if len(item["left"]) <= len(item["right"]) else "right"
        chosen[item["item_id"]] = item[side]
        assert http("POST", f"{label_server.url}/api/labels", {"item_id": item["item_id"], "choice": side},
                    token=token)[0] == 201
    assert len(chosen) == total

    # 3. the same command again, in the same run directory: it resumes and completes
    from alignkit.core.pipeline import run_pipeline
    from alignkit.core.testing import compose

    rd = run_pipeline(compose(overrides, registry), run_dir, registry)
    summary = json.loads((rd.path / "summary.json").read_text())
    assert summary["status"] == "completed" and "message" not in summary
    assert summary["stages"]["reward_model"]["status"] == "completed"
    assert summary["stages"]["ppo"]["status"] == "completed" and summary["stages"]["evaluate"]["status"] == "completed"
    # the rerun pushed no label pair twice; the evaluate stage's policy-vs-reference pairs (one per
    # held-out prompt) went to the people too, and are reported as pending, not guessed
    assert len(store.items("default")) == total + 2
    assert summary["stages"]["evaluate"]["metrics"]["win/pending"] == 2
    records = read_jsonl(rd.path / summary["stages"]["label"]["artifacts"]["preferences"] / "train.jsonl")
    assert len(records) == total
    assert sorted(r["chosen"] for r in records) == sorted(chosen.values())
