"""The Bradley-Terry reward model: building it from a causal LM, scoring, saving and loading.

Why ``AutoModelForSequenceClassification`` (and not a value head bolted onto the LM):
the saved folder is a plain transformers model that any tool loads with
``AutoModelForSequenceClassification.from_pretrained(path)`` (TRL, vLLM, a PPO critic),
with no alignkit code. The backbone is the policy's own (``model.model``) with its weights
copied over; the LM head is dropped and a linear ``score`` head of ``heads`` outputs is added.

* One output per ensemble member: ``num_labels = K`` gives K heads on a shared backbone in the
  same standard format (head k is row k of ``score.weight``).
* The reward is read at the last token that is not the pad token, exactly the position
  ``...ForSequenceClassification.forward`` pools, so our packed forward and a padded
  ``model(input_ids, attention_mask).logits`` agree (tested). The pad token is set on the
  config (eos when the tokenizer has none), which that forward needs for batches.
* Texts are rendered with the tokenizer's chat template: the prompt messages followed by one
  assistant turn holding the response (``core.lm.encode_prompt_response``), in training and
  when scoring.

A folder saved by ``save_reward_model`` holds ``save_pretrained`` output, the tokenizer and
``alignkit_reward.json`` (heads, max length, statistics, how it was trained).
"""

from __future__ import annotations

import copy
import json
import os
import shutil
import tempfile
from pathlib import Path
from typing import Any, Mapping, Sequence

import torch

from alignkit.core.errors import ConfigError
from alignkit.core.lm import Encoded, encode_prompt_response, hidden_states, pack

METADATA = "alignkit_reward.json"
POOLING = "last_non_pad_token"


# --------------------------------------------------------------------------------------
# building
# --------------------------------------------------------------------------------------


def set_pad_token(tokenizer: Any) -> int:
    """The pad token id, set to eos when the tokenizer has none (sequence classification needs one)."""
    if tokenizer.pad_token_id is None:
        if tokenizer.eos_token is None:
            raise ConfigError("the reward model's tokenizer has neither a pad nor an eos token")
        tokenizer.pad_token = tokenizer.eos_token
    return int(tokenizer.pad_token_id)


def from_causal_lm(lm: Any, tokenizer: Any, heads: int = 1, seed: int = 0) -> Any:
    """A ``...ForSequenceClassification`` with ``heads`` outputs whose backbone is ``lm``'s.

    A model that already is a sequence classifier with ``heads`` outputs (training a saved
    reward model further) is returned as is. The new ``score`` head is drawn from ``seed``
    without touching the global RNG.
    """
    from transformers import AutoModelForSequenceClassification

    pad_id = set_pad_token(tokenizer)
    if _is_classifier(lm):
        if int(lm.config.num_labels) != heads:
            raise ConfigError(f"the starting model is already a reward model with {lm.config.num_labels} head(s); "
                              f"optimizer.ensemble={heads} must match it")
        lm.config.pad_token_id = pad_id
        return lm
    config = copy.deepcopy(lm.config)
    config.num_labels = heads
    config.problem_type = "regression"
    config.pad_token_id = pad_id
    config.architectures = None
    dtype = next(lm.parameters()).dtype
    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(seed)
        try:
            model = AutoModelForSequenceClassification.from_config(config)
        except ValueError as exc:
            raise ConfigError(f"transformers has no sequence-classification class for the model type "
                              f"'{config.model_type}', so it cannot become a reward model: {exc}") from exc
    backbone = getattr(lm, lm.base_model_prefix)
    result = model.base_model.load_state_dict(backbone.state_dict(), strict=False)
    if result.missing_keys:
        raise ConfigError(f"could not copy the backbone into the reward model; missing {result.missing_keys[:5]}")
    model = model.to(dtype)
    model.config.name_or_path = getattr(lm.config, "name_or_path", "")
    return model


def _is_classifier(model: Any) -> bool:
    return hasattr(model, "score") and type(model).__name__.endswith("ForSequenceClassification")


# --------------------------------------------------------------------------------------
# scoring
# --------------------------------------------------------------------------------------


def as_messages(prompt: Any) -> list[dict]:
    """Prompt messages; a bare string is one user turn."""
    if isinstance(prompt, str):
        return [{"role": "user", "content": prompt}]
    return [dict(m) for m in prompt]


def encode(tokenizer: Any, prompt: Any, response: str, max_length: int) -> Encoded:
    """The prompt messages plus one assistant turn (the start of a long prompt is dropped first)."""
    return encode_prompt_response(tokenizer, as_messages(prompt), response, max_length)


def pooled_positions(sequences: Sequence[Encoded], pad_id: int) -> list[int]:
    """Per sequence, the offset of its last token that is not the pad token."""
    out = []
    for seq in sequences:
        offset = len(seq.input_ids) - 1
        while offset > 0 and seq.input_ids[offset] == pad_id:
            offset -= 1
        out.append(offset)
    return out


def score_head(model: Any) -> Any:
    base = model
    while hasattr(base, "module") and isinstance(base.module, torch.nn.Module):
        base = base.module
    if hasattr(base, "get_base_model"):
        base = base.get_base_model()
    return base.score


def sequence_rewards(model: Any, sequences: Sequence[Encoded], pad_id: int) -> torch.Tensor:
    """Rewards ``[N, heads]`` of ``sequences`` in one packed forward (float32)."""
    device = next(model.parameters()).device
    batch = pack(sequences).to(device)
    offsets = torch.tensor(pooled_positions(sequences, pad_id), dtype=torch.long, device=device)
    hidden = hidden_states(model, batch)[batch.starts + offsets]
    return score_head(model)(hidden).float()


# --------------------------------------------------------------------------------------
# save / load
# --------------------------------------------------------------------------------------


def save_reward_model(model: Any, tokenizer: Any, path: Path, metadata: Mapping[str, Any]) -> None:
    """``save_pretrained`` + tokenizer + ``alignkit_reward.json`` into a temporary folder, then
    rename: the folder either holds all three or does not exist."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = Path(tempfile.mkdtemp(prefix=f".{path.name}.", dir=path.parent))
    try:
        model.save_pretrained(tmp, safe_serialization=True)
        tokenizer.save_pretrained(tmp)
        (tmp / METADATA).write_text(json.dumps(dict(metadata), indent=2, sort_keys=True) + "\n")
        if path.exists():
            shutil.rmtree(path)
        os.replace(tmp, path)
    except BaseException:
        shutil.rmtree(tmp, ignore_errors=True)
        raise


def read_metadata(path: Path) -> dict[str, Any]:
    file = Path(path) / METADATA
    return json.loads(file.read_text()) if file.exists() else {}


class RewardModel:
    """A loaded reward model: ``score(prompts, responses) -> tensor`` and friends.

    Attributes:
        path: the folder it came from (PPO initialises its critic from it:
            ``AutoModelForSequenceClassification.from_pretrained(rm.path)``), or None.
        model, tokenizer: the transformers objects.
        heads: ensemble size K (``score.weight`` rows).
        uncertainty_penalty: k in ``mean - k * std`` over the heads.
        metadata: the contents of ``alignkit_reward.json`` (empty for foreign folders).
    """

    def __init__(self, model: Any, tokenizer: Any, *, path: Path | None = None, max_length: int = 512,
                 batch_size: int = 16, uncertainty_penalty: float = 0.0, normalize: bool = False,
                 metadata: Mapping[str, Any] | None = None) -> None:
        self.model = model.eval()
        self.tokenizer = tokenizer
        self.path = None if path is None else Path(path)
        self.max_length = int(max_length)
        self.batch_size = max(1, int(batch_size))
        self.uncertainty_penalty = float(uncertainty_penalty)
        self.metadata = dict(metadata or {})
        self.pad_id = set_pad_token(tokenizer)
        self.heads = int(model.config.num_labels)
        self.shift, self.scale = 0.0, 1.0
        if normalize:
            stats = self.metadata.get("reward_stats") or {}
            if "mean" not in stats or "std" not in stats:
                raise ConfigError(f"preference_model.normalize=true needs reward statistics in "
                                  f"{self.path}/{METADATA}; this folder has none")
            self.shift, self.scale = float(stats["mean"]), max(float(stats["std"]), 1e-6)

    @classmethod
    def from_pretrained(cls, path: str | Path, *, device: str = "auto", dtype: str = "float32",
                        **kwargs: Any) -> RewardModel:
        """Load a folder written by ``save_reward_model`` (or any sequence-classification model)."""
        from transformers import AutoConfig, AutoModelForSequenceClassification, AutoTokenizer

        path = Path(path).expanduser()
        if not (path / "config.json").is_file():
            raise ConfigError(f"{path} is not a reward model folder (no config.json)")
        config = AutoConfig.from_pretrained(str(path), local_files_only=True)
        archs = getattr(config, "architectures", None) or []
        if not any(a.endswith("ForSequenceClassification") for a in archs):
            raise ConfigError(f"{path} holds a {', '.join(archs) or 'model'}, not a sequence-classification "
                              f"reward model (train one with optimizer=reward)")
        if dtype not in ("float32", "bfloat16", "float16", "auto"):
            raise ConfigError(f"preference_model.dtype must be float32, bfloat16, float16 or auto, not {dtype!r}")
        torch_dtype = getattr(torch, dtype) if dtype != "auto" else "auto"
        model = AutoModelForSequenceClassification.from_pretrained(str(path), dtype=torch_dtype,
                                                                   local_files_only=True)
        tokenizer = AutoTokenizer.from_pretrained(str(path), local_files_only=True)
        if device == "auto":
            device = "cuda" if torch.cuda.is_available() else "cpu"
        metadata = read_metadata(path)
        kwargs.setdefault("max_length", int(metadata.get("max_length", 512)))
        return cls(model.to(device), tokenizer, path=path, metadata=metadata, **kwargs)

    @torch.no_grad()
    def score_heads(self, prompts: Sequence[Any], responses: Sequence[str]) -> torch.Tensor:
        """Raw rewards of every head, ``[N, heads]`` float32 on the CPU (not normalised)."""
        if len(prompts) != len(responses):
            raise ValueError(f"score: {len(prompts)} prompts but {len(responses)} responses")
        if not len(prompts):
            return torch.zeros(0, self.heads)
        sequences = [encode(self.tokenizer, p, r, self.max_length) for p, r in zip(prompts, responses)]
        out = []
        for start in range(0, len(sequences), self.batch_size):
            out.append(sequence_rewards(self.model, sequences[start:start + self.batch_size], self.pad_id).cpu())
        return torch.cat(out)

    def score(self, prompts: Sequence[Any], responses: Sequence[str]) -> torch.Tensor:
        """One reward per (prompt, response), ``[N]`` float32 on the CPU.

        The mean over the heads minus ``uncertainty_penalty`` times their standard deviation
        (a single head has none), then ``(r - mean) / std`` of the stored statistics when
        ``normalize`` is on.
        """
        return self.combine(self.score_heads(prompts, responses))

    def combine(self, heads: torch.Tensor) -> torch.Tensor:
        """``[N, heads]`` raw rewards -> ``[N]`` scores (see ``score``)."""
        if heads.shape[0] == 0:
            return heads.new_zeros(0)
        reward = heads.mean(dim=-1)
        if self.uncertainty_penalty and heads.shape[-1] > 1:
            reward = reward - self.uncertainty_penalty * heads.std(dim=-1)
        return (reward - self.shift) / self.scale
