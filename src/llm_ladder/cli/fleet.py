"""`ladder fleet climb|push`: one plan across the machines of a Ray cluster (the library: llm_ladder.fleet)."""

from __future__ import annotations

from pathlib import Path
from typing import Annotated

import typer

from llm_ladder.cli.common import ModelsDir, app, console, fail, interrupt_on_sigterm
from llm_ladder.cli.plan import machine_plan
from llm_ladder.engines.base import EngineError
from llm_ladder.fleet import FleetError
from llm_ladder.models.store import ModelError, ModelStore
from llm_ladder.outputs.results import default_run_dir
from llm_ladder.plan.loading import load_plan
from llm_ladder.plan.schema import PlanError

fleet_app = typer.Typer(no_args_is_help=True, help="One plan across the machines of a Ray cluster.")
app.add_typer(fleet_app, name="fleet")

Address = Annotated[
    str,
    typer.Option(
        envvar="RAY_ADDRESS", help="The Ray cluster: host:port of its head (`ray start --head` prints it), or auto."
    ),
]
DriverModels = Annotated[
    Path | None,
    typer.Option("--models-dir", help="This machine's model store (each node uses its own: $LADDER_MODELS_DIR there)."),
]
Nodes = Annotated[str | None, typer.Option(help="Only these nodes: names, patterns (jetson-*) or node-id prefixes.")]


@fleet_app.command("climb")
def fleet_climb(
    plan: Annotated[
        str | None,
        typer.Argument(help="Plan file or shipped plan name (default: `ladder plan auto`; --resume: the run's own)."),
    ] = None,
    address: Address = "auto",
    mode: Annotated[
        str | None, typer.Option(help="spread (default): rungs in parallel, one run; each: the plan on every node.")
    ] = None,
    nodes: Nodes = None,
    out: Annotated[Path | None, typer.Option(help="Output directory (default runs/<timestamp>-<plan>-fleet).")] = None,
    resume: Annotated[
        Path | None, typer.Option(help="Continue OUT: run again only the cells that did not end ok.")
    ] = None,
    trials: Annotated[int | None, typer.Option(min=1, help="Requests per workload per rung (plan default 3).")] = None,
    rung: Annotated[
        list[str] | None, typer.Option(help="Only these rungs (repeatable); the first is the baseline.")
    ] = None,
    cell_timeout: Annotated[
        float, typer.Option(min=1, help="Seconds one rung may take on a node before it is cancelled.")
    ] = 3600,
    models_dir: DriverModels = None,
) -> None:
    """Climb a plan on a Ray cluster: rungs spread over the devices, or the whole plan on each node."""
    from llm_ladder.fleet import climb as fleet
    from llm_ladder.fleet.connect import alive_nodes, connect, select
    from llm_ladder.outputs.summary import to_table

    if mode not in (None, "spread", "each"):
        fail(f"--mode {mode}: choose spread or each")
    try:
        if resume:
            given = load_plan(plan).select(rung, trials) if plan or rung or trials else None
            run, the_plan = fleet.resumed(resume, given, mode, nodes)
            path = resume
        else:
            the_plan = (load_plan(plan) if plan else machine_plan(None, models_dir)).select(rung, trials)
            path = out or default_run_dir(f"{the_plan.name}-fleet")
            fleet.check_new(path)
        connect(address)
        live = alive_nodes()
        if not resume:
            run = fleet.start(the_plan, select(live, nodes), path, mode or "spread", cell_timeout)  # type: ignore[arg-type]
    except (PlanError, ModelError, FleetError) as err:
        fail(str(err))
    interrupt_on_sigterm()
    console.print(f"fleet climb [bold]{the_plan.name}[/bold] ({run.mode}) → {path}")
    try:
        result = fleet.climb(the_plan, run, live, path, console.print, models_dir)
    except KeyboardInterrupt:
        console.print(f"[yellow]interrupted: cells cancelled, engines stopped, results so far in {path}[/yellow]")
        raise typer.Exit(130) from None
    except (ModelError, EngineError) as err:  # the driver's own finish (a baseline pass): cells are kept
        fail(f"{err}; the cells are in {path}/cells.jsonl")
    for name, summary in result.summaries.items():
        console.print(f"[bold]{name}[/bold]")
        console.print(to_table(summary))
    console.print((path / "fleet.md").read_text(), highlight=False, soft_wrap=True)
    missing = [f"{c.rung}@{c.node}" for c in result.cells if c.status != "ok"]
    if missing:
        fail(f"{len(missing)} cell(s) did not end ok: {', '.join(missing)}; --resume {path} runs them again", code=1)


@fleet_app.command("push")
def fleet_push(
    model: Annotated[str, typer.Argument(help="A model store name (ladder models list) to copy to every node.")],
    address: Address = "auto",
    nodes: Nodes = None,
    parallel: Annotated[
        int, typer.Option(min=1, max=4, help="Copies one node sends at once (the tree's fan-out).")
    ] = 2,
    timeout: Annotated[float, typer.Option(min=1, help="Seconds a node may take to receive it.")] = 1800,
    compile_cache: Annotated[
        bool,
        typer.Option(
            "--compile-cache",
            help="Also this machine's vLLM compile cache, to the nodes with the same vLLM, torch and CPU/GPU: "
            "their first start loads it instead of compiling.",
        ),
    ] = False,
    verify: Annotated[
        bool, typer.Option("--verify", help="Re-hash every file a node already has (default: sizes only).")
    ] = False,
    models_dir: ModelsDir = None,
) -> None:
    """Copy a model store entry to every node once, checked against its sha256 manifest on arrival."""
    from llm_ladder.fleet.compile_cache import push_compile_cache
    from llm_ladder.fleet.connect import alive_nodes, connect, select
    from llm_ladder.fleet.push import push_model

    interrupt_on_sigterm()
    try:
        connect(address)
        targets = select(alive_nodes(), nodes)
        reports = [push_model(model, ModelStore(models_dir), targets, parallel=parallel, timeout_s=timeout,
                              notify=console.print, full_check=verify)]  # fmt: skip
        if compile_cache:
            cached, _skipped = push_compile_cache(targets, parallel, timeout, console.print)
            reports += cached
    except (ModelError, FleetError) as err:
        fail(str(err))
    except KeyboardInterrupt:  # the push's actors are gone; a copy cut short stays in its .partial directory
        console.print("[yellow]interrupted: no node has a half copy under the model's name[/yellow]")
        raise typer.Exit(130) from None
    failed = set()
    for report in reports:
        kind = "model" if report is reports[0] else "compile cache"
        console.print(f"[bold]{kind} {report.model}[/bold] ({report.bytes / 1e6:.1f} MB)")
        for node in report.nodes:
            console.print(
                f"  {node.node:<20} {node.status:<8} {node.seconds:7.1f} s  {node.reason or ''}", highlight=False
            )
        failed |= {n.node for n in report.failed}
    if failed:
        fail(f"push failed on {', '.join(sorted(failed))}", code=1)
