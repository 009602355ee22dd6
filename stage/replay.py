"""Replay the real service's recorded exchanges against a stand-in and list every difference.

``tests/recordings/civicforge-real-exchanges.jsonl`` holds requests to the real CivicForge
board service and its answers, in order, on one fresh database, with tokens and passwords
replaced by placeholders (``<owner-token>``, ``<probe-password>``, ...). :func:`replay`
sends the same requests, in the same order, to a stand-in whose database
:func:`prepare_replay_database` prepared like the recording's, fills the placeholders
with values it chose (passwords) or learned from earlier answers (tokens), and compares
every answer with the recorded one:

- status, content type, ``Allow``, and ``Location`` (scheme and path; the host and port
  are the recording machine's);
- the body: the same keys (recursively), the same JSON types, list lengths, and values.
  A placeholder matches any text in its place (and is learned there); a timestamp, recorded
  or a ``<timestamp ...>`` placeholder, matches any naive ISO-8601 timestamp; every other
  value (``detail``, roles, ids on the fresh database, permission names) must be equal.
- ``/openapi.json``: the recording keeps only ``{"paths": {path: [METHODS]}}``, so the
  answer is reduced to that before comparing.

:func:`log_skeleton` reduces a service log (the recording's ``civicforge-real-logs.txt`` or a
stand-in's merged stdout and stderr) to what must agree: migration lines, uvicorn's lines,
access lines without the client address, and each traceback's first and last line.

No pytest here: ``tests/test_replay_standin.py`` runs it against a real stand-in process.
"""

from __future__ import annotations

import base64
import difflib
import hashlib
import hmac
import ipaddress
import json
import re
import secrets
from collections.abc import Callable, Iterable, MutableMapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import httpx

from stage.standin.db import prepare_database

DEFAULT_TIMEOUT_S = 10.0
OWNER_PASSWORD = "replay-owner-password-1"
PARTICIPANT_PASSWORD = "replay-participant-password-1"
PROBE_PASSWORD = "replay-probe-password-1"
WRONG_PASSWORD = "not-the-password"
# The recording's accounts: smoke_owner (user 1, an Organizer, made owner of board_001 by
# the migrations) and smoke_participant (user 2), registered before the service started.
REPLAY_ACCOUNTS: dict[str, dict[str, str]] = {
    "owner": {"username": "smoke_owner", "password": OWNER_PASSWORD},
    "participant": {"username": "smoke_participant", "password": PARTICIPANT_PASSWORD},
}
# Where an answer carries a value a later request needs, e.g. "<owner-token>".
PLACEHOLDER = re.compile(r"<(?P<name>[a-z][a-z0-9-]*)(?:[ :][^<>]*)?>")
TIMESTAMP_PLACEHOLDER = "timestamp"
# Naive ISO-8601 as datetime.isoformat() writes it (no microseconds when they are 0).
NAIVE_TIMESTAMP = r"\d{4}-\d{2}-\d{2}T\d{2}:\d{2}:\d{2}(?:\.\d{6})?"
WRONGLY_SIGNED = "wrongly-signed-token"
LEARNING_ANCHOR_CHARS = 12
HTTP_METHODS = ("get", "put", "post", "delete", "options", "head", "patch", "trace")


@dataclass(frozen=True, slots=True)
class Exchange:
    """One recorded request and the real service's answer, as the recording file has them."""

    name: str
    request: dict[str, Any]
    response: dict[str, Any]


@dataclass(frozen=True, slots=True)
class Difference:
    """Where the stand-in's answer to one recorded request differs from the real one."""

    name: str
    what: str

    def __str__(self) -> str:
        return f"{self.name}: {self.what}"


class MissingValue(LookupError):
    """A placeholder in a request whose value no earlier answer provided."""


def load_exchanges(path: Path) -> list[Exchange]:
    """The recorded exchanges of a JSON-lines file, in order."""
    exchanges = []
    for number, line in enumerate(path.read_text(encoding="utf-8").splitlines(), start=1):
        if not line.strip():
            continue
        record = json.loads(line)
        try:
            exchanges.append(Exchange(record["name"], record["request"], record["response"]))
        except (KeyError, TypeError):
            raise ValueError(f"{path}:{number}: not an exchange (needs name, request, response)") from None
    return exchanges


def prepare_replay_database(path: Path) -> None:
    """A fresh database like the recording's: the two smoke accounts, smoke_owner owns board_001."""
    prepare_database(path, REPLAY_ACCOUNTS)


def initial_values() -> dict[str, str]:
    """The placeholder values the replay chooses itself; tokens are learned from answers."""
    return {
        "owner-password": OWNER_PASSWORD,
        "participant-password": PARTICIPANT_PASSWORD,
        "probe-password": PROBE_PASSWORD,
        "wrong-password": WRONG_PASSWORD,
        "unknown-43-char-token": secrets.token_urlsafe(32),
    }


def wrongly_signed(token: str) -> str:
    """``token``'s header and payload with an HS256 signature under a key the service lacks."""
    header, payload, _ = token.split(".")
    key = secrets.token_bytes(32)
    digest = hmac.new(key, f"{header}.{payload}".encode("ascii"), hashlib.sha256).digest()
    return f"{header}.{payload}." + base64.urlsafe_b64encode(digest).rstrip(b"=").decode("ascii")


def _value_of(name: str, values: MutableMapping[str, str]) -> str:
    if name == WRONGLY_SIGNED and name not in values and "owner-token" in values:
        values[name] = wrongly_signed(values["owner-token"])
    if name not in values:
        raise MissingValue(f"<{name}> is not known yet (no earlier answer carried it)")
    return values[name]


def fill(value: Any, values: MutableMapping[str, str]) -> Any:
    """``value`` (JSON) with every placeholder replaced by its value."""
    if isinstance(value, str):
        return PLACEHOLDER.sub(lambda match: _value_of(match["name"], values), value)
    if isinstance(value, list):
        return [fill(item, values) for item in value]
    if isinstance(value, dict):
        return {key: fill(item, values) for key, item in value.items()}
    return value


def build_request(client: httpx.Client, exchange: Exchange, values: MutableMapping[str, str]) -> httpx.Request:
    """The recorded request with its placeholders filled; raises :class:`MissingValue`."""
    recorded = exchange.request
    headers: dict[str, str] = {}
    content_type = recorded["headers"].get("Content-Type")
    if content_type is not None:
        headers["Content-Type"] = content_type
    authorization = recorded["headers"].get("Authorization") or {"present": False}
    if authorization["present"]:
        headers["Authorization"] = f"{authorization['scheme']} {fill(authorization['credential'], values)}"
    body = recorded.get("json")
    content = None if body is None else json.dumps(fill(body, values)).encode()
    return client.build_request(recorded["method"], recorded["path"], headers=headers, content=content)


# --- comparing one answer --------------------------------------------------------------------


def json_type(value: Any) -> str:
    """The JSON name of a value's type (``bool`` is not an ``integer``)."""
    if value is None:
        return "null"
    if isinstance(value, bool):
        return "boolean"
    for kind, name in ((int, "integer"), (float, "number"), (str, "string"), (list, "array"), (dict, "object")):
        if isinstance(value, kind):
            return name
    return type(value).__name__


def _shown(value: Any) -> str:
    text = json.dumps(value)
    return text if len(text) <= 80 else text[:79] + "…"


def _template(recorded: str, values: MutableMapping[str, str]) -> tuple[re.Pattern[str], list[str]]:
    """A pattern for a recorded string with placeholders, and the names it will capture."""
    parts, names, at = [], [], 0
    for match in PLACEHOLDER.finditer(recorded):
        parts.append(re.escape(recorded[at:match.start()]))
        name = match["name"]
        if name == TIMESTAMP_PLACEHOLDER:
            parts.append(NAIVE_TIMESTAMP)
        elif name in values:
            parts.append(re.escape(values[name]))
        else:
            parts.append(f"(?P<g{len(names)}>.+?)")
            names.append(name)
        at = match.end()
    parts.append(re.escape(recorded[at:]))
    return re.compile("".join(parts)), names


def _learn_loosely(recorded: str, actual: str, values: MutableMapping[str, str]) -> None:
    """Learn placeholders from a string that differs elsewhere (``...?token=<invite-token>`` on
    another host), anchored on the text just before each one: one wrong base URL is then one
    difference, not a cascade of requests that could not be sent."""
    at = 0
    for match in PLACEHOLDER.finditer(recorded):
        anchor = recorded[at:match.start()][-LEARNING_ANCHOR_CHARS:]
        at = match.end()
        name = match["name"]
        if name == TIMESTAMP_PLACEHOLDER or name in values or not anchor:
            continue
        found = re.search(re.escape(anchor) + r"([^\s&\"]+)", actual)
        if found:
            values[name] = found[1]


def _compare_string(recorded: str, actual: str, where: str, values: MutableMapping[str, str]) -> list[str]:
    if PLACEHOLDER.search(recorded):
        pattern, names = _template(recorded, values)
        match = pattern.fullmatch(actual)
        if match is None:
            _learn_loosely(recorded, actual, values)
            return [f"{where}: expected {_shown(recorded)}, got {_shown(actual)}"]
        for index, name in enumerate(names):
            values[name] = match[f"g{index}"]
        return []
    if re.fullmatch(NAIVE_TIMESTAMP, recorded):
        if re.fullmatch(NAIVE_TIMESTAMP, actual):
            return []
        return [f"{where}: expected a naive ISO-8601 timestamp like {_shown(recorded)}, got {_shown(actual)}"]
    return [] if recorded == actual else [f"{where}: expected {_shown(recorded)}, got {_shown(actual)}"]


def compare_json(recorded: Any, actual: Any, values: MutableMapping[str, str], where: str = "body") -> list[str]:
    """Every difference between a recorded JSON value and an actual one (see the module doc)."""
    kind, actual_kind = json_type(recorded), json_type(actual)
    if kind != actual_kind:
        return [f"{where}: expected {kind} {_shown(recorded)}, got {actual_kind} {_shown(actual)}"]
    if isinstance(recorded, dict):
        found = [f"{where}: missing key {key!r}" for key in recorded if key not in actual]
        found += [f"{where}: unexpected key {key!r} = {_shown(actual[key])}" for key in actual if key not in recorded]
        for key in recorded:
            if key in actual:
                found += compare_json(recorded[key], actual[key], values, f"{where}.{key}")
        return found
    if isinstance(recorded, list):
        found = [] if len(recorded) == len(actual) else [
            f"{where}: expected {len(recorded)} items, got {len(actual)}"]
        for index, (expected_item, actual_item) in enumerate(zip(recorded, actual)):
            found += compare_json(expected_item, actual_item, values, f"{where}[{index}]")
        return found
    if isinstance(recorded, str):
        return _compare_string(recorded, actual, where, values)
    return [] if recorded == actual else [f"{where}: expected {_shown(recorded)}, got {_shown(actual)}"]


def openapi_digest(schema: Any) -> Any:
    """An OpenAPI document reduced the way the recording keeps it: ``{"paths": {path: [METHODS]}}``."""
    if not isinstance(schema, dict) or not isinstance(schema.get("paths"), dict):
        return schema
    return {"paths": {path: [method.upper() for method in item if method in HTTP_METHODS]
                      for path, item in schema["paths"].items()}}


def compare_response(exchange: Exchange, response: httpx.Response, values: MutableMapping[str, str]) -> list[str]:
    """Every difference between the recorded answer and ``response``; learns placeholder values."""
    recorded = exchange.response
    found = []
    if response.status_code != recorded["status"]:
        found.append(f"status: expected {recorded['status']}, got {response.status_code}")
    content_type = response.headers.get("content-type")
    if content_type != recorded["content_type"]:
        found.append(f"content type: expected {recorded['content_type']!r}, got {content_type!r}")
    if "allow" in recorded and response.headers.get("allow") != recorded["allow"]:
        found.append(f"Allow: expected {recorded['allow']!r}, got {response.headers.get('allow')!r}")
    if "location" in recorded:
        expected_url, location = httpx.URL(recorded["location"]), response.headers.get("location")
        actual_url = httpx.URL(location) if location is not None else None
        if actual_url is None or (actual_url.scheme, actual_url.raw_path) != (expected_url.scheme,
                                                                             expected_url.raw_path):
            found.append(f"Location: expected {expected_url.scheme}://<host>{expected_url.path}, got {location!r}")
    body = recorded["body"]
    if isinstance(body, str):
        found += _compare_string(body, response.text, "body", values)
        return found
    try:
        actual = response.json()
    except ValueError:
        return found + [f"body: expected JSON {_shown(body)}, got {_shown(response.text)}"]
    if str(exchange.request["path"]).endswith("/openapi.json"):
        actual = openapi_digest(actual)
    return found + compare_json(body, actual, values)


# --- the replay ----------------------------------------------------------------------------------


def _refuse_non_loopback(base_url: str) -> None:
    host = httpx.URL(base_url).host
    try:
        loopback = host == "localhost" or ipaddress.ip_address(host).is_loopback
    except ValueError:
        loopback = False
    if not loopback:
        raise ValueError(f"the replay sends passwords and talks to a local stand-in only; {base_url} is not loopback")


def replay(exchanges: Iterable[Exchange], base_url: str, *, values: MutableMapping[str, str] | None = None,
           timeout_s: float = DEFAULT_TIMEOUT_S) -> list[Difference]:
    """Send each recorded request to ``base_url`` in order; every difference, by exchange name.

    The stand-in must run on a database from :func:`prepare_replay_database`. Each request
    goes on its own connection: after an unhandled exception uvicorn closes the connection
    it answered the 500 on (the recording shows the client reconnecting there).
    """
    _refuse_non_loopback(base_url)
    values = initial_values() if values is None else values
    differences: list[Difference] = []
    limits = httpx.Limits(max_keepalive_connections=0)
    with httpx.Client(base_url=base_url, timeout=timeout_s, follow_redirects=False, limits=limits) as client:
        for exchange in exchanges:
            try:
                request = build_request(client, exchange, values)
            except MissingValue as exc:
                differences.append(Difference(exchange.name, f"not sent: {exc}"))
                continue
            try:
                response = client.send(request)
            except httpx.TransportError as exc:
                differences.append(Difference(exchange.name, f"no answer: {type(exc).__name__}: {exc}"))
                continue
            differences += [Difference(exchange.name, what) for what in compare_response(exchange, response, values)]
    return differences


# --- logs ------------------------------------------------------------------------------------------

_ACCESS = re.compile(r'^(?P<level>INFO: +)\S+ - (?P<rest>".*)$')
_LOG_LINE = re.compile(r"^(?:INFO|ERROR|WARNING|DEBUG|CRITICAL):")
_NORMALISE: tuple[tuple[re.Pattern[str], str], ...] = (
    (re.compile(r"^Running migrations on sqlite:///.*$"), "Running migrations on sqlite:///<db>"),
    (re.compile(r"(Started|Finished) server process \[\d+\]"), r"\1 server process [<pid>]"),
    (re.compile(r"Uvicorn running on http://\S+ "), "Uvicorn running on http://<host>:<port> "),
)


def _normalised(line: str) -> str:
    access = _ACCESS.match(line)
    if access:
        return f"{access['level']}<client> - {access['rest']}"
    for pattern, replacement in _NORMALISE:
        line = pattern.sub(replacement, line)
    return line


def log_skeleton(lines: Iterable[str]) -> list[str]:
    """What two logs of the same exchanges must share, line by line (see the module doc).

    A traceback (from "Traceback (most recent call last):" to the next log line) keeps
    only its last line, the exception, so source paths and frame counts do not matter.
    """
    skeleton: list[str] = []
    traceback: list[str] | None = None
    for raw in lines:
        line = raw.rstrip("\n")
        if traceback is not None:
            if not _LOG_LINE.match(line):
                traceback.append(line)
                continue
            skeleton.append(next((text for text in reversed(traceback) if text.strip()), "<empty traceback>"))
            traceback = None
        if line.startswith("Traceback (most recent call last):"):
            skeleton.append(line)
            traceback = []
            continue
        skeleton.append(_normalised(line))
    if traceback is not None:
        skeleton.append(next((text for text in reversed(traceback) if text.strip()), "<empty traceback>"))
    return skeleton


def recorded_service_log(path: Path) -> list[str]:
    """The lines the recorded service printed from its start (sections 2 and 3 of the file).

    Section 1 is the database preparation, which :func:`prepare_replay_database` does
    in-process; "===" lines are the recorder's headers (with the blank line before each),
    and "[...]" lines its notes.
    """
    lines: list[str] = []
    section = 0
    for line in path.read_text(encoding="utf-8").splitlines():
        header = re.match(r"^=== (\d+)\.", line)
        if header:
            while lines and not lines[-1]:
                lines.pop()  # the blank line that separates sections in the file
            section = int(header[1])
            continue
        if section >= 2 and not line.startswith("===") and not line.startswith("["):
            lines.append(line)
    return lines


def skeleton_differences(recorded: list[str], actual: list[str]) -> list[str]:
    """A unified diff of two skeletons (empty when they agree)."""
    return list(difflib.unified_diff(recorded, actual, "recorded", "stand-in", lineterm="", n=1))


def main(argv: list[str] | None = None, echo: Callable[[str], None] = print) -> int:
    """``python -m stage.replay RECORDING BASE_URL``: print each difference; exit 1 if any."""
    import argparse

    parser = argparse.ArgumentParser(prog="python -m stage.replay", description=main.__doc__)
    parser.add_argument("recording", type=Path, help="civicforge-real-exchanges.jsonl")
    parser.add_argument("base_url", help="a stand-in on a database from prepare_replay_database, e.g. "
                                         "http://127.0.0.1:8000")
    args = parser.parse_args(argv)
    differences = replay(load_exchanges(args.recording), args.base_url)
    for difference in differences:
        echo(str(difference))
    echo(f"{len(differences)} difference(s)")
    return 1 if differences else 0


if __name__ == "__main__":
    raise SystemExit(main())
