"""The node's side of `ladder fleet push`: a `Depot` Ray actor holds the node's model store, serves the chunks it
holds to its children in the tree and pulls its own copy from its parent, verified before it is renamed into place
(push.py is the driver's side)."""

from __future__ import annotations

import hashlib
import math
import shutil
import threading
import time
from collections import Counter, deque
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from functools import cache
from pathlib import Path
from typing import Any

from llm_ladder.fleet import require_ray
from llm_ladder.fleet.fanout import CHUNK_BYTES
from llm_ladder.fleet.manifest import MANIFEST_FILE, Manifest, read_manifest, verify, write_manifest
from llm_ladder.models.store import COMPLETE_MARKER, store_dir

ABSENT = "absent"
MAX_PARALLEL = 4
DEPOT_THREADS = MAX_PARALLEL * 3 + 4
"""Enough for MAX_PARALLEL children's PREFETCH chunk requests each, with threads left for inspect and abandon."""
PREFETCH = 3
"""Chunk requests a node keeps in flight, so the next chunk travels while this one is written."""
STALL_S = 60.0
"""How long a node waits for one chunk before it gives up on its parent and asks for another."""
POLL_S = 0.5


class ParentLost(RuntimeError):
    """The parent could not deliver (dead, stalled, its copy failed, or its bytes did not match): try another."""


@dataclass
class _Incoming:
    manifest: Manifest
    held: Counter[str] = field(default_factory=Counter)


def node_root(root: str | None) -> Path:
    """A Depot's directory on its node: a path, the node's model store (None), or its vLLM compile cache."""
    from llm_ladder.fleet.compile_cache import TARGET, compile_cache_dir

    return compile_cache_dir() if root == TARGET else store_dir(root)


class Depot:
    """A node's model store as a Ray actor: says what it has, receives a copy, and serves the chunks it holds."""

    def __init__(self, root: str | None = None) -> None:
        self.root = node_root(root)
        self._cond = threading.Condition()
        self._ready: dict[str, Manifest] = {}
        self._incoming: dict[str, _Incoming] = {}
        self._failed: dict[str, str] = {}
        self._abandoned: set[tuple[str, int]] = set()

    def inspect(self, name: str, manifest_sha: str, full: bool = False) -> list[str]:
        """What is wrong with this node's entry for that manifest: [] when it has it, ["absent"], or problems."""
        entry = self.root / name
        if not entry.is_dir():
            return [ABSENT]
        if not (entry / COMPLETE_MARKER).exists():
            return [f"incomplete entry (no {COMPLETE_MARKER})"]
        manifest = read_manifest(entry)
        if manifest is None:
            return [f"no valid {MANIFEST_FILE}"]
        if manifest.sha256 != manifest_sha:
            return [f"another version (manifest {manifest.sha256[:12]})"]
        problems = verify(entry, manifest, full=full)
        if not problems:
            with self._cond:
                self._ready[name] = manifest
        return problems

    def have(self, name: str, manifest_sha: str) -> bool:
        return not self.inspect(name, manifest_sha)

    def serve(self, name: str, manifest_sha: str, relpath: str, index: int, wait_s: float = STALL_S) -> bytes:
        """Chunk `index` of a file, waiting (up to wait_s) until this node holds it: its own copy may be arriving."""
        deadline = time.monotonic() + wait_s
        with self._cond:
            while (path := self._chunk_path(name, manifest_sha, relpath, index)) is None:
                if name in self._failed:
                    raise ParentLost(f"its own copy failed: {self._failed[name]}")
                if (left := deadline - time.monotonic()) <= 0:
                    raise ParentLost(f"chunk {index} of {relpath} not there after {wait_s:.0f} s")
                self._cond.wait(left)
            f = path.open("rb")
        with f:
            f.seek(index * CHUNK_BYTES)
            return f.read(CHUNK_BYTES)

    def _chunk_path(self, name: str, sha: str, relpath: str, index: int) -> Path | None:
        ready = self._ready.get(name)
        if ready is not None and ready.sha256 == sha and relpath in ready.files:
            return self.root / name / relpath
        incoming = self._incoming.get(name)
        if incoming is None or incoming.manifest.sha256 != sha or relpath not in incoming.manifest.files:
            return None
        end = min(incoming.manifest.files[relpath].size, (index + 1) * CHUNK_BYTES)
        return self._partial(name) / relpath if incoming.held[relpath] >= end else None

    def _partial(self, name: str) -> Path:
        return self.root / f".{name}.partial"

    def abandon(self, name: str, attempt: int) -> None:
        """The driver saw this fetch's parent fail: stop waiting for it (a chunk on a dead node can hang a get)."""
        with self._cond:
            self._abandoned.add((name, attempt))

    def fetch(
        self, name: str, manifest: dict[str, Any], parent: Any, stall_s: float = STALL_S, attempt: int = 0
    ) -> dict[str, Any]:
        """Copy the entry from `parent` (a Depot handle) into place; returns {ok, bytes, seconds, reason,
        parent_lost}. Problems come back as values, so the driver can tell a bad parent from a bad node."""
        start, wanted = time.monotonic(), Manifest.model_validate(manifest)
        puller = _Puller(parent, name, wanted.sha256, stall_s, lambda: (name, attempt) in self._abandoned)
        partial = self._partial(name)
        with self._cond:
            self._ready.pop(name, None)
            self._failed.pop(name, None)
            self._incoming[name] = _Incoming(wanted)
        try:
            shutil.rmtree(partial, ignore_errors=True)
            partial.mkdir(parents=True)
            for relpath in sorted(wanted.files):
                self._pull_file(puller, name, wanted, relpath)
            if problems := verify(partial, wanted, full=True):
                raise OSError("; ".join(problems))
            write_manifest(partial, wanted)
            self._install(name, wanted)
        except ParentLost as err:
            return self._give_up(name, str(err), parent_lost=True)
        except Exception as err:
            return self._give_up(name, f"{type(err).__name__}: {err}", parent_lost=False)
        return {"ok": True, "bytes": wanted.total_bytes, "seconds": time.monotonic() - start}

    def _pull_file(self, puller: _Puller, name: str, manifest: Manifest, relpath: str) -> None:
        want = manifest.files[relpath]
        path = self._partial(name) / relpath
        path.parent.mkdir(parents=True, exist_ok=True)
        digest = hashlib.sha256()
        with path.open("wb") as f:
            for data in puller.chunks(relpath, want.size):
                f.write(data)
                f.flush()
                digest.update(data)
                with self._cond:
                    self._incoming[name].held[relpath] += len(data)
                    self._cond.notify_all()
        if digest.hexdigest() != want.sha256:
            raise ParentLost(f"{relpath}: the bytes from the parent do not match the manifest")

    def _install(self, name: str, manifest: Manifest) -> None:
        with self._cond:
            final = self.root / name
            shutil.rmtree(final, ignore_errors=True)
            self._partial(name).rename(final)
            self._incoming.pop(name, None)
            self._ready[name] = manifest
            self._cond.notify_all()

    def _give_up(self, name: str, reason: str, parent_lost: bool) -> dict[str, Any]:
        with self._cond:
            self._incoming.pop(name, None)
            self._failed[name] = reason
            self._cond.notify_all()
        shutil.rmtree(self._partial(name), ignore_errors=True)
        return {"ok": False, "reason": reason, "parent_lost": parent_lost}


@dataclass
class _Puller:
    """A fetch's side of the wire: a file's chunks from the parent in order, PREFETCH requests in flight; a chunk
    that does not come (parent dead, stalled, or given up on by the driver) is ParentLost."""

    parent: Any
    name: str
    sha: str
    stall_s: float
    abandoned: Callable[[], bool]

    def chunks(self, relpath: str, size: int) -> Iterator[bytes]:
        count = math.ceil(size / CHUNK_BYTES)
        pending: deque[Any] = deque()
        for index in range(count):
            while index + len(pending) < count and len(pending) < PREFETCH:
                pending.append(
                    self.parent.serve.remote(self.name, self.sha, relpath, index + len(pending), self.stall_s)
                )
            yield self._get(pending.popleft())

    def _get(self, ref: Any) -> bytes:
        ray = require_ray()
        deadline = time.monotonic() + self.stall_s + 30  # the parent's serve itself waits up to stall_s
        while True:
            try:
                if ray.wait([ref], timeout=POLL_S)[0]:
                    return ray.get(ref)
            except ray.exceptions.RayError as err:
                raise ParentLost(describe(err)) from None
            if self.abandoned():
                raise ParentLost("the parent failed")
            if time.monotonic() > deadline:
                raise ParentLost(f"no chunk from the parent in {self.stall_s + 30:.0f} s")


@cache
def _depot_actor() -> Any:
    return require_ray().remote(Depot)


def spawn_depot(node_id: str, root: str | None = None) -> Any:
    """A Depot pinned to the node (hard affinity: a dead node fails it rather than moving it elsewhere)."""
    from ray.util.scheduling_strategies import NodeAffinitySchedulingStrategy

    pin = NodeAffinitySchedulingStrategy(node_id, soft=False)
    options = {"num_cpus": 0, "max_concurrency": DEPOT_THREADS, "max_restarts": 0, "scheduling_strategy": pin}
    return _depot_actor().options(**options).remote(root)


def describe(err: BaseException) -> str:
    """One line for a report: the cause inside a Ray error, without its traceback."""
    cause = getattr(err, "cause", None)
    if isinstance(cause, BaseException) and not isinstance(cause, type(err)):
        err = cause
    text = " ".join(ln.strip() for ln in str(err).splitlines() if ln.strip() and not ln[0].isspace())
    return f"{type(err).__name__}: {text}"[:200]
