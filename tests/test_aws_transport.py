"""AWS answering nothing for a while (resets, read timeouts) is polled through inside the wait.

Real boto3 against the shared healthy stage's moto, through ``FaultyEndpoint``: a loopback relay
that resets or stalls chosen requests. botocore makes two attempts per call here, so a call
fails (and costs the wait one poll) when two requests in a row fail. Only a failure that lasts
until the deadline is AWS's could-not-verify, with the last error named; an endpoint that never
answered at all says so after a second poll, not at the deadline.
"""

from __future__ import annotations

from typing import Any

import pytest

from ecs_verdict.aws import make_clients
from ecs_verdict.errors import CouldNotVerify
from ecs_verdict.stability import MAX_POLLS_NEVER_ANSWERED, wait_until_stable
from stage import Stage
from tests.conftest import StagePlan, on_shared_stage
from tests.faulty_endpoint import Fault, FaultyEndpoint

ATTEMPTS = 2  # botocore's own attempts per call (standard mode)
ANSWERED_FIRST = 1  # requests that pass before the faults start (AWS has answered this run); a settled
# service settles in a handful of calls, so the faults must come at once
ERROR_NAMES = {"reset": "ConnectionClosedError", "stall": "ReadTimeoutError"}

on_the_healthy_stage = on_shared_stage(StagePlan("healthy"))


def failing(fault: Fault, first: int, count: int | None) -> Any:
    """Requests ``first`` .. ``first + count - 1`` get ``fault`` (all from ``first`` on when count is None)."""
    return lambda n: fault if n >= first and (count is None or n < first + count) else "pass"


def wait_through(stage: Stage, endpoint: FaultyEndpoint, timeout_s: float) -> Any:
    clients = make_clients(stage.env["AWS_DEFAULT_REGION"], endpoint.url, max_attempts=ATTEMPTS, read_timeout_s=0.5)
    return wait_until_stable(clients, cluster=stage.env["ECS_CLUSTER"], service=stage.env["ECS_SERVICE"],
                             timeout_s=timeout_s)


@pytest.mark.parametrize("fault", ["reset", "stall"])
@on_the_healthy_stage
def test_aws_going_quiet_mid_wait_is_polled_through_and_shows_in_the_notes(shared_stage: Stage, aws_env: Any,
                                                                           fault: Fault) -> None:
    failed_polls = 3
    plan = failing(fault, ANSWERED_FIRST + 1, failed_polls * ATTEMPTS)
    with FaultyEndpoint(shared_stage.env["AWS_ENDPOINT_URL"], plan) as endpoint:
        result = wait_through(shared_stage, endpoint, timeout_s=60)
    assert endpoint.count(fault) == failed_polls * ATTEMPTS
    assert {target.task_id for target in result.deployment.targets} == set(shared_stage.task_ips())
    assert (f"AWS failed {failed_polls} poll(s) transiently ({ERROR_NAMES[fault]} x{failed_polls}); the wait polled "
            "again") in result.notes


@on_the_healthy_stage
def test_aws_failing_until_the_deadline_is_aws_unreachable_naming_the_last_error(shared_stage: Stage,
                                                                                 aws_env: Any) -> None:
    with FaultyEndpoint(shared_stage.env["AWS_ENDPOINT_URL"], failing("reset", ANSWERED_FIRST + 1, None)) as endpoint:
        with pytest.raises(CouldNotVerify) as raised:
            wait_through(shared_stage, endpoint, timeout_s=3)
    outcome = raised.value
    assert outcome.kind == "aws_unreachable"
    assert str(outcome).startswith(f"AWS endpoint unreachable: {endpoint.url}/ (ConnectionClosedError)")
    assert str(outcome).endswith("(still failing when the 3 s wait ended)")
    assert outcome.evidence[0].startswith("transient AWS failures during the wait: AWS failed ")
    assert endpoint.count("reset") >= 2 * ATTEMPTS  # more than one poll was tried


@on_the_healthy_stage
def test_an_endpoint_that_never_answered_is_unreachable_after_a_second_poll(shared_stage: Stage, aws_env: Any) -> None:
    with FaultyEndpoint(shared_stage.env["AWS_ENDPOINT_URL"], failing("reset", 1, None)) as endpoint:
        with pytest.raises(CouldNotVerify) as raised:
            wait_through(shared_stage, endpoint, timeout_s=600)
    assert raised.value.kind == "aws_unreachable" and "ConnectionClosedError" in str(raised.value)
    assert "still failing" not in str(raised.value)
    assert endpoint.seen == ["reset"] * (MAX_POLLS_NEVER_ANSWERED * ATTEMPTS)
