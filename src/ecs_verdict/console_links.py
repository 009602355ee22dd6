"""Links into the AWS console for a cause: its tasks' log streams, the stopped tasks, the service (pure).

Built only from values a run already holds (region, cluster, service, the task definition's
awslogs options, the current service deployment's ARN, the task ids, the run's window): no
AWS call. Nothing here depends on how the harness reached the tasks, so a canary inside the
VPC (``--address private``) gets the same links as a CI runner.

Where each URL form comes from (checked against these when the forms were written):

- CloudWatch Logs, one log stream: ``https://{region}.console.aws.amazon.com/cloudwatch/home
  ?region={region}#logsV2:log-groups/log-group/{group}/log-events/{stream}{query}``. The
  console's fragment escapes each name twice (``/`` -> ``%2F`` -> ``%252F``) and then writes
  ``%`` as ``$`` (``$252F``); the query (``?start=..&end=..``, epoch milliseconds) is escaped
  once the same way (``$3Fstart$3D...$26end$3D...``). Worked examples: the package
  ``aws-cloudwatch-logs-url`` (sinofseven/cloudwatch-logs-url-python, its unit tests) and
  the Stack Overflow question "Is there a way to generate the AWS Console URLs for
  CloudWatch Log Group filters?" (answers list ``$252F``, ``$3F``, ``$3D``, ``$26``).
- ECS (console v2), a service: ``https://{region}.console.aws.amazon.com/ecs/v2/clusters/
  {cluster}/services/{service}/health?region={region}``; its deployments tab:
  ``.../services/{service}/deployments?region={region}``; a task (kept by ECS about an hour
  after it stopped): ``.../ecs/v2/clusters/{cluster}/tasks/{task-id}/configuration?region=
  {region}``. These are the forms the v2 console itself shows and that public tooling builds
  (e.g. ``ecsTaskUrl``/``ecsServiceUrl`` helpers); AWS's guide "Viewing Amazon ECS service
  deployments" reaches one service deployment as: the service -> Deployments -> its
  Deployment ID. No source gives a URL for one service deployment's own page, so its link
  opens the Deployments tab and its title names the deployment's id to choose there.
- Partitions: ``console.amazonaws.cn`` for ``cn-*`` regions, ``console.amazonaws-us-gov.com``
  for ``us-gov-*`` (the hosts AWS's China and GovCloud guides name).
"""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass
from datetime import datetime, timedelta, timezone
from typing import Any, TypedDict
from urllib.parse import quote, quote_plus

from ecs_verdict.lint import find_container
from ecs_verdict.listeners import LISTENER_TARGET_IDS

# The log window a link opens: from a little before the run to a little after it (the
# evidence reads DEFAULT_LOG_WINDOW_S either side of the failure, the same margin).
LOG_MARGIN_BEFORE = timedelta(minutes=5)
LOG_MARGIN_AFTER = timedelta(minutes=1)


class LinkRecord(TypedDict):
    """One link as verdict.json holds it (and Allure can show): ``kind``, ``title``, ``url``."""

    kind: str  # log_stream | task | service | service_deployment
    title: str
    url: str


@dataclass(frozen=True, slots=True)
class ConsoleContext:
    """What a run knows that the console's URLs need; any part may be missing (``None``)."""

    region: str | None
    cluster: str | None
    service: str | None
    log_group: str | None = None
    log_stream_prefix: str | None = None
    container: str | None = None
    service_deployment_arn: str | None = None
    stopped_task_ids: frozenset[str] = frozenset()
    window: tuple[datetime, datetime] | None = None  # the run's, UTC: where the log links open

    @property
    def can_link(self) -> bool:
        return bool(self.region and self.cluster)


def console_host(region: str) -> str:
    """The console's host for ``region``'s partition."""
    if region.startswith("cn-"):
        return f"{region}.console.amazonaws.cn"
    if region.startswith("us-gov-"):
        return "console.amazonaws-us-gov.com"
    return f"{region}.console.aws.amazon.com"


def _fragment_escape(text: str, *, twice: bool = True) -> str:
    """The CloudWatch console fragment's escaping: URL-escape (twice for names), then ``%`` -> ``$``."""
    escaped = quote_plus(text, safe="")
    if twice:
        escaped = quote_plus(escaped, safe="")
    return escaped.replace("%", "$")


def _millis(moment: datetime) -> int:
    if moment.tzinfo is None:
        moment = moment.replace(tzinfo=timezone.utc)
    return int(moment.timestamp() * 1000)


def log_stream_url(region: str, group: str, stream: str, window: tuple[datetime, datetime] | None = None) -> str:
    """The CloudWatch Logs console page of one log stream, opened on ``window`` when given."""
    url = (f"https://{console_host(region)}/cloudwatch/home?region={region}#logsV2:log-groups/log-group/"
           f"{_fragment_escape(group)}/log-events/{_fragment_escape(stream)}")
    if window is not None:
        start, end = window
        query = f"start={_millis(start)}&end={_millis(end)}"
        url += "".join(_fragment_escape(char, twice=False) if char in "?=&" else char for char in "?" + query)
    return url


def _path(text: str) -> str:
    return quote(text, safe="")


def ecs_service_url(region: str, cluster: str, service: str, tab: str = "health") -> str:
    """The ECS console (v2) page of a service, on ``tab`` (health, deployments, logs, configuration...)."""
    return (f"https://{console_host(region)}/ecs/v2/clusters/{_path(cluster)}/services/{_path(service)}/{tab}"
            f"?region={region}")


def ecs_task_url(region: str, cluster: str, task_id: str) -> str:
    """The ECS console (v2) page of one task (running, or stopped within about an hour)."""
    return f"https://{console_host(region)}/ecs/v2/clusters/{_path(cluster)}/tasks/{_path(task_id)}/configuration" \
           f"?region={region}"


def log_stream_name(prefix: str, container: str, task_id: str) -> str:
    """The awslogs driver's stream name for a Fargate task: ``<prefix>/<container>/<task-id>``."""
    return f"{prefix}/{container}/{task_id}"


def run_window(started_at: datetime, duration_s: float) -> tuple[datetime, datetime]:
    """The stretch of time a run's log links open: the run, with a margin either side."""
    return started_at - LOG_MARGIN_BEFORE, started_at + timedelta(seconds=duration_s) + LOG_MARGIN_AFTER


def service_links(context: ConsoleContext) -> list[LinkRecord]:
    """The service's page and, when the deployment records gave one, its service deployment."""
    if not (context.can_link and context.service):
        return []
    region, cluster, service = context.region or "", context.cluster or "", context.service
    links = [LinkRecord(kind="service", title=f"ECS service {service}",
                        url=ecs_service_url(region, cluster, service))]
    if context.service_deployment_arn:
        deployment_id = context.service_deployment_arn.rsplit("/", 1)[-1]
        links.append(LinkRecord(kind="service_deployment",
                                title=f"service deployment {deployment_id} (Deployments tab)",
                                url=ecs_service_url(region, cluster, service, "deployments")))
    return links


def task_links(context: ConsoleContext, task_ids: Iterable[str]) -> list[LinkRecord]:
    """Each task's log stream (when the task definition names one) and each stopped task's page."""
    if not context.can_link:
        return []
    region, cluster = context.region or "", context.cluster or ""
    links: list[LinkRecord] = []
    for task_id in task_ids:
        if task_id in LISTENER_TARGET_IDS:
            continue  # a load balancer's listener: no log stream, no task page
        short = task_id[:8]
        if context.log_group and context.log_stream_prefix and context.container:
            stream = log_stream_name(context.log_stream_prefix, context.container, task_id)
            links.append(LinkRecord(kind="log_stream", title=f"log stream of task {short}",
                                    url=log_stream_url(region, context.log_group, stream, context.window)))
        if task_id in context.stopped_task_ids:
            links.append(LinkRecord(kind="task", title=f"stopped task {short}", url=ecs_task_url(region, cluster,
                                                                                                  task_id)))
    return links


def cause_links(context: ConsoleContext | None, task_ids: Iterable[str]) -> list[LinkRecord]:
    """Every link for one cause: its tasks' first, then the service's."""
    if context is None:
        return []
    return [*task_links(context, task_ids), *service_links(context)]


def awslogs_options(task_definition: dict[str, Any] | None, container: str) -> tuple[str | None, str | None]:
    """``(awslogs-group, awslogs-stream-prefix)`` of ``container`` in a task definition (None when absent)."""
    found = find_container(task_definition or {}, container)
    configuration = (found or {}).get("logConfiguration") or {}
    if configuration.get("logDriver") != "awslogs":
        return None, None
    options = configuration.get("options") or {}
    return options.get("awslogs-group"), options.get("awslogs-stream-prefix")
