"""GGUF: the bundled SmolLM2 GGUF converted once, atomically, into the alignkit cache."""

from __future__ import annotations

import json
import time

import pytest
import torch

from alignkit.core import ModelSpec
from alignkit.plugins.models import gguf as gguf_mod
from alignkit.plugins.models.atomic import atomic_dir, dir_lock, leftover_tmp_dirs, remove_leftovers
from alignkit.plugins.models.resolve import is_complete, load_model


def _tmp_leftovers(root):
    return [p for p in root.rglob("*") if ".tmp-" in p.name]


@pytest.mark.slow  # converts the bundled SmolLM2 GGUF (once per session)
def test_gguf_path_is_converted_once_into_the_cache(converted, session_cache, bundled_gguf, capfd, timings):
    loaded, _ = converted
    dest = session_cache / "models" / "smollm2-135m-instruct"
    assert loaded.source == f"gguf:{bundled_gguf}"
    assert is_complete(dest)
    marker = json.loads((dest / gguf_mod.SOURCE_MARKER).read_text())
    assert marker["key"] == gguf_mod.gguf_key(bundled_gguf)
    assert _tmp_leftovers(session_cache) == []
    assert oct(dest.stat().st_mode & 0o777) != oct(0o700)
    # second load of the same path: from the cache, no conversion
    start = time.perf_counter()
    again = load_model(ModelSpec(str(bundled_gguf)))
    timings["cached_load_gguf_path"] = time.perf_counter() - start
    assert again.source == f"cache:{dest}"
    assert "converting" not in capfd.readouterr().err


@pytest.mark.slow  # converts the bundled SmolLM2 GGUF (once per session)
def test_converted_folder_is_a_plain_hf_model_with_the_gguf_logits(converted, session_cache, timings):
    from transformers import AutoModelForCausalLM, AutoTokenizer

    _, gguf_model = converted
    dest = session_cache / "models" / "smollm2-135m-instruct"
    start = time.perf_counter()
    plain = AutoModelForCausalLM.from_pretrained(dest)
    timings["plain_from_pretrained"] = time.perf_counter() - start
    tok = AutoTokenizer.from_pretrained(dest)
    assert getattr(plain.config, "quantization_config", None) is None
    assert plain.config.tie_word_embeddings and plain.config.vocab_size == 49152
    ids = tok("<|im_start|>user\nWhat is 2+2?<|im_end|>\n<|im_start|>assistant\n", return_tensors="pt").input_ids
    with torch.no_grad():
        torch.testing.assert_close(plain(ids).logits, gguf_model(ids).logits, atol=1e-4, rtol=1e-4)


@pytest.mark.slow  # converts the bundled SmolLM2 GGUF (once per session)
def test_alias_loads_from_the_converted_cache(converted, session_cache, timings):
    start = time.perf_counter()
    loaded = load_model(ModelSpec("smollm2-135m-instruct"), "policy")
    timings["cached_load_alias"] = time.perf_counter() - start
    assert loaded.source == f"cache:{session_cache / 'models' / 'smollm2-135m-instruct'}"
    tok = loaded.tokenizer
    assert (tok.bos_token_id, tok.eos_token_id, tok.pad_token_id) == (1, 2, 2)
    assert tok.model_max_length == 8192 and tok.padding_side == "right"
    assert "You are a helpful AI assistant named SmolLM" in tok.chat_template
    # the tiny model now takes its tokenizer from the converted model
    tiny = load_model(ModelSpec("tiny-random"))
    assert "models/smollm2-135m-instruct" in tiny.source


@pytest.mark.slow  # converts the bundled SmolLM2 GGUF (over 3 s)
def test_failed_conversion_leaves_nothing(tmp_path, monkeypatch, bundled_gguf):
    monkeypatch.setenv("ALIGNKIT_CACHE", str(tmp_path))

    def broken_load(*args, **kwargs):
        raise RuntimeError("killed mid-way")

    monkeypatch.setattr(gguf_mod, "load_gguf", broken_load)
    dest = tmp_path / "gguf" / "x"
    with pytest.raises(RuntimeError, match="killed"):
        gguf_mod.convert_gguf(bundled_gguf, dest)
    assert not dest.exists() and _tmp_leftovers(tmp_path) == []


def test_atomic_dir_replaces_whole_or_not_at_all(tmp_path):
    dest = tmp_path / "out"
    with pytest.raises(ValueError):
        with atomic_dir(dest) as tmp:
            (tmp / "half").write_text("x")
            raise ValueError
    assert not dest.exists() and leftover_tmp_dirs(dest) == []
    dest.mkdir()
    (dest / "stale").write_text("incomplete folder copied by hand")
    with atomic_dir(dest) as tmp:
        (tmp / "config.json").write_text("{}")
    assert sorted(p.name for p in dest.iterdir()) == ["config.json"]
    assert leftover_tmp_dirs(dest) == []


def test_leftovers_of_a_killed_writer_are_removed_under_the_lock(tmp_path):
    dest = tmp_path / "out"
    killed = tmp_path / ".out.tmp-99999-abc"
    killed.mkdir()
    (killed / "model.safetensors").write_text("partial")
    with dir_lock(dest):
        remove_leftovers(dest)
    assert not killed.exists()
