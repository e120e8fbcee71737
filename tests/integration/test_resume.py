"""Rerunning the same command resumes it (the default run directory is named after the command),
and a run made with a relative data path is evaluated and resumed from any folder. The runs use a
one-step stand-in optimizer (the checked-in fake plugin) on tiny-random."""

import json
import os
import re
import subprocess
import sys
from pathlib import Path

import pytest

from alignkit.core.testing import EVALUATE_FAST

pytestmark = pytest.mark.slow  # runs the alignkit command in subprocesses

FAKE_PLUGIN = Path(__file__).parents[1] / "fixtures" / "fake_plugin"
FAKE_PIPELINE = ["model=tiny-random", "logger=none", "optimizer=fake_opt",
                 "pipeline.stages=[{name:fake,optimizer:fake_opt}]"]

SFT = '{"messages": [{"role": "user", "content": "Name a colour %d."}, {"role": "assistant", "content": "Blue."}]}\n'


def alignkit(*args, cwd=None):
    exe = Path(sys.executable).parent / "alignkit"
    env = dict(os.environ, HF_HUB_OFFLINE="1", WANDB_MODE="disabled", OMP_NUM_THREADS="1",
               PYTHONPATH=os.pathsep.join([str(FAKE_PLUGIN), os.environ.get("PYTHONPATH", "")]))
    return subprocess.run([str(exe), *args], capture_output=True, text=True, env=env, cwd=cwd, timeout=300)


def run_directory(proc) -> Path:
    found = re.findall(r"alignkit: run directory: (.+)", proc.stdout)
    assert found, proc.stderr[-3000:]
    return Path(found[-1])


def test_the_same_command_finds_its_run_directory_again_and_resumes(tmp_path):
    first = alignkit(*FAKE_PIPELINE, "optimizer.scale=2", cwd=tmp_path)
    run = run_directory(first)
    assert run.parent == tmp_path / "runs" and run.name.startswith("preference-tiny-random-")

    again = alignkit("optimizer.scale=2", *FAKE_PIPELINE, cwd=tmp_path)  # the same overrides, reordered
    assert run_directory(again) == run
    assert "stage fake already done; skipping" in again.stdout + again.stderr
    assert json.loads((run / "summary.json").read_text())["status"] == "completed"


def test_a_relative_data_path_is_evaluated_and_resumed_from_another_folder(tmp_path, monkeypatch):
    from alignkit.plugins.evaluation.cli import evaluate_command

    made, other = tmp_path / "made", tmp_path / "other"
    made.mkdir(), other.mkdir()
    (made / "sft.jsonl").write_text("".join(SFT % i for i in range(12)))
    proc = alignkit(*FAKE_PIPELINE, "data=files", "data.sft=sft.jsonl", *EVALUATE_FAST, "evaluate.prompt_filter=null",
                    cwd=made)
    run = run_directory(proc)
    files = json.loads((run / "summary.json").read_text())["data_files"]
    assert files["data.sft"]["path"] == str(made / "sft.jsonl") and len(files["data.sft"]["sha256"]) == 64

    monkeypatch.chdir(other)  # `alignkit evaluate RUN_DIR` from another folder (in this process: quicker)
    assert evaluate_command([str(run)]) == 0  # it was "sft.jsonl: file not found"
    assert json.loads((run / "summary.json").read_text())["stages"]["evaluate"]["status"] == "completed"

    resumed = alignkit("resume", str(run), cwd=other)
    assert resumed.returncode == 0, resumed.stderr[-3000:]
    assert run_directory(resumed) == run
    assert "stage fake already done; skipping" in resumed.stdout + resumed.stderr
    assert f"data.sft={made / 'sft.jsonl'}" in resumed.stderr  # the command it reran
