"""The climb's live view (climb/progress.py): the expected total from the rungs measured so far."""

import io

from rich.console import Console

from llm_ladder.climb.progress import ClimbProgress, Eta


class Clock:
    def __init__(self) -> None:
        self.now = 0.0

    def __call__(self) -> float:
        return self.now


def test_expected_time_comes_from_the_rungs_done_so_far():
    clock = Clock()
    eta = Eta(rungs=4, clock=clock)
    eta.rung_started()
    assert eta.expected() is None and "after the first rung" in eta.describe()
    clock.now = 100.0
    eta.rung_done(100.0)
    assert eta.expected() == 400.0  # three more rungs of 100 s
    eta.rung_started()
    clock.now = 130.0
    assert eta.expected() == 400.0  # 30 s into the second rung: 70 s left of it, then two more
    clock.now = 260.0  # the second rung runs long: at least what it took already
    assert eta.expected() == 260.0 + 2 * 100.0
    eta.rung_done(160.0)
    assert eta.expected() == 260.0 + 2 * 130.0
    assert eta.describe() == "climb 4.3 min, expected 9 min"


def test_the_bar_shows_the_rung_phase_and_expected_time():
    progress = ClimbProgress(Console(file=io.StringIO()), total=10, rungs=2)
    progress.phase("int4", "startup")
    task = progress.progress.tasks[0]
    assert task.description == "int4 · startup" and "expected: after the first rung" in task.fields["eta"]
    progress.rung_done("int4", 60.0)
    progress.phase("int8", "startup")
    progress.phase("int8", "suites")
    assert task.description == "int8 · suites" and "expected 1 min" in task.fields["eta"]  # one more rung of 60 s
