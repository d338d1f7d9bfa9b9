"""`ladder`: thin commands that parse arguments, build a config and call the library."""

from __future__ import annotations

import sys
from pathlib import Path
from typing import Annotated

import typer
from rich.table import Table

from llm_ladder.cli.common import (
    ApiKey,
    ModelsDir,
    ServedModel,
    Url,
    app,
    console,
    fail,
    interrupt_on_sigterm,
    models_app,
    report_or_reason,
)
from llm_ladder.cli.plan import machine_plan
from llm_ladder.climb.progress import ClimbProgress
from llm_ladder.engines.base import EngineError, EngineSet
from llm_ladder.models.quantize import SCHEMES
from llm_ladder.models.store import ModelError, ModelStore, provenance
from llm_ladder.outputs.jsonl import CorruptLog
from llm_ladder.outputs.results import RunDir, default_run_dir
from llm_ladder.plan.loading import describe_error, load_plan
from llm_ladder.plan.schema import PlanError
from llm_ladder.quality.suites import SuiteError

__all__ = ["app", "main"]


@app.command()
def climb(
    plan: Annotated[
        str | None,
        typer.Argument(help="Plan file or shipped plan name (default: `ladder plan auto` for this machine)."),
    ] = None,
    out: Annotated[Path | None, typer.Option(help="Run directory (default runs/<timestamp>-<plan>).")] = None,
    resume: Annotated[Path | None, typer.Option(help="Continue RUN_DIR, skipping rungs already completed.")] = None,
    trials: Annotated[int | None, typer.Option(min=1, help="Requests per workload per rung (plan default 3).")] = None,
    rung: Annotated[
        list[str] | None, typer.Option(help="Only these rungs (repeatable); the first is the baseline.")
    ] = None,
    port: Annotated[int | None, typer.Option(help="Serve every rung on this port (default: a free one).")] = None,
    quick: Annotated[
        bool,
        typer.Option(
            "--quick",
            help="Decide sooner: only the objective's workload, and a rung whose agreement already fails the "
            "quality budget skips its answer scoring and task suites (the summary lists what was skipped).",
        ),
    ] = False,
    models_dir: ModelsDir = None,
) -> None:
    """Serve each rung of a plan on a real engine, measure it, stop it, and write the results."""
    from llm_ladder.climb.climber import Climber
    from llm_ladder.measure.server import Sinks
    from llm_ladder.outputs.summary import per_workload_line, to_table

    try:
        the_plan = (load_plan(plan) if plan else machine_plan(None, models_dir)).select(rung, trials)
        if resume and not RunDir.exists(resume):
            raise PlanError(f"--resume {resume}: no results.jsonl there to resume from")
        done = RunDir(resume).completed_rungs() if resume else {}  # a damaged log is named now, not mid-climb
        engines = EngineSet(the_plan.engine, **({"port": port} if port else {}))
        for name in {the_plan.engine_of(r) for r in the_plan.rungs}:
            engines.get(name)  # preflight every engine the plan uses before anything starts
        run_path = resume or out or default_run_dir(the_plan.name)
        store = ModelStore(models_dir)
        climber = Climber(the_plan, RunDir(run_path), engines, store, notify=console.print, quick=quick)
        climber.prepare()  # every model exists (or is made) and every suite loads before any server starts
    except (PlanError, ModelError, EngineError, SuiteError, CorruptLog) as err:
        fail(str(err))
    interrupt_on_sigterm()
    console.print(f"climbing [bold]{the_plan.name}[/bold] ({len(the_plan.rungs)} rungs) → {run_path}")
    per_rung = len(climber.plan.workloads) * the_plan.trials + sum(len(s.items) for s in climber.suites)
    if climber.load is not None:
        per_rung += len(climber.load[0].shapes) * climber.load[0].max_requests
    to_climb = len(the_plan.rungs) - len(done)
    with ClimbProgress(console, to_climb * per_rung, to_climb) as progress:
        climber.notify = progress.notify
        try:
            sinks = Sinks(progress.advance, progress.advance_item, progress.advance_quietly,
                          on_phase=progress.phase, on_rung=progress.rung_done)  # fmt: skip
            summary = climber.run(resume=resume is not None, sinks=sinks)
        except KeyboardInterrupt:
            console.print(f"[yellow]interrupted: servers stopped, results so far in {run_path}[/yellow]")
            console.print(f"report so far: {report_or_reason(run_path)}")
            raise typer.Exit(130) from None
    console.print(to_table(summary))
    if summary.recommendation:
        console.print(f"[bold]recommendation:[/bold] {summary.recommendation.summary}", soft_wrap=True)
        if winners := per_workload_line(summary):
            console.print(winners.replace("**", ""), soft_wrap=True, highlight=False)
    console.print(f"results: {run_path / 'results.json'}, {run_path / 'summary.md'}, {report_or_reason(run_path)}")
    if summary.failed:
        fail(f"{len(summary.failed)} rung(s) failed: {', '.join(summary.failed)}", code=1)


@app.command()
def report(run_dir: Annotated[Path, typer.Argument(help="A run directory (with results.json).")]) -> None:
    """Write RUN_DIR/report.html: one self-contained page with the charts, the tables and the answers."""
    from llm_ladder.outputs.report import write_report

    try:
        console.print(f"report: {write_report(run_dir)}")
    except (OSError, ValueError) as err:
        fail(str(err))


@app.command()
def compare(
    run_dirs: Annotated[list[Path], typer.Argument(help="Two or more run directories; the first is the reference.")],
    out: Annotated[Path | None, typer.Option(help="Directory for compare.html and compare.md.")] = None,
) -> None:
    """The same rungs across runs, marking only differences larger than the trials' spread."""
    from llm_ladder.outputs.compare import write_compare

    out_dir = out or default_run_dir("compare")
    try:
        rows, html = write_compare(run_dirs, out_dir)
    except (OSError, ValueError) as err:
        fail(str(err))
    table = Table("rung", "metric", *(p.name for p in run_dirs), title="ladder compare")
    styles = {"better": "green", "worse": "red", "": ""}
    for row in rows:
        table.add_row(
            row.rung, row.metric, *(f"[{styles[c.mark]}]{c.text}[/]" if c.mark else c.text for c in row.cells)
        )
    console.print(table)
    console.print(f"compare: {html}, {out_dir / 'compare.md'}")


@app.command()
def probe(
    model: Annotated[
        str,
        typer.Argument(help="A model store name (the default too), a local directory or a repo id in the HF cache."),
    ],
    prompt: Annotated[str, typer.Option(help="The user message (or raw text with --no-chat).")] = (
        "What is the capital of France?"
    ),
    revision: Annotated[
        str | None, typer.Option(help="Branch, tag or commit in the HF cache; a content-hash prefix for a directory.")
    ] = None,
    random_weights: Annotated[
        bool, typer.Option(help="MODEL's architecture (or a shipped shape: llama-3.1-8b) with random weights.")
    ] = False,
    chat: Annotated[bool, typer.Option(help="Render the prompt through the model's chat template.")] = True,
    thinking: Annotated[str | None, typer.Option(help="on or off: the template's enable_thinking switch.")] = None,
    max_new_tokens: Annotated[int, typer.Option(min=1, max=8192)] = 64,
    ignore_eos: Annotated[bool, typer.Option(help="Generate exactly --max-new-tokens (for timing).")] = False,
    topk_steps: Annotated[int, typer.Option(min=0, max=64, help="Top-5 of each of the first N tokens.")] = 0,
    device: Annotated[str, typer.Option(help="auto, cpu or cuda[:N].")] = "auto",
    dtype: Annotated[str, typer.Option(help="bfloat16, float16 or float32.")] = "bfloat16",
    decode_path: Annotated[
        str, typer.Option(help="auto (fastest that works), compiled, static or dynamic (the KV cache).")
    ] = "auto",
    as_json: Annotated[bool, typer.Option("--json", help="Print the result as JSON.")] = False,
) -> None:
    """Load a model offline with transformers and show what a notebook session would: prompt, tokens, top-5, speed."""
    import os

    os.environ["HF_HUB_OFFLINE"] = "1"  # strictly offline, whatever the caller's environment says
    from llm_ladder.probe.probe import ProbeError
    from llm_ladder.probe.probe import probe as run_probe

    if thinking not in (None, "on", "off"):
        fail(f"--thinking {thinking!r}: on or off")
    if dtype not in ("bfloat16", "float16", "float32"):
        fail(f"--dtype {dtype!r}: bfloat16, float16 or float32")
    options = {
        "revision": revision,
        "random_weights": random_weights,
        "chat": chat,
        "thinking": None if thinking is None else thinking == "on",
        "max_new_tokens": max_new_tokens,
        "ignore_eos": ignore_eos,
        "topk_steps": topk_steps,
        "decode_path": decode_path,
    }
    try:
        result = run_probe(model, prompt, device=device, dtype=dtype, **options)
    except (ProbeError, ModelError, OSError) as err:
        fail(str(err))
    print(result.model_dump_json(indent=2) if as_json else result)


@app.command("eval")
def eval_(
    url: Url,
    model: ServedModel = None,
    suite: Annotated[
        list[str] | None, typer.Option(help="Suite name or YAML file (repeatable; default: instructions, exact).")
    ] = None,
    limit: Annotated[int | None, typer.Option(min=1, help="Only the first N items of each suite.")] = None,
    concurrency: Annotated[int, typer.Option(min=1, max=256, help="Items in flight at once.")] = 32,
    out: Annotated[Path | None, typer.Option(help="Directory for items.jsonl (default runs/<timestamp>-eval).")] = None,
    api_key: ApiKey = None,
) -> None:
    """Run the task suites (greedy, fixed seed) against any running OpenAI-compatible server."""
    import httpx

    from llm_ladder.outputs.quality_tables import suite_table
    from llm_ladder.plan.schema import SuitesSpec
    from llm_ladder.quality.evaluation import evaluate_url, load_suites

    spec = SuitesSpec(**({"names": tuple(suite)} if suite else {}), limit=limit, concurrency=concurrency)
    try:
        suites = load_suites(spec)
    except SuiteError as err:
        fail(str(err))
    out_dir = out or default_run_dir("eval")
    items_path = out_dir / "items.jsonl"
    with ClimbProgress(console, sum(len(s.items) for s in suites)) as progress:
        try:
            name, scores = evaluate_url(url, model, suites, spec, items_path, progress.advance_item, api_key)
        except (httpx.HTTPError, ValueError) as err:
            fail(f"{url}: {type(err).__name__}: {err}")
    console.print(suite_table(name, scores))
    console.print(f"items: {items_path}")


@app.command("bench")
def bench(
    url: Url,
    model: ServedModel = None,
    endpoint: Annotated[str, typer.Option(help="chat or completions.")] = "chat",
    dataset: Annotated[str, typer.Option(help="workshop, random, sharegpt or jsonl.")] = "random",
    dataset_path: Annotated[Path | None, typer.Option(help="The JSONL file (or a ShareGPT JSON file).")] = None,
    input_len: Annotated[int, typer.Option(min=1, help="Random prompts: input tokens.")] = 256,
    output_len: Annotated[int, typer.Option(min=1, help="Output tokens (random: exact, with ignore_eos).")] = 128,
    tokenizer: Annotated[str | None, typer.Option(help="Local tokenizer dir for exact lengths (else words).")] = None,
    concurrency: Annotated[str | None, typer.Option(help="Requests in flight; a list is a sweep: 1,4,16.")] = None,
    rate: Annotated[
        str | None, typer.Option(help="Requests/s; a list is a sweep. Poisson unless --burstiness.")
    ] = None,
    burstiness: Annotated[
        float, typer.Option(min=0.001, help="Gamma shape of the gaps: 1 Poisson, inf constant.")
    ] = 1.0,
    max_requests: Annotated[int, typer.Option(min=1, help="Requests per load level.")] = 32,
    duration: Annotated[float | None, typer.Option(min=0.1, help="Seconds per load level at most.")] = None,
    warmup: Annotated[
        int | None, typer.Option(min=0, help="Requests left out at the start (default: concurrency).")
    ] = None,
    cooldown: Annotated[
        int | None, typer.Option(min=0, help="Requests left out at the end (default: as warmup).")
    ] = None,
    slo: Annotated[str | None, typer.Option(help="Goodput SLOs in ms: ttft=500,tpot=50,e2e=4000.")] = None,
    seed: Annotated[int, typer.Option(help="Seed for datasets and arrivals.")] = 0,
    out: Annotated[Path | None, typer.Option(help="Directory for bench.json, bench.csv, requests.jsonl.")] = None,
    api_key: ApiKey = None,
) -> None:
    """Load-test any OpenAI-compatible server: concurrency or rate sweeps, vllm-bench metrics, goodput."""
    import httpx
    from pydantic import ValidationError

    from llm_ladder.load.arrivals import shapes_from
    from llm_ladder.load.loadstats import load_table, parse_slo
    from llm_ladder.load.prompts import load_requests, local_tokenizer, word_count
    from llm_ladder.load.sweep import SweepOptions, run_sweep
    from llm_ladder.quality.evaluation import auth_headers, find_model

    headers = auth_headers(api_key)
    try:
        shapes = shapes_from(concurrency, rate, burstiness, seed)
        opts = SweepOptions(
            shapes=shapes,
            endpoint=endpoint,
            max_requests=max_requests,
            duration_s=duration,
            warmup=warmup,
            cooldown=cooldown,
            slo=parse_slo(slo or ""),
        )
        count = local_tokenizer(tokenizer) if tokenizer else word_count
        requests = load_requests(dataset, max_requests, input_len, output_len, seed, dataset_path, count)
        name = find_model(url, model, headers)
    except ValidationError as err:
        fail(describe_error(err))
    except (ValueError, OSError, httpx.HTTPError) as err:
        fail(f"{type(err).__name__}: {err}" if isinstance(err, httpx.HTTPError) else str(err))
    out_dir = out or default_run_dir("bench")
    with ClimbProgress(console, len(shapes) * max_requests) as progress:
        result = run_sweep(url, name, requests, opts, out_dir, progress.advance_quietly, headers)
    console.print(load_table(result))
    console.print(f"results: {out_dir / 'bench.json'}, {out_dir / 'bench.csv'}, {out_dir / 'requests.jsonl'}")


@models_app.command("list")
def models_list(models_dir: ModelsDir = None) -> None:
    """Show the models materialized in the store."""
    store = ModelStore(models_dir)
    entries = store.list()
    if not entries:
        console.print(f"no models in {store.root} (try: ladder models pull smollm2-135m-instruct)")
    table = Table("name", "weights MB", "quantization", title=f"models in {store.root}")
    for m in entries:
        source = " (de-quantized Q4_1 GGUF)" if provenance(m.name) else ""
        table.add_row(m.name, f"{m.size_bytes / 1e6:.1f}", m.quantization + source)
    if entries:
        console.print(table)


@models_app.command("pull")
def models_pull(name: str, models_dir: ModelsDir = None) -> None:
    """Materialize a model the store knows how to make (the embedded default, or a quantized variant)."""
    try:
        console.print(str(ModelStore(models_dir).pull(name)))
    except ModelError as err:
        fail(str(err))


@models_app.command("quantize")
def models_quantize(
    base: str,
    scheme: Annotated[str, typer.Option(help=f"One of {', '.join(SCHEMES)}.")] = "w8a8",
    models_dir: ModelsDir = None,
) -> None:
    """Quantize a store model into `<base>-<scheme>`, a compressed-tensors checkpoint vLLM loads. (torchao's int4
    is no checkpoint: vLLM quantizes at load with `quantization: torchao` on a rung.)"""
    if scheme not in SCHEMES:
        fail(f"unknown scheme {scheme!r} (known: {', '.join(SCHEMES)})")
    store = ModelStore(models_dir)
    if not store.has(base) and not store.can_make(base):
        fail(f"base model {base!r} is not in the store ({store.root})")
    try:
        console.print(str(store.pull(f"{base}-{scheme}")))
    except ModelError as err:
        fail(str(err))


import llm_ladder.cli.engines  # noqa: E402  (registers `engines list|install`)
import llm_ladder.cli.plan  # noqa: E402  (registers `plan auto`)
import llm_ladder.cli.serve  # noqa: E402  (registers serve, smoke, ui, deploy, doctor after these)
import llm_ladder.cli.tune  # noqa: E402  (registers tune)


def main() -> None:
    """Entry point for `python -m llm_ladder`."""
    sys.exit(app())


import llm_ladder.cli.fleet  # noqa: E402, F401  (registers fleet climb|push)
