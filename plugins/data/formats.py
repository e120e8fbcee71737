"""Record formats: detection from a record's keys and converters to the normalised shapes.

=================== ========================================== ===========================
format              fields of a raw record                     gives
=================== ========================================== ===========================
messages            ``messages``                               sft, prompts
prompt_completion   ``prompt``, ``completion`` (TRL)            sft, prompts
alpaca              ``instruction``, ``input``?, ``output``     sft, prompts
dolly               ``instruction``, ``context``?, ``response`` sft, prompts
preference          ``prompt``?, ``chosen``, ``rejected``       preferences, sft, prompts
hh_rlhf             ``chosen``, ``rejected`` (HH transcripts)   preferences, sft, prompts
sharegpt            ``conversations`` (``from``/``value`` turns), sft, prompts; preferences
                    ``system``?; ``chosen``/``rejected``?       with ``chosen``/``rejected``
prompt              ``prompt``                                  prompts
=================== ========================================== ===========================

ShareGPT is LLaMA-Factory's default layout: turns ``{"from": "human"|"gpt"|"system",
"value": text}`` (``user``/``assistant`` are accepted too); its preference layout adds
``chosen`` and ``rejected``, each one ``{"from": "gpt", "value": text}`` message, after
``conversations`` ending with a human turn.

``auto`` picks the format per file from the keys of its first record. A forced format
(``format: alpaca``) applies to every file whose kind it can give and the others are
detected as usual, so ``format: alpaca`` with a preference file still works.
"""

from __future__ import annotations

import re
from typing import Any, Callable

from alignkit.plugins.data import records as R
from alignkit.plugins.data.records import Message, RecordError

AUTO = "auto"
FORMATS = ("messages", "prompt_completion", "alpaca", "dolly", "preference", "hh_rlhf", "sharegpt", "prompt")
FORMAT_CHOICES = (AUTO, *FORMATS)

Converter = Callable[[dict[str, Any], str], dict[str, Any]]


# -- helpers ----------------------------------------------------------------------------


def _user_text(instruction: str, extra: str) -> str:
    return f"{instruction}\n\n{extra}" if extra.strip() else instruction


def _system(raw: dict[str, Any]) -> list[Message]:
    system = R.optional_text(raw, "system")
    return [{"role": "system", "content": system}] if system.strip() else []


def _strength_and_source(raw: dict[str, Any], default_source: str) -> tuple[float, str]:
    value = R.strength(raw.get("strength"))
    source = raw.get("source")
    if source is None or source == "":
        source = default_source
    elif not isinstance(source, str):
        raise RecordError("source", f"expected a string, got {R.type_name(source)}")
    return value, source


# -- messages ---------------------------------------------------------------------------


def _messages_sft(raw: dict[str, Any], source: str) -> dict[str, Any]:
    return R.sft_record(R.messages(R.require(raw, "messages", "messages"), "messages"))


def _messages_prompts(raw: dict[str, Any], source: str) -> dict[str, Any]:
    msgs = R.messages(R.require(raw, "messages", "messages"), "messages")
    if not any(m["role"] == "user" for m in msgs):
        raise RecordError("messages", "needs at least one user turn")
    return R.prompt_record(R.prompt_of_conversation(msgs))


# -- prompt / completion (TRL) ----------------------------------------------------------


def _completion_messages(value: Any) -> list[Message]:
    if isinstance(value, str):
        return [{"role": "assistant", "content": R.text(value, "completion", empty="empty response")}]
    if not isinstance(value, list):
        raise RecordError("completion", f"expected a string or a list of messages, got {R.type_name(value)}")
    msgs = R.messages(value, "completion")
    if msgs[0]["role"] != "assistant":
        raise RecordError("completion[0].role", f"the completion must start with an assistant turn, not {msgs[0]['role']!r}")
    return msgs


def _pc_sft(raw: dict[str, Any], source: str) -> dict[str, Any]:
    prompt = R.prompt_messages(R.require(raw, "prompt", "prompt_completion"), "prompt")
    completion = _completion_messages(R.require(raw, "completion", "prompt_completion"))
    return R.sft_record(prompt + completion, "completion")


def _prompt_only(raw: dict[str, Any], source: str, fmt: str = "prompt") -> dict[str, Any]:
    return R.prompt_record(R.prompt_messages(R.require(raw, "prompt", fmt), "prompt"))


# -- Alpaca / Dolly ---------------------------------------------------------------------


def _instruction_prompt(raw: dict[str, Any], fmt: str, extra_field: str) -> list[Message]:
    instruction = R.text(R.require(raw, "instruction", fmt), "instruction", empty="empty instruction")
    extra = R.optional_text(raw, extra_field)
    return _system(raw) + [{"role": "user", "content": _user_text(instruction, extra)}]


def _instruction_sft(fmt: str, extra_field: str, answer_field: str) -> Converter:
    def convert(raw: dict[str, Any], source: str) -> dict[str, Any]:
        prompt = _instruction_prompt(raw, fmt, extra_field)
        answer = R.text(R.require(raw, answer_field, fmt), answer_field, empty="empty response")
        return R.sft_record(prompt + [{"role": "assistant", "content": answer}])
    return convert


def _instruction_prompts(fmt: str, extra_field: str) -> Converter:
    def convert(raw: dict[str, Any], source: str) -> dict[str, Any]:
        return R.prompt_record(_instruction_prompt(raw, fmt, extra_field))
    return convert


# -- preference pairs (TRL explicit or implicit prompt) ----------------------------------


def _pair(raw: dict[str, Any]) -> tuple[list[Message], str, str]:
    chosen = R.require(raw, "chosen", "preference")
    rejected = R.require(raw, "rejected", "preference")
    if raw.get("prompt") is not None:
        prompt = R.prompt_messages(raw["prompt"], "prompt")
        return prompt, R.response_text(chosen, "chosen"), R.response_text(rejected, "rejected")
    # TRL's implicit prompt: chosen and rejected are whole conversations sharing a prefix.
    if not isinstance(chosen, list):
        raise RecordError("prompt", "missing (required when 'chosen' and 'rejected' are strings)")
    if not isinstance(rejected, list):
        raise RecordError("rejected", f"expected a list of messages like 'chosen', got {R.type_name(rejected)}")
    c_msgs, r_msgs = R.messages(chosen, "chosen"), R.messages(rejected, "rejected")
    if c_msgs[:-1] != r_msgs[:-1]:
        raise RecordError("rejected", "the conversation before the final answer differs from 'chosen'")
    for field, msgs in (("chosen", c_msgs), ("rejected", r_msgs)):
        if len(msgs) < 2 or msgs[-1]["role"] != "assistant":
            raise RecordError(field, "expected a conversation ending with the assistant's answer")
    prompt = c_msgs[:-1]
    if prompt[-1]["role"] != "user":
        raise RecordError("chosen", "the conversation before the final answer must end with a user turn")
    return prompt, c_msgs[-1]["content"], r_msgs[-1]["content"]


def _pairs_to(kind: str, pair: Callable[[dict[str, Any]], tuple[list[Message], str, str]]) -> Converter:
    def convert(raw: dict[str, Any], source: str) -> dict[str, Any]:
        prompt, chosen, rejected = pair(raw)
        if kind == "preferences":
            value, src = _strength_and_source(raw, source)
            return R.preference_record(prompt, chosen, rejected, value, src)
        if kind == "sft":
            return R.sft_record(prompt + [{"role": "assistant", "content": chosen}], "chosen")
        return R.prompt_record(prompt)
    return convert


# -- HH-RLHF transcripts ----------------------------------------------------------------

_HH_TURN = re.compile(r"\n\n(Human|Assistant):")


def is_hh_transcript(value: Any) -> bool:
    return (isinstance(value, str) and "Assistant:" in value
            and ("\n\nHuman:" in value or value.lstrip().startswith("Human:")))


def parse_hh(transcript: Any, field: str) -> list[Message]:
    """``"\\n\\nHuman: ...\\n\\nAssistant: ..."`` -> messages (turn text stripped; consecutive
    turns of one speaker are joined with a blank line)."""
    if not isinstance(transcript, str):
        raise RecordError(field, f"expected an HH-RLHF transcript string, got {R.type_name(transcript)}")
    text = transcript
    if text.lstrip().startswith("Human:"):
        text = "\n\n" + text.lstrip()
    parts = _HH_TURN.split(text)
    if len(parts) < 3:
        raise RecordError(field, "not an HH-RLHF transcript (no '\\n\\nHuman:' / '\\n\\nAssistant:' turns)")
    if parts[0].strip():
        raise RecordError(field, "text before the first '\\n\\nHuman:' turn")
    turns: list[Message] = []
    for n, (speaker, content) in enumerate(zip(parts[1::2], parts[2::2]), start=1):
        role = "user" if speaker == "Human" else "assistant"
        content = content.strip()
        if not content:
            if n == len(parts) // 2 and role == "assistant":
                raise RecordError(field, "empty response")
            raise RecordError(field, f"empty {speaker} turn (turn {n})")
        if turns and turns[-1]["role"] == role:
            turns[-1]["content"] += "\n\n" + content
        else:
            turns.append({"role": role, "content": content})
    if turns[0]["role"] != "user":
        raise RecordError(field, "the dialogue must start with a Human turn")
    if turns[-1]["role"] != "assistant":
        raise RecordError(field, "the dialogue must end with an Assistant turn")
    return turns


def _hh_pair(raw: dict[str, Any]) -> tuple[list[Message], str, str]:
    chosen = parse_hh(R.require(raw, "chosen", "hh_rlhf"), "chosen")
    rejected = parse_hh(R.require(raw, "rejected", "hh_rlhf"), "rejected")
    if chosen[:-1] != rejected[:-1]:
        raise RecordError("rejected", "the dialogue before the final Assistant turn differs from 'chosen'")
    return chosen[:-1], chosen[-1]["content"], rejected[-1]["content"]


# -- ShareGPT (LLaMA-Factory) --------------------------------------------------------------

SHAREGPT_ROLES = {"human": "user", "user": "user", "gpt": "assistant", "assistant": "assistant",
                  "system": "system"}


def _sharegpt_turn(turn: Any, where: str) -> Message:
    if not isinstance(turn, dict):
        raise RecordError(where, f"expected a turn object with 'from' and 'value', got {R.type_name(turn)}")
    speaker = turn.get("from")
    if speaker is None:
        raise RecordError(f"{where}.from", "missing")
    if speaker not in SHAREGPT_ROLES:
        raise RecordError(f"{where}.from", f"unknown role {speaker!r}; use one of: {', '.join(SHAREGPT_ROLES)}")
    if turn.get("value") is None:
        raise RecordError(f"{where}.value", "missing")
    return {"role": SHAREGPT_ROLES[speaker], "content": turn["value"]}


def _sharegpt_messages(raw: dict[str, Any]) -> list[Message]:
    """``system`` + ``conversations`` as validated chat messages (field names as in the file)."""
    turns = R.require(raw, "conversations", "sharegpt")
    if not isinstance(turns, list):
        raise RecordError("conversations", f"expected a list of turns, got {R.type_name(turns)}")
    msgs = [_sharegpt_turn(turn, f"conversations[{i}]") for i, turn in enumerate(turns)]
    try:  # validate contents and the system-first rule; name the ShareGPT field on failure
        msgs = R.messages(msgs, "conversations")
    except RecordError as exc:
        raise RecordError((exc.field or "").replace(".content", ".value").replace(".role", ".from"),
                          exc.message) from None
    system = _system(raw)
    if system and msgs[0]["role"] == "system":
        raise RecordError("system", "a system prompt given twice: as 'system' and as the first turn of 'conversations'")
    return system + msgs


def _sharegpt_answer(raw: dict[str, Any], field: str) -> str:
    value = R.require(raw, field, "sharegpt preference")
    if isinstance(value, str):
        return R.text(value, field, empty="empty response")
    message = _sharegpt_turn(value, field)
    if message["role"] != "assistant":
        raise RecordError(f"{field}.from", f"expected the answer of 'gpt', not {value['from']!r}")
    return R.text(message["content"], f"{field}.value", empty="empty response")


def _sharegpt_sft(raw: dict[str, Any], source: str) -> dict[str, Any]:
    msgs = _sharegpt_messages(raw)
    if raw.get("chosen") is not None:  # a preference record: its chosen answer completes it
        return R.sft_record(msgs + [{"role": "assistant", "content": _sharegpt_answer(raw, "chosen")}], "chosen")
    return R.sft_record(msgs, "conversations")


def _sharegpt_prompts(raw: dict[str, Any], source: str) -> dict[str, Any]:
    msgs = _sharegpt_messages(raw)
    if not any(m["role"] == "user" for m in msgs):
        raise RecordError("conversations", "needs at least one human turn")
    return R.prompt_record(R.prompt_of_conversation(msgs))


def _sharegpt_preferences(raw: dict[str, Any], source: str) -> dict[str, Any]:
    if raw.get("chosen") is None and raw.get("rejected") is None:
        raise RecordError("chosen", "missing: ShareGPT preference data needs 'chosen' and 'rejected' "
                                    "next to 'conversations' (LLaMA-Factory's preference layout)")
    prompt = _sharegpt_messages(raw)
    if prompt[-1]["role"] != "user":
        raise RecordError("conversations", f"the conversation before 'chosen' must end with a human turn, "
                                           f"not {raw['conversations'][-1].get('from')!r}")
    chosen, rejected = _sharegpt_answer(raw, "chosen"), _sharegpt_answer(raw, "rejected")
    value, src = _strength_and_source(raw, source)
    return R.preference_record(prompt, chosen, rejected, value, src)


# -- table ------------------------------------------------------------------------------

CONVERTERS: dict[str, dict[str, Converter]] = {
    "messages": {"sft": _messages_sft, "prompts": _messages_prompts},
    "prompt_completion": {
        "sft": _pc_sft,
        "prompts": lambda raw, source: _prompt_only(raw, source, "prompt_completion"),
    },
    "alpaca": {
        "sft": _instruction_sft("alpaca", "input", "output"),
        "prompts": _instruction_prompts("alpaca", "input"),
    },
    "dolly": {
        "sft": _instruction_sft("dolly", "context", "response"),
        "prompts": _instruction_prompts("dolly", "context"),
    },
    "preference": {kind: _pairs_to(kind, _pair) for kind in R.KINDS},
    "hh_rlhf": {kind: _pairs_to(kind, _hh_pair) for kind in R.KINDS},
    "sharegpt": {"sft": _sharegpt_sft, "prompts": _sharegpt_prompts, "preferences": _sharegpt_preferences},
    "prompt": {"prompts": _prompt_only},
}

_EXPECTED = {
    "sft": ("messages", "'messages', 'conversations' (ShareGPT), 'prompt'+'completion', "
                        "'instruction'+'output' (Alpaca), 'instruction'+'response' (Dolly) or "
                        "'prompt'+'chosen'+'rejected'"),
    "preferences": ("chosen", "'chosen'+'rejected' (with or without 'prompt' or ShareGPT 'conversations'), "
                              "or HH-RLHF transcripts"),
    "prompts": ("prompt", "'prompt', 'messages', 'conversations', 'instruction' or preference pairs"),
}


def formats_for(kind: str) -> tuple[str, ...]:
    return tuple(fmt for fmt in FORMATS if kind in CONVERTERS[fmt])


def detect(raw: dict[str, Any]) -> str | None:
    """The format a record's keys suggest, or None."""
    keys = {k for k, v in raw.items() if v is not None}
    if "messages" in keys:
        return "messages"
    if "conversations" in keys:
        return "sharegpt"
    if "chosen" in keys or "rejected" in keys:
        return "hh_rlhf" if is_hh_transcript(raw["chosen"] if "chosen" in keys else raw["rejected"]) else "preference"
    if "instruction" in keys:
        return "dolly" if ("response" in keys or "context" in keys) else "alpaca"
    if "prompt" in keys and "completion" in keys:
        return "prompt_completion"
    if "prompt" in keys:
        return "prompt"
    return None


def choose_format(raw: dict[str, Any], kind: str, forced: str = AUTO) -> str:
    """The format of a file of ``kind`` whose first record is ``raw``."""
    if forced != AUTO and kind in CONVERTERS.get(forced, {}):
        return forced
    fmt = detect(raw)
    if fmt == "prompt" and kind == "sft":
        fmt = "prompt_completion"  # so that the converter names the missing 'completion'
    if fmt is None or kind not in CONVERTERS[fmt]:
        field, expected = _EXPECTED[kind]
        keys = ", ".join(repr(k) for k in raw) or "none"
        looks = f" (it looks like '{fmt}' data)" if fmt else ""
        raise RecordError(field, f"missing: cannot read this record as {kind} data{looks}; "
                                 f"found keys {keys}, expected {expected}")
    return fmt


def convert(raw: dict[str, Any], kind: str, fmt: str, source: str) -> dict[str, Any]:
    """Convert one raw record of format ``fmt`` to the normalised ``kind`` record."""
    return CONVERTERS[fmt][kind](raw, source)
