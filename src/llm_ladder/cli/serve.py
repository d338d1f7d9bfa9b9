"""`ladder serve`, `smoke`, `ui`, `deploy` and `doctor`: from a chosen rung to something people use."""

from __future__ import annotations

from pathlib import Path
from typing import Annotated

import typer

from llm_ladder.cli.common import (
    ApiKey,
    Host,
    ModelsDir,
    RungName,
    RunOrPlan,
    ServedModel,
    Url,
    app,
    console,
    fail,
    interrupt_on_sigterm,
)
from llm_ladder.engines.base import EngineError, get_engine
from llm_ladder.models.store import ModelError, ModelStore
from llm_ladder.outputs.results import default_run_dir
from llm_ladder.plan.loading import load_plan
from llm_ladder.plan.schema import PlanError


@app.command()
def serve(
    source: RunOrPlan = None,
    rung: RungName = None,
    port: Annotated[int, typer.Option(help="Port to serve on.")] = 8000,
    host: Host = "127.0.0.1",
    out: Annotated[
        Path | None, typer.Option(help="Directory for the engine log (default runs/<timestamp>-serve).")
    ] = None,
    models_dir: ModelsDir = None,
) -> None:
    """Serve the recommended (or a named) rung with exactly the configuration that was measured; Ctrl-C stops it."""
    from llm_ladder.ops.serve import choose, resolved, serve_until_stopped

    try:
        choice = choose(source, rung)
        engine = get_engine(choice.engine, port=port, host=host)
        engine.preflight()
        the_rung = engine.prepare(resolved(choice, ModelStore(models_dir)), console.print)
    except (PlanError, ModelError, EngineError, OSError, ValueError) as err:
        fail(str(err))
    interrupt_on_sigterm()
    console.print(f"{choice.rung.name}: {choice.why}; starting (this takes as long as the climb's startup did)")
    try:
        code = serve_until_stopped(engine, the_rung, out or default_run_dir("serve"), console.print)
    except EngineError as err:
        fail(str(err), code=1)
    except KeyboardInterrupt:
        console.print("[yellow]interrupted during startup: server stopped[/yellow]")
        code = 130
    raise typer.Exit(code)


@app.command()
def deploy(
    source: RunOrPlan = None,
    rung: RungName = None,
    target: Annotated[str, typer.Option(help="What to write: compose (Docker Compose for GPU/Jetson hosts).")] = (
        "compose"
    ),
    out: Annotated[Path | None, typer.Option(help="Directory for compose.yml and .env (default ./deploy).")] = None,
    models_dir: ModelsDir = None,
) -> None:
    """Write a Docker Compose project serving the chosen rung: vLLM (NGC image), Open WebUI, JupyterLab."""
    from llm_ladder.ops.deploy import write_compose
    from llm_ladder.ops.serve import choose

    if target != "compose":
        fail(f"unknown target {target!r} (known: compose)")
    try:
        choice = choose(source, rung)
    except (PlanError, OSError, ValueError) as err:
        fail(str(err))
    written = write_compose(choice.rung, ModelStore(models_dir), out or Path("deploy"))
    console.print(f"{choice.rung.name} ({choice.why}): {', '.join(map(str, written))}")
    console.print(f"on the GPU host: cd {written[0].parent} && docker compose up -d   (chat UI on port 3000)")


@app.command()
def doctor(
    plan: Annotated[str | None, typer.Option(help="Also check this plan's models and GPU memory.")] = None,
    as_json: Annotated[bool, typer.Option("--json", help="Print the checks as JSON.")] = False,
    fleet: Annotated[
        bool, typer.Option("--fleet", help="Check the Ray cluster's nodes instead (devices, memory, versions).")
    ] = False,
    address: Annotated[str, typer.Option(envvar="RAY_ADDRESS", help="With --fleet: the Ray cluster.")] = "auto",
    models_dir: ModelsDir = None,
) -> None:
    """Check this machine for what a climb needs, with what to do about each problem."""
    import json

    from rich.markup import escape

    from llm_ladder.ops.doctor import diagnose

    try:
        the_plan = load_plan(plan) if plan else None
    except PlanError as err:
        fail(str(err))
    checks = _fleet_checks(address) if fleet else diagnose(the_plan, ModelStore(models_dir))
    if as_json:
        print(json.dumps([c.model_dump() for c in checks], indent=2))
    else:
        colours = {"ok": "green", "warn": "yellow", "fail": "red", "skip": "dim"}
        for c in checks:
            console.print(
                f"[{colours[c.status]}]{c.status.upper():<4}[/] {c.name:<22} {escape(c.message)}", highlight=False
            )
    if any(c.status == "fail" for c in checks):
        raise typer.Exit(1)


def _fleet_checks(address: str) -> list:
    from llm_ladder.fleet import FleetError
    from llm_ladder.fleet.connect import alive_nodes, connect
    from llm_ladder.ops.doctor import Check
    from llm_ladder.ops.fleet_doctor import fleet_checks

    try:
        connect(address)
        nodes = alive_nodes()
    except FleetError as err:
        fail(str(err))
    cluster = Check(name="cluster", status="ok" if nodes else "fail",
                    message=f"{len(nodes)} node(s) with a device at {address}")  # fmt: skip
    return [cluster, *fleet_checks(nodes)]


@app.command()
def ui(
    url: Url,
    port: Annotated[int, typer.Option(help="Port for the chat UI.")] = 3000,
    host: Host = "127.0.0.1",
    api_key: ApiKey = None,
    webui: Annotated[
        str | None, typer.Option(help="The open-webui executable (default: scripts/install-ui.sh's).")
    ] = None,
) -> None:
    """Open WebUI wired to an OpenAI-compatible endpoint, no login; Ctrl-C stops it."""
    import httpx

    from llm_ladder.ops.ui import UiError, run_ui
    from llm_ladder.quality.evaluation import auth_headers, find_model

    try:
        model = find_model(url, None, auth_headers(api_key))
    except (httpx.HTTPError, ValueError) as err:
        fail(f"{url} does not answer as an OpenAI-compatible server ({type(err).__name__}: {err})")
    console.print(f"{url} serves {model!r}")
    interrupt_on_sigterm()
    try:
        code = run_ui(url, console.print, host=host, port=port, api_key=api_key, model=model, webui=webui)
    except (UiError, EngineError) as err:
        fail(str(err))
    raise typer.Exit(code)


@app.command()
def smoke(url: Url, model: ServedModel = None, api_key: ApiKey = None) -> None:
    """Check an OpenAI-compatible endpoint: health, models, chat (plain and streamed), completions."""
    import asyncio

    from rich.markup import escape

    from llm_ladder.ops.smoke import smoke as run_smoke

    def show(check) -> None:
        mark = "[green]PASS[/green]" if check.ok else "[red]FAIL[/red]"
        console.print(f"{mark} {check.name:<36} {check.ms:7.0f} ms  {escape(check.detail)}", highlight=False)

    checks = asyncio.run(run_smoke(url, model, api_key, show))
    if failed := [c.name for c in checks if not c.ok]:
        fail(f"{len(failed)} of {len(checks)} checks failed: {', '.join(failed)}", code=1)
    console.print(f"all {len(checks)} checks passed: {url} is usable")
