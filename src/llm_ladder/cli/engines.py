"""`ladder engines`: the engines this install knows (entry points), what each can measure, and llama.cpp's build."""

from __future__ import annotations

from typing import Annotated

import typer
from rich.table import Table

from llm_ladder.cli.common import app, console, fail
from llm_ladder.engines.base import EngineError, engine_class, engine_classes

engines_app = typer.Typer(no_args_is_help=True, help="Engines: which are installed, what they measure, llama.cpp.")
app.add_typer(engines_app, name="engines")


@engines_app.command("list")
def engines_list() -> None:
    """Every installed engine with its capabilities (a missing one is reported `n/a` in results, not failed)."""
    table = Table("engine", "prompt logprobs", "min_tokens", "token ids", "spec metrics", "from")
    for name, ep in sorted(engine_classes().items()):
        try:
            caps = engine_class(name).capabilities
        except Exception as err:  # a third-party engine that fails to import is shown, not fatal
            table.add_row(name, f"[red]does not load: {err}[/red]", "", "", "", ep.value)
            continue
        yes = {True: "yes", False: "no"}
        table.add_row(name, yes[caps.prompt_logprobs], yes[caps.min_tokens], yes[caps.token_ids],
                      caps.spec_metrics or "no", ep.value)  # fmt: skip
    console.print(table)


@engines_app.command("install")
def engines_install(
    engine: Annotated[str, typer.Argument(help="The engine to install: llama.cpp.")],
    jobs: Annotated[int | None, typer.Option(min=1, help="Parallel compile jobs (default: every CPU).")] = None,
) -> None:
    """Build llama.cpp's llama-server, llama-quantize and llama-perplexity for this CPU (pinned b11434)."""
    from llm_ladder.engines.llamacpp import find_binary, version
    from llm_ladder.engines.llamacpp_build import build

    if engine != "llama.cpp":
        fail(f"`ladder engines install` builds llama.cpp only; {engine!r} installs with pip (see the README)")
    try:
        bin_dir = build(console.print, jobs)
        console.print(f"{bin_dir}: {version(find_binary('llama-server', str(bin_dir / 'llama-server')))}")
    except EngineError as err:
        fail(f"{err}\n{err.log_tail}" if err.log_tail else str(err))
