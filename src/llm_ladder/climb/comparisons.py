"""What a rung is compared with once every rung is in: agreement with the baseline's prompt logprobs, paired
task-suite accuracy against the baseline, and a speculative rung's greedy answers against the same model without
speculation. A climb runs them at its end; `ladder tune` after each trial; `ladder fleet` after the merge."""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path

from llm_ladder.outputs.results import RungResult, RunSummary
from llm_ladder.plan.schema import Plan
from llm_ladder.quality.agreement import agreement, load_positions
from llm_ladder.quality.suites import ItemResult, by_suite, greedy_identity, load_items, paired


def logprobs_path(run_dir: Path, rung: str) -> Path:
    return run_dir / "logprobs" / f"{rung}.json"


def items_path(run_dir: Path, rung: str) -> Path:
    """Each task-suite item's prompt, answer and verdict, appended as answered."""
    return run_dir / "suites" / f"{rung}.jsonl"


@dataclass
class Comparisons:
    plan: Plan
    run_dir: Path
    greedy_references: dict[str, str | None] = field(default_factory=dict)
    """Speculative rungs not in the plan (`ladder tune`'s trials): the rung whose greedy answers they must give,
    or None where none was measured."""

    def suites(self, summary: RunSummary) -> None:
        """Paired accuracy against the baseline per suite; greedy identity for speculative rungs."""
        base_path = items_path(self.run_dir, summary.baseline)
        base = by_suite(load_items(base_path)) if base_path.exists() else {}
        for result in summary.rungs:
            path = items_path(self.run_dir, result.name)
            if result.status != "ok" or not path.exists():
                continue
            items = load_items(path)
            if result.name != summary.baseline:
                mine = by_suite(items)
                for name, suite_score in result.suites.items():
                    if base.get(name) and mine.get(name):
                        suite_score.vs_baseline = paired(base[name], mine[name])
            self._identity(result, items)

    def _identity(self, result: RungResult, items: list[ItemResult]) -> None:
        if result.name in self.greedy_references:
            reference = self.greedy_references[result.name]
        else:
            rung = next((r for r in self.plan.rungs if r.name == result.name), None)
            if rung is None or not rung.speculative:
                return
            found = self.plan.without_speculation(rung)
            reference = found.name if found else None
        if reference is None:
            result.greedy_identity_error = "no rung in this run serves the same model without speculation"
        elif not items_path(self.run_dir, reference).exists():
            result.greedy_identity_error = f"{reference} has no task-suite answers in this run"
        else:
            result.greedy_identity = greedy_identity(reference, load_items(items_path(self.run_dir, reference)), items)

    def agreements(self, summary: RunSummary) -> None:
        """Each rung's prompt logprobs against the baseline's: perplexity ratio, KL, same top token."""
        base_path = logprobs_path(self.run_dir, summary.baseline)
        if not self.plan.agreement.enabled:
            return
        if not base_path.exists():
            for result in summary.rungs:
                if result.agreement is None and logprobs_path(self.run_dir, result.name).exists():
                    result.agreement_error = f"the baseline {summary.baseline} has no prompt logprobs to compare with"
            return
        base = load_positions(base_path)
        for result in summary.rungs:
            path = logprobs_path(self.run_dir, result.name)
            if result.status != "ok" or not path.exists():
                continue
            try:
                result.agreement = agreement(base, load_positions(path))
            except ValueError as err:
                result.agreement_error = str(err)
