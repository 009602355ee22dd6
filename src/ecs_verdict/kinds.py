"""Every kind of outcome and failure the harness names: one enum, so an unknown kind cannot be made.

A ``HarnessOutcome`` (the wait, discovery, AWS) and a ``Failure`` (what diagnosis reads)
carry a :class:`Kind`. It is a ``StrEnum``: it compares equal to its text and goes into
JSON as that text; JSON read back (an xdist worker, a forked lane) goes through
:meth:`Kind.parse`, which refuses a kind it does not know in one line instead of
guessing a category for it.
"""

from __future__ import annotations

from enum import StrEnum


class Kind(StrEnum):
    # Could not verify: AWS and the set-up.
    NO_CREDENTIALS = "no_credentials"
    BAD_CREDENTIALS = "bad_credentials"
    ACCESS_DENIED = "access_denied"
    AWS_UNREACHABLE = "aws_unreachable"
    THROTTLED = "throttled"
    AWS_ERROR = "aws_error"
    NO_REGION = "no_region"
    UNKNOWN_REGION = "unknown_region"
    CLUSTER_NOT_FOUND = "cluster_not_found"
    SERVICE_NOT_FOUND = "service_not_found"
    CONTAINER_NOT_FOUND = "container_not_found"
    NO_PORT = "no_port"
    DESIRED_ZERO = "desired_zero"
    NO_RUNNING_TASK = "no_running_task"
    NO_PRIMARY_DEPLOYMENT = "no_primary_deployment"
    NO_PUBLIC_IP = "no_public_ip"
    NO_PRIVATE_IP = "no_private_ip"
    TARGET_UNREACHABLE = "target_unreachable"
    ACCOUNTS = "accounts"  # a suite's accounts (its secret) could not be read or refused to log in
    DEADLINE = "deadline"
    HARNESS_ERROR = "harness_error"
    NO_PAUSED_HOOK = "no_paused_hook"
    HOOK_ACTION_FAILED = "hook_action_failed"
    # The deploy failed.
    HEALTH_PATH_404 = "health_path_404"
    TASKS_STOPPING = "tasks_stopping"
    ROLLED_BACK = "rolled_back"
    IMAGE_MISMATCH = "image_mismatch"
    TASK_DEFINITION_MISMATCH = "task_definition_mismatch"
    # A check's failure.
    CHECK_FAILED = "check_failed"
    NO_ANSWER = "no_answer"  # no HTTP answer after the retries: that check could not be verified on that task
    UNREACHABLE = "unreachable"
    LB_TARGET_UNHEALTHY = "lb_target_unhealthy"  # a new task unhealthy in a target group of the service
    LB_ROUTING = "lb_routing"  # a check failed through the listener but passed at every task
    TASK_CRASHED = "task_crashed"  # a task under test stopped mid-run on its own
    TASK_STOPPED = "task_stopped"  # stopped from outside, and no replacement was healthy in time

    @classmethod
    def parse(cls, value: object) -> Kind:
        """The kind named by ``value`` (JSON, an exception's attribute); ``ValueError`` naming it when unknown."""
        if isinstance(value, cls):
            return value
        try:
            return cls(str(value))
        except ValueError:
            raise ValueError(f"unknown outcome kind {value!r}: the harness names none such "
                             f"(ecs_verdict.kinds.Kind lists them)") from None
