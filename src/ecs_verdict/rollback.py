"""``--on-fail rollback``: after a failed gate (exit 1), put a rolling service back on the revision it ran before.

Which revision: the one the failed service deployment replaced, from ECS's deployment records
(the current deployment's ``sourceServiceRevisions`` and their task definitions), else from
``deployments`` (an ACTIVE deployment of another task definition, newest first: the previous
PRIMARY while ECS still lists it). Then ``UpdateService`` with that task definition and the
same stability wait a gate uses, expecting that task definition, so the run ends on a service
that is stable and healthy again, or says why not. The gate's exit code stays 1: the release
failed whatever the rollback did. Never on exit 6 (nothing is known about the release), never
when ECS already rolled the deployment back itself. Needs ``ecs:UpdateService``, which the
harness's read-only role does not grant. Pure of pytest.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping
from dataclasses import dataclass
from typing import Any

from botocore.exceptions import BotoCoreError, ClientError

from ecs_verdict.aws import AwsClients, error_code
from ecs_verdict.blue_green import utc_now
from ecs_verdict.deployment_records import ROLLBACK_STATUSES, UNAVAILABLE_CODES
from ecs_verdict.deployment import Deployment, TaskDefinitionRef, parse_task_definition_ref
from ecs_verdict.errors import HarnessOutcome
from ecs_verdict.observation import family_revision
from ecs_verdict.stability import StableResult

Wait = Callable[[TaskDefinitionRef], StableResult]


@dataclass(frozen=True, slots=True)
class RollbackRecord:
    """What ``--on-fail rollback`` did; the verdict's ``rollback`` (both deployments)."""

    status: str  # "stable" | "not_stable" | "refused" | "not_started"
    message: str
    failed_deployment_id: str | None
    failed_task_definition: str | None
    to_task_definition: str | None = None
    to_deployment_id: str | None = None
    found_in: str | None = None  # where the previous revision came from
    started_at: str | None = None
    finished_at: str | None = None

    def to_dict(self) -> dict[str, Any]:
        return {
            "status": self.status, "message": self.message,
            "failed": {"deployment_id": self.failed_deployment_id, "task_definition": self.failed_task_definition},
            "to": {"deployment_id": self.to_deployment_id, "task_definition": self.to_task_definition},
            "found_in": self.found_in, "started_at": self.started_at, "finished_at": self.finished_at,
        }

    def describe(self) -> str:
        return f"--on-fail rollback: {self.message}"


def previous_task_definition(clients: AwsClients, raw_service: Mapping[str, Any], failed: str) -> tuple[str, str] | None:
    """(task definition ARN, where it was found) the service ran before ``failed``; None when nothing says."""
    arn = raw_service.get("currentServiceDeployment")
    if arn:
        try:
            found = _from_records(clients, str(arn), failed)
        except ClientError as error:
            if error_code(error) not in UNAVAILABLE_CODES:
                raise
            found = None
        if found is not None:
            return found
    others = [d for d in raw_service.get("deployments") or []
              if d.get("status") == "ACTIVE" and d.get("taskDefinition") and d.get("taskDefinition") != failed
              and d.get("rolloutState") != "FAILED"]
    others.sort(key=lambda d: str(d.get("createdAt") or ""), reverse=True)
    if others:
        return str(others[0]["taskDefinition"]), f"deployment {others[0].get('id')} (ACTIVE)"
    return None


def _from_records(clients: AwsClients, arn: str, failed: str) -> tuple[str, str] | None:
    answer = clients.ecs.describe_service_deployments(serviceDeploymentArns=[arn])
    record = next(iter(answer.get("serviceDeployments") or []), None)
    sources = [str(item.get("arn")) for item in (record or {}).get("sourceServiceRevisions") or [] if item.get("arn")]
    if not sources:
        return None
    revisions = clients.ecs.describe_service_revisions(serviceRevisionArns=sources).get("serviceRevisions") or []
    by_arn = {str(item.get("serviceRevisionArn")): str(item.get("taskDefinition") or "") for item in revisions}
    for source in reversed(sources):  # the newest source revision first
        task_definition = by_arn.get(source, "")
        if task_definition and task_definition != failed:
            return task_definition, f"service revision {source.rsplit('/', 1)[-1]} (source of the failed deployment)"
    return None


def roll_back(clients: AwsClients, *, cluster: str, service: str, failed: Deployment | None,
              wait: Wait) -> RollbackRecord:
    """UpdateService back to the previous task definition and wait for it (``failed``: the run's deployment)."""
    failed_id = failed.deployment_id if failed is not None else None
    failed_td: str | None = failed.task_definition_arn if failed is not None else None
    try:
        raw = (clients.ecs.describe_services(cluster=cluster, services=[service]).get("services") or [{}])[0]
        record = _current_record(clients, raw)
        failed_td = failed_td or (record or {}).get("taskDefinition") or _primary_td(raw)
        if record is not None and record.get("status") in ROLLBACK_STATUSES:
            return RollbackRecord("not_started", f"ECS already rolled the deployment back ({record['status']})",
                                  failed_id, failed_td)
        if not failed_td:
            return RollbackRecord("not_started", "the failed deployment's task definition is unknown", failed_id, None)
        previous = previous_task_definition(clients, raw, failed_td)
        if previous is None:
            return RollbackRecord("not_started", f"no task definition before {family_revision(failed_td)} is "
                                  "recorded (no source revision, no older deployment listed)", failed_id, failed_td)
        target, found_in = previous
        started = utc_now()
        clients.ecs.update_service(cluster=cluster, service=service, taskDefinition=target)
    except (ClientError, BotoCoreError) as error:
        code = error_code(error) if isinstance(error, ClientError) else type(error).__name__
        return RollbackRecord("refused", f"AWS refused the rollback ({code}: {error})", failed_id, failed_td)
    try:
        result = wait(parse_task_definition_ref(target))
    except HarnessOutcome as outcome:
        return RollbackRecord("not_stable", f"updated the service to {family_revision(target)}, which did not "
                              f"settle: {outcome}", failed_id, failed_td, target, None, found_in, started, utc_now())
    return RollbackRecord("stable", f"the service runs {family_revision(target)} again, stable and healthy "
                          f"(deployment {result.deployment.deployment_id}, {len(result.deployment.targets)} task(s))",
                          failed_id, failed_td, target, result.deployment.deployment_id, found_in, started, utc_now())


def _current_record(clients: AwsClients, raw_service: Mapping[str, Any]) -> dict[str, Any] | None:
    """The current service deployment's record with its target task definition, where ECS keeps records."""
    arn = raw_service.get("currentServiceDeployment")
    if not arn:
        return None
    try:
        answer = clients.ecs.describe_service_deployments(serviceDeploymentArns=[str(arn)])
        record = next(iter(answer.get("serviceDeployments") or []), None)
        target = str(((record or {}).get("targetServiceRevision") or {}).get("arn") or "")
        revisions = (clients.ecs.describe_service_revisions(serviceRevisionArns=[target]).get("serviceRevisions")
                     if target else [])
    except ClientError as error:
        if error_code(error) in UNAVAILABLE_CODES:
            return None
        raise
    if record is None:
        return None
    return {"status": record.get("status"), "taskDefinition": (revisions or [{}])[0].get("taskDefinition")}


def _primary_td(raw_service: Mapping[str, Any]) -> str | None:
    primary = next((d for d in raw_service.get("deployments") or [] if d.get("status") == "PRIMARY"), None)
    return str(primary["taskDefinition"]) if primary and primary.get("taskDefinition") else None


def not_rolled_back(exit_code: int) -> str | None:
    """The one line for a run that does not roll back (None: exit 1, it does)."""
    if exit_code == 1:
        return None
    if exit_code == 0:
        return ""
    return (f"--on-fail rollback: not rolled back: the run could not verify the deployment (exit {exit_code}), so "
            "nothing says the release is broken; a person decides")
