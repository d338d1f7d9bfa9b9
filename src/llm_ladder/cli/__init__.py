"""The `ladder` command: thin typer commands that parse, build a config and call the stage packages."""
