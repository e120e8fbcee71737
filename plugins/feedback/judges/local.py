"""A local transformers model as judge: the soft label is read from the log-probabilities
of the answer tokens ("A" vs "B") at the position after the judge prompt, so one forward
pass per comparison gives a probability rather than a sampled letter."""

from __future__ import annotations

import hashlib
import json
from pathlib import Path
from typing import Any, Sequence

import logging

import torch

from alignkit.core.lm import render, sample_responses
from alignkit.core.progress import SamplingProgress


def model_fingerprint(name_or_path: str, options: Any = None) -> str:
    """A local folder's weights and config by content; an alias or hub id by name and options."""
    folder = Path(name_or_path)
    digest = hashlib.sha256()
    if folder.is_dir():
        for file in sorted(folder.iterdir()):
            if file.is_file() and file.suffix in (".safetensors", ".json", ".bin"):
                digest.update(file.name.encode())
                with open(file, "rb") as fh:
                    for block in iter(lambda: fh.read(1 << 22), b""):
                        digest.update(block)
    else:
        digest.update(json.dumps({"model": name_or_path, "options": dict(options or {})}, sort_keys=True).encode())
    return digest.hexdigest()[:24]


class LocalJudge:
    """Scores rendered judge conversations with a causal LM; also generates critiques."""

    def __init__(self, model: Any, tokenizer: Any, *, name: str, fingerprint: str, batch_size: int = 8,
                 max_length: int = 1024, answer_prefix: str = "", generator: Any = None,
                 progress: bool | None = None) -> None:
        self.model = model.eval()
        self.tokenizer = tokenizer
        self.tokenizer.truncation_side = "left"  # too long a prompt loses its start, never the question
        self.name = name
        self.fingerprint = fingerprint
        self.batch_size = max(1, batch_size)
        self.max_length = max_length
        self.answer_prefix = answer_prefix
        self.forward_calls = 0
        self.generator = generator  # critiques and rationales: the run's generation backend (None: transformers)
        # a bar over the items of each call (None: on a terminal only); it is cleared when the call ends, and
        # the totals are logged at DEBUG, since the label stage calls once per chunk under its own bar
        self.progress = progress

    def _bar(self, what: str, total: int) -> SamplingProgress:
        return SamplingProgress(f"judge {what}", total, self.progress, unit="item", leave=False, level=logging.DEBUG)

    def identity(self) -> dict[str, Any]:
        return {"backend": "local", "model": self.fingerprint, "answer_prefix": self.answer_prefix,
                "max_length": self.max_length}

    def _label_ids(self, label: str) -> list[int]:
        ids = set()
        for text in (label, " " + label):
            encoded = self.tokenizer(text, add_special_tokens=False)["input_ids"]
            if encoded:
                ids.add(encoded[0])
        return sorted(ids)

    @torch.no_grad()
    def choice_probs(self, conversations: Sequence[Sequence[dict]], labels: tuple[str, str] = ("A", "B")) -> list[float]:
        """P(first label) against the second, for each conversation, from next-token log-probs."""
        first, second = self._label_ids(labels[0]), self._label_ids(labels[1])
        texts = [render(self.tokenizer, list(c), generation_prompt=True) + self.answer_prefix for c in conversations]
        device = next(self.model.parameters()).device
        side = self.tokenizer.padding_side
        self.tokenizer.padding_side = "left"
        out: list[float] = []
        try:
            with self._bar("choice", len(texts)) as bar:
                for start in range(0, len(texts), self.batch_size):
                    enc = self.tokenizer(texts[start:start + self.batch_size], add_special_tokens=False,
                                         padding=True, truncation=True, max_length=self.max_length,
                                         return_tensors="pt").to(device)
                    mask = enc["attention_mask"]
                    positions = (mask.cumsum(-1) - 1).clamp(min=0)
                    logits = self.model(input_ids=enc["input_ids"], attention_mask=mask, position_ids=positions,
                                        use_cache=False, logits_to_keep=1).logits[:, -1, :].float()
                    self.forward_calls += 1
                    logps = torch.log_softmax(logits, dim=-1)
                    la = torch.logsumexp(logps[:, first], dim=-1)
                    lb = torch.logsumexp(logps[:, second], dim=-1)
                    out.extend(torch.sigmoid(la - lb).tolist())
                    bar.update(enc["input_ids"].shape[0])
        finally:
            self.tokenizer.padding_side = side
        return out

    def generate(self, conversations: Sequence[Sequence[dict]], *, max_new_tokens: int, temperature: float,
                 seed: int) -> list[str]:
        with self._bar("generate", len(conversations)) as bar:
            samples = sample_responses(self.model, self.tokenizer, [list(c) for c in conversations],
                                       max_new_tokens=max_new_tokens, temperature=temperature,
                                       batch_size=self.batch_size, seed=seed, max_prompt_tokens=self.max_length,
                                       generator=self.generator, progress=bar)
        return [text.strip() for _, text in samples]
