"""End to end on the real embedded model (SmolLM2-135M-Instruct): SFT lowers held-out loss."""

import json

import pytest

from alignkit.core.testing import EVALUATE_FAST

pytestmark = pytest.mark.slow


def test_sft_on_smollm2_lowers_the_held_out_loss(run_alignkit, tmp_path):
    rd = run_alignkit("pipeline=sft", "model=smollm2-135m-instruct", "logger=none", "trainer.max_steps=6",
                      "trainer.batch_size=4", "trainer.max_length=128", "trainer.progress=false",
                      "trainer.checkpoint_every=0", "optimizer.max_eval_examples=12", *EVALUATE_FAST, fast=False)
    metrics = json.loads((rd.path / "summary.json").read_text())["stages"]["sft"]["metrics"]
    assert metrics["eval/loss"] < metrics["eval/loss_before"] - 0.05, metrics
