"""Ground-truth rules for alignkit's demo task (plugins/data/demo): rewards PPO can maximise
without a learned reward model, and the yardstick that tells whether a reward model is right.

    alignkit pipeline=ppo preference_model=rule preference_model.fn=alignkit.plugins.rules.demo:arithmetic_correct

``arithmetic_correct`` verifies the numeric questions of the demo data: sums, differences,
products, quotients (written with symbols or words), unit conversions (length, mass, time,
volume, in either direction) and Celsius to Fahrenheit. A prompt it cannot verify
(capitals, definitions, refusals, anything else) scores ``UNVERIFIABLE`` = 0.0, the same as
a wrong answer: PPO then gets no signal from those prompts (whitened advantages centre them)
instead of a made-up one, and a policy cannot raise its reward by steering towards them.
Use ``verifiable(prompt)`` to filter a prompt pool to the questions the rule can check.
"""

from __future__ import annotations

import math
import re
from typing import Any

UNVERIFIABLE = 0.0

_NUM = r"-?\d+(?:,\d{3})*(?:\.\d+)?"
# A minus sign counts as a sign only where it cannot be the operator of "430-294".
_NUMBER = re.compile(r"(?:(?<![\w.])-)?\d+(?:,\d{3})*(?:\.\d+)?")

_BINARY = [
    # (pattern over the question, operation); a and b are named groups
    (rf"(?:what is|calculate|compute)\s+(?P<a>{_NUM})\s*(?:\+|plus)\s*(?P<b>{_NUM})", "add"),
    (rf"(?:what is )?the sum of (?P<a>{_NUM}) and (?P<b>{_NUM})", "add"),
    (rf"\badd (?P<a>{_NUM}) (?:and|to) (?P<b>{_NUM})", "add"),
    (rf"(?:what is|calculate|compute)\s+(?P<a>{_NUM})\s*(?:-|−|minus)\s*(?P<b>{_NUM})", "sub"),
    (rf"\bsubtract (?P<b>{_NUM}) from (?P<a>{_NUM})", "sub"),
    (rf"(?:what is )?the difference between (?P<a>{_NUM}) and (?P<b>{_NUM})", "sub"),
    (rf"(?:what is|calculate|compute)\s+(?P<a>{_NUM})\s*(?:\*|×|x|times|multiplied by)\s*(?P<b>{_NUM})", "mul"),
    (rf"(?:what is )?the product of (?P<a>{_NUM}) and (?P<b>{_NUM})", "mul"),
    (rf"\bmultiply (?P<a>{_NUM}) (?:by|and) (?P<b>{_NUM})", "mul"),
    (rf"(?:what is|calculate|compute)\s+(?P<a>{_NUM})\s*(?:/|÷|divided by)\s*(?P<b>{_NUM})", "div"),
    (rf"\bdivide (?P<a>{_NUM}) by (?P<b>{_NUM})", "div"),
]
_BINARY_RE = [(re.compile(p, re.IGNORECASE), op) for p, op in _BINARY]

# Every unit in its dimension's base unit (meter, gram, second, milliliter).
_UNITS: dict[str, tuple[str, float]] = {
    "kilometer": ("length", 1000.0), "meter": ("length", 1.0), "centimeter": ("length", 0.01),
    "millimeter": ("length", 0.001), "inch": ("length", 0.0254), "foot": ("length", 0.3048),
    "yard": ("length", 0.9144), "mile": ("length", 1609.344),
    "kilogram": ("mass", 1000.0), "gram": ("mass", 1.0), "milligram": ("mass", 0.001),
    "week": ("time", 604800.0), "day": ("time", 86400.0), "hour": ("time", 3600.0),
    "minute": ("time", 60.0), "second": ("time", 1.0),
    "liter": ("volume", 1000.0), "milliliter": ("volume", 1.0),
}
_PLURALS = {"inches": "inch", "feet": "foot", "metres": "meter", "litres": "liter", "kilometres": "kilometer",
            "centimetres": "centimeter", "millimetres": "millimeter", "millilitres": "milliliter"}
_UNIT = r"[a-z]+"
_CONVERSIONS = [
    re.compile(rf"how many (?P<dst>{_UNIT}) are (?:there )?in (?P<n>{_NUM}) (?P<src>{_UNIT})", re.IGNORECASE),
    re.compile(rf"convert (?P<n>{_NUM}) (?P<src>{_UNIT}) (?:to|into) (?P<dst>{_UNIT})", re.IGNORECASE),
    re.compile(rf"what is (?P<n>{_NUM}) (?P<src>{_UNIT}) in (?P<dst>{_UNIT})", re.IGNORECASE),
]
_CELSIUS = [
    re.compile(rf"convert (?P<c>{_NUM})\s*°\s*C to fahrenheit", re.IGNORECASE),
    re.compile(rf"what is (?P<c>{_NUM}) degrees celsius in fahrenheit", re.IGNORECASE),
]


def _question(prompt: Any) -> str:
    """The last user turn of a chat prompt (or the prompt itself when it is text)."""
    if isinstance(prompt, str):
        return prompt
    for message in reversed(list(prompt or [])):
        if isinstance(message, dict) and message.get("role") == "user":
            return str(message.get("content", ""))
    return ""


def _to_float(text: str) -> float:
    return float(text.replace(",", ""))


def _unit(word: str) -> tuple[str, float] | None:
    word = word.lower()
    word = _PLURALS.get(word, word)
    if word not in _UNITS and word.endswith("s"):
        word = word[:-1]
    return _UNITS.get(word)


def expected_answer(prompt: Any) -> tuple[float, set[float]] | None:
    """The true answer of a numeric demo question and the numbers the question itself states
    (operands, which a response may repeat), or None when the question is not one we verify."""
    text = _question(prompt)
    for pattern in _CELSIUS:
        m = pattern.search(text)
        if m:
            c = _to_float(m["c"])
            return c * 9 / 5 + 32, {c}
    for pattern in _CONVERSIONS:
        m = pattern.search(text)
        if m:
            src, dst = _unit(m["src"]), _unit(m["dst"])
            if src is None or dst is None or src[0] != dst[0]:
                continue
            n = _to_float(m["n"])
            return n * src[1] / dst[1], {n}
    for pattern, op in _BINARY_RE:
        m = pattern.search(text)
        if m:
            a, b = _to_float(m["a"]), _to_float(m["b"])
            if op == "div" and b == 0:
                return None
            value = {"add": a + b, "sub": a - b, "mul": a * b, "div": a / b if b else math.nan}[op]
            return value, {a, b}
    return None


def verifiable(prompt: Any) -> bool:
    """Whether ``arithmetic_correct`` can check answers to this prompt."""
    return expected_answer(prompt) is not None


def _same(x: float, y: float) -> bool:
    if abs(x - y) <= 1e-6 * max(1.0, abs(y)):
        return True
    return not float(y).is_integer() and abs(x - y) < 0.005 + 1e-9  # "5.08" for 5.08, rounded to 2 places


def _final_number(prompt: Any, response: str) -> tuple[float, float | None] | None:
    """(true answer, the response's final number or None) for a verifiable prompt, else None.

    The final number is the last number in the response that is not one of the question's
    own numbers ("717 + 82 = 799." -> 799; "46 hours is 2760 minutes." -> 2760). When every
    number is an operand the answer may coincide with one (7 * 1 = 7): the last number counts
    if it is the answer; a bare restatement of the question ("711 - 601") gives None.
    """
    expected = expected_answer(prompt)
    if expected is None:
        return None
    answer, operands = expected
    numbers = [_to_float(n) for n in _NUMBER.findall(response or "")]
    candidates = [n for n in numbers if not any(_same(n, o) for o in operands)]
    if candidates:
        return answer, candidates[-1]
    return answer, (numbers[-1] if numbers and _same(numbers[-1], answer) else None)


def arithmetic_correct(prompt: Any, response: str) -> float:
    """1.0 when the response's final number is the true answer, else 0.0.

    Restating the question is fine but ending on a wrong number ("799. No wait, 800") is not.
    Unverifiable prompts score ``UNVERIFIABLE`` (0.0; see the module docstring).
    """
    found = _final_number(prompt, response)
    if found is None or found[1] is None:
        return UNVERIFIABLE if found is None else 0.0
    answer, given = found
    return 1.0 if _same(given, answer) else 0.0


def arithmetic_graded(prompt: Any, response: str) -> float:
    """Partial credit: 1.0 for the right answer, ``0.5 / (1 + relative error)`` for a wrong
    final number (so any right answer beats every wrong one), 0.0 for no number at all.

    Why: a 135M model gets few demo questions exactly right (about 8% after the demo SFT),
    so an exact-match rule leaves most sampled pairs tied and DPO with almost nothing to learn
    from. Closeness decides nearly every pair ("711 - 601 = 32" beats "= 599") while keeping
    the ranking of the exact rule: the right answer is still the best one.
    """
    found = _final_number(prompt, response)
    if found is None or found[1] is None:
        return UNVERIFIABLE if found is None else 0.0
    answer, given = found
    if _same(given, answer):
        return 1.0
    relative_error = abs(given - answer) / max(abs(answer), 1.0)
    return 0.5 / (1.0 + relative_error)


def concise(prompt: Any, response: str, max_words: int = 40) -> float:
    """A length penalty as a reward: 1.0 for an empty answer, falling linearly to 0.0 at
    ``max_words`` words and below. Combine with a correctness rule; alone it rewards silence."""
    words = len((response or "").split())
    return max(0.0, 1.0 - words / max_words)


def arithmetic_concise(prompt: Any, response: str) -> float:
    """Correct *and* short: ``arithmetic_correct`` plus a small length bonus (at most 0.2), so
    between two right answers the shorter wins but no length makes a wrong answer pay."""
    correct = arithmetic_correct(prompt, response)
    return correct + 0.2 * concise(prompt, response) * correct
