"""Result records and the run directory: an append-only log as things are measured, then the summary files.

`results.jsonl` gets one line per finished request and per finished rung, flushed at once, so a crash or
Ctrl-C loses nothing already measured; `--resume` rebuilds completed rungs from it.
"""

from __future__ import annotations

import json
import re
from datetime import UTC, datetime
from pathlib import Path
from typing import Any, Literal

from pydantic import BaseModel

from llm_ladder.engines.base import StartupStages, StopReport
from llm_ladder.measure.metrics import SpecStats, WorkloadStats
from llm_ladder.measure.roofline import Roofline
from llm_ladder.measure.telemetry import MemoryStats
from llm_ladder.outputs.jsonl import append_line, read_lines
from llm_ladder.plan.schema import Rung
from llm_ladder.quality.agreement import Agreement
from llm_ladder.quality.suites import Identity, SuiteScore


class SpecSummary(BaseModel):
    drafts: float
    draft_tokens: float
    accepted_tokens: float
    acceptance_rate: float | None
    mean_acceptance_length: float | None

    @classmethod
    def of(cls, spec: SpecStats) -> SpecSummary:
        return cls(
            **spec.model_dump(),
            acceptance_rate=spec.acceptance_rate,
            mean_acceptance_length=spec.mean_acceptance_length,
        )


class RungResult(BaseModel):
    """Everything measured for one rung; `status` is 'ok' only if it served, measured and verified; 'unreachable'
    when a fleet lost the node that climbed it (`error` says why)."""

    name: str
    status: Literal["ok", "failed", "unreachable"]
    model: str
    model_path: str | None = None
    engine: str | None = None
    """The engine that served it (a plan can mix engines); None in results from before engines were recorded."""
    config: dict[str, Any]
    command: list[str] = []
    startup: StartupStages | None = None
    workloads: dict[str, WorkloadStats] = {}
    memory: MemoryStats | None = None
    weights_gib: float | None = None
    weights_detail: str | None = None
    """What the weights really are where the label does not say it all (a GGUF's tensor types)."""
    not_measured: dict[str, str] = {}
    """Measurements this rung's engine cannot give, each with the reason (shown as `n/a (reason)`)."""
    skipped: dict[str, str] = {}
    """Quality work `--quick` left out because the agreement already failed the budget, each with why."""
    spec: dict[str, SpecSummary] = {}
    """Spec-decode counters per workload (absent for rungs without speculation)."""
    verification: list[str] = []
    """What was checked to prove the rung ran as labelled, each line 'ok: ...' or 'FAIL: ...'."""
    agreement: Agreement | None = None
    """Against the baseline's prompt logprobs: perplexity (ratio), mean / p99 KL, same-top share with its CI."""
    agreement_error: str | None = None
    answers_scored_by: str | None = None
    """The rung that scored this rung's answers when its own engine could not (baseline_pass.py); None: itself."""
    suites: dict[str, SuiteScore] = {}
    """Task-suite accuracies (greedy), each with its CI and the paired comparison with the baseline."""
    greedy_identity: Identity | None = None
    """Speculative rungs: greedy answers against the same model without speculation."""
    greedy_identity_error: str | None = None
    roofline: list[Roofline] = []
    """Bandwidth used by decoding against the memory's limit, per workload (see roofline.py)."""
    load: dict[str, Any] | None = None
    """The plan's load sweep on this rung: levels under vllm bench's key names, and the knee (see loadstats)."""
    stop: StopReport | None = None
    phases: dict[str, float] = {}
    """Wall-clock seconds per phase, in order: startup, warmup, each workload's trials, answer scoring,
    agreement, suites, load, stop, offline agreement (measure/phases.py)."""
    sample_outputs: dict[str, str] = {}
    error: str | None = None
    log_tail: str = ""
    log_path: str | None = None
    node: dict[str, Any] | None = None
    """`ladder fleet`: the node and device that climbed this rung (name, id, device, hardware, package versions)."""

    def decode_tps(self, workload: str) -> float | None:
        stats = self.workloads.get(workload)
        return stats.decode_tps.median if stats and stats.decode_tps else None


class Verdict(BaseModel):
    rung: str
    accepted: bool
    reasons: list[str]
    """Why a rung is out of the quality budget, or the figures that kept it in."""


class Recommendation(BaseModel):
    objective: str
    rung: str | None
    """None when no rung is inside the budget."""
    summary: str
    verdicts: list[Verdict]
    indistinguishable: list[str] = []
    """Accepted rungs whose objective overlaps the chosen one's range over trials."""
    per_workload: dict[str, str] = {}
    """The fastest rung inside the budget on each workload (decode tok/s): an edit-heavy service may want
    another rung than the objective's."""


class RunSummary(BaseModel):
    plan: str
    engine: str = "vllm"
    started_at: str
    finished_at: str | None = None
    host: dict[str, Any] = {}
    baseline: str
    rungs: list[RungResult]
    recommendation: Recommendation | None = None
    baseline_note: str | None = None
    """What the baseline's weights really are, when its name would mislead (models.provenance)."""
    quality_budget: dict[str, Any] | None = None
    """The plan's budget the verdicts used (drawn in the report)."""
    cross_engine: dict[str, Agreement] = {}
    """Another engine's reference logits (llama.cpp's F16 GGUF) against the baseline's prompt logprobs over the
    same token contexts: the same weights on two engines, so about 0 (baseline_pass.py)."""
    cross_engine_error: str | None = None
    phases: dict[str, float] = {}
    """The climb's own phases (prepare: models made, suites loaded; baseline pass), seconds."""
    quick: list[str] | None = None
    """A `--quick` climb: what it left out of every rung, and why (None: the full climb)."""
    selection: dict[str, Any] | None = None
    """How `ladder plan auto` chose the rungs for this machine (hardware, and each rung in or out with why)."""

    @property
    def failed(self) -> list[str]:
        return [r.name for r in self.rungs if r.status != "ok"]


def default_run_dir(plan_name: str, root: Path = Path("runs")) -> Path:
    stamp = datetime.now(UTC).strftime("%Y%m%d-%H%M%S")
    return root / f"{stamp}-{plan_name}"


class RunDir:
    """The files of one climb. Appends are flushed and fsynced: the log is the source of truth."""

    def __init__(self, path: Path) -> None:
        self.path = path  # created by the first write: bad input must leave nothing behind

    @staticmethod
    def exists(path: Path) -> bool:
        return (path / "results.jsonl").is_file()

    @property
    def jsonl(self) -> Path:
        return self.path / "results.jsonl"

    def append(self, kind: str, payload: BaseModel | dict[str, Any], **extra: Any) -> None:
        data = payload.model_dump(mode="json") if isinstance(payload, BaseModel) else payload
        append_line(self.jsonl, json.dumps({"type": kind, "time": datetime.now(UTC).isoformat(), **extra, **data}))

    def events(self) -> list[dict[str, Any]]:
        return read_lines(self.jsonl)

    def last_rungs(self) -> dict[str, RungResult]:
        """Each rung's last record, whatever its status."""
        last: dict[str, RungResult] = {}
        for event in self.events():
            if event.get("type") == "rung":
                result = RungResult.model_validate({k: v for k, v in event.items() if k not in ("type", "time")})
                last[result.name] = result
        return last

    def completed_rungs(self) -> dict[str, RungResult]:
        """Rungs whose final record says ok; a later record for the same rung wins."""
        return {name: r for name, r in self.last_rungs().items() if r.status == "ok"}

    def write_summary(self, summary: RunSummary, markdown: str) -> None:
        self.path.mkdir(parents=True, exist_ok=True)
        (self.path / "results.json").write_text(summary.model_dump_json(indent=2))
        (self.path / "summary.md").write_text(markdown)


SECRET_KEY = re.compile(r"TOKEN|KEY|SECRET|PASSWORD|CREDENTIAL", re.IGNORECASE)


def public_config(rung: Rung) -> dict[str, object]:
    """The rung as recorded in results: environment values that look like secrets are masked."""
    config = rung.model_dump()
    config["env"] = {k: "***" if SECRET_KEY.search(k) else v for k, v in rung.env.items()}
    return config
