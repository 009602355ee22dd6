"""The service's Application Load Balancer, as the stage plays it: target groups, health checks, listeners.

The resources are real moto ones (``DescribeLoadBalancers``, ``DescribeListeners``,
``DescribeRules``, ``DescribeTargetGroups`` answer from moto), and the ECS service's
``loadBalancers`` names them as ECS describes them. What moto does not do, this module does
(see shared/moto-notes.md: moto answers ``healthy`` for every registered target):

- health checks: each registered target is probed on its target group's own path, port,
  interval, timeout, thresholds and matcher (``stage.target_health``), and
  ``elbv2.DescribeTargetHealth`` is answered from those probes through the hook in
  ``moto_quirks.MotoServer``, as ``stage.deployment_records`` answers the ECS records;
- registration and draining as ECS does them: a task of the service is registered (its
  private IP, the container port) when it runs and drained for the deregistration delay
  when it stops; in a blue/green deployment green's tasks go to the alternate target group
  and ``shift`` moves the test, then the production listener rule to it;
- listeners on loopback (``production_url``, ``test_url``) that forward HTTP to the healthy
  targets of the target group their rule names, round robin. As ALB: a 503 with no target
  to send to, fail-open to all targets when every registered one is unhealthy, a 502 when a
  target refuses the connection and a 504 when it cannot be reached in time.

Fault switches (``LB_FAULTS``): ``tg_health_path``, ``sg_blocks_lb``, ``wrong_target_group``.

Lock order: the scheduler calls in with its lock held; nothing here takes the scheduler's lock.
"""

from __future__ import annotations

import http.client
import itertools
import socket
import threading
import time
import uuid
import xml.etree.ElementTree as ElementTree
from dataclasses import dataclass
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any

from stage import moto_quirks
from stage.errors import StageError
from stage.seed import CLUSTER, CONTAINER, PORT, REGION, SERVICE, Seeded
from stage.target_health import (DRAINING, HEALTHY, NOT_REGISTERED, TIMEOUT, UNHEALTHY, UNUSED, TargetGroupCheck,
                                 TargetState)

LB_FAULTS: dict[str, str] = {
    "tg_health_path": "the target groups' health check path is one the task does not answer (404): "
                      "Target.ResponseCodeMismatch",
    "sg_blocks_lb": "the tasks' security group lets nothing in from the load balancer's: health checks time out "
                    "(Target.Timeout), the listeners answer 504",
    "wrong_target_group": "the production listener rule forwards to another target group, one no task of the "
                          "service is in: the listener answers 503",
}
LOAD_BALANCER_NAME = "civicforge-board-alb"
TARGET_GROUP_NAMES = ("civicforge-board-blue", "civicforge-board-green")
STRAY_TARGET_GROUP_NAME = "civicforge-board-legacy"  # what wrong_target_group's rule forwards to
WRONG_HEALTH_CHECK_PATH = "/healthz"  # the stand-in answers 404 there
ECS_INFRASTRUCTURE_ROLE = f"arn:aws:iam::{moto_quirks.ACCOUNT_ID}:role/ecsInfrastructureRoleForLoadBalancers"
# The target group's own health check, as a team that wants quick deploys writes it (ALB's
# smallest interval and thresholds; its defaults are 30 s, 5 s, 5 and 2): what a harness reads
# from DescribeTargetGroups, e.g. to know how long ELB takes to call a target healthy again.
# Intervals run x time_scale (floored, see stage.target_health); the deregistration delay is
# ALB's default 300 s, x time_scale too.
HEALTH_CHECK = {"HealthCheckIntervalSeconds": 5, "HealthCheckTimeoutSeconds": 2, "HealthyThresholdCount": 2,
                "UnhealthyThresholdCount": 2, "Matcher": {"HttpCode": "200"}}
DEREGISTRATION_DELAY_S = 300
TARGET_CONNECT_TIMEOUT_S = 10  # ALB gives up connecting to a target after 10 s: a 504
HOP_BY_HOP = frozenset({"connection", "keep-alive", "proxy-authenticate", "proxy-authorization", "te", "trailers",
                        "transfer-encoding", "upgrade", "host"})
XMLNS = "http://elasticloadbalancing.amazonaws.com/doc/2015-12-01/"
PRODUCTION, TEST = "production", "test"


def parse_lb_faults(items: list[str] | tuple[str, ...]) -> frozenset[str]:
    for item in items:
        if item not in LB_FAULTS:
            raise StageError(f"unknown load balancer fault {item!r}; known: {', '.join(LB_FAULTS)}")
    return frozenset(items)


@dataclass(frozen=True, slots=True)
class TargetGroup:
    arn: str
    name: str
    check: TargetGroupCheck


class StageLoadBalancer:
    """One ALB in front of the service: see the module docstring. ``create()``, then ``close()``."""

    def __init__(self, clients: dict[str, Any], seeded: Seeded, *, blue_green: bool, faults: frozenset[str],
                 time_scale: float, health_check_path: str) -> None:
        self._health_check_path = health_check_path  # the path the task answers: its container check's
        self._elbv2, self._ec2 = clients["elbv2"], clients["ec2"]
        self._seeded = seeded
        self.blue_green = blue_green
        self.faults = faults
        self._time_scale = time_scale
        self._lock = threading.Lock()
        self._stop = threading.Event()
        self._groups: dict[str, TargetGroup] = {}  # arn -> group
        self._targets: dict[str, dict[tuple[str, int], TargetState]] = {}  # group arn -> (ip, port) -> state
        self._group_of: dict[str, str] = {}  # stage deployment id -> the target group its tasks join
        self._rules: dict[str, list[tuple[str, int]]] = {}  # listener -> [(target group arn, weight)]
        self._rule_arns: dict[str, str] = {}
        self._listener_arns: dict[str, str] = {}
        self._servers: dict[str, ThreadingHTTPServer] = {}
        self._round_robin = itertools.count()
        self._zone = ""
        self.arn = ""
        self.dns_name = ""
        self.security_group_id = ""

    # -- what a harness or a test needs ---------------------------------------------------------------

    @property
    def production_url(self) -> str:
        """The production listener on loopback (its port is the listener's ``Port`` in moto)."""
        return self._url(PRODUCTION)

    @property
    def test_url(self) -> str | None:
        """The blue/green test listener on loopback (None: the service deploys ROLLING)."""
        return self._url(TEST) if TEST in self._servers else None

    @property
    def production_listener_arn(self) -> str:
        return self._listener_arns[PRODUCTION]

    @property
    def test_listener_arn(self) -> str | None:
        return self._listener_arns.get(TEST)

    @property
    def production_rule_arn(self) -> str:
        return self._rule_arns[PRODUCTION]

    @property
    def test_rule_arn(self) -> str | None:
        return self._rule_arns.get(TEST)

    @property
    def target_group_arn(self) -> str:
        """The service's target group (``loadBalancers[0].targetGroupArn``): blue's, in blue/green."""
        return self._service_groups[0]

    @property
    def alternate_target_group_arn(self) -> str | None:
        """Green's target group in blue/green (``advancedConfiguration.alternateTargetGroupArn``)."""
        return self._service_groups[1] if self.blue_green else None

    @property
    def target_group_arns(self) -> tuple[str, ...]:
        """Every target group of the service (not the stray one ``wrong_target_group`` forwards to)."""
        return tuple(self._service_groups[: 2 if self.blue_green else 1])

    @property
    def service_load_balancers(self) -> list[dict[str, Any]]:
        """The service's ``loadBalancers``, as ``describe_services`` shows them."""
        entry: dict[str, Any] = {"targetGroupArn": self.target_group_arn, "containerName": CONTAINER,
                                 "containerPort": PORT}
        if self.blue_green:
            entry["advancedConfiguration"] = {
                "alternateTargetGroupArn": self.alternate_target_group_arn,
                "productionListenerRule": self.production_rule_arn,
                "testListenerRule": self.test_rule_arn,
                "roleArn": ECS_INFRASTRUCTURE_ROLE,
            }
        return [entry]

    def forwards_to(self, listener: str) -> list[tuple[str, int]]:
        """The (target group ARN, weight) pairs a listener's rule forwards to now ("production" or "test")."""
        with self._lock:
            return list(self._rules[listener])

    def target_health(self, group_arn: str) -> list[dict[str, Any]]:
        """What ``DescribeTargetHealth`` answers for a target group now (its ``TargetHealthDescriptions``)."""
        with self._lock:
            group = self._groups[group_arn]
            return [target.as_elb(group.check, self._zone) for target in self._targets[group_arn].values()]

    # -- life -----------------------------------------------------------------------------------------

    def create(self) -> None:
        """The ALB, its target groups, listeners and rules in moto; the listeners on loopback."""
        seeded = self._seeded
        subnet = self._ec2.describe_subnets(SubnetIds=[seeded.subnet_id])["Subnets"][0]
        vpc_id, self._zone = subnet["VpcId"], subnet["AvailabilityZone"]
        # An ALB needs subnets in two Availability Zones.
        other_zone = next(z["ZoneName"] for z in self._ec2.describe_availability_zones()["AvailabilityZones"]
                          if z["ZoneName"] != self._zone)
        public = [self._ec2.create_subnet(VpcId=vpc_id, CidrBlock=cidr, AvailabilityZone=zone)["Subnet"]["SubnetId"]
                  for cidr, zone in (("10.0.101.0/24", self._zone), ("10.0.102.0/24", other_zone))]
        self.security_group_id = self._ec2.create_security_group(
            GroupName=f"{LOAD_BALANCER_NAME}-sg", Description="ALB 80/tcp from anywhere", VpcId=vpc_id)["GroupId"]
        self._ec2.authorize_security_group_ingress(GroupId=self.security_group_id, IpPermissions=[
            {"IpProtocol": "tcp", "FromPort": 80, "ToPort": 80, "IpRanges": [{"CidrIp": "0.0.0.0/0"}]}])
        if "sg_blocks_lb" not in self.faults:
            # The rule the tasks' security group needs: the container port, from the load balancer's group.
            self._ec2.authorize_security_group_ingress(GroupId=seeded.security_group_id, IpPermissions=[
                {"IpProtocol": "tcp", "FromPort": PORT, "ToPort": PORT,
                 "UserIdGroupPairs": [{"GroupId": self.security_group_id}]}])
        balancer = self._elbv2.create_load_balancer(
            Name=LOAD_BALANCER_NAME, Subnets=public, SecurityGroups=[self.security_group_id],
            Scheme="internet-facing", Type="application", IpAddressType="ipv4")["LoadBalancers"][0]
        self.arn, self.dns_name = balancer["LoadBalancerArn"], balancer["DNSName"]
        path = WRONG_HEALTH_CHECK_PATH if "tg_health_path" in self.faults else self._health_check_path
        names = [*TARGET_GROUP_NAMES[: 2 if self.blue_green else 1], STRAY_TARGET_GROUP_NAME]
        for name in names:
            created = self._elbv2.create_target_group(
                Name=name, Protocol="HTTP", Port=PORT, VpcId=vpc_id, TargetType="ip", HealthCheckProtocol="HTTP",
                HealthCheckPath=path, **HEALTH_CHECK)["TargetGroups"][0]
            arn = created["TargetGroupArn"]
            self._elbv2.modify_target_group_attributes(TargetGroupArn=arn, Attributes=[
                {"Key": "deregistration_delay.timeout_seconds", "Value": str(DEREGISTRATION_DELAY_S)}])
            check = TargetGroupCheck.from_target_group(created, self._time_scale, DEREGISTRATION_DELAY_S)
            self._groups[arn] = TargetGroup(arn, name, check)
            self._targets[arn] = {}
        blue = self._service_groups[0]
        production = [(self._stray_group, 100)] if "wrong_target_group" in self.faults else self._weights(blue)
        self._open_listener(PRODUCTION, production)
        if self.blue_green:
            self._open_listener(TEST, self._weights(blue))
        moto_quirks.set_service_load_balancers(REGION, CLUSTER, SERVICE, self.service_load_balancers)

    def close(self) -> None:
        self._stop.set()
        for server in self._servers.values():
            server.shutdown()
            server.server_close()
        self._servers.clear()

    # -- what the scheduler tells it (its lock held) -----------------------------------------------------

    def register(self, deployment_id: str, owner: str, address: str, *, green: bool) -> None:
        """A task of the service runs: ECS registers its IP and container port in the deployment's target group."""
        with self._lock:
            group_arn = self._group_of.setdefault(deployment_id, self._group_for(green))
            target = TargetState(address=address, port=PORT, owner=owner)
            self._targets[group_arn][(address, PORT)] = target
        self._elbv2.register_targets(TargetGroupArn=group_arn, Targets=[{"Id": address, "Port": PORT}])
        threading.Thread(target=self._watch, args=(self._groups[group_arn], target), name=f"elb-{address}",
                         daemon=True).start()

    def deregister(self, owner: str) -> None:
        """A task stops: its target drains for the deregistration delay, and takes no new requests."""
        with self._lock:
            found = [(arn, target) for arn, targets in self._targets.items() for target in targets.values()
                     if target.owner == owner and target.state != DRAINING]
            for arn, target in found:
                target.drain(self._groups[arn].check)
        for arn, target in found:
            self._elbv2.deregister_targets(TargetGroupArn=arn, Targets=[{"Id": target.address, "Port": target.port}])

    def healthy(self, owner: str) -> bool:
        """Whether the task's target is ``healthy`` in its target group (ECS waits for it to roll on)."""
        with self._lock:
            return any(t.owner == owner and t.state == HEALTHY for ts in self._targets.values() for t in ts.values())

    def shift(self, listener: str, deployment_id: str) -> None:
        """Blue/green traffic shift: the listener's rule forwards to the deployment's target group only."""
        with self._lock:
            group_arn = self._group_of.get(deployment_id)
        if group_arn is None or listener not in self._rule_arns:
            return
        if listener == PRODUCTION and "wrong_target_group" in self.faults:
            return  # ECS reweighs the service's two target groups; the rule forwards to neither
        self._set_rule(listener, self._weights(group_arn))

    def roll_back(self, deployment_id: str) -> None:
        """A blue/green rollback: both rules forward to the target group that served before again."""
        with self._lock:
            green = self._group_of.get(deployment_id)
            blue = next((arn for arn in self._service_groups if arn != green), None) if self.blue_green else None
        if blue is None:
            return
        for listener in (PRODUCTION, TEST):
            if listener == PRODUCTION and "wrong_target_group" in self.faults:
                continue
            self._set_rule(listener, self._weights(blue))

    def misroute(self, listener: str) -> None:
        """Point a listener's rule at the stray target group, in moto and on loopback (a rule edited by hand)."""
        self._set_rule(listener, [(self._stray_group, 100)])

    # -- the moto hook: DescribeTargetHealth ---------------------------------------------------------------

    def answer_query(self, operation: str, params: dict[str, str]) -> tuple[int, bytes] | None:
        """``elbv2.DescribeTargetHealth`` from the probes; None: moto answers (every other call, unknown groups)."""
        if operation != "elbv2.DescribeTargetHealth":
            return None
        group_arn = params.get("TargetGroupArn", "")
        with self._lock:
            if group_arn not in self._groups:
                return None
            group = self._groups[group_arn]
            targets = self._targets[group_arn]
            asked = _asked_targets(params)
            if asked:
                descriptions = []
                for address, port in asked:
                    known = targets.get((address, port or PORT))
                    if known is None:
                        known = TargetState(address=address, port=port or PORT, state=UNUSED, reason=NOT_REGISTERED)
                    descriptions.append(known.as_elb(group.check, self._zone))
            else:
                descriptions = [target.as_elb(group.check, self._zone) for target in targets.values()]
        return 200, _describe_target_health_xml(descriptions)

    # -- inside ----------------------------------------------------------------------------------------

    @property
    def _service_groups(self) -> list[str]:
        return [arn for arn, group in self._groups.items() if group.name != STRAY_TARGET_GROUP_NAME]

    @property
    def _stray_group(self) -> str:
        return next(arn for arn, group in self._groups.items() if group.name == STRAY_TARGET_GROUP_NAME)

    def _weights(self, serving: str) -> list[tuple[str, int]]:
        """A forward action's weights: everything to ``serving`` (blue/green rules name both groups)."""
        return [(arn, 100 if arn == serving else 0) for arn in self.target_group_arns]

    def _group_for(self, green: bool) -> str:
        """Green joins the target group production does not forward to; everyone else the one it does."""
        serving = max(self._rules.get(PRODUCTION) or [(self._service_groups[0], 100)], key=lambda pair: pair[1])[0]
        if serving not in self.target_group_arns:
            serving = self._service_groups[0]  # wrong_target_group: ECS still registers in the service's group
        if green and self.blue_green:
            return next(arn for arn in self.target_group_arns if arn != serving)
        return serving

    def _open_listener(self, name: str, weights: list[tuple[str, int]]) -> None:
        server = ThreadingHTTPServer(("127.0.0.1", 0), _handler(self, name))
        server.daemon_threads = True
        self._servers[name] = server
        threading.Thread(target=server.serve_forever, name=f"alb-{name}", daemon=True).start()
        port = server.server_address[1]
        listener = self._elbv2.create_listener(
            LoadBalancerArn=self.arn, Protocol="HTTP", Port=port,
            DefaultActions=[{"Type": "fixed-response", "FixedResponseConfig": {
                "StatusCode": "404", "ContentType": "text/plain", "MessageBody": "Not Found"}}])["Listeners"][0]
        self._listener_arns[name] = listener["ListenerArn"]
        rule = self._elbv2.create_rule(
            ListenerArn=listener["ListenerArn"], Priority=1,
            Conditions=[{"Field": "path-pattern", "Values": ["/*"]}], Actions=[_forward(weights)])["Rules"][0]
        self._rule_arns[name] = rule["RuleArn"]
        with self._lock:
            self._rules[name] = weights

    def _url(self, name: str) -> str:
        host, port = self._servers[name].server_address[:2]
        return f"http://{host}:{port}"

    def _set_rule(self, listener: str, weights: list[tuple[str, int]]) -> None:
        with self._lock:
            if self._rules.get(listener) == weights:
                return
            self._rules[listener] = weights
        self._elbv2.modify_rule(RuleArn=self._rule_arns[listener], Actions=[_forward(weights)])

    def _reachable(self) -> bool:
        """Whether the tasks' security group lets the load balancer's in on the container port."""
        groups = self._ec2.describe_security_groups(GroupIds=[self._seeded.security_group_id])["SecurityGroups"]
        for permission in groups[0].get("IpPermissions", []):
            in_range = permission.get("FromPort", 0) <= PORT <= permission.get("ToPort", 65535)
            pairs = {pair.get("GroupId") for pair in permission.get("UserIdGroupPairs", [])}
            if in_range and (self.security_group_id in pairs or permission.get("IpRanges")):
                return True
        return False

    def _watch(self, group: TargetGroup, target: TargetState) -> None:
        """Probe one target every interval until it has drained (a thread per target, as the container checks)."""
        check = group.check
        reachable = self._reachable()
        while not self._stop.is_set():
            with self._lock:
                if target.state == DRAINING:
                    break
            if reachable:
                result = check.probe(target.address, target.port)
            else:
                # The SYN is dropped: the check waits its whole timeout, then counts one.
                if self._stop.wait(check.timeout_s):
                    return
                result = TIMEOUT
            with self._lock:
                target.record(result, check)
            if self._stop.wait(check.interval_s):
                return
        # Draining: the delay, then the target is gone from the group.
        left = (target.draining_until or 0.0) - time.monotonic()
        if left > 0 and self._stop.wait(left):
            return
        with self._lock:
            targets = self._targets[group.arn]
            if targets.get((target.address, target.port)) is target:
                del targets[(target.address, target.port)]

    def pick_target(self, listener: str) -> tuple[int, TargetState | None]:
        """Where a request to ``listener`` goes: (0, target), or (the status ALB answers itself, None)."""
        with self._lock:
            weights = [(arn, weight) for arn, weight in self._rules[listener] if weight > 0]
            if not weights:
                return 503, None
            turn = next(self._round_robin)
            # Weighted choice without randomness: the groups take turns by weight out of their sum.
            total = sum(weight for _, weight in weights)
            slot, group_arn = turn % total, weights[-1][0]
            for arn, weight in weights:
                if slot < weight:
                    group_arn = arn
                    break
                slot -= weight
            registered = [t for t in self._targets[group_arn].values() if t.state != DRAINING]
            healthy = [t for t in registered if t.state == HEALTHY]
            if not healthy and registered and all(t.state == UNHEALTHY for t in registered):
                healthy = registered  # ALB fails open when every registered target is unhealthy
            if not healthy:
                return 503, None
            return 0, healthy[turn % len(healthy)]

    @property
    def target_connect_timeout_s(self) -> float:
        return max(1.0, TARGET_CONNECT_TIMEOUT_S * self._time_scale)


def _forward(weights: list[tuple[str, int]]) -> dict[str, Any]:
    return {"Type": "forward", "ForwardConfig": {"TargetGroups": [
        {"TargetGroupArn": arn, "Weight": weight} for arn, weight in weights]}}


def _asked_targets(params: dict[str, str]) -> list[tuple[str, int | None]]:
    asked = []
    for number in itertools.count(1):
        address = params.get(f"Targets.member.{number}.Id")
        if address is None:
            return asked
        port = params.get(f"Targets.member.{number}.Port")
        asked.append((address, int(port) if port else None))
    return asked


def _describe_target_health_xml(descriptions: list[dict[str, Any]]) -> bytes:
    root = ElementTree.Element("DescribeTargetHealthResponse", xmlns=XMLNS)
    result = ElementTree.SubElement(root, "DescribeTargetHealthResult")
    members = ElementTree.SubElement(result, "TargetHealthDescriptions")
    for description in descriptions:
        member = ElementTree.SubElement(members, "member")
        _fill(member, description)
    metadata = ElementTree.SubElement(root, "ResponseMetadata")
    ElementTree.SubElement(metadata, "RequestId").text = str(uuid.uuid4())
    return ElementTree.tostring(root, encoding="utf-8", xml_declaration=True)


def _fill(parent: ElementTree.Element, values: dict[str, Any]) -> None:
    for key, value in values.items():
        child = ElementTree.SubElement(parent, key)
        if isinstance(value, dict):
            _fill(child, value)
        else:
            child.text = str(value)


_ERROR_PAGES = {502: "502 Bad Gateway", 503: "503 Service Temporarily Unavailable", 504: "504 Gateway Time-out"}


def _handler(balancer: StageLoadBalancer, listener: str) -> type[BaseHTTPRequestHandler]:
    class ListenerHandler(BaseHTTPRequestHandler):
        """Forwards one request as the listener's rule says (a new connection to the target each time)."""

        protocol_version = "HTTP/1.1"

        def log_message(self, *_args: Any) -> None:
            pass

        def _forward(self) -> None:
            length = int(self.headers.get("Content-Length") or 0)
            body = self.rfile.read(length) if length else None
            status, target = balancer.pick_target(listener)
            if target is None:
                return self._answer_itself(status)
            if balancer.faults and "sg_blocks_lb" in balancer.faults:
                # The SYN is dropped: ALB waits out its connection timeout, then answers 504.
                balancer._stop.wait(balancer.target_connect_timeout_s)
                return self._answer_itself(504)
            headers = {key: value for key, value in self.headers.items() if key.lower() not in HOP_BY_HOP}
            client_ip = self.client_address[0]
            headers["X-Forwarded-For"] = ", ".join(filter(None, [self.headers.get("X-Forwarded-For"), client_ip]))
            headers["X-Forwarded-Proto"] = "http"
            headers["X-Forwarded-Port"] = str(self.server.server_address[1])
            headers["X-Amzn-Trace-Id"] = f"Root=1-{uuid.uuid4().hex[:8]}-{uuid.uuid4().hex[:24]}"
            headers["Host"] = self.headers.get("Host") or balancer.dns_name
            connection = http.client.HTTPConnection(target.address, target.port,
                                                    timeout=balancer.target_connect_timeout_s)
            try:
                connection.request(self.command, self.path, body=body, headers=headers)
                answer = connection.getresponse()
                payload = answer.read()
            except (socket.timeout, TimeoutError):
                return self._answer_itself(504)
            except (OSError, http.client.HTTPException):
                return self._answer_itself(502)
            finally:
                connection.close()
            self.send_response(answer.status, answer.reason)
            for key, value in answer.getheaders():
                if key.lower() not in HOP_BY_HOP and key.lower() != "content-length":
                    self.send_header(key, value)
            self.send_header("Content-Length", str(len(payload)))
            self.end_headers()
            self.wfile.write(payload)

        def _answer_itself(self, status: int) -> None:
            page = (f"<html>\r\n<head><title>{_ERROR_PAGES[status]}</title></head>\r\n<body>\r\n"
                    f"<center><h1>{_ERROR_PAGES[status]}</h1></center>\r\n</body>\r\n</html>\r\n").encode()
            self.send_response(status)
            self.send_header("Server", "awselb/2.0")
            self.send_header("Content-Type", "text/html")
            self.send_header("Content-Length", str(len(page)))
            self.end_headers()
            self.wfile.write(page)

        do_GET = do_POST = do_PUT = do_PATCH = do_DELETE = do_HEAD = do_OPTIONS = _forward

    return ListenerHandler
