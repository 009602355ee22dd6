"""Checks through the load balancer's listener: found from the service, a target of their own in the grid.

The pytest-free part (``ecs_verdict.listeners``) runs against moto's ELBv2 in this process;
the runs are ``pytest smoke`` as a CI job makes them, against the stage, with a listener
played here by a small reverse proxy on loopback (``--lb-url``): forwarding to the tasks, or
to a server of another service (what a listener rule aimed at the wrong target group does).
"""

from __future__ import annotations

import http.server
import itertools
import json
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import boto3
import httpx
import pytest
from moto import mock_aws

from ecs_verdict.diagnosis import Failure, diagnose
from ecs_verdict.listeners import (Listener, discover_listeners, forward_target_groups, listener_arn_of_rule,
                                   parse_lb_url, passed_at_every_task)
from ecs_verdict.verdict import CheckRecord, TaskRecord, build_verdict, render_summary
from stage import Stage
from tests.conftest import StagePlan, on_shared_stage
from tests.loopback import serving
from tests.smoke_runs import run_smoke
from tests.test_bad_input import Row, assert_one_clear_line, usage

REGION = "us-east-1"
READ_ONLY_HEALTH = ("-k", "deployment or health")  # the checks that need no smoke account


# -- the pytest-free discovery, against moto's ELBv2 ------------------------------------------------------


class Elb:
    """A VPC, an application load balancer and two target groups in moto (blue is the service's)."""

    def __init__(self) -> None:
        ec2 = boto3.client("ec2", REGION)
        self.client = boto3.client("elbv2", REGION)
        vpc = ec2.create_vpc(CidrBlock="10.0.0.0/16")["Vpc"]["VpcId"]
        subnets = [ec2.create_subnet(VpcId=vpc, CidrBlock=f"10.0.{i}.0/24", AvailabilityZone=f"{REGION}{zone}")
                   ["Subnet"]["SubnetId"] for i, zone in ((1, "a"), (2, "b"))]
        balancer = self.client.create_load_balancer(Name="board", Subnets=subnets)["LoadBalancers"][0]
        self.arn, self.dns = balancer["LoadBalancerArn"], balancer["DNSName"]
        self.blue, self.green, self.other = (self.client.create_target_group(
            Name=name, Protocol="HTTP", Port=8000, VpcId=vpc, TargetType="ip")["TargetGroups"][0]["TargetGroupArn"]
            for name in ("blue", "green", "other"))

    def listener(self, port: int, group: str) -> str:
        return self.client.create_listener(LoadBalancerArn=self.arn, Protocol="HTTP", Port=port, DefaultActions=[
            {"Type": "forward", "TargetGroupArn": group}])["Listeners"][0]["ListenerArn"]

    def rule(self, listener: str, priority: int, group: str) -> str:
        return self.client.create_rule(
            ListenerArn=listener, Priority=priority, Conditions=[{"Field": "path-pattern", "Values": ["/*"]}],
            Actions=[{"Type": "forward", "ForwardConfig": {"TargetGroups": [{"TargetGroupArn": group, "Weight": 1}]}}],
        )["Rules"][0]["RuleArn"]


@pytest.fixture
def elb(aws_env: pytest.MonkeyPatch) -> Iterator[Elb]:
    with mock_aws():
        yield Elb()


def service_with(group: str, **advanced: str) -> dict[str, Any]:
    entry: dict[str, Any] = {"targetGroupArn": group, "containerName": "board", "containerPort": 8000}
    if advanced:
        entry["advancedConfiguration"] = advanced
    return {"serviceName": "board", "loadBalancers": [entry]}


def test_the_production_listener_is_the_one_whose_rule_forwards_to_the_services_target_group(elb: Elb) -> None:
    elb.listener(8081, elb.other)
    serving_listener = elb.listener(80, elb.blue)
    calls: list[str] = []
    elb.client.meta.events.register("before-call", lambda event_name, **_: calls.append(
        event_name.rsplit(".", 1)[-1]))
    found = discover_listeners(elb.client, service_with(elb.blue), container="board", lb_url=None,
                               blue_green_gate=False)
    # One call each, one DescribeRules per listener: what a run adds to its AWS budget.
    assert sorted(calls) == ["DescribeListeners", "DescribeLoadBalancers", "DescribeRules", "DescribeRules",
                             "DescribeTargetGroups"]
    [listener] = found.listeners
    assert (listener.role, listener.target_id, listener.port, listener.protocol) == ("production", "lb", 80, "HTTP")
    assert listener.base_url == f"http://{elb.dns}:80" and listener.url_from == "DNS name"
    assert listener.listener_arn == serving_listener and listener.rule == "default rule"
    assert listener.forwards_to == (elb.blue,) and listener.routing_note() is None
    target = listener.target()
    assert (target.task_id, target.source, target.is_task) == ("lb", "lb", False)


def test_what_the_target_health_wait_read_is_not_read_again(elb: Elb) -> None:
    elb.listener(80, elb.blue)
    calls: list[str] = []
    elb.client.meta.events.register("before-call", lambda event_name, **_: calls.append(event_name.rsplit(".", 1)[-1]))
    [listener] = discover_listeners(elb.client, service_with(elb.blue), container="board", lb_url=None,
                                    blue_green_gate=False, load_balancers_of={elb.blue: (elb.arn,)}).listeners
    assert listener.port == 80 and "DescribeTargetGroups" not in calls


def test_lb_url_overrides_the_dns_name(elb: Elb) -> None:
    elb.listener(443, elb.blue)
    [listener] = discover_listeners(elb.client, service_with(elb.blue), container="board",
                                    lb_url="https://api.example.test:443", blue_green_gate=False).listeners
    assert (listener.base_url, listener.url_from, listener.dns_name) == ("https://api.example.test:443", "--lb-url",
                                                                         elb.dns)


def test_a_target_group_no_listener_forwards_to_is_said_and_the_lb_url_still_checked(elb: Elb) -> None:
    elb.listener(80, elb.other)  # ELB lists no load balancer for a target group no rule forwards to
    found = discover_listeners(elb.client, service_with(elb.blue), container="board", lb_url=None,
                               blue_green_gate=False)
    assert found.listeners == ()
    [note] = found.notes
    assert "targetgroup/blue/" in note and "no load balancer" in note
    [listener] = discover_listeners(elb.client, service_with(elb.blue), container="board",
                                    lb_url="http://127.0.0.1:8080", blue_green_gate=False).listeners
    assert (listener.base_url, listener.url_from) == ("http://127.0.0.1:8080", "--lb-url")


def test_a_test_listener_forwarding_elsewhere_than_green_is_named(elb: Elb) -> None:
    production = elb.rule(elb.listener(80, elb.blue), 10, elb.blue)
    test = elb.rule(elb.listener(8080, elb.blue), 10, elb.other)
    service = service_with(elb.blue, alternateTargetGroupArn=elb.green, productionListenerRule=production,
                           testListenerRule=test)
    [listener] = discover_listeners(elb.client, service, container="board", lb_url=None,
                                    blue_green_gate=True).listeners
    note = listener.routing_note()
    assert note is not None and "targetgroup/other/" in note and "targetgroup/green/" in note


def test_a_service_without_a_load_balancer_makes_no_elb_call() -> None:
    found = discover_listeners(None, {"serviceName": "board", "loadBalancers": []}, container="board", lb_url=None,
                               blue_green_gate=False)
    assert found.listeners == () and found.notes == ()
    [by_url] = discover_listeners(None, {"loadBalancers": []}, container=None, lb_url="http://127.0.0.1:8080",
                                  blue_green_gate=False).listeners
    assert (by_url.target_id, by_url.base_url, by_url.url_from) == ("lb", "http://127.0.0.1:8080", "--lb-url")


def test_blue_green_checks_green_through_the_test_listener_once_test_traffic_has_shifted(elb: Elb) -> None:
    production = elb.rule(elb.listener(80, elb.blue), 10, elb.blue)
    test_listener = elb.listener(8080, elb.blue)
    test = elb.rule(test_listener, 10, elb.green)
    service = service_with(elb.blue, alternateTargetGroupArn=elb.green, productionListenerRule=production,
                           testListenerRule=test)
    found = discover_listeners(elb.client, service, container="board", lb_url=None, blue_green_gate=True)
    [listener] = found.listeners
    assert (listener.role, listener.target_id, listener.port) == ("test", "lb-test", 8080)
    assert listener.listener_arn == test_listener == listener_arn_of_rule(test)
    assert listener.service_target_group == elb.green and listener.routing_note() is None
    assert any("production listener is not checked" in note for note in found.notes)
    # Outside a gate the production rule ECS names is the one checked.
    [listener] = discover_listeners(elb.client, service, container="board", lb_url=None,
                                    blue_green_gate=False).listeners
    assert (listener.role, listener.port, listener.rule_arn) == ("production", 80, production)


def test_blue_green_before_the_test_traffic_shift_checks_green_by_address_only(elb: Elb) -> None:
    production = elb.rule(elb.listener(80, elb.blue), 10, elb.blue)
    test = elb.rule(elb.listener(8080, elb.blue), 10, elb.blue)
    service = service_with(elb.blue, alternateTargetGroupArn=elb.green, productionListenerRule=production,
                           testListenerRule=test)
    found = discover_listeners(elb.client, service, container="board", lb_url=None, blue_green_gate=True)
    assert found.listeners == ()
    [note] = found.notes
    assert "test traffic has not shifted to green" in note and "POST_TEST_TRAFFIC_SHIFT" in note


def test_a_forward_with_weight_zero_sends_nothing() -> None:
    actions = [{"Type": "forward", "ForwardConfig": {"TargetGroups": [{"TargetGroupArn": "a", "Weight": 0},
                                                                      {"TargetGroupArn": "b", "Weight": 5}]}},
               {"Type": "fixed-response"}]
    assert forward_target_groups(actions) == ("b",)
    assert forward_target_groups([{"Type": "forward", "TargetGroupArn": "c"}]) == ("c",)


@pytest.mark.parametrize(("text", "url"), [("http://127.0.0.5", "http://127.0.0.5:80"),
                                           ("https://api.example.test/", "https://api.example.test:443"),
                                           ("http://[::1]:8080", "http://[::1]:8080")])
def test_lb_url_is_normalised(text: str, url: str) -> None:
    assert parse_lb_url(text) == url


# -- the verdict and its diagnosis -----------------------------------------------------------------


def row(name: str, task_id: str, outcome: str) -> CheckRecord:
    return CheckRecord(name=name, task_id=task_id, outcome=outcome, duration_s=0.1, message="")  # type: ignore[typeddict-item]


def test_only_a_check_that_passed_at_every_task_it_ran_on_blames_the_listener() -> None:
    checks = [row("test_health", "t1", "passed"), row("test_health", "t2", "passed"), row("test_health", "lb", "failed"),
              row("test_me", "t1", "failed"), row("test_me", "lb", "failed"), row("test_x", "lb", "failed")]
    assert passed_at_every_task("test_health", checks, ["t1", "t2"])
    assert not passed_at_every_task("test_me", checks, ["t1", "t2"])  # the release's own failure
    assert not passed_at_every_task("test_x", checks, ["t1", "t2"])  # never ran by address: nothing to compare


def test_lb_routing_names_the_rule_and_both_target_groups() -> None:
    listener = Listener(role="production", base_url="http://127.0.0.60:80", protocol="HTTP", port=80,
                        rule_arn="arn:aws:elasticloadbalancing:r:1:listener-rule/app/board/1/2/3", rule="default rule",
                        forwards_to=("arn:aws:elasticloadbalancing:r:1:targetgroup/other/9",),
                        service_target_group="arn:aws:elasticloadbalancing:r:1:targetgroup/board/8")
    found = diagnose(Failure(kind="lb_routing", check="test_health", task_id="lb", message="404",
                             details={"status": 404, "request": "GET http://127.0.0.60:80/health",
                                      "listener": listener.to_dict()}))
    assert (found.category, found.task_id) == ("lb_routing", "lb")
    assert "targetgroup/other/9" in found.evidence and "targetgroup/board/8" in found.evidence
    assert "listener-rule/app/board/1/2/3" in found.next_step and "targetgroup/board/8" in found.next_step


def test_the_summary_shows_the_listener_as_a_column_and_says_what_it_is() -> None:
    listener = Listener(role="production", base_url="http://127.0.0.60:80", url_from="--lb-url")
    verdict = build_verdict(started_at=__import__("datetime").datetime(2026, 1, 1), duration_s=1.0,
                            target={"region": None, "cluster": "c", "service": "s", "deployment_id": None,
                                    "task_definition": None, "image_digest": None},
                            tasks=[TaskRecord(task_id="a" * 32, ip="127.0.0.2", image_digest=None, started_at=None)],
                            checks=[row("test_health", "a" * 32, "passed"), row("test_health", "lb", "passed")])
    verdict["listeners"] = [listener.to_dict()]  # type: ignore[typeddict-unknown-key]
    summary = render_summary(verdict)
    assert "| check | `aaaaaaaa` | `lb` |" in summary and "| test_health | ✅ | ✅ |" in summary
    assert "- `lb`: through the load balancer's production listener" in summary


# -- runs: a listener played by a reverse proxy on loopback ------------------------------------------------


def forwarding_to(backends: list[str]) -> type[http.server.BaseHTTPRequestHandler]:
    """A listener forwarding every request to ``backends`` in turn, as a load balancer's target group does."""
    turn = itertools.cycle(backends)

    class Forward(http.server.BaseHTTPRequestHandler):
        protocol_version = "HTTP/1.1"

        def _forward(self) -> None:
            body = self.rfile.read(int(self.headers.get("Content-Length") or 0))
            headers = {k: v for k, v in self.headers.items() if k.lower() not in ("host", "content-length",
                                                                                   "connection")}
            answer = httpx.request(self.command, next(turn) + self.path, headers=headers, content=body, timeout=10)
            self.send_response(answer.status_code)
            for key, value in answer.headers.items():
                if key.lower() not in ("content-length", "transfer-encoding", "connection", "content-encoding"):
                    self.send_header(key, value)
            self.send_header("Content-Length", str(len(answer.content)))
            self.end_headers()
            self.wfile.write(answer.content)

        do_GET = do_POST = do_DELETE = do_PUT = _forward

        def log_message(self, *args: Any) -> None:
            pass

    return Forward


class OtherService(http.server.BaseHTTPRequestHandler):
    """What sits behind the wrong target group: another service, which knows none of this one's paths."""

    protocol_version = "HTTP/1.1"

    def do_GET(self) -> None:
        body = json.dumps({"detail": "Not Found"}).encode()
        self.send_response(404)
        self.send_header("Content-Type", "application/json")
        self.send_header("Content-Length", str(len(body)))
        self.end_headers()
        self.wfile.write(body)

    do_POST = do_GET

    def log_message(self, *args: Any) -> None:
        pass


def task_urls(stage: Stage) -> list[str]:
    return [f"http://{ip}:8000" for ip in stage.task_ips().values()]


@on_shared_stage(StagePlan("healthy"))
def test_the_grid_has_the_listener_as_a_target_of_its_own(shared_stage: Stage, tmp_path: Path) -> None:
    with serving(forwarding_to(task_urls(shared_stage))) as lb_url:
        run = run_smoke(shared_stage.env, tmp_path, "-v", "--lb-url", lb_url)
    assert run.exit_code == 0, run.output[-3000:]
    assert "test_health_answers_healthy[lb] PASSED" in run.output
    outcomes = run.outcomes()
    read_only = {name for (name, task), outcome in outcomes.items() if task == "lb"}
    assert "test_health_answers_healthy" in read_only and "test_board_has_an_owner" in read_only
    # Writes pin a task: none went through the listener.
    assert not read_only & {"test_participant_cannot_remove_members", "test_removing_a_non_member_answers_404",
                            "test_single_use_invite_admits_the_participant_once"}
    assert all(outcome == "passed" for (name, task), outcome in outcomes.items() if task == "lb")
    [listener] = run.verdict["listeners"]
    assert (listener["target_id"], listener["kind"], listener["url"]) == ("lb", "load balancer", parse_lb_url(lb_url))
    assert "lb" not in {task["task_id"] for task in run.verdict["tasks"]}  # a target, not a task
    summary = (tmp_path / "summary.md").read_text()
    assert "| `lb` |" in summary.splitlines()[[i for i, line in enumerate(summary.splitlines())
                                               if line.startswith("| check |")][0]]


@on_shared_stage(StagePlan("healthy"))
def test_a_listener_that_sends_traffic_elsewhere_is_lb_routing(shared_stage: Stage, tmp_path: Path) -> None:
    with serving(OtherService) as wrong_backend, serving(forwarding_to([wrong_backend])) as lb_url:
        run = run_smoke(shared_stage.env, tmp_path, *READ_ONLY_HEALTH, "--lb-url", lb_url)
    assert run.exit_code == 1, run.output[-3000:]
    assert run.failing().keys() == {("test_health_answers_healthy", "lb")}
    [cause] = run.verdict["causes"]
    assert (cause["category"], cause["task_ids"]) == ("lb_routing", ["lb"])
    assert "passes at every task's address" in cause["summary"]
    assert "why [lb_routing]" in run.output


@pytest.mark.parametrize("row", [
    usage("lb-url-not-a-url", "--lb-url", "not-a-url", line="--lb-url (from command line): load balancer URL must "
          "look like http://host:port, got 'not-a-url'"),
    usage("lb-url-ftp", "--lb-url", "ftp://lb.example.test", line="--lb-url (from command line): load balancer URL "
          "must look like http://host:port, got 'ftp://lb.example.test'"),
    usage("lb-url-path", "--lb-url", "http://lb.example.test/api", line="--lb-url (from command line): load "
          "balancer URL must not have a path or query (the tests add them), got 'http://lb.example.test/api'"),
    usage("lb-url-credentials", "--lb-url", "http://u:p@lb.example.test", line="--lb-url (from command line): "
          "load balancer URL must not carry credentials"),
    usage("lb-url-env", env={"SMOKE_LB_URL": "lb.example.test:80", "API_BASE_URL": "http://127.0.0.1:9"},
          line="--lb-url (from env SMOKE_LB_URL): load balancer URL must look like http://host:port, got "
          "'lb.example.test:80'"),
], ids=lambda row: row.id)
def test_a_bad_lb_url_is_one_line_and_exit_4(row: Row, tmp_path: Path) -> None:
    assert_one_clear_line(run_smoke(row.env, tmp_path / "reports", *row.args), row)


# -- runs against the stage's load balancer (stage.load_balancer) ---------------------------------------------


@on_shared_stage(StagePlan("healthy", load_balancer=True))
def test_the_stages_production_listener_is_found_and_checked_through(shared_stage: Stage, tmp_path: Path) -> None:
    balancer = shared_stage.load_balancer
    run = run_smoke(shared_stage.env, tmp_path, "-v", *READ_ONLY_HEALTH)
    assert run.exit_code == 0, run.output[-3000:]
    assert "test_health_answers_healthy[lb] PASSED" in run.output
    [listener] = run.verdict["listeners"]
    assert (listener["role"], listener["url"], listener["url_from"]) == ("production", balancer.production_url,
                                                                         "--lb-url")
    assert (listener["listener_arn"], listener["rule_arn"]) == (balancer.production_listener_arn,
                                                                balancer.production_rule_arn)
    assert listener["forwards_to"] == [balancer.target_group_arn] == [listener["service_target_group"]]
    assert listener["problem"] is None


@on_shared_stage(StagePlan("healthy", load_balancer=True, lb_faults=("wrong_target_group",)))
def test_wrong_target_group_is_named_lb_routing(shared_stage: Stage, tmp_path: Path) -> None:
    run = run_smoke(shared_stage.env, tmp_path, *READ_ONLY_HEALTH)
    assert run.exit_code == 1, run.output[-3000:]
    assert run.failing().keys() == {("test_health_answers_healthy", "lb")}  # every task passes by address
    [cause] = run.verdict["causes"]
    assert (cause["category"], cause["task_ids"]) == ("lb_routing", ["lb"])
    assert "-> 503" in cause["evidence"]
    assert "civicforge-board-blue" in cause["evidence"]  # the service's target group, which no rule forwards to
    assert "why [lb_routing]" in run.output


GATE = ("--continue-deployment", "--stable-timeout", "120", *READ_ONLY_HEALTH)


def gate_through_both_hooks(stage: Stage, tmp_path: Path) -> dict[str, Any]:
    """The first gate run: green checked by address at POST_SCALE_UP (the test listener reaches blue still)."""
    run = run_smoke(stage.env, tmp_path / "first", *GATE)
    assert run.exit_code == 0, run.output[-3000:]
    assert "listeners" not in run.verdict
    gate = run.verdict["deployment_gate"]
    assert [(a["action"], a["stage"], a["accepted"]) for a in gate["actions"]] == [
        ("CONTINUE", "POST_SCALE_UP", True)]
    assert any("POST_TEST_TRAFFIC_SHIFT left AWAITING_ACTION" in note for note in gate["notes"])
    return run.verdict


def test_the_blue_green_gate_checks_green_through_the_test_listener_then_continues(stage_factory: Any,
                                                                                     tmp_path: Path) -> None:
    stage = stage_factory("blue_green", load_balancer=True)
    gate_through_both_hooks(stage, tmp_path)
    run = run_smoke(stage.env, tmp_path / "second", "-v", *GATE)
    assert run.exit_code == 0, run.output[-3000:]
    assert "test_health_answers_healthy[lb-test] PASSED" in run.output
    [listener] = run.verdict["listeners"]
    assert (listener["role"], listener["url"]) == ("test", stage.load_balancer.test_url)
    assert listener["forwards_to"] == [stage.load_balancer.alternate_target_group_arn]  # green's
    gate = run.verdict["deployment_gate"]
    assert [(a["action"], a["stage"], a["accepted"]) for a in gate["actions"]] == [
        ("CONTINUE", "POST_TEST_TRAFFIC_SHIFT", True)]


def test_green_failing_only_through_the_test_listener_is_rolled_back(stage_factory: Any, tmp_path: Path) -> None:
    stage = stage_factory("blue_green", load_balancer=True)
    gate_through_both_hooks(stage, tmp_path)
    stage.load_balancer.misroute("test")  # the test listener's rule now sends green's test traffic elsewhere
    run = run_smoke(stage.env, tmp_path / "second", *GATE)
    assert run.exit_code == 1, run.output[-3000:]
    assert run.failing().keys() == {("test_health_answers_healthy", "lb-test")}  # green's tasks pass by address
    assert [cause["category"] for cause in run.verdict["causes"]] == ["lb_routing"]
    gate = run.verdict["deployment_gate"]
    assert [(a["action"], a["accepted"]) for a in gate["actions"]] == [("ROLLBACK", True)]
    assert gate["final_status"].startswith("ROLLBACK")
