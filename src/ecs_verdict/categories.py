"""The named causes a run can end with: each category's title and next step (pytest-free).

A ``Diagnosis`` is one named cause: ``[category] summary``, one line of evidence, and what
to do next. The categories and next steps come from the team's runbook
(``shared/deployment-lessons.md``), its generic lessons only (ECS, tasks, health, HTTP,
image, task definition, app evidence in the logs): a suite adds causes of its own
(``ecs_verdict.suite.SuiteCause``) and may give its own next step for one of these. The
could-not-verify ones (``NOT_VERIFIED_KINDS``) each name a set-up problem the harness met
before it could judge the release. The rules that choose a category live in
``ecs_verdict.diagnosis``.
"""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass

from ecs_verdict.kinds import Kind
from ecs_verdict.lint import FIXED_HEALTH_CHECK_EXAMPLE
from ecs_verdict.redact import scrub_patterns

MAX_EVIDENCE_CHARS = 300
NO_ANSWER = "no_answer"

CATEGORIES: dict[str, str] = {
    "permission_regression": "Security: a permission that must be denied was granted, "
    "or a request without credentials was accepted",
    "arch_mismatch": "The image was built for the wrong CPU architecture (exec format error)",
    "health_path_mismatch": "The health check path answers 404 while another health path answers",
    "health_check_command": "The container health check calls curl/wget, which the image lacks",
    "stale_image": "The running image is not the one expected (stale build or old deployment)",
    "migrations_not_applied": "Database tables are missing: migrations did not run before the app started",
    "db_adapter_error": "Database adapter incompatibility (cursor attribute such as rowcount missing)",
    "db_concurrency_error": "The database adapter fails under simultaneous requests (one connection and cursor "
    "shared by the server's threads)",
    "code_error": "The application raised a Python error (AttributeError, NameError, TypeError...)",
    "task_restarting": "Tasks keep stopping (failed container health checks) with no more specific cause",
    "task_crashed": "A task under test stopped mid-run: its essential container exited, crashed, ran out of memory "
    "or failed its health checks",
    "deployment_rolled_back": "The deployment failed and ECS rolled it back",
    "target_unreachable": "The task could not be reached over the network",
    "not_stable": "The service did not become stable before the deadline",
    "lb_health_path_mismatch": "The load balancer's target group health check probes a path the task answers with "
    "an error code (e.g. 404)",
    "lb_target_timeout": "The load balancer cannot reach the tasks: its health checks time out (security group, "
    "port or network ACL)",
    "lb_target_unhealthy": "The tasks fail the load balancer's target group health checks",
    "contract_violation": "A response broke the API contract",
    "lb_routing": "A check fails through the load balancer's listener but passes at every task's address: the "
    "listener's rule sends the traffic elsewhere (another target group, a host or path condition)",
    # Could not verify: nothing is known about the release; each cause has its own fix.
    "no_credentials": "The harness found no usable AWS credentials",
    "aws_access_denied": "AWS refused a call the harness needs (IAM)",
    "aws_unreachable": "The AWS endpoint could not be reached",
    "aws_error": "AWS kept answering with an error (throttling, 5xx) the harness could not wait out",
    "unknown_region": "No AWS region, or one that does not exist",
    "service_not_found": "The ECS cluster or service does not exist (or is not active)",
    "container_not_found": "The task definition has no such container, or it maps no port",
    "no_running_task": "The service has no running task of its PRIMARY deployment to test",
    "smoke_accounts": "The smoke accounts are missing, unreadable, malformed, or refused at login",
    "checks_errored": "Checks could not run (errors, not failures): nothing was proven",
    NO_ANSWER: "A request got no HTTP answer after its retries: that check could not be verified on that task",
    "no_checks_ran": "No check ran on a task (deselected, skipped, or no test): that task is not verified",
    "task_stopped": "ECS stopped a task under test mid-run (scale-in, deployment, Spot, a person) and no "
    "replacement was healthy before the run's deadline",
    "harness_error": "The harness itself failed; nothing is known about the release",
    "no_paused_hook": "--continue-deployment found no service deployment paused at a PAUSE lifecycle hook",
    "hook_action_failed": "The gate passed but ECS refused to continue the paused deployment",
    "task_definition_lint": "--strict-lint: the task definition has warnings",
}

NEXT_STEPS: dict[str, str] = {
    "permission_regression": "Do not ship: check the service's role permission table and the auth dependency of the "
    "route, then redeploy the previous task definition until it is fixed.",
    "arch_mismatch": "Rebuild for Fargate's architecture: `docker buildx build --platform linux/amd64 -t $ECR_REPO:latest "
    "--push .`; check with `docker image inspect $IMAGE | grep Architecture`.",
    "health_path_mismatch": "Make the task definition's health check probe the path the app serves (/health vs "
    "/api/health), register the task definition and redeploy.",
    "health_check_command": "Use Python's urllib in the health check instead of curl/wget: "
    f'["CMD-SHELL", "{FIXED_HEALTH_CHECK_EXAMPLE}"], then register and redeploy.',
    "stale_image": "Rebuild without cache (`docker build --no-cache --platform linux/amd64`), push to ECR, then "
    "`aws ecs update-service --force-new-deployment`; verify the ECR digest matches.",
    "migrations_not_applied": "Run the database migrations before the app starts: an ENTRYPOINT script (chmod +x) "
    "that runs them, then `exec`s the server; look for the migrations' last line in the start-up logs.",
    "db_adapter_error": "Do not rely on cursor.rowcount (the PostgreSQL adapter lacks it): check existence with a "
    "SELECT before the UPDATE/DELETE, and test database operations against PostgreSQL locally.",
    "db_concurrency_error": "Give each request its own database connection (a pool such as "
    "psycopg2.pool.ThreadedConnectionPool, or a connection per request) instead of one connection and cursor shared "
    "by the server's threads; reproduce with simultaneous requests against PostgreSQL before redeploying.",
    "code_error": "Fix the call named in the quoted log line (read the full traceback in CloudWatch), verify the Python "
    "API exists, and redeploy.",
    "task_restarting": "Read the stopped tasks' CloudWatch logs for start-up errors; verify the health endpoint "
    "answers 200 inside the container and startPeriod covers migrations.",
    "task_crashed": "Read the task's last log lines (CloudWatch, its stream) and the container's exit code: 137 with "
    "OutOfMemoryError means raise the task's memory or find what grows; another exit code is the app ending on its "
    "own. Fix it and redeploy.",
    "deployment_rolled_back": "Read the service events and the stopped tasks' logs for the new task definition, fix "
    "the cause and redeploy.",
    "target_unreachable": "Fetch the task's current public IP (it changes on every restart), check that the task is "
    "RUNNING and that its security group allows the port from this runner.",
    "not_stable": "Wait for the service to settle (`aws ecs wait services-stable`; a deployment takes 5-7 minutes) or "
    "raise the deadline; if it never settles, read the service events and stopped tasks.",
    "lb_health_path_mismatch": "Make the target group's health check probe the path the app serves (the one its "
    "container health check probes): `aws elbv2 modify-target-group --target-group-arn ARN --health-check-path "
    "/health`, or serve the path; ECS replaces tasks that fail ELB health checks once healthCheckGracePeriodSeconds "
    "ends.",
    "lb_target_timeout": "Let the load balancer in: allow the container port in the tasks' security group from the "
    "load balancer's security group (`aws ec2 authorize-security-group-ingress --group-id TASK_SG --protocol tcp "
    "--port PORT --source-group ALB_SG`), check the subnets' network ACLs, and that the app listens on 0.0.0.0 on "
    "the target group's health check port.",
    "lb_target_unhealthy": "Read ELB's reason (`aws elbv2 describe-target-health --target-group-arn ARN`), compare "
    "the target group's health check port, path and success codes with what the task serves, and read the task's "
    "logs; fix and redeploy.",
    "contract_violation": "Compare the response with the API contract; fix the service, or update the contract if the "
    "change was intended.",
    "lb_routing": "Check the listener rule named in the evidence (`aws elbv2 describe-rules`): it must forward to the "
    "service's target group and match the host and path users send; fix it with `aws elbv2 modify-rule`, then run "
    "again.",
    "no_credentials": "Give the job AWS credentials: OIDC (aws-actions/configure-aws-credentials), AWS_PROFILE, or "
    "AWS_ACCESS_KEY_ID/AWS_SECRET_ACCESS_KEY; check with `aws sts get-caller-identity`.",
    "aws_access_denied": "Grant the identity the harness runs as the ECS, EC2 and logs read calls it needs "
    "(ecs:DescribeServices, ecs:ListTasks, ecs:DescribeTasks, ecs:DescribeTaskDefinition, ec2:DescribeNetworkInterfaces, "
    "logs:GetLogEvents, secretsmanager:GetSecretValue on the smoke secret).",
    "aws_unreachable": "Check the runner's network, proxy and AWS_ENDPOINT_URL; then run again.",
    "aws_error": "Run again later or with fewer parallel jobs; if it persists, check the AWS Health Dashboard.",
    "unknown_region": "Pass --aws-region (or AWS_REGION) naming the region where the service runs, e.g. us-east-1.",
    "service_not_found": "Check --ecs-cluster and --ecs-service (`aws ecs list-clusters`, `aws ecs list-services "
    "--cluster NAME`) and the region.",
    "container_not_found": "Pass --ecs-container naming the container that serves the API (and --target-port if it "
    "maps several ports).",
    "no_running_task": "Scale the service up or wait for ECS to start its tasks (`aws ecs describe-services`), then run "
    "again.",
    "smoke_accounts": "Fix the smoke accounts the suite reads (its environment variables, or the --smoke-secret "
    "secret in the shape the evidence names), and check the passwords still log in.",
    "checks_errored": "Read the errors in summary.md or junit.xml; they are the harness or its set-up failing, "
    "not the service.",
    NO_ANSWER: "Nothing is known about what the service would answer: run again; if it repeats on one task, "
    "look at that task (CPU, memory, restarts) and at the network between this runner and it (resets, timeouts "
    "from a proxy, NAT or load balancer); the retries are steps of the test in the Allure report.",
    "no_checks_ran": "Run a selection that checks every task: widen -k/-m (the report lists what was left out and "
    "why), add read-only tests before using --read-only, or register the suite's folder in smoke_suites "
    "(pytest.ini or -o smoke_suites=FOLDER) so its tests get the deployment's tasks.",
    "task_stopped": "Run the gate again once the service is stable (`aws ecs wait services-stable`); if ECS keeps "
    "stopping tasks (Spot interruptions, scaling), run it outside scaling activity or raise --stable-timeout.",
    "harness_error": "Read harness-error.txt in the report folder and file it with the harness's maintainers; "
    "run again.",
    "no_paused_hook": "Run the gate while the blue/green deployment waits at its PAUSE hook: give the service "
    "deploymentConfiguration strategy BLUE_GREEN with a lifecycleHooks entry of targetType PAUSE (e.g. at "
    "POST_SCALE_UP), start the deploy, then run the gate; `aws ecs describe-service-deployments` shows "
    "lifecycleHookDetails AWAITING_ACTION. Drop --continue-deployment for a rolling service.",
    "hook_action_failed": "Give the gate's role ecs:ContinueServiceDeployment on the service's service deployments "
    "(infra/iam-gate-policy.json; the read-only role does not grant it), or continue by hand before the hook times "
    "out: `aws ecs continue-service-deployment --service-deployment-arn ARN --hook-id ID --action CONTINUE`.",
    "task_definition_lint": "Fix the task definition warnings listed in the report (health check command, path, "
    "startPeriod), register it and redeploy; or drop --strict-lint.",
}

# What each could-not-verify outcome kind is, for a person: its category and what the summary says.
NOT_VERIFIED_KINDS: dict[str, str] = {
    "no_credentials": "no_credentials",
    "bad_credentials": "no_credentials",
    "access_denied": "aws_access_denied",
    "aws_unreachable": "aws_unreachable",
    "throttled": "aws_error",
    "aws_error": "aws_error",
    "no_region": "unknown_region",
    "unknown_region": "unknown_region",
    "cluster_not_found": "service_not_found",
    "service_not_found": "service_not_found",
    "container_not_found": "container_not_found",
    "no_port": "container_not_found",
    "desired_zero": "no_running_task",
    "no_running_task": "no_running_task",
    "no_primary_deployment": "no_running_task",
    "no_public_ip": "target_unreachable",
    "no_private_ip": "target_unreachable",
    "target_unreachable": "target_unreachable",
    "accounts": "smoke_accounts",
    "deadline": "not_stable",
    "harness_error": "harness_error",
    "no_paused_hook": "no_paused_hook",
    "hook_action_failed": "hook_action_failed",
}


# Diagnoses that already say why a run could not verify (exit 6): no "checks errored" needs adding to them.
NOT_VERIFIED_CATEGORIES = frozenset({*NOT_VERIFIED_KINDS.values(), "task_stopped"})


def diagnose_not_verified(kind: Kind, message: str, evidence: Iterable[str] = ()) -> Diagnosis:
    """The diagnosis of a could-not-verify outcome: its own category, the outcome's line, its next step.

    Only ``deadline`` needs the gathered evidence (``diagnose``); every other kind says
    exactly what is wrong already. A kind with no could-not-verify category is refused, never guessed.
    """
    category = NOT_VERIFIED_KINDS.get(kind)
    if category is None:
        raise ValueError(f"{kind!r} is not a could-not-verify kind (categories.NOT_VERIFIED_KINDS)")
    first = next(iter(evidence), "")
    return make_diagnosis(category, None, message, first or message)


@dataclass(frozen=True, slots=True)
class Diagnosis:
    """One named cause: ``[category] summary``, one line of evidence, and what to do next."""

    category: str
    task_id: str | None
    summary: str
    evidence: str
    next_step: str

    def message(self) -> str:
        """``[category] summary``: how a cause is named in every report."""
        return f"[{self.category}] {self.summary}"

    def as_dict(self) -> dict[str, str | None]:
        """The verdict.json ``diagnoses`` entry."""
        return {
            "category": self.category,
            "task_id": self.task_id,
            "summary": self.summary,
            "evidence": self.evidence,
            "next_step": self.next_step,
        }


def one_line(text: str, limit: int = MAX_EVIDENCE_CHARS) -> str:
    """Collapse whitespace, mask credential-shaped text, and cut to ``limit`` characters."""
    flat = scrub_patterns(" ".join(str(text).split()))
    return flat if len(flat) <= limit else flat[: limit - 1] + "…"


def short_id(task_id: str | None) -> str:
    return (task_id or "?")[:8]


def make_diagnosis(category: str, task_id: str | None, summary: str, evidence: str, next_step: str | None = None) -> Diagnosis:
    return Diagnosis(category, task_id, one_line(summary), one_line(evidence), next_step or NEXT_STEPS[category])
