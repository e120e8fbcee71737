"""vLLM as the generation backend (``generation=vllm``, ``pip install 'alignkit[vllm]'``).

Sampling is most of an RL step; vLLM's paged attention and continuous batching make it several
times faster than ``model.generate`` on a GPU. The engine lives in the training process
("colocated", as TRL's ``vllm_mode=colocate``): it is built once from the policy's weights and,
before each call, takes the policy's current weights when they changed since the last sync (the
parameters' in-place version counters tell). LoRA adapters are merged for the sync and unmerged
after. Token ids go in and come out, so the policy's tokenizer and chat template stay the only
ones.

vLLM is imported only when this backend is built. Where it cannot run (not installed, or no
CUDA device, as on CI), ``fallback: transformers`` (the default) warns and samples with
transformers instead; ``fallback: error`` stops the run.
"""

from __future__ import annotations

import logging
import os
import tempfile
from dataclasses import dataclass
from typing import Any, Iterator, Sequence

from alignkit.core.errors import ConfigError

log = logging.getLogger("alignkit")

FALLBACKS = ("transformers", "error")


@dataclass
class VLLMGeneratorConfig:
    """Options of ``generation=vllm`` (conf/generation/vllm.yaml)."""

    gpu_memory_utilization: float = 0.3   # share of the GPU the engine may take (the policy trains in the rest)
    dtype: str = "auto"
    max_model_len: int = 0                # 0: the model's own
    max_num_seqs: int = 256
    enable_sleep_mode: bool = False       # free the engine's memory between rollouts (slower wake-up)
    enforce_eager: bool = False           # no CUDA graphs (quicker start, slower steps)
    fallback: str = "transformers"        # where vLLM cannot run: transformers (warn) | error
    batch_size: int = 0                   # the transformers fallback's batch (0: each call in one batch)


def unavailable_reason() -> str | None:
    """Why vLLM cannot run here, or None when it can."""
    import importlib.util

    if importlib.util.find_spec("vllm") is None:
        return "vllm is not installed (pip install 'alignkit[vllm]')"
    import torch

    if not torch.cuda.is_available():
        return "vllm needs a CUDA device and none is visible"
    return None


def weight_version(model: Any) -> tuple[int, ...]:
    """Changes whenever any parameter is updated in place (optimizer steps, loads): the sync test."""
    return tuple(int(p._version) for p in model.parameters())


def named_weights(model: Any) -> Iterator[tuple[str, Any]]:
    """The policy's weights under the base model's names; a PEFT model must be merged first."""
    peft = hasattr(model, "peft_config") and hasattr(model, "merge_adapter")
    for name, param in model.named_parameters():
        if peft:
            if "lora_" in name or "original_module" in name:
                continue  # adapters are merged into the base weights; vLLM has no such tensors
            name = name.removeprefix("base_model.model.").replace(".base_layer", "")
            name = name.replace("modules_to_save.default.", "")
        yield name, param.data


class VLLMGenerator:
    """A colocated vLLM engine per model it samples from (the policy; a local judge gets its own);
    see the module docstring."""

    name = "vllm"

    def __init__(self, options: VLLMGeneratorConfig) -> None:
        self.options = options
        self._engines: dict[int, Any] = {}     # id(model) -> vllm.LLM
        self._models: dict[int, Any] = {}      # kept alive, so an id is never reused for another model
        self._synced: dict[int, tuple[int, ...]] = {}
        self._dirs: list[tempfile.TemporaryDirectory] = []

    def _key(self, model: Any) -> int:
        self._models.setdefault(id(model), model)
        return id(model)

    def _engine(self, model: Any) -> Any:
        key = self._key(model)
        if key not in self._engines:
            from vllm import LLM

            # Built from a snapshot of the policy as it is now (weights synced before each call anyway):
            # a hub id would miss local fine-tuning, and a LoRA policy has no merged checkpoint on disk.
            folder = tempfile.TemporaryDirectory(prefix="alignkit-vllm-")
            self._dirs.append(folder)
            base = _base(model)
            base.config.save_pretrained(folder.name)
            from safetensors.torch import save_file

            with _merged(model):
                save_file({n: t.detach().contiguous().cpu() for n, t in named_weights(model)},
                          os.path.join(folder.name, "model.safetensors"), metadata={"format": "pt"})
            o = self.options
            kwargs: dict[str, Any] = dict(model=folder.name, skip_tokenizer_init=True, dtype=o.dtype,
                                          gpu_memory_utilization=o.gpu_memory_utilization,
                                          max_num_seqs=o.max_num_seqs, enable_sleep_mode=o.enable_sleep_mode,
                                          enforce_eager=o.enforce_eager)
            if o.max_model_len > 0:
                kwargs["max_model_len"] = o.max_model_len
            log.info("generation: starting a vLLM engine (%s)", type(base).__name__)
            self._engines[key] = LLM(**kwargs)
            self._synced[key] = weight_version(model)
        return self._engines[key]

    def _sync(self, engine: Any, model: Any) -> None:
        key = self._key(model)
        version = weight_version(model)
        if self._synced.get(key) == version:
            return
        if self.options.enable_sleep_mode:
            engine.wake_up(tags=["weights"])
        runner = engine.llm_engine.model_executor.driver_worker.model_runner.model
        with _merged(model):
            runner.load_weights(list(named_weights(model)))
        engine.reset_prefix_cache()
        self._synced[key] = version

    def generate(self, model: Any, prompt_ids: Sequence[Sequence[int]], *, max_new_tokens: int,
                 temperature: float, top_p: float, stop_ids: Sequence[int], pad_id: int,
                 min_new_tokens: int = 0, seed: int | None = None) -> list[list[int]]:
        from vllm import SamplingParams

        engine = self._engine(model)
        self._sync(engine, model)
        if self.options.enable_sleep_mode:
            engine.wake_up(tags=["kv_cache"])
        params = [SamplingParams(temperature=max(float(temperature), 0.0), top_p=top_p if temperature > 0 else 1.0,
                                 top_k=-1, max_tokens=max_new_tokens, min_tokens=min(min_new_tokens, max_new_tokens),
                                 stop_token_ids=list(stop_ids), detokenize=False,
                                 seed=None if seed is None else seed + row)
                  for row in range(len(prompt_ids))]
        outputs = engine.generate([{"prompt_token_ids": list(ids)} for ids in prompt_ids],
                                  sampling_params=params, use_tqdm=False)
        if self.options.enable_sleep_mode:
            engine.sleep(level=1)
        return [list(out.outputs[0].token_ids) for out in outputs]


def _base(model: Any) -> Any:
    model = getattr(model, "module", model)
    get_base = getattr(model, "get_base_model", None)
    return get_base() if callable(get_base) else model


class _merged:
    """Merge a PEFT model's adapters for the duration of a weight copy (no-op otherwise)."""

    def __init__(self, model: Any) -> None:
        self.model = model if hasattr(model, "merge_adapter") and hasattr(model, "peft_config") else None

    def __enter__(self) -> None:
        if self.model is not None:
            self.model.merge_adapter()

    def __exit__(self, *exc: Any) -> None:
        if self.model is not None:
            self.model.unmerge_adapter()


def vllm_generator(options: VLLMGeneratorConfig, ctx: Any = None) -> Any:
    """Factory of ``generation=vllm``: the vLLM backend, or transformers where vLLM cannot run."""
    if options.fallback not in FALLBACKS:
        raise ConfigError(f"generation.fallback must be one of {', '.join(FALLBACKS)}, not {options.fallback!r}")
    reason = unavailable_reason()
    if reason is None:
        return VLLMGenerator(options)
    if options.fallback == "error":
        raise ConfigError(f"generation=vllm: {reason} (generation.fallback=transformers samples with "
                          "transformers instead)")
    log.warning("generation=vllm: %s; sampling with transformers generate instead", reason)
    from alignkit.core.lm import TransformersGenerator  # torch: imported when a run builds the backend

    return TransformersGenerator(batch_size=options.batch_size)
