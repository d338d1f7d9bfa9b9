"""`ladder plan auto`: the ladder this machine can climb, one line per rung on why it is in or out."""

from __future__ import annotations

from pathlib import Path
from typing import Annotated

import typer

from llm_ladder.cli.common import ModelsDir, app, console, fail
from llm_ladder.plan.loading import plan_yaml
from llm_ladder.plan.schema import Plan, PlanError

plan_app = typer.Typer(no_args_is_help=True, help="Plans: the ladder chosen for this machine.")
app.add_typer(plan_app, name="plan")


def machine_plan(model: str | None, models_dir: Path | None) -> Plan:
    """The auto plan for this host (what `ladder climb` uses without a plan)."""
    from llm_ladder.models.store import ModelStore
    from llm_ladder.plan.auto import auto_plan
    from llm_ladder.plan.hardware import detect

    return auto_plan(model, detect(), ModelStore(models_dir))


@plan_app.command("auto")
def plan_auto(
    model: Annotated[
        str | None, typer.Argument(help="A store name, local directory or hub id (default: SmolLM2).")
    ] = None,
    write: Annotated[Path | None, typer.Option(help="Also write the plan as YAML to this file.")] = None,
    models_dir: ModelsDir = None,
) -> None:
    """Print the ladder this machine can climb and why each rung was chosen or left out."""
    try:
        plan = machine_plan(model, models_dir)
    except PlanError as err:
        fail(str(err))
    assert plan.selection is not None
    console.print(f"[bold]{plan.name}[/bold] — {plan.selection.hardware}", highlight=False, soft_wrap=True)
    for choice in plan.selection.choices:
        mark = "[green]+[/green]" if choice.included else "[dim]-[/dim]"
        console.print(f"{mark} {choice.rung}: {choice.reason}", highlight=False, soft_wrap=True)
    if write:
        write.write_text(plan_yaml(plan))
        console.print(f"written: {write} (climb it with `ladder climb {write}`)")
