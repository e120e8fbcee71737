"""Run directories tell the truth about themselves: the default directory is named after the
command (so rerunning it resumes), a killed run reads as interrupted, data files are recorded by
absolute path and sha256, ``alignkit runs`` lists runs with their true status, and
``alignkit resume`` rebuilds a run's command."""

import json
import logging
import os
import socket
import subprocess
import sys
import time

import pytest
import yaml

from alignkit.core import rundir
from alignkit.core.rundir import RunDir, run_name, true_status
from alignkit.core.runs import resume_overrides, runs_command

EMPTY_SHA256 = "e3b0c44298fc1c149afbf4c8996fb92427ae41e4649b934ca495991b7852b855"  # sha256 of b""
ABC_SHA256 = "ba7816bf8f01cfea414140de5dae2223b00361a396177a9cb410ff61f20015ad"  # sha256 of b"abc" (FIPS 180-2)


def dead_pid() -> int:
    """The pid of a process that has exited (and been reaped)."""
    proc = subprocess.Popen([sys.executable, "-c", "pass"])
    proc.wait()
    return proc.pid


def write_summary(folder, **fields):
    folder.mkdir(parents=True, exist_ok=True)
    summary = {"pipeline": "sft", "status": "running", "stages": {}, **fields}
    (folder / "summary.json").write_text(json.dumps(summary))
    return summary


# --- the default run directory's name ---------------------------------------------------------

def test_run_name_without_overrides_hashes_the_empty_command():
    # no overrides: sha256("") starts e3b0c442
    assert run_name("preference", "smollm2-135m-instruct", []) == f"preference-smollm2-135m-instruct-{EMPTY_SHA256[:8]}"


def test_run_name_ignores_order_and_launcher_settings_but_not_other_overrides():
    a = run_name("dpo", "tiny-random", ["pipeline=dpo", "model=tiny-random", "optimizer.beta=0.1"])
    assert a == run_name("dpo", "tiny-random", ["optimizer.beta=0.1", "model=tiny-random", "pipeline=dpo"])
    assert a == run_name("dpo", "tiny-random", ["pipeline=dpo", "launcher.num_processes=2", "model=tiny-random",
                                                "optimizer.beta=0.1"])
    assert a != run_name("dpo", "tiny-random", ["pipeline=dpo", "model=tiny-random", "optimizer.beta=0.5"])
    assert a.startswith("dpo-tiny-random-") and len(a.rsplit("-", 1)[1]) == 8


def test_run_name_shows_a_hub_model_by_its_last_part_and_a_swept_pipeline_by_its_values():
    name = run_name("preference", "HuggingFaceTB/SmolLM2-360M-Instruct", ["pipeline=sft,dpo", "model=path"])
    assert name.startswith("sft+dpo-SmolLM2-360M-Instruct-")


def test_the_configured_run_directory_is_the_same_for_the_same_command_and_differs_for_another():
    from hydra import compose, initialize_config_module

    from alignkit.core.config_defaults import register_config_defaults
    from alignkit.core.registry import Registry

    rundir.register_resolvers()  # as the CLI does before Hydra composes
    register_config_defaults(Registry())

    def run_dir(*overrides):
        with initialize_config_module(config_module="alignkit.conf", version_base="1.3"):
            return str(compose("config", overrides=list(overrides), return_hydra_config=True).hydra.run.dir)

    first = run_dir("pipeline=sft", "model=tiny-random", "trainer.max_steps=3")
    time.sleep(1.1)  # a time-stamped name would change here
    assert run_dir("model=tiny-random", "trainer.max_steps=3", "pipeline=sft") == first
    assert first.startswith("runs/sft-tiny-random-")
    assert run_dir("pipeline=sft", "model=tiny-random", "trainer.max_steps=4") != first


# --- true status --------------------------------------------------------------------------------

def test_a_running_summary_whose_process_is_gone_is_interrupted():
    here = socket.gethostname()
    assert true_status({"status": "running", "owner": {"pid": dead_pid(), "host": here}}) == "interrupted"
    assert true_status({"status": "running", "owner": {"pid": os.getpid(), "host": here}}) == "running"
    # the end a run wrote itself stands
    assert true_status({"status": "completed", "owner": {"pid": dead_pid(), "host": here}}) == "completed"
    # written by an older alignkit: nothing to check, so it is taken at its word
    assert true_status({"status": "running"}) == "running"


@pytest.mark.skipif(not os.path.exists("/proc/self/stat"), reason="process start times come from /proc")
def test_a_reused_pid_does_not_pass_for_the_run():
    owner = {"pid": os.getpid(), "host": socket.gethostname(), "pid_start": rundir._process_start(os.getpid()) - 1}
    assert true_status({"status": "running", "owner": owner}) == "interrupted"


def test_a_run_on_another_host_is_interrupted_when_its_heartbeat_is_stale():
    owner = {"pid": 1, "host": "some-other-machine"}
    now = 1_000_000.0
    fresh = {"status": "running", "owner": owner, "heartbeat": now - 60}
    stale = {"status": "running", "owner": owner, "heartbeat": now - rundir.STALE_AFTER - 1}
    assert true_status(fresh, now=now) == "running"
    assert true_status(stale, now=now) == "interrupted"


def test_a_run_dir_records_its_owner_and_says_when_it_was_interrupted(tmp_path, caplog):
    rd = RunDir(tmp_path, pipeline="sft", writer=True)
    rd.set_stage("sft", "running")
    summary = json.loads((tmp_path / "summary.json").read_text())
    assert summary["owner"]["pid"] == os.getpid() and summary["owner"]["host"] == socket.gethostname()
    assert RunDir(tmp_path).true_status() == "running"

    summary["owner"]["pid"] = dead_pid()  # as a kill -9 would leave it
    (tmp_path / "summary.json").write_text(json.dumps(summary))
    with caplog.at_level(logging.WARNING, logger="alignkit"):
        reader = RunDir(tmp_path, writer=True)
    assert reader.true_status() == "interrupted"
    assert "the run was interrupted" in caplog.text and "during stage 'sft'" in caplog.text


def test_metric_writes_refresh_the_heartbeat_at_most_every_few_seconds(tmp_path, monkeypatch):
    clock = [1000.0]
    monkeypatch.setattr(rundir.time, "time", lambda: clock[0])
    rd = RunDir(tmp_path, pipeline="sft", writer=True)
    rd.write_summary()

    def beat():
        return json.loads((tmp_path / "summary.json").read_text())["heartbeat"]

    clock[0] = 1000.0 + rundir.HEARTBEAT_EVERY - 1  # too soon: the summary is not rewritten
    rd.log_metrics("sft", 1, {"loss": 1.0})
    assert beat() == 1000.0
    clock[0] = 1000.0 + rundir.HEARTBEAT_EVERY
    rd.log_metrics("sft", 2, {"loss": 1.0})
    assert beat() == 1000.0 + rundir.HEARTBEAT_EVERY


# --- data files ---------------------------------------------------------------------------------

def test_data_files_are_recorded_absolute_with_their_sha256(tmp_path, monkeypatch, caplog):
    from omegaconf import OmegaConf

    monkeypatch.chdir(tmp_path)
    (tmp_path / "train.jsonl").write_bytes(b"abc")
    (tmp_path / "demo").write_text("a file named like the data source: not a path setting")
    data = OmegaConf.create({"name": "demo", "sft": "train.jsonl", "preferences": "org/hub-dataset",
                             "sources": {"mine": {"data": {"name": "files", "sft": "train.jsonl"}}}})
    rd = RunDir(tmp_path / "run", pipeline="sft", writer=True)
    rd.record_data_files(data)
    rd.write_summary()
    files = json.loads((tmp_path / "run" / "summary.json").read_text())["data_files"]
    record = {"path": str(tmp_path / "train.jsonl"), "sha256": ABC_SHA256, "bytes": 3}
    assert set(files) == {"data.sft", "data.sources.mine.data.sft"}
    assert {k: files["data.sft"][k] for k in record} == record

    (tmp_path / "train.jsonl").write_bytes(b"abcd")  # the file changed before a rerun
    with caplog.at_level(logging.WARNING, logger="alignkit"):
        RunDir(tmp_path / "run", writer=True).record_data_files(data)
    assert "train.jsonl" in caplog.text and "changed since this run directory recorded it" in caplog.text


# --- alignkit runs / alignkit resume --------------------------------------------------------------

def test_runs_lists_every_run_with_its_true_status(tmp_path, capsys):
    from alignkit.core.cli import main

    here = socket.gethostname()
    write_summary(tmp_path / "done", status="completed", heartbeat=1.0,
                  stages={"sft": {"status": "completed"}, "evaluate": {"status": "completed"}})
    write_summary(tmp_path / "killed", heartbeat=2.0, owner={"pid": dead_pid(), "host": here},
                  stages={"sft": {"status": "completed"}, "dpo": {"status": "running"}})
    write_summary(tmp_path / "multirun" / "x" / "0", status="failed", error="bad.jsonl:2: field 'content'",
                  heartbeat=3.0, stages={"sft": {"status": "failed"}})
    (tmp_path / "killed" / "01-sft").mkdir()
    (tmp_path / "killed" / "01-sft" / "summary.json").write_text("{}")  # inside a run: not a run of its own

    with pytest.raises(SystemExit) as exit_:
        main(["runs", str(tmp_path)])
    assert exit_.value.code == 0
    lines = capsys.readouterr().out.splitlines()
    assert lines[0].split()[:3] == ["status", "pipeline", "stages"]
    rows = [line.split() for line in lines[1:]]  # oldest update first
    assert [r[0] for r in rows] == ["completed", "interrupted", "failed"]
    assert rows[0][2] == "sft,evaluate" and rows[0][5] == str(tmp_path / "done")
    assert rows[1][2] == "sft" and rows[1][5] == str(tmp_path / "killed") and "dpo" in lines[2]
    assert "is gone" in lines[2]
    assert rows[2][5] == str(tmp_path / "multirun" / "x" / "0") and "bad.jsonl:2" in lines[3]


def test_runs_on_a_missing_folder_says_what_to_give(tmp_path, capsys):
    assert runs_command([str(tmp_path / "nope")]) == 2
    assert "is not a folder" in capsys.readouterr().err


def test_resume_reruns_the_saved_overrides_in_the_run_directory_with_absolute_data_paths(tmp_path):
    run = tmp_path / "run"
    (run / ".hydra").mkdir(parents=True)
    (run / ".hydra" / "overrides.yaml").write_text(yaml.safe_dump(
        ["pipeline=sft", "data=files", "data.sft=train.jsonl", "trainer.max_steps=3"]))
    write_summary(run, data_files={"data.sft": {"path": "/data/train.jsonl", "sha256": ABC_SHA256}})
    assert resume_overrides([str(run), "trainer.max_steps=5"]) == [
        "pipeline=sft", "data=files", "data.sft=/data/train.jsonl", "trainer.max_steps=3", "trainer.max_steps=5",
        f"hydra.run.dir={run}"]
    with pytest.raises(SystemExit, match="not an alignkit run directory"):
        resume_overrides([str(tmp_path)])
