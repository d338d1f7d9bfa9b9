"""The workshop-style table of a climb, as Markdown for summary.md and as a rich table for the terminal."""

from __future__ import annotations

import html

from rich.table import Table

from llm_ladder.agreement import Agreement
from llm_ladder.engines.base import engine_class, engine_classes
from llm_ladder.loadstats import LOAD_COLUMNS, level_cells
from llm_ladder.results import RungResult, RunSummary
from llm_ladder.suites import SuiteScore

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
    """Peak GPU memory where NVML saw it, else the engine process tree's peak RSS."""
    m = result.memory
    return None if m is None else (m.gpu_peak_gib if m.gpu_peak_gib is not None else m.peak_rss_gib)


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
        _num(memory_gib(result), "{:.2f}"),
        startup_text,
        _num(ttft.ttft_ms.median if ttft and ttft.ttft_ms else None, "{:.0f}"),
        _spread(result, "short"),
        _spread(result, "long"),
        speedup,
        _acceptance(result),
        result.status,
    ]


def rows(summary: RunSummary) -> list[list[str]]:
    baseline = next((r for r in summary.rungs if r.name == summary.baseline and r.status == "ok"), None)
    workload = "long" if any("long" in r.workloads for r in summary.rungs) else "short"
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


def _md_table(columns: tuple[str, ...], body: list[list[str]]) -> list[str]:
    return ["| " + " | ".join(columns) + " |", "|" + "---|" * len(columns)] + [
        "| " + " | ".join(c) + " |" for c in body
    ]


AGREEMENT_COLUMNS = (
    "rung",
    "tokens",
    "perplexity",
    "ratio",
    "mean KL",
    "p99 KL",
    "same top % (95% CI)",
    "answers' perplexity",
)


def _answer_perplexity(result: RungResult) -> str:
    parts = [
        f"{name} {stats.output_perplexity.median:.1f}"
        for name, stats in result.workloads.items()
        if stats.output_perplexity is not None
    ]
    why = result.not_measured.get("answers' perplexity")
    by = f" (scored by {result.answers_scored_by})" if parts and result.answers_scored_by else ""
    return ", ".join(parts) + by if parts else f"n/a ({why})" if why else "n/a"


def _agreement_cells(name: str, a: Agreement, answers: str) -> list[str]:
    lo, hi = a.same_top_ci95
    return [name, str(a.tokens), f"{a.perplexity:.3f}", f"{a.perplexity_ratio:.4f}", f"{a.mean_kl:.5f}",
            f"{a.p99_kl:.4f}", f"{a.same_top:.1%} ({lo:.1%}–{hi:.1%})", answers]  # fmt: skip


def agreement_rows(summary: RunSummary) -> list[list[str]]:
    out = []
    for r in summary.rungs:
        if r.agreement is not None:
            out.append(_agreement_cells(r.name, r.agreement, _answer_perplexity(r)))
        elif r.agreement_error:
            out.append([r.name, "n/a", "n/a", "n/a", "n/a", "n/a", r.agreement_error, _answer_perplexity(r)])
    for label, a in summary.cross_engine.items():
        out.append(_agreement_cells(f"{label} vs {summary.baseline}", a, "–"))
    if summary.cross_engine_error:
        out.append(["cross-engine check", *["n/a"] * 5, summary.cross_engine_error, "–"])
    return out


CROSS_ENGINE_KL = 0.005
"""Mean KL between two engines serving the same 16-bit weights above which one agreement path is suspect: the
F16 GGUF against vLLM bf16 differs by bf16 against F16 rounding only (well under this)."""


def cross_engine_lines(summary: RunSummary) -> list[str]:
    lines = []
    for label, a in summary.cross_engine.items():
        verdict = (
            "the two engines agree, so their agreement figures compare"
            if a.mean_kl <= CROSS_ENGINE_KL
            else f"above {CROSS_ENGINE_KL}: one of the two agreement paths is off; compare its rungs with care"
        )
        lines.append(f"- {label} vs {summary.baseline} ({a.reference}): mean KL {a.mean_kl:.5f}, {verdict}.")
    return ["", "Cross-engine check (the same weights on both engines):", "", *lines] if lines else []


SUITE_COLUMNS = ("rung", "suite", "n", "accuracy (95% CI)", "loose", "vs baseline", "errors")


def _vs_baseline(score: SuiteScore) -> str:
    p = score.vs_baseline
    if p is None:
        return "–"
    sign = "−" if p.drop_points > 0 else "+"
    verdict = "significant" if p.significant else "not significant"
    return (
        f"{sign}{abs(p.drop_points):.1f} pts (lost {p.lost}, gained {p.gained}; McNemar p={p.p_value:.2f}, {verdict})"
    )


def suite_cells(rung: str, score: SuiteScore) -> list[str]:
    lo, hi = score.ci95
    loose = "–" if score.loose_accuracy is None else f"{score.loose_accuracy:.1%}"
    cells = [rung, score.suite, str(score.n), f"{score.accuracy:.1%} ({lo:.0%}–{hi:.0%})", loose]
    return [*cells, _vs_baseline(score), str(score.errors)]


def suite_rows(summary: RunSummary) -> list[list[str]]:
    return [suite_cells(r.name, score) for r in summary.rungs for score in r.suites.values()]


def suite_table(model: str, scores: dict[str, SuiteScore]) -> Table:
    """`ladder eval`'s result in the terminal."""
    table = Table(title=f"task suites: {model}")
    for col in SUITE_COLUMNS:
        table.add_column(col, overflow="fold")
    for score in scores.values():
        table.add_row(*suite_cells(model, score))
    return table


def _identity_lines(summary: RunSummary) -> list[str]:
    lines = []
    for r in summary.rungs:
        ident = r.greedy_identity
        if ident is not None:
            flag = "" if ident.match == 1 else " ⚠ below 100%: speculation changed greedy output"
            shown = ", ".join(ident.differing[:8]) + (" …" if len(ident.differing) > 8 else "")
            unit = "token" if ident.by == "tokens" else "character"
            differing = f" Differing (item@first differing {unit}): {shown}." if ident.differing else ""
            how = "token for token" if ident.by == "tokens" else "as text (the engine returns no token ids)"
            lines.append(
                f"- **{r.name}** vs **{ident.reference}**: {ident.identical}/{ident.compared} greedy answers "
                f"identical {how} ({ident.match:.1%}){flag}.{differing}"
            )
        elif r.greedy_identity_error:
            lines.append(f"- **{r.name}**: greedy identity not measured: {r.greedy_identity_error}.")
    return lines


def _one_at_a_time(summary: RunSummary) -> list[str]:
    engines = sorted({r.engine for r in summary.rungs if r.engine})
    serial = [e for e in engines if e in engine_classes() and not engine_class(e).capabilities.batch_invariant]
    return [f"{', '.join(serial)} answered them one at a time: its greedy answers depend on which requests share "
            "a batch."] if serial else []  # fmt: skip


def _suite_lines(summary: RunSummary) -> list[str]:
    body = suite_rows(summary)
    if not body:
        return []
    lines = [
        "",
        "## Task suites",
        "",
        "Greedy decoding (temperature 0, fixed seed); strict accuracy with its 95% Wilson interval, IFEval's loose "
        "accuracy for instruction items, and the paired comparison with the baseline on the same items. Every item's "
        "prompt, answer and verdict: `suites/<rung>.jsonl`.",
        *_one_at_a_time(summary),
        "",
        *_md_table(SUITE_COLUMNS, body),
    ]
    if identity := _identity_lines(summary):
        lines += ["", "Speculative decoding is lossless: greedy answers must equal the target model's.", "", *identity]
    return lines


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


REFINEMENTS = {"-gptq": "calibrated", "-mixed": "mixed precision", "-imatrix": "importance matrix"}
"""Weight-file suffixes of a round-to-nearest scheme refined (quantize.SCHEMES, a GGUF's `-imatrix`), and what the
refinement is."""


def _weights(result: RungResult) -> str:
    return (result.model_path or result.model).removesuffix(".gguf")


def refinement_pairs(summary: RunSummary) -> list[tuple[RungResult, RungResult, str]]:
    """(round-to-nearest, refined, how) rungs: the same scheme with and without a refinement suffix on the
    weights, neither speculating."""
    plain = {_weights(r): r for r in summary.rungs if r.status == "ok" and not r.config.get("speculative")}
    return [(plain[key.removesuffix(suffix)], r, how) for key, r in plain.items()
            for suffix, how in REFINEMENTS.items()
            if key.endswith(suffix) and key.removesuffix(suffix) in plain]  # fmt: skip


def refinement_facts(summary: RunSummary) -> list[str]:
    """What calibration or mixed precision bought: KL, same top token and speed against the RTN twin, one
    plain sentence per refined rung."""
    facts = []
    for rtn, ref, how in refinement_pairs(summary):
        if not (rtn.agreement and ref.agreement):
            continue
        a, b = rtn.agreement, ref.agreement
        speed = [(w, rtn.decode_tps(w), ref.decode_tps(w)) for w in ("long",) if rtn.decode_tps(w)]
        tps = "".join(f", decode {w} {x:.1f} → {y:.1f} tok/s" for w, x, y in speed if y)
        facts.append(f"{ref.name} ({how}) against {rtn.name} (round-to-nearest): mean KL "
                     f"{a.mean_kl:.4f} → {b.mean_kl:.4f}, same top token {a.same_top:.1%} → {b.same_top:.1%}, "
                     f"perplexity ratio {a.perplexity_ratio:.3f} → {b.perplexity_ratio:.3f}{tps}")  # fmt: skip
    return facts


def calibration_lines(summary: RunSummary) -> list[str]:
    facts = refinement_facts(summary)
    return ["", "## What calibration and mixed precision bought", "", *(f"- {f}" for f in facts)] if facts else []


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


def md_cell(text: str) -> str:
    """Untrusted text as one Markdown table cell: HTML escaped (no tags, no links rendered), pipes escaped, line
    breaks kept as <br>."""
    escaped = html.escape(text.strip(), quote=False).replace("|", "\\|")
    return "<br>".join(escaped.splitlines())


def _answer_lines(summary: RunSummary, workload: str = "short") -> list[str]:
    """Each rung's first answer to the workshop prompt, side by side in one table."""
    answers = [[r.name, md_cell(r.sample_outputs[workload])] for r in summary.rungs if r.sample_outputs.get(workload)]
    if not answers:
        return []
    return ["", f"## Answers to the `{workload}` prompt (first trial)", "", *_md_table(("rung", "answer"), answers)]


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
    if not (body := roofline_rows(summary)):
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
        *_md_table(ROOFLINE_COLUMNS, body),
    ]


def to_markdown(summary: RunSummary) -> str:
    lines = [
        f"# Climb: {summary.plan}",
        "",
        f"Started {summary.started_at}, baseline `{summary.baseline}`. Decode tok/s = tokens after the first ÷ "
        "time after the first token; median over trials with (min–max). Speedup on the long workload.",
        *(["", f"**Baseline:** {summary.baseline_note}"] if summary.baseline_note else []),
        "",
        *_md_table(COLUMNS, rows(summary)),
        *_recommendation_lines(summary),
        *selection_lines(summary),
        *calibration_lines(summary),
        "",
        "## Startup stages",
        "",
        "As the engine logged them; total = wall time until /health answered. On vLLM CPU, compile = the compile "
        "warmup run; llama.cpp logs no stages.",
        "",
        *_md_table(STAGE_COLUMNS, stage_rows(summary)),
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
            *_md_table(AGREEMENT_COLUMNS, agreement),
            *cross_engine_lines(summary),
        ]
    lines += _roofline_lines(summary)
    lines += _suite_lines(summary)
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
        *_md_table(("rung", *(c for c, _ in LOAD_COLUMNS)), rows),
    ]
