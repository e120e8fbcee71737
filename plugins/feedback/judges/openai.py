"""An OpenAI-compatible chat-completions endpoint as judge (vLLM, llama.cpp server, OpenAI).

Standard library only (urllib + threads). The soft label comes from the returned
``top_logprobs`` of the first answer token when the server sends them, else from the letter
parsed out of the answer (a hard 1 or 0). The transport is ``alignkit.core.chat_client``:
timeouts, broken connections, malformed HTTP and 429/5xx answers are retried with exponential
backoff, ``timeout`` bounds each whole request, and every failure ends as a ``FeedbackError``
naming the URL; a body that is not a chat completion is an error that quotes it.
"""

from __future__ import annotations

import json
import logging
import math
import re
from typing import Any, Sequence

from alignkit.core.chat_client import ChatClient, snippet
from alignkit.plugins.feedback.judgement import FeedbackError

log = logging.getLogger("alignkit")

_snippet = snippet


class OpenAIJudge:
    """Sends one chat-completion request per judge conversation, ``concurrency`` at a time."""

    def __init__(self, *, base_url: str, model: str, api_key_env: str = "OPENAI_API_KEY", timeout: float = 60.0,
                 retries: int = 3, backoff: float = 1.0, concurrency: int = 4, logprobs: bool = True,
                 top_logprobs: int = 20) -> None:
        self.client = ChatClient(base_url=base_url, model=model, api_key_env=api_key_env, timeout=timeout,
                                 retries=retries, backoff=backoff, concurrency=concurrency, error=FeedbackError,
                                 label="judge server", failure_hint="Judgements answered before this are kept "
                                 "in the cache; rerun to continue.")
        self.url = self.client.url
        self.model = model
        self.logprobs = logprobs
        self.top_logprobs = top_logprobs
        self.name = f"openai:{model}"

    @property
    def requests(self) -> int:
        return self.client.requests

    def identity(self) -> dict[str, Any]:
        # the served model decides the answers, not the address it is served at
        return {"backend": "openai", "model": self.model, "logprobs": self.logprobs}

    def _post(self, body: dict[str, Any]) -> dict[str, Any]:
        return self.client.post(body)

    def _map(self, fn: Any, items: Sequence[Any]) -> list[Any]:
        return self.client.map(fn, items)

    # -- judge API ----------------------------------------------------------------------
    def _choice(self, conversation: Sequence[dict], labels: tuple[str, str]) -> float:
        body: dict[str, Any] = {"model": self.model, "messages": list(conversation), "max_tokens": 1,
                                "temperature": 0.0}
        if self.logprobs:
            body.update({"logprobs": True, "top_logprobs": self.top_logprobs})
        reply = self._post(body)
        choice = reply["choices"][0]
        if not isinstance(choice, dict):
            raise FeedbackError(f"judge server {self.url}: a choice is not an object: {_snippet(choice)!r}")
        probability = self._from_logprobs(choice, labels)
        if probability is not None:
            return probability
        content = (choice.get("message") or {}).get("content") if isinstance(choice.get("message"), dict) else None
        if not isinstance(content, str):
            raise FeedbackError(f"judge server {self.url}: no message content in {_snippet(json.dumps(reply))!r}")
        match = re.search(rf"\b({re.escape(labels[0])}|{re.escape(labels[1])})\b", content)
        if match is None:
            raise FeedbackError(f"judge server {self.url}: cannot read '{labels[0]}' or '{labels[1]}' from the answer "
                                f"{_snippet(content)!r}")
        return 1.0 if match.group(1) == labels[0] else 0.0

    @staticmethod
    def _from_logprobs(choice: dict[str, Any], labels: tuple[str, str]) -> float | None:
        logprobs = choice.get("logprobs")
        if not isinstance(logprobs, dict) or not isinstance(logprobs.get("content"), list) or not logprobs["content"]:
            return None
        first = logprobs["content"][0]
        candidates = list(first.get("top_logprobs") or []) + [first]
        mass = {labels[0]: 0.0, labels[1]: 0.0}
        seen = set()
        for item in candidates:
            if not isinstance(item, dict) or not isinstance(item.get("token"), str):
                continue
            token = item["token"].strip().strip("(").strip()
            if token in mass and item["token"] not in seen and isinstance(item.get("logprob"), (int, float)):
                seen.add(item["token"])
                mass[token] += math.exp(float(item["logprob"]))
        total = mass[labels[0]] + mass[labels[1]]
        if total <= 0:
            return None
        return mass[labels[0]] / total

    def choice_probs(self, conversations: Sequence[Sequence[dict]], labels: tuple[str, str] = ("A", "B")) -> list[float]:
        return self._map(lambda c: self._choice(c, labels), list(conversations))

    def generate(self, conversations: Sequence[Sequence[dict]], *, max_new_tokens: int, temperature: float,
                 seed: int) -> list[str]:
        def one(conversation: Sequence[dict]) -> str:
            reply = self._post({"model": self.model, "messages": list(conversation), "max_tokens": max_new_tokens,
                                "temperature": temperature, "seed": seed})
            message = reply["choices"][0].get("message") if isinstance(reply["choices"][0], dict) else None
            content = message.get("content") if isinstance(message, dict) else None
            if not isinstance(content, str):
                raise FeedbackError(f"judge server {self.url}: no message content in {_snippet(json.dumps(reply))!r}")
            return content.strip()

        return self._map(one, list(conversations))
