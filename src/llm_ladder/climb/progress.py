"""Rich progress for a climb: one bar over every measured request and suite item, status lines above it."""

from __future__ import annotations

from rich.console import Console
from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeElapsedColumn
from rich.text import Text

from llm_ladder.measure.client import RequestRecord
from llm_ladder.quality.suites import ItemResult


class ClimbProgress:
    """Context manager; `notify` prints a line, `advance` counts a finished request, `advance_item` a suite item."""

    def __init__(self, console: Console, total: int) -> None:
        self.console = console
        self.progress = Progress(
            TextColumn("{task.description}"),
            BarColumn(),
            MofNCompleteColumn(),
            TimeElapsedColumn(),
            console=console,
            transient=True,
        )
        self.task = self.progress.add_task("requests", total=total)

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
