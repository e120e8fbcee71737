"""A Hydra multirun (`alignkit -m`) goes on past a failed job, records it, names the sweep folder
and exits non-zero at the end. The jobs run a one-step stand-in optimizer (the checked-in fake
plugin), so the sweep costs little more than starting the command."""

import json
import os
import subprocess
import sys
from pathlib import Path

FAKE_PLUGIN = Path(__file__).parents[1] / "fixtures" / "fake_plugin"
# one stage of the fake plugin's optimizer: no model is trained
FAKE_PIPELINE = ["model=tiny-random", "logger=none", "optimizer=fake_opt",
                 "pipeline.stages=[{name:fake,optimizer:fake_opt}]"]


def alignkit(*args, cwd=None):
    exe = Path(sys.executable).parent / "alignkit"
    env = dict(os.environ, HF_HUB_OFFLINE="1", WANDB_MODE="disabled", OMP_NUM_THREADS="1",
               PYTHONPATH=os.pathsep.join([str(FAKE_PLUGIN), os.environ.get("PYTHONPATH", "")]))
    return subprocess.run([str(exe), *args], capture_output=True, text=True, env=env, cwd=cwd, timeout=300)


def test_a_failed_job_does_not_end_the_sweep(tmp_path):
    sweep = tmp_path / "sweep"
    # job 0: a value the optimizer's schema refuses (a float); job 1 runs
    proc = alignkit("-m", *FAKE_PIPELINE, "optimizer.scale=bogus,3", f"hydra.sweep.dir={sweep}")
    assert proc.returncode == 2, proc.stderr[-3000:]

    failed = json.loads((sweep / "0" / "summary.json").read_text())
    assert failed["status"] == "failed" and "bogus" in failed["error"]
    done = json.loads((sweep / "1" / "summary.json").read_text())
    assert done["status"] == "completed" and done["stages"]["fake"]["metrics"]["scale"] == 3.0

    record = json.loads((sweep / "sweep.json").read_text())
    assert record["status"] == "failed"
    assert [(j["num"], j["dir"], j["status"]) for j in record["jobs"]] == [(0, "0", "failed"), (1, "1", "completed")]
    assert "optimizer.scale=bogus" in record["jobs"][0]["overrides"] and "bogus" in record["jobs"][0]["error"]

    assert f"alignkit: sweep directory: {sweep} (2 jobs: 1 failed, 1 completed)" in proc.stdout
    assert "job 0 (optimizer.scale=bogus) failed" in proc.stdout
    assert f"report with: alignkit report {sweep}" in proc.stdout
    assert "Traceback" not in proc.stderr
