"""Mid-stage checkpoints that prove they are whole before a rerun trusts them.

A checkpoint ``checkpoints/step-NNNNNNN/`` holds accelerate's state (model, optimizer,
schedule, RNG) and the stage's ``trainer_state.json``. Written into a temporary folder and
renamed, it is whole or absent after a crash, but a disk that fills up, a copy cut short or a
stray ``truncate`` can still damage it afterwards, and loading a damaged one fails deep inside
safetensors or torch with a traceback that names no file. So ``seal`` writes ``manifest.json``
last (every other file's size and sha256), ``verify`` checks a checkpoint against it, and
``newest_good`` resumes from the newest checkpoint that passes: a bad one is moved to
``checkpoints/corrupt/`` (never deleted, never loaded) with a warning naming it. The engine and
the PPO-family loop both save and resume through here.
"""

from __future__ import annotations

import json
import logging
import os
import re
import shutil
from concurrent.futures import ThreadPoolExecutor
from contextlib import contextmanager
from pathlib import Path
from typing import Any, Iterator, Mapping

from alignkit.core.errors import CheckpointError
from alignkit.core.rundir import atomic_write_json, file_sha256

log = logging.getLogger("alignkit")

TRAINER_STATE = "trainer_state.json"  # the stage's own position (step, data cursor, controllers)
MANIFEST = "manifest.json"  # written last: {"files": {relative path: {"size", "sha256"}}}
CORRUPT = "corrupt"  # checkpoints/corrupt/: where bad checkpoints are set aside
_NAME = re.compile(r"step-(\d+)")


class CorruptCheckpoint(CheckpointError):
    """A checkpoint's files do not match its manifest (or it has none); ``path`` is its folder."""

    def __init__(self, path: Path, problem: str) -> None:
        super().__init__(f"checkpoint {path} is damaged: {problem}")
        self.path, self.problem = path, problem


def checkpoint_name(step: int) -> str:
    return f"step-{step:07d}"


def listing(folder: Path) -> list[Path]:
    """The ``step-N`` folders of ``folder``, oldest first (not temporary or set-aside ones)."""
    if not folder.is_dir():
        return []
    found = [p for p in folder.iterdir() if p.is_dir() and _NAME.fullmatch(p.name)]
    return sorted(found, key=lambda p: int(p.name.split("-")[1]))


def _files(folder: Path) -> list[str]:
    """Every file under ``folder`` but the manifest, as sorted POSIX paths relative to it
    (sharded states, FSDP / DeepSpeed, put files in subfolders)."""
    return sorted(p.relative_to(folder).as_posix() for p in folder.rglob("*")
                  if p.is_file() and p.relative_to(folder).as_posix() != MANIFEST)


def _hash_all(folder: Path, names: list[str], sync: bool = False) -> list[str]:
    """sha256 of each file, several at once (hashlib releases the GIL on large reads)."""
    with ThreadPoolExecutor(max_workers=max(1, min(8, len(names), os.cpu_count() or 1))) as pool:
        return list(pool.map(lambda name: file_sha256(folder / name, sync), names))


def seal(folder: Path) -> None:
    """Write ``folder``'s manifest: the last file of a checkpoint, once every other is complete."""
    names = _files(folder)
    digests = _hash_all(folder, names, sync=True)
    files = {name: {"size": (folder / name).stat().st_size, "sha256": digest} for name, digest in zip(names, digests)}
    atomic_write_json(folder / MANIFEST, {"format": 1, "files": files})


def verify(folder: Path) -> None:
    """Raise ``CorruptCheckpoint`` saying what is wrong unless every file matches the manifest."""
    manifest = folder / MANIFEST
    if not manifest.is_file():
        raise CorruptCheckpoint(folder, f"it has no {MANIFEST} (its writing never finished, or an alignkit without manifests wrote it)")
    try:
        files = json.loads(manifest.read_text(encoding="utf-8"))["files"]
        expected = {str(name): (int(entry["size"]), str(entry["sha256"])) for name, entry in files.items()}
    except (OSError, UnicodeDecodeError, ValueError, KeyError, TypeError, AttributeError) as exc:
        raise CorruptCheckpoint(folder, f"{manifest} is unreadable ({type(exc).__name__}: {exc})") from None
    for name, (size, _) in expected.items():
        path = folder / name
        if not path.is_file():
            raise CorruptCheckpoint(folder, f"{path} is missing")
        actual = path.stat().st_size
        if actual != size:
            raise CorruptCheckpoint(folder, f"{path} has {actual} bytes, the manifest says {size} (truncated?)")
    names = list(expected)
    try:
        digests = _hash_all(folder, names)
    except OSError as exc:
        raise CorruptCheckpoint(folder, f"{exc.filename or folder} cannot be read ({exc.strerror or exc})") from None
    for name, digest in zip(names, digests):
        if digest != expected[name][1]:
            raise CorruptCheckpoint(folder, f"{folder / name} does not match its sha256 in the manifest")


def set_aside(path: Path) -> Path:
    """Move a bad checkpoint to ``corrupt/`` beside it (kept for inspection); its new path."""
    target_dir = path.parent / CORRUPT
    target_dir.mkdir(exist_ok=True)
    target, n = target_dir / path.name, 1
    while target.exists():
        target, n = target_dir / f"{path.name}.{n}", n + 1
    os.replace(path, target)
    return target


def newest_good(folder: Path) -> Path | None:
    """The newest checkpoint in ``folder`` that passes ``verify``, or None; each newer one that
    fails is set aside with a warning naming it and what is wrong."""
    for path in reversed(listing(folder)):
        try:
            verify(path)
        except CorruptCheckpoint as exc:
            try:
                where = f"moved it to {set_aside(path)}"
            except OSError as move_error:
                where = f"could not move it aside ({move_error}); it is skipped"
            log.warning("%s; %s and resume from an earlier checkpoint if there is one", exc, where)
            continue
        return path
    return None


def resume_point(folder: Path) -> Path | None:
    """``newest_good`` decided once by the main process (which alone moves folders) and
    shared with every process, so all resume from the same checkpoint."""
    from alignkit.core import distributed

    return distributed.run_on_main(lambda: newest_good(folder))


@contextmanager
def loading(path: Path) -> Iterator[None]:
    """Turn any failure to load checkpoint ``path`` into a ``CheckpointError`` naming it.

    Reached only by a checkpoint whose files match their manifest, so the cause is usually
    different settings than those it was written with.
    """
    try:
        yield
    except CheckpointError:
        raise
    except Exception as exc:
        where = f" ({exc.filename})" if isinstance(exc, OSError) and exc.filename else ""
        raise CheckpointError(
            f"cannot resume from checkpoint {path}{where}: {type(exc).__name__}: {exc}. Its files match their "
            f"manifest, so it was probably written with other settings (model, trainer.lora, optimizer, number "
            f"of processes): rerun with those, or move {path} out of {path.parent} to resume from an earlier "
            f"checkpoint or restart the stage") from exc


def read_state(path: Path) -> dict[str, Any]:
    """The ``trainer_state.json`` of checkpoint ``path`` (use inside ``loading``)."""
    return json.loads((path / TRAINER_STATE).read_text(encoding="utf-8"))


def save(acc: Any, folder: Path, step: int, trainer_state: Mapping[str, Any], keep: int) -> Path:
    """accelerate's state plus ``trainer_state.json`` and, last, the manifest, into a temporary
    folder renamed into place: a checkpoint is whole or absent. Keeps the newest ``keep``.

    Every process saves its part (RNG state; shards under FSDP / DeepSpeed) into the same
    temporary folder; the main process seals and renames it once all have finished.
    """
    final = folder / checkpoint_name(step)
    tmp = folder / f".tmp-{final.name}"
    if acc.is_main_process:
        folder.mkdir(parents=True, exist_ok=True)
        if tmp.exists():
            shutil.rmtree(tmp)
    acc.wait_for_everyone()
    acc.save_state(str(tmp))
    acc.wait_for_everyone()
    if acc.is_main_process:
        atomic_write_json(tmp / TRAINER_STATE, dict(trainer_state))
        seal(tmp)
        if final.exists():
            shutil.rmtree(final)
        os.replace(tmp, final)
        for old in listing(folder)[: -max(1, keep)]:
            shutil.rmtree(old, ignore_errors=True)
    acc.wait_for_everyone()
    return final
