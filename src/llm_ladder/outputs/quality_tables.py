"""The quality sections of a climb's summary: agreement with the baseline (and between engines), task suites
and greedy identity, and what calibration or mixed precision bought against round-to-nearest."""

from __future__ import annotations

from rich.table import Table

from llm_ladder.engines.base import engine_class, engine_classes
from llm_ladder.outputs.markdown import md_table
from llm_ladder.outputs.results import RungResult, RunSummary
from llm_ladder.quality.agreement import Agreement
from llm_ladder.quality.suites import SuiteScore

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


def suite_lines(summary: RunSummary) -> list[str]:
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
        *md_table(SUITE_COLUMNS, body),
    ]
    if identity := _identity_lines(summary):
        lines += ["", "Speculative decoding is lossless: greedy answers must equal the target model's.", "", *identity]
    return lines


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
