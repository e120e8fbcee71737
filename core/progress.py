"""Progress of the stages that sample: a tqdm bar (samples, tokens per second, ETA) and one log
line of totals at the end, so a long label or evaluate stage is never silent.

A stage opens one ``SamplingProgress`` over everything it samples and hands it to
``alignkit.core.lm.sample_responses`` (``progress=``), which advances it after every batch.
"""

from __future__ import annotations

import logging
import time
from typing import Any, Callable

log = logging.getLogger("alignkit")


class SamplingProgress:
    """A tqdm bar over samples with new tokens per second in its postfix; on exit one log line:
    ``<desc>: N samples, T new tokens in S s (x samples/s, y tokens/s)``.

    ``enabled``: True shows the bar, False hides it, None shows it on a terminal only (tqdm's
    ``disable=None``). The totals line is logged at ``level`` whether or not the bar is shown,
    and only when something was sampled. ``clock`` is replaceable for tests.
    """

    def __init__(self, desc: str, total_samples: int | None = None, enabled: bool | None = True, *,
                 unit: str = "sample", initial: int = 0, leave: bool = True, level: int = logging.INFO,
                 clock: Callable[[], float] = time.perf_counter) -> None:
        self.desc = desc
        self.total = total_samples
        self.enabled = enabled
        self.unit = unit
        self.initial = initial
        self.leave = leave
        self.level = level
        self.clock = clock
        self.samples = 0  # advanced in this session (``initial`` excluded: done before, e.g. on resume)
        self.tokens = 0
        self._started: float | None = None
        self._ended: float | None = None
        self._bar: Any = None

    def __enter__(self) -> SamplingProgress:
        from tqdm.auto import tqdm

        self._started = self.clock()
        self._bar = tqdm(total=self.total, initial=self.initial, desc=self.desc, unit=self.unit,
                         disable=None if self.enabled is None else not self.enabled, leave=self.leave,
                         dynamic_ncols=True)
        return self

    def update(self, samples: int = 0, tokens: int = 0) -> None:
        """Count ``samples`` more finished samples and ``tokens`` more generated tokens."""
        self.samples += samples
        self.tokens += tokens
        if self._bar is not None:
            self._bar.set_postfix_str(f"{self.tokens_per_second:.1f} tok/s", refresh=False)
            self._bar.update(samples)

    @property
    def seconds(self) -> float:
        if self._started is None:
            return 0.0
        return (self._ended if self._ended is not None else self.clock()) - self._started

    @property
    def samples_per_second(self) -> float:
        return self.samples / self.seconds if self.seconds > 0 else 0.0

    @property
    def tokens_per_second(self) -> float:
        return self.tokens / self.seconds if self.seconds > 0 else 0.0

    def summary(self) -> str:
        return (f"{self.desc}: {self.samples} {self.unit}s, {self.tokens} new tokens in {self.seconds:.1f} s "
                f"({self.samples_per_second:.2f} {self.unit}s/s, {self.tokens_per_second:.1f} tokens/s)")

    def __exit__(self, *exc: Any) -> None:
        self._ended = self.clock()
        if self._bar is not None:
            self._bar.close()
        if self.samples or self.tokens:
            log.log(self.level, "%s", self.summary())
