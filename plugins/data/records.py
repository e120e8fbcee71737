"""The normalised record shapes and their validation.

Every dataset a data source hands out has exactly these columns (TRL-compatible):

* SFT: ``messages`` — a list of ``{"role": "system"|"user"|"assistant", "content": str}``
  with at least one user and one assistant turn, ending with an assistant turn.
* preferences: ``prompt`` (messages up to the answer, ending with a user turn),
  ``chosen`` and ``rejected`` (assistant text), ``strength`` (P(chosen preferred), in
  [0, 1], default 1.0) and ``source`` (where the pair came from).
* prompts: ``prompt`` (messages ending with a user turn).

The helpers here raise ``RecordError(field, message)``; the loader adds the file and line
and turns it into ``alignkit.core.DataError``.
"""

from __future__ import annotations

import json
import math
from typing import Any

ROLES = ("system", "user", "assistant")
KINDS = ("sft", "preferences", "prompts")

Message = dict[str, str]


class RecordError(ValueError):
    """One record is invalid: ``field`` names the offending field (dotted / indexed)."""

    def __init__(self, field: str | None, message: str) -> None:
        super().__init__(message)
        self.field = field
        self.message = message


def type_name(value: Any) -> str:
    if value is None:
        return "null"
    return {bool: "bool", int: "int", float: "float", str: "string", list: "list",
            dict: "object"}.get(type(value), type(value).__name__)


# -- fields -----------------------------------------------------------------------------


def require(raw: dict[str, Any], field: str, fmt: str) -> Any:
    """``raw[field]``, which must be present and not null."""
    if field not in raw or raw[field] is None:
        raise RecordError(field, f"missing (required by the '{fmt}' format)")
    return raw[field]


def text(value: Any, field: str, *, empty: str = "empty text", allow_empty: bool = False) -> str:
    """A string field; empty or whitespace-only is an error unless ``allow_empty``."""
    if not isinstance(value, str):
        raise RecordError(field, f"expected a string, got {type_name(value)}")
    if not allow_empty and not value.strip():
        raise RecordError(field, empty)
    return value


def optional_text(raw: dict[str, Any], field: str) -> str:
    """An optional string field (missing, null or empty -> "")."""
    value = raw.get(field)
    if value is None:
        return ""
    if not isinstance(value, str):
        raise RecordError(field, f"expected a string, got {type_name(value)}")
    return value


def messages(value: Any, field: str) -> list[Message]:
    """Validate a list of chat messages; returns clean ``{"role", "content"}`` dicts."""
    if not isinstance(value, list):
        raise RecordError(field, f"expected a list of messages, got {type_name(value)}")
    if not value:
        raise RecordError(field, "empty list of messages")
    out: list[Message] = []
    for i, msg in enumerate(value):
        where = f"{field}[{i}]"
        if not isinstance(msg, dict):
            raise RecordError(where, f"expected a message object with 'role' and 'content', got {type_name(msg)}")
        if msg.get("role") is None:
            raise RecordError(f"{where}.role", "missing")
        role = msg["role"]
        if role not in ROLES:
            raise RecordError(f"{where}.role", f"unknown role {role!r}; use one of: {', '.join(ROLES)}")
        if msg.get("content") is None:
            raise RecordError(f"{where}.content", "missing")
        content = text(msg["content"], f"{where}.content",
                       empty="empty response" if role == "assistant" else "empty message")
        if role == "system" and i != 0:
            raise RecordError(f"{where}.role", "a system turn may only come first")
        out.append({"role": role, "content": content})
    return out


def prompt_messages(value: Any, field: str) -> list[Message]:
    """A prompt: a non-empty string (one user turn) or messages ending with a user turn."""
    if isinstance(value, str):
        return [{"role": "user", "content": text(value, field, empty="empty prompt")}]
    if not isinstance(value, list):
        raise RecordError(field, f"expected a string or a list of messages, got {type_name(value)}")
    msgs = messages(value, field)
    if msgs[-1]["role"] != "user":
        raise RecordError(field, f"the prompt must end with a user turn, not {msgs[-1]['role']!r}")
    return msgs


def response_text(value: Any, field: str) -> str:
    """An answer: a non-empty string, or a list holding exactly one assistant message."""
    if isinstance(value, list):
        msgs = messages(value, field)
        if len(msgs) != 1 or msgs[0]["role"] != "assistant":
            raise RecordError(field, "expected a string or a list with exactly one assistant message")
        return msgs[0]["content"]
    if not isinstance(value, str):
        raise RecordError(field, f"expected a string or a list of messages, got {type_name(value)}")
    return text(value, field, empty="empty response")


def strength(value: Any, field: str = "strength") -> float:
    if value is None:
        return 1.0
    if isinstance(value, bool) or not isinstance(value, (int, float)):
        raise RecordError(field, f"expected a number in [0, 1], got {type_name(value)}")
    value = float(value)
    if math.isnan(value) or not 0.0 <= value <= 1.0:
        raise RecordError(field, f"expected a number in [0, 1], got {value!r}")
    return value


# -- records ----------------------------------------------------------------------------


def sft_record(msgs: list[Message], field: str = "messages") -> dict[str, Any]:
    """Check a validated conversation is trainable SFT data."""
    roles = [m["role"] for m in msgs]
    if "user" not in roles:
        raise RecordError(field, "needs at least one user turn")
    if "assistant" not in roles:
        raise RecordError(field, "needs at least one assistant turn")
    if roles[-1] != "assistant":
        raise RecordError(field, f"the last turn must be the assistant's, not {roles[-1]!r}")
    return {"messages": msgs}


def preference_record(prompt: list[Message], chosen: str, rejected: str, strength_: float,
                      source: str) -> dict[str, Any]:
    return {"prompt": prompt, "chosen": chosen, "rejected": rejected,
            "strength": float(strength_), "source": source}


def prompt_record(prompt: list[Message]) -> dict[str, Any]:
    return {"prompt": prompt}


def truncate(record: dict[str, Any], max_chars: int) -> bool:
    """Cut every text of a normalised record (message contents, ``chosen``, ``rejected``) to
    its first ``max_chars`` characters, in place, so that one huge line cannot make the
    tokenizer allocate gigabytes; True when anything was cut."""
    cut = False
    for key in ("messages", "prompt"):
        for message in record.get(key) or ():
            if len(message["content"]) > max_chars:
                message["content"] = message["content"][:max_chars]
                cut = True
    for key in ("chosen", "rejected"):
        value = record.get(key)
        if isinstance(value, str) and len(value) > max_chars:
            record[key] = value[:max_chars]
            cut = True
    return cut


def prompt_of_conversation(msgs: list[Message]) -> list[Message]:
    """The conversation up to and including its last user turn."""
    last_user = max(i for i, m in enumerate(msgs) if m["role"] == "user")
    return [dict(m) for m in msgs[: last_user + 1]]


def prompt_key(prompt: list[Message]) -> str:
    return json.dumps(prompt, ensure_ascii=False, sort_keys=True)


# -- dataset features -------------------------------------------------------------------


def features(kind: str):  # -> datasets.Features
    """The ``datasets.Features`` of a normalised dataset of ``kind``."""
    from datasets import Features, List, Value

    message = {"role": Value("string"), "content": Value("string")}
    if kind == "sft":
        return Features({"messages": List(message)})
    if kind == "preferences":
        return Features({
            "prompt": List(message),
            "chosen": Value("string"),
            "rejected": Value("string"),
            "strength": Value("float64"),
            "source": Value("string"),
        })
    if kind == "prompts":
        return Features({"prompt": List(message)})
    raise ValueError(f"unknown data kind {kind!r}")
