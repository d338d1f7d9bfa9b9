"""The climb: for each rung start the engine, verify it, measure it, stop it, and append the results."""

from __future__ import annotations

import platform
from collections.abc import Callable
from dataclasses import replace
from datetime import UTC, datetime
from pathlib import Path

import psutil
from pydantic import ValidationError

from llm_ladder.climb.baseline_pass import plan_pass, run_pass
from llm_ladder.climb.comparisons import Comparisons, items_path, logprobs_path
from llm_ladder.engines.base import Engine, EngineError, EngineSet, Server
from llm_ladder.engines.process import log_tail
from llm_ladder.load.prompts import BenchRequest
from llm_ladder.load.sweep import SweepOptions, options_from, requests_from, run_sweep
from llm_ladder.measure.client import RequestRecord
from llm_ladder.measure.phases import Phases
from llm_ladder.measure.roofline import Bandwidth, Roofline, host_bandwidth, sizes_kv, workload_rooflines
from llm_ladder.measure.server import Gate, Sinks, Target, WorkloadResult, measure_server
from llm_ladder.measure.telemetry import GIB, MemorySampler, Snapshot
from llm_ladder.models.store import ModelStore, model_config, provenance, resolve_models
from llm_ladder.outputs.results import RunDir, RungResult, RunSummary, SpecSummary, public_config
from llm_ladder.outputs.summary import to_markdown
from llm_ladder.plan.hardware import detect, package_versions
from llm_ladder.plan.loading import describe_error
from llm_ladder.plan.schema import Plan, PlanError, Rung
from llm_ladder.quality.agreement import Position, agreement, eval_chunks, load_positions, save_positions
from llm_ladder.quality.evaluation import load_suites, scores
from llm_ladder.quality.recommend import agreement_checks, recommend
from llm_ladder.quality.suites import ItemResult, Suite, append_item

RELEASE_TOLERANCE_GIB = 0.5
"""Memory may differ by this much before and after a rung without calling it a leak (page cache, allocator)."""

Notify = Callable[[str], None]


def host_info() -> dict[str, object]:
    return {
        "hardware": detect().as_dict(),
        "machine": platform.machine(),
        "processor": platform.processor() or platform.machine(),
        "cpus": psutil.cpu_count(),
        "memory_gib": round(psutil.virtual_memory().total / GIB, 1),
        "python": platform.python_version(),
        "packages": package_versions(),
    }


def _weights_gib(server: Server, rung: Rung, engine: Engine) -> float | None:
    """Weights in memory as vLLM logged them, else the checkpoint's size on disk; None when neither is true,
    as for online quantization (the checkpoint is 16-bit, the weights in memory are not)."""
    if server.startup.weights_gib is not None:
        return server.startup.weights_gib
    path = Path(rung.model)
    files = list(path.glob("*.safetensors")) if path.is_dir() else [path] if path.suffix == ".gguf" else []
    if not files or (engine.quantizes_online(rung) and "quantization_config" not in (path / "config.json").read_text()):
        return None
    return sum(f.stat().st_size for f in files) / GIB


def _not_measured(engine: Engine, plan: Plan) -> dict[str, str]:
    """What the plan asks for that this engine cannot give, and why (reported as n/a, never as a failure)."""
    caps, missing = engine.capabilities, {}
    if plan.agreement.enabled and plan.agreement.score_outputs and not caps.prompt_logprobs:
        missing["answers' perplexity"] = f"{engine.name} serves no prompt logprobs"
    if not caps.startup_stages:
        missing["startup stages"] = f"{engine.name} logs no startup stages; total is measured"
    return missing


def _spec_checks(rung: Rung, measured: dict[str, WorkloadResult]) -> tuple[dict[str, SpecSummary], list[str]]:
    if not rung.speculative:
        return {}, []
    spec = {name: SpecSummary.of(r.spec) for name, r in measured.items() if r.spec is not None}
    drafted = sum(s.draft_tokens for s in spec.values())
    check = f"speculative decoding drafted {drafted:.0f} tokens" if drafted else "no draft tokens counted in /metrics"
    return spec, [("ok: " if drafted else "FAIL: ") + check]


class Climber:
    """Runs a plan rung by rung into a run directory; one rung's failure does not stop the others."""

    def __init__(
        self,
        plan: Plan,
        run_dir: RunDir,
        engines: Engine | EngineSet,
        store: ModelStore,
        notify: Notify,
        quick: bool = False,
    ) -> None:
        self.run_dir, self.store, self.notify, self.quick = run_dir, store, notify, quick
        self.quick_notes: list[str] | None = None
        """`--quick`: only the objective's workload, and quality work skipped where agreement already failed."""
        if quick:
            plan, dropped = plan.objective_only()
            self.quick_notes = [f"workloads {', '.join(dropped)} not measured: the objective {plan.objective} is "
                                f"measured on {plan.workloads[0].name}"] if dropped else []  # fmt: skip
            self.quick_notes.append("a rung whose agreement with the baseline is outside the quality budget skips "
                                    "its answer scoring and task suites")  # fmt: skip
        self.plan = plan
        self.engines = engines if isinstance(engines, EngineSet) else EngineSet(engines)
        self.summary: RunSummary | None = None
        """The summary so far: complete after `run`, partial if it was interrupted."""
        self.rungs: dict[str, Rung] | None = None
        self.sources: dict[str, str] = {}
        """Each rung's model as resolved, before its engine prepared it (a GGUF's source directory)."""
        self.suites: list[Suite] = []
        self.load: tuple[SweepOptions, list[BenchRequest]] | None = None
        self.phases = Phases()
        """The climb's own phases (prepare, baseline pass); each rung keeps its own."""
        self.bandwidth: Bandwidth | str | None = None
        """The memory bandwidth decoding runs against, or why there is no figure (an unknown GPU)."""
        self.greedy_references: dict[str, str | None] = {}
        """Speculative rungs not in the plan (`ladder tune`'s trials): the rung whose greedy answers they must
        give, or None where none was measured."""

    def prepare(self) -> None:
        """Resolve (or make) every model and load every task suite before any server starts; raises ModelError or
        SuiteError naming what is wrong."""
        with self.phases("prepare"):
            self._prepare()

    def _prepare(self) -> None:
        resolved = resolve_models(self.plan, self.store)
        self.sources = {name: rung.model for name, rung in resolved.items()}
        self.rungs = {
            name: self.engines.get(self.plan.engine_of(rung)).prepare(rung, self.notify)
            for name, rung in resolved.items()
        }
        self.suites = load_suites(self.plan.suites)
        self.bandwidth = host_bandwidth(self.plan.memory_bandwidth_gbs)  # before any engine competes for memory
        if self.plan.load is not None:
            try:
                self.load = (options_from(self.plan.load), requests_from(self.plan.load))
            except ValidationError as err:
                raise PlanError(f"load: {describe_error(err)}") from None

    def run(self, resume: bool = False, sinks: Sinks | None = None) -> RunSummary:
        """Climb every rung; results.json and summary.md are written at the end, or at Ctrl-C with what was done.
        `sinks` also receive every request record and suite item as they are measured (progress display)."""
        try:
            return self._run(resume, sinks or Sinks())
        finally:
            if self.summary is not None:
                self.run_dir.write_summary(self.summary, to_markdown(self.summary))

    def _run(self, resume: bool, sinks: Sinks) -> RunSummary:
        if self.rungs is None:
            self.prepare()
        assert self.rungs is not None
        rungs = self.rungs
        done = self.run_dir.completed_rungs() if resume else {}
        self.summary = summary = self.new_summary()
        for original in self.plan.rungs:
            if original.name in done and done[original.name].config == public_config(original):
                self.notify(f"[dim]{original.name}: done in an earlier run, skipped[/dim]")
                summary.rungs.append(done[original.name])
                continue
            self.climb_rung(original, rungs[original.name], sinks)
        return self.finish(summary)

    def new_summary(self) -> RunSummary:
        """The run's summary before any rung: the plan, this host, the budget."""
        return RunSummary(
            plan=self.plan.name,
            engine=self.plan.engine,
            started_at=datetime.now(UTC).isoformat(),
            host=host_info()
            | {"memory_bandwidth": bw.model_dump() if isinstance(bw := self.bandwidth, Bandwidth) else None},
            baseline=self.plan.baseline.name,
            rungs=[],
            selection=self.plan.selection.model_dump() if self.plan.selection else None,
            quality_budget=self.plan.quality_budget.model_dump(),
            baseline_note=provenance(self.plan.baseline.model),
            quick=self.quick_notes,
        )

    def finish(self, summary: RunSummary, baseline_pass: bool = True) -> RunSummary:
        """What needs every rung measured: agreement with the baseline, the baseline's pass over other engines'
        answers, paired suites, greedy identity, the recommendation. `ladder fleet` calls it after merging."""
        comparisons = self.comparisons()
        comparisons.agreements(summary)
        if baseline_pass:
            with self.phases("baseline pass"):
                self._baseline_pass(summary)
        summary.phases = self.phases.rounded()
        comparisons.suites(summary)
        summary.recommendation = recommend(summary, self.plan.quality_budget, self.plan.objective)
        self.notify(f"[bold]recommendation[/bold]: {summary.recommendation.summary}")
        summary.finished_at = datetime.now(UTC).isoformat()
        return summary

    def climb_rung(self, original: Rung, rung: Rung, sinks: Sinks | None = None) -> RungResult:
        """Start, verify, measure, stop one rung; the result is appended to the log whatever happens."""
        result = RungResult(
            name=rung.name,
            status="failed",
            model=original.model,
            model_path=rung.model,
            config=public_config(original),
        )
        self.notify(f"[bold]{rung.name}[/bold]: starting {original.model}")
        sinks = sinks or Sinks()
        before, phases = Snapshot(), Phases(on_start=lambda phase: sinks.on_phase(rung.name, phase))
        try:
            engine = self.engines.get(self.plan.engine_of(rung))
            result.engine = engine.name
            with phases("startup"):
                server = engine.start(rung, rung.model, self.run_dir.path)
        except EngineError as err:
            result.error, result.log_tail, result.phases = str(err), err.log_tail, phases.rounded()
            self.notify(f"[red]{rung.name}: {err}[/red]")
            sinks.on_rung(rung.name, sum(result.phases.values()))
            return self._record(result)
        except KeyboardInterrupt:  # the engine stopped its half-started server
            result.error, result.phases = "interrupted during startup", phases.rounded()
            self._record(result)
            raise
        result.command, result.startup, result.log_path = server.command, server.startup, str(server.log_path)
        sampler = MemorySampler(server.pids).start()
        sinks = replace(sinks, phases=phases)
        try:
            self._measure(engine, rung, server, result, sinks)
        except KeyboardInterrupt:
            result.error = "interrupted"
            raise
        except Exception as err:  # a crash mid-rung is recorded, and the climb goes on
            exited = server.process.exit_code
            cause = f"engine exited with code {exited}; " if exited is not None else ""
            result.error = f"{cause}{type(err).__name__}: {err}"
            result.log_tail = log_tail(server.log_path)
        finally:
            result.memory = sampler.stop()
            with phases("stop"):
                self._stop(engine, server, result, before)
            try:
                with phases("offline agreement"):
                    self._offline_agreement(engine, rung, result)
            finally:
                result.phases = phases.rounded()
                self._record(result)
                sinks.on_rung(rung.name, sum(result.phases.values()))
        self._report(result)
        return result

    def _offline_agreement(self, engine: Engine, rung: Rung, result: RungResult) -> None:
        """Agreement for engines without prompt logprobs, measured with the server stopped."""
        if result.status != "ok" or not self.plan.agreement.enabled or engine.capabilities.prompt_logprobs:
            return
        assert self.rungs is not None
        baseline = self.rungs[self.plan.baseline.name].model
        text = self.run_dir.path / "logprobs" / "eval_text.txt"
        text.parent.mkdir(parents=True, exist_ok=True)
        text.write_text("\n\n".join(eval_chunks(self.plan.agreement.text, self.plan.agreement.chunk_chars)))
        try:
            result.agreement = engine.offline_agreement(rung, baseline, text, text.parent)
        except (EngineError, OSError) as err:
            result.agreement_error = str(err)

    def _baseline_pass(self, summary: RunSummary) -> None:
        """Scoring by the baseline's engine of what other engines' rungs could not score (baseline_pass.py)."""
        todo = plan_pass(self.plan, summary, self.engines, self.run_dir.path / "logprobs")
        if todo:
            if self.rungs is None:  # a fleet's merged run: prepared here only when the pass has work
                self._prepare()
            assert self.rungs is not None
            baseline = self.plan.baseline
            engine = self.engines.get(self.plan.engine_of(baseline))
            run_pass(self.plan, self.rungs[baseline.name], engine, todo, self.run_dir, summary, self.notify)

    def logprobs_path(self, rung: str) -> Path:
        return logprobs_path(self.run_dir.path, rung)

    def items_path(self, rung: str) -> Path:
        return items_path(self.run_dir.path, rung)

    def comparisons(self) -> Comparisons:
        return Comparisons(self.plan, self.run_dir.path, self.greedy_references)

    def _record(self, result: RungResult) -> RungResult:
        """Append the rung to the log at once, and to the summary so far."""
        self.run_dir.append("rung", result)
        if self.summary is not None:
            self.summary.rungs.append(result)
        return result

    def _measure(self, engine: Engine, rung: Rung, server: Server, result: RungResult, sinks: Sinks) -> None:
        checks = [f"FAIL: {p}" for p in engine.verify(rung, server)] or ["ok: engine log matches the config"]
        checks += [f"n/a: {why}" for why in engine.unverified(rung)]
        items_path = self.items_path(rung.name)
        items_path.unlink(missing_ok=True)  # a rung measured again (resume) starts its items afresh

        def record(r: RequestRecord) -> None:
            self.run_dir.append("request", r, rung=rung.name)
            sinks.on_record(r)

        def item(i: ItemResult) -> None:
            append_item(items_path, i)
            sinks.on_item(i)

        target = Target(server.base_url, server.model_name, engine)
        gate = self._quick_gate() if self.quick else None
        measured = measure_server(target, self.plan, self.suites, replace(sinks, on_record=record, on_item=item), gate)
        result.skipped = measured.skipped
        workloads = measured.workloads
        result.workloads = {name: r.stats for name, r in workloads.items()}
        result.sample_outputs = {name: next((x.text for x in r.records if x.ok), "") for name, r in workloads.items()}
        if measured.positions is not None:
            save_positions(self.logprobs_path(rung.name), measured.positions)
        result.suites = scores(measured.items)
        if self.load is not None:
            opts, requests = self.load
            out = self.run_dir.path / "load" / rung.name
            with sinks.phases("load"):
                result.load = run_sweep(server.base_url, server.model_name, requests, opts, out, sinks.on_load)
        result.spec, spec_checks = _spec_checks(rung, workloads)
        result.verification = checks + spec_checks
        result.weights_gib = _weights_gib(server, rung, engine)
        result.weights_detail = engine.describe_weights(rung)
        result.not_measured = _not_measured(engine, self.plan)
        result.roofline = self._rooflines(rung, result, engine.kv_cache_bytes(rung, server))
        errors = sum(s.errors for s in result.workloads.values()) + sum(s.errors for s in result.suites.values())
        if (code := server.process.exit_code) is not None:
            result.verification.append(f"FAIL: engine exited with code {code} while being measured")
            result.log_tail = log_tail(server.log_path)
        failed_checks = [c for c in result.verification if c.startswith("FAIL")]
        if errors or failed_checks:
            result.error = "; ".join(failed_checks + ([f"{errors} request(s) failed"] if errors else []))
        else:
            result.status = "ok"

    def _quick_gate(self) -> Gate:
        """Why a rung's remaining quality work can be skipped: its agreement is outside the budget already."""
        base_path, budget = self.logprobs_path(self.plan.baseline.name), self.plan.quality_budget

        def gate(positions: list[Position]) -> str | None:
            if not base_path.exists():  # the baseline itself, or a baseline that measured none
                return None
            try:
                checks = agreement_checks(agreement(load_positions(base_path), positions), budget)
            except ValueError:  # not comparable: left to the full judgement after the climb
                return None
            failed = [f"{what} is outside the budget ({op} {limit})" for ok, what, op, limit in checks if not ok]
            return f"skipped (--quick): {'; '.join(failed)}" if failed else None

        return gate

    def _rooflines(self, rung: Rung, result: RungResult, kv_bytes: float | None) -> list[Roofline]:
        """Decode against the memory's limit, or `not_measured["roofline"]` saying what is missing."""
        source = self.sources.get(rung.name, rung.model)  # a GGUF's source directory has the config
        config = model_config(source)
        bandwidth = self.bandwidth
        missing = [why for why, gap in [
            (f"no config.json for {source} on this host (not a local directory, not in the Hugging Face cache)",
             config is None),
            ("config.json is not a decoder config this tool can size the KV cache of",
             config is not None and not sizes_kv(config)),
            ("the weights' size in memory is not known (quantized at load)", result.weights_gib is None),
            ("the engine does not say its KV-cache type", kv_bytes is None),
            (bandwidth if isinstance(bandwidth, str) else "", isinstance(bandwidth, str))] if gap]  # fmt: skip
        if missing:
            result.not_measured["roofline"] = "; ".join(missing)
            return []
        steps = {name: s.mean_acceptance_length for name, s in result.spec.items() if s.mean_acceptance_length}
        assert isinstance(bandwidth, Bandwidth) and kv_bytes is not None
        return workload_rooflines(result.workloads, result.weights_gib, config, bandwidth, steps, kv_bytes)

    def _stop(self, engine: Engine, server: Server, result: RungResult, before: Snapshot) -> None:
        stop = engine.stop(server)
        memory = result.memory
        before.record_after(memory)
        if unreleased := memory.unreleased(RELEASE_TOLERANCE_GIB):
            stop.memory_released = False
            stop.detail = "; ".join(filter(None, [stop.detail, unreleased]))
        result.stop = stop
        if stop.leftover_pids or not stop.memory_released:
            result.status = "failed"
            result.error = (result.error + "; " if result.error else "") + f"unclean stop: {stop.detail}"

    def _report(self, result: RungResult) -> None:
        if result.status == "ok":
            tps = [f"{w} {result.decode_tps(w):.1f} tok/s" for w in result.workloads if result.decode_tps(w)]
            acc = [f"{s.suite} {s.accuracy:.0%} of {s.n}" for s in result.suites.values()]
            self.notify(f"[green]{result.name}: ok[/green] ({', '.join(tps + acc)})")
        else:
            self.notify(f"[red]{result.name}: failed[/red] ({result.error})")
