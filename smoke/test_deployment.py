"""The deployment itself: settled on the new release, as the runbook's "is it really done?"."""

from __future__ import annotations

import pytest

from ecs_verdict.preflight import RunState


@pytest.mark.readonly
@pytest.mark.deployment_check
def test_deployment_settled(smoke_preflight: RunState) -> None:
    """The new deployment is the only one, every task running and healthy, image as expected."""
    outcome = smoke_preflight.outcome
    if outcome is not None:
        evidence = "\n".join(f"  {line}" for line in outcome.evidence)
        pytest.fail(f"{outcome.message}\n{evidence}".rstrip(), pytrace=False)
