"""The engine interface: start a rung as an OpenAI-compatible server, stop it, and say how startup went."""

from __future__ import annotations

from abc import ABC, abstractmethod
from dataclasses import dataclass, field
from functools import cache
from importlib import metadata
from pathlib import Path
from typing import TYPE_CHECKING, Any, ClassVar

from pydantic import BaseModel, ConfigDict, ValidationError

from llm_ladder.plan.schema import Rung

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
    notes: list[str] = []
    """What happened on the way up that a reader should know (a retry with other settings)."""


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


class Capabilities(BaseModel):
    """What an engine's server can do beyond the OpenAI API; code that needs one asks, and reports `n/a (why)`
    when it is missing, never a failure."""

    model_config = ConfigDict(frozen=True)

    prompt_logprobs: bool = False
    """Logprobs of the prompt's tokens (vLLM's `prompt_logprobs`): agreement over the HTTP API."""
    min_tokens: bool = False
    """A floor on output length (vLLM's `min_tokens`); without it long workloads use `ignore_eos`."""
    token_ids: bool = False
    """Token ids of each answer (`return_token_ids`): greedy identity token for token, else by text."""
    batch_invariant: bool = True
    """Greedy answers do not depend on which other requests share the batch. Where they do (llama.cpp on CPU: 16
    of 30 answers changed between two identical runs with 8 in flight, none one at a time), task suites are
    answered one at a time, so accuracy and greedy identity compare rungs, not batch luck."""
    spec_metrics: str | None = None
    """Prefix of the speculative-decoding counters in /metrics (`vllm:`), None without."""
    startup_stages: tuple[str, ...] = ()
    """StartupStages fields the engine's log reports."""


class EngineArgs(BaseModel):
    """Engine-specific rung settings; each engine subclasses it with its own fields."""

    model_config = ConfigDict(extra="forbid", frozen=True)


class Engine(ABC):
    """One class per engine kind, found by name through the `llm_ladder.engines` entry point group."""

    name: ClassVar[str]
    capabilities: ClassVar[Capabilities] = Capabilities()
    Args: ClassVar[type[EngineArgs]] = EngineArgs
    speed_knobs: ClassVar[frozenset[str]] = frozenset()
    """Settings that change only how fast the same output comes (batch shape, threads, memory): `ladder tune`
    searches them inside one quality measurement. Args by name, environment variables as `env.NAME`; anything
    not listed is taken to change the output."""

    @classmethod
    def validate_args(cls, args: dict[str, Any]) -> dict[str, Any]:
        """The rung's engine args, checked and normalized (unset keys left out); EngineError names the bad key."""
        try:
            return cls.Args.model_validate(args).model_dump(exclude_unset=True)
        except ValidationError as err:
            first = err.errors()[0]
            where = ".".join(str(p) for p in first["loc"])
            msg = "unknown key" if first["type"] == "extra_forbidden" else first["msg"].removeprefix("Value error, ")
            raise EngineError(f"{where}: {msg} for engine {cls.name!r}") from None

    @classmethod
    def args(cls, rung: Rung) -> Any:
        """The rung's args as this engine's typed `Args`."""
        return cls.Args.model_validate(rung.args)

    def prepare(self, rung: Rung, notify: Any = print) -> Rung:
        """The rung (its model already resolved to a path) with whatever the engine must make first, made now,
        before any server starts: GGUF files for llama.cpp; nothing for vLLM."""
        return rung

    def offline_agreement(self, rung: Rung, baseline_model: str, text: Path, work_dir: Path) -> Any:
        """Agreement with the baseline model measured without the server (engines with no prompt logprobs);
        None where the HTTP path is used."""
        return None

    def reference_logits(self, work_dir: Path, k: int) -> Any:
        """The `ReferenceLogits` this engine's offline agreement compared rungs with in `work_dir` (top k per
        position), for checking them against the baseline's engine; None where it keeps none."""
        return None

    def describe_weights(self, rung: Rung) -> str | None:
        """What the served weights really are, where the rung's label does not say it all."""
        return None

    def request_extras(self, workload: Any) -> dict[str, Any]:
        """Fields this engine needs added to a chat request for `workload` (beyond the OpenAI API)."""
        return {}

    def quantizes_online(self, rung: Rung) -> bool:
        """Whether weights are quantized at load, so the checkpoint's size on disk is not the size in memory."""
        return False

    def kv_cache_bytes(self, rung: Rung, server: Server) -> float | None:
        """Bytes per KV-cache element the rung runs with, as its server says; None where it does not say."""
        return None

    def unverified(self, rung: Rung) -> list[str]:
        """What `verify` could not check for this rung, each with why (recorded as `n/a`, never passed over)."""
        return []

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


ENTRY_POINTS = "llm_ladder.engines"


@cache
def engine_classes() -> dict[str, metadata.EntryPoint]:
    """Installed engines by name: this package's and any other package's `llm_ladder.engines` entry points."""
    return {ep.name: ep for ep in metadata.entry_points(group=ENTRY_POINTS)}


def engine_class(name: str) -> type[Engine]:
    """The installed engine called `name`; EngineError lists the installed ones."""
    found = engine_classes()
    if name not in found:
        known = ", ".join(sorted(found)) or "none: reinstall llm-ladder (scripts/install.sh)"
        raise EngineError(f"unknown engine {name!r} (known: {known})")
    return found[name].load()


def get_engine(name: str, **kwargs: object) -> Engine:
    """An instance of the engine called `name` (kwargs: host, port, ...)."""
    return engine_class(name)(**kwargs)


class EngineSet:
    """The engines one climb uses, made on first use from the plan's and the rungs' `engine` names with the same
    options (port, host); an engine instance given up front serves the plan's default name."""

    def __init__(self, default: str | Engine, **options: object) -> None:
        self.options = options
        self.made: dict[str, Engine] = {}
        if isinstance(default, Engine):
            self.made[default.name] = default
            self.default = default.name
        else:
            self.default = default

    def get(self, name: str | None = None) -> Engine:
        """The engine called `name` (default: the plan's), made and preflighted on first use."""
        name = name or self.default
        if name not in self.made:
            engine = get_engine(name, **self.options)
            engine.preflight()
            self.made[name] = engine
        return self.made[name]
