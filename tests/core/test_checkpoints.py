"""Checkpoints prove they are whole: a damaged newest checkpoint is set aside, named, and the
run resumes from the newest good one (issue #22); one that still fails to load is an error
naming it, not a safetensors traceback."""

from __future__ import annotations

import json
import logging
import shutil
from pathlib import Path

import pytest
import torch
from safetensors.torch import load_file

import alignkit.plugins.data.demo as demo_pkg
from alignkit.core import checkpoints
from alignkit.core.checkpoints import CorruptCheckpoint
from alignkit.core.errors import CheckpointError
from alignkit.core.pipeline import run_pipeline
from alignkit.core.testing import FAST_OVERRIDES, StopAt, compose, registry_with

DEMO = Path(demo_pkg.__file__).parent
ABC_SHA256 = "ba7816bf8f01cfea414140de5dae2223b00361a396177a9cb410ff61f20015ad"  # FIPS 180-2's sha256("abc")


# ------------------------------------------------------------------------------------------
# verify / newest_good on hand-made folders
# ------------------------------------------------------------------------------------------

def fake_checkpoint(folder: Path, step: int, sealed: bool = True) -> Path:
    path = folder / checkpoints.checkpoint_name(step)
    (path / "shard").mkdir(parents=True)
    (path / "model.safetensors").write_bytes(b"abc")
    (path / "shard" / "part.bin").write_bytes(bytes(range(10)))
    (path / checkpoints.TRAINER_STATE).write_text(json.dumps({"step": step}))
    if sealed:
        checkpoints.seal(path)
    return path


def test_the_manifest_lists_every_file_with_its_size_and_sha256(tmp_path):
    path = fake_checkpoint(tmp_path, 3)
    files = json.loads((path / checkpoints.MANIFEST).read_text())["files"]
    assert sorted(files) == ["model.safetensors", "shard/part.bin", "trainer_state.json"]
    assert files["model.safetensors"] == {"size": 3, "sha256": ABC_SHA256}
    assert files["shard/part.bin"]["size"] == 10
    checkpoints.verify(path)  # intact: no error


@pytest.mark.parametrize(("damage", "problem"), [
    (lambda p: (p / checkpoints.MANIFEST).unlink(), "has no manifest.json"),
    (lambda p: (p / "model.safetensors").write_bytes(b"ab"), "model.safetensors has 2 bytes, the manifest says 3"),
    (lambda p: (p / "model.safetensors").write_bytes(b"abd"), "model.safetensors does not match its sha256"),
    (lambda p: (p / "shard" / "part.bin").unlink(), "part.bin is missing"),
    (lambda p: (p / checkpoints.MANIFEST).write_text('{"files": '), "manifest.json is unreadable"),
], ids=["no-manifest", "truncated", "changed", "missing", "bad-manifest"])
def test_verify_says_what_is_wrong_and_where(tmp_path, damage, problem):
    path = fake_checkpoint(tmp_path, 3)
    damage(path)
    with pytest.raises(CorruptCheckpoint, match=problem) as caught:
        checkpoints.verify(path)
    assert caught.value.path == path and str(path) in str(caught.value)


def test_newest_good_sets_damaged_checkpoints_aside_and_returns_the_newest_intact(tmp_path, caplog):
    good = fake_checkpoint(tmp_path, 9)
    older = fake_checkpoint(tmp_path, 2)
    flipped = fake_checkpoint(tmp_path, 10)  # numerically after step 9
    (flipped / "model.safetensors").write_bytes(b"xbc")
    unsealed = fake_checkpoint(tmp_path, 11, sealed=False)  # killed between save_state and the manifest
    (tmp_path / ".tmp-step-0000012").mkdir()  # a write in progress: never a candidate
    with caplog.at_level(logging.WARNING, logger="alignkit"):
        assert checkpoints.newest_good(tmp_path) == good
    assert [p.name for p in checkpoints.listing(tmp_path)] == ["step-0000002", "step-0000009"]
    assert older.is_dir()
    corrupt = tmp_path / checkpoints.CORRUPT
    assert sorted(p.name for p in corrupt.iterdir()) == ["step-0000010", "step-0000011"]
    warnings = [r.getMessage() for r in caplog.records if r.levelno == logging.WARNING]
    assert len(warnings) == 2
    assert str(unsealed) in warnings[0] and "no manifest.json" in warnings[0]
    assert str(flipped) in warnings[1] and "sha256" in warnings[1] and str(corrupt / "step-0000010") in warnings[1]
    # a second damaged step-0000010 does not overwrite the first one set aside
    again = fake_checkpoint(tmp_path, 10, sealed=False)
    assert checkpoints.newest_good(tmp_path) == good
    assert not again.exists() and (corrupt / "step-0000010.1").is_dir()


def test_no_checkpoint_at_all(tmp_path):
    assert checkpoints.newest_good(tmp_path / "absent") is None
    fake_checkpoint(tmp_path, 1, sealed=False)
    assert checkpoints.newest_good(tmp_path) is None


def test_loading_names_the_checkpoint_when_an_intact_one_still_fails(tmp_path):
    path = fake_checkpoint(tmp_path, 4)
    with pytest.raises(CheckpointError, match=rf"cannot resume from checkpoint {path}: KeyError: 'cursor'"):
        with checkpoints.loading(path):
            checkpoints.read_state(path)["cursor"]


class FakeAccelerator:
    """One process; ``save_state`` writes what accelerate writes for a plain model."""

    is_main_process = True

    def wait_for_everyone(self):
        pass

    def save_state(self, folder):
        Path(folder).mkdir(parents=True, exist_ok=True)
        (Path(folder) / "model.safetensors").write_bytes(b"abc")
        (Path(folder) / "random_states_0.pkl").write_bytes(b"rng")


def test_save_seals_renames_and_keeps_the_newest(tmp_path):
    for step in (1, 2, 3):
        final = checkpoints.save(FakeAccelerator(), tmp_path, step, {"step": step}, keep=2)
    assert [p.name for p in checkpoints.listing(tmp_path)] == ["step-0000002", "step-0000003"]
    assert final == tmp_path / "step-0000003" and not list(tmp_path.glob(".tmp-*"))
    files = json.loads((final / checkpoints.MANIFEST).read_text())["files"]
    assert sorted(files) == ["model.safetensors", "random_states_0.pkl", "trainer_state.json"]
    checkpoints.verify(final)
    assert checkpoints.read_state(final) == {"step": 3}


# ------------------------------------------------------------------------------------------
# The issue, end to end: DPO on tiny-random killed after step 4's checkpoint
# ------------------------------------------------------------------------------------------

DPO = (*FAST_OVERRIDES, "pipeline=dpo", "data=files", f"data.preferences={DEMO / 'preferences.jsonl'}",
       "trainer.max_steps=6", "trainer.checkpoint_every=2", "optimizer.max_eval_pairs=8", "optimizer.kl_prompts=0")


def run_dpo(registry, run_dir, cache):
    cfg = compose([*DPO, f"optimizer.cache_dir={cache}"], registry)
    cfg.pipeline.stages = [s for s in cfg.pipeline.stages if s.get("stage") != "evaluate"]
    return run_pipeline(cfg, run_dir, registry)


@pytest.fixture(scope="module")
def dpo_runs(tmp_path_factory):
    """An uninterrupted run, and one killed at step 5 (checkpoints at steps 2 and 4)."""
    base = tmp_path_factory.mktemp("dpo")
    registry = registry_with()
    straight = run_dpo(registry, base / "straight", base / "cache")
    killer = StopAt("dpo", 5)
    registry.pm.register(killer)
    with pytest.raises(StopAt.Killed):
        run_dpo(registry, base / "killed", base / "cache")
    registry.pm.unregister(killer)
    return registry, base, straight.path, base / "killed"


def killed_copy(dpo_runs, tmp_path):
    _, _, _, killed = dpo_runs
    run_dir = tmp_path / "run"
    shutil.copytree(killed, run_dir)
    folder = run_dir / "02-dpo" / "checkpoints"
    assert [p.name for p in checkpoints.listing(folder)] == ["step-0000002", "step-0000004"]
    return run_dir, folder


def truncate(path: Path) -> None:
    """As ``truncate -s`` to half the size (the issue cut model.safetensors at 6555376 bytes)."""
    with open(path, "r+b") as fh:
        fh.truncate(path.stat().st_size // 2)


@pytest.mark.parametrize("damaged", ["model.safetensors", "optimizer.bin"])
@pytest.mark.slow  # trains, damages a checkpoint and resumes (over 3 s)
def test_a_truncated_newest_checkpoint_is_set_aside_and_the_run_resumes_from_the_previous(
        dpo_runs, tmp_path, caplog, capsys, damaged):
    registry, base, straight, _ = dpo_runs
    run_dir, folder = killed_copy(dpo_runs, tmp_path)
    truncate(folder / "step-0000004" / damaged)
    with caplog.at_level(logging.WARNING, logger="alignkit"):
        rd = run_dpo(registry, run_dir, base / "cache")
    assert json.loads((rd.path / "summary.json").read_text())["status"] == "completed"
    assert "resuming stage 'dpo' at step 2 from " in capsys.readouterr().err
    warning = next(r.getMessage() for r in caplog.records if "is damaged" in r.getMessage())
    assert f"{folder / 'step-0000004' / damaged} has " in warning and "the manifest says" in warning
    assert (folder / "corrupt" / "step-0000004" / damaged).is_file()
    # resumed from step 2, it still reaches the weights of the uninterrupted run
    a = load_file(straight / "02-dpo" / "model" / "model.safetensors")
    b = load_file(rd.path / "02-dpo" / "model" / "model.safetensors")
    for name in a:
        assert torch.allclose(a[name], b[name], atol=1e-6), name


def test_an_intact_checkpoint_that_still_fails_to_load_is_an_error_naming_it(dpo_runs, tmp_path):
    registry, base, _, _ = dpo_runs
    run_dir, folder = killed_copy(dpo_runs, tmp_path)
    newest = folder / "step-0000004"
    truncate(newest / "model.safetensors")
    checkpoints.seal(newest)  # the manifest vouches for the damaged file: only loading can tell
    with pytest.raises(CheckpointError, match=rf"cannot resume from checkpoint {newest}: SafetensorError"):
        run_dpo(registry, run_dir, base / "cache")
    summary = json.loads((run_dir / "summary.json").read_text())
    assert summary["status"] == "failed" and str(newest) in summary["error"]


# ------------------------------------------------------------------------------------------
# The PPO-family loop (PPO, RLOO / GRPO, online DPO) resumes through the same code
# ------------------------------------------------------------------------------------------

def newlines(prompt, response):
    return min(response.count("\n"), 6) / 6


def run_grpo(registry, run_dir):
    cfg = compose([*FAST_OVERRIDES, "pipeline=grpo", "data=files", f"data.prompts={DEMO / 'prompts.jsonl'}",
                   "preference_model=rule", f"preference_model.fn={__name__}:newlines", "optimizer.eval_prompts=0",
                   "optimizer.sample_every=0", "trainer.max_steps=4", "trainer.checkpoint_every=1",
                   "trainer.batch_size=4", "optimizer.samples_per_prompt=2", "optimizer.max_new_tokens=4",
                   "optimizer.trainer.learning_rate=3e-4"], registry)
    cfg.pipeline.stages = [s for s in cfg.pipeline.stages if s.get("stage") != "evaluate"]
    return run_pipeline(cfg, run_dir, registry)


@pytest.mark.slow  # trains, damages a checkpoint and resumes (over 3 s)
def test_grpo_sets_a_damaged_checkpoint_aside_and_resumes_from_the_previous(tmp_path, caplog, capsys):
    registry = registry_with()
    straight = run_grpo(registry, tmp_path / "straight")
    killer = StopAt("grpo", 3)  # logged before step 3's checkpoint: steps 1 and 2 are on disk
    registry.pm.register(killer)
    with pytest.raises(StopAt.Killed):
        run_grpo(registry, tmp_path / "run")
    registry.pm.unregister(killer)
    folder = tmp_path / "run" / "02-grpo" / "checkpoints"
    truncate(folder / "step-0000002" / "model.safetensors")
    capsys.readouterr()
    with caplog.at_level(logging.WARNING, logger="alignkit"):
        rd = run_grpo(registry, tmp_path / "run")
    assert "resuming stage 'grpo' at step 1 from " in capsys.readouterr().err
    assert any(str(folder / "step-0000002" / "model.safetensors") in r.getMessage() for r in caplog.records)
    assert (folder / "corrupt" / "step-0000002").is_dir()
    a = load_file(straight.path / "02-grpo" / "model" / "model.safetensors")
    b = load_file(rd.path / "02-grpo" / "model" / "model.safetensors")
    for name in a:
        assert torch.allclose(a[name], b[name], atol=1e-6), name
