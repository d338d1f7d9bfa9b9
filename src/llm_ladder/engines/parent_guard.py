"""`python -m llm_ladder.engines.parent_guard -- CMD…`: run CMD, and stop its whole process group when the parent dies.

An engine runs in its own process group (process.py) so that one signal stops the API server and its workers.
That also hides it from whoever started the climb: a Ray worker killed with its node, or force-cancelled, leaves
vLLM running, since Ray's cleanup kills the worker's group, not ours. The guard asks the kernel for SIGTERM when
its parent exits (PR_SET_PDEATHSIG, as Ray itself does for its own children) and passes it on to the group.
Ray kills a worker's direct children with SIGKILL when the worker exits (its node lost), which no handler sees,
so the engine asks for SIGTERM when the guard dies too: vLLM then stops its engine core itself.
It imports nothing heavy: it stays alive beside the engine, and `ManagedProcess` leaves it out of the memory.
"""

from __future__ import annotations

import ctypes
import os
import signal
import subprocess
import sys
import time

PR_SET_PDEATHSIG = 1
GRACE_S = 30.0


def command(cmd: list[str]) -> list[str]:
    """`cmd` under the guard, which is told this process's pid: a parent that died before the guard asked for
    its signal is noticed, whoever adopted the guard."""
    return [sys.executable, "-m", __name__, "--parent", str(os.getpid()), "--", *cmd]


def _sigterm_when_parent_dies() -> None:
    libc = ctypes.CDLL(None, use_errno=True)
    if libc.prctl(PR_SET_PDEATHSIG, signal.SIGTERM) != 0:
        raise OSError(ctypes.get_errno(), "prctl(PR_SET_PDEATHSIG) failed")


def _die_with_parent(parent: int) -> None:
    _sigterm_when_parent_dies()
    if os.getppid() != parent:  # the parent died before the request took effect
        os.kill(os.getpid(), signal.SIGTERM)


def main(argv: list[str]) -> int:
    parent = os.getppid()
    if argv[:1] == ["--parent"] and len(argv) > 1:
        parent, argv = int(argv[1]), argv[2:]
    if argv[:1] == ["--"]:
        argv = argv[1:]
    if not argv:
        print("usage: python -m llm_ladder.engines.parent_guard -- CMD [ARGS…]", file=sys.stderr)
        return 2
    stopped_at: float | None = None

    def stop(signum: int, frame: object) -> None:
        nonlocal stopped_at
        if stopped_at is None:
            stopped_at = time.monotonic()
            os.killpg(os.getpgrp(), signal.SIGTERM)  # reaches the guard too: a second call does nothing

    signal.signal(signal.SIGTERM, stop)
    _die_with_parent(parent)
    if stopped_at is not None:
        return 128 + signal.SIGTERM
    # in the guard's process group; preexec_fn is safe here: the guard has a single thread
    child = subprocess.Popen(argv, preexec_fn=_sigterm_when_parent_dies)
    while (code := child.poll()) is None:
        if stopped_at is not None and time.monotonic() - stopped_at > GRACE_S:
            os.killpg(os.getpgrp(), signal.SIGKILL)
        time.sleep(0.2)
    return code if code >= 0 else 128 - code


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
