"""Packing and selective log-probs: the fast path computes exactly what the padded path does."""

import random

import pytest
import torch
from transformers import LlamaConfig, LlamaForCausalLM

from alignkit.core import lm
from alignkit.core.lm import Encoded, pack, padded_sequence_logps, sequence_logps


@pytest.fixture(scope="module")
def model():
    torch.manual_seed(0)
    cfg = LlamaConfig(vocab_size=50, hidden_size=32, intermediate_size=64, num_hidden_layers=2,
                      num_attention_heads=4, num_key_value_heads=2, max_position_embeddings=256)
    return LlamaForCausalLM(cfg).eval()


def sequences(n=7, seed=1):
    rng = random.Random(seed)
    out = []
    for _ in range(n):
        length = rng.randint(3, 40)
        ids = [rng.randrange(1, 50) for _ in range(length)]
        cut = rng.randint(1, length - 1)
        out.append(Encoded(ids, [False] * cut + [True] * (length - cut)))
    return out


@pytest.mark.parametrize("row_tokens", [1, 48, 1024])
def test_packed_and_padded_log_probs_agree(model, row_tokens):
    seqs = sequences()
    packed_sums, packed_counts = sequence_logps(model, pack(seqs, row_tokens=row_tokens))
    padded_sums, padded_counts = padded_sequence_logps(model, seqs)
    assert torch.equal(packed_counts, padded_counts)
    assert torch.allclose(packed_sums, padded_sums, atol=1e-4)


def test_log_probs_match_a_plain_full_logits_forward(model):
    seq = sequences(1, seed=3)[0]
    ids = torch.tensor([seq.input_ids])
    logps = torch.log_softmax(model(ids).logits[0, :-1], -1)
    targets = ids[0, 1:]
    mask = torch.tensor(seq.scored[1:])
    expected = logps[torch.arange(len(targets)), targets][mask].sum()
    sums, counts = sequence_logps(model, pack([seq]))
    assert counts.item() == int(mask.sum())
    assert torch.allclose(sums[0], expected, atol=1e-5)


def test_packed_gradients_match_padded(model):
    seqs = sequences(4, seed=5)
    model.zero_grad()
    sequence_logps(model, pack(seqs, row_tokens=64))[0].sum().backward()
    packed = [p.grad.clone() for p in model.parameters()]
    model.zero_grad()
    padded_sequence_logps(model, seqs)[0].sum().backward()
    for a, p in zip(packed, model.parameters()):
        assert torch.allclose(a, p.grad, atol=1e-4)
    model.zero_grad()


def test_rows_stay_within_budget_and_keep_every_sequence():
    seqs = sequences(12, seed=2)
    batch = pack(seqs, row_tokens=60)
    longest = max(len(s.input_ids) for s in seqs)
    assert batch.input_ids.shape[1] <= max(60, longest)
    assert batch.num_tokens == sum(len(s.input_ids) for s in seqs)
    assert int(batch.target_mask.sum()) == sum(sum(s.scored[1:]) for s in seqs)


def test_sampling_draws_from_the_whole_distribution_not_the_top_50(tiny_model):
    """An untrained model is close to uniform over its vocabulary: 300 one-token samples of the same
    prompt hit far more than the 50 tokens transformers' default top_k would allow."""
    from alignkit.core.lm import sample_responses

    prompts = [[{"role": "user", "content": "Say something."}]] * 300
    out = sample_responses(tiny_model.model, tiny_model.tokenizer, prompts, max_new_tokens=1, batch_size=100, seed=1)
    first = {enc.input_ids[-1] for enc, _ in out}
    assert len(first) > 60


def test_logit_chunks_stay_under_the_mmap_threshold():
    # 16 MiB of float32 logits over SmolLM2's 49152 tokens: 16 * 2**20 / (4 * 49152) = 85.3 -> 85 rows
    assert lm.logits_chunk_rows(49152) == 85
    assert lm.logits_chunk_rows(50) == 16 * 2**20 // 200
    assert lm.logits_chunk_rows(10**9) == 1  # at least one row


def test_chunks_change_the_log_probs_by_float_rounding_only(model):
    seqs = sequences(n=12, seed=3)
    batch = pack(seqs)
    whole = lm.token_logps(model, batch, chunk_size=4096)
    for rows in (1, 7, 64):  # a matmul over fewer rows may sum in another order: 1e-6, not bit for bit
        assert torch.allclose(lm.token_logps(model, batch, chunk_size=rows), whole, rtol=0, atol=1e-5)


def test_a_large_vocabulary_is_projected_in_chunks_under_the_mmap_threshold():
    # 200 scored tokens x 49152 logits in one piece is 39 MB per buffer, mapped and page-faulted afresh
    # on every call (a DPO step on tiny-random spent 0.31 s in the kernel for 0.44 s of compute);
    # 85-row chunks: ceil(200 / 85) = 3 projections
    torch.manual_seed(0)
    cfg = LlamaConfig(vocab_size=49152, hidden_size=16, intermediate_size=32, num_hidden_layers=1,
                      num_attention_heads=2, num_key_value_heads=2, max_position_embeddings=1024)
    big = LlamaForCausalLM(cfg)
    rng = random.Random(0)
    seqs = [Encoded([rng.randrange(49152) for _ in range(60)], [False] * 10 + [True] * 50) for _ in range(4)]
    rows = []
    hook = big.get_output_embeddings().register_forward_hook(lambda m, args, out: rows.append(out.shape[0]))
    try:
        logps = lm.token_logps(big, pack(seqs))
    finally:
        hook.remove()
    assert logps.shape == (4 * 50,) and rows == [85, 85, 30]
