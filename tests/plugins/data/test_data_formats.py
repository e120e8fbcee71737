"""Every record format converts to the normalised columns (small hand-written files)."""

import json

import pytest

from alignkit.core import DataError
from alignkit.plugins.data.plugin import FilesDataSource

U = lambda text: {"role": "user", "content": text}  # noqa: E731
A = lambda text: {"role": "assistant", "content": text}  # noqa: E731
S = lambda text: {"role": "system", "content": text}  # noqa: E731


def jsonl(path, rows):
    path.write_text("".join(json.dumps(r) + "\n" for r in rows), encoding="utf-8")
    return str(path)


def source(**files):
    return FilesDataSource(eval_fraction=0.0, **files)


# -- SFT --------------------------------------------------------------------------------


def test_chat_messages(tmp_path):
    conv = [S("Be brief."), U("Hi"), A("Hello!"), U("2+2?"), A("4")]
    src = source(sft=jsonl(tmp_path / "chat.jsonl", [{"messages": conv, "extra": 1}]))
    ds = src.sft("train")
    assert ds.column_names == ["messages"]
    assert ds[0]["messages"] == conv
    assert src.formats == {"sft": "messages"}
    assert src.sft("eval") is None  # eval_fraction=0


@pytest.mark.parametrize("row, expected", [
    ({"prompt": "Hi", "completion": "Hello"}, [U("Hi"), A("Hello")]),
    ({"prompt": [U("Hi")], "completion": [A("Hello")]}, [U("Hi"), A("Hello")]),
    ({"prompt": [S("sys"), U("Hi")], "completion": "Hello"}, [S("sys"), U("Hi"), A("Hello")]),
])
def test_trl_prompt_completion(tmp_path, row, expected):
    ds = source(sft=jsonl(tmp_path / "pc.jsonl", [row])).sft("train")
    assert ds[0]["messages"] == expected


def test_alpaca(tmp_path):
    rows = [
        {"instruction": "Add the numbers.", "input": "2 and 3", "output": "5"},
        {"instruction": "Say hi.", "input": "", "output": "Hi!"},
        {"instruction": "Say hi.", "output": "Hello!", "system": "Be nice."},
    ]
    src = source(sft=jsonl(tmp_path / "alpaca.jsonl", rows))
    msgs = src.sft("train")["messages"]
    assert msgs[0] == [U("Add the numbers.\n\n2 and 3"), A("5")]
    assert msgs[1] == [U("Say hi."), A("Hi!")]
    assert msgs[2] == [S("Be nice."), U("Say hi."), A("Hello!")]
    assert src.formats["sft"] == "alpaca"


def test_dolly(tmp_path):
    rows = [
        {"instruction": "Who wrote it?", "context": "Hamlet was written by Shakespeare.",
         "response": "Shakespeare.", "category": "closed_qa"},
        {"instruction": "Name a colour.", "context": "", "response": "Blue."},
    ]
    src = source(sft=jsonl(tmp_path / "dolly.jsonl", rows))
    msgs = src.sft("train")["messages"]
    assert msgs[0] == [U("Who wrote it?\n\nHamlet was written by Shakespeare."), A("Shakespeare.")]
    assert msgs[1] == [U("Name a colour."), A("Blue.")]
    assert src.formats["sft"] == "dolly"


def test_sft_from_preference_pairs_uses_chosen(tmp_path):
    ds = source(sft=jsonl(tmp_path / "p.jsonl", [{"prompt": "Q", "chosen": "good", "rejected": "bad"}])).sft("train")
    assert ds[0]["messages"] == [U("Q"), A("good")]


# -- preferences ------------------------------------------------------------------------


def test_preference_strings_and_defaults(tmp_path):
    rows = [{"prompt": "2+2?", "chosen": "4", "rejected": "5"},
            {"prompt": "3+3?", "chosen": "6", "rejected": "7", "strength": 0.75, "source": "mine"}]
    ds = source(preferences=jsonl(tmp_path / "pairs.jsonl", rows)).preferences("train")
    assert ds.column_names == ["prompt", "chosen", "rejected", "strength", "source"]
    assert ds[0] == {"prompt": [U("2+2?")], "chosen": "4", "rejected": "5", "strength": 1.0, "source": "pairs.jsonl"}
    assert ds[1]["strength"] == 0.75 and ds[1]["source"] == "mine"


def test_preference_conversational_explicit_prompt(tmp_path):
    row = {"prompt": [S("sys"), U("Hi")], "chosen": [A("Hello!")], "rejected": [A("Go away.")]}
    ds = source(preferences=jsonl(tmp_path / "p.jsonl", [row])).preferences("train")
    assert ds[0]["prompt"] == [S("sys"), U("Hi")]
    assert (ds[0]["chosen"], ds[0]["rejected"]) == ("Hello!", "Go away.")


def test_preference_conversational_implicit_prompt(tmp_path):
    row = {"chosen": [U("Hi"), A("Hey"), U("2+2?"), A("4")],
           "rejected": [U("Hi"), A("Hey"), U("2+2?"), A("5")]}
    ds = source(preferences=jsonl(tmp_path / "p.jsonl", [row])).preferences("train")
    assert ds[0]["prompt"] == [U("Hi"), A("Hey"), U("2+2?")]
    assert (ds[0]["chosen"], ds[0]["rejected"]) == ("4", "5")


HH_CHOSEN = "\n\nHuman: Hi there\n\nAssistant: Hello! How can I help?\n\nHuman: What is 2+2?\n\nAssistant: 2+2 is 4."
HH_REJECTED = "\n\nHuman: Hi there\n\nAssistant: Hello! How can I help?\n\nHuman: What is 2+2?\n\nAssistant: Five."


def test_hh_rlhf_transcripts(tmp_path):
    src = source(preferences=jsonl(tmp_path / "hh.jsonl", [{"chosen": HH_CHOSEN, "rejected": HH_REJECTED}]))
    row = src.preferences("train")[0]
    assert src.formats["preferences"] == "hh_rlhf"
    assert row["prompt"] == [U("Hi there"), A("Hello! How can I help?"), U("What is 2+2?")]
    assert row["chosen"] == "2+2 is 4."  # leading space stripped
    assert row["rejected"] == "Five."


def test_hh_rlhf_joins_repeated_speaker_turns(tmp_path):
    chosen = "\n\nHuman: Price?\n\nAssistant: Umm. One second...\n\nAssistant: About $50."
    rejected = "\n\nHuman: Price?\n\nAssistant: No idea."
    row = source(preferences=jsonl(tmp_path / "hh.jsonl", [{"chosen": chosen, "rejected": rejected}])).preferences("train")[0]
    assert row["prompt"] == [U("Price?")]
    assert row["chosen"] == "Umm. One second...\n\nAbout $50."


def test_hh_rlhf_forced_format_and_sft(tmp_path):
    path = jsonl(tmp_path / "hh.jsonl", [{"chosen": HH_CHOSEN, "rejected": HH_REJECTED}])
    src = FilesDataSource(sft=path, preferences=path, format="hh_rlhf", eval_fraction=0)
    assert src.sft("train")[0]["messages"][-1] == A("2+2 is 4.")
    assert src.preferences("train")[0]["chosen"] == "2+2 is 4."
    assert src.formats == {"sft": "hh_rlhf", "preferences": "hh_rlhf"}


# -- prompts ----------------------------------------------------------------------------


def test_prompt_only_string_and_messages(tmp_path):
    rows = [{"prompt": "Tell me a joke."}, {"prompt": [S("Be funny."), U("Another one.")]}]
    src = source(prompts=jsonl(tmp_path / "prompts.jsonl", rows))
    ds = src.prompts("train")
    assert ds.column_names == ["prompt"]
    assert ds["prompt"] == [[U("Tell me a joke.")], [S("Be funny."), U("Another one.")]]
    assert src.formats["prompts"] == "prompt"


def test_prompts_from_instruction_and_chat_files(tmp_path):
    alpaca = jsonl(tmp_path / "a.jsonl", [{"instruction": "Sum", "input": "1, 2", "output": "3"}])
    assert source(prompts=alpaca).prompts("train")[0]["prompt"] == [U("Sum\n\n1, 2")]
    chat = jsonl(tmp_path / "c.jsonl", [{"messages": [U("a"), A("b"), U("c"), A("d")]}])
    assert source(prompts=chat).prompts("train")[0]["prompt"] == [U("a"), A("b"), U("c")]


def test_prompts_derived_from_preferences_then_sft(tmp_path):
    pairs = jsonl(tmp_path / "pairs.jsonl", [{"prompt": "Q1", "chosen": "a", "rejected": "b"},
                                             {"prompt": "Q1", "chosen": "c", "rejected": "d"},
                                             {"prompt": "Q2", "chosen": "e", "rejected": "f"}])
    chat = jsonl(tmp_path / "chat.jsonl", [{"messages": [U("S1"), A("x")]}])
    both = source(sft=chat, preferences=pairs)
    assert both.prompts("train")["prompt"] == [[U("Q1")], [U("Q2")]]  # each prompt once
    assert both.prompts("eval") is None
    assert source(sft=chat).prompts("train")["prompt"] == [[U("S1")]]
    assert source().prompts("train") is None


def test_forced_format_applies_only_where_it_can(tmp_path):
    alpaca = jsonl(tmp_path / "a.jsonl", [{"instruction": "Hi", "output": "Hello"}])
    pairs = jsonl(tmp_path / "p.jsonl", [{"prompt": "Q", "chosen": "a", "rejected": "b"}])
    src = FilesDataSource(sft=alpaca, preferences=pairs, format="alpaca", eval_fraction=0)
    assert src.sft("train")[0]["messages"] == [U("Hi"), A("Hello")]
    assert src.preferences("train")[0]["chosen"] == "a"
    assert src.formats == {"sft": "alpaca", "preferences": "preference"}


def test_forced_format_mismatch_names_the_missing_field(tmp_path):
    chat = jsonl(tmp_path / "c.jsonl", [{"messages": [U("Hi"), A("Hello")]}])
    with pytest.raises(DataError) as err:
        FilesDataSource(sft=chat, format="alpaca").sft("train")
    assert str(err.value) == f"{chat}:1: field 'instruction': missing (required by the 'alpaca' format)"
