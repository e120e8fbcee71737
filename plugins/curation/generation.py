"""Self-Instruct generation (Wang et al. 2022): the bootstrap loop.

Each request batch k:

1. builds ``request_batch_size`` prompts, each listing ``num_prompt_instructions`` tasks from
   the pool (seed tasks, and up to ``machine_in_prompt`` generated ones) and asking for one
   more ("Come up with a series of tasks: 1. ... 9."), then samples the teacher;
2. parses the proposed instructions and drops those failing the quality filters or within
   ROUGE-L ``rouge_threshold`` of the pool or of this batch (``filters``, ``rouge``);
3. asks the teacher whether each survivor is a classification task (P("Yes") >= 0.5 from a
   few-shot prompt built from the seed tasks);
4. asks for one instance per task: input first, then output, for ordinary tasks; class
   label first, then input, for classification tasks (the paper's output-first order, which
   keeps labels balanced); parses and filters it (``filters.instance_problem``);
5. writes batch k (records and rejection counts) atomically (``store``).

Batch k uses the random seed ``(seed, k)`` for its choice of in-context tasks and for the
teacher's sampling, so a resumed generation redoes exactly the batch that was lost.
"""

from __future__ import annotations

import logging
import random
import re
from collections import Counter
from typing import Any, Callable, Sequence

from alignkit.core.progress import SamplingProgress
from alignkit.plugins.curation.filters import FilterConfig, instance_problem, instruction_problem
from alignkit.plugins.curation.rouge import RougeIndex
from alignkit.plugins.curation.seeds import SeedTask
from alignkit.plugins.curation.store import GenerationStore
from alignkit.plugins.curation.teacher import Teacher

log = logging.getLogger("alignkit.curation")

_NUMBERED = re.compile(r"\n\s*\d+\s*[.)]\s*")

CLASSIFY_HEAD = "Can the following task be regarded as a classification task with finite output labels?\n\n"
INPUT_FIRST_HEAD = ("Come up with an example for the last task. If the task doesn't require additional input, "
                    "you can generate the output directly.\n\n")
OUTPUT_FIRST_HEAD = ("Given the classification task definition and the class labels, generate an input that "
                     "corresponds to the class label for the last task. If the task doesn't require input, just "
                     "generate the correct class label.\n\n")


def clean_instruction(text: str) -> str:
    """One line, single spaces, first letter capitalised (the paper's normalisation)."""
    text = re.sub(r"\s+", " ", text).strip().strip("\"'").strip()
    return text[:1].upper() + text[1:]


def instruction_prompt(instructions: Sequence[str]) -> str:
    lines = "".join(f"{i}. {' '.join(t.split())}\n" for i, t in enumerate(instructions, start=1))
    return f"Come up with a series of tasks:\n\n{lines}{len(instructions) + 1}."


def parse_instructions(text: str, first_number: int) -> list[str]:
    """The instructions of a completion of ``instruction_prompt``: the text before the next
    number is task ``first_number`` (a leading repetition of that number is dropped); each
    later "N." item is one more task."""
    text = re.sub(rf"^\s*{first_number}\s*[.)]\s*", "", text.strip())
    parts = _NUMBERED.split("\n" + text)
    return [clean_instruction(p) for p in parts if p.strip()]


def classification_prompt(instruction: str, examples: Sequence[SeedTask]) -> str:
    shots = "".join(f"Task: {t.instruction}\nIs it classification? {'Yes' if t.is_classification else 'No'}\n\n"
                    for t in examples)
    return f"{CLASSIFY_HEAD}{shots}Task: {instruction}\nIs it classification?"


def instance_prompt(instruction: str, is_classification: bool, examples: Sequence[SeedTask]) -> str:
    parts = [OUTPUT_FIRST_HEAD if is_classification else INPUT_FIRST_HEAD]
    for task in examples:
        input_text, output = task.instances[0]
        if is_classification:
            parts.append(f"Task: {task.instruction}\nClass label: {output}\nInput: {input_text}\n\n"
                         if input_text.strip() else f"Task: {task.instruction}\nClass label: {output}\n\n")
        else:
            parts.append(f"Task: {task.instruction}\nInput: {input_text}\nOutput: {output}\n\n"
                         if input_text.strip() else f"Task: {task.instruction}\nOutput: {output}\n\n")
    parts.append(f"Task: {instruction}\n")
    return "".join(parts)


def _after(text: str, marker: str) -> str | None:
    match = re.search(rf"(?:^|\n)\s*{marker}\s*:", text, re.IGNORECASE)
    return None if match is None else text[match.end():]


def _until_next(text: str, markers: Sequence[str]) -> str:
    pattern = "|".join(markers)
    match = re.search(rf"\n\s*(?:{pattern})\s*:", text, re.IGNORECASE)
    return (text[:match.start()] if match else text).strip()


def parse_instance(text: str, is_classification: bool) -> tuple[str, str]:
    """(input, output) from a completion of ``instance_prompt``: "Class label: ... Input: ..."
    (classification) or "Input: ... Output: ..." (either is read whatever was asked for).
    Without the markers the whole completion is the output (input empty)."""
    text = "\n" + text.strip()
    task = re.search(r"\n\s*Task\s*:", text[1:], re.IGNORECASE)  # a second task starts: cut there
    if task:
        text = text[:task.start() + 1]
    label = _after(text, "Class label")
    output = _after(text, "Output")
    if label is not None and (is_classification or output is None):
        rest = _after(label, "Input")
        return (_until_next(rest, ["Class label", "Task"]) if rest is not None else "",
                _until_next(label, ["Input", "Task", "Class label"]))
    if output is None:
        return "", re.sub(r"^\s*Input\s*:\s*", "", text.strip(), flags=re.IGNORECASE).strip()
    before = text[:len(text) - len(output)]
    before = re.sub(r"\n?\s*Output\s*:\s*$", "", before, flags=re.IGNORECASE)
    input_text = _after(before, "Input")
    return (input_text or "").strip(), _until_next(output, ["Input", "Task", "Output"])


class SelfInstructGenerator:
    """Runs request batches until the pool holds ``num_instructions`` tasks or ``max_batches``."""

    def __init__(self, *, seeds: Sequence[SeedTask], store: GenerationStore, teacher: Callable[[], Teacher],
                 num_instructions: int, max_batches: int, request_batch_size: int = 8,
                 num_prompt_instructions: int = 8, machine_in_prompt: int = 2, temperature: float = 0.7,
                 top_p: float = 0.5, max_new_tokens: int = 128, instance_temperature: float = 0.0,
                 instance_max_new_tokens: int = 256, classification_shots: int = 6, instance_shots: int = 2,
                 filters: FilterConfig | None = None, seed: int = 0, progress: bool | None = None) -> None:
        self.seeds = list(seeds)
        self.store = store
        self._teacher_factory = teacher
        self._teacher: Teacher | None = None
        self.num_instructions = int(num_instructions)
        self.max_batches = int(max_batches)
        self.request_batch_size = max(1, int(request_batch_size))
        self.num_prompt_instructions = max(1, int(num_prompt_instructions))
        self.machine_in_prompt = max(0, int(machine_in_prompt))
        self.temperature, self.top_p, self.max_new_tokens = float(temperature), float(top_p), int(max_new_tokens)
        self.instance_temperature = float(instance_temperature)
        self.instance_max_new_tokens = int(instance_max_new_tokens)
        self.classification_shots = int(classification_shots)
        self.instance_shots = int(instance_shots)
        self.filters = filters or FilterConfig()
        self.seed = int(seed)
        self.progress = progress  # the bar over tasks (None: on a terminal only)

    @property
    def teacher(self) -> Teacher:
        if self._teacher is None:
            self._teacher = self._teacher_factory()
        return self._teacher

    # -- the pool ------------------------------------------------------------------------
    def run(self, on_batch: Callable[[int, dict[str, Any]], None] | None = None) -> list[dict[str, Any]]:
        """Generate until done; returns every batch (the ones on disk first)."""
        self.store.open()
        batches = self.store.batches()
        records = [r for b in batches for r in b["records"]]
        index = RougeIndex(self.filters.rouge_threshold, [t.instruction for t in self.seeds])
        for r in records:
            index.add(r["instruction"])
        if batches:
            log.info("self_instruct: resuming at batch %d with %d generated tasks (%s)", len(batches),
                     len(records), self.store.folder)
        k = len(batches)
        done = min(len(records), self.num_instructions)
        with SamplingProgress("self_instruct", self.num_instructions, self.progress, unit="task",
                              initial=done) as bar:
            while len(records) < self.num_instructions and k < self.max_batches:
                batch = self._batch(k, index, [r["instruction"] for r in records])
                self.store.write_batch(k, batch)
                batches.append(batch)
                records.extend(batch["records"])
                for r in batch["records"]:
                    index.add(r["instruction"])
                log.info("self_instruct: batch %d: %d of %d candidates kept; %d / %d tasks", k,
                         len(batch["records"]), batch["candidates"], len(records), self.num_instructions)
                tokens = getattr(self._teacher, "new_tokens", 0)  # a local teacher counts them; a server's: 0
                bar.update(min(len(records), self.num_instructions) - done, tokens - bar.tokens)
                done = min(len(records), self.num_instructions)
                if on_batch is not None:
                    on_batch(k, batch)
                k += 1
        if len(records) < self.num_instructions:
            log.warning("self_instruct: stopped after max_batches=%d with %d of %d tasks; the filters rejected "
                        "the rest (see the rejection counts in %s)", self.max_batches, len(records),
                        self.num_instructions, self.store.folder / "metadata.json")
        return batches

    def _batch(self, k: int, index: RougeIndex, machine: Sequence[str]) -> dict[str, Any]:
        rng = random.Random(f"{self.seed}:{k}")
        batch_seed = rng.randrange(2**31)
        seed_instructions = [t.instruction for t in self.seeds]
        prompts, numbers = [], []
        for _ in range(self.request_batch_size):
            n_machine = min(self.machine_in_prompt, len(machine), self.num_prompt_instructions)
            n_human = min(self.num_prompt_instructions - n_machine, len(seed_instructions))
            shown = rng.sample(seed_instructions, n_human) + rng.sample(list(machine), n_machine)
            prompts.append(instruction_prompt(shown))
            numbers.append(len(shown) + 1)
        texts = self.teacher.complete(prompts, max_new_tokens=self.max_new_tokens, temperature=self.temperature,
                                      top_p=self.top_p, seed=batch_seed)
        rejected: Counter = Counter()
        candidates = [c for text, n in zip(texts, numbers) for c in parse_instructions(text, n)]
        in_batch = RougeIndex(self.filters.rouge_threshold)
        survivors = []
        for candidate in candidates:
            problem = instruction_problem(candidate, self.filters)
            if problem is None and (index.match(candidate) is not None or in_batch.match(candidate) is not None):
                problem = "rouge"
            if problem is not None:
                rejected[problem] += 1
                continue
            in_batch.add(candidate)
            survivors.append(candidate)
        records = []
        if survivors:
            shots = self._classification_shots(rng)
            probs = self.teacher.yes_probability([classification_prompt(s, shots) for s in survivors])
            flags = [p >= 0.5 for p in probs]
            instance_prompts = [instance_prompt(s, flag, self._instance_shots(rng, flag))
                                for s, flag in zip(survivors, flags)]
            outputs = self.teacher.complete(instance_prompts, max_new_tokens=self.instance_max_new_tokens,
                                            temperature=self.instance_temperature, top_p=1.0, seed=batch_seed + 1)
            for j, (instruction, flag, p, text) in enumerate(zip(survivors, flags, probs, outputs)):
                input_text, output = parse_instance(text, flag)
                problem = instance_problem(input_text, output, self.filters)
                if problem is not None:
                    rejected[problem] += 1
                    continue
                records.append({"id": f"gen_{k}_{j}", "instruction": instruction, "input": input_text,
                                "output": output, "is_classification": flag,
                                "classification_probability": round(float(p), 4), "batch": k})
        return {"batch": k, "seed": batch_seed, "requests": len(prompts), "candidates": len(candidates),
                "rejected": dict(sorted(rejected.items())), "records": records}

    def _classification_shots(self, rng: random.Random) -> list[SeedTask]:
        yes = [t for t in self.seeds if t.is_classification]
        no = [t for t in self.seeds if not t.is_classification]
        half = self.classification_shots // 2
        shots = rng.sample(yes, min(half, len(yes))) + rng.sample(no, min(self.classification_shots - half, len(no)))
        rng.shuffle(shots)
        return shots

    def _instance_shots(self, rng: random.Random, is_classification: bool) -> list[SeedTask]:
        same = [t for t in self.seeds if t.is_classification == is_classification] or self.seeds
        return rng.sample(same, min(self.instance_shots, len(same)))
