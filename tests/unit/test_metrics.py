import pytest

from llm_ladder.measure.client import RequestRecord
from llm_ladder.measure.metrics import SpecStats, Spread, parse_spec_counters, percentile, repetition_ratio, summarize


def test_percentile_interpolates_like_numpy():
    assert percentile([1, 2, 3, 4], 50) == 2.5
    assert percentile([10], 95) == 10
    assert percentile([1, 2, 3, 4, 5], 95) == pytest.approx(4.8)
    assert percentile([], 50) is None


def test_spread_ignores_missing_values():
    s = Spread.of([3.0, None, 1.0, 2.0])
    assert (s.median, s.min, s.max, s.n) == (2.0, 1.0, 3.0, 3)
    assert Spread.of([None]) is None


def test_decode_tps_excludes_the_first_token():
    r = RequestRecord(workload="w", trial=0, ttft_s=0.5, e2e_s=2.5, completion_tokens=41)
    assert r.decode_tps == pytest.approx(40 / 2.0)
    assert r.e2e_tps == pytest.approx(41 / 2.5)
    assert RequestRecord(workload="w", trial=0, ttft_s=0.5, e2e_s=0.5, completion_tokens=1).decode_tps is None


def test_repetition_ratio_tells_loops_from_prose():
    prose = "The quick brown fox jumps over the lazy dog while the sun sets behind distant hills."
    loop = "I am a robot. " * 40
    assert repetition_ratio(prose) == 0
    assert repetition_ratio(loop) > 0.9
    assert repetition_ratio("too short") == 0


def test_summarize_counts_errors_and_flags_degenerate_text():
    ok = RequestRecord(
        workload="w",
        trial=0,
        ttft_s=0.1,
        e2e_s=1.1,
        completion_tokens=11,
        itl_s=[0.1] * 10,
        text="loop " * 100,
    )
    bad = RequestRecord(workload="w", trial=1, ok=False, error="boom")
    stats = summarize([ok, bad])
    assert stats.requests == 2 and stats.errors == 1
    assert stats.decode_tps.median == pytest.approx(10.0)
    assert stats.itl_p50_ms == pytest.approx(100.0)
    assert stats.degenerate


METRICS = """
# HELP vllm:spec_decode_num_drafts_total Number of spec decoding drafts.
# TYPE vllm:spec_decode_num_drafts_total counter
vllm:spec_decode_num_drafts_total{engine="0",model_name="m"} 100.0
# TYPE vllm:spec_decode_num_draft_tokens_total counter
vllm:spec_decode_num_draft_tokens_total{engine="0",model_name="m"} 400.0
# TYPE vllm:spec_decode_num_accepted_tokens_total counter
vllm:spec_decode_num_accepted_tokens_total{engine="0",model_name="m"} 150.0
# TYPE vllm:spec_decode_num_accepted_tokens_per_pos_total counter
vllm:spec_decode_num_accepted_tokens_per_pos_total{engine="0",model_name="m",position="0"} 80.0
# TYPE vllm:num_requests_running gauge
vllm:num_requests_running{engine="0"} 0.0
"""


def test_spec_counters_give_acceptance_rate_and_length():
    spec = parse_spec_counters(METRICS)
    assert (spec.drafts, spec.draft_tokens, spec.accepted_tokens) == (100, 400, 150)
    assert spec.acceptance_rate == pytest.approx(0.375)
    assert spec.mean_acceptance_length == pytest.approx(2.5)
    window = spec - SpecStats(drafts=50, draft_tokens=200, accepted_tokens=50)
    assert window.acceptance_rate == pytest.approx(0.5)
    assert parse_spec_counters("").acceptance_rate is None


def test_unreleased_memory_is_named():
    from llm_ladder.measure.telemetry import MemoryStats

    busy_host = MemoryStats(host_available_before_gib=20, host_available_after_gib=12, shm_left_gib=0.01)
    assert busy_host.unreleased(0.5) == ""  # other processes move host memory: recorded, not judged
    leak = MemoryStats(shm_left_gib=2, gpu_used_before_gib=1, gpu_used_after_gib=9)
    expected = "2.00 GiB of shared memory left in /dev/shm; GPU holds 8.00 GiB more than before"
    assert leak.unreleased(0.5) == expected
