"""Request bodies as JSON objects, parsed strictly enough that bad input is a 400, never a 500.

Python's ``json`` recurses once per nesting level, so ``[[[[...`` 100,000 deep raises
``RecursionError`` rather than ``ValueError``; the nesting depth is measured on the text
first, without recursion. NaN and Infinity are not JSON and are refused too.
"""

from __future__ import annotations

import json
import re
from typing import Any

from alignkit.plugins.human.limits import MAX_JSON_DEPTH

_STRING = re.compile(r'"(?:[^"\\]|\\.)*"', re.S)
_BRACKET = re.compile(r"[\[\]{}]")


class BadBody(ValueError):
    """A request body that is not the JSON object we can read; the message says what to send instead."""


def nesting_depth(text: str, stop_after: int | None = None) -> int:
    """How deep ``[``/``{`` nest in JSON text, brackets inside strings not counted.

    Stops counting once the depth passes ``stop_after`` (the answer is then ``stop_after + 1``).
    """
    depth = deepest = 0
    for match in _BRACKET.finditer(_STRING.sub('""', text)):
        if match.group() in "[{":
            depth += 1
            if depth > deepest:
                deepest = depth
                if stop_after is not None and deepest > stop_after:
                    return deepest
        else:
            depth -= 1
    return deepest


def _no_constant(name: str) -> Any:
    raise BadBody(f"{name} is not a JSON number: send a finite number or null")


def parse_object(raw: bytes, max_depth: int = MAX_JSON_DEPTH) -> dict[str, Any]:
    """The body as a JSON object, or ``BadBody`` saying what is wrong with it."""
    try:
        text = raw.decode("utf-8")
    except UnicodeDecodeError as exc:
        raise BadBody(f"the body is not UTF-8 (byte {exc.start})") from exc
    if text.count("[") + text.count("{") > max_depth and nesting_depth(text, stop_after=max_depth) > max_depth:
        raise BadBody(f"the JSON body nests deeper than {max_depth} levels")
    try:
        body = json.loads(text, parse_constant=_no_constant)
    except json.JSONDecodeError as exc:
        raise BadBody(f"the body is not valid JSON: {exc.msg} (line {exc.lineno}, column {exc.colno})") from exc
    except BadBody:
        raise
    except ValueError as exc:  # e.g. an integer with more digits than Python converts
        raise BadBody(f"the body is not valid JSON: {exc}") from exc
    if not isinstance(body, dict):
        raise BadBody(f"send a JSON object, not a {type(body).__name__}")
    return body
