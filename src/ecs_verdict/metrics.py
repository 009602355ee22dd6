"""Canary metrics (``--canary``): one smoke run as CloudWatch data points an alarm can watch.

Published under the run's namespace (default: the suite's, ``SuiteProfile.metrics_namespace``), every metric
with the dimensions ``Service`` and ``Environment``:

- ``SmokeSuccess`` (Count): 1 when the verdict is ``pass``, else 0. Alarm on
  ``Minimum < 1`` (a failed run) or on missing data (the canary stopped running).
- ``SmokeDuration`` (Seconds): wall-clock seconds of the run.
- ``CheckLatency`` (Milliseconds), with an extra ``Check`` dimension: how long each
  check took (the slowest task's, when a check ran once per task).
- ``SmokeDeployment`` (Count), with an extra ``DeploymentId`` dimension: 1 when
  the run passed on that ECS deployment, else 0; its ``SampleCount`` is how many
  runs tested it.

Why the deployment id is its own metric and not a dimension of ``SmokeSuccess``:
CloudWatch treats every distinct dimension set as a separate series and never
aggregates across them, so an alarm on ``SmokeSuccess{Service, Environment}``
would see no data at all once each deployment wrote to its own series (and each
deployment would start a fresh, unalarmed series). ``SmokeSuccess`` therefore
keeps a fixed dimension set, and the per-deployment record lives beside it.

Publishing never fails a run: every problem comes back as a warning sentence
for ``verdict.json`` (no AWS message is quoted for auth errors, see
``translate_aws_error``).
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from datetime import datetime, timezone
from typing import Any

from ecs_verdict.aws import make_clients, translate_aws_error

# AWS accepts up to 1000 metric data items per PutMetricData request (1 MB payload);
# a run has a few dozen, so one request is the usual case.
MAX_DATA_PER_REQUEST = 1000
UNKNOWN_DIMENSION = "unknown"  # a dimension value may not be empty
MAX_DIMENSION_VALUE = 1024
SUCCESS_METRIC = "SmokeSuccess"
DURATION_METRIC = "SmokeDuration"
CHECK_LATENCY_METRIC = "CheckLatency"
DEPLOYMENT_METRIC = "SmokeDeployment"


@dataclass(frozen=True, slots=True)
class RunMetrics:
    """What one run publishes, before it is shaped into ``MetricData``."""

    service: str
    environment: str
    success: bool
    duration_s: float
    check_latencies_s: Mapping[str, float]
    deployment_id: str | None

    def metric_data(self, timestamp: datetime) -> list[dict[str, Any]]:
        """``MetricData`` items for ``put_metric_data``, all stamped with ``timestamp``."""
        base = [_dimension("Service", self.service), _dimension("Environment", self.environment)]

        def datum(name: str, value: float, unit: str, *extra: dict[str, str]) -> dict[str, Any]:
            return {"MetricName": name, "Dimensions": [*base, *extra], "Timestamp": timestamp,
                    "Value": value, "Unit": unit}

        passed = 1.0 if self.success else 0.0
        data = [
            datum(SUCCESS_METRIC, passed, "Count"),
            datum(DURATION_METRIC, round(self.duration_s, 3), "Seconds"),
        ]
        data += [
            datum(CHECK_LATENCY_METRIC, round(seconds * 1000.0, 1), "Milliseconds", _dimension("Check", check))
            for check, seconds in sorted(self.check_latencies_s.items())
        ]
        if self.deployment_id:
            data.append(datum(DEPLOYMENT_METRIC, passed, "Count", _dimension("DeploymentId", self.deployment_id)))
        return data


def publish_run_metrics(
    cloudwatch: Any,
    *,
    namespace: str,
    service: str,
    environment: str,
    success: bool,
    duration_s: float,
    check_latencies: Mapping[str, float],
    deployment_id: str | None,
    now: datetime | None = None,
) -> list[str]:
    """Put one run's metrics (see the module docstring); return warnings, never raise.

    ``check_latencies`` maps a check name to its duration in seconds. The data go
    out in as few ``put_metric_data`` requests as AWS allows; after the first
    failed request the rest are not tried (an unreachable endpoint would only
    cost another round of retries each).
    """
    run = RunMetrics(service=service, environment=environment, success=success, duration_s=duration_s,
                     check_latencies_s=check_latencies, deployment_id=deployment_id)
    data = run.metric_data(now or datetime.now(timezone.utc))
    for start in range(0, len(data), MAX_DATA_PER_REQUEST):
        batch = data[start:start + MAX_DATA_PER_REQUEST]
        try:
            cloudwatch.put_metric_data(Namespace=namespace, MetricData=batch)
        except Exception as error:  # noqa: BLE001 - a metrics outage must not fail the verdict
            unsent = len(data) - start
            return [f"canary metrics: {unsent} of {len(data)} data points not published to CloudWatch "
                    f"namespace {namespace}: {translate_aws_error(error)}"]
    return []


def check_latencies_from(checks: Iterable[Mapping[str, Any]]) -> dict[str, float]:
    """Seconds per check name from verdict check records: the slowest task's, skipped checks left out."""
    latencies: dict[str, float] = {}
    for check in checks:
        if check.get("outcome") == "skipped":
            continue
        name = str(check["name"])
        latencies[name] = max(latencies.get(name, 0.0), float(check.get("duration_s") or 0.0))
    return latencies


def publish_verdict_metrics(
    verdict: Mapping[str, Any],
    *,
    region: str | None,
    namespace: str,
    environment: str,
    cloudwatch: Any | None = None,
) -> list[str]:
    """Publish a finished run's metrics from its ``verdict.json`` data; return warnings, never raise.

    The CloudWatch client is made from ``region`` (else the region the run
    verified; the boto3 chain does the rest, so ``AWS_ENDPOINT_URL`` and
    ``AWS_ENDPOINT_URL_CLOUDWATCH`` apply) unless one is given.
    """
    target = verdict.get("target") or {}
    region = region or target.get("region")
    try:
        client = cloudwatch if cloudwatch is not None else make_clients(region).cloudwatch
    except Exception as error:  # noqa: BLE001 - same reason as above: warn, do not fail
        return [f"canary metrics not published: {translate_aws_error(error, region=region)}"]
    return publish_run_metrics(
        client,
        namespace=namespace,
        service=target.get("service") or UNKNOWN_DIMENSION,
        environment=environment,
        success=verdict.get("verdict") == "pass",
        duration_s=float(verdict.get("duration_s") or 0.0),
        check_latencies=check_latencies_from(verdict.get("checks") or ()),
        deployment_id=target.get("deployment_id"),
    )


def _dimension(name: str, value: str) -> dict[str, str]:
    return {"Name": name, "Value": (value or UNKNOWN_DIMENSION)[:MAX_DIMENSION_VALUE]}

