"""`ladder ui`: Open WebUI wired to an OpenAI-compatible endpoint, in local single-user mode — the workshop's
chat front end in one command. Open WebUI lives in a virtual environment of its own (`scripts/install-ui.sh`):
its exact pins clash with vLLM's."""

from __future__ import annotations

import os
import secrets
import shutil
import time
from collections.abc import Callable
from pathlib import Path

from llm_ladder.engines.process import ManagedProcess

CACHE = Path.home() / ".cache" / "llm-ladder"
WEBUI_VENV = Path(os.environ.get("LADDER_WEBUI_VENV") or CACHE / "webui-venv")
DATA_DIR = CACHE / "webui-data"
START_TIMEOUT_S = 600.0
"""Open WebUI's first start migrates its database and can take minutes on a small machine."""


class UiError(RuntimeError):
    pass


def find_webui(explicit: str | None = None) -> str:
    if explicit:
        if not Path(explicit).is_file():
            raise UiError(f"--webui {explicit}: no such file")
        return explicit
    for candidate in (os.environ.get("LADDER_WEBUI_BIN"), str(WEBUI_VENV / "bin" / "open-webui")):
        if candidate and Path(candidate).is_file():
            return candidate
    if found := shutil.which("open-webui"):
        return found
    raise UiError("Open WebUI is not installed: `bash scripts/install-ui.sh` (its own venv, several GB)")


def _secret_key(data_dir: Path) -> str:
    """Open WebUI signs its sessions with this; kept in its data directory so logins survive restarts."""
    path = data_dir / ".webui_secret_key"
    if not path.is_file():
        data_dir.mkdir(parents=True, exist_ok=True)
        path.write_text(secrets.token_hex(32))
        path.chmod(0o600)
    return path.read_text().strip()


def webui_env(url: str, api_key: str | None, data_dir: Path, model: str | None = None) -> dict[str, str]:
    """Wired to one OpenAI-compatible endpoint (its model preselected), no login, no Ollama, and nothing fetched
    from the internet."""
    return ({"DEFAULT_MODELS": model} if model else {}) | {
        "OPENAI_API_BASE_URL": f"{url.rstrip('/')}/v1",
        "OPENAI_API_KEY": api_key or "none",
        "WEBUI_AUTH": "False",
        "ENABLE_OLLAMA_API": "False",
        "DATA_DIR": str(data_dir),
        "ENABLE_PERSISTENT_CONFIG": "False",  # these settings win over what an earlier start saved
        # Open WebUI's default "native" function calling sends its built-in tools with every chat, and vLLM
        # refuses them unless started with --enable-auto-tool-choice and a tool-call parser
        "DEFAULT_MODEL_PARAMS": '{"function_calling": "legacy"}',
        "WEBUI_SECRET_KEY": _secret_key(data_dir),
        "OFFLINE_MODE": "True",
        "HF_HUB_OFFLINE": "1",
        "RAG_EMBEDDING_MODEL_AUTO_UPDATE": "False",
        "ENABLE_VERSION_UPDATE_CHECK": "False",
        "ANONYMIZED_TELEMETRY": "False",
        "DO_NOT_TRACK": "True",
        "SCARF_NO_ANALYTICS": "True",
    }


def run_ui(
    url: str,
    notify: Callable[[str], None],
    *,
    host: str = "127.0.0.1",
    port: int = 3000,
    api_key: str | None = None,
    model: str | None = None,
    webui: str | None = None,
    data_dir: Path = DATA_DIR,
    stop_when: Callable[[], bool] = lambda: False,
) -> int:
    """Start Open WebUI, wait until it answers, then until Ctrl-C (or `stop_when`); always stop it."""
    exe = find_webui(webui)
    log = data_dir / "open-webui.log"
    env = webui_env(url, api_key, data_dir, model)
    proc = ManagedProcess([exe, "serve", "--host", host, "--port", str(port)], log, env=env)
    try:
        notify(f"starting Open WebUI for {env['OPENAI_API_BASE_URL']} (log: {log})")
        proc.wait_healthy(f"http://{host}:{port}/health", START_TIMEOUT_S)
        notify(f"chat at http://{host}:{port} (no login; Ctrl-C stops it)")
        while proc.exit_code is None and not stop_when():
            time.sleep(0.5)
        return 0 if proc.exit_code is None else 1
    except KeyboardInterrupt:
        return 0
    finally:
        proc.stop(grace_s=15)
        notify("Open WebUI stopped")
