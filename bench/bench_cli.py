"""What the climbing benchmarks share: their command line (`--run DIR` to print an earlier climb's table instead)
and the climb itself, run as `ladder climb` would run it."""

from __future__ import annotations

import argparse
import subprocess
import sys
from pathlib import Path


def run_dir(doc: str, default_out: str, plan: Path | None = None, make_plan=None) -> Path:
    """The run directory to tabulate: `--run DIR` as given, else a fresh climb into `--out` (of `make_plan(trials)`
    written there as plan.yaml when given, else of the plan `ladder plan auto` picks)."""
    args = argparse.ArgumentParser(description=doc, formatter_class=argparse.RawDescriptionHelpFormatter)
    args.add_argument("--run", type=Path, help="An existing run directory: print its table, climb nothing.")
    args.add_argument("--trials", type=int, default=3)
    args.add_argument("--out", type=Path, default=Path(default_out))
    opts = args.parse_args()
    if opts.run is not None:
        return opts.run
    cmd = [sys.executable, "-m", "llm_ladder", "climb", "--out", str(opts.out), "--trials", str(opts.trials)]
    if make_plan is not None:
        import yaml

        opts.out.mkdir(parents=True, exist_ok=True)
        (opts.out / "plan.yaml").write_text(yaml.safe_dump(make_plan(opts.trials), sort_keys=False))
        cmd.insert(4, str(opts.out / "plan.yaml"))
    subprocess.run(cmd, check=False)
    return opts.out
