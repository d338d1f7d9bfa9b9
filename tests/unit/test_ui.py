import json
import sys

import pytest
from typer.testing import CliRunner

from llm_ladder.cli.main import app
from llm_ladder.engines.process import free_port
from llm_ladder.ops.ui import UiError, find_webui, run_ui
from llm_ladder.testing.mock_server import MockServer, Script

FAKE_WEBUI = """#!{python}
import json, os, sys, http.server
port = int(sys.argv[sys.argv.index("--port") + 1])
json.dump({{k: v for k, v in os.environ.items()}}, open(os.path.join(os.environ["DATA_DIR"], "env.json"), "w"))
class H(http.server.BaseHTTPRequestHandler):
    def do_GET(self):
        self.send_response(200); self.end_headers(); self.wfile.write(b'{{"status": true}}')
    def log_message(self, *a): pass
http.server.HTTPServer(("127.0.0.1", port), H).serve_forever()
"""


@pytest.fixture
def fake_webui(tmp_path):
    exe = tmp_path / "open-webui"
    exe.write_text(FAKE_WEBUI.format(python=sys.executable))
    exe.chmod(0o755)
    return exe


def test_open_webui_is_wired_to_the_endpoint_and_stopped(tmp_path, fake_webui):
    data, lines, port = tmp_path / "data", [], free_port()
    code = run_ui(
        "http://127.0.0.1:8000/", lines.append, port=port, api_key="sk-1", webui=str(fake_webui), data_dir=data,
        stop_when=lambda: True,
    )  # fmt: skip
    assert code == 0 and f"chat at http://127.0.0.1:{port} (no login; Ctrl-C stops it)" in lines
    env = json.loads((data / "env.json").read_text())
    assert env["OPENAI_API_BASE_URL"] == "http://127.0.0.1:8000/v1" and env["OPENAI_API_KEY"] == "sk-1"
    assert env["WEBUI_AUTH"] == "False" and env["ENABLE_OLLAMA_API"] == "False" and env["OFFLINE_MODE"] == "True"
    assert env["WEBUI_SECRET_KEY"] == (data / ".webui_secret_key").read_text()  # kept across restarts
    assert lines[-1] == "Open WebUI stopped"


def test_missing_open_webui_names_the_install_script(tmp_path, monkeypatch):
    monkeypatch.setattr("llm_ladder.ops.ui.WEBUI_VENV", tmp_path / "none")
    monkeypatch.setattr("llm_ladder.ops.ui.shutil.which", lambda name: None)
    monkeypatch.delenv("LADDER_WEBUI_BIN", raising=False)
    with pytest.raises(UiError, match=r"scripts/install-ui\.sh"):
        find_webui(None)


def test_ladder_ui_needs_a_live_endpoint_first():
    result = CliRunner().invoke(app, ["ui", "--url", f"http://127.0.0.1:{free_port()}"])
    assert result.exit_code == 2 and "does not answer as an OpenAI-compatible server" in result.output
    with MockServer(Script()) as srv:
        result = CliRunner().invoke(app, ["ui", "--url", srv.url, "--webui", "/nonexistent/open-webui"])
    assert "serves 'mock'" in result.output and result.exit_code == 2 and "no such file" in result.output
