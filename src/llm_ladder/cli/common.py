"""What every `ladder` command shares: the app, the console, option types, and how to fail."""

from __future__ import annotations

import signal
from pathlib import Path
from typing import Annotated

import typer
from rich.console import Console
from rich.markup import escape

app = typer.Typer(
    add_completion=False,
    no_args_is_help=True,
    help="Climb the quality-first LLM optimization ladder on a real vLLM engine and compare every rung.",
)
models_app = typer.Typer(no_args_is_help=True, help="The local model store.")
app.add_typer(models_app, name="models")
console = Console()

ModelsDir = Annotated[
    Path | None,
    typer.Option("--models-dir", help="Model store (default $LADDER_MODELS_DIR or ~/.cache/llm-ladder/models)."),
]


Url = Annotated[str, typer.Option(help="Base URL of an OpenAI-compatible server, e.g. http://127.0.0.1:8000.")]
ServedModel = Annotated[str | None, typer.Option(help="Model name (default: the first one the server lists).")]
ApiKey = Annotated[
    str | None,
    typer.Option(envvar="OPENAI_API_KEY", show_default=False, help="Bearer token, if the server wants one."),
]


RunOrPlan = Annotated[
    str | None, typer.Argument(help="A run directory (its recommended rung), or a plan file or shipped plan name.")
]
RungName = Annotated[str | None, typer.Option(help="This rung instead of the recommended one.")]
Host = Annotated[str, typer.Option(help="Address to listen on; 0.0.0.0 for other machines.")]


def fail(message: str, code: int = 2) -> None:
    # the message is plain text: brackets in it (llm-ladder[fleet], a path) are not rich markup
    console.print(f"[red]error:[/red] {escape(message)}", highlight=False, soft_wrap=True)
    raise typer.Exit(code)


def interrupt_on_sigterm() -> None:
    """SIGTERM (kill, a CI timeout) takes the Ctrl-C path: servers stopped, results kept."""

    def handler(signum: int, frame: object) -> None:
        raise KeyboardInterrupt

    signal.signal(signal.SIGTERM, handler)


def report_or_reason(run_path: Path) -> str:
    """Write report.html; a failure to draw it is reported, and costs no measurement (all are on disk)."""
    from llm_ladder.outputs.report import write_report

    try:
        return str(write_report(run_path))
    except Exception as err:  # the results are written already; the report can be made again with `ladder report`
        return f"no report.html ({type(err).__name__}: {err})"
