"""Deployment alarms: a canary tests the new tasks during ECS's bake, and a rollback names the alarm.

With deployment alarms ECS keeps the rollout IN_PROGRESS through the bake time and
decides from the alarms, which listen to the canary; a canary that waited for
COMPLETED would publish nothing and let missing data roll back a good build.
"""

from __future__ import annotations

from datetime import datetime, timezone
from typing import Any

from ecs_verdict.diagnosis import Failure, diagnose
from ecs_verdict.evidence import Evidence
from ecs_verdict.observation import Observation, parse_deployment, parse_task
from ecs_verdict.stability import aws_not_settled

TD_NEW = "arn:aws:ecs:us-east-1:123456789012:task-definition/civicforge-board-mvp:8"
TD_OLD = "arn:aws:ecs:us-east-1:123456789012:task-definition/civicforge-board-mvp:7"
ALARM_EVENT = ("(service civicforge-board-service) (deployment ecs-svc/1) deployment failed: "
               "alarm(s) civicforge-board-smoke-production are in ALARM state.")


def deployment(status: str, td: str, rollout: str, running: int) -> dict[str, Any]:
    return {"id": f"ecs-svc/{td[-1]}", "status": status, "taskDefinition": td, "rolloutState": rollout,
            "desiredCount": 2 if status == "PRIMARY" else 0, "runningCount": running, "pendingCount": 0}


def task(number: int) -> dict[str, Any]:
    return {"taskArn": f"arn:aws:ecs:us-east-1:123456789012:task/c/{number:032x}", "taskDefinitionArn": TD_NEW,
            "group": "service:civicforge-board-service", "startedBy": "ecs-svc/8", "lastStatus": "RUNNING",
            "desiredStatus": "RUNNING", "healthStatus": "HEALTHY", "containers": []}


def baking(old_running: int) -> tuple[Observation, Any]:
    primary = parse_deployment(deployment("PRIMARY", TD_NEW, "IN_PROGRESS", 2))
    old = parse_deployment(deployment("ACTIVE", TD_OLD, "COMPLETED", old_running))
    observation = Observation("c", "civicforge-board-service", "us-east-1", "ACTIVE", 2, 2 + old_running, 0,
                              (primary, old), (), (parse_task(task(1)), parse_task(task(2))),
                              datetime.now(timezone.utc))
    return observation, primary


def test_a_gate_waits_for_the_bake_to_end() -> None:
    observation, primary = baking(old_running=0)
    assert aws_not_settled(observation, primary, needs_health=True).startswith("old deployment still listed")


def test_a_canary_tests_the_new_tasks_during_the_bake() -> None:
    observation, primary = baking(old_running=0)
    assert aws_not_settled(observation, primary, needs_health=True, bake_is_settled=True) == ""


def test_not_while_the_old_tasks_still_serve() -> None:
    observation, primary = baking(old_running=2)
    assert aws_not_settled(observation, primary, needs_health=True, bake_is_settled=True) != ""


def test_a_rollback_by_deployment_alarms_names_the_alarm() -> None:
    failure = Failure("rolled_back", "deployment", None, "deploy of civicforge-board-mvp:8 was rolled back")
    found = diagnose(failure, Evidence(service_events=(ALARM_EVENT,)))
    assert found.category == "deployment_rolled_back"
    assert found.summary == ("ECS rolled the deployment back: deployment alarm(s) civicforge-board-smoke-production "
                             "went into ALARM")
    assert "describe-alarm-history --alarm-name civicforge-board-smoke-production" in found.next_step


def test_a_circuit_breaker_rollback_keeps_its_own_words() -> None:
    failure = Failure("rolled_back", "deployment", None, "circuit breaker: tasks failed to start")
    summary = diagnose(failure, Evidence()).summary
    assert summary == "the deployment failed and ECS rolled it back to the previous task definition"
