"""Model-agnostic language-model math shared by every optimizer.

Two ideas carry the speed: sequences are packed into one row (no padding work; attention
stays inside each sequence through restarting ``position_ids``), and the output
vocabulary is projected only at the positions whose next token is scored (completion
tokens), never at prompt or padding positions.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any, Sequence

import torch
import torch.nn.functional as F


@dataclass
class Encoded:
    """One tokenised sequence and the mask of tokens that are scored (trained on)."""

    input_ids: list[int]
    scored: list[bool]

    @property
    def num_scored(self) -> int:
        return sum(self.scored)


def render(tokenizer: Any, messages: Sequence[dict], *, generation_prompt: bool = False) -> str:
    return tokenizer.apply_chat_template(list(messages), tokenize=False, add_generation_prompt=generation_prompt)


def encode_spans(tokenizer: Any, text: str, spans: Sequence[tuple[int, int]], max_length: int) -> Encoded:
    """Tokenise ``text``; a token is scored when its characters lie inside one of ``spans``.

    Truncates from the end to ``max_length`` tokens (the prompt is kept).
    """
    enc = tokenizer(text, add_special_tokens=False, return_offsets_mapping=True)
    ids = list(enc["input_ids"])
    scored = []
    for start, end in enc["offset_mapping"]:
        inside = any(s <= start and end <= e and end > start for s, e in spans)
        scored.append(inside)
    return Encoded(ids[:max_length], scored[:max_length])


def encode_conversation(tokenizer: Any, messages: Sequence[dict], max_length: int) -> Encoded:
    """Chat-template a conversation; score every assistant turn (content and end-of-turn)."""
    messages = list(messages)
    text = render(tokenizer, messages)
    spans: list[tuple[int, int]] = []
    for i, message in enumerate(messages):
        if message["role"] != "assistant":
            continue
        before = render(tokenizer, messages[:i], generation_prompt=True)
        through = render(tokenizer, messages[: i + 1])
        if not text.startswith(through) or not through.startswith(before):
            raise ValueError("the tokenizer's chat template does not render conversations as prefixes")
        spans.append((len(before), len(through)))
    return encode_spans(tokenizer, text, spans, max_length)


def encode_prompt_response(tokenizer: Any, prompt: Sequence[dict], response: str, max_length: int) -> Encoded:
    """Chat-template ``prompt`` + one assistant ``response``; score the response only.

    Too long a sequence loses the *start of the prompt* first (the latest turns and the whole
    response are kept); only a response longer than ``max_length`` is cut at its end. Keeping
    the start instead, as TRL does, leaves long multi-turn pairs (HH-RLHF) with identical or
    empty scored tokens, which DPO cannot learn from.
    """
    messages = [*prompt, {"role": "assistant", "content": response}]
    text = render(tokenizer, messages)
    before = render(tokenizer, messages[:-1], generation_prompt=True)
    if not text.startswith(before):
        raise ValueError("the tokenizer's chat template does not render conversations as prefixes")
    # only the final turn is scored: assistant turns inside the prompt are context, and counting
    # them here would let truncation cut the response of a multi-turn prompt
    full = encode_spans(tokenizer, text, [(len(before), len(text))], 1 << 30)
    excess = len(full.input_ids) - max_length
    if excess > 0 and True in full.scored:
        drop = min(excess, full.scored.index(True))
        full = Encoded(full.input_ids[drop:], full.scored[drop:])
    return Encoded(full.input_ids[:max_length], full.scored[:max_length])


@dataclass
class PackedBatch:
    """Sequences packed into a few rows; ``position_ids`` restart at 0 for each sequence.

    Rows hold up to ``row_tokens`` tokens (one longer sequence gets a row of its own) and
    are padded to the longest row. The flat tensors (``targets``, ``target_mask``,
    ``sequence_index``) follow the row-major order of ``input_ids``: at every position the
    next token, whether it is scored, and which sequence the position belongs to.
    """

    input_ids: torch.Tensor  # [R, L]
    position_ids: torch.Tensor  # [R, L]
    targets: torch.Tensor  # [R*L]
    target_mask: torch.Tensor  # [R*L] bool
    sequence_index: torch.Tensor  # [R*L] long
    num_sequences: int
    num_tokens: int  # real (non-padding) tokens
    starts: torch.Tensor | None = None  # [N] flat index of each sequence's first token (pooling, e.g. rewards)

    def to(self, device: torch.device) -> PackedBatch:
        return PackedBatch(self.input_ids.to(device), self.position_ids.to(device), self.targets.to(device),
                           self.target_mask.to(device), self.sequence_index.to(device), self.num_sequences,
                           self.num_tokens, None if self.starts is None else self.starts.to(device))


def _rows(lengths: Sequence[int], row_tokens: int) -> list[list[int]]:
    """First-fit decreasing: sequence indices per row, each row within ``row_tokens``."""
    rows: list[list[int]] = []
    room: list[int] = []
    for i in sorted(range(len(lengths)), key=lambda i: -lengths[i]):
        for r, free in enumerate(room):
            if lengths[i] <= free:
                rows[r].append(i)
                room[r] -= lengths[i]
                break
        else:
            rows.append([i])
            room.append(row_tokens - lengths[i])
    return rows


def pack(sequences: Sequence[Encoded], row_tokens: int | None = None) -> PackedBatch:
    """Pack sequences into rows; a position is a target when the token after it is scored.

    Attention never crosses sequences (transformers builds a block-diagonal causal mask from
    the restarting ``position_ids``), and rows are short enough that the quadratic attention
    over a row stays cheap next to the linear layers. The default row holds
    max(256, longest sequence) tokens: on SmolLM2 a DPO batch of 8 pairs ran a training step
    in 10.0 s with 256-token rows, 12.4 s with 512 and 20.3 s with 1024 (CPU attention does
    not skip the masked blocks), and 20.7 s padded.
    """
    lengths = [len(s.input_ids) for s in sequences]
    layout = _rows(lengths, row_tokens if row_tokens is not None else max(256, max(lengths, default=1)))
    width = max(sum(len(sequences[i].input_ids) for i in row) for row in layout)
    ids, pos, targets, mask, seq_index = [], [], [], [], []
    starts = [0] * len(sequences)
    for r, row in enumerate(layout):
        r_ids: list[int] = []
        r_pos: list[int] = []
        for i in row:
            seq = sequences[i]
            starts[i] = r * width + len(r_ids)
            r_ids.extend(seq.input_ids)
            r_pos.extend(range(len(seq.input_ids)))
            targets.extend(seq.input_ids[1:] + [0])
            mask.extend(seq.scored[1:] + [False])
            seq_index.extend([i] * len(seq.input_ids))
        pad = width - len(r_ids)
        ids.append(r_ids + [0] * pad)
        pos.append(r_pos + list(range(pad)))
        targets.extend([0] * pad)
        mask.extend([False] * pad)
        seq_index.extend([0] * pad)
    return PackedBatch(
        input_ids=torch.tensor(ids, dtype=torch.long),
        position_ids=torch.tensor(pos, dtype=torch.long),
        targets=torch.tensor(targets, dtype=torch.long),
        target_mask=torch.tensor(mask, dtype=torch.bool),
        sequence_index=torch.tensor(seq_index, dtype=torch.long),
        num_sequences=len(sequences),
        num_tokens=sum(len(s.input_ids) for s in sequences),
        starts=torch.tensor(starts, dtype=torch.long),
    )


def _unwrap(model: Any) -> Any:
    while hasattr(model, "module") and isinstance(model.module, torch.nn.Module):  # DDP / accelerate
        model = model.module
    if hasattr(model, "get_base_model"):  # peft: adapters are injected in place
        model = model.get_base_model()
    return model


def hidden_states(model: Any, batch: PackedBatch) -> torch.Tensor:
    """Last hidden states [R*L, H] of packed rows (the LM head is not applied)."""
    base = _unwrap(model)
    decoder = base.get_decoder()
    out = decoder(input_ids=batch.input_ids, position_ids=batch.position_ids, attention_mask=None,
                  use_cache=False)
    return out.last_hidden_state.reshape(-1, out.last_hidden_state.shape[-1])


LOGITS_CHUNK_BYTES = 16 << 20
"""Float32 logits per chunk of ``token_logps``: under glibc's largest mmap threshold (32 MiB), so
each chunk's buffers are reused from the heap. One 2048-row chunk over a 49k vocabulary (400 MB) was
mapped and page-faulted afresh for every buffer: on tiny-random a DPO step spent 0.31 s in the kernel
against 0.44 s computing; in 85-row chunks 0.09 s (tests/core/test_lm.py: chunks change the
log-probabilities by float rounding only)."""


def logits_chunk_rows(vocab_size: int) -> int:
    """Rows of ``token_logps``' chunks: ``LOGITS_CHUNK_BYTES`` of float32 logits, at least one row."""
    return max(1, LOGITS_CHUNK_BYTES // (4 * max(1, int(vocab_size))))


def token_logps(model: Any, batch: PackedBatch, chunk_size: int | None = None) -> torch.Tensor:
    """Log-probabilities of the scored target tokens, in order ([number of scored tokens]).

    The output vocabulary is only projected at scored positions, in chunks of ``chunk_size`` rows
    (default ``logits_chunk_rows``), with a fused cross-entropy (no full log-softmax tensor is kept).
    """
    base = _unwrap(model)
    hidden = hidden_states(model, batch)[batch.target_mask]
    targets = batch.targets[batch.target_mask]
    head = base.get_output_embeddings()
    if chunk_size is None:
        chunk_size = logits_chunk_rows(head.weight.shape[0] if hasattr(head, "weight") else base.config.vocab_size)
    pieces = []
    for start in range(0, hidden.shape[0], chunk_size):
        logits = head(hidden[start:start + chunk_size]).float()
        pieces.append(-F.cross_entropy(logits, targets[start:start + chunk_size], reduction="none"))
    if not pieces:
        return hidden.new_zeros(0)
    return torch.cat(pieces)


def sequence_logps(model: Any, batch: PackedBatch) -> tuple[torch.Tensor, torch.Tensor]:
    """Summed log-probabilities of each sequence's scored tokens and the counts ([N], [N])."""
    logps = token_logps(model, batch)
    index = batch.sequence_index[batch.target_mask]
    sums = torch.zeros(batch.num_sequences, dtype=logps.dtype, device=logps.device).index_add(0, index, logps)
    counts = torch.bincount(index, minlength=batch.num_sequences)
    return sums, counts


def padded_sequence_logps(model: Any, sequences: Sequence[Encoded], pad_id: int = 0) -> tuple[torch.Tensor, torch.Tensor]:
    """The same as ``sequence_logps(pack(...))`` on a right-padded batch with an attention mask.

    The slower reference path: it does padding work, and exists to check packing and for
    models whose attention cannot take packed rows.
    """
    width = max(len(s.input_ids) for s in sequences)
    ids = torch.full((len(sequences), width), pad_id, dtype=torch.long)
    attention = torch.zeros((len(sequences), width), dtype=torch.long)
    scored = torch.zeros((len(sequences), width), dtype=torch.bool)
    for row, seq in enumerate(sequences):
        ids[row, : len(seq.input_ids)] = torch.tensor(seq.input_ids)
        attention[row, : len(seq.input_ids)] = 1
        scored[row, : len(seq.scored)] = torch.tensor(seq.scored, dtype=torch.bool)
    base = _unwrap(model)
    device = next(base.parameters()).device
    ids, attention, scored = ids.to(device), attention.to(device), scored.to(device)
    out = base.get_decoder()(input_ids=ids, attention_mask=attention, use_cache=False)
    mask = scored[:, 1:]
    hidden = out.last_hidden_state[:, :-1][mask]
    logits = base.get_output_embeddings()(hidden).float()
    logps = -F.cross_entropy(logits, ids[:, 1:][mask], reduction="none")
    rows = torch.arange(len(sequences), device=device).unsqueeze(1).expand_as(mask)[mask]
    sums = torch.zeros(len(sequences), dtype=logps.dtype, device=device).index_add(0, rows, logps)
    return sums, mask.sum(dim=1)


class TransformersGenerator:
    """The built-in generation backend: ``model.generate`` over left-padded batches, KV-cached,
    stopping a row at any stop id. Works for every model transformers loads, on any device."""

    name = "transformers"

    def __init__(self, batch_size: int = 0) -> None:
        self.batch_size = int(batch_size)  # 0: every prompt of a call in one batch

    @torch.no_grad()
    def generate(self, model: Any, prompt_ids: Sequence[Sequence[int]], *, max_new_tokens: int,
                 temperature: float, top_p: float, stop_ids: Sequence[int], pad_id: int,
                 min_new_tokens: int = 0, seed: int | None = None) -> list[list[int]]:
        if seed is not None:
            torch.manual_seed(seed)
        device = next(_unwrap(model).parameters()).device
        chunk = self.batch_size if self.batch_size > 0 else max(1, len(prompt_ids))
        out: list[list[int]] = []
        for start in range(0, len(prompt_ids), chunk):
            batch = [list(ids) for ids in prompt_ids[start:start + chunk]]
            width = max(len(ids) for ids in batch)
            input_ids = torch.full((len(batch), width), pad_id, dtype=torch.long)
            attention = torch.zeros((len(batch), width), dtype=torch.long)
            for row, ids in enumerate(batch):
                input_ids[row, width - len(ids):] = torch.tensor(ids, dtype=torch.long)
                attention[row, width - len(ids):] = 1
            options: dict[str, Any] = {"do_sample": temperature > 0, "max_new_tokens": max_new_tokens,
                                       "pad_token_id": pad_id, "eos_token_id": sorted(set(stop_ids)),
                                       "use_cache": True}
            if min_new_tokens > 0:
                options["min_new_tokens"] = min(min_new_tokens, max_new_tokens)
            if temperature > 0:
                # top_k=0: transformers otherwise samples from the 50 likeliest tokens only, which
                # biases every KL estimate, pair and policy-gradient log-prob taken from it
                options.update(temperature=temperature, top_p=top_p, top_k=0)
            generated = model.generate(input_ids=input_ids.to(device), attention_mask=attention.to(device), **options)
            out.extend(generated[:, width:].tolist())
        return out


DEFAULT_GENERATOR = TransformersGenerator()


def cut_at_stop(tokens: Sequence[int], stop_ids: Any, *, keep_stop: bool = True) -> tuple[list[int], bool]:
    """The response up to its first stop id (kept when ``keep_stop``), and whether one was found."""
    for position, token in enumerate(tokens):
        if token in stop_ids:
            return list(tokens[: position + 1] if keep_stop else tokens[:position]), True
    return list(tokens), False


@torch.no_grad()
def sample_responses(model: Any, tokenizer: Any, prompts: Sequence[Sequence[dict]], *, max_new_tokens: int = 48,
                     temperature: float = 1.0, top_p: float = 1.0, batch_size: int = 16, seed: int = 0,
                     max_prompt_tokens: int = 192, generator: Any = None, progress: Any = None,
                     show_progress: bool | None = True) -> list[tuple[Encoded, str]]:
    """Sample one response per chat prompt (batches of ``batch_size``; stops at EOS) with
    ``generator`` (the configured ``generation`` backend; transformers ``generate`` when None).

    ``progress``: a ``SamplingProgress`` (core/progress.py) advanced after every batch, or a
    description, for a bar of this call's own (shown when ``show_progress``; its totals logged).

    Returns, per prompt, the prompt+response tokens with the response scored, and the text.
    Sampling is from the model's own distribution (``top_k=0``): transformers' default keeps only
    the 50 likeliest tokens, which biases every KL estimate and pair sampled from it. Batch b is
    seeded with ``seed`` + b, and the global random state is restored afterwards.
    """
    if isinstance(progress, str):
        from alignkit.core.progress import SamplingProgress

        with SamplingProgress(progress, len(prompts), show_progress) as bar:
            return sample_responses(model, tokenizer, prompts, max_new_tokens=max_new_tokens,
                                    temperature=temperature, top_p=top_p, batch_size=batch_size, seed=seed,
                                    max_prompt_tokens=max_prompt_tokens, generator=generator, progress=bar)
    generator = generator or DEFAULT_GENERATOR
    base = _unwrap(model)
    was_training = base.training
    base.eval()
    generator_state = torch.random.get_rng_state()
    pad_id = tokenizer.pad_token_id if tokenizer.pad_token_id is not None else tokenizer.eos_token_id
    eos = tokenizer.eos_token_id
    out: list[tuple[Encoded, str]] = []
    try:
        for number, start in enumerate(range(0, len(prompts), max(1, batch_size))):
            batch = []
            for prompt in prompts[start:start + batch_size]:
                ids = tokenizer(render(tokenizer, prompt, generation_prompt=True), add_special_tokens=False)["input_ids"]
                batch.append(ids[-max_prompt_tokens:] if len(ids) > max_prompt_tokens else ids)
            generated = generator.generate(model, batch, max_new_tokens=max_new_tokens, temperature=temperature,
                                           top_p=top_p, stop_ids=[eos], pad_id=pad_id, seed=seed + number)
            for prompt_ids, tokens in zip(batch, generated):
                # the end-of-sequence token stays (it was chosen); padding after it does not
                response, _ = cut_at_stop(tokens, {eos}, keep_stop=True)
                if pad_id != eos:
                    response, _ = cut_at_stop(response, {pad_id}, keep_stop=False)
                ids = list(prompt_ids) + response
                scored = [False] * len(prompt_ids) + [True] * len(response)
                out.append((Encoded(ids, scored), tokenizer.decode(response, skip_special_tokens=True)))
            if progress is not None:
                progress.update(len(batch), sum(e.num_scored for e, _ in out[-len(batch):]))
    finally:
        torch.random.set_rng_state(generator_state)
        base.train(was_training)
    return out
