"""Rich progress for a climb: one bar over every measured request and suite item, status lines above it, and the
current rung and phase with the climb's elapsed and expected time."""

from __future__ import annotations

import time
from collections.abc import Callable

from rich.console import Console
from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeElapsedColumn
from rich.text import Text

from llm_ladder.measure.client import RequestRecord
from llm_ladder.quality.suites import ItemResult


class Eta:
    """The climb's expected total from the rungs measured so far: each rung still to come takes the mean of those
    done, and the current one at least what it has taken already. None until a rung is done."""

    def __init__(self, rungs: int, clock: Callable[[], float] = time.monotonic) -> None:
        self.rungs, self.clock = rungs, clock
        self.start = clock()
        self.done: list[float] = []
        self.current: float | None = None
        """When the rung being measured started."""

    def rung_started(self) -> None:
        self.current = self.clock()

    def rung_done(self, seconds: float) -> None:
        self.done.append(seconds)
        self.current = None

    def expected(self) -> float | None:
        if not self.done:
            return None
        mean, now = sum(self.done) / len(self.done), self.clock()
        ahead = self.rungs - len(self.done)
        if self.current is not None:
            ahead -= 1
            now += max(0.0, mean - (now - self.current))
        return now - self.start + mean * max(0, ahead)

    def describe(self) -> str:
        expected = self.expected()
        tail = f"expected {expected / 60:.0f} min" if expected is not None else "expected: after the first rung"
        return f"climb {(self.clock() - self.start) / 60:.1f} min, {tail}"


class ClimbProgress:
    """Context manager; `notify` prints a line, `advance` counts a finished request, `advance_item` a suite item,
    `phase` and `rung_done` keep the current rung, phase and expected time on the bar's line."""

    def __init__(self, console: Console, total: int, rungs: int = 0) -> None:
        self.console = console
        self.progress = Progress(
            TextColumn("{task.description}"),
            BarColumn(),
            MofNCompleteColumn(),
            TimeElapsedColumn(),
            TextColumn("{task.fields[eta]}"),
            console=console,
            transient=True,
        )
        self.eta = Eta(rungs)
        self.task = self.progress.add_task("requests", total=total, eta="")

    def phase(self, rung: str, phase: str) -> None:
        """A rung's phase begins: shown with the climb's elapsed and expected time."""
        if phase == "startup":
            self.eta.rung_started()
        self.progress.update(self.task, description=f"{rung} · {phase}", eta=self.eta.describe())

    def rung_done(self, rung: str, seconds: float) -> None:
        self.eta.rung_done(seconds)
        self.progress.update(self.task, eta=self.eta.describe())

    def __enter__(self) -> ClimbProgress:
        self.progress.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self.progress.stop()

    def notify(self, message: str) -> None:
        self.progress.console.print(message)
        self.progress.update(self.task, description=Text.from_markup(message).plain.split(":")[0])

    def advance(self, record: RequestRecord) -> None:
        status = "" if record.ok else f" [red]error: {record.error}[/red]"
        tps = f"{record.decode_tps:.1f} tok/s" if record.decode_tps else "n/a"
        self.console.print(f"  {record.workload} #{record.trial + 1}: {tps}{status}", highlight=False)
        self.progress.advance(self.task)

    def advance_item(self, item: ItemResult) -> None:
        """Suite items are many and short: counted on the bar, printed only when they fail to get an answer."""
        if item.error:
            self.console.print(f"  [red]{item.suite}/{item.id}: {item.error}[/red]", highlight=False)
        self.progress.advance(self.task)

    def advance_quietly(self, record: RequestRecord) -> None:
        """Load runs send many requests: counted on the bar, printed only when they fail."""
        if not record.ok:
            self.console.print(f"  [red]request failed ({record.error_kind}): {record.error}[/red]", highlight=False)
        self.progress.advance(self.task)
