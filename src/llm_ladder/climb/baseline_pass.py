"""What only the baseline's engine can measure for rungs on other engines: one more start of the baseline after
the climb, in plans that mix engines.

- Answers' perplexity. llama-server serves no prompt logprobs, so a llama.cpp rung's answers are scored by the
  baseline (its model, on its engine). Their ratio to the baseline's own answers then asks whether the reference
  model finds the rung's answers as plausible as its own: broken sampling or speculation still shows, and the
  quantized model does not get to grade itself. The result says who scored.
- Cross-engine agreement. The baseline's prompt logprobs over the very token contexts another engine's offline
  reference was computed in (llama.cpp: the baseline model's F16 GGUF, by llama-perplexity), compared position by
  position. Same weights on two engines: mean KL should be about 0, and more says one of the two agreement paths
  is off, which would make every llama.cpp rung's agreement suspect.

It costs one more baseline start (warm: its compile cache is there) and seconds of scoring, and runs only where a
plan has such rungs and the baseline's engine serves prompt logprobs.
"""

from __future__ import annotations

import asyncio
from collections import defaultdict
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

import httpx

from llm_ladder.engines.base import Engine, EngineError, EngineSet, Server
from llm_ladder.measure.client import RequestRecord
from llm_ladder.measure.metrics import Spread
from llm_ladder.measure.request import REQUEST_TIMEOUT
from llm_ladder.measure.server import prompt_logprobs_each
from llm_ladder.outputs.results import RunDir, RungResult, RunSummary
from llm_ladder.plan.schema import Plan, Rung
from llm_ladder.quality.agreement import Agreement, ReferenceLogits, agreement, perplexity

ANSWERS = "answers' perplexity"


@dataclass
class Pass:
    """What the pass is asked to score: rungs whose answers need scoring, and other engines' saved references."""

    answers: list[RungResult]
    references: list[ReferenceLogits]

    def __bool__(self) -> bool:
        return bool(self.answers or self.references)


def plan_pass(plan: Plan, summary: RunSummary, engines: EngineSet, work_dir: Path) -> Pass:
    """The rungs and references the baseline must score; empty when its engine cannot or nothing needs it."""
    base = next((r for r in summary.rungs if r.name == summary.baseline), None)
    base_engine = engines.get(plan.engine_of(plan.baseline))
    if (
        base is None
        or base.status != "ok"
        or not base_engine.capabilities.prompt_logprobs
        or not plan.agreement.enabled
    ):
        return Pass([], [])
    answers = [r for r in summary.rungs if r.status == "ok" and ANSWERS in r.not_measured]
    others = {plan.engine_of(r) for r in plan.rungs} - {base_engine.name}
    references = []
    for name in sorted(others):
        try:
            references.append(engines.get(name).reference_logits(work_dir, plan.agreement.top_k))
        except (EngineError, OSError, ValueError) as err:  # a damaged saved file: said, and the climb stands
            summary.cross_engine_error = f"{name}'s saved reference logits could not be read: {err}"
    return Pass(answers, [r for r in references if r is not None])


def answer_records(run_dir: RunDir, rung: str) -> dict[str, list[RequestRecord]]:
    """The rung's latest measured answers per workload: the requests logged since its previous rung record."""
    pending: list[RequestRecord] = []
    latest: list[RequestRecord] = []
    for event in run_dir.events():
        if event.get("rung") == rung and event.get("type") == "request":
            pending.append(RequestRecord.model_validate({k: v for k, v in event.items() if k not in ("type", "time")}))
        elif event.get("type") == "rung" and event.get("name") == rung:
            latest, pending = pending, []
    by_workload: dict[str, list[RequestRecord]] = defaultdict(list)
    for record in latest:
        by_workload[record.workload].append(record)
    return by_workload


async def _perplexities(http: httpx.AsyncClient, server: Server, texts: list[str]) -> list[float]:
    scored = await prompt_logprobs_each(http, server.base_url, server.model_name, texts, k=1)
    return [perplexity(positions) for positions in scored if positions]


async def _score(todo: Pass, server: Server, run_dir: RunDir, baseline: str, top_k: int) -> dict[str, Agreement]:
    async with httpx.AsyncClient(timeout=REQUEST_TIMEOUT) as http:
        for result in todo.answers:
            for workload, records in answer_records(run_dir, result.name).items():
                texts = [r.text for r in records if r.ok and r.text.strip()]
                if workload in result.workloads and (scored := await _perplexities(http, server, texts)):
                    result.workloads[workload].output_perplexity = Spread.of(scored)
            result.not_measured.pop(ANSWERS, None)
            result.answers_scored_by = baseline
        found = {}
        for ref in todo.references:
            per_chunk = await prompt_logprobs_each(http, server.base_url, server.model_name, ref.chunks, top_k)
            found[ref.label] = agreement(ref.scored(per_chunk), ref.positions).model_copy(
                update={"reference": f"{baseline}'s prompt logprobs over the same {len(ref.chunks)} token contexts"}
            )
    return found


def run_pass(
    plan: Plan,
    rung: Rung,
    engine: Engine,
    todo: Pass,
    run_dir: RunDir,
    summary: RunSummary,
    notify: Callable[[str], None],
) -> None:
    """Start the baseline `rung` once more, score what `todo` holds into `summary`, stop it. A failure is recorded
    in the summary (and the answers stay n/a with the reason), never raised: the climb's results stand."""
    notify(f"[bold]{summary.baseline}[/bold]: started again to score what other engines cannot")
    run_dir.append(
        "baseline_pass", {"answers": [r.name for r in todo.answers], "references": [r.label for r in todo.references]}
    )
    scoring = rung.model_copy(update={"name": f"{rung.name}-scoring"})  # its own log file
    try:
        server = engine.start(scoring, scoring.model, run_dir.path)
    except EngineError as err:
        _failed(todo, summary, f"the baseline did not start again: {err}")
        return
    try:
        summary.cross_engine = asyncio.run(_score(todo, server, run_dir, summary.baseline, plan.agreement.top_k))
    except (httpx.HTTPError, RuntimeError, ValueError) as err:
        _failed(todo, summary, f"scoring by the baseline failed: {type(err).__name__}: {err}")
    finally:
        engine.stop(server)
    scored = {r.name: {w: s.output_perplexity and s.output_perplexity.median for w, s in r.workloads.items()}
              for r in todo.answers}  # fmt: skip
    cross = {label: a.model_dump(mode="json") for label, a in summary.cross_engine.items()}
    run_dir.append(
        "baseline_pass_done", {"cross_engine": cross, "answers": scored, "error": summary.cross_engine_error}
    )


def _failed(todo: Pass, summary: RunSummary, why: str) -> None:
    for result in todo.answers:
        if ANSWERS in result.not_measured:
            result.not_measured[ANSWERS] += f"; {why}"
    if todo.references:
        summary.cross_engine_error = why
