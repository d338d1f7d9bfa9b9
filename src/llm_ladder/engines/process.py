"""A server subprocess in its own process group: start with a log file, wait for health, stop the whole tree."""

from __future__ import annotations

import os
import signal
import socket
import subprocess
import time
from collections.abc import Mapping, Sequence
from contextlib import suppress
from pathlib import Path

import httpx
import psutil

from llm_ladder.engines import parent_guard
from llm_ladder.engines.base import EngineError, StopReport

LOG_TAIL_LINES = 40
FLEET_CELL = "LADDER_FLEET_CELL"
"""Set in a Ray worker that climbs a fleet cell: its engines run under the parent guard, without Ray's env."""
OFFLINE = {"HF_HUB_OFFLINE": "1", "TRANSFORMERS_OFFLINE": "1", "VLLM_NO_USAGE_STATS": "1"}


def in_fleet_cell() -> bool:
    return os.environ.get(FLEET_CELL) == "1"


def engine_environment(extra: Mapping[str, str] | None = None) -> dict[str, str]:
    """This process's environment plus `extra` (the rung's env wins). In a fleet cell, less what Ray set for its
    worker: `RAY_*` (vLLM's Ray backend would attach to the fleet's cluster) and `OMP_NUM_THREADS` (Ray sets it to
    the task's CPUs, 1, which would silently change a CPU rung); engines start offline, from the pushed model."""
    base = dict(os.environ)
    if in_fleet_cell():
        base = {k: v for k, v in base.items() if not k.startswith("RAY_") and k != "OMP_NUM_THREADS"}
        base = OFFLINE | base
    return base | dict(extra or {})


def free_port(host: str = "127.0.0.1") -> int:
    with socket.socket() as s:
        s.bind((host, 0))
        return s.getsockname()[1]


def port_in_use(port: int, host: str = "127.0.0.1") -> bool:
    with socket.socket() as s:
        return s.connect_ex((host, port)) == 0


def run_logged(cmd: Sequence[str], log: Path, env: Mapping[str, str] | None = None) -> int:
    """Run a batch command to completion with its output appended to `log` after a `# command` line; returns
    its exit code (negative: killed by that signal). Callers turn a failure into their own error."""
    with log.open("a") as out:
        out.write(f"# {' '.join(cmd)}\n")
        out.flush()
        return subprocess.run(
            list(cmd), stdout=out, stderr=subprocess.STDOUT, stdin=subprocess.DEVNULL, env=env
        ).returncode


def log_tail(path: Path, lines: int = LOG_TAIL_LINES) -> str:
    try:
        return "\n".join(path.read_text(errors="replace").splitlines()[-lines:])
    except FileNotFoundError:
        return ""


class ManagedProcess:
    """Owns one engine process group from spawn to verified stop."""

    def __init__(self, command: Sequence[str], log_path: Path, env: Mapping[str, str] | None = None) -> None:
        self.command = list(command)
        self.log_path = log_path
        log_path.parent.mkdir(parents=True, exist_ok=True)
        self._log = log_path.open("ab")
        self.guarded = in_fleet_cell()
        """Started under the parent guard, whose own process is not the engine's (memory, pids)."""
        self.proc = subprocess.Popen(
            parent_guard.command(self.command) if self.guarded else self.command,
            stdout=self._log,
            stderr=subprocess.STDOUT,
            stdin=subprocess.DEVNULL,
            env=engine_environment(env),
            start_new_session=True,  # own process group: one signal reaches the API server and its workers
        )
        self._seen: dict[int, psutil.Process] = {}
        self.tree()

    def tree(self) -> list[psutil.Process]:
        """The live processes of the engine; every pid ever seen is remembered for the leftover check."""
        try:
            root = psutil.Process(self.proc.pid)
            procs = [root, *root.children(recursive=True)]
        except psutil.NoSuchProcess:
            procs = []
        for p in procs:
            self._seen.setdefault(p.pid, p)
        return procs[1:] if self.guarded else procs

    @property
    def exit_code(self) -> int | None:
        """The engine's exit code, or None while it runs."""
        return self.proc.poll()

    def pids(self) -> list[int]:
        return [p.pid for p in self.tree()]

    def wait_healthy(self, url: str, timeout_s: float, poll_s: float = 0.5) -> float:
        """Poll `url` until 200; raise at once if the process exits. Returns seconds waited."""
        start = time.monotonic()
        with httpx.Client(timeout=2.0) as http:
            while (waited := time.monotonic() - start) < timeout_s:
                if (code := self.exit_code) is not None:
                    raise EngineError(f"engine exited with code {code} during startup", log_tail(self.log_path))
                try:
                    if http.get(url).status_code == 200:
                        return waited
                except httpx.HTTPError:
                    pass
                self.tree()
                time.sleep(poll_s)
        raise EngineError(f"engine not healthy after {timeout_s:.0f} s ({url})", log_tail(self.log_path))

    def _signal_group(self, sig: signal.Signals) -> None:
        with suppress(ProcessLookupError):
            os.killpg(self.proc.pid, sig)
        for p in self._seen.values():  # children that left the group (setsid) still belong to us
            with suppress(psutil.NoSuchProcess, psutil.AccessDenied):
                p.send_signal(sig)

    def stop(self, grace_s: float = 30.0) -> StopReport:
        """SIGTERM the group, SIGKILL after `grace_s`, then report any process still alive."""
        self.tree()
        graceful = True
        if self.proc.poll() is None or self._alive():
            self._signal_group(signal.SIGTERM)
            # zombies are dead already: where PID 1 does not reap orphans (containers), waiting on one would
            # last the whole grace period
            _, alive = psutil.wait_procs(self._alive(), timeout=grace_s)
            if alive:
                graceful = False
                self._signal_group(signal.SIGKILL)
                psutil.wait_procs(alive, timeout=10)
        with suppress(subprocess.TimeoutExpired):
            self.proc.wait(timeout=5)
        self._log.close()
        leftovers = [p.pid for p in self._alive()]
        detail = f"still running after SIGKILL: {leftovers}" if leftovers else ""
        return StopReport(graceful=graceful, leftover_pids=leftovers, memory_released=not leftovers, detail=detail)

    def _alive(self) -> list[psutil.Process]:
        alive = []
        for p in self._seen.values():
            try:
                if p.is_running() and p.status() != psutil.STATUS_ZOMBIE:
                    alive.append(p)
            except psutil.NoSuchProcess:
                pass
        return alive
