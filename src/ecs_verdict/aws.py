"""boto3 clients for the harness: bounded timeouts and retries, a call counter,
and the translation of AWS failures into one clear ``CouldNotVerify`` line.

Credentials, profile, region and endpoint come from the standard boto3 chain
(``AWS_PROFILE``, ``AWS_REGION``/``AWS_DEFAULT_REGION``, ``AWS_ENDPOINT_URL``, ...):
boto3 reads them itself; the arguments of ``make_clients`` only override.
"""

from __future__ import annotations

import threading
from collections import Counter
from collections.abc import Iterator
from contextlib import contextmanager
from typing import Any
from urllib.parse import urlsplit

import boto3
from botocore.client import BaseClient
from botocore.exceptions import ConnectionError as BotoConnectionError
from botocore.config import Config
from botocore.exceptions import (
    ClientError,
    CredentialRetrievalError,
    HTTPClientError,
    InvalidRegionError,
    NoCredentialsError,
    NoRegionError,
    PartialCredentialsError,
    ProfileNotFound,
)

from ecs_verdict.errors import CouldNotVerify
from ecs_verdict.kinds import Kind

DEFAULT_CONNECT_TIMEOUT_S = 3.0
DEFAULT_READ_TIMEOUT_S = 10.0
# botocore's "standard" mode retries throttling, 5xx and connection errors with
# jittered backoff; bounding the attempts keeps a dead endpoint from eating the
# whole time budget.
DEFAULT_MAX_ATTEMPTS = 4

FIX_CREDENTIALS = "set AWS_PROFILE or AWS_ACCESS_KEY_ID/AWS_SECRET_ACCESS_KEY"
FIX_REGION = "pass --aws-region us-east-1 or set AWS_REGION"
THROTTLING_CODES = frozenset(
    {"Throttling", "ThrottlingException", "ThrottledException", "RequestLimitExceeded", "TooManyRequestsException"}
)
AUTH_CODES = frozenset(
    {
        "UnrecognizedClientException",
        "InvalidClientTokenId",
        "InvalidSignatureException",
        "SignatureDoesNotMatch",
        "ExpiredToken",
        "ExpiredTokenException",
        "AuthFailure",
    }
)
ACCESS_DENIED_CODES = frozenset({"AccessDeniedException", "AccessDenied", "UnauthorizedOperation"})
# No HTTP answer from AWS (refused, reset, closed mid-answer, timed out): the network's, not AWS's word.
# HTTPClientError covers ConnectionClosedError and ReadTimeoutError; botocore's ConnectionError the
# connect-side ones (EndpointConnectionError, ConnectTimeoutError, proxy errors).
TRANSPORT_ERRORS: tuple[type[Exception], ...] = (BotoConnectionError, HTTPClientError)


class AwsCallCounter:
    """Counts AWS API calls per ``service.Operation`` (retries are not extra calls)."""

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self._calls: Counter[str] = Counter()
        self._answered = 0

    def record(self, operation: str) -> None:
        with self._lock:
            self._calls[operation] += 1

    def record_answer(self) -> None:
        with self._lock:
            self._answered += 1

    def answered(self) -> int:
        """Calls AWS gave an HTTP answer to (any status): the endpoint was reached at least this often."""
        with self._lock:
            return self._answered

    def total(self) -> int:
        """All calls made so far through clients sharing this counter."""
        with self._lock:
            return sum(self._calls.values())

    def by_operation(self) -> dict[str, int]:
        """``{"ecs.DescribeServices": 3, ...}``, most frequent first."""
        with self._lock:
            return dict(self._calls.most_common())


class AwsClients:
    """Lazily created boto3 clients sharing one session, config and call counter."""

    def __init__(self, session: boto3.session.Session, *, region: str, endpoint_url: str | None, config: Config) -> None:
        self._session = session
        self.region = region
        self.endpoint_url = endpoint_url
        self._config = config
        self._clients: dict[str, BaseClient] = {}
        self._lock = threading.Lock()
        self.calls = AwsCallCounter()

    def client(self, service_name: str) -> Any:
        """The client for ``service_name``, created on first use."""
        with self._lock:
            existing = self._clients.get(service_name)
            if existing is not None:
                return existing
            try:
                client = self._session.client(
                    service_name, region_name=self.region, endpoint_url=self.endpoint_url, config=self._config
                )
            except (InvalidRegionError, NoRegionError) as error:
                raise translate_aws_error(error, region=self.region) from None
            _require_known_region(self._session, self.region, client.meta.endpoint_url)
            client.meta.events.register("before-call", self._count_call)
            client.meta.events.register("after-call", self._count_answer)  # any HTTP answer, errors included
            self._clients[service_name] = client
            return client

    def _count_call(self, event_name: str = "", **_: Any) -> None:
        # event_name is "before-call.<service>.<Operation>"
        self.calls.record(event_name.removeprefix("before-call."))

    def _count_answer(self, **_: Any) -> None:
        self.calls.record_answer()

    @property
    def ecs(self) -> Any:
        return self.client("ecs")

    @property
    def ec2(self) -> Any:
        return self.client("ec2")

    @property
    def logs(self) -> Any:
        return self.client("logs")

    @property
    def ecr(self) -> Any:
        return self.client("ecr")

    @property
    def secretsmanager(self) -> Any:
        return self.client("secretsmanager")

    @property
    def cloudwatch(self) -> Any:
        return self.client("cloudwatch")

    @property
    def elbv2(self) -> Any:
        return self.client("elbv2")


def make_clients(
    region: str | None,
    endpoint_url: str | None = None,
    *,
    profile: str | None = None,
    connect_timeout_s: float = DEFAULT_CONNECT_TIMEOUT_S,
    read_timeout_s: float = DEFAULT_READ_TIMEOUT_S,
    max_attempts: int = DEFAULT_MAX_ATTEMPTS,
) -> AwsClients:
    """Clients for the harness; the region must be resolvable now (argument or boto3 chain).

    Raises ``CouldNotVerify`` for a missing profile, a missing or malformed region.
    Credentials are only looked for on the first call (boto3 resolves them lazily).
    """
    try:
        session = boto3.session.Session(profile_name=profile, region_name=region)
    except ProfileNotFound as error:
        raise translate_aws_error(error) from None
    resolved_region = region or session.region_name
    if not resolved_region:
        raise CouldNotVerify(f"no AWS region set: {FIX_REGION}", kind=Kind.NO_REGION)
    config = Config(
        connect_timeout=connect_timeout_s,
        read_timeout=read_timeout_s,
        retries={"mode": "standard", "total_max_attempts": max_attempts},
    )
    return AwsClients(session, region=resolved_region, endpoint_url=endpoint_url, config=config)


def _require_known_region(session: boto3.session.Session, region: str, endpoint_url: str) -> None:
    """Fail fast on a typo such as ``us-est-1`` instead of a DNS error after retries.

    Only for AWS's own endpoints: a custom endpoint (moto, LocalStack) accepts any name.
    """
    host = urlsplit(endpoint_url).hostname or ""
    if not (host.endswith(".amazonaws.com") or host.endswith(".amazonaws.com.cn")):
        return
    known = {name for partition in session.get_available_partitions() for name in session.get_available_regions("ecs", partition)}
    if region not in known:
        raise CouldNotVerify(
            f"unknown AWS region {region!r}: pass --aws-region us-east-1 (or another region where the service runs)",
            kind=Kind.UNKNOWN_REGION,
            details={"region": region},
        )


def error_code(error: BaseException) -> str:
    """The AWS error code of a ``ClientError`` ("" for anything else)."""
    if isinstance(error, ClientError):
        return str(error.response.get("Error", {}).get("Code", ""))
    return ""


def is_transient_aws_error(error: BaseException) -> bool:
    """Throttling or a 5xx that outlived botocore's own retries: worth another poll."""
    if not isinstance(error, ClientError):
        return False
    status = int(error.response.get("ResponseMetadata", {}).get("HTTPStatusCode") or 0)
    return error_code(error) in THROTTLING_CODES or status >= 500


def translate_aws_error(
    error: BaseException,
    *,
    region: str | None = None,
    endpoint_url: str | None = None,
    cluster: str | None = None,
    service: str | None = None,
) -> CouldNotVerify:
    """One line saying what went wrong talking to AWS and how to fix it.

    AWS messages are only quoted for plain API errors: auth failures may echo
    signing material, so for those only the error code is named.
    """
    where = f" in region {region}" if region else ""
    if isinstance(error, CouldNotVerify):
        return error
    if isinstance(error, (NoCredentialsError, PartialCredentialsError)):
        return CouldNotVerify(f"no AWS credentials found: {FIX_CREDENTIALS}", kind=Kind.NO_CREDENTIALS)
    if isinstance(error, CredentialRetrievalError):
        return CouldNotVerify(
            f"AWS credentials could not be loaded ({type(error).__name__}): {FIX_CREDENTIALS}", kind=Kind.NO_CREDENTIALS
        )
    if isinstance(error, ProfileNotFound):
        return CouldNotVerify(
            f"AWS profile {getattr(error, 'kwargs', {}).get('profile', '?')!r} not found: fix AWS_PROFILE (aws configure list-profiles)",
            kind=Kind.NO_CREDENTIALS,
        )
    if isinstance(error, NoRegionError):
        return CouldNotVerify(f"no AWS region set: {FIX_REGION}", kind=Kind.NO_REGION)
    if isinstance(error, InvalidRegionError):
        return CouldNotVerify(
            f"unknown AWS region {region!r}: pass --aws-region us-east-1", kind=Kind.UNKNOWN_REGION, details={"region": region}
        )
    if isinstance(error, TRANSPORT_ERRORS):
        # "transient": a reset or a timeout in the middle of a wait is the network's; the wait polls again.
        url = getattr(error, "kwargs", {}).get("endpoint_url") or endpoint_url or "the AWS endpoint"
        return CouldNotVerify(
            f"AWS endpoint unreachable: {url} ({type(error).__name__}); check the network, proxy or AWS_ENDPOINT_URL",
            kind=Kind.AWS_UNREACHABLE,
            details={"endpoint_url": url, "transient": True, "error": type(error).__name__},
        )
    if isinstance(error, ClientError):
        return _translate_client_error(error, where=where, cluster=cluster, service=service)
    return CouldNotVerify(f"AWS call failed: {type(error).__name__}: {_first_line(str(error))}", kind=Kind.AWS_ERROR)


def _translate_client_error(error: ClientError, *, where: str, cluster: str | None, service: str | None) -> CouldNotVerify:
    code = error_code(error)
    operation = getattr(error, "operation_name", "") or "an AWS call"
    message = _first_line(str(error.response.get("Error", {}).get("Message", "")))
    if code == "ClusterNotFoundException":
        return CouldNotVerify(
            f"ECS cluster {cluster!r} not found{where}: check --ecs-cluster (aws ecs list-clusters)",
            kind=Kind.CLUSTER_NOT_FOUND,
            details={"cluster": cluster},
        )
    if code in ("ServiceNotFoundException", "ServiceNotActiveException"):
        return service_not_found(cluster or "?", service or "?", where=where)
    if code in ACCESS_DENIED_CODES:
        return CouldNotVerify(
            f"AWS denied {operation}{where} ({code}): grant it to the identity running the smoke tests",
            kind=Kind.ACCESS_DENIED,
            details={"operation": operation},
        )
    if code in AUTH_CODES:
        return CouldNotVerify(
            f"AWS rejected the credentials ({code}): refresh them (aws sso login, new keys) or {FIX_CREDENTIALS}",
            kind=Kind.BAD_CREDENTIALS,
        )
    # "transient": a waiting loop may poll again within its own deadline.
    if code in THROTTLING_CODES:
        return CouldNotVerify(
            f"AWS kept throttling {operation} ({code}) after retries: run again later or with fewer parallel jobs",
            kind=Kind.THROTTLED,
            details={"code": code, "transient": True},
        )
    return CouldNotVerify(
        f"AWS error on {operation}: {code}: {message}",
        kind=Kind.AWS_ERROR,
        details={"code": code, "transient": is_transient_aws_error(error)},
    )


def service_not_found(cluster: str, service: str, *, where: str = "", status: str | None = None) -> CouldNotVerify:
    """The one line for a missing (or deleted) ECS service."""
    state = f" (status {status})" if status else ""
    return CouldNotVerify(
        f"ECS service {service!r} not found in cluster {cluster!r}{where}{state}: check --ecs-service "
        f"(aws ecs list-services --cluster {cluster})",
        kind=Kind.SERVICE_NOT_FOUND,
        details={"cluster": cluster, "service": service},
    )


@contextmanager
def aws_errors(clients: AwsClients, *, cluster: str | None = None, service: str | None = None) -> Iterator[None]:
    """Turn botocore exceptions raised inside the block into ``CouldNotVerify``."""
    try:
        yield
    except CouldNotVerify:
        raise
    except (ClientError, NoCredentialsError, PartialCredentialsError, CredentialRetrievalError, NoRegionError,
            InvalidRegionError, *TRANSPORT_ERRORS, ProfileNotFound) as error:  # fmt: skip
        raise translate_aws_error(
            error, region=clients.region, endpoint_url=clients.endpoint_url, cluster=cluster, service=service
        ) from error


def _first_line(text: str, limit: int = 200) -> str:
    line = text.strip().splitlines()[0] if text.strip() else ""
    return line if len(line) <= limit else line[: limit - 1] + "…"
