"""The load balancer's listeners a run also checks through: found from the service, as users reach it (pytest-free).

A service with ``loadBalancers`` is reached by its users through a listener, not at its
tasks' addresses: the listener's rules, protocol and port are part of what a deploy must
get right. From the service's target group this module finds:

- the **production** listener: the one whose rule forwards to the service's target group
  (``advancedConfiguration.productionListenerRule`` when ECS blue/green names it; else
  ``DescribeTargetGroups`` -> ``LoadBalancerArns`` -> ``DescribeListeners`` -> ``DescribeRules``);
- the **test** listener of ECS native blue/green (``advancedConfiguration.testListenerRule``),
  which reaches green once test traffic has shifted, before production traffic does.

Each becomes a ``Target`` (``lb`` for production, ``lb-test`` for the test listener) beside
the tasks; the suite's read-only checks run through it. ``--lb-url`` names the address to use
(a custom domain whose certificate matches), overriding the DNS name ELB reports. Read calls:
``elasticloadbalancing:DescribeTargetGroups`` (unless the target-health wait read it already),
``DescribeLoadBalancers``, ``DescribeListeners`` and one ``DescribeRules`` per HTTP(S) listener.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any, Literal
from urllib.parse import urlsplit

from ecs_verdict.targets import Target, base_url_of, format_base_url

ListenerRole = Literal["production", "test"]
PRODUCTION_TARGET_ID = "lb"
TEST_TARGET_ID = "lb-test"
TARGET_IDS = {"production": PRODUCTION_TARGET_ID, "test": TEST_TARGET_ID}
LISTENER_TARGET_IDS = frozenset(TARGET_IDS.values())
LOAD_BALANCER_KIND = "load balancer"
WEB_PROTOCOLS = frozenset({"HTTP", "HTTPS"})


@dataclass(frozen=True, slots=True)
class Listener:
    """One listener the run checks through, and what its rule forwards to (JSON-able through ``to_dict``)."""

    role: ListenerRole
    base_url: str
    protocol: str | None = None  # HTTP or HTTPS; None when only --lb-url is known
    port: int | None = None
    listener_arn: str | None = None
    load_balancer_arn: str | None = None
    dns_name: str | None = None
    rule_arn: str | None = None
    rule: str | None = None  # "default rule" or "rule 10 (path-pattern /api/*)"
    forwards_to: tuple[str, ...] = ()  # target group ARNs its rule forwards to (weight above zero)
    service_target_group: str | None = None  # the service's target group (production) or green's side (test)
    url_from: str = "DNS name"  # or "--lb-url"
    problem: str | None = None  # what ELB itself says is wrong with the routing (no rule found, say)

    @property
    def target_id(self) -> str:
        return TARGET_IDS[self.role]

    def describe(self) -> str:
        """``production listener HTTP:80 (default rule -> targetgroup/web/1a2b)``."""
        where = f" {self.protocol}:{self.port}" if self.protocol and self.port else ""
        rule = f"{self.rule} -> {', '.join(short_arn(arn) for arn in self.forwards_to) or 'no target group'}" \
            if self.rule else "its rules unknown"
        return f"{self.role} listener{where} ({rule})"

    def routing_note(self) -> str | None:
        """What is wrong with the rule's forwarding, read from ELB itself (None: it forwards to the service)."""
        if self.problem is not None:
            return self.problem
        if self.service_target_group is None or not self.rule:
            return None
        if self.service_target_group in self.forwards_to:
            return None
        return (f"the {self.role} listener's {self.rule} forwards to {', '.join(map(short_arn, self.forwards_to))}"
                f" or nothing, not to the service's target group {short_arn(self.service_target_group)}")

    def target(self) -> Target:
        host = urlsplit(self.base_url).hostname or ""
        return Target(task_id=self.target_id, short_id=self.target_id, task_arn=None, base_url=self.base_url,
                      ip=host, private_ip=None, public_ip=None, eni_id=None, image_digest=None,
                      task_definition_arn=None, started_at=None, source="lb")

    def to_dict(self) -> dict[str, Any]:
        return {"target_id": self.target_id, "kind": LOAD_BALANCER_KIND, "role": self.role, "url": self.base_url,
                "url_from": self.url_from, "protocol": self.protocol, "port": self.port,
                "listener_arn": self.listener_arn, "load_balancer_arn": self.load_balancer_arn,
                "dns_name": self.dns_name, "rule_arn": self.rule_arn, "rule": self.rule,
                "forwards_to": list(self.forwards_to), "service_target_group": self.service_target_group,
                "problem": self.problem}

    @classmethod
    def from_dict(cls, data: Mapping[str, Any]) -> Listener:
        return cls(role=data["role"], base_url=data["url"], protocol=data.get("protocol"), port=data.get("port"),
                   listener_arn=data.get("listener_arn"), load_balancer_arn=data.get("load_balancer_arn"),
                   dns_name=data.get("dns_name"), rule_arn=data.get("rule_arn"), rule=data.get("rule"),
                   forwards_to=tuple(data.get("forwards_to") or ()),
                   service_target_group=data.get("service_target_group"), url_from=data.get("url_from", "DNS name"),
                   problem=data.get("problem"))


@dataclass(frozen=True, slots=True)
class ListenerFindings:
    """The listeners to check through, and what the run should say about the ones it does not."""

    listeners: tuple[Listener, ...] = ()
    notes: tuple[str, ...] = ()
    # Blue/green: a test listener that does not reach green yet; the gate must not continue past the
    # test-traffic shift for it (a gate run there checks green through it).
    test_listener_pending: bool = False


@dataclass(slots=True)
class _Rule:
    arn: str
    listener_arn: str
    is_default: bool
    priority: str
    conditions: list[dict[str, Any]] = field(default_factory=list)
    forwards_to: tuple[str, ...] = ()

    def describe(self) -> str:
        if self.is_default:
            return "default rule"
        conditions = "; ".join(f"{c.get('Field')} {' '.join(c.get('Values') or _condition_values(c))}"
                               for c in self.conditions)
        return f"rule {self.priority}" + (f" ({conditions})" if conditions else "")


def short_arn(arn: str) -> str:
    """``targetgroup/web/1a2b3c`` of a target group ARN (the part a person recognises)."""
    return arn.split(":", 5)[-1] if arn.count(":") >= 5 else arn


def listener_arn_of_rule(rule_arn: str) -> str:
    """``...:listener-rule/app/lb/1/2/3`` -> ``...:listener/app/lb/1/2`` (DescribeRules does not say it)."""
    head, _, path = rule_arn.partition(":listener-rule/")
    return f"{head}:listener/{path.rsplit('/', 1)[0]}" if path else rule_arn


def parse_lb_url(value: str) -> str:
    """``--lb-url``, normalised to ``scheme://host:port``: the same rule as ``--target-url``."""
    return base_url_of(value, "load balancer URL")[2]


def listener_for_url(url: str, problem: str | None = None, service_target_group: str | None = None) -> Listener:
    """The production listener known only by ``--lb-url`` (no load balancer read from AWS)."""
    return Listener(role="production", base_url=url, url_from="--lb-url", problem=problem,
                    service_target_group=service_target_group)


def discover_listeners(elbv2: Any, service: Mapping[str, Any], *, container: str | None, lb_url: str | None,
                       blue_green_gate: bool, load_balancers_of: Mapping[str, Sequence[str]] | None = None
                       ) -> ListenerFindings:
    """The listeners to check through for ``service`` (a DescribeServices entry); no call without a load balancer.

    ``load_balancers_of``: target group ARN -> its ``LoadBalancerArns``, as the target-health
    wait already read them (``StableResult.load_balancers_of``): no second DescribeTargetGroups.

    ``blue_green_gate``: the run tests green at a paused blue/green deployment. Production
    still reaches blue then, so only the test listener is checked, and only when its rule
    already forwards somewhere else than the production rule (test traffic has shifted).
    """
    entry = _load_balancer_entry(service.get("loadBalancers") or [], container)
    if entry is None:
        if lb_url is not None:
            return ListenerFindings((listener_for_url(lb_url),), (
                "--lb-url given, but the service lists no load balancer: checked through the URL only",))
        return ListenerFindings()
    advanced = entry.get("advancedConfiguration") or {}
    service_group = entry["targetGroupArn"]
    if blue_green_gate:
        return _test_listener(elbv2, advanced, service_group, lb_url)
    if advanced.get("productionListenerRule"):
        [rule] = _rules_by_arn(elbv2, [advanced["productionListenerRule"]])
        return ListenerFindings((_listener(elbv2, "production", rule, service_group, lb_url),))
    return _production_by_target_group(elbv2, service_group, lb_url, load_balancers_of or {})


def _load_balancer_entry(entries: Sequence[Mapping[str, Any]], container: str | None) -> Mapping[str, Any] | None:
    with_group = [entry for entry in entries if entry.get("targetGroupArn")]
    mine = [entry for entry in with_group if container is None or entry.get("containerName") == container]
    return (mine or with_group or [None])[0]


def _test_listener(elbv2: Any, advanced: Mapping[str, Any], service_group: str, lb_url: str | None
                   ) -> ListenerFindings:
    test_arn, production_arn = advanced.get("testListenerRule"), advanced.get("productionListenerRule")
    if not test_arn:
        return ListenerFindings(notes=("blue/green without a test listener rule (advancedConfiguration."
                                       "testListenerRule): green is checked at its tasks' addresses only",))
    rules = _rules_by_arn(elbv2, [arn for arn in (test_arn, production_arn) if arn])
    test = next(rule for rule in rules if rule.arn == test_arn)
    production = next((rule for rule in rules if rule.arn == production_arn), None)
    if production is not None and set(test.forwards_to) == set(production.forwards_to):
        return ListenerFindings(test_listener_pending=True, notes=(
            f"the test listener's {test.describe()} still forwards where production does "
            f"({', '.join(map(short_arn, test.forwards_to))}): test traffic has not shifted to green yet, so green "
            "is checked at its tasks' addresses only, and the gate leaves the POST_TEST_TRAFFIC_SHIFT hook paused for "
            "a run there to check it through the test listener too",))
    # Green's side is the target group of the pair that production does not forward to.
    alternate = advanced.get("alternateTargetGroupArn")
    production_groups = set(production.forwards_to) if production is not None else set()
    green_group = next((group for group in (service_group, alternate) if group and group not in production_groups),
                       None)
    return ListenerFindings((_listener(elbv2, "test", test, green_group, lb_url),),
                            ("blue/green gate: production still reaches blue, so the production listener is not "
                             "checked; green is checked through the test listener",))


def _production_by_target_group(elbv2: Any, service_group: str, lb_url: str | None,
                                load_balancers_of: Mapping[str, Sequence[str]]) -> ListenerFindings:
    if service_group in load_balancers_of:
        balancers = list(load_balancers_of[service_group])
    else:
        groups = elbv2.describe_target_groups(TargetGroupArns=[service_group]).get("TargetGroups") or []
        balancers = list(dict.fromkeys(arn for group in groups for arn in group.get("LoadBalancerArns") or []))
    if not balancers:
        note = (f"the service's target group {short_arn(service_group)} is attached to no load balancer: no listener "
                "rule forwards to it")
        return ListenerFindings((listener_for_url(lb_url, note, service_group),) if lb_url else (), (note,))
    listeners = [item for arn in balancers for item in _listeners_of(elbv2, arn)]
    web = [item for item in listeners if item.get("Protocol") in WEB_PROTOCOLS]
    if not web:
        protocols = ", ".join(sorted({str(item.get("Protocol")) for item in listeners})) or "none"
        return ListenerFindings(notes=(f"the load balancer has no HTTP or HTTPS listener (protocols: {protocols}): "
                                       "nothing to check through it",))
    rules = {item["ListenerArn"]: _rules_of(elbv2, item["ListenerArn"]) for item in web}
    serving = [(rule, item) for item in web for rule in rules[item["ListenerArn"]] if service_group in rule.forwards_to]
    if serving:
        # The default rule of the lowest port first: the address most users take.
        rule, chosen = min(serving, key=lambda pair: (not pair[0].is_default, pair[1].get("Port") or 0))
    else:
        # No rule forwards to the service (a TG listed by a rule of weight 0, say): the lowest port's default rule.
        chosen = min(web, key=lambda item: item.get("Port") or 0)
        rule = min(rules[chosen["ListenerArn"]], key=lambda candidate: not candidate.is_default)
    return ListenerFindings((_from_listener(elbv2, "production", chosen, rule, service_group, lb_url),))


def _listener(elbv2: Any, role: ListenerRole, rule: _Rule, service_group: str | None, lb_url: str | None
              ) -> Listener:
    [item] = elbv2.describe_listeners(ListenerArns=[rule.listener_arn]).get("Listeners") or [None]
    return _from_listener(elbv2, role, item, rule, service_group, lb_url)


def _from_listener(elbv2: Any, role: ListenerRole, item: Mapping[str, Any], rule: _Rule, service_group: str | None,
                   lb_url: str | None) -> Listener:
    balancer_arn = item["LoadBalancerArn"]
    [balancer] = elbv2.describe_load_balancers(LoadBalancerArns=[balancer_arn]).get("LoadBalancers") or [{}]
    protocol, port, dns = item.get("Protocol") or "HTTP", int(item.get("Port") or 80), balancer.get("DNSName")
    base_url, url_from = _address(protocol, port, dns, lb_url, role)
    return Listener(role=role, base_url=base_url, protocol=protocol, port=port, listener_arn=item.get("ListenerArn"),
                    load_balancer_arn=balancer_arn, dns_name=dns, rule_arn=rule.arn, rule=rule.describe(),
                    forwards_to=rule.forwards_to, service_target_group=service_group, url_from=url_from)


def _address(protocol: str, port: int, dns: str | None, lb_url: str | None, role: ListenerRole) -> tuple[str, str]:
    """The listener's URL: ``--lb-url`` for production; its host with the test listener's own port and protocol."""
    if lb_url is not None:
        if role == "production":
            return lb_url, "--lb-url"
        host = urlsplit(lb_url).hostname or ""
        return format_base_url(host, port, protocol.lower()), "--lb-url host"
    host = (dns or "").rstrip(".")
    return format_base_url(host, port, protocol.lower()), "DNS name"


def _listeners_of(elbv2: Any, balancer_arn: str) -> list[dict[str, Any]]:
    found: list[dict[str, Any]] = []
    for page in elbv2.get_paginator("describe_listeners").paginate(LoadBalancerArn=balancer_arn):
        found += page.get("Listeners") or []
    return found


def _rules_of(elbv2: Any, listener_arn: str) -> list[_Rule]:
    pages = elbv2.get_paginator("describe_rules").paginate(ListenerArn=listener_arn)  # a listener may hold 100
    return [_rule(raw, listener_arn) for page in pages for raw in page.get("Rules") or []]


def _rules_by_arn(elbv2: Any, arns: list[str]) -> list[_Rule]:
    answer = elbv2.describe_rules(RuleArns=arns)
    return [_rule(raw, listener_arn_of_rule(raw["RuleArn"])) for raw in answer.get("Rules") or []]


def _rule(raw: Mapping[str, Any], listener_arn: str) -> _Rule:
    return _Rule(arn=raw["RuleArn"], listener_arn=listener_arn, is_default=bool(raw.get("IsDefault")),
                 priority=str(raw.get("Priority")), conditions=list(raw.get("Conditions") or []),
                 forwards_to=forward_target_groups(raw.get("Actions") or []))


def forward_target_groups(actions: Iterable[Mapping[str, Any]]) -> tuple[str, ...]:
    """The target groups a rule's forward action sends traffic to (a weight of zero sends none)."""
    groups: list[str] = []
    for action in actions:
        if action.get("Type") != "forward":
            continue
        weighted = (action.get("ForwardConfig") or {}).get("TargetGroups")
        if weighted:
            groups += [g["TargetGroupArn"] for g in weighted if g.get("Weight", 1) and g.get("TargetGroupArn")]
        elif action.get("TargetGroupArn"):
            groups.append(action["TargetGroupArn"])
    return tuple(dict.fromkeys(groups))


def _condition_values(condition: Mapping[str, Any]) -> list[str]:
    for key in ("HostHeaderConfig", "PathPatternConfig"):
        values = (condition.get(key) or {}).get("Values")
        if values:
            return list(values)
    return []


def passed_at_every_task(check: str, checks: Iterable[Mapping[str, Any]], task_ids: Iterable[str]) -> bool:
    """True when ``check`` passed at some task's own address and failed or errored at none (verdict check rows).

    A check that fails through a listener under this condition is the listener's finding
    (``lb_routing``), not the release's: the tasks answer it rightly when asked directly.
    """
    tasks = set(task_ids)
    outcomes = [row["outcome"] for row in checks if row["name"] == check and row["task_id"] in tasks]
    return "passed" in outcomes and not {"failed", "error"} & set(outcomes)
