"""Accelerate's checkpoint chatter goes to the run's log file, not to the console."""

import io
import logging
import os
import subprocess
import sys
from pathlib import Path

import pytest

from alignkit.core.log_routing import keep_checkpoint_logs_off_console


def test_console_handlers_drop_accelerates_checkpoint_lines_and_files_keep_them(tmp_path):
    root = logging.getLogger("test-log-routing")
    root.setLevel(logging.DEBUG)
    root.propagate = False
    console_stream = io.StringIO()
    console = logging.StreamHandler(console_stream)
    file = logging.FileHandler(tmp_path / "job.log")
    root.handlers = [console, file]
    try:
        keep_checkpoint_logs_off_console(root)
        keep_checkpoint_logs_off_console(root)  # twice adds one filter
        assert len(console.filters) == 1 and file.filters == []
        records = [
            ("accelerate.accelerator", logging.INFO, "Saving current state to /run/ckpt"),
            ("accelerate.checkpointing", logging.INFO, "Model weights saved in /run/ckpt/model.safetensors"),
            ("accelerate.utils.other", logging.WARNING, "Removed shared tensor {'lm_head.weight'} while saving."),
            ("accelerate.accelerator", logging.WARNING, "a real accelerate warning"),
            ("accelerate.utils.other", logging.WARNING, "another accelerate warning"),
            ("alignkit", logging.INFO, "alignkit: sft: step 2"),
        ]
        for name, level, message in records:
            record = logging.LogRecord(name, level, __file__, 1, message, None, None)
            root.handle(record)
        file.flush()
    finally:
        root.handlers = []
        file.close()
    assert console_stream.getvalue().splitlines() == ["a real accelerate warning", "another accelerate warning",
                                                      "alignkit: sft: step 2"]
    assert file.baseFilename and (tmp_path / "job.log").read_text().splitlines() == [m for _, _, m in records]


@pytest.mark.slow  # a checkpointing run of the alignkit command
def test_a_checkpointing_run_keeps_the_save_lines_out_of_the_console(tmp_path):
    run = tmp_path / "run"
    exe = Path(sys.executable).parent / "alignkit"
    proc = subprocess.run(
        [str(exe), "pipeline=sft", "pipeline.stages=[{name:sft,optimizer:sft,requires:sft}]", "model=tiny-random",
         "logger=none", "trainer.batch_size=2", "trainer.max_length=64", "trainer.progress=false",
         "trainer.max_steps=2", "trainer.checkpoint_every=1", "optimizer.max_eval_examples=2",
         f"hydra.run.dir={run}"],
        capture_output=True, text=True, env=dict(os.environ, HF_HUB_OFFLINE="1", WANDB_MODE="disabled"))
    assert proc.returncode == 0, proc.stderr[-3000:]
    logs = list(run.glob("*.log"))
    assert logs, sorted(p.name for p in run.iterdir())
    assert "Saving current state" in "".join(p.read_text() for p in logs)  # the file keeps them
    console = proc.stdout + proc.stderr
    assert "Saving current state" not in console and "Model weights saved" not in console
    assert f"run directory: {run}" in proc.stdout
