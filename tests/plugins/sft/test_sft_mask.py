"""Completion-only loss: exactly the assistant turns (content and end-of-turn) are scored."""

import torch

from alignkit.core.lm import encode_conversation
from alignkit.plugins.sft.sft import batch_loss, encode_sft


CHAT = [
    {"role": "system", "content": "Be brief."},
    {"role": "user", "content": "What is 2+2?"},
    {"role": "assistant", "content": "4."},
    {"role": "user", "content": "And 3+3?"},
    {"role": "assistant", "content": "6."},
]


def test_exact_label_mask(tiny_model):
    tok = tiny_model.tokenizer
    enc = encode_conversation(tok, CHAT, max_length=256)
    scored = [tok.decode([i]) for i, s in zip(enc.input_ids, enc.scored) if s]
    assert scored == ["4", ".", "<|im_end|>", "\n", "6", ".", "<|im_end|>", "\n"]
    text = tok.decode(enc.input_ids)
    assert text.startswith("<|im_start|>system\nBe brief.<|im_end|>")


def test_truncation_keeps_the_start_and_drops_examples_with_nothing_to_learn(tiny_model):
    tok = tiny_model.tokenizer
    full = encode_conversation(tok, CHAT, max_length=256)
    short = encode_conversation(tok, CHAT, max_length=10)
    assert short.input_ids == full.input_ids[:10]
    kept, dropped = encode_sft(tok, [{"messages": CHAT}], max_length=10, completion_only=True)
    assert (kept, dropped) == ([], 1)


def test_loss_is_the_mean_nll_of_the_scored_tokens(tiny_model):
    tok, model = tiny_model.tokenizer, tiny_model.model
    enc = encode_conversation(tok, CHAT, max_length=256)
    ids = torch.tensor([enc.input_ids])
    with torch.no_grad():
        loss, n = batch_loss(model, [enc], packing=True, pad_id=0)
        logps = torch.log_softmax(model(ids).logits[0, :-1].float(), -1)
    targets = ids[0, 1:]
    mask = torch.tensor(enc.scored[1:])
    expected = -logps[torch.arange(len(targets)), targets][mask].mean()
    assert n == int(mask.sum()) == 8
    assert torch.allclose(loss, expected, atol=1e-5)


def test_packed_and_padded_sft_losses_agree(tiny_model):
    tok, model = tiny_model.tokenizer, tiny_model.model
    rows = [{"messages": CHAT}, {"messages": CHAT[1:3]}, {"messages": CHAT[3:]}]
    encoded, _ = encode_sft(tok, rows, 256, True)
    with torch.no_grad():
        packed, n1 = batch_loss(model, encoded, packing=True, pad_id=tok.pad_token_id)
        padded, n2 = batch_loss(model, encoded, packing=False, pad_id=tok.pad_token_id)
    assert n1 == n2
    assert torch.allclose(packed, padded, atol=1e-5)


def test_prompt_response_pairs_lose_the_start_of_the_prompt_first(tiny_model):
    from alignkit.core.lm import encode_prompt_response

    tok = tiny_model.tokenizer
    prompt = [{"role": "user", "content": "word " * 200}, {"role": "assistant", "content": "ok"},
              {"role": "user", "content": "Say hi."}]
    full = encode_prompt_response(tok, prompt, "Hi there!", max_length=10_000)
    short = encode_prompt_response(tok, prompt, "Hi there!", max_length=40)
    assert len(short.input_ids) == 40
    assert short.input_ids == full.input_ids[-40:], "the end (latest turns and the response) is kept"
    assert sum(short.scored) == sum(full.scored)
    long_answer = encode_prompt_response(tok, [{"role": "user", "content": "Go"}], "x " * 300, max_length=50)
    assert len(long_answer.input_ids) == 50 and long_answer.scored[-1]
