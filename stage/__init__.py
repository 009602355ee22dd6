"""A local stand-in of the CivicForge ECS deployment (moto + a scheduler + the stand-in app).

Test and demo infrastructure only: nothing in plugins/, contracts/ or smoke/ imports it.
"""

from __future__ import annotations

from stage.deployment import Stage, StageOptions
from stage.scheduler import StageError

__all__ = ["Stage", "StageError", "StageOptions"]
