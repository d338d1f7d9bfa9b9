"""Where a climb's time goes: wall-clock seconds per phase of a rung (startup, warmup, each workload's trials,
answer scoring, agreement, task suites, load, stop, offline agreement), recorded as they run."""

from __future__ import annotations

import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager


class Phases:
    """`with phases("suites"): ...` adds the block's wall-clock seconds to that phase; phases keep their order."""

    def __init__(self, on_start: Callable[[str], None] | None = None) -> None:
        self.seconds: dict[str, float] = {}
        self.on_start = on_start

    @contextmanager
    def __call__(self, name: str) -> Iterator[None]:
        if self.on_start:
            self.on_start(name)
        start = time.perf_counter()
        try:
            yield
        finally:
            self.seconds[name] = self.seconds.get(name, 0.0) + time.perf_counter() - start

    def rounded(self) -> dict[str, float]:
        return {name: round(s, 2) for name, s in self.seconds.items()}
