"""Plans from files: a shipped plan's name or a YAML path, `defaults:` merged into rungs, and errors that name the
file, the line or the field."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import yaml
from pydantic import ValidationError

from llm_ladder.plan.schema import Plan, PlanError

PLANS_DIR = Path(__file__).parent / "shipped"
DEFAULT_PLAN = "smollm2-cpu"


def shipped_plans() -> dict[str, Path]:
    return {p.stem: p for p in sorted(PLANS_DIR.glob("*.yaml"))}


def resolve_plan_path(spec: str | Path | None) -> Path:
    """A plan is a YAML path or the name of a shipped plan; None means the embedded default."""
    spec = DEFAULT_PLAN if spec is None else spec
    path = Path(spec)
    if path.is_file():
        return path
    shipped = shipped_plans()
    if str(spec) in shipped:
        return shipped[str(spec)]
    raise PlanError(f"plan {str(spec)!r} is neither a file nor a shipped plan ({', '.join(shipped)})")


def _merge_defaults(raw: dict[str, Any]) -> dict[str, Any]:
    """`defaults:` holds rung fields shared by every rung; a rung's own value wins."""
    defaults = raw.pop("defaults", None) or {}
    if not isinstance(defaults, dict):
        raise PlanError("'defaults' must be a mapping of rung fields")
    rungs = raw.get("rungs")
    if isinstance(rungs, list):
        raw["rungs"] = [{**defaults, **r} if isinstance(r, dict) else r for r in rungs]
    return raw


def describe_error(err: ValidationError) -> str:
    first = err.errors()[0]
    where = ".".join(str(p) for p in first["loc"])
    msg = first["msg"].removeprefix("Value error, ")
    if first["type"] == "extra_forbidden":
        msg = "unknown key"
    more = f" (+{err.error_count() - 1} more)" if err.error_count() > 1 else ""
    return f"{where}: {msg}{more}" if where else f"{msg}{more}"


def parse_plan(raw: Any, source: str = "plan") -> Plan:
    if not isinstance(raw, dict):
        raise PlanError(f"{source}: a plan must be a YAML mapping, got {type(raw).__name__}")
    try:
        return Plan.model_validate(_merge_defaults(dict(raw)))
    except ValidationError as err:
        raise PlanError(f"{source}: {describe_error(err)}") from None


def load_plan(spec: str | Path | None = None) -> Plan:
    path = resolve_plan_path(spec)
    return parse_plan(read_yaml(path, PlanError), str(path))


def read_yaml(path: Path, error: type[ValueError]) -> Any:
    """Parse a YAML file; a syntax error becomes `error` with the file and line."""
    try:
        return yaml.safe_load(path.read_text())
    except yaml.YAMLError as err:
        mark = getattr(err, "problem_mark", None)
        where = f" line {mark.line + 1}" if mark else ""
        raise error(f"{path}:{where} malformed YAML: {getattr(err, 'problem', err)}") from None


def plan_yaml(plan: Plan) -> str:
    """The plan as YAML a user can edit and climb; the reasons ride along in `selection`."""
    raw = plan.model_dump(mode="json", exclude_defaults=True)
    return yaml.safe_dump(raw, sort_keys=False, allow_unicode=True, width=120)
