"""An OpenAI-compatible chat-completions endpoint as judge (vLLM, llama.cpp server, OpenAI).

Standard library only (urllib + threads). The soft label comes from the returned
``top_logprobs`` of the first answer token when the server sends them, else from the letter
parsed out of the answer (a hard 1 or 0). Timeouts and 429/5xx answers are retried with
exponential backoff; a body that is not a chat completion is an error that quotes it.
"""

from __future__ import annotations

import json
import logging
import math
import os
import re
import socket
import time
import urllib.error
import urllib.request
from concurrent.futures import ThreadPoolExecutor
from typing import Any, Sequence

from alignkit.plugins.feedback.judgement import FeedbackError

log = logging.getLogger("alignkit")

_LETTER = re.compile(r"\b([AB])\b")


def _snippet(text: Any, limit: int = 200) -> str:
    text = text if isinstance(text, str) else repr(text)
    return text if len(text) <= limit else text[:limit] + "..."


class OpenAIJudge:
    """Sends one chat-completion request per judge conversation, ``concurrency`` at a time."""

    def __init__(self, *, base_url: str, model: str, api_key_env: str = "OPENAI_API_KEY", timeout: float = 60.0,
                 retries: int = 3, backoff: float = 1.0, concurrency: int = 4, logprobs: bool = True,
                 top_logprobs: int = 20) -> None:
        self.base_url = base_url.rstrip("/")
        self.url = self.base_url + "/chat/completions"
        self.model = model
        self.api_key_env = api_key_env
        self.timeout = float(timeout)
        self.retries = max(0, int(retries))
        self.backoff = float(backoff)
        self.concurrency = max(1, int(concurrency))
        self.logprobs = logprobs
        self.top_logprobs = top_logprobs
        self.name = f"openai:{model}"
        self.requests = 0

    def identity(self) -> dict[str, Any]:
        # the served model decides the answers, not the address it is served at
        return {"backend": "openai", "model": self.model, "logprobs": self.logprobs}

    # -- transport ----------------------------------------------------------------------
    def _headers(self) -> dict[str, str]:
        headers = {"Content-Type": "application/json"}
        key = os.environ.get(self.api_key_env) if self.api_key_env else None
        if key:
            headers["Authorization"] = f"Bearer {key}"
        return headers

    def _post(self, body: dict[str, Any]) -> dict[str, Any]:
        data = json.dumps(body).encode()
        last: str = ""
        for attempt in range(self.retries + 1):
            if attempt:
                time.sleep(self.backoff * (2 ** (attempt - 1)))
            request = urllib.request.Request(self.url, data=data, headers=self._headers(), method="POST")
            self.requests += 1
            try:
                with urllib.request.urlopen(request, timeout=self.timeout) as response:
                    raw = response.read()
            except urllib.error.HTTPError as exc:
                detail = _snippet(exc.read().decode("utf-8", "replace"))
                if exc.code == 429 or exc.code >= 500:
                    last = f"HTTP {exc.code}: {detail}"
                    continue
                raise FeedbackError(f"judge server {self.url} answered HTTP {exc.code}: {detail}") from None
            except (TimeoutError, socket.timeout) as exc:
                last = f"no answer within {self.timeout:g} s ({exc})"
                continue
            except urllib.error.URLError as exc:
                if isinstance(exc.reason, (TimeoutError, socket.timeout)):
                    last = f"no answer within {self.timeout:g} s"
                else:
                    last = f"cannot connect: {exc.reason}"
                continue
            except (ConnectionError, OSError) as exc:
                last = f"connection failed: {exc}"
                continue
            try:
                parsed = json.loads(raw)
            except (json.JSONDecodeError, UnicodeDecodeError):
                raise FeedbackError(f"judge server {self.url} returned a body that is not JSON: "
                                    f"{_snippet(raw.decode('utf-8', 'replace'))!r}") from None
            if not isinstance(parsed, dict) or not isinstance(parsed.get("choices"), list) or not parsed["choices"]:
                raise FeedbackError(f"judge server {self.url} returned JSON without 'choices': {_snippet(raw.decode('utf-8', 'replace'))!r}")
            return parsed
        raise FeedbackError(f"judge server {self.url} failed after {self.retries + 1} attempt(s): {last}. "
                            "Judgements answered before this are kept in the cache; rerun to continue.")

    def _map(self, fn: Any, items: Sequence[Any]) -> list[Any]:
        if self.concurrency == 1 or len(items) <= 1:
            return [fn(item) for item in items]
        with ThreadPoolExecutor(max_workers=self.concurrency) as pool:
            return list(pool.map(fn, items))

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
