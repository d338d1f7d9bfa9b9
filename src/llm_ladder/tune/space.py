"""`ladder tune`'s search space: which plan rungs and knobs are searched, in two levels (YAML, like plans).

Output-affecting choices (the base rung: its checkpoint and quantization; `output` args such as the KV-cache dtype;
the speculative method) form the outer level, each combination measured for quality once. `speed` knobs are the
ones the engine declares speed-only (`Engine.speed_knobs`); an output knob placed there is an error, since a
quality cache keyed without it would vouch for output nobody measured.

Every value is a discrete choice: on vLLM CPU 0.32 a new max_num_seqs, max_num_batched_tokens or
VLLM_CPU_* value compiles cold (100–150 s on 2 cores), so a tune affords 5–20 trials, not a continuous search.
"""

from __future__ import annotations

import hashlib
import itertools
import json
from dataclasses import dataclass
from importlib import resources
from pathlib import Path
from typing import Any

from pydantic import ConfigDict, Field, ValidationError

from llm_ladder.engines.base import EngineError, engine_class
from llm_ladder.plan.loading import describe_error, read_yaml
from llm_ladder.plan.schema import SETTINGS_NOT_AFFECTING_OUTPUT, SPEC_METHODS, Plan, PlanError, Rung, Strict

Value = str | int | float | bool | None
"""What Optuna can store as a categorical choice."""


class SpaceError(PlanError):
    """A search space that cannot be used; the message names the file and the key."""


class SpecChoice(Strict):
    """Speculative decoding choices: one per `num_speculative_tokens` value, the other keys as vLLM takes them."""

    model_config = ConfigDict(extra="allow", frozen=True)
    method: str
    num_speculative_tokens: tuple[int, ...] = Field(min_length=1)

    def expand(self) -> list[dict[str, Any]]:
        if self.method not in SPEC_METHODS:
            raise ValueError(f"speculative.method must be one of {sorted(SPEC_METHODS)}, got {self.method!r}")
        extra = dict(self.model_extra or {})
        return [{"method": self.method, "num_speculative_tokens": k} | extra for k in self.num_speculative_tokens]


class Space(Strict):
    """A search space file."""

    engine: str | None = None
    """The engine this space is for; a plan on another engine is an error (knob names differ)."""
    base_rungs: tuple[str, ...] = ()
    """Plan rungs (without speculation) whose model and quantization are searched; empty: all of them."""
    output: dict[str, tuple[Value, ...]] = Field(default_factory=dict)
    """Engine args (or `env.NAME`) that can change the output, e.g. `kv_cache_dtype: [null, fp8]`; null: unset."""
    speculative: tuple[SpecChoice | None, ...] = (None,)
    """Speculation choices; null is none."""
    speed: dict[str, tuple[Value, ...]] = Field(default_factory=dict)
    """Speed-only knobs (the engine's `speed_knobs`), e.g. `max_num_seqs: [null, 8, 64]`."""
    spread_penalty: float = Field(default=1.0, ge=0)
    """A trial's score: median − this × 1.4826 × MAD of its repeats (decode tok/s), so a noisy config must beat
    a steady one by more than its noise."""
    confirm_top: int = Field(default=2, ge=0)
    """The best this many feasible configs are measured again on fresh servers before one is recommended."""
    seed: int = 0


SHIPPED = resources.files("llm_ladder.tune") / "spaces"


def shipped_space_name(engine: str, has_gpu: bool) -> str:
    """The default space for a plan's engine on this host."""
    if engine.startswith("vllm") or engine == "fake-vllm":
        return "vllm-gpu" if has_gpu else "vllm-cpu"
    return engine


def load_space(path: Path | None, engine: str, has_gpu: bool) -> tuple[Space, str]:
    """The space in `path`, else the shipped one for the engine; with its source for messages."""
    source = SHIPPED / f"{shipped_space_name(engine, has_gpu)}.yaml" if path is None else path
    if path is None and not source.is_file():
        raise SpaceError(f"no shipped search space for engine {engine!r}: pass --space FILE")
    if path is not None and not path.is_file():
        raise SpaceError(f"--space {path}: no such file")
    raw = read_yaml(Path(str(source)), SpaceError)
    if not isinstance(raw, dict):
        raise SpaceError(f"{source}: a search space must be a YAML mapping")
    try:
        return Space.model_validate(raw), str(source)
    except ValidationError as err:
        raise SpaceError(f"{source}: {describe_error(err)}") from None


@dataclass(frozen=True)
class Dimension:
    """One Optuna parameter: `base`, `speculative`, `output.<knob>` or `speed.<knob>`, and its choices."""

    name: str
    choices: tuple[Value, ...]

    @property
    def knob(self) -> str:
        return self.name.split(".", 1)[1]


def _spec_label(spec: dict[str, Any] | None) -> str:
    if spec is None:
        return "none"
    rest = {k: v for k, v in spec.items() if k not in ("method", "num_speculative_tokens")}
    tail = "-" + hashlib.sha256(json.dumps(rest, sort_keys=True).encode()).hexdigest()[:4] if rest else ""
    k = spec.get("num_speculative_tokens")
    return f"{spec['method']}{f'-k{k}' if k is not None else ''}{tail}"


def _knob_value(rung: Rung, knob: str) -> Value:
    return rung.env.get(knob[4:]) if knob.startswith("env.") else rung.args.get(knob)


def _add(choices: tuple[Value, ...], value: Value) -> tuple[Value, ...]:
    return choices if value in choices else (*choices, value)


@dataclass(frozen=True)
class SearchSpace:
    """A space resolved against a plan: the dimensions (plan rungs' own values added, so they can be seeds)."""

    plan: Plan
    space: Space
    dims: tuple[Dimension, ...]
    specs: dict[str, dict[str, Any] | None]

    @classmethod
    def resolve(cls, space: Space, plan: Plan, source: str = "space") -> SearchSpace:
        try:
            return cls._resolve(space, plan)
        except (ValueError, EngineError) as err:
            raise SpaceError(f"{source}: {err}") from None

    @classmethod
    def _resolve(cls, space: Space, plan: Plan) -> SearchSpace:
        engine = engine_class(plan.engine)
        if space.engine and space.engine != plan.engine and not plan.engine.startswith(space.engine):
            raise ValueError(f"engine: this space is for {space.engine!r}, the plan runs {plan.engine!r}")
        bases = [r for r in plan.rungs if r.speculative is None and plan.engine_of(r) == plan.engine]
        unknown = [n for n in space.base_rungs if n not in {r.name for r in bases}]
        if unknown:
            raise ValueError(f"base_rungs: {', '.join(unknown)} is not a plan rung without speculation")
        names = list(dict.fromkeys([plan.baseline.name, *(space.base_rungs or [r.name for r in bases])]))
        for knob in space.speed:
            if knob not in engine.speed_knobs:
                raise ValueError(
                    f"speed.{knob}: not a speed-only knob of {engine.name} (it may change the output: "
                    f"put it under `output`); speed-only: {', '.join(sorted(engine.speed_knobs))}"
                )
        for knob in space.output:
            if knob in SETTINGS_NOT_AFFECTING_OUTPUT or knob == "speculative":
                raise ValueError(f"output.{knob}: not an engine arg (speculation has its own `speculative` list)")
        for level, knobs in (("output", space.output), ("speed", space.speed)):
            for knob, values in knobs.items():
                for value in values if not knob.startswith("env.") else ():
                    try:
                        engine.validate_args({knob: value} if value is not None else {})
                    except EngineError as err:
                        raise ValueError(f"{level}.{err}") from None
        specs = {_spec_label(s): s for choice in space.speculative for s in (choice.expand() if choice else [None])}
        dims = {"base": tuple(names), "speculative": tuple(specs)}
        dims |= {f"output.{k}": v for k, v in space.output.items()} | {f"speed.{k}": v for k, v in space.speed.items()}
        both = sorted(set(space.output) & set(space.speed))
        if both:
            raise ValueError(f"{', '.join(both)}: under both `output` and `speed`; a knob belongs to one level")
        found = cls(plan, space, (Dimension("base", tuple(names)),), specs)
        for rung in found._seed_rungs():
            specs.setdefault(_spec_label(rung.speculative), rung.speculative)
            dims["speculative"] = _add(dims["speculative"], _spec_label(rung.speculative))
            for name in dims:
                if name.startswith(("output.", "speed.")):
                    dims[name] = _add(dims[name], _knob_value(rung, name.split(".", 1)[1]))
        return cls(plan, space, tuple(Dimension(n, tuple(c)) for n, c in dims.items()), specs)

    def _base_of(self, rung: Rung) -> Rung | None:
        return rung if rung.speculative is None else self.plan.without_speculation(rung)

    def _seed_rungs(self) -> list[Rung]:
        names = set(self.choices("base"))
        return [r for r in self.plan.rungs if (base := self._base_of(r)) is not None and base.name in names]

    def notes(self) -> list[str]:
        """Plan rungs the search cannot start from, and why (shown before the tune starts)."""
        return [
            f"plan rung {r.name} is not a seed: no rung without speculation serves its model with its settings "
            "(add one to the plan to search its speculation)"
            for r in self.plan.rungs
            if r.speculative is not None and self._base_of(r) is None
        ]

    def seeds(self) -> list[tuple[str, dict[str, Value]]]:
        """The plan's rungs as points of the space (plan rung name, params): the search starts from the ladder."""
        out = []
        for rung in self._seed_rungs():
            base = self._base_of(rung)
            assert base is not None
            params: dict[str, Value] = {"base": base.name, "speculative": _spec_label(rung.speculative)}
            params |= {d.name: _knob_value(rung, d.knob) for d in self.dims if d.name.startswith(("output.", "speed."))}
            out.append((rung.name, params))
        return out

    def choices(self, name: str) -> tuple[Value, ...]:
        return next((d.choices for d in self.dims if d.name == name), ())

    def every_point(self) -> list[dict[str, Value]]:
        return [
            dict(zip((d.name for d in self.dims), values, strict=True))
            for values in itertools.product(*(d.choices for d in self.dims))
        ]

    def size(self) -> int:
        n = 1
        for d in self.dims:
            n *= len(d.choices)
        return n

    def rung(self, params: dict[str, Value], name: str) -> Rung:
        """The rung a trial runs: its base plan rung with the trial's knobs (null: left unset) and speculation.
        EngineError if the engine rejects the args."""
        base = self.plan.rung(str(params["base"]))
        args, env = dict(base.args), dict(base.env)
        for key, value in params.items():
            if not key.startswith(("output.", "speed.")):
                continue
            knob = key.split(".", 1)[1]
            target, knob = (env, knob[4:]) if knob.startswith("env.") else (args, knob)
            if value is None:
                target.pop(knob, None)
            else:
                target[knob] = str(value) if target is env else value
        engine = engine_class(self.plan.engine_of(base))
        update = {
            "name": name,
            "args": engine.validate_args(args),
            "env": env,
            "speculative": self.specs[str(params["speculative"])],
        }
        return base.model_copy(update=update)

    def config(self, params: dict[str, Value]) -> dict[str, Any]:
        """The trial's rung as it runs, every engine arg filled with its default (unset and `false` are the same
        config), without its name; the config's error where the engine rejects it."""
        try:
            rung = self.rung(params, "trial")
        except EngineError as err:
            return {"error": str(err), "params": params}
        filled = engine_class(self.plan.engine_of(rung)).args(rung).model_dump()
        return rung.model_dump(exclude={"name", "served_name", "args"}) | {"args": filled}

    def quality_key(self, params: dict[str, Value]) -> str:
        """What decides a trial's output: its config without the engine's speed-only knobs (hashed)."""
        config = self.config(params)
        knobs = engine_class(self.plan.engine).speed_knobs
        config["args"] = {k: v for k, v in config.get("args", {}).items() if k not in knobs}
        config["env"] = {k: v for k, v in config.get("env", {}).items() if f"env.{k}" not in knobs}
        return hashlib.sha256(json.dumps(config, sort_keys=True, default=str).encode()).hexdigest()[:12]

    def reference(self, params: dict[str, Value]) -> dict[str, Value]:
        """The same config without speculation (greedy identity's reference)."""
        return params | {"speculative": "none"}
