from typer.testing import CliRunner

from llm_ladder.cli.main import app
from llm_ladder.engines.process import free_port
from llm_ladder.testing.mock_server import MockServer, Script


def test_smoke_passes_every_check_on_a_working_server():
    with MockServer(Script(ttft_ms=5, itl_ms=1, tokens=8, reply="Hello [bold]there[/bold]!")) as srv:
        result = CliRunner().invoke(app, ["smoke", "--url", srv.url])
        paths = {(r["max_tokens"], "messages" in r, bool(r.get("stream"))) for r in srv.state.requests}
    assert result.exit_code == 0, result.output
    lines = [line for line in result.output.splitlines() if line.startswith(("PASS", "FAIL"))]
    assert [line.split()[0] for line in lines] == ["PASS"] * 5
    assert "serves 'mock'" in result.output and "8 tokens, first after" in result.output
    assert "[bold]there[/bold]" in result.output  # model text printed as text, not as markup
    assert paths == {(32, True, False), (32, True, True), (8, False, False)}
    assert "all 5 checks passed" in result.output


def test_smoke_names_each_failure_and_exits_1():
    with MockServer(Script(fail_status=503)) as srv:
        result = CliRunner().invoke(app, ["smoke", "--url", srv.url])
    assert result.exit_code == 1
    assert "PASS GET /health" in result.output and "PASS GET /v1/models" in result.output
    assert "FAIL POST /v1/chat/completions " in result.output and "503" in result.output
    assert "3 of 5 checks failed" in result.output


def test_smoke_against_nothing_fails_cleanly():
    result = CliRunner().invoke(app, ["smoke", "--url", f"http://127.0.0.1:{free_port()}"])
    assert result.exit_code == 1 and "5 of 5 checks failed" in result.output
    assert "Traceback" not in result.output
