"""``alignkit data generate`` is never silent: a bar over the tasks and a totals line."""

import logging

from alignkit.plugins.curation.filters import FilterConfig
from alignkit.plugins.curation.generation import SelfInstructGenerator
from alignkit.plugins.curation.seeds import SeedTask
from alignkit.plugins.curation.store import GenerationStore

TASKS = ["Name three rivers that flow through Europe.", "Convert twelve kilograms into pounds please.",
         "Summarise the story of a famous novel briefly.", "List prime numbers smaller than thirty exactly."]


class ScriptedTeacher:
    """Proposes the next of ``TASKS`` for each request and answers every instance the same; counts
    10 generated tokens a completion, as ``LocalTeacher.new_tokens`` does."""

    name = "scripted"

    def __init__(self):
        self.proposed, self.new_tokens = 0, 0

    def complete(self, prompts, **kw):
        self.new_tokens += 10 * len(prompts)
        if "Come up with a series of tasks" in prompts[0]:
            out = TASKS[self.proposed:self.proposed + len(prompts)]
            self.proposed += len(prompts)
            return out
        return ["Output: a fine answer to the task." for _ in prompts]

    def yes_probability(self, prompts):
        return [0.0 for _ in prompts]


def test_generation_shows_a_bar_over_tasks_and_logs_its_totals(tmp_path, capsys, caplog):
    caplog.set_level(logging.INFO, logger="alignkit")
    seeds = [SeedTask(id="s1", instruction="Give a synonym for the word happy.", instances=(("", "glad"),),
                      is_classification=False)]
    teacher = ScriptedTeacher()
    gen = SelfInstructGenerator(seeds=seeds, store=GenerationStore(tmp_path / "gen", {"test": 1}),
                                teacher=lambda: teacher, num_instructions=4, max_batches=4, request_batch_size=2,
                                num_prompt_instructions=1, filters=FilterConfig(min_words=0), progress=True)
    batches = gen.run()
    assert [len(b["records"]) for b in batches] == [2, 2]
    err = capsys.readouterr().err
    assert "self_instruct" in err and "4/4" in err and "task" in err and "tok/s" in err
    # 2 batches x (2 proposals + 2 instances) x 10 tokens = 80 tokens
    [line] = [r.getMessage() for r in caplog.records if r.getMessage().startswith("self_instruct: 4 tasks")]
    assert line.startswith("self_instruct: 4 tasks, 80 new tokens in ")
