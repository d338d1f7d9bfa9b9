"""`ladder serve` on the fake engine: the recommended rung, as measured, until Ctrl-C."""

import re
import signal
import subprocess
import sys
import time
from pathlib import Path

import psutil
import pytest
from typer.testing import CliRunner

from llm_ladder.cli.main import app
from llm_ladder.engines.process import free_port
from llm_ladder.ops.serve import choose
from llm_ladder.plan.schema import PlanError

from .test_climb import CLI_WITH_FAKE_ENGINE, _climb, _plan, interruptible


@pytest.fixture
def run(tmp_path, model_dir):
    rungs = [
        {"name": "base", "model": str(model_dir), "env": {"MY_TOKEN": "s3cret"}},
        {"name": "fast", "model": str(model_dir), "extra_args": ["--itl-ms", "1"]},
    ]
    out = tmp_path / "run"
    assert _climb(_plan(tmp_path, model_dir, rungs), "--out", out).exit_code == 0
    return out


def test_serve_starts_the_recommended_rung_as_measured_and_stops_on_ctrl_c(run, monkeypatch):
    port = free_port()
    proc = subprocess.Popen(
        [
            sys.executable,
            "-c",
            CLI_WITH_FAKE_ENGINE,
            "serve",
            str(run),
            "--port",
            str(port),
            "--out",
            str(run / "serve"),
        ],
        cwd=Path(__file__).parents[2],
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
        text=True,
        env={**__import__("os").environ, "MY_TOKEN": "from-env", "COLUMNS": "200"},
        preexec_fn=interruptible,
    )
    lines = []
    deadline = time.monotonic() + 60
    while time.monotonic() < deadline and not any("check: ladder smoke" in x for x in lines):
        lines.append(proc.stdout.readline())
    text = "".join(lines)
    chosen = re.search(r"^(\w+): recommended by the climb", text, re.M).group(1)
    assert chosen == "fast"  # 1 ms between tokens against 5: the same answers, faster
    assert f"serving {chosen} as " in text and f"http://127.0.0.1:{port}/v1" in text and "curl " in text
    smoke = CliRunner().invoke(app, ["smoke", "--url", f"http://127.0.0.1:{port}"])
    assert smoke.exit_code == 0, smoke.output
    children = psutil.Process(proc.pid).children(recursive=True)
    log = next((run / "serve" / "logs").glob("*.log")).read_text()
    assert "--itl-ms 1" in log  # exactly the measured flags
    proc.send_signal(signal.SIGINT)
    rest, _ = proc.communicate(timeout=60)
    assert proc.returncode == 0, text + rest
    assert "server stopped" in rest
    assert not [c for c in children if c.is_running() and c.status() != psutil.STATUS_ZOMBIE]


def test_masked_secrets_come_from_the_environment(run, monkeypatch):
    monkeypatch.delenv("MY_TOKEN", raising=False)
    with pytest.raises(PlanError, match="needs MY_TOKEN in the environment"):
        choose(str(run), "base")
    monkeypatch.setenv("MY_TOKEN", "from-env")
    assert choose(str(run), "base").rung.env == {"MY_TOKEN": "from-env"}


def test_what_to_serve_errors_are_one_line(run, tmp_path, model_dir):
    with pytest.raises(PlanError, match="has no rung 'nope' \\(it has: base, fast\\)"):
        choose(str(run), "nope")
    plan = _plan(tmp_path, model_dir)
    with pytest.raises(PlanError, match="name a rung with --rung"):
        choose(str(plan), None)
    assert choose(str(plan), "spec").rung.speculative == {"method": "ngram"}
    result = CliRunner().invoke(app, ["serve", str(plan)])
    assert result.exit_code == 2 and "name a rung with --rung" in result.output
