"""ECS service deployments and service revisions, answered from the stage scheduler's own state.

Real ECS keeps two views of a roll-out: ``describe_services``'s ``deployments`` (what the
scheduler plays: ``ecs-svc/...`` ids, PRIMARY/ACTIVE, rolloutState, counts) and, newer, the
deployment records: ``currentServiceDeployment`` on the service, then
ListServiceDeployments / DescribeServiceDeployments (target and source service revisions, a
status such as IN_PROGRESS, SUCCESSFUL or ROLLBACK_SUCCESSFUL, the circuit breaker) and
DescribeServiceRevisions (the revision's task definition and the image digests it pinned).
moto 5.2.5 has none of the second view (see shared/moto-notes.md), so this module answers it,
through the one hook in ``moto_quirks.MotoServer``, from the same ``Deployment`` objects the
scheduler publishes as the first view: both always tell the same story.

The mapping, per stage ``Deployment``: one service deployment
``arn:aws:ecs:<region>:<account>:service-deployment/<cluster>/<service>/<id digits>`` and one
service revision ``...:service-revision/<cluster>/<service>/<n>`` (n counts revisions in the
order the service had them). The *current* service deployment is the PRIMARY one, except
after a circuit-breaker rollback: then it is the failed deploy (status ROLLBACK_SUCCESSFUL,
circuit breaker TRIGGERED, ``rollback`` naming the revision rolled back to), as on ECS,
where a rollback is a phase of the failed service deployment, not a deployment of its own.
The PRIMARY deployment the rollback created stands for the earlier service deployment that
put that revision in service (SUCCESSFUL).

``enabled=False`` plays an account or region without the records: the three operations
answer ``UnknownOperationException`` (HTTP 400) and ``describe_services`` has no
``currentServiceDeployment``.
"""

from __future__ import annotations

from datetime import datetime
from typing import Any

from stage import blue_green
from stage.faults import Faults
from stage.moto_quirks import ACCOUNT_ID
from stage.scheduler import Deployment, Scheduler, TaskPlan
from stage.seed import CLUSTER, CONTAINER, REGION, SERVICE, Seeded

OPERATIONS = frozenset({"ecs.ListServiceDeployments", "ecs.DescribeServiceDeployments", "ecs.DescribeServiceRevisions",
                        "ecs.ContinueServiceDeployment"})
# moto answers it, but starts no deployment: the stage's scheduler begins one (a rollback by the gate, say).
UPDATE_SERVICE = "ecs.UpdateService"
# The service's circuit breaker (thresholdConfiguration COUNT 2): two failed tasks roll a deploy back,
# the two stopped tasks the rolled_back scenario shows.
CIRCUIT_BREAKER_THRESHOLD = 2
FINISHED = frozenset({"SUCCESSFUL", "STOPPED", "ROLLBACK_SUCCESSFUL", "ROLLBACK_FAILED"})


def _epoch(stamp: datetime) -> float:
    return stamp.timestamp()


def _error(code: str, message: str) -> tuple[int, dict[str, Any]]:
    return 400, {"__type": code, "message": message}


class DeploymentRecords:
    """The ``moto_quirks.OperationHook`` that answers the deployment-record operations."""

    def __init__(self, scheduler: Scheduler, seeded: Seeded, *, network: dict[str, Any], enabled: bool = True) -> None:
        self._scheduler = scheduler
        self._seeded = seeded
        self._network = network  # what the scheduler starts tasks with
        self.enabled = enabled
        self.cluster_arn = f"arn:aws:ecs:{REGION}:{ACCOUNT_ID}:cluster/{CLUSTER}"
        self.service_arn = f"arn:aws:ecs:{REGION}:{ACCOUNT_ID}:service/{CLUSTER}/{SERVICE}"
        self._revision_numbers: dict[str, int] = {}  # stage deployment id -> n, fixed once given

    # -- ARNs ------------------------------------------------------------------------------------

    def deployment_arn(self, deployment_id: str) -> str:
        digits = deployment_id.removeprefix("ecs-svc/")
        return f"arn:aws:ecs:{REGION}:{ACCOUNT_ID}:service-deployment/{CLUSTER}/{SERVICE}/{digits}"

    def revision_arn(self, deployment: Deployment) -> str:
        return f"arn:aws:ecs:{REGION}:{ACCOUNT_ID}:service-revision/{CLUSTER}/{SERVICE}/{self._number(deployment)}"

    # -- the hook ----------------------------------------------------------------------------------

    def answer(self, operation: str, request: dict[str, Any]) -> tuple[int, dict[str, Any]] | None:
        if operation == UPDATE_SERVICE:
            self._update_service(request)
            return None  # moto answers it, with the deployments the scheduler now has
        if operation not in OPERATIONS:
            return None
        if not self.enabled:
            name = operation.removeprefix("ecs.")
            return _error("UnknownOperationException", f"{name} is not available for this account")
        with self._scheduler._lock:  # the scheduler changes these objects under its lock
            if operation == "ecs.ListServiceDeployments":
                return self._list(request)
            if operation == "ecs.DescribeServiceDeployments":
                return self._describe_deployments(request)
            if operation == "ecs.ContinueServiceDeployment":
                return self._continue(request)
            return self._describe_revisions(request)

    def rewrite(self, operation: str, response: dict[str, Any]) -> dict[str, Any] | None:
        """``describe_services``: add ``currentServiceDeployment``, from the deployments of the same answer."""
        if operation != "ecs.DescribeServices" or not self.enabled:
            return None
        for service in response.get("services", []):
            if service.get("serviceArn") == self.service_arn:
                current = current_deployment_id(service.get("deployments", []))
                if current:
                    service["currentServiceDeployment"] = self.deployment_arn(current)
        return response

    # -- the scheduler's state as records -------------------------------------------------------------

    def _known(self) -> list[Deployment]:
        """Every deployment the service has had: those listed now and those its tasks came from."""
        seen: dict[str, Deployment] = {}
        for deployment in [*self._scheduler.retired, *self._scheduler.deployments,
                           *(task.deployment for task in self._scheduler.tasks)]:
            seen.setdefault(deployment.id, deployment)
        known = list(seen.values())
        target = self._target(known)
        for deployment in sorted(known, key=lambda d: (d is target, d.created_at)):
            self._revision_numbers.setdefault(deployment.id, len(self._revision_numbers) + 1)
        return sorted(known, key=self._number)

    def _target(self, known: list[Deployment]) -> Deployment | None:
        listed = self._scheduler.deployments
        wanted = current_deployment_id(
            [{"id": d.id, "status": d.status, "rolloutState": d.rollout_state} for d in listed]
        )
        return next((d for d in known if d.id == wanted), None)

    def _number(self, deployment: Deployment) -> int:
        return self._revision_numbers[deployment.id]

    def _primary(self) -> Deployment | None:
        return next((d for d in self._scheduler.deployments if d.status == "PRIMARY"), None)

    def _status(self, deployment: Deployment, target: Deployment | None) -> str:
        primary = self._primary()
        if deployment.rollout_state == "FAILED":
            back = primary is not None and primary.rollout_state == "COMPLETED"
            return "ROLLBACK_SUCCESSFUL" if back else "ROLLBACK_IN_PROGRESS"
        if deployment.rollout_state == "COMPLETED":
            return "SUCCESSFUL"
        if deployment is target:
            return "IN_PROGRESS"
        if target is not None and target.rollout_state == "FAILED" and deployment is primary:
            return "SUCCESSFUL"  # the revision a rollback returned to was in service before
        return "STOPPED"  # superseded before it completed

    def _summary(self, deployment: Deployment) -> dict[str, Any]:
        live = self._scheduler.live_tasks(deployment)
        running = sum(1 for task in live if task.status == "RUNNING")
        return {
            "arn": self.revision_arn(deployment),
            "requestedTaskCount": deployment.desired,
            "runningTaskCount": running,
            "pendingTaskCount": len(live) - running,
        }

    def _record(self, deployment: Deployment, known: list[Deployment]) -> dict[str, Any]:
        """A ``ServiceDeployment`` (botocore's shape of that name)."""
        target = self._target(known)
        status = self._status(deployment, target)
        created = deployment.created_at
        if target is not None and deployment is not target:
            created = min(created, target.created_at)  # history is older than what replaced it
        failed = deployment.rollout_state == "FAILED"
        watching = "MONITORING" if status == "IN_PROGRESS" else "MONITORING_COMPLETE"
        # The scheduler fails a deploy either by its circuit breaker or by an alarm it watches (alarm_rollback).
        alarms = getattr(deployment, "alarms", None) or {}
        alarm_names = list(alarms.get("alarmNames") or []) if alarms.get("enable") else []
        fired = [name for name in alarm_names if failed and name in deployment.rollout_reason]
        state = deployment.blue_green
        at_hook = state.rolled_back if state is not None else None  # rolled back at (or by) a lifecycle hook
        breaker = "TRIGGERED" if failed and not fired and not at_hook else watching
        primary = self._primary()
        finished = (primary.updated_at if failed and primary else deployment.updated_at) if status in FINISHED else None
        sources = ([d for d in known if self._number(d) < self._number(deployment) and d.rollout_state != "FAILED"]
                   if deployment is target else [])
        record: dict[str, Any] = {
            "serviceDeploymentArn": self.deployment_arn(deployment.id),
            "serviceArn": self.service_arn,
            "clusterArn": self.cluster_arn,
            "createdAt": _epoch(created),
            "startedAt": _epoch(created),
            "updatedAt": _epoch(max(deployment.updated_at, created)),
            "sourceServiceRevisions": [self._summary(d) for d in sources],
            "targetServiceRevision": self._summary(deployment),
            "status": status,
            "statusReason": deployment.rollout_reason,
            "lifecycleHookDetails": [hook.as_ecs() for hook in state.hooks] if state is not None else [],
            "deploymentConfiguration": self._configuration(deployment),
            "deploymentCircuitBreaker": {
                "status": breaker, "failureCount": deployment.failed_tasks, "threshold": CIRCUIT_BREAKER_THRESHOLD,
            },
            "alarms": {
                "status": ("TRIGGERED" if fired else watching) if alarm_names else "DISABLED",
                "alarmNames": alarm_names, "triggeredAlarmNames": fired,
            },
        }
        if status == "IN_PROGRESS" and state is not None:
            record["lifecycleStage"] = state.stage
        elif status == "IN_PROGRESS":
            record["lifecycleStage"] = "BAKE_TIME" if getattr(deployment, "bake_until", None) else "SCALE_UP"
        if finished is not None:
            record["finishedAt"] = _epoch(max(finished, created))
        if failed and primary is not None:
            record["rollback"] = {
                "reason": (f"{at_hook}: rolled back to the service revision that was serving." if at_hook else
                           "ECS deployment circuit breaker: rolling back to the last service revision that completed."),
                "startedAt": _epoch(max(primary.created_at, created)),
                "serviceRevisionArn": self.revision_arn(primary),
            }
        return record

    def _configuration(self, deployment: Deployment) -> dict[str, Any]:
        """The ``DeploymentConfiguration`` the deployment runs under: ROLLING, or the service's blue/green one."""
        rolling: dict[str, Any] = {
            "deploymentCircuitBreaker": {
                "enable": True, "rollback": True,
                "thresholdConfiguration": {"type": "COUNT", "value": CIRCUIT_BREAKER_THRESHOLD},
            },
            "maximumPercent": 200,
            "minimumHealthyPercent": 100,
            "strategy": "ROLLING",
        }
        if deployment.blue_green is None or not deployment.configuration:
            return rolling
        given = deployment.configuration
        return {**rolling, "strategy": blue_green.BLUE_GREEN,
                **{key: given[key] for key in ("bakeTimeInMinutes", "lifecycleHooks") if key in given}}

    def _revision(self, deployment: Deployment) -> dict[str, Any]:
        """A ``ServiceRevision``: the task definition and the digest its tasks run (ECS pins it at deploy time)."""
        launched = [task for task in self._scheduler.tasks if task.deployment is deployment]
        digest = launched[0].plan.image_digest if launched else deployment.plan(0).image_digest
        tag = "previous" if deployment.task_definition_arn == self._seeded.previous_task_definition else "latest"
        return {
            "serviceRevisionArn": self.revision_arn(deployment),
            "serviceArn": self.service_arn,
            "clusterArn": self.cluster_arn,
            "taskDefinition": deployment.task_definition_arn,
            "launchType": "FARGATE",
            "platformVersion": "1.4.0",
            "platformFamily": "Linux",
            "loadBalancers": list(self._scheduler.load_balancer.service_load_balancers
                                  if self._scheduler.load_balancer is not None else []),
            "serviceRegistries": [],
            "networkConfiguration": self._network,
            "containerImages": [
                {"containerName": CONTAINER, "imageDigest": digest, "image": f"{self._seeded.repository_uri}:{tag}"}
            ],
            "guardDutyEnabled": False,
            "createdAt": _epoch(deployment.created_at),
        }

    # -- the operations ------------------------------------------------------------------------------

    def _check_service(self, request: dict[str, Any]) -> tuple[int, dict[str, Any]] | None:
        cluster = str(request.get("cluster") or "default")
        if cluster not in (CLUSTER, self.cluster_arn):
            return _error("ClusterNotFoundException", "Cluster not found.")
        if str(request.get("service", "")) not in (SERVICE, self.service_arn):
            return _error("ServiceNotFoundException", "Service not found.")
        return None

    def _list(self, request: dict[str, Any]) -> tuple[int, dict[str, Any]]:
        refused = self._check_service(request)
        if refused is not None:
            return refused
        known = self._known()
        statuses = set(request.get("status") or [])
        window = request.get("createdAt") or {}
        briefs = []
        for deployment in reversed(known):  # newest first, as ECS lists them
            record = self._record(deployment, known)
            if statuses and record["status"] not in statuses:
                continue
            if "after" in window and record["createdAt"] < float(window["after"]):
                continue
            if "before" in window and record["createdAt"] > float(window["before"]):
                continue
            brief = {key: record[key] for key in ("serviceDeploymentArn", "serviceArn", "clusterArn", "startedAt",
                                                  "createdAt", "status", "statusReason") if key in record}
            brief["targetServiceRevisionArn"] = record["targetServiceRevision"]["arn"]
            if "finishedAt" in record:
                brief["finishedAt"] = record["finishedAt"]
            briefs.append(brief)
        limit = int(request.get("maxResults") or 20)
        return 200, {"serviceDeployments": briefs[:limit]}

    def _describe_deployments(self, request: dict[str, Any]) -> tuple[int, dict[str, Any]]:
        arns = list(request.get("serviceDeploymentArns") or [])
        if not arns:
            return _error("InvalidParameterException", "serviceDeploymentArns must not be empty.")
        known = self._known()
        by_arn = {self.deployment_arn(d.id): d for d in known}
        found = [self._record(by_arn[arn], known) for arn in arns if arn in by_arn]
        failures = [{"arn": arn, "reason": "MISSING"} for arn in arns if arn not in by_arn]
        return 200, {"serviceDeployments": found, "failures": failures}

    def _describe_revisions(self, request: dict[str, Any]) -> tuple[int, dict[str, Any]]:
        arns = list(request.get("serviceRevisionArns") or [])
        if not arns:
            return _error("InvalidParameterException", "serviceRevisionArns must not be empty.")
        by_arn = {self.revision_arn(d): d for d in self._known()}
        found = [self._revision(by_arn[arn]) for arn in arns if arn in by_arn]
        failures = [{"arn": arn, "reason": "MISSING"} for arn in arns if arn not in by_arn]
        return 200, {"serviceRevisions": found, "failures": failures}


    def _continue(self, request: dict[str, Any]) -> tuple[int, dict[str, Any]]:
        arn = str(request.get("serviceDeploymentArn") or "")
        by_arn = {self.deployment_arn(d.id): d for d in self._known()}
        deployment = by_arn.get(arn)
        if deployment is None:
            return _error("ServiceDeploymentNotFoundException", f"The service deployment {arn!r} does not exist.")
        refused = blue_green.continue_or_roll_back(self._scheduler, deployment, str(request.get("hookId") or ""),
                                                   str(request.get("action") or "CONTINUE"))
        if refused is not None:
            return _error(*refused)
        return 200, {"serviceDeploymentArn": arn}

    def _update_service(self, request: dict[str, Any]) -> None:
        """A new task definition for the service: the scheduler begins its deployment, as ECS would.

        The new tasks run the digest that revision pins and serve cleanly: a rollback to the
        previous release brings back the build that served before.
        """
        wanted = str(request.get("taskDefinition") or "")
        if not wanted or str(request.get("service", "")) not in (SERVICE, self.service_arn):
            return
        known = {self._seeded.previous_task_definition: self._seeded.previous_digest,
                 self._seeded.current_task_definition: self._seeded.pushed_digest}
        arn = next((item for item in known if wanted in (item, item.rsplit("/", 1)[-1])), None)
        with self._scheduler._lock:
            primary = next((d for d in self._scheduler.deployments if d.status == "PRIMARY"), None)
            if arn is None or (primary is not None and primary.task_definition_arn == arn):
                return  # unknown to the stage (moto answers the error), or nothing changes
            digest = known[arn]
            self._scheduler.begin_deployment(arn, lambda _i: TaskPlan("serve", Faults(), digest))


def current_deployment_id(deployments: list[dict[str, Any]]) -> str | None:
    """Which ``describe_services`` deployment is the current service deployment.

    The PRIMARY, unless an ACTIVE one failed: a circuit-breaker rollback belongs to the
    failed service deployment (its status turns ROLLBACK_*).
    """
    failed = next((d for d in deployments if d.get("status") == "ACTIVE" and d.get("rolloutState") == "FAILED"), None)
    chosen = failed or next((d for d in deployments if d.get("status") == "PRIMARY"), None)
    return str(chosen["id"]) if chosen else None
