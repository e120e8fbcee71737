"""The options of every on-policy RL optimizer, in one dataclass.

An algorithm (``optimizer=ppo``, ``grpo``, ``dapo``, ...) is a composition of parts plus
defaults: conf/optimizer/<name>.yaml holds them, and ``schema(name)`` reads that file so the
defaults are declared once. Any option can be changed from the command line, the parts too
(``optimizer.advantage=rloo optimizer.policy_loss=gspo``).
"""

from __future__ import annotations

import dataclasses
import functools
import typing
from dataclasses import dataclass
from importlib import resources
from typing import Any, Optional

from omegaconf import OmegaConf

from alignkit.core.errors import ConfigError
from alignkit.core.rl import AGGREGATIONS
from alignkit.plugins.rl.policy_losses import KL_ESTIMATORS

ALGORITHMS = {
    "ppo": "PPO with a critic, GAE and a KL penalty to the frozen reference; rewards from any preference model.",
    "grpo": "GRPO: k samples per prompt, group-normalised advantages, k3 KL in the loss; no value model.",
    "rloo": "RLOO: k samples per prompt, leave-one-out baselines, KL in the reward; no value model.",
    "online_dpo": "Online DPO: k samples per prompt, best vs worst by the preference model, one DPO step each batch.",
    "dr_grpo": "Dr. GRPO: GRPO without the std division and with a constant loss normaliser (Liu et al. 2025).",
    "dapo": "DAPO: clip-higher, token-mean loss, dynamic sampling and overlong shaping, no KL (Yu et al. 2025).",
    "gspo": "GSPO: GRPO's advantages with a sequence-level importance ratio (Zheng et al. 2025).",
    "reinforce_pp": "REINFORCE++: batch-normalised advantages, KL in the reward, clipped ratio (Hu 2025).",
}
"""The built-in algorithms: conf/optimizer/<name>.yaml composes each one's parts."""

LEGACY_AGGREGATIONS = {"token": "token_mean", "sequence": "sequence_mean"}
"""``loss_aggregation`` values of alignkit before issue 19, still accepted."""

CHOICES = {
    "reference": ("auto", "copy", "adapter", "none"),
    "kl_penalty": ("reward", "loss"),
    "kl_estimator": KL_ESTIMATORS,
    "critic": ("separate", "shared"),
    "critic_init": ("auto", "policy", "reward_model"),
    "reward_placement": ("every_rank", "rank0"),
    "reference_placement": ("every_rank", "rank0"),
    "loss_aggregation": AGGREGATIONS + tuple(LEGACY_AGGREGATIONS),
    "ratio_level": ("token", "sequence"),
    "ties": ("skip", "keep"),
    "pair_selection": ("best_vs_worst", "divpo"),
}


@dataclass
class RLOptions:
    """Options of the RL loop (``optimizer.*``). ``trainer.batch_size`` is the number of responses
    per step (a multiple of ``samples_per_prompt``), ``trainer.max_steps`` the number of steps,
    ``trainer.grad_accum`` the micro-batches each minibatch is split into. Each option is read
    by the loop or by the part named in its comment."""

    # the parts (registered by name: `alignkit plugins` lists them)
    advantage: str = "gae"
    policy_loss: str = "ppo_clip"
    loss_aggregation: str = "token_mean"  # core/rl.py AGGREGATIONS (token, sequence: the old names)
    samples_per_prompt: int = 1  # k: responses per prompt, the group a baseline comes from
    # rollouts
    max_new_tokens: int = 48
    min_new_tokens: int = 0  # > 0: no end-of-sequence before this many tokens
    temperature: float = 1.0
    top_p: float = 1.0
    max_prompt_tokens: int = 0  # 0: trainer.max_length - max_new_tokens
    generation_batch_size: int = 0  # 0: the whole rollout batch in one generate call
    prompt_filter: Optional[str] = None  # package.module:function(prompt) -> bool
    dynamic_sampling: bool = False  # DAPO: drop groups whose scores are all equal, sample more prompts
    dynamic_sampling_rounds: int = 3  # at most this many extra rounds of prompts per step
    # reward shaping
    reward_scale: float = 1.0
    missing_eos_penalty: float = 0.0  # subtracted from the score of a response cut at max_new_tokens
    overlong_buffer: int = 0  # DAPO: the last N of max_new_tokens cost up to overlong_penalty (0: off)
    overlong_penalty: float = 1.0
    reward_normalize: bool = False  # subtract the running mean, divide by the running std
    reward_clip: float = 0.0  # 0: off
    # KL to the frozen reference
    kl_coef: float = 0.05
    kl_penalty: str = "reward"  # reward: subtracted from the reward | loss: in the policy loss per token
    kl_estimator: str = "k1"  # k1 | k2 | k3 (kl_penalty=loss needs k2 or k3)
    adaptive_kl: bool = False  # Ziegler et al.'s controller towards target_kl
    target_kl: float = 6.0
    kl_horizon: int = 10000
    reference: str = "auto"  # auto | copy | adapter | none   (auto: adapter with trainer.lora, else copy)
    reward_placement: str = "every_rank"  # several processes: every_rank | rank0 (one copy)
    reference_placement: str = "every_rank"
    # critic (estimators that need one: gae)
    critic: str = "separate"  # separate | shared (a value head on the policy)
    critic_init: str = "auto"  # auto | policy | reward_model
    value_learning_rate: Optional[float] = None  # null: trainer.learning_rate
    vf_coef: float = 0.1
    cliprange_value: float = 0.2
    # estimators
    gamma: float = 1.0  # gae: discount | dpo_pairwise with loss_type=simpo: the target margin
    lam: float = 0.95  # gae
    whiten_advantages: bool = True  # gae
    normalize_advantages: bool = False  # rloo: whiten over the batch
    scale_rewards: bool = True  # grpo: divide by the group's std
    ties: str = "skip"  # best_vs_worst: skip a group whose scores tie | keep (first = chosen, TRL)
    # dpo_pairwise: which two of a group's k responses form its pair
    pair_selection: str = "best_vs_worst"  # best_vs_worst (the estimator's marks) | divpo (core/pair_selection.py)
    divpo_rho: float = 0.5  # divpo: the top / bottom rho of the scores are the chosen / rejected pools
    diversity: str = "distinct_n"  # divpo: distinct_n | embedding | package.module:function (core/diversity.py)
    diversity_n: int = 2  # distinct_n: the n-gram order
    embedder: Optional[str] = None  # embedding: package.module:function(texts) -> vectors (null: MiniLM)
    # update
    update_epochs: int = 1  # passes over each step's rollouts
    ppo_epochs: Optional[int] = None  # ppo's name for update_epochs (wins when set)
    mini_batch_size: int = 0  # 0: the whole rollout batch
    cliprange: float = 0.2
    clip_low: Optional[float] = None  # null: cliprange (ratio >= 1 - clip_low)
    clip_high: Optional[float] = None  # null: cliprange (ratio <= 1 + clip_high; DAPO's clip-higher)
    ratio_level: str = "token"  # ppo_clip: token | sequence (one ratio per response, TRL's RLOO)
    entropy_coef: float = 0.0
    max_approx_kl: float = 0.0  # 0: never stop early
    # dpo_pairwise
    beta: float = 0.1
    loss_type: str = "sigmoid"  # plugins/dpo/losses.py LOSS_TYPES
    label_smoothing: float = 0.0
    alpha: float = 0.0  # rdpo
    # reporting
    sample_every: int = 10
    samples_per_log: int = 4
    eval_prompts: int = 16
    eval_temperature: float = 0.0

    def __post_init__(self) -> None:
        for key, allowed in CHOICES.items():
            if getattr(self, key) not in allowed:
                raise ConfigError(f"optimizer.{key} must be one of {', '.join(allowed)}, not '{getattr(self, key)}'")
        self.loss_aggregation = LEGACY_AGGREGATIONS.get(self.loss_aggregation, self.loss_aggregation)
        if self.ppo_epochs is not None:
            self.update_epochs = self.ppo_epochs
        for key in ("max_new_tokens", "update_epochs", "kl_horizon", "samples_per_prompt"):
            if getattr(self, key) < 1:
                raise ConfigError(f"optimizer.{key} must be at least 1, got {getattr(self, key)}")
        if self.adaptive_kl and self.target_kl <= 0:
            raise ConfigError("optimizer.target_kl must be positive with optimizer.adaptive_kl=true")
        if self.kl_penalty == "loss" and self.kl_estimator == "k1":
            raise ConfigError("optimizer.kl_penalty=loss needs kl_estimator=k3 or k2: the gradient of k1 in the loss "
                              "is a constant push on every log-prob, not the gradient of the KL")
        if self.ratio_level == "sequence" and self.kl_penalty == "loss":
            raise ConfigError("optimizer.ratio_level=sequence takes one ratio per response: put the KL in the reward "
                              "(optimizer.kl_penalty=reward) or use ratio_level=token")
        if self.reference == "none" and self.policy_loss == "dpo_pairwise" and self.loss_type != "simpo":
            raise ConfigError(f"optimizer.reference=none: loss_type={self.loss_type} compares with the reference "
                              "model's log-probs; keep a reference or use loss_type=simpo (reference-free)")
        if self.reference == "none" and (self.kl_coef != 0 or self.adaptive_kl):
            raise ConfigError("optimizer.reference=none leaves nothing to measure the KL against: set "
                              "optimizer.kl_coef=0 (and adaptive_kl=false), or keep a reference")
        if not 0 < self.top_p <= 1 or self.temperature < 0 or self.cliprange <= 0:
            raise ConfigError("optimizer.top_p must be in (0, 1], temperature >= 0 and cliprange > 0")
        if self.beta <= 0:
            raise ConfigError(f"optimizer.beta must be > 0, got {self.beta}")
        if not 0 <= self.overlong_buffer < self.max_new_tokens + 1 or self.dynamic_sampling_rounds < 0:
            raise ConfigError(f"optimizer.overlong_buffer must be in [0, max_new_tokens ({self.max_new_tokens})] "
                              f"and optimizer.dynamic_sampling_rounds >= 0")
        if self.dynamic_sampling and self.samples_per_prompt < 2:
            raise ConfigError("optimizer.dynamic_sampling drops groups whose scores are all equal: it needs "
                              f"optimizer.samples_per_prompt of at least 2, got {self.samples_per_prompt}")
        if self.pair_selection == "divpo":
            if self.policy_loss != "dpo_pairwise" or self.samples_per_prompt < 2:
                raise ConfigError("optimizer.pair_selection=divpo picks a pair among each prompt's samples: it needs "
                                  "optimizer.policy_loss=dpo_pairwise and samples_per_prompt of at least 2")
            from alignkit.core.pair_selection import check_rho

            check_rho(self.divpo_rho, "optimizer.divpo_rho")
        from alignkit.core.preference_losses import LOSS_TYPES

        if self.loss_type not in LOSS_TYPES:
            raise ConfigError(f"optimizer.loss_type must be one of {', '.join(LOSS_TYPES)}, not '{self.loss_type}'")

    @property
    def sampling_temperature(self) -> float:
        """The temperature log-probs are computed at: the sampling one (greedy: 1)."""
        return self.temperature if self.temperature > 0 else 1.0

    def part_options(self, **current: Any) -> dict[str, Any]:
        """The options a part reads (``AdvantageInputs.options`` / ``PolicyLossInputs.options``),
        with the clip range resolved and ``current`` values (the KL controller's coefficient)."""
        out = dataclasses.asdict(self)
        out["clip_low"] = self.cliprange if self.clip_low is None else self.clip_low
        out["clip_high"] = self.cliprange if self.clip_high is None else self.clip_high
        out["kl_in_loss"] = self.kl_penalty == "loss"
        out.update(current)
        return out


def parse(config: Any, schema: type = RLOptions) -> RLOptions:
    """The options of an ``optimizer`` node the core validated (preflight gets the node; the
    factory gets the schema's instance from the core)."""
    data = OmegaConf.to_container(config, resolve=True) if not isinstance(config, dict) else dict(config)
    known = {f.name for f in dataclasses.fields(schema)}
    return schema(**{k: v for k, v in data.items() if k in known})  # not `name`, nor a stage's `trainer`


@functools.lru_cache(maxsize=None)
def schema(name: str) -> type:
    """``RLOptions`` with the defaults of conf/optimizer/<name>.yaml: what a stage that runs
    ``name`` without that file's node (``stages[].config``) starts from."""
    text = (resources.files("alignkit.conf") / "optimizer" / f"{name}.yaml").read_text()
    data = OmegaConf.to_container(OmegaConf.create(text), resolve=True)
    types = typing.get_type_hints(RLOptions)
    fields = [(f.name, types[f.name], dataclasses.field(default=data.get(f.name, f.default)))
              for f in dataclasses.fields(RLOptions)]
    namespace = {"__doc__": f"Options of ``optimizer={name}``: {ALGORITHMS[name]}", "__module__": __name__}
    return dataclasses.make_dataclass(f"{name.title().replace('_', '')}Options", fields, bases=(RLOptions,),
                                      namespace=namespace)
