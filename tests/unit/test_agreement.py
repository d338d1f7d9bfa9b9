import math

import pytest

from llm_ladder.measure.metrics import wilson_interval
from llm_ladder.quality.agreement import Position, agreement, kl_divergence, parse_prompt_logprobs, perplexity


def _pos(actual, probs):
    return Position(
        actual=actual, actual_logprob=math.log(probs[actual]), top={t: math.log(p) for t, p in probs.items()}
    )


def test_identical_distributions_agree_perfectly():
    base = [_pos(1, {1: 0.6, 2: 0.3, 3: 0.1}), _pos(2, {1: 0.2, 2: 0.7, 3: 0.1})]
    a = agreement(base, base)
    assert a.mean_kl == 0 and a.same_top == 1 and a.perplexity_ratio == 1
    assert a.perplexity == pytest.approx(math.exp(-(math.log(0.6) + math.log(0.7)) / 2))


def test_kl_matches_the_exact_value_when_top_k_covers_the_vocabulary():
    p = {1: 0.5, 2: 0.3, 3: 0.2}
    q = {1: 0.4, 2: 0.4, 3: 0.2}
    exact = sum(p[t] * math.log(p[t] / q[t]) for t in p)
    assert kl_divergence(_pos(1, p), _pos(1, q)) == pytest.approx(exact)


def test_tail_bucket_carries_the_mass_outside_top_k():
    # top-2 of a larger vocabulary: the remaining 0.2 / 0.4 form the tail bucket
    base, rung = _pos(1, {1: 0.5, 2: 0.3}), _pos(1, {1: 0.3, 2: 0.3})
    expected = 0.5 * math.log(0.5 / 0.3) + 0 + 0.2 * math.log(0.2 / 0.4)
    assert kl_divergence(base, rung) == pytest.approx(expected)


def test_token_missing_from_rung_top_k_gets_its_k_th_logprob():
    base, rung = _pos(1, {1: 0.5, 2: 0.3}), _pos(1, {1: 0.5, 4: 0.1})
    q2 = 0.1  # the rung's smallest top-k probability bounds token 2 from above
    expected = 0.3 * math.log(0.3 / q2) + 0.2 * math.log(0.2 / (1 - 0.5 - q2))
    assert kl_divergence(base, rung) == pytest.approx(expected)


def test_different_top_token_lowers_same_top_share():
    base = [_pos(1, {1: 0.6, 2: 0.4}), _pos(1, {1: 0.6, 2: 0.4})]
    rung = [_pos(1, {1: 0.6, 2: 0.4}), _pos(1, {1: 0.4, 2: 0.6})]
    assert agreement(base, rung).same_top == 0.5


def test_different_token_sequences_are_refused():
    with pytest.raises(ValueError, match="different token sequences"):
        agreement([_pos(1, {1: 1.0})], [_pos(2, {2: 1.0})])


def test_parse_vllm_prompt_logprobs_keeps_actual_token_out_of_top_k():
    entries = [
        None,
        {"5": {"logprob": -0.1, "rank": 1}, "6": {"logprob": -2.5, "rank": 2}},
        {"5": {"logprob": -0.2, "rank": 1}, "6": {"logprob": -1.9, "rank": 2}, "9": {"logprob": -7.0, "rank": 40}},
    ]
    positions = parse_prompt_logprobs(entries, [3, 5, 9], k=2)
    assert [p.actual for p in positions] == [5, 9]
    assert positions[1].actual_logprob == -7.0 and set(positions[1].top) == {5, 6}
    assert perplexity(positions) == pytest.approx(math.exp((0.1 + 7.0) / 2))


def test_wilson_interval():
    lo, hi = wilson_interval(40, 40)
    assert hi == 1.0 and 0.9 < lo < 0.92
    lo, hi = wilson_interval(20, 40)
    assert lo == pytest.approx(0.352, abs=0.002) and hi == pytest.approx(0.648, abs=0.002)
    assert wilson_interval(0, 0) == (0.0, 1.0)


def test_eval_text_is_chunked_by_paragraph_within_the_limit(tmp_path):
    from llm_ladder.quality.agreement import EVAL_TEXT, eval_chunks

    chunks = eval_chunks(None, 2500)
    assert len(chunks) >= 4 and all(len(c) <= 2500 for c in chunks)
    assert "Lighthouse Keeper" in chunks[0] and "<!--" not in chunks[0]
    words = EVAL_TEXT.read_text().split("-->", 1)[1].split()
    assert " ".join(chunks).split() == words  # nothing lost or reordered
    own = tmp_path / "t.txt"
    own.write_text("one\n\ntwo\n\nthree")
    assert eval_chunks(own, 200) == ["one\n\ntwo\n\nthree"]


def test_positions_survive_a_round_trip(tmp_path):
    from llm_ladder.quality.agreement import load_positions, save_positions

    positions = [_pos(1, {1: 0.6, 2: 0.4}), _pos(2, {2: 0.9, 3: 0.1})]
    save_positions(tmp_path / "p.json", positions)
    assert load_positions(tmp_path / "p.json") == positions


def test_tied_top_tokens_break_the_same_way_fresh_and_read_back(tmp_path):
    from llm_ladder.quality.agreement import Position, load_positions, save_positions

    fresh = Position(7, -0.5, {9: -0.5, 7: -0.5, 3: -2.0})  # the server's rank order puts 9 first
    save_positions(tmp_path / "p.json", [fresh])
    (back,) = load_positions(tmp_path / "p.json")
    assert fresh.argmax == back.argmax == 7
