"""The workshop-style table of a climb, as Markdown for summary.md and as a rich table for the terminal."""

from __future__ import annotations

from rich.table import Table

from llm_ladder.load.loadstats import LOAD_COLUMNS, level_cells
from llm_ladder.outputs.markdown import md_cell, md_table
from llm_ladder.outputs.quality_tables import (
    AGREEMENT_COLUMNS,
    agreement_rows,
    calibration_lines,
    cross_engine_lines,
    suite_lines,
)
from llm_ladder.outputs.results import RungResult, RunSummary

COLUMNS = (
    "rung",
    "model",
    "weights GiB",
    "peak mem GiB",
    "startup s (compile)",
    "TTFT ms",
    "tok/s short",
    "tok/s long",
    "speedup",
    "acceptance",
    "status",
)


def _num(value: float | None, fmt: str = "{:.1f}") -> str:
    return "n/a" if value is None else fmt.format(value)


def _spread(result: RungResult, workload: str) -> str:
    """Median tok/s with the min–max over trials, and a flag when the output was degenerate."""
    stats = result.workloads.get(workload)
    if not stats or not stats.decode_tps:
        return "n/a"
    d = stats.decode_tps
    text = f"{d.median:.1f}" if d.n == 1 else f"{d.median:.1f} ({d.min:.1f}–{d.max:.1f})"
    return text + (" ⚠ repetitive" if stats.degenerate else "")


def _acceptance(result: RungResult) -> str:
    spec = result.spec.get("long") or next(iter(result.spec.values()), None)
    if spec is None or spec.acceptance_rate is None:
        return "–"
    return f"{spec.acceptance_rate:.0%} (len {spec.mean_acceptance_length:.2f})"


def memory_gib(result: RungResult) -> float | None:
    """Peak GPU memory where NVML saw it, else the engine process tree's peak RSS (`memory_kind` says which)."""
    m = result.memory
    return None if m is None else (m.gpu_peak_gib if m.gpu_peak_gib is not None else m.peak_rss_gib)


def memory_kind(result: RungResult) -> str:
    """What `memory_gib` is: "GPU" (device memory), "RSS" (the engine's processes), flagged where a GPU host's
    device memory could not be read."""
    m = result.memory
    if m is None or memory_gib(result) is None:
        return ""
    if m.gpu_peak_gib is not None:
        return "GPU"
    return "RSS ⚠ GPU unread" if m.gpu_unread else "RSS"


def memory_cell(result: RungResult) -> str:
    return f"{_num(memory_gib(result), '{:.2f}')} {memory_kind(result)}".strip()


def row(result: RungResult, baseline: RungResult | None, speed_workload: str) -> list[str]:
    ttft = result.workloads.get("short") or next(iter(result.workloads.values()), None)
    startup = result.startup
    startup_text = "n/a"
    if startup and startup.total_s is not None:
        startup_text = f"{startup.total_s:.0f} ({startup.compile_cache})"
    base_tps = baseline.decode_tps(speed_workload) if baseline else None
    tps = result.decode_tps(speed_workload)
    speedup = f"{tps / base_tps:.2f}×" if tps and base_tps else "n/a"
    return [
        result.name,
        result.model,
        _num(result.weights_gib, "{:.2f}"),
        memory_cell(result),
        startup_text,
        _num(ttft.ttft_ms.median if ttft and ttft.ttft_ms else None, "{:.0f}"),
        _spread(result, "short"),
        _spread(result, "long"),
        speedup,
        _acceptance(result),
        result.status,
    ]


def speed_workload(summary: RunSummary) -> str:
    """The workload the table's speed columns and the report's charts show: long outputs where measured."""
    return "long" if any("long" in r.workloads for r in summary.rungs) else "short"


def rows(summary: RunSummary) -> list[list[str]]:
    baseline = next((r for r in summary.rungs if r.name == summary.baseline and r.status == "ok"), None)
    workload = speed_workload(summary)
    return [row(r, baseline, workload) for r in summary.rungs]


def _notes(summary: RunSummary) -> list[str]:
    notes = []
    for r in summary.rungs:
        if r.status != "ok":
            notes.append(f"- **{r.name}** failed: {r.error}")
        for name, spec in r.spec.items():
            if spec.draft_tokens and not spec.accepted_tokens:
                notes.append(
                    f"- **{r.name}** `{name}`: the engine rejected all {spec.draft_tokens:.0f} drafted tokens; "
                    "speculation only costs time here."
                )
        if r.weights_detail:
            notes.append(f"- **{r.name}** weights: {r.weights_detail}")
        if r.memory and r.memory.gpu_unread:
            notes.append(f"- **{r.name}** GPU memory was not read ({r.memory.gpu_unread}): peak memory is the RSS")
        notes += [f"- **{r.name}** startup: {note}" for note in (r.startup.notes if r.startup else [])]
        if r.agreement and r.agreement.reference:
            notes.append(f"- **{r.name}** agreement measured against {r.agreement.reference}")
        for name, stats in r.workloads.items():
            if stats.degenerate:
                notes.append(
                    f"- **{r.name}** `{name}` output repeats itself (repeated 4-gram share "
                    f"{stats.repetition.median:.0%}): its speed is not representative."
                )
    return notes


STAGE_COLUMNS = ("rung", "weights load s", "compile s", "graph capture s", "engine init s", "total s", "compile cache")


def stage_rows(summary: RunSummary) -> list[list[str]]:
    out = []
    for r in summary.rungs:
        st = r.startup
        if st is None:
            continue
        values = (st.weights_s, st.compile_s, st.graph_capture_s, st.engine_init_s, st.total_s)
        cache = f"n/a ({why})" if (why := r.not_measured.get("startup stages")) else st.compile_cache
        out.append([r.name, *(_num(v) for v in values), cache])
    return out


def _recommendation_lines(summary: RunSummary) -> list[str]:
    rec = summary.recommendation
    if rec is None:
        return []
    lines = ["", "## Recommendation", "", f"**{rec.summary}.**", ""]
    if winners := per_workload_line(summary):
        lines += [winners, ""]
    for v in rec.verdicts:
        mark = "inside the budget" if v.accepted else "rejected"
        lines.append(f"- **{v.rung}** {mark}: {'; '.join(v.reasons)}")
    return lines


def per_workload_line(summary: RunSummary) -> str:
    """'Fastest inside the budget per workload: short int4 (20.1 tok/s), edit int4-ngram (61.0 tok/s, 2.3× int4)'."""
    rec = summary.recommendation
    if rec is None or not rec.per_workload:
        return ""
    by_name = {r.name: r for r in summary.rungs}
    parts = []
    for workload, name in rec.per_workload.items():
        tps = by_name[name].decode_tps(workload) or 0
        ref = by_name.get(rec.rung) if rec.rung and rec.rung != name else None
        vs = f", {tps / ref_tps:.2f}× {ref.name}" if ref and (ref_tps := ref.decode_tps(workload)) else ""
        parts.append(f"{workload} **{name}** ({tps:.1f} tok/s{vs})")
    return "Fastest inside the budget per workload: " + ", ".join(parts) + "."


def selection_lines(summary: RunSummary) -> list[str]:
    """Why the plan has these rungs, when `ladder plan auto` chose them for the machine."""
    sel = summary.selection
    if not sel:
        return []
    lines = ["", "## Why these rungs", "", f"Chosen by `ladder plan auto` for {sel['hardware']}.", ""]
    for c in sel["choices"]:
        lines.append(
            f"- {'**' + c['rung'] + '**' if c['included'] else '~~' + c['rung'] + '~~ left out'}: {c['reason']}"
        )
    return lines


def _answer_lines(summary: RunSummary, workload: str = "short") -> list[str]:
    """Each rung's first answer to the workshop prompt, side by side in one table."""
    answers = [[r.name, md_cell(r.sample_outputs[workload])] for r in summary.rungs if r.sample_outputs.get(workload)]
    if not answers:
        return []
    return ["", f"## Answers to the `{workload}` prompt (first trial)", "", *md_table(("rung", "answer"), answers)]


ROOFLINE_COLUMNS = (
    "rung",
    "workload",
    "weights GiB",
    "KV MiB/step",
    "tokens/step",
    "tok/s",
    "GB/s used",
    "% of bandwidth",
    "J/token",
)


def roofline_rows(summary: RunSummary) -> list[list[str]]:
    out = []
    for r in summary.rungs:
        for roof in r.roofline:
            joules = r.workloads[roof.workload].energy_j_per_token if roof.workload in r.workloads else None
            out.append(
                [
                    r.name,
                    roof.workload,
                    f"{roof.weight_gib:.2f}",
                    f"{roof.kv_mib_per_step:.1f}",
                    f"{roof.tokens_per_step:.2f}",
                    f"{roof.steps_per_s * roof.tokens_per_step:.1f}",
                    f"{roof.achieved_gbs:.1f}",
                    f"{roof.percent:.0f}%",
                    _num(joules, "{:.3f}"),
                ]
            )
    return out


def bandwidth_note(summary: RunSummary) -> str:
    bw = summary.host.get("memory_bandwidth")
    return f"{bw['gbs']:.0f} GB/s, {bw['source']}" if bw else "unknown"


def _roofline_lines(summary: RunSummary) -> list[str]:
    body = roofline_rows(summary)
    gaps = [
        f"- **{r.name}**: n/a ({r.not_measured['roofline']})" for r in summary.rungs if "roofline" in r.not_measured
    ]
    if not body and not gaps:
        return []
    return [
        "",
        "## Roofline and energy",
        "",
        f"Memory bandwidth: {bandwidth_note(summary)}. Each decode step reads the weights once (as loaded) plus "
        "the KV cache of its context (prompt + half the answer); GB/s used = bytes per step × steps per second. "
        "J/token: energy over the workload's trials ÷ output tokens (whole GPU or CPU package; n/a without a "
        "counter).",
        "",
        *(md_table(ROOFLINE_COLUMNS, body) if body else []),
        *(["", *gaps] if gaps else []),
    ]


PHASE_COLUMNS = ("startup", "warmup", "workloads", "answer scoring", "agreement", "suites", "load", "stop",
                 "offline agreement")  # fmt: skip


def phase_cells(result: RungResult) -> list[float]:
    """Seconds per column of PHASE_COLUMNS (the workloads summed), then the rung's total."""
    phases = result.phases
    cells = [sum(s for n, s in phases.items() if n.startswith("workload ")) if c == "workloads" else phases.get(c, 0.0)
             for c in PHASE_COLUMNS]  # fmt: skip
    return [*cells, sum(phases.values())]


def climb_seconds(summary: RunSummary) -> float:
    """The whole climb's wall-clock seconds: every rung's phases and the climb's own."""
    return sum(sum(r.phases.values()) for r in summary.rungs) + sum(summary.phases.values())


def _time_lines(summary: RunSummary) -> list[str]:
    timed = [r for r in summary.rungs if r.phases]
    if not timed:
        return []
    body = [[r.name, *(f"{x:.0f}" for x in phase_cells(r))] for r in timed]
    climb = " ".join(f"{name} {s:.0f} s," for name, s in summary.phases.items())
    total = climb_seconds(summary)
    return ["", "## Where the time went", "",
            f"Wall-clock seconds per phase of each rung. The climb itself: {climb} {total:.0f} s in all.", "",
            *md_table(("rung", *PHASE_COLUMNS, "total"), body)]  # fmt: skip


def _quick_lines(summary: RunSummary) -> list[str]:
    """What a `--quick` climb left out, climb-wide and per rung, with why."""
    if summary.quick is None:
        return []
    body = [[r.name, ", ".join(r.skipped), next(iter(r.skipped.values()))] for r in summary.rungs if r.skipped]
    return ["", "## Skipped by --quick", "", *(f"- {note}" for note in summary.quick),
            *(["", *md_table(("rung", "skipped", "why"), body)] if body else [])]  # fmt: skip


def to_markdown(summary: RunSummary) -> str:
    lines = [
        f"# Climb: {summary.plan}",
        "",
        f"Started {summary.started_at}, baseline `{summary.baseline}`. Decode tok/s = tokens after the first ÷ "
        "time after the first token; median over trials with (min–max). Speedup on the long workload.",
        *(["", f"**Baseline:** {summary.baseline_note}"] if summary.baseline_note else []),
        "",
        *md_table(COLUMNS, rows(summary)),
        *_recommendation_lines(summary),
        *selection_lines(summary),
        *calibration_lines(summary),
        "",
        "## Startup stages",
        "",
        "As the engine logged them; total = wall time until /health answered. On vLLM CPU, compile = the compile "
        "warmup run; llama.cpp logs no stages.",
        "",
        *md_table(STAGE_COLUMNS, stage_rows(summary)),
    ]
    if agreement := agreement_rows(summary):
        lines += [
            "",
            "## Agreement with the baseline",
            "",
            "Prompt logprobs (top-k) of every rung on the same fixed text, against the baseline's: perplexity and "
            "its ratio, KL divergence (top-k plus a tail bucket), and how often both rank the same token first. "
            "Answers' perplexity: the rung's generated answers scored by its own model (median per workload), "
            "or by the baseline where the rung's engine serves no prompt logprobs.",
            "",
            *md_table(AGREEMENT_COLUMNS, agreement),
            *cross_engine_lines(summary),
        ]
    lines += _time_lines(summary) + _quick_lines(summary)
    lines += _roofline_lines(summary)
    lines += suite_lines(summary)
    lines += _load_lines(summary)
    lines += _answer_lines(summary)
    notes = _notes(summary)
    if notes:
        lines += ["", "## Notes", "", *notes]
    lines += ["", "## Verification", ""]
    for r in summary.rungs:
        lines += [f"- **{r.name}**: " + ("; ".join(r.verification) or "not verified")]
    return "\n".join(lines) + "\n"


def to_table(summary: RunSummary) -> Table:
    table = Table(title=f"ladder climb: {summary.plan}")
    for col in COLUMNS:
        table.add_column(col, overflow="fold")
    for cells in rows(summary):
        table.add_row(*cells, style=None if cells[-1] == "ok" else "red")
    return table


def load_rows(summary: RunSummary) -> list[list[str]]:
    return [[r.name, *level_cells(level)] for r in summary.rungs if r.load for level in r.load["levels"]]


def _load_lines(summary: RunSummary) -> list[str]:
    rows = load_rows(summary)
    if not rows:
        return []
    knees = [f"{r.name} {r.load['knee_concurrency']}" for r in summary.rungs if r.load and r.load["knee_concurrency"]]
    return [
        "",
        "## Load",
        "",
        "The plan's load sweep on every rung (warmup and cooldown requests left out; every request in "
        "`load/<rung>/requests.jsonl`)."
        + (f" Knee (concurrency reaching 90% of the best throughput): {', '.join(knees)}." if knees else ""),
        "",
        *md_table(("rung", *(c for c, _ in LOAD_COLUMNS)), rows),
    ]
