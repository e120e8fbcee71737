"""Run directory writes are atomic and the summary follows the contract."""

import json
import os

from alignkit.core.rundir import RunDir, atomic_write_text
from alignkit.core.types import StageResult


def test_atomic_write_leaves_no_temporary_files(tmp_path):
    atomic_write_text(tmp_path / "a.json", "{}")
    atomic_write_text(tmp_path / "a.json", '{"x": 1}')
    assert [p.name for p in tmp_path.iterdir()] == ["a.json"]
    assert json.loads((tmp_path / "a.json").read_text()) == {"x": 1}


def test_summary_and_done_markers(tmp_path):
    rd = RunDir(tmp_path, pipeline="sft")
    rd.set_stage("sft", "running")
    rd.log_metrics("sft", 1, {"loss": 2.0, "bad": float("nan")})
    rd.mark_done(1, "sft", StageResult({"eval/loss": 1.5}, {"model": "01-sft/model"}))
    rd.finish("completed")
    summary = json.loads((tmp_path / "summary.json").read_text())
    assert summary.pop("owner")["pid"] == os.getpid()  # who ran it, and when it last wrote
    assert summary.pop("heartbeat") > 0
    assert summary == {"pipeline": "sft", "status": "completed", "stages": {
        "sft": {"status": "completed", "metrics": {"eval/loss": 1.5}, "artifacts": {"model": "01-sft/model"}}}}
    record = json.loads((tmp_path / "metrics.jsonl").read_text().splitlines()[0])
    assert record["stage"] == "sft" and record["step"] == 1 and record["loss"] == 2.0 and record["bad"] == "nan"
    assert RunDir(tmp_path).is_done(1, "sft")
    assert RunDir(tmp_path).stage_result("sft").artifacts == {"model": "01-sft/model"}
