"""Constitutions as data: the shipped default, llm-swarm's JSONL format, and clear errors."""

from pathlib import Path

import pytest

from alignkit.core import ConfigError, DataError
from alignkit.plugins.feedback.principles import builtin_constitutions, load_constitution

SHARED = Path("/work/shared/datasets/constitutions")


def test_the_default_constitution_ships_with_five_principles():
    assert "default" in builtin_constitutions()
    c = load_constitution("default")
    assert [p.id for p in c.principles] == ["helpful", "harmless", "honest", "not_sycophantic", "concise"]
    for p in c.principles:
        assert p.critique and p.revision and p.comparison.endswith("?")


@pytest.mark.skipif(not SHARED.exists(), reason="shared constitution files not on this machine")
def test_llm_swarm_critique_revision_format_loads():
    c = load_constitution(str(SHARED / "hf_llm_swarm_constitution_anthropic.jsonl"),
                          fewshot=str(SHARED / "hf_llm_swarm_constitution_anthropic_fewshot_chat.jsonl"))
    assert len(c.principles) == 16
    first = c.principles[0]
    assert first.id == "hf_llm_swarm_constitution_anthropic-0"
    assert first.critique.startswith("Did the response include anything that may be inappropriate for young children")
    assert first.revision in first.comparison, "a comparison question is phrased from the revision request"
    assert len(c.fewshot) == 4 and c.fewshot[0][0]["role"] == "user"
    grok = load_constitution(str(SHARED / "hf_llm_swarm_constitution_grok.jsonl"))
    assert len(grok.principles) == 2


def test_sampling_is_deterministic_and_spreads_over_principles():
    c = load_constitution("default")
    picks = [c.sample(0, f"prompt {i}").id for i in range(50)]
    assert picks == [c.sample(0, f"prompt {i}").id for i in range(50)]
    assert set(picks) == {p.id for p in c.principles}


def test_bad_constitutions_name_the_file_and_field(tmp_path):
    missing = tmp_path / "c.yaml"
    missing.write_text("principles:\n  - id: x\n    critique: a\n    revision: b\n")
    with pytest.raises(DataError, match=r"c.yaml: field 'principles\[0\].comparison'"):
        load_constitution(str(missing))
    dup = tmp_path / "d.yaml"
    dup.write_text("principles:\n" + "  - {id: x, critique: a, revision: b, comparison: c}\n" * 2)
    with pytest.raises(DataError, match="duplicate principle id 'x'"):
        load_constitution(str(dup))
    bad = tmp_path / "e.jsonl"
    bad.write_text('{"index": 0, "critic": "c", "revision": "r"}\n{"index": 1, "critic": ""}\n')
    with pytest.raises(DataError, match=r"e.jsonl:2: field 'critic'"):
        load_constitution(str(bad))
    with pytest.raises(ConfigError, match="no constitution named 'nope'; the shipped ones are: default"):
        load_constitution("nope")
