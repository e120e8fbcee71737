"""Judgements kept on disk, keyed by a hash of (prompt, responses, provider config).

A resumed run or a sweep that asks the same judge about the same pair reads the answer
instead of paying for it again. SQLite (stdlib) commits each judgement as it arrives, so a
judge that fails half way (a server timing out) loses nothing already answered, and two
runs can share one cache file.

A feedback provider opts in with two lines (built-in and third-party alike)::

    @dataclass
    class MyJudgeConfig(JudgementCacheOptions):   # adds `cache` and `cache_dir` to its options
        ...

    def my_judge_factory(cfg, ctx):
        return cached(MyJudge(cfg), cfg)           # the provider itself when cache=false
"""

from __future__ import annotations

import hashlib
import json
import logging
import os
import sqlite3
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Callable, Mapping, Optional, Sequence

from alignkit.core import Judgement, check_batch
from alignkit.plugins.feedback.judgement import from_dict, to_dict

log = logging.getLogger("alignkit")

CACHE_FILE = "judgements.sqlite"
CACHE_OPTIONS = ("cache", "cache_dir")


@dataclass
class JudgementCacheOptions:
    """Base class of a feedback provider's config dataclass: the options ``cache`` (off unless a
    subclass sets ``cache: bool = True``) and ``cache_dir`` (default ``$ALIGNKIT_CACHE/judgements``,
    else ``~/.cache/alignkit/judgements``) that ``cached`` reads."""

    cache: bool = False
    cache_dir: Optional[str] = None


def default_cache_dir() -> Path:
    raw = os.environ.get("ALIGNKIT_CACHE")
    return (Path(raw).expanduser() if raw else Path.home() / ".cache" / "alignkit") / "judgements"


def config_key(identity: Mapping[str, Any]) -> str:
    """A stable hash of what decides a judge's answers (its config, model fingerprint, ...)."""
    return hashlib.sha256(json.dumps(identity, sort_keys=True, default=str).encode()).hexdigest()[:32]


def pair_key(config: str, prompt: Any, a: str, b: str) -> str:
    payload = json.dumps([config, prompt, a, b], sort_keys=True, ensure_ascii=False, default=str)
    return hashlib.sha256(payload.encode()).hexdigest()


class JudgementCache:
    """One SQLite file of ``key -> judgement JSON``; pending judgements are never stored."""

    def __init__(self, folder: str | Path | None = None) -> None:
        self.folder = Path(folder) if folder else default_cache_dir()
        self.folder.mkdir(parents=True, exist_ok=True)
        self.path = self.folder / CACHE_FILE
        self._db = sqlite3.connect(self.path, timeout=30, check_same_thread=False)
        self._db.execute("PRAGMA journal_mode=WAL")
        self._db.execute("CREATE TABLE IF NOT EXISTS judgements (key TEXT PRIMARY KEY, value TEXT NOT NULL)")
        self._db.commit()

    def get_many(self, keys: Sequence[str]) -> dict[str, Judgement]:
        found: dict[str, Judgement] = {}
        unique = list(dict.fromkeys(keys))
        for start in range(0, len(unique), 500):
            chunk = unique[start:start + 500]
            marks = ",".join("?" * len(chunk))
            for key, value in self._db.execute(f"SELECT key, value FROM judgements WHERE key IN ({marks})", chunk):
                found[key] = from_dict(json.loads(value))
        return found

    def put_many(self, items: Mapping[str, Judgement]) -> None:
        rows = [(k, json.dumps(to_dict(j), ensure_ascii=False)) for k, j in items.items() if j.preferred != "pending"]
        with self._db:  # one transaction: committed when the block ends
            self._db.executemany("INSERT OR REPLACE INTO judgements (key, value) VALUES (?, ?)", rows)

    def __len__(self) -> int:
        return int(self._db.execute("SELECT COUNT(*) FROM judgements").fetchone()[0])

    def close(self) -> None:
        self._db.close()


class CachedFeedback:
    """Wraps a provider: answers from the cache, asks the provider only about new pairs.

    New pairs go to the provider in chunks of ``chunk_size``; each chunk is stored as soon
    as it is answered, so an error in a later chunk keeps the earlier answers. Other
    methods (``critique``, ``revise``, ...) pass through to the provider.
    """

    def __init__(self, provider: Any, identity: Mapping[str, Any], cache: JudgementCache, chunk_size: int = 16) -> None:
        self.provider = provider
        self.config = config_key(identity)
        self.cache = cache
        self.chunk_size = max(1, int(chunk_size))
        self.hits = 0
        self.misses = 0

    def __getattr__(self, name: str) -> Any:
        return getattr(self.provider, name)

    @property
    def wrapped(self) -> Any:
        """The provider behind the cache (``interfaces.Wrapper``: its capabilities are found through it)."""
        return self.provider

    def judge(self, prompts: Sequence[Any], responses_a: Sequence[str], responses_b: Sequence[str],
              on_progress: Callable[[int], None] | None = None) -> list[Judgement]:
        check_batch(str(getattr(self.provider, "name", type(self.provider).__name__)), prompts, responses_a, responses_b)
        keys = [pair_key(self.config, p, a, b) for p, a, b in zip(prompts, responses_a, responses_b)]
        found = self.cache.get_many(keys)
        self.hits += sum(1 for k in keys if k in found)
        if on_progress is not None and found:
            on_progress(sum(1 for k in keys if k in found))
        todo = [i for i, k in enumerate(keys) if k not in found]
        # the same pair asked twice in one call is judged once
        todo = list({keys[i]: i for i in reversed(todo)}.values())[::-1]
        self.misses += len(todo)
        results: dict[str, Judgement] = dict(found)
        for start in range(0, len(todo), self.chunk_size):
            chunk = todo[start:start + self.chunk_size]
            answers = self.provider.judge([prompts[i] for i in chunk], [responses_a[i] for i in chunk],
                                          [responses_b[i] for i in chunk])
            if len(answers) != len(chunk):
                from alignkit.plugins.feedback.judgement import FeedbackError

                raise FeedbackError(f"feedback provider returned {len(answers)} judgements for {len(chunk)} pairs")
            fresh = {keys[i]: j for i, j in zip(chunk, answers)}
            self.cache.put_many(fresh)
            results.update(fresh)
            if on_progress is not None:
                on_progress(len(chunk))
        return [results[k] for k in keys]


def cached(provider: Any, options: Any, *, identity: Mapping[str, Any] | None = None, chunk_size: int = 16) -> Any:
    """``provider`` behind the on-disk judgement cache when ``options.cache`` is true, else ``provider``.

    ``options`` is the provider's validated config (anything with ``cache`` and ``cache_dir``,
    e.g. a ``JudgementCacheOptions`` subclass). ``identity`` is what decides its answers, hashed
    into every key so a changed setting is never answered from an old one: by default
    ``provider.identity()`` when the provider has one (``interfaces.HasIdentity``), else its class
    and its options (less ``cache`` and ``cache_dir``). Give an identity that names the model a judge runs
    (weights, not a file path) when the options alone do not.
    """
    if not getattr(options, "cache", False):
        return provider
    if identity is None:
        from alignkit.core.interfaces import HasIdentity

        identity = provider.identity() if isinstance(provider, HasIdentity) else _default_identity(provider, options)
    return CachedFeedback(provider, identity, JudgementCache(getattr(options, "cache_dir", None)),
                          chunk_size=chunk_size)


def _default_identity(provider: Any, options: Any) -> dict[str, Any]:
    import dataclasses

    if dataclasses.is_dataclass(options) and not isinstance(options, type):
        values = dataclasses.asdict(options)
    else:
        from omegaconf import DictConfig, OmegaConf

        values = OmegaConf.to_container(options, resolve=True) if isinstance(options, DictConfig) else dict(options)
    kind = type(provider)
    return {"provider": f"{kind.__module__}.{kind.__qualname__}",
            "options": {k: v for k, v in values.items() if k not in CACHE_OPTIONS}}
