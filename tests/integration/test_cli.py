"""The `alignkit` command as a user runs it: run directory contract, errors, kill and resume, multirun."""

import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest
import torch

from alignkit.core.testing import EVALUATE_FAST

pytestmark = pytest.mark.slow  # runs the alignkit command in subprocesses

FAST = ["model=tiny-random", "logger=none", "trainer.batch_size=2", "trainer.max_length=96",
        "trainer.progress=false", "optimizer.max_eval_examples=8", *EVALUATE_FAST]


def alignkit(*args, check=True, **kw):
    exe = Path(sys.executable).parent / "alignkit"
    proc = subprocess.run([str(exe), *args], capture_output=True, text=True, env=_env(), **kw)
    if check and proc.returncode != 0:
        raise AssertionError(f"alignkit {' '.join(args)} failed ({proc.returncode}):\n{proc.stderr[-3000:]}")
    return proc


def _env():
    return dict(os.environ, HF_HUB_OFFLINE="1", WANDB_MODE="disabled")


def test_sft_run_writes_the_run_directory_contract(tmp_path):
    run = tmp_path / "run"
    proc = alignkit("pipeline=sft", *FAST, "trainer.max_steps=3", f"hydra.run.dir={run}")
    assert f"run directory: {run}" in proc.stdout
    assert (run / ".hydra" / "config.yaml").exists()
    records = [json.loads(line) for line in (run / "metrics.jsonl").read_text().splitlines()]
    assert [r["step"] for r in records if "loss" in r] == [1, 2, 3]
    assert [r["stage"] for r in records if r["stage"] != "sft"] == ["evaluate"]  # the pipeline's last stage
    assert all("time" in r for r in records)
    summary = json.loads((run / "summary.json").read_text())
    assert summary["pipeline"] == "sft" and summary["status"] == "completed"
    sft = summary["stages"]["sft"]
    assert sft["status"] == "completed" and sft["artifacts"] == {"model": "01-sft/model"}
    assert {"eval/loss", "eval/perplexity", "eval/loss_before", "train/loss"} <= set(sft["metrics"])
    assert (run / "01-sft" / "DONE").exists()
    from transformers import AutoModelForCausalLM, AutoTokenizer

    model = AutoModelForCausalLM.from_pretrained(run / "01-sft" / "model")
    assert model.config.num_hidden_layers == 2
    assert AutoTokenizer.from_pretrained(run / "01-sft" / "model").chat_template


def test_unknown_option_fails_before_work_with_the_available_names(tmp_path):
    proc = alignkit("optimizer=dpoo", *FAST, f"hydra.run.dir={tmp_path / 'r'}", check=False)
    assert proc.returncode != 0
    assert "dpo" in proc.stderr and "sft" in proc.stderr
    assert not (tmp_path / "r" / "summary.json").exists()


def test_bad_data_gives_one_paragraph_with_file_line_and_field(tmp_path):
    bad = tmp_path / "bad.jsonl"
    bad.write_text('{"messages": [{"role": "user", "content": "hi"}, {"role": "assistant", "content": "yo"}]}\n'
                   '{"messages": [{"role": "user", "content": "hi"}, {"role": "assistant", "content": ""}]}\n')
    proc = alignkit("pipeline=sft", *FAST, "data=files", f"data.sft={bad}", f"hydra.run.dir={tmp_path / 'r'}",
                    check=False)
    assert proc.returncode == 2
    assert f"{bad}:2" in proc.stderr and "content" in proc.stderr
    assert "Traceback" not in proc.stderr


def _weights(folder):
    from safetensors.torch import load_file

    return load_file(folder / "model.safetensors")


def test_a_killed_run_resumes_and_reaches_the_same_weights(tmp_path):
    args = ["pipeline=sft", *FAST, "trainer.max_steps=10", "trainer.checkpoint_every=2"]
    alignkit(*args, f"hydra.run.dir={tmp_path / 'straight'}")

    killed = tmp_path / "killed"
    exe = Path(sys.executable).parent / "alignkit"
    proc = subprocess.Popen([str(exe), *args, f"hydra.run.dir={killed}"], env=_env(),
                            stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL, start_new_session=True)
    checkpoint = killed / "01-sft" / "checkpoints" / "step-0000004"
    deadline = time.time() + 240
    while not checkpoint.exists() and proc.poll() is None and time.time() < deadline:
        time.sleep(0.05)
    assert proc.poll() is None, "the run finished before it could be killed"
    os.killpg(proc.pid, signal.SIGKILL)
    proc.wait()
    assert not (killed / "01-sft" / "DONE").exists()

    resumed = alignkit(*args, f"hydra.run.dir={killed}")
    assert "resuming stage 'sft'" in resumed.stderr
    a, b = _weights(tmp_path / "straight" / "01-sft" / "model"), _weights(killed / "01-sft" / "model")
    assert a.keys() == b.keys()
    for key in a:
        assert torch.allclose(a[key], b[key], atol=1e-5), key


def test_multirun_sweep_writes_one_run_directory_per_job(tmp_path):
    sweep = tmp_path / "sweep"
    alignkit("-m", "pipeline=sft", *FAST, "trainer.max_steps=1", "trainer.learning_rate=1e-4,3e-4",
             f"hydra.sweep.dir={sweep}")
    jobs = sorted(p for p in sweep.iterdir() if (p / "summary.json").exists())
    assert [p.name for p in jobs] == ["0", "1"]
    lrs = [json.loads((p / "summary.json").read_text())["status"] for p in jobs]
    assert lrs == ["completed", "completed"]


def test_plugins_lists_every_component_with_its_package():
    out = alignkit("plugins").stdout
    for kind, name in [("optimizer", "sft"), ("optimizer", "dpo"), ("data_source", "demo"),
                       ("data_source", "files"), ("logger", "wandb")]:
        assert any(line.split()[:3] == [kind, name, "alignkit"] for line in out.splitlines()), (kind, name)


def test_command_line_trainer_settings_beat_the_optimizer_files_own(tmp_path):
    """The dpo pipeline gives its stage its own learning rate; `trainer.learning_rate=` on the command line wins."""
    run = tmp_path / "run"
    fast = [a for a in FAST if not a.startswith("optimizer.")]
    alignkit("pipeline=dpo", *fast, "optimizer.kl_prompts=0", "trainer.max_steps=2", "trainer.warmup_ratio=0", "trainer.lr_scheduler=constant",
             "trainer.learning_rate=0.00123", f"hydra.run.dir={run}")
    records = [json.loads(line) for line in (run / "metrics.jsonl").read_text().splitlines()]
    rates = {r["lr"] for r in records if r.get("stage") == "dpo" and "lr" in r}
    assert rates == {0.00123}
    # Without the override the pipeline's value holds.
    other = tmp_path / "other"
    alignkit("pipeline=dpo", *fast, "optimizer.kl_prompts=0", "trainer.max_steps=1", "trainer.warmup_ratio=0", "trainer.lr_scheduler=constant",
             f"hydra.run.dir={other}")
    records = [json.loads(line) for line in (other / "metrics.jsonl").read_text().splitlines()]
    assert {r["lr"] for r in records if r.get("stage") == "dpo" and "lr" in r} == {3e-05}


def test_a_problem_of_a_later_stage_fails_the_command_before_sft_trains(tmp_path):
    run = tmp_path / "run"
    fast = [a for a in FAST if not a.startswith("optimizer.")]
    proc = alignkit("pipeline=ppo", *fast, f"hydra.run.dir={run}", check=False)
    assert proc.returncode == 2
    assert "stage 'ppo' needs a preference_model: add preference_model=<one of bradley_terry, " in proc.stderr
    assert "Traceback" not in proc.stderr
    assert not (run / "01-sft").exists() and not (run / "summary.json").exists()


def test_dry_run_prints_the_plan_and_trains_nothing(tmp_path):
    run = tmp_path / "run"
    fast = [a for a in FAST if not a.startswith("optimizer.")]
    proc = alignkit("pipeline=dpo", *fast, "trainer.max_steps=5", "--dry-run", "evaluate.num_prompts=3",
                    f"hydra.run.dir={run}")
    lines = proc.stdout.splitlines()
    assert "pipeline dpo: model tiny-random, data demo" in lines
    rows = [line.split()[:3] for line in lines if line[:2] in ("01", "02", "03")]
    assert rows == [["01", "sft", "sft"], ["02", "dpo", "dpo"], ["03", "evaluate", "evaluate"]]
    assert "max_steps=5 lr=3e-05 batch_size=2" in proc.stdout  # batch size from FAST, lr from the pipeline
    assert "nothing was trained" in proc.stdout
    assert sorted(p.name for p in run.iterdir() if not p.name.endswith(".log")) == [".hydra"]
    bad = alignkit("pipeline=dpo", *fast, "--dry-run", "+optimizer.betaa=0.1", f"hydra.run.dir={tmp_path / 'bad'}",
                   check=False)
    assert bad.returncode == 2 and "has no option 'betaa' (did you mean 'beta'?)" in bad.stderr


def test_a_third_party_command_runs_is_listed_and_is_blocked_with_its_plugin(tmp_path):
    """``alignkit hello``: a command the fake package offers through the alignkit_commands hook."""
    fake = Path(__file__).parents[1] / "fixtures" / "fake_plugin"
    env = dict(_env(), PYTHONPATH=os.pathsep.join(filter(None, [str(fake), os.environ.get("PYTHONPATH")])))
    exe = str(Path(sys.executable).parent / "alignkit")
    ran = subprocess.run([exe, "hello", "bob"], capture_output=True, text=True, env=env, cwd=tmp_path)
    assert ran.returncode == 0 and ran.stdout == "hello, bob\n", ran.stderr
    helped = subprocess.run([exe, "--help"], capture_output=True, text=True, env=env, cwd=tmp_path)
    commands = helped.stdout.split("\ncommands:")[1].split("\nconfig groups")[0]
    assert "\n  hello [NAME] " in commands and "greet someone (package alignkit-fake)" in commands
    blocked = subprocess.run([exe, "hello"], capture_output=True, text=True, cwd=tmp_path,
                             env=dict(env, ALIGNKIT_DISABLE_PLUGINS="fake"))
    assert blocked.returncode == 2 and "unknown command 'hello'" in blocked.stderr
    assert "ALIGNKIT_DISABLE_PLUGINS=fake" in blocked.stderr and "Traceback" not in blocked.stderr
    old = subprocess.run([exe, "hello-legacy"], capture_output=True, text=True, env=env, cwd=tmp_path)
    assert old.returncode == 0 and "hello from the old group" in old.stdout
    assert "DeprecationWarning" in old.stderr and "alignkit_commands hook" in old.stderr


def test_help_lists_the_commands_and_every_group_option_plugins_included(tmp_path):
    fake = Path(__file__).parents[1] / "fixtures" / "fake_plugin"  # its dist-info is found on PYTHONPATH
    env = dict(_env(), PYTHONPATH=os.pathsep.join(filter(None, [str(fake), os.environ.get("PYTHONPATH")])))
    exe = Path(sys.executable).parent / "alignkit"
    proc = subprocess.run([str(exe), "--help"], capture_output=True, text=True, env=env, cwd=tmp_path)
    assert proc.returncode == 0, proc.stderr
    out = proc.stdout
    assert "Hydra" not in out.splitlines()[0] and "--hydra-help" in out and "--dry-run" in out
    commands = out.split("\ncommands:")[1].split("\nconfig groups")[0]
    for command in ("plugins", "plugin new NAME", "report", "evaluate", "label", "data"):
        assert f"\n  {command} " in commands, command
    groups = {line.split()[0]: line.split(None, 1)[1] for line in out.split("\nconfig groups")[1].split("\n\n")[0]
              .splitlines()[1:]}
    assert "fake_opt" in groups["optimizer"] and "dpo" in groups["optimizer"]  # the plugin's option
    assert {"bradley_terry", "judge", "rule"} <= set(groups["preference_model"].split(", "))
    assert not {"hydra", "accelerate", "constitution"} & set(groups)
    assert "launcher.config" in out
