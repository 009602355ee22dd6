"""A verified address of one running copy of the service, and how it travels.

A ``Target`` is made either by discovery (``source="ecs"``: one task of the
service's PRIMARY deployment), from a URL the user gave (``source="url"``), or from
a load balancer's listener (``source="lb"``, ``ecs_verdict.listeners``: not a task,
the way users reach the tasks). It crosses process boundaries to xdist workers as a
plain ``TargetDict``.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Literal, TypedDict
from urllib.parse import urlsplit

TargetSource = Literal["ecs", "url", "lb"]

# ECS task ids are 32 hex characters; 8 of them are unique within one service in
# practice and short enough for test ids ("test_health[3f2a1b2c]").
SHORT_ID_LENGTH = 8


class TargetDict(TypedDict):
    """The JSON-able shape of a ``Target`` (for ``workerinput`` and reports)."""

    task_id: str
    short_id: str
    task_arn: str | None
    base_url: str
    ip: str
    private_ip: str | None
    public_ip: str | None
    eni_id: str | None
    image_digest: str | None
    task_definition_arn: str | None
    started_at: str | None
    source: TargetSource


@dataclass(frozen=True, slots=True, repr=False)
class Target:
    """One address the smoke tests talk to, with what is known about the task behind it."""

    task_id: str
    short_id: str
    task_arn: str | None
    base_url: str
    ip: str
    private_ip: str | None
    public_ip: str | None
    eni_id: str | None
    image_digest: str | None
    task_definition_arn: str | None
    started_at: str | None
    source: TargetSource

    def __repr__(self) -> str:
        # Short: it is the test parameter Allure and pytest show next to every check.
        if self.source == "lb":
            return f"Target(load balancer {self.short_id} at {self.base_url})"
        return f"Target(task {self.short_id} at {self.base_url})"

    def to_dict(self) -> TargetDict:
        """The target as JSON-able data."""
        return TargetDict(
            task_id=self.task_id,
            short_id=self.short_id,
            task_arn=self.task_arn,
            base_url=self.base_url,
            ip=self.ip,
            private_ip=self.private_ip,
            public_ip=self.public_ip,
            eni_id=self.eni_id,
            image_digest=self.image_digest,
            task_definition_arn=self.task_definition_arn,
            started_at=self.started_at,
            source=self.source,
        )

    @classmethod
    def from_dict(cls, data: TargetDict) -> Target:
        """Rebuild a target from ``to_dict()`` output (e.g. on an xdist worker)."""
        return cls(
            task_id=data["task_id"],
            short_id=data["short_id"],
            task_arn=data.get("task_arn"),
            base_url=data["base_url"],
            ip=data["ip"],
            private_ip=data.get("private_ip"),
            public_ip=data.get("public_ip"),
            eni_id=data.get("eni_id"),
            image_digest=data.get("image_digest"),
            task_definition_arn=data.get("task_definition_arn"),
            started_at=data.get("started_at"),
            source=data["source"],
        )

    @property
    def is_task(self) -> bool:
        """False for a load balancer's listener: no task, log stream or ECS fate behind it."""
        return self.source != "lb"

    def describe(self) -> str:
        """One line for headers and evidence: ``task 3f2a1b2c at http://1.2.3.4:8000``."""
        if self.source == "url":
            return f"target {self.base_url}"
        if self.source == "lb":
            return f"load balancer {self.short_id} at {self.base_url}"
        return f"task {self.short_id} at {self.base_url}"


def short_task_id(task_id: str) -> str:
    """The prefix of an ECS task id used in test ids and messages."""
    return task_id[:SHORT_ID_LENGTH]


def task_id_from_arn(task_arn: str) -> str:
    """``arn:aws:ecs:r:a:task/cluster/<id>`` (or the old ``task/<id>``) -> ``<id>``."""
    return task_arn.rsplit("/", 1)[-1]


def format_base_url(ip: str, port: int, scheme: str = "http") -> str:
    """``http://ip:port``, with brackets for an IPv6 address."""
    host = f"[{ip}]" if ":" in ip else ip
    return f"{scheme}://{host}:{port}"


def base_url_of(url: str, what: str) -> tuple[str, int, str]:
    """``(host, port, base URL)`` of an ``http(s)://host[:port]`` URL without path, query or credentials.

    The one rule for a URL the user gives (``--target-url``, ``--lb-url``); ``ValueError`` names what
    is wrong, starting with ``what`` ("target URL").
    """
    text = url.strip()
    parts = urlsplit(text)
    if parts.scheme not in ("http", "https") or not parts.hostname:
        raise ValueError(f"{what} must look like http://host:port, got {text!r}")
    if parts.path not in ("", "/") or parts.query or parts.fragment:
        raise ValueError(f"{what} must not have a path or query (the tests add them), got {text!r}")
    if parts.username or parts.password:
        # Credentials in a URL would leak into test ids and reports.
        raise ValueError(f"{what} must not carry credentials (user:password@)")
    try:
        port = parts.port or (443 if parts.scheme == "https" else 80)
    except ValueError:
        raise ValueError(f"{what} has an invalid port: {text!r}") from None
    return parts.hostname, port, format_base_url(parts.hostname, port, parts.scheme)


def target_from_url(url: str) -> Target:
    """A target for ``--target-url``; its id is derived from host and port (``base_url_of`` says what is refused)."""
    host, port, base_url = base_url_of(url, "target URL")
    task_id = f"url-{host}-{port}"
    return Target(
        task_id=task_id,
        short_id=task_id,
        task_arn=None,
        base_url=base_url,
        ip=host,
        private_ip=None,
        public_ip=None,
        eni_id=None,
        image_digest=None,
        task_definition_arn=None,
        started_at=None,
        source="url",
    )


def targets_from_urls(urls: list[str] | tuple[str, ...]) -> tuple[Target, ...]:
    """Targets for every ``--target-url``, duplicates (same host and port) dropped."""
    seen: dict[str, Target] = {}
    for url in urls:
        target = target_from_url(url)
        seen.setdefault(target.task_id, target)
    return tuple(seen.values())
