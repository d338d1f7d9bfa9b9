"""`ladder doctor --fleet`: every node of the cluster, its devices and free memory, and the versions that differ
between nodes (another vLLM, torch or driver makes one node's numbers incomparable with the others')."""

from __future__ import annotations

from typing import Any

from llm_ladder.fleet.aggregate import node_versions, versions_differing
from llm_ladder.fleet.connect import NodeInfo, probe_nodes
from llm_ladder.ops.doctor import Check


def fleet_checks(nodes: list[NodeInfo], timeout_s: float = 60.0) -> list[Check]:
    """One check per node (a node that does not answer within `timeout_s` fails), then one for versions."""
    answers = probe_nodes(nodes, timeout_s)
    checks = [_node_check(n, answers[n.name]) for n in nodes]
    found = {n: node_versions(a) for n, a in answers.items() if isinstance(a, dict)}
    if differ := versions_differing(found):
        rows = "; ".join(f"{p}: " + ", ".join(f"{n} {v}" for n, v in by.items()) for p, by in differ.items())
        checks.append(Check(name="versions", status="warn", message=f"{rows}: numbers across them do not compare"))
    elif found:
        same = ", ".join(f"{p} {v}" for p, v in sorted(next(iter(found.values())).items()))
        checks.append(Check(name="versions", status="ok", message=f"the same on every node: {same}"))
    return checks


def _node_check(node: NodeInfo, answer: dict[str, Any] | str) -> Check:
    name = f"node {node.name}"
    if isinstance(answer, str):
        return Check(name=name, status="fail", message=answer)
    gpus = ", ".join(f"GPU {g['index']} {g['name']} {g['free_gib']:.0f}/{g['total_gib']:.0f} GiB free"
                     for g in answer.get("gpus", []))  # fmt: skip
    message = (f"{node.devices} {node.kind} device(s); {answer.get('cpus')} CPUs, {answer['free_memory_gib']:.1f} "
               f"GiB free of {answer.get('memory_gib')}; {gpus or 'no GPU'}; CPU {_cpu(answer)}")  # fmt: skip
    return Check(name=name, status="ok", message=message.rstrip("; "))


def _cpu(answer: dict[str, Any]) -> str:
    cpu = answer.get("hardware", {}).get("cpu", {})
    return f"{cpu.get('model', '?')} ({cpu.get('isa', '?')})"
