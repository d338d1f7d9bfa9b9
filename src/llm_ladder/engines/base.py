"""The engine interface: start a rung as an OpenAI-compatible server, stop it, and say how startup went."""

from __future__ import annotations

from abc import ABC, abstractmethod
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, ClassVar

from pydantic import BaseModel

from llm_ladder.plan import Rung

if TYPE_CHECKING:
    from llm_ladder.engines.process import ManagedProcess


class EngineError(RuntimeError):
    """The engine could not start or serve; `log_tail` holds the end of its log when there is one."""

    def __init__(self, message: str, log_tail: str = "") -> None:
        super().__init__(message)
        self.log_tail = log_tail


class StartupStages(BaseModel):
    """Seconds spent in each startup stage, as the engine logged them; `total_s` is measured by us."""

    weights_s: float | None = None
    compile_s: float | None = None
    graph_capture_s: float | None = None
    engine_init_s: float | None = None
    total_s: float | None = None
    compile_cache: str = "n/a"
    """'cold' (compiled now), 'warm' (loaded from the compile cache), 'cache-failed' (a cache was there but
    vLLM could not load it and compiled again) or 'n/a' (eager mode / not logged)."""
    weights_gib: float | None = None


class StopReport(BaseModel):
    """What stopping left behind: a clean stop has no leftover processes and gave its memory back."""

    graceful: bool
    leftover_pids: list[int] = []
    memory_released: bool = True
    detail: str = ""


@dataclass
class Server:
    """A running engine serving one rung."""

    base_url: str
    model_name: str
    command: list[str]
    log_path: Path
    process: ManagedProcess = field(repr=False)
    startup: StartupStages = field(default_factory=StartupStages)

    def pids(self) -> list[int]:
        """Live process ids of the engine (its whole tree), for memory sampling."""
        return self.process.pids()


class Engine(ABC):
    """One class per engine kind, registered by name for the plan's `engine:` field."""

    registry: ClassVar[dict[str, type[Engine]]] = {}
    name: ClassVar[str]

    def __init_subclass__(cls, **kwargs: object) -> None:
        super().__init_subclass__(**kwargs)
        if getattr(cls, "name", None):
            Engine.registry[cls.name] = cls

    def preflight(self) -> None:
        """Check what can be checked before anything starts (ports, binaries); raise EngineError."""
        return None

    @abstractmethod
    def start(self, rung: Rung, model_path: str, run_dir: Path) -> Server:
        """Start serving `rung` (its model resolved to `model_path`); raise EngineError on failure."""

    @abstractmethod
    def stop(self, server: Server) -> StopReport:
        """Stop the server and check that nothing is left behind."""

    @abstractmethod
    def verify(self, rung: Rung, server: Server) -> list[str]:
        """Problems showing the rung does not run as labelled (quantization, speculation); empty if fine."""


def get_engine(name: str, **kwargs: object) -> Engine:
    try:
        cls = Engine.registry[name]
    except KeyError:
        raise EngineError(f"unknown engine {name!r} (known: {', '.join(sorted(Engine.registry))})") from None
    return cls(**kwargs)
