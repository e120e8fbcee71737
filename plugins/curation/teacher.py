"""The teacher: the model that writes Self-Instruct data or grades answers.

Two backends behind one small interface (``complete`` and ``yes_probability``):

* a local model, any spec ``alignkit_load_model`` resolves (``tiny-random``, a folder, a
  ``.gguf`` file, a hub id), sampled with ``alignkit.core.lm.sample_responses``;
* an OpenAI-compatible chat server (vLLM, llama.cpp, OpenAI) through
  ``alignkit.core.chat_client``, the transport the AI judge uses.

Every prompt is sent as one user turn, so chat models see a normal request.
"""

from __future__ import annotations

import hashlib
import json
import logging
import re
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Dict, Optional, Protocol, Sequence

from alignkit.core.errors import AlignkitError, ConfigError

log = logging.getLogger("alignkit.curation")

_YES_NO = re.compile(r"\b(yes|no)\b", re.IGNORECASE)


class TeacherError(AlignkitError):
    """The teacher failed (server down, unreadable answer); generated data already saved is kept."""


@dataclass
class TeacherConfig:
    """Options of a teacher (``data.teacher.*``, ``judge`` of the quality estimate)."""

    model: Optional[str] = "smollm2-135m-instruct"  # alias, folder, .gguf, hub id; with base_url: served name
    base_url: Optional[str] = None  # an OpenAI-compatible server, e.g. http://localhost:8000/v1
    api_key_env: str = "OPENAI_API_KEY"  # environment variable holding the key (never the key itself)
    licence: Optional[str] = None  # terms of the teacher's outputs, recorded in the data set's metadata
    dtype: str = "float32"
    options: Dict[str, Any] = field(default_factory=dict)  # model options (tiny-random's sizes, ...)
    batch_size: int = 8
    max_prompt_tokens: int = 1024  # local models: longer prompts lose their start, never their end
    timeout: float = 60.0
    retries: int = 3
    concurrency: int = 4


class Teacher(Protocol):
    name: str

    def identity(self) -> dict[str, Any]: ...

    def complete(self, prompts: Sequence[str], *, max_new_tokens: int, temperature: float, top_p: float,
                 seed: int) -> list[str]: ...

    def yes_probability(self, prompts: Sequence[str]) -> list[float]: ...


def model_card_licence(name_or_path: str) -> str | None:
    """The ``license:`` of a local model folder's Hugging Face model card (README.md front matter)."""
    card = Path(name_or_path).expanduser() / "README.md"
    if not card.is_file():
        return None
    text = card.read_text(encoding="utf-8", errors="replace")
    if not text.startswith("---"):
        return None
    front = text.split("---", 2)[1] if text.count("---") >= 2 else ""
    match = re.search(r"^licen[cs]e:\s*['\"]?([^'\"\n]+)", front, re.MULTILINE)
    return match.group(1).strip() if match else None


def model_fingerprint(name_or_path: str, options: Any) -> str:
    """A local folder by its config and weights' sizes and names; an alias or id by name and options."""
    folder = Path(name_or_path).expanduser()
    digest = hashlib.sha256()
    if folder.is_dir():
        for file in sorted(folder.iterdir()):
            if file.is_file() and file.suffix in (".safetensors", ".json", ".bin", ".gguf"):
                digest.update(f"{file.name}:{file.stat().st_size}".encode())
                if file.suffix == ".json":
                    digest.update(file.read_bytes())
    else:
        digest.update(json.dumps({"model": name_or_path, "options": dict(options or {})}, sort_keys=True).encode())
    return digest.hexdigest()[:16]


class LocalTeacher:
    """A causal LM loaded through the plugin manager's model resolver."""

    def __init__(self, loaded: Any, *, name: str, fingerprint: str, batch_size: int = 8,
                 max_prompt_tokens: int = 1024) -> None:
        self.model = loaded.model.eval()
        self.tokenizer = loaded.tokenizer
        self.tokenizer.truncation_side = "left"
        self.name = name
        self.fingerprint = fingerprint
        self.source = getattr(loaded, "source", "")
        self.batch_size = max(1, int(batch_size))
        self.max_prompt_tokens = int(max_prompt_tokens)
        self.new_tokens = 0  # generated so far (the progress bar's tokens/s)

    def identity(self) -> dict[str, Any]:
        return {"backend": "local", "model": self.name, "fingerprint": self.fingerprint}

    def complete(self, prompts: Sequence[str], *, max_new_tokens: int, temperature: float, top_p: float,
                 seed: int) -> list[str]:
        from alignkit.core.lm import sample_responses

        conversations = [[{"role": "user", "content": p}] for p in prompts]
        samples = sample_responses(self.model, self.tokenizer, conversations, max_new_tokens=max_new_tokens,
                                   temperature=temperature, top_p=top_p, batch_size=self.batch_size, seed=seed,
                                   max_prompt_tokens=self.max_prompt_tokens)
        self.new_tokens += sum(encoded.num_scored for encoded, _ in samples)
        return [text.strip() for _, text in samples]

    def yes_probability(self, prompts: Sequence[str]) -> list[float]:
        """P("Yes") against P("No") as the first answer token, from one forward pass each."""
        import torch

        from alignkit.core.lm import render

        def ids(word: str) -> list[int]:
            found = set()
            for text in (word, " " + word, word.lower(), " " + word.lower()):
                encoded = self.tokenizer(text, add_special_tokens=False)["input_ids"]
                if encoded:
                    found.add(encoded[0])
            return sorted(found)

        yes, no = ids("Yes"), ids("No")
        texts = [render(self.tokenizer, [{"role": "user", "content": p}], generation_prompt=True) for p in prompts]
        device = next(self.model.parameters()).device
        side = self.tokenizer.padding_side
        self.tokenizer.padding_side = "left"
        out: list[float] = []
        try:
            with torch.no_grad():
                for start in range(0, len(texts), self.batch_size):
                    enc = self.tokenizer(texts[start:start + self.batch_size], add_special_tokens=False,
                                         padding=True, truncation=True, max_length=self.max_prompt_tokens,
                                         return_tensors="pt").to(device)
                    mask = enc["attention_mask"]
                    positions = (mask.cumsum(-1) - 1).clamp(min=0)
                    logits = self.model(input_ids=enc["input_ids"], attention_mask=mask, position_ids=positions,
                                        use_cache=False, logits_to_keep=1).logits[:, -1, :].float()
                    logps = torch.log_softmax(logits, dim=-1)
                    out.extend(torch.sigmoid(torch.logsumexp(logps[:, yes], -1)
                                             - torch.logsumexp(logps[:, no], -1)).tolist())
        finally:
            self.tokenizer.padding_side = side
        return out


class HttpTeacher:
    """A model behind an OpenAI-compatible chat-completions server."""

    def __init__(self, client: Any) -> None:
        self.client = client
        self.name = f"openai:{client.model}"

    def identity(self) -> dict[str, Any]:
        return {"backend": "openai", "model": self.client.model}

    def complete(self, prompts: Sequence[str], *, max_new_tokens: int, temperature: float, top_p: float,
                 seed: int) -> list[str]:
        def one(indexed: tuple[int, str]) -> str:
            i, prompt = indexed
            body = {"messages": [{"role": "user", "content": prompt}], "max_tokens": max_new_tokens,
                    "temperature": temperature, "top_p": top_p, "seed": seed + i}
            return self.client.content(self.client.post(body)).strip()

        return self.client.map(one, list(enumerate(prompts)))

    def yes_probability(self, prompts: Sequence[str]) -> list[float]:
        """From the first token's ``top_logprobs`` when the server sends them, else 1.0 / 0.0 from
        the word Yes / No in the answer (0.5 when neither appears)."""
        def one(prompt: str) -> float:
            reply = self.client.post({"messages": [{"role": "user", "content": prompt}], "max_tokens": 1,
                                      "temperature": 0.0, "logprobs": True, "top_logprobs": 20})
            mass = self.client.first_token_mass(reply, ("Yes", "No"))
            if mass is not None:
                return mass["Yes"] / (mass["Yes"] + mass["No"])
            match = _YES_NO.search(self.client.content(reply))
            return 0.5 if match is None else (1.0 if match.group(1).lower() == "yes" else 0.0)

        return self.client.map(one, list(prompts))


def build_teacher(cfg: TeacherConfig, registry: Any) -> Teacher:
    """A ``HttpTeacher`` when ``base_url`` is set, else the local model ``cfg.model``, loaded through
    ``registry`` (the run's, from the context the data source was built with: the same plugins load it)."""
    if not cfg.model:
        raise ConfigError("teacher.model is empty: name a model alias, folder or hub id "
                          "(or the served model's name with teacher.base_url)")
    if cfg.base_url:
        from alignkit.core.chat_client import ChatClient

        return HttpTeacher(ChatClient(base_url=cfg.base_url, model=cfg.model, api_key_env=cfg.api_key_env,
                                      timeout=cfg.timeout, retries=cfg.retries, concurrency=cfg.concurrency,
                                      error=TeacherError))
    from alignkit.core.types import ModelSpec

    if registry is None:
        raise ConfigError(f"teacher.model={cfg.model} is loaded through the run's plugins, and this source was "
                          "built without them: build it as the core does, factory(options, ctx)")
    spec = ModelSpec(name_or_path=cfg.model, dtype=cfg.dtype, options=dict(cfg.options or {}))
    loaded = registry.load_model(spec, "judge")
    return LocalTeacher(loaded, name=cfg.model, fingerprint=model_fingerprint(cfg.model, cfg.options),
                        batch_size=cfg.batch_size, max_prompt_tokens=cfg.max_prompt_tokens)


def teacher_licence(cfg: TeacherConfig) -> tuple[str, str]:
    """(licence, where it came from): the config, a local model card, or unknown."""
    if cfg.licence:
        return cfg.licence, "config (teacher.licence)"
    if not cfg.base_url and cfg.model:
        found = model_card_licence(cfg.model)
        if found:
            return found, f"model card {Path(cfg.model) / 'README.md'}"
    return "unknown", "not given: set teacher.licence to the terms of use of the teacher's outputs"
