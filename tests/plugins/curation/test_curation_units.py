"""The pieces on constructed inputs with known answers: ROUGE-L and its pruned index, quality
filters, verb-noun parsing, mixing counts, prompt templates, curation filters, seed-file errors."""

import json
import random

import pytest

from alignkit.core.errors import ConfigError, DataError
from alignkit.plugins.curation import verbnoun
from alignkit.plugins.curation.curate import CurateConfig, curate
from alignkit.plugins.curation.filters import FilterConfig, instance_problem, instruction_problem
from alignkit.plugins.curation.generation import parse_instance, parse_instructions
from alignkit.plugins.curation.mixture import apportion, plan_counts
from alignkit.plugins.curation.records import example, sft_messages
from alignkit.plugins.curation.rouge import RougeIndex, near_duplicates, rouge_l
from alignkit.plugins.curation.seeds import read_seed_tasks, shipped_path
from alignkit.plugins.curation.templates import TemplateConfig, render


def test_rouge_l_is_the_lcs_f_measure():
    # LCS of "write a poem about the sea" (6) and "write a short poem about the ocean" (7) is
    # "write a poem about the" (5): P = 5/7, R = 5/6, F = 2PR/(P+R) = 10/13.
    assert rouge_l("Write a poem about the sea", "Write a short poem about the ocean") == pytest.approx(10 / 13)
    assert rouge_l("same words here", "Same words, here!") == 1.0
    assert rouge_l("", "anything") == 0.0


def test_rouge_index_finds_exactly_the_pairs_brute_force_finds():
    rng = random.Random(0)
    vocab = "write a poem story list the of about give three name sea cat dog short long best".split()
    texts = [" ".join(rng.choice(vocab) for _ in range(rng.randint(3, 9))) for _ in range(120)]
    texts += [texts[5] + " now", "the " + texts[17]]  # planted near-duplicates
    found = near_duplicates(texts, 0.7)
    for i, text in enumerate(texts):
        brute = any(rouge_l(text, other) > 0.7 for j, other in enumerate(texts) if j != i)
        assert (found[i] is not None) == brute, text
        if found[i] is not None:
            assert rouge_l(text, texts[found[i]]) > 0.7
    index = RougeIndex(0.7, texts)
    assert index.exact_scored == 0
    index.match("write a poem about the sea")
    assert index.exact_scored < len(texts) / 2, "the overlap bound rules most pairs out"


def test_quality_filters_name_the_reason():
    cfg = FilterConfig()
    assert instruction_problem("Write a haiku about autumn leaves.", cfg) is None
    assert instruction_problem("Do it now", cfg) == "too_short"
    assert instruction_problem(" ".join(["word"] * 151), cfg) == "too_long"
    assert instruction_problem("Describe the picture of the harbour.", cfg) == "banned_keyword"
    assert instruction_problem("Describe a mapping between two sets.", cfg) is None, "whole words only"
    assert instruction_problem("Write a program that sorts a list.", cfg) == "banned_prefix"
    assert instruction_problem("- Name three colours of the rainbow.", cfg) == "bad_start"
    assert instance_problem("", "", cfg) == "empty_output"
    assert instance_problem("cat", "Cat", cfg) == "output_equals_input"
    assert instance_problem("", "I'm sorry, but I cannot help with that.", cfg) == "unanswerable"
    assert instance_problem("2+2", "4", cfg) is None


def test_parsing_teacher_completions():
    assert parse_instructions("9. Write a poem about cats.\n10. Translate the text.\n11) list colours", 9) == [
        "Write a poem about cats.", "Translate the text.", "List colours"]
    assert parse_instance("Input: 2+2\nOutput: 4\n\nTask: another one", False) == ("2+2", "4")
    assert parse_instance("Output: Hello.", False) == ("", "Hello.")
    assert parse_instance("free text", False) == ("", "free text")
    assert parse_instance("Class label: Positive\nInput: I love it.", True) == ("I love it.", "Positive")
    assert parse_instance("Input: I love it.\nOutput: Positive", True) == ("I love it.", "Positive")
    assert parse_instance("Input: \nOutput: Yes", True) == ("", "Yes")


@pytest.mark.parametrize("text, pair", [
    ("Write a short story about a dragon.", ("write", "story")),
    ("Please give me three ideas for dinner.", ("give", "idea")),
    ("Come up with a name for a bakery.", ("come", "name")),
    ("Classify the sentiment of the review.", ("classify", "sentiment")),
    ("Generate a list of healthy snacks.", ("generate", "list")),
    ("What is the capital of France?", None),
    ("Is there a cure for the common cold?", None),
    ("Given a sentence, find its verb.", None),
    ("Tell me about yourself.", None),
])
def test_verb_noun_heuristic(text, pair):
    assert verbnoun.verb_noun(text) == pair


def test_verb_noun_statistics():
    stats = verbnoun.analyse(["Write a poem.", "Write a story.", "Write a poem about cats.", "Why is the sky blue?"])
    assert stats["parsed"] == 3 and stats["parsed_share"] == 0.75
    assert stats["distinct_verbs"] == 1 and stats["distinct_pairs"] == 2
    assert stats["pairs"][0] == ["write", "poem", 2]
    assert stats["verb_entropy_bits"] == 0.0


def test_apportion_and_plan_counts():
    assert apportion(10, {"a": 1, "b": 1, "c": 1}) == {"a": 4, "b": 3, "c": 3}
    available = {"big": 1000, "small": 50}
    # no weights, no size: everything, capped (examples-proportional mixing with a cap)
    assert plan_counts(available, {}, {"big": 200}, None) == {"big": 200, "small": 50}
    # no weights, a size: shared in proportion to the capped sizes
    assert plan_counts(available, {}, {"big": 200}, 100) == {"big": 80, "small": 20}
    # weights, no size: the largest mix with those shares that repeats nothing
    assert plan_counts(available, {"big": 1, "small": 1}, {}, None) == {"big": 50, "small": 50}
    # weights and a size: the small source repeats; a cap still bounds a count
    assert plan_counts(available, {"big": 1, "small": 1}, {}, 300) == {"big": 150, "small": 150}
    assert plan_counts(available, {"big": 1, "small": 1}, {"small": 40}, 300) == {"big": 150, "small": 40}
    assert plan_counts(available, {"big": 3, "small": None}, {}, 8) == {"big": 6, "small": 2}


def _rows(n, prefix="Q"):
    return [{"messages": sft_messages(f"{prefix}{i}: say the number {i}", "", f"{i}")} for i in range(n)]


def test_templates_render_each_style_and_are_deterministic():
    cfg = TemplateConfig(zero_shot=1, few_shot=1, chain_of_thought=1, shots=2, cot_trigger="Think step by step.")
    rows = _rows(60)
    first, counts = render(rows, rows, cfg, random.Random(3))
    again, _ = render(rows, rows, cfg, random.Random(3))
    assert first == again
    assert sum(counts.values()) == 60 and all(c > 5 for c in counts.values())
    for row, original in zip(first, rows):
        user, answer = row["messages"][0]["content"], row["messages"][1]["content"]
        assert answer == original["messages"][1]["content"], "the answer is never changed"
        own = original["messages"][0]["content"]
        if user.startswith("Example 1:"):
            assert user.endswith(own) and user.count("\nAnswer: ") == 2 and f"{own}\nAnswer" not in user
        elif user.endswith("Think step by step."):
            assert user == f"{own}\n\nThink step by step."
        else:
            assert user == own
    with pytest.raises(ConfigError, match="style weights"):
        TemplateConfig(zero_shot=0).weights()


def test_curation_dedup_keeps_the_best_of_each_group_and_top_k():
    texts = ["Write a poem about the sea.", "Write a poem about the ocean.", "Name three primary colours.",
             "Write a poem about the sea.", "Explain how a rainbow forms."]
    examples = [example(sft_messages(t, "", "x" * (i + 1))) for i, t in enumerate(texts)]
    scores = [0.1, 0.9, 0.5, 0.2, 0.3]
    result = curate(examples, CurateConfig(dedup=True), scores=scores)
    assert result.kept == [1, 2, 4], "the ocean poem scores best in its group"
    assert result.removed == {"exact_duplicate": 0, "near_duplicate": 2}
    plain = curate(examples, CurateConfig(dedup=True))
    assert plain.kept == [0, 2, 4], "without scores the first of each group stays"
    assert plain.removed == {"exact_duplicate": 1, "near_duplicate": 1}
    top = curate(examples, CurateConfig(top_k=2), scores=scores)
    assert top.kept == [1, 2] and top.removed == {"below_top_k": 3}
    with pytest.raises(ConfigError, match="needs quality scores"):
        curate(examples, CurateConfig(top_k=2))


def test_seed_files_and_their_errors(tmp_path):
    tasks = read_seed_tasks(shipped_path())
    assert len(tasks) == 24 and sum(t.is_classification for t in tasks) == 6
    bad = tmp_path / "seeds.jsonl"
    good = {"id": "t", "instruction": "Add the numbers.", "instances": [{"input": "2, 3", "output": "5"}]}
    cases = [
        ({**good, "instances": []}, "seeds.jsonl:2: field 'instances': expected a non-empty list"),
        ({**good, "instances": [{"input": "x"}]}, "seeds.jsonl:2: field 'instances[0].output': missing"),
        ({**good, "instruction": 3}, "seeds.jsonl:2: field 'instruction': expected a string, got int"),
        ({**good, "is_classification": "no"}, "seeds.jsonl:2: field 'is_classification': expected true or false"),
    ]
    for record, message in cases:
        bad.write_text(json.dumps(good) + "\n" + json.dumps(record) + "\n")
        with pytest.raises(DataError) as err:
            read_seed_tasks(bad, "seeds.jsonl")
        assert str(err.value).startswith(message), str(err.value)
    bad.write_text(json.dumps(good) + "\n{oops\n")
    with pytest.raises(DataError, match=r"seeds.jsonl:2: invalid JSON"):
        read_seed_tasks(bad, "seeds.jsonl")
