"""A real `ladder tune` on vLLM's CPU build: 3 trials over max_num_seqs and n-gram speculative tokens, on int4."""

import json
import subprocess
import sys

import yaml

from llm_ladder.cli.plan import machine_plan
from llm_ladder.plan.loading import load_plan

from .test_climb_cpu import _engine_processes, quick_plan


def test_tune_on_vllm_cpu(tmp_path):
    plan = machine_plan(None, None)
    rungs = [r.model_dump(exclude_defaults=True) | {"enforce_eager": True}
             for r in plan.rungs if r.name in (plan.baseline.name, "int4")]  # fmt: skip
    path = quick_plan(tmp_path, "smollm2-tune-e2e", rungs, {"max_tokens": 48})
    space = tmp_path / "space.yaml"
    space.write_text(yaml.safe_dump({
        "base_rungs": ["int4"],
        "speculative": [None, {"method": "ngram", "num_speculative_tokens": [2, 4], "prompt_lookup_max": 4,
                               "prompt_lookup_min": 2}],
        "speed": {"max_num_seqs": [None, 8]},
        "confirm_top": 0,
    }))  # fmt: skip
    out, written = tmp_path / "run", tmp_path / "tuned.yaml"
    args = ["tune", str(path), "--space", str(space), "--budget-trials", "3", "--out", str(out)]
    proc = subprocess.run([sys.executable, "-m", "llm_ladder", *args, "--write-plan", str(written)],
                          capture_output=True, text=True, timeout=1200)  # fmt: skip
    assert proc.returncode == 0, proc.stdout[-3000:] + proc.stderr[-3000:]
    tune = json.loads((out / "tune.json").read_text())
    trials = tune["trials"]
    measured = [t for t in trials if t["measured"] and t["same_as"] is None]
    assert len(measured) == 3 and [t["seed_of"] for t in trials[:2]] == [plan.baseline.name, "int4"]
    for t in measured:
        assert t["measured"]["started"] and t["measured"]["values"], t
    int4 = trials[1]["quality"]
    assert int4["measured_in"] == 1 and int4["same_top"] > 0.5  # measured against the baseline's prompt logprobs
    winner = next(t for t in trials if t["number"] == tune["winner"])
    assert winner["feasible"] and winner["quality"]["accepted"]
    assert load_plan(written).rungs[-1].name == "tuned"
    assert _engine_processes(out) == []
