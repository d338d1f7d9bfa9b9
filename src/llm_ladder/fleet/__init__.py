"""Stage 6, fleets: one plan across the machines of a Ray cluster (`ladder fleet`), and the model pushed to them.

Ray is an optional extra (`llm-ladder[fleet]`, plain `ray`): it is imported only inside this package, and a
missing install is one clear error.
"""

from __future__ import annotations

from types import ModuleType


class FleetError(RuntimeError):
    """A fleet command cannot go on: Ray missing, no cluster at the address, no node matches."""


def require_ray() -> ModuleType:
    try:
        import ray
    except ImportError:
        raise FleetError(
            "ladder fleet needs Ray: install llm-ladder[fleet] (bash scripts/install.sh cpu,fleet)"
        ) from None
    return ray
