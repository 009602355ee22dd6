"""A local stand-in of the CivicForge ECS deployment (moto + a scheduler + the stand-in app).

Test and demo infrastructure only: nothing in plugins/, contracts/ or smoke/ imports it.
Names are loaded lazily: every stand-in task imports ``stage.standin`` and must not pay
for boto3 and moto at start-up.
"""

from __future__ import annotations

from typing import Any

__all__ = ["Stage", "StageError", "StageOptions"]


def __getattr__(name: str) -> Any:
    if name in ("Stage", "StageOptions"):
        from stage import deployment

        return getattr(deployment, name)
    if name == "StageError":
        from stage.errors import StageError

        return StageError
    raise AttributeError(f"module 'stage' has no attribute {name!r}")
