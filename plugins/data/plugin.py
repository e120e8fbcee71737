"""Built-in data sources: ``demo`` (shipped sample data) and ``files`` (your files or hub ids).

Both hand out ``datasets.Dataset`` objects with the normalised columns of
``alignkit.plugins.data.records``; see docs/data.md.
"""

import logging
from dataclasses import asdict, dataclass, field, fields, is_dataclass
from pathlib import Path
from typing import Any, Optional

from alignkit.core import ConfigError, DataSourceEntry, hookimpl
from alignkit.plugins.data import formats as F
from alignkit.plugins.data import loaders as L
from alignkit.plugins.data import records as R

log = logging.getLogger("alignkit.data")

DEMO_DIR = Path(__file__).resolve().parent / "demo"
SPLITS = ("train", "eval")
# data=demo's prompt sets: (training prompts, held-out prompts or None for an eval_fraction split)
DEMO_PROMPT_SETS = {"mixed": ("prompts.jsonl", None), "math": ("math_prompts.jsonl", "math_eval_prompts.jsonl")}
# data=demo's preference sets (data.preferences=..., or a stage's `data: {preferences: ...}`): every family's pairs,
# or the helpfulness / harmlessness pairs of pipeline=llama2_chat's two reward models (demo/README.md)
DEMO_PREFERENCE_SETS = {"mixed": "preferences.jsonl", "helpful": "helpful_preferences.jsonl",
                        "harmless": "harmless_preferences.jsonl"}
ON_BAD_RECORD = ("error", "skip")
# The demo's task (core/task.py): the arithmetic questions its rules check, and their rewards
DEMO_VERIFIER = "alignkit.plugins.rules.demo:verifiable"
DEMO_SCORERS = ("alignkit.plugins.rules.demo:arithmetic_graded", "alignkit.plugins.rules.demo:arithmetic_correct")


# -- option schemas (fields = the keys of conf/data/<name>.yaml, minus ``name``) ----------


@dataclass
class DemoDataConfig:
    """Options of ``data=demo``."""

    prompt_set: str = "mixed"
    preferences: str = "mixed"  # mixed | helpful | harmless (DEMO_PREFERENCE_SETS)
    eval_fraction: float = 0.1
    seed: int = 0
    on_bad_record: str = "error"


@dataclass
class TaskConfig:
    """``data.task``: what your prompts ask, for the stages whose options say ``task``
    (``label.prompt_filter: task``, ``evaluate.scorers: [task]``; core/task.py)."""

    verifier: Optional[str] = None  # package.module:function(prompt) -> bool: prompts whose answers can be checked
    scorers: list[str] = field(default_factory=list)  # package.module:function(prompt_messages, response) -> float


@dataclass
class FilesDataConfig:
    """Options of ``data=files``."""

    sft: Optional[str] = None
    preferences: Optional[str] = None
    prompts: Optional[str] = None
    eval_sft: Optional[str] = None
    eval_preferences: Optional[str] = None
    eval_prompts: Optional[str] = None
    format: str = "auto"
    eval_fraction: float = 0.1
    seed: int = 0
    on_bad_record: str = "error"
    # every text of a record (a message, chosen, rejected) is cut to this many characters
    # before tokenising: one 50 MB line otherwise takes gigabytes; null: no cap
    max_chars_per_field: Optional[int] = 20000
    task: TaskConfig = field(default_factory=TaskConfig)


# -- sources ----------------------------------------------------------------------------


class FilesDataSource:
    """A ``DataSource`` over local files and hub datasets.

    Each configured file is read, validated and converted once (on first use) and kept.
    ``skipped`` maps an option name (``"sft"``, ``"eval_preferences"``, ...) to the number
    of bad records skipped when ``on_bad_record="skip"``; ``truncated`` to the number of
    records cut to ``max_chars_per_field``; ``identical`` to the number of preference pairs
    dropped because ``chosen`` and ``rejected`` are the same.

    It declares the task of ``task`` (``interfaces.TaskDeclaration``): ``task_verifier`` and
    ``task_scorers``, none unless configured.
    """

    def __init__(self, *, sft: Optional[str] = None, preferences: Optional[str] = None,
                 prompts: Optional[str] = None, eval_sft: Optional[str] = None,
                 eval_preferences: Optional[str] = None, eval_prompts: Optional[str] = None,
                 format: str = F.AUTO, eval_fraction: float = 0.1, seed: int = 0,
                 on_bad_record: str = "error",
                 max_chars_per_field: Optional[int] = FilesDataConfig.max_chars_per_field,
                 task: Any = None, name: str = "files") -> None:
        if format not in F.FORMAT_CHOICES:
            raise ConfigError(f"data '{name}': unknown format '{format}'; use one of: "
                              f"{', '.join(F.FORMAT_CHOICES)}")
        if on_bad_record not in ON_BAD_RECORD:
            raise ConfigError(f"data '{name}': on_bad_record must be 'error' or 'skip', not '{on_bad_record}'")
        if not 0.0 <= float(eval_fraction) < 1.0:
            raise ConfigError(f"data '{name}': eval_fraction must be in [0, 1), not {eval_fraction}")
        if max_chars_per_field is not None and (isinstance(max_chars_per_field, bool)
                                                or not isinstance(max_chars_per_field, int)
                                                or max_chars_per_field < 1):
            raise ConfigError(f"data '{name}': max_chars_per_field must be a positive number of characters "
                              f"or null (no cap), not {max_chars_per_field!r}")
        self.name = name
        self.task_verifier, self.task_scorers = _task(task, name)
        self.format = format
        self.eval_fraction = float(eval_fraction)
        self.seed = int(seed)
        self.on_bad_record = on_bad_record
        self.max_chars_per_field = max_chars_per_field
        specs = {"sft": sft, "preferences": preferences, "prompts": prompts,
                 "eval_sft": eval_sft, "eval_preferences": eval_preferences, "eval_prompts": eval_prompts}
        # Resolve now: a missing local file fails when the source is built, not mid-run.
        self.locations: dict[str, L.Location] = {
            option: L.locate(str(spec), "test" if option.startswith("eval_") else "train")
            for option, spec in specs.items() if spec not in (None, "")
        }
        self.skipped: dict[str, int] = {}
        self.truncated: dict[str, int] = {}
        self.identical: dict[str, int] = {}
        self.formats: dict[str, str] = {}
        self._files: dict[str, Any] = {}
        self._splits: dict[str, tuple[Any, Any]] = {}
        self._derived: dict[str, Any] = {}

    def __repr__(self) -> str:
        files = ", ".join(f"{k}={v.spec!r}" for k, v in self.locations.items())
        return f"{type(self).__name__}({files})"

    # -- DataSource --------------------------------------------------------------------
    def sft(self, split: str):
        return self._split("sft", split)

    def preferences(self, split: str):
        return self._split("preferences", split)

    def prompts(self, split: str):
        """The prompts file(s); without one, the prompts of the preference pairs, else of
        the SFT conversations (each distinct prompt once, in order)."""
        _check_split(split)
        if "prompts" in self.locations or "eval_prompts" in self.locations:
            return self._split("prompts", split)
        if split not in self._derived:
            self._derived[split] = self._derive_prompts(split)
        return self._derived[split]

    # -- internals ---------------------------------------------------------------------
    def _file(self, option: str):
        if option not in self._files:
            loc = self.locations.get(option)
            if loc is None:
                self._files[option] = None
            else:
                kind = option.removeprefix("eval_")
                loaded = L.load(loc, kind, fmt=self.format, on_bad_record=self.on_bad_record,
                                max_chars=self.max_chars_per_field)
                self.skipped[option] = loaded.skipped
                self.truncated[option] = loaded.truncated
                if kind == "preferences":
                    self.identical[option] = loaded.identical
                self.formats[option] = loaded.format
                self._files[option] = loaded.dataset
        return self._files[option]

    def _split(self, kind: str, split: str):
        _check_split(split)
        if kind not in self._splits:
            train, held = self._file(kind), self._file(f"eval_{kind}")
            if held is None and train is not None:
                train_idx, eval_idx = L.holdout(len(train), self.eval_fraction, self.seed)
                if eval_idx:
                    train, held = train.select(train_idx), train.select(eval_idx)
                    log.info("data: held out %d of %d %s records for eval (eval_fraction=%s, seed=%d)",
                             len(eval_idx), len(train_idx) + len(eval_idx), kind, self.eval_fraction, self.seed)
            self._splits[kind] = (train, held)
        return self._splits[kind][SPLITS.index(split)]

    def _derive_prompts(self, split: str):
        from datasets import Dataset

        for kind in ("preferences", "sft"):
            base = self._split(kind, split)
            if base is None:
                continue
            if kind == "preferences":
                prompts = base["prompt"]
            else:
                prompts = [R.prompt_of_conversation(m) for m in base["messages"]]
            seen: set[str] = set()
            rows = []
            for prompt in prompts:
                key = R.prompt_key(prompt)
                if key not in seen:
                    seen.add(key)
                    rows.append(R.prompt_record(prompt))
            return Dataset.from_list(rows, features=R.features("prompts"))
        return None


class DemoDataSource(FilesDataSource):
    """alignkit's own small demo data (``plugins/data/demo/*.jsonl``, Apache-2.0).

    ``prompt_set="mixed"``: the 100 prompts of every demo family (10% held out);
    ``"math"``: 800 arithmetic and conversion questions to train on and 120 held-out ones, all
    verifiable by ``alignkit.plugins.rules.demo``, for online RL that must not memorise answers.
    ``preferences="helpful"`` / ``"harmless"``: 50 pairs each, complete vs evasive answers and refusals of
    harmful requests vs compliance, for pipeline=llama2_chat's two reward models (default ``"mixed"``).
    Its task (``TaskDeclaration``) is that arithmetic: ``verifiable`` keeps the questions the rules
    check, ``arithmetic_graded`` and ``arithmetic_correct`` score the answers.
    """

    def __init__(self, *, prompt_set: str = "mixed", preferences: str = "mixed", eval_fraction: float = 0.1,
                 seed: int = 0, on_bad_record: str = "error", name: str = "demo") -> None:
        if prompt_set not in DEMO_PROMPT_SETS:
            raise ConfigError(f"data '{name}': prompt_set must be one of {', '.join(DEMO_PROMPT_SETS)}, "
                              f"not {prompt_set!r}")
        if preferences not in DEMO_PREFERENCE_SETS:
            raise ConfigError(f"data '{name}': preferences must be one of {', '.join(DEMO_PREFERENCE_SETS)}, "
                              f"not {preferences!r}; for a file of your own use data=files data.preferences=FILE")
        prompts, eval_prompts = DEMO_PROMPT_SETS[prompt_set]
        super().__init__(sft=str(DEMO_DIR / "sft.jsonl"), preferences=str(DEMO_DIR / DEMO_PREFERENCE_SETS[preferences]),
                         prompts=str(DEMO_DIR / prompts),
                         eval_prompts=str(DEMO_DIR / eval_prompts) if eval_prompts else None,
                         eval_fraction=eval_fraction, seed=seed, on_bad_record=on_bad_record,
                         task={"verifier": DEMO_VERIFIER, "scorers": list(DEMO_SCORERS)}, name=name)
        self.prompt_set = prompt_set


def _task(task: Any, name: str) -> tuple[Optional[str], tuple[str, ...]]:
    """``data.task`` (a mapping or a ``TaskConfig``) as (verifier, scorers), checked for shape;
    the functions themselves are imported by the pre-run check and the stages that use them."""
    if task is None:
        return None, ()
    if is_dataclass(task):
        task = asdict(task)
    if not isinstance(task, dict):
        raise ConfigError(f"data '{name}': task must be a mapping with verifier and scorers, not {task!r}")
    unknown = sorted(set(task) - {"verifier", "scorers"})
    if unknown:
        raise ConfigError(f"data '{name}': task has no option {', '.join(map(repr, unknown))}; "
                          "its options are: scorers, verifier")
    verifier, scorers = task.get("verifier"), task.get("scorers") or []
    if verifier is not None and (not isinstance(verifier, str) or ":" not in verifier):
        raise ConfigError(f"data '{name}': task.verifier must be package.module:function, not {verifier!r}")
    if isinstance(scorers, str) or not all(isinstance(s, str) and ":" in s for s in scorers):
        raise ConfigError(f"data '{name}': task.scorers must be a list of package.module:function, "
                          f"not {scorers!r}")
    return verifier or None, tuple(scorers)


def _check_split(split: str) -> None:
    if split not in SPLITS:
        raise ValueError(f"split must be 'train' or 'eval', not {split!r}")


# -- factories --------------------------------------------------------------------------


def _options(options: Any, schema: type, name: str) -> dict[str, Any]:
    """The validated options as keyword arguments. The core hands the factory a ``schema`` instance;
    a mapping (a direct call, ``files_source({"sft": "a.jsonl"})``) is checked the same way."""
    if not isinstance(options, schema):
        from alignkit.core.options import dataclass_options

        options = dataclass_options(schema, options, f"data source '{name}'")
    return {f.name: getattr(options, f.name) for f in fields(schema)}


def files_source(options: Any = None, ctx: Any = None) -> FilesDataSource:
    """Factory of ``data=files``: ``options`` is a ``FilesDataConfig`` (ctx: the RunContext, unused)."""
    return FilesDataSource(**_options(options, FilesDataConfig, "files"), name="files")


def demo_source(options: Any = None, ctx: Any = None) -> DemoDataSource:
    """Factory of ``data=demo``: ``options`` is a ``DemoDataConfig`` (ctx: the RunContext, unused)."""
    return DemoDataSource(**_options(options, DemoDataConfig, "demo"), name="demo")


@hookimpl
def alignkit_data_sources():
    yield DataSourceEntry(
        name="demo",
        factory=demo_source,
        description="alignkit's small demo data: ~300 SFT chats, ~400 preference pairs, ~100 prompts",
        config_schema=DemoDataConfig,
    )
    yield DataSourceEntry(
        name="files",
        factory=files_source,
        description="your JSONL/JSON/Parquet/CSV files or hub dataset ids (chat, TRL, Alpaca, Dolly, HH-RLHF)",
        config_schema=FilesDataConfig,
    )
