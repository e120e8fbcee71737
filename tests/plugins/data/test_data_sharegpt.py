"""ShareGPT (LLaMA-Factory's default layout) for SFT, prompts and preference pairs, its
errors, and a DPO pipeline trained from ShareGPT files."""

import json
from pathlib import Path

import pytest

from alignkit.core import DataError
from alignkit.plugins.data.plugin import FilesDataSource

U = lambda text: {"role": "user", "content": text}  # noqa: E731
A = lambda text: {"role": "assistant", "content": text}  # noqa: E731
S = lambda text: {"role": "system", "content": text}  # noqa: E731
H = lambda text: {"from": "human", "value": text}  # noqa: E731
G = lambda text: {"from": "gpt", "value": text}  # noqa: E731

CHATS = [
    {"conversations": [{"from": "system", "value": "Be brief."}, H("Hi"), G("Hello!")]},
    {"system": "You do sums.", "conversations": [H("2+2?"), G("4"), H("And 3+3?"), G("6")]},
    {"conversations": [{"from": "user", "value": "Capital of France?"}, {"from": "assistant", "value": "Paris."}]},
]
PAIRS = [  # LLaMA-Factory's ShareGPT preference layout
    {"conversations": [H("Capital of France?")], "chosen": G("Paris."), "rejected": G("Lyon.")},
    {"system": "Be brief.", "conversations": [H("2+2?"), G("4"), H("Times 3?")],
     "chosen": G("12"), "rejected": {"from": "gpt", "value": "7"}},
]


def jsonl(path, rows):
    path.write_text("".join(json.dumps(r) + "\n" for r in rows), encoding="utf-8")
    return str(path)


def test_sharegpt_conversations_for_sft_and_prompts(tmp_path):
    src = FilesDataSource(sft=jsonl(tmp_path / "chat.jsonl", CHATS), eval_fraction=0)
    assert src.sft("train")["messages"] == [
        [S("Be brief."), U("Hi"), A("Hello!")],
        [S("You do sums."), U("2+2?"), A("4"), U("And 3+3?"), A("6")],
        [U("Capital of France?"), A("Paris.")],
    ]
    assert src.formats == {"sft": "sharegpt"}
    assert src.prompts("train")["prompt"] == [[S("Be brief."), U("Hi")],
                                              [S("You do sums."), U("2+2?"), A("4"), U("And 3+3?")],
                                              [U("Capital of France?")]]


def test_sharegpt_preference_pairs(tmp_path):
    path = jsonl(tmp_path / "pairs.jsonl", PAIRS)
    src = FilesDataSource(preferences=path, sft=path, eval_fraction=0)
    pairs = src.preferences("train")
    assert pairs["prompt"] == [[U("Capital of France?")], [S("Be brief."), U("2+2?"), A("4"), U("Times 3?")]]
    assert pairs["chosen"] == ["Paris.", "12"] and pairs["rejected"] == ["Lyon.", "7"]
    assert pairs["strength"] == [1.0, 1.0] and pairs["source"] == ["pairs.jsonl", "pairs.jsonl"]
    # SFT from preference records trains on the chosen answer
    assert src.sft("train")["messages"][0] == [U("Capital of France?"), A("Paris.")]
    assert src.formats == {"preferences": "sharegpt", "sft": "sharegpt"}


def test_sharegpt_matches_the_same_data_as_chat_messages(tmp_path):
    """The ShareGPT file and its ``messages`` twin give the same dataset."""
    chat = [{"messages": [S("Be brief."), U("Hi"), A("Hello!")]},
            {"messages": [S("You do sums."), U("2+2?"), A("4"), U("And 3+3?"), A("6")]},
            {"messages": [U("Capital of France?"), A("Paris.")]}]
    sharegpt = FilesDataSource(sft=jsonl(tmp_path / "s.jsonl", CHATS), eval_fraction=0).sft("train")
    messages = FilesDataSource(sft=jsonl(tmp_path / "m.jsonl", chat), eval_fraction=0).sft("train")
    assert sharegpt.to_list() == messages.to_list()


@pytest.mark.parametrize("kind, row, expected", [
    ("sft", {"conversations": [H("Hi"), {"from": "function_call", "value": "{}"}]},
     "field 'conversations[1].from': unknown role 'function_call'; use one of: human, user, gpt, assistant, system"),
    ("sft", {"conversations": [H("Hi"), {"value": "x"}]}, "field 'conversations[1].from': missing"),
    ("sft", {"conversations": [H("Hi"), G("")]}, "field 'conversations[1].value': empty response"),
    ("sft", {"conversations": [H("Hi"), {"from": "gpt"}]}, "field 'conversations[1].value': missing"),
    ("sft", {"conversations": [H("Hi"), G("Yo"), {"from": "system", "value": "x"}]},
     "field 'conversations[2].from': a system turn may only come first"),
    ("sft", {"conversations": [H("Hi")]}, "field 'conversations': needs at least one assistant turn"),
    ("sft", {"conversations": "Hi"}, "field 'conversations': expected a list of turns, got string"),
    ("sft", {"system": "A", "conversations": [{"from": "system", "value": "B"}, H("Hi"), G("Yo")]},
     "field 'system': a system prompt given twice: as 'system' and as the first turn of 'conversations'"),
    ("preferences", {"conversations": [H("Q")], "chosen": {"from": "human", "value": "a"}, "rejected": G("b")},
     "field 'chosen.from': expected the answer of 'gpt', not 'human'"),
    ("preferences", {"conversations": [H("Q")], "chosen": G("a"), "rejected": {"from": "bard", "value": "b"}},
     "field 'rejected.from': unknown role 'bard'; use one of: human, user, gpt, assistant, system"),
    ("preferences", {"conversations": [H("Q"), G("A")], "chosen": G("a"), "rejected": G("b")},
     "field 'conversations': the conversation before 'chosen' must end with a human turn, not 'gpt'"),
    ("preferences", {"conversations": [H("Q")], "chosen": G("a")},
     "field 'rejected': missing (required by the 'sharegpt preference' format)"),
    ("preferences", {"conversations": [H("Q")]},
     "field 'chosen': missing: ShareGPT preference data needs 'chosen' and 'rejected' next to 'conversations' "
     "(LLaMA-Factory's preference layout)"),
])
def test_sharegpt_errors_name_file_line_and_field(tmp_path, kind, row, expected):
    good = CHATS[0] if kind == "sft" else PAIRS[0]
    path = tmp_path / "bad.jsonl"
    path.write_text(json.dumps(good) + "\n\n" + json.dumps(row) + "\n", encoding="utf-8")
    with pytest.raises(DataError) as err:
        getattr(FilesDataSource(**{kind: str(path)}, eval_fraction=0), kind)("train")
    assert str(err.value) == f"{path}:3: {expected}"  # line 2 is blank


def test_dpo_pipeline_trains_from_sharegpt_files(run_alignkit, tmp_path):
    chats = [{"conversations": [H(f"What is {i} + {i}?"), G(f"{2 * i}")]} for i in range(8)]
    pairs = [{"conversations": [H(f"What is {i} + 1?")], "chosen": G(f"{i + 1}"), "rejected": G(f"{i + 2}")}
             for i in range(8)]
    rd = run_alignkit("pipeline=dpo", "pipeline.stages=[{name: sft, optimizer: sft, requires: sft}, "
                      "{name: dpo, optimizer: dpo, requires: preferences}]",  # the data's part; evaluate has its tests
                      "data=files", f"data.sft={jsonl(tmp_path / 'sft.jsonl', chats)}",
                      f"data.preferences={jsonl(tmp_path / 'pref.jsonl', pairs)}", "trainer.max_steps=2",
                      "optimizer.max_eval_pairs=2", "optimizer.kl_prompts=0", f"optimizer.cache_dir={tmp_path / 'ref'}")
    stages = json.loads((Path(rd.path) / "summary.json").read_text())["stages"]
    assert [s["status"] for s in stages.values()] == ["completed"] * 2
    assert stages["sft"]["metrics"]["data/train_examples"] == 7  # 8 less the 10% held out
    assert stages["dpo"]["metrics"]["data/train_pairs"] == 7
