"""Atomic cache folders: a converted model appears whole or not at all.

A writer fills a temporary folder next to the destination (same file system) and renames
it into place. A per-destination lock file serialises writers, so a second process waits
for the first and then finds the finished folder; temporary folders left by a killed
writer are removed by the next one that takes the lock.
"""

from __future__ import annotations

import contextlib
import os
import shutil
import sys
import tempfile
import time
from pathlib import Path
from typing import Iterator

try:  # POSIX only; elsewhere writers are not serialised (still atomic)
    import fcntl
except ImportError:  # pragma: no cover - Windows
    fcntl = None  # type: ignore[assignment]

TMP_MARK = ".tmp-"


def tmp_prefix(dest: Path) -> str:
    """Name prefix of the temporary folders that writers of ``dest`` create."""
    return f".{dest.name}{TMP_MARK}"


def leftover_tmp_dirs(dest: Path) -> list[Path]:
    """Temporary folders of ``dest`` that exist now (a killed or a running writer)."""
    if not dest.parent.is_dir():
        return []
    return sorted(p for p in dest.parent.iterdir() if p.name.startswith(tmp_prefix(dest)))


@contextlib.contextmanager
def dir_lock(dest: Path) -> Iterator[None]:
    """Hold an exclusive lock on ``dest`` (a ``.<name>.lock`` file beside it)."""
    dest.parent.mkdir(parents=True, exist_ok=True)
    if fcntl is None:  # pragma: no cover
        yield
        return
    lock_path = dest.parent / f".{dest.name}.lock"
    with open(lock_path, "a+") as handle:
        try:
            fcntl.flock(handle.fileno(), fcntl.LOCK_EX | fcntl.LOCK_NB)
        except OSError:
            print(f"alignkit: waiting for another process that is writing {dest} ...",
                  file=sys.stderr, flush=True)
            fcntl.flock(handle.fileno(), fcntl.LOCK_EX)
        try:
            yield
        finally:
            fcntl.flock(handle.fileno(), fcntl.LOCK_UN)


def remove_leftovers(dest: Path) -> None:
    """Delete temporary folders of ``dest``. Call only while holding ``dir_lock(dest)``."""
    if fcntl is None:  # pragma: no cover - without a lock a live writer may own them
        return
    for path in leftover_tmp_dirs(dest):
        shutil.rmtree(path, ignore_errors=True)


def _normal_permissions(folder: Path) -> None:
    """mkdtemp makes 0700 folders (and some writers 0600 files): apply the umask instead."""
    mask = os.umask(0)
    os.umask(mask)
    os.chmod(folder, 0o777 & ~mask)
    for path in folder.rglob("*"):
        os.chmod(path, (0o777 if path.is_dir() else 0o666) & ~mask)


@contextlib.contextmanager
def atomic_dir(dest: Path) -> Iterator[Path]:
    """Yield an empty temporary folder; on success it is renamed to ``dest``.

    On an exception the temporary folder is deleted and ``dest`` is left untouched. If
    ``dest`` already exists (an incomplete folder someone copied by hand) it is replaced.
    """
    dest.parent.mkdir(parents=True, exist_ok=True)
    tmp = Path(tempfile.mkdtemp(prefix=f"{tmp_prefix(dest)}{os.getpid()}-", dir=dest.parent))
    try:
        yield tmp
        _normal_permissions(tmp)
        if dest.exists():
            aside = dest.parent / f"{tmp_prefix(dest)}old-{os.getpid()}-{time.time_ns()}"
            os.rename(dest, aside)
            shutil.rmtree(aside, ignore_errors=True)
        os.rename(tmp, dest)
    finally:
        if tmp.exists():
            shutil.rmtree(tmp, ignore_errors=True)
