"""The vLLM adapter driven against the scripted fake engine (llm_ladder.testing.mock_server), not vLLM."""

import time

import psutil
import pytest

from llm_ladder.engines.base import EngineError, get_engine
from llm_ladder.engines.vllm import rung_args
from llm_ladder.plan.schema import Rung
from tests.conftest import FakeVllm


def test_rung_args_map_to_vllm_flags():
    rung = Rung(
        name="r",
        model="m",
        dtype="bfloat16",
        max_model_len=2048,
        max_num_batched_tokens=4096,
        enforce_eager=True,
        speculative={"method": "ngram", "num_speculative_tokens": 4},
        extra_args=["--seed", "1"],
    )
    args = rung_args(rung, "/models/m")
    assert args[:4] == ["--model", "/models/m", "--served-model-name", "m"]
    assert args[args.index("--max-num-batched-tokens") + 1] == "4096"
    assert args[args.index("--dtype") + 1] == "bfloat16" and "--enforce-eager" in args
    assert args[args.index("--speculative-config") + 1] == '{"method": "ngram", "num_speculative_tokens": 4}'
    assert args[-2:] == ["--seed", "1"]
    multi = Rung(
        name="r", model="m", tensor_parallel_size=4, pipeline_parallel_size=2, distributed_executor_backend="ray"
    )
    args = rung_args(multi, "m")
    assert (
        args[args.index("--tensor-parallel-size") + 1] == "4"
        and args[args.index("--pipeline-parallel-size") + 1] == "2"
    )
    assert args[args.index("--distributed-executor-backend") + 1] == "ray"


def test_start_records_command_log_and_stages_then_stops_cleanly(tmp_path):
    engine = get_engine("fake-vllm")
    server = engine.start(Rung(name="r", model="m"), "/models/m", tmp_path)
    pids = server.pids()
    assert pids and server.base_url.startswith("http://127.0.0.1:")
    assert server.log_path == tmp_path / "logs" / "r.log"
    assert server.log_path.read_text().startswith("# ")
    assert server.startup.weights_s == 0.25 and server.startup.compile_s == 1.5
    assert server.startup.total_s > 0
    report = engine.stop(server)
    assert report.graceful and report.leftover_pids == []
    assert not any(psutil.pid_exists(p) and psutil.Process(p).status() != psutil.STATUS_ZOMBIE for p in pids)


def test_early_exit_is_detected_without_waiting_for_the_timeout(tmp_path):
    rung = Rung(name="r", model="m", extra_args=["--exit-code", "3"], startup_timeout_s=120)
    t0 = time.monotonic()
    with pytest.raises(EngineError, match="exited with code 3") as err:
        FakeVllm().start(rung, "/models/m", tmp_path)
    assert time.monotonic() - t0 < 20
    assert "scripted startup failure" in err.value.log_tail


def test_verify_reports_missing_proof(tmp_path):
    engine = FakeVllm()
    rung = Rung(name="r", model="m", expect_log=["CPUWNA16LinearKernel"])
    server = engine.start(rung, "/models/m", tmp_path)
    try:
        assert engine.verify(rung, server) == ["log lacks /CPUWNA16LinearKernel/"]
    finally:
        engine.stop(server)


def test_unknown_engine_is_a_clear_error():
    with pytest.raises(EngineError, match="unknown engine 'nope'"):
        get_engine("nope")
