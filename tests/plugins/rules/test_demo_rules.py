"""The demo task's ground-truth rules agree with the shipped demo data and with hand answers."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

import alignkit.plugins.data.demo as demo_pkg
from alignkit.plugins.rules.demo import arithmetic_concise, arithmetic_correct, concise, expected_answer, verifiable

DEMO = Path(demo_pkg.__file__).parent


def user(text: str) -> list[dict]:
    return [{"role": "user", "content": text}]


@pytest.mark.parametrize("question, answer", [
    ("What is 717 + 82?", 799), ("Calculate 12 plus 30.", 42), ("Add 701 and 152.", 853),
    ("What is the sum of 717 and 82?", 799), ("Subtract 294 from 430.", 136), ("What is 867 minus 743?", 124),
    ("What is 430 - 294?", 136), ("What is 23 times 5?", 115), ("What is 19 * 17?", 323),
    ("Multiply 4 by 9.", 36), ("What is the product of 6 and 7?", 42), ("What is 84 divided by 7?", 12),
    ("Divide 90 by 6.", 15), ("What is 56 / 8?", 7), ("How many minutes are in 46 hours?", 2760),
    ("Convert 3 kilometers to meters.", 3000), ("What is 28 days in hours?", 672),
    ("How many centimeters are in 2 inches?", 5.08), ("Convert 120 minutes to hours.", 2),
    ("Convert 30°C to Fahrenheit.", 86), ("What is -20 degrees Celsius in Fahrenheit?", -4),
])
def test_expected_answers(question, answer):
    value, _ = expected_answer(user(question))
    assert value == pytest.approx(answer)


@pytest.mark.parametrize("response, reward", [
    ("717 + 82 = 799.", 1.0),
    ("799", 1.0),
    ("The answer is 799.", 1.0),
    ("717 + 82 = 789.", 0.0),
    ("717 + 82 = 799. No wait, it is 800.", 0.0),   # the final number is wrong
    ("I think 799, or maybe 800.", 0.0),
    ("717 plus 82", 0.0),                          # restates the question, no answer
    ("", 0.0),
    ("7990", 0.0),
])
def test_arithmetic_correct_reads_the_final_number(response, reward):
    assert arithmetic_correct(user("What is the sum of 717 and 82?"), response) == reward


def test_negative_and_decimal_numbers():
    assert arithmetic_correct(user("Convert -20°C to Fahrenheit."), "-20°C is -4°F.") == 1.0
    assert arithmetic_correct(user("Convert -20°C to Fahrenheit."), "-20°C is 4°F.") == 0.0
    assert arithmetic_correct(user("How many centimeters are in 2 inches?"), "2 inches is 5.08 centimeters.") == 1.0
    assert arithmetic_correct(user("How many centimeters are in 2 inches?"), "2 inches is 4 centimeters.") == 0.0
    assert arithmetic_correct(user("How many meters are in 3 kilometers?"), "3 kilometers is 3,000 meters.") == 1.0
    assert arithmetic_correct(user("What is 430-294?"), "430-294=136") == 1.0


def test_unverifiable_prompts_score_zero_and_a_string_prompt_works():
    assert not verifiable(user("What is the capital of France?"))
    assert arithmetic_correct(user("What is the capital of France?"), "Paris, 42") == 0.0
    assert arithmetic_correct("What is 2 + 3?", "5") == 1.0
    # the last user turn is the question
    chat = user("What is 2 + 3?") + [{"role": "assistant", "content": "5"}] + user("What is 4 + 4?")
    assert arithmetic_correct(chat, "8") == 1.0


def test_every_numeric_demo_pair_is_ranked_right():
    checked = 0
    for line in (DEMO / "preferences.jsonl").read_text().splitlines():
        row = json.loads(line)
        family, kind = row["source"].split("/")[1:]
        if family not in ("arithmetic", "conversions"):
            continue
        assert verifiable(row["prompt"]), row["prompt"]
        assert arithmetic_correct(row["prompt"], row["chosen"]) == 1.0, row
        assert arithmetic_correct(row["prompt"], row["rejected"]) == (1.0 if kind == "ramble_right" else 0.0), row
        checked += 1
    assert checked == 200
    prompts = [json.loads(line)["prompt"] for line in (DEMO / "prompts.jsonl").read_text().splitlines()]
    assert sum(map(verifiable, prompts)) == 48  # 28 arithmetic + 20 conversions


def test_concise_rules():
    assert concise(None, "") == 1.0
    assert concise(None, "one two") == pytest.approx(0.95)
    assert concise(None, "w " * 100) == 0.0
    q = user("What is 2 + 3?")
    assert arithmetic_concise(q, "5") > arithmetic_concise(q, "Well, let me think about it, 2 + 3 = 5.") > 1.0
    assert arithmetic_concise(q, "6") == 0.0


def test_graded_rule_gives_partial_credit_by_closeness_and_keeps_the_exact_ranking():
    from alignkit.plugins.rules.demo import arithmetic_graded

    q = user("What is 711 - 601?")
    right, close, far = (arithmetic_graded(q, r) for r in ("711 - 601 = 110.", "711 - 601 = 32.", "711 - 601 is 599."))
    assert right == 1.0
    assert close == pytest.approx(0.5 / (1 + 78 / 110))
    assert far == pytest.approx(0.5 / (1 + 489 / 110))
    assert right > close > far > 0.0
    # no answer at all (nothing, or only the question's own numbers) earns nothing
    assert arithmetic_graded(q, "I am not sure.") == 0.0
    assert arithmetic_graded(q, "711 - 601") == 0.0
    # every wrong answer stays below every right one, however close
    assert arithmetic_graded(q, "711 - 601 = 111.") < 0.5
    # the answer may equal an operand; unverifiable prompts score 0
    assert arithmetic_graded(user("What is 7 * 1?"), "7 * 1 = 7") == 1.0
    assert arithmetic_graded(user("What is the capital of France?"), "Paris, 42") == 0.0
    # a conversion off by a factor of ten gets less than one off by a little
    km = user("Convert 3 kilometers to meters.")
    assert arithmetic_graded(km, "3 kilometers is 2900 meters.") > arithmetic_graded(km, "3 kilometers is 300 meters.")
