"""Task suites: the items shipped in the repo, per-item verdicts, accuracies with confidence intervals, and
the paired comparisons a quality budget needs (accuracy drop against the baseline, greedy identity).

A suite is a YAML file: `instructions` (IFEval-style constraints checked by if-verifiable) and `exact`
(short questions with one answer) ship with llm-ladder; any file of the same shape can be named instead.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from pathlib import Path
from typing import Any, Literal

from pydantic import BaseModel, ConfigDict, ValidationError, computed_field, model_validator

from llm_ladder.data import DATA_DIR
from llm_ladder.measure.metrics import wilson_interval
from llm_ladder.outputs.jsonl import append_line, read_lines
from llm_ladder.plan.loading import describe_error, read_yaml
from llm_ladder.quality.checkers import check_exact, check_instructions, validate_instruction

SUITES_DIR = DATA_DIR / "suites"


class SuiteError(ValueError):
    """A suite that cannot be used; the message names the file and the item."""


class SuiteItem(BaseModel):
    """An instruction item (prompt + instructions) or an exact-answer item (question + answer)."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    id: str
    prompt: str | None = None
    instruction_id_list: list[str] = []
    kwargs: list[dict[str, Any]] = []
    question: str | None = None
    kind: Literal["number", "text"] = "text"
    answer: str | None = None
    aliases: list[str] = []

    @model_validator(mode="after")
    def _one_kind(self) -> SuiteItem:
        if (self.prompt is None) == (self.question is None):
            raise ValueError("an item has either `prompt` (with instructions) or `question` (with an answer)")
        if self.prompt is not None:
            if not self.instruction_id_list or len(self.kwargs) != len(self.instruction_id_list):
                raise ValueError("instruction_id_list and kwargs must be non-empty and of equal length")
            for instruction_id, kwargs in zip(self.instruction_id_list, self.kwargs, strict=True):
                validate_instruction(instruction_id, kwargs)
        elif self.answer is None:
            raise ValueError("a question needs an `answer`")
        elif self.kind == "number":
            for a in [self.answer, *self.aliases]:
                float(a)  # a ValueError here names the bad answer
        return self


class Verdict(BaseModel):
    passed: bool
    loose: bool | None = None
    """IFEval's loose mode (instruction items only)."""
    detail: str = ""
    """Which instructions failed, or what was extracted from an exact answer."""


class Suite(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)

    name: str
    description: str = ""
    max_tokens: int = 256
    template: str = "{question}"
    """How an exact-answer question becomes the user message."""
    items: list[SuiteItem]

    @model_validator(mode="after")
    def _unique_ids(self) -> Suite:
        ids = [i.id for i in self.items]
        if dupes := sorted({i for i in ids if ids.count(i) > 1}):
            raise ValueError(f"duplicate item ids: {', '.join(dupes)}")
        return self

    def message(self, item: SuiteItem) -> str:
        return item.prompt if item.prompt is not None else self.template.format(question=item.question)

    def check(self, item: SuiteItem, response: str) -> Verdict:
        if item.prompt is not None:
            results = check_instructions(item.prompt, response, item.instruction_id_list, item.kwargs)
            failed = [i for i, (strict, _) in results.items() if not strict]
            return Verdict(
                passed=not failed,
                loose=all(loose for _, loose in results.values()),
                detail="failed: " + ", ".join(failed) if failed else "",
            )
        passed, got = check_exact(response, item.kind, [item.answer or "", *item.aliases])
        return Verdict(passed=passed, detail=f"extracted {got!r}, expected {item.answer!r}")


def load_suite(spec: str | Path) -> Suite:
    """A shipped suite by name, or a YAML file."""
    path = Path(spec)
    if not path.is_file():
        path = SUITES_DIR / f"{spec}.yaml"
    if not path.is_file():
        shipped = ", ".join(p.stem for p in sorted(SUITES_DIR.glob("*.yaml")))
        raise SuiteError(f"suite {str(spec)!r} is neither a file nor a shipped suite ({shipped})")
    try:
        return Suite.model_validate(read_yaml(path, SuiteError))
    except ValidationError as err:
        raise SuiteError(f"{path}: {describe_error(err)}") from None


class ItemResult(BaseModel):
    """One item's prompt, answer and verdict, as saved in the run directory."""

    suite: str
    id: str
    prompt: str
    response: str = ""
    token_ids: list[int] | None = None
    completion_tokens: int | None = None
    finish_reason: str | None = None
    passed: bool = False
    loose: bool | None = None
    detail: str = ""
    error: str | None = None


def append_item(path: Path, item: ItemResult) -> None:
    """Append one item as it is measured: a crash loses nothing already answered."""
    append_line(path, item.model_dump_json())


def load_items(path: Path) -> list[ItemResult]:
    """The items appended so far (a last one a crash cut short is left out)."""
    return [ItemResult.model_validate(record) for record in read_lines(path)]


def by_suite(items: Sequence[ItemResult]) -> dict[str, list[ItemResult]]:
    grouped: dict[str, list[ItemResult]] = {}
    for item in items:
        grouped.setdefault(item.suite, []).append(item)
    return grouped


class Paired(BaseModel):
    """This rung against the baseline on the same items: accuracy drop, and McNemar's exact test on the items
    where exactly one of the two passed (is the drop more than chance?)."""

    baseline_accuracy: float
    drop_points: float
    lost: int
    """Items the baseline passed and this rung failed."""
    gained: int
    p_value: float

    @computed_field
    @property
    def significant(self) -> bool:
        return self.p_value < 0.05


def mcnemar_p(lost: int, gained: int) -> float:
    """Two-sided exact McNemar p-value: a binomial(lost + gained, 1/2) test. Written out (a few lines) rather
    than adding scipy to the base install."""
    n = lost + gained
    if n == 0:
        return 1.0
    tail = sum(math.comb(n, i) for i in range(min(lost, gained) + 1)) / 2**n
    return min(1.0, 2 * tail)


class SuiteScore(BaseModel):
    suite: str
    n: int
    passed: int
    loose_passed: int | None = None
    errors: int = 0
    vs_baseline: Paired | None = None

    @computed_field
    @property
    def accuracy(self) -> float:
        return self.passed / self.n if self.n else 0.0

    @computed_field
    @property
    def ci95(self) -> tuple[float, float]:
        return wilson_interval(self.passed, self.n)

    @computed_field
    @property
    def loose_accuracy(self) -> float | None:
        return self.loose_passed / self.n if self.loose_passed is not None and self.n else None


def score(suite: str, items: Sequence[ItemResult]) -> SuiteScore:
    loose = [i.loose for i in items]
    return SuiteScore(
        suite=suite,
        n=len(items),
        passed=sum(i.passed for i in items),
        loose_passed=sum(bool(x) for x in loose) if any(x is not None for x in loose) else None,
        errors=sum(i.error is not None for i in items),
    )


def paired(base: Sequence[ItemResult], rung: Sequence[ItemResult]) -> Paired:
    by_id = {i.id: i.passed for i in base}
    common = [(by_id[i.id], i.passed) for i in rung if i.id in by_id]
    if not common:
        raise ValueError("no items in common with the baseline")
    lost = sum(b and not r for b, r in common)
    gained = sum(r and not b for b, r in common)
    base_acc = sum(b for b, _ in common) / len(common)
    return Paired(
        baseline_accuracy=base_acc,
        drop_points=100 * (lost - gained) / len(common),
        lost=lost,
        gained=gained,
        p_value=mcnemar_p(lost, gained),
    )


class Identity(BaseModel):
    """Greedy outputs of a speculative rung against the same model without speculation, token for token."""

    reference: str
    compared: int
    identical: int
    differing: list[str] = []
    """Item ids whose outputs differ, each with the index of the first differing token (or character)."""
    by: Literal["tokens", "text"] = "tokens"
    """Token ids where the engine returns them (vLLM), else the text (llama.cpp)."""

    @computed_field
    @property
    def match(self) -> float:
        return self.identical / self.compared if self.compared else 0.0


def _first_difference(a: Sequence[Any], b: Sequence[Any]) -> int:
    return next((i for i, (x, y) in enumerate(zip(a, b, strict=False)) if x != y), min(len(a), len(b)))


def greedy_identity(reference: str, ref: Sequence[ItemResult], rung: Sequence[ItemResult]) -> Identity:
    """Compare token ids where the server returned them, else the text."""
    by_key = {(i.suite, i.id): i for i in ref}
    compared = identical = 0
    differing = []
    by_tokens = True
    for item in sorted(rung, key=lambda i: (i.suite, i.id)):  # files hold items in the order they finished
        other = by_key.get((item.suite, item.id))
        if other is None or item.error or other.error:
            continue
        compared += 1
        tokens = item.token_ids is not None and other.token_ids is not None
        by_tokens = by_tokens and tokens
        a, b = (item.token_ids, other.token_ids) if tokens else (item.response, other.response)
        if a == b:
            identical += 1
        else:
            differing.append(f"{item.suite}/{item.id}@{_first_difference(a, b)}")
    return Identity(reference=reference, compared=compared, identical=identical, differing=differing,
                    by="tokens" if by_tokens else "text")  # fmt: skip
