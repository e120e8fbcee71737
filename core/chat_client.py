"""A client of OpenAI-compatible chat-completions servers (vLLM, llama.cpp server, OpenAI).

Transport only, standard library only (urllib + threads), shared by plugins that talk to a
served model so none of them imports another: timeouts, broken connections, malformed HTTP
(a garbage status line, a body cut short of its Content-Length) and 429/5xx answers are retried
with exponential backoff, and a body that is not a chat completion is an error that quotes it.
``timeout`` bounds each attempt as a whole (connect, headers and body), not each socket read,
so a server that drips bytes cannot hold a call past it. Used by the constitution judge
(plugins/feedback/judges/openai.py) and the Self-Instruct teacher.
"""

from __future__ import annotations

import http.client
import json
import math
import os
import socket
import threading
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


def _describe(exc: BaseException) -> str:
    """``IncompleteRead(5 bytes read, 20 more expected)``, ``BadStatusLine: 'garbage\\r\\n'``
    (what the server sent is quoted, shortened, with control characters escaped)."""
    name, text = type(exc).__name__, str(exc)
    text = snippet(text if text.isprintable() else repr(text))
    return text if text.startswith(name) else f"{name}: {text}" if text else name


class _Deadline:
    """One attempt's overall time limit. The socket timeout only bounds each read, so a server
    that sends a byte every half second would never trip it; when the deadline passes a timer
    shuts the attempt's sockets down, which ends whatever read is blocked on them."""

    def __init__(self, seconds: float) -> None:
        self.expired = False
        self._lock = threading.Lock()
        self._sockets: list[Any] = []
        self._timer = threading.Timer(seconds, self._expire)
        self._timer.daemon = True
        self._timer.start()

    def _expire(self) -> None:
        with self._lock:
            self.expired = True
            sockets = list(self._sockets)
        for sock in sockets:
            _shutdown(sock)

    def track(self, connection_class: Any) -> Callable[..., Any]:
        """A connection factory for urllib whose sockets this deadline can shut down."""
        def make(host: str, **kwargs: Any) -> Any:
            connection = connection_class(host, **kwargs)
            connect = connection.connect

            def connect_and_track() -> None:
                connect()
                with self._lock:
                    self._sockets.append(connection.sock)
                    expired = self.expired
                if expired:
                    _shutdown(connection.sock)

            connection.connect = connect_and_track
            return connection

        return make

    def cancel(self) -> None:
        self._timer.cancel()


def _shutdown(sock: Any) -> None:
    try:
        sock.shutdown(socket.SHUT_RDWR)
    except (OSError, AttributeError):
        pass


class _DeadlineHandler:
    deadline: _Deadline

    def do_open(self, http_class: Any, req: Any, **kwargs: Any) -> Any:
        return super().do_open(self.deadline.track(http_class), req, **kwargs)  # type: ignore[misc]


class _DeadlineHTTPHandler(_DeadlineHandler, urllib.request.HTTPHandler):
    pass


_HANDLERS: list[type] = [_DeadlineHTTPHandler]
if hasattr(urllib.request, "HTTPSHandler"):  # Python built with ssl
    class _DeadlineHTTPSHandler(_DeadlineHandler, urllib.request.HTTPSHandler):
        pass

    _HANDLERS.append(_DeadlineHTTPSHandler)


def _opener(deadline: _Deadline) -> urllib.request.OpenerDirector:
    """urllib's default opener (proxies, redirects) whose HTTP(S) connections obey ``deadline``."""
    handlers = []
    for handler_class in _HANDLERS:
        handler = handler_class()
        handler.deadline = deadline
        handlers.append(handler)
    return urllib.request.build_opener(*handlers)


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
        """One chat completion (``model`` is filled in); retried on timeouts, broken connections,
        malformed HTTP, 429 and 5xx. Each attempt ends within ``timeout`` seconds."""
        data = json.dumps({"model": self.model, **body}).encode()
        last = ""
        for attempt in range(self.retries + 1):
            if attempt:
                time.sleep(self.backoff * (2 ** (attempt - 1)))
            request = urllib.request.Request(self.url, data=data, headers=self._headers(), method="POST")
            self.requests += 1
            deadline = _Deadline(self.timeout)
            try:
                raw, failure = self._attempt(request, deadline)
            finally:
                deadline.cancel()
            if deadline.expired:  # whatever the shut-down socket made urllib raise or return
                last = f"no answer within {self.timeout:g} s (the whole request, not each read)"
                continue
            if failure is not None:
                last = failure
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

    def _attempt(self, request: urllib.request.Request, deadline: _Deadline) -> tuple[bytes, str | None]:
        """One request: ``(body, None)``, or ``(b"", why)`` for a failure worth retrying; an
        answer that retrying cannot fix (HTTP 4xx other than 429) raises."""
        try:
            with _opener(deadline).open(request, timeout=self.timeout) as response:
                return response.read(), None
        except urllib.error.HTTPError as exc:
            try:
                detail = snippet(exc.read().decode("utf-8", "replace"))
            except (http.client.HTTPException, OSError) as read_error:
                detail = f"(error body unreadable: {_describe(read_error)})"
            if exc.code == 429 or exc.code >= 500:
                return b"", f"HTTP {exc.code}: {detail}"
            raise self.error(f"{self.label} {self.url} answered HTTP {exc.code}: {detail}") from None
        except (TimeoutError, socket.timeout) as exc:
            return b"", f"no answer within {self.timeout:g} s ({exc})"
        except urllib.error.URLError as exc:
            timed_out = isinstance(exc.reason, (TimeoutError, socket.timeout))
            return b"", f"no answer within {self.timeout:g} s" if timed_out else f"cannot connect: {exc.reason}"
        except http.client.HTTPException as exc:  # garbage status line, body shorter than Content-Length, ...
            return b"", f"malformed HTTP answer ({_describe(exc)})"
        except (ConnectionError, OSError) as exc:
            return b"", f"connection failed: {exc}"

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
