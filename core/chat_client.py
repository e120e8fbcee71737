"""A client of OpenAI-compatible chat-completions servers (vLLM, llama.cpp server, OpenAI).

Transport only, standard library only (urllib + threads), shared by plugins that talk to a
served model so none of them imports another: timeouts and 429/5xx answers are retried with
exponential backoff, and a body that is not a chat completion is an error that quotes it.
Used by the constitution judge (plugins/feedback/judges/openai.py) and the Self-Instruct teacher.
"""

from __future__ import annotations

import json
import math
import os
import socket
import time
import urllib.error
import urllib.request
from concurrent.futures import ThreadPoolExecutor
from typing import Any, Callable, Sequence

from alignkit.core.errors import AlignkitError


class ChatServerError(AlignkitError):
    """The server failed (down, timeout, HTTP error) or answered something unreadable."""


def snippet(text: Any, limit: int = 200) -> str:
    text = text if isinstance(text, str) else repr(text)
    return text if len(text) <= limit else text[:limit] + "..."


class ChatClient:
    """POSTs ``{base_url}/chat/completions``; ``concurrency`` requests at a time in ``map``."""

    def __init__(self, *, base_url: str, model: str, api_key_env: str = "OPENAI_API_KEY", timeout: float = 60.0,
                 retries: int = 3, backoff: float = 1.0, concurrency: int = 4,
                 error: type[AlignkitError] = ChatServerError, label: str = "server",
                 failure_hint: str = "") -> None:
        self.base_url = base_url.rstrip("/")
        self.url = self.base_url + "/chat/completions"
        self.model = model
        self.api_key_env = api_key_env
        self.timeout = float(timeout)
        self.retries = max(0, int(retries))
        self.backoff = float(backoff)
        self.concurrency = max(1, int(concurrency))
        self.error = error
        self.label = label  # how messages name the server ("judge server", "teacher server")
        self.failure_hint = failure_hint  # appended when every attempt failed (what is kept, what to do)
        self.requests = 0

    def _headers(self) -> dict[str, str]:
        headers = {"Content-Type": "application/json"}
        key = os.environ.get(self.api_key_env) if self.api_key_env else None
        if key:
            headers["Authorization"] = f"Bearer {key}"
        return headers

    def post(self, body: dict[str, Any]) -> dict[str, Any]:
        """One chat completion (``model`` is filled in); retried on timeouts, 429 and 5xx."""
        data = json.dumps({"model": self.model, **body}).encode()
        last = ""
        for attempt in range(self.retries + 1):
            if attempt:
                time.sleep(self.backoff * (2 ** (attempt - 1)))
            request = urllib.request.Request(self.url, data=data, headers=self._headers(), method="POST")
            self.requests += 1
            try:
                with urllib.request.urlopen(request, timeout=self.timeout) as response:
                    raw = response.read()
            except urllib.error.HTTPError as exc:
                detail = snippet(exc.read().decode("utf-8", "replace"))
                if exc.code == 429 or exc.code >= 500:
                    last = f"HTTP {exc.code}: {detail}"
                    continue
                raise self.error(f"{self.label} {self.url} answered HTTP {exc.code}: {detail}") from None
            except (TimeoutError, socket.timeout) as exc:
                last = f"no answer within {self.timeout:g} s ({exc})"
                continue
            except urllib.error.URLError as exc:
                timed_out = isinstance(exc.reason, (TimeoutError, socket.timeout))
                last = f"no answer within {self.timeout:g} s" if timed_out else f"cannot connect: {exc.reason}"
                continue
            except (ConnectionError, OSError) as exc:
                last = f"connection failed: {exc}"
                continue
            try:
                parsed = json.loads(raw)
            except (json.JSONDecodeError, UnicodeDecodeError):
                raise self.error(f"{self.label} {self.url} returned a body that is not JSON: "
                                 f"{snippet(raw.decode('utf-8', 'replace'))!r}") from None
            if not isinstance(parsed, dict) or not isinstance(parsed.get("choices"), list) or not parsed["choices"] \
                    or not isinstance(parsed["choices"][0], dict):
                raise self.error(f"{self.label} {self.url} returned JSON without 'choices': "
                                 f"{snippet(raw.decode('utf-8', 'replace'))!r}")
            return parsed
        raise self.error(f"{self.label} {self.url} failed after {self.retries + 1} attempt(s): {last}"
                         + (f". {self.failure_hint}" if self.failure_hint else ""))

    def content(self, reply: dict[str, Any]) -> str:
        """The text of the first choice's message."""
        message = reply["choices"][0].get("message")
        content = message.get("content") if isinstance(message, dict) else None
        if not isinstance(content, str):
            raise self.error(f"{self.label} {self.url}: no message content in {snippet(json.dumps(reply))!r}")
        return content

    @staticmethod
    def first_token_mass(reply: dict[str, Any], labels: Sequence[str]) -> dict[str, float] | None:
        """Probability mass of each label among the first token's ``top_logprobs`` (case and
        surrounding spaces ignored), or None when the server sent no log-probs or none matched."""
        logprobs = reply["choices"][0].get("logprobs")
        if not isinstance(logprobs, dict) or not isinstance(logprobs.get("content"), list) or not logprobs["content"]:
            return None
        first = logprobs["content"][0]
        if not isinstance(first, dict):
            return None
        mass = {label: 0.0 for label in labels}
        seen: set[str] = set()
        for item in [*(first.get("top_logprobs") or []), first]:
            if not isinstance(item, dict) or not isinstance(item.get("token"), str):
                continue
            token = item["token"].strip().strip("(").strip().lower()
            if item["token"] in seen or not isinstance(item.get("logprob"), (int, float)):
                continue
            for label in labels:
                if token == label.lower():
                    seen.add(item["token"])
                    mass[label] += math.exp(float(item["logprob"]))
        return mass if sum(mass.values()) > 0 else None

    def map(self, fn: Callable[[Any], Any], items: Sequence[Any]) -> list[Any]:
        """``fn`` over ``items`` with ``concurrency`` threads, results in order."""
        if self.concurrency == 1 or len(items) <= 1:
            return [fn(item) for item in items]
        with ThreadPoolExecutor(max_workers=self.concurrency) as pool:
            return list(pool.map(fn, items))
