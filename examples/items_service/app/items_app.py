"""The items service: another team's small HTTP API, standard library only.

``python app/items_app.py HOST PORT --token-file PATH [--version V] [--fault NAME]``

- ``GET /healthz``: 200 ``{"status": "ok"}`` (what ECS's container health check probes).
- ``GET /version``: 200 ``{"service": "items", "version": V}``.
- ``GET /items``: 200, a JSON list of ``{"id", "name", "price_cents"}``, for a request whose
  ``Authorization: Bearer`` token is the one in ``--token-file``; 401 otherwise.

Faults, to see the smoke suite catch them (``--fault``, repeatable):

- ``schema_drift``: ``/items`` renames ``price_cents`` to ``price`` (a float): a release whose
  model changed without its consumers;
- ``reject_token``: ``/items`` refuses every token (the token was rotated in the service, not in
  the secret the smoke suite reads).

SIGTERM ends it with status 0 (as ECS stops a task).
"""

from __future__ import annotations

import argparse
import hmac
import json
import signal
import sys
from dataclasses import dataclass
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from types import FrameType
from typing import Any

FAULTS = ("schema_drift", "reject_token")
ITEMS = ({"id": 1, "name": "kettle", "price_cents": 2499}, {"id": 2, "name": "teapot", "price_cents": 1850})


@dataclass(frozen=True, slots=True)
class Settings:
    token: str
    version: str
    faults: frozenset[str]


def items_body(settings: Settings) -> list[dict[str, Any]]:
    if "schema_drift" in settings.faults:
        return [{"id": item["id"], "name": item["name"], "price": item["price_cents"] / 100} for item in ITEMS]
    return [dict(item) for item in ITEMS]


def authorised(header: str | None, settings: Settings) -> bool:
    if "reject_token" in settings.faults or not header or not header.startswith("Bearer "):
        return False
    return hmac.compare_digest(header.removeprefix("Bearer ").encode(), settings.token.encode())


def handler_for(settings: Settings) -> type[BaseHTTPRequestHandler]:
    class Items(BaseHTTPRequestHandler):
        def do_GET(self) -> None:  # noqa: N802 - the http.server API
            if self.path == "/healthz":
                self._answer(200, {"status": "ok"})
            elif self.path == "/version":
                self._answer(200, {"service": "items", "version": settings.version})
            elif self.path == "/items":
                if authorised(self.headers.get("Authorization"), settings):
                    self._answer(200, items_body(settings))
                else:
                    self._answer(401, {"error": "a valid bearer token is required"})
            else:
                self._answer(404, {"error": "not found"})

        def _answer(self, status: int, body: Any) -> None:
            data = json.dumps(body).encode()
            self.send_response(status)
            self.send_header("Content-Type", "application/json")
            self.send_header("Content-Length", str(len(data)))
            self.end_headers()
            self.wfile.write(data)

        def log_message(self, format: str, *args: Any) -> None:  # noqa: A002 - the http.server API
            sys.stderr.write(f"items: {self.command} {self.path} -> {args[1] if len(args) > 1 else '?'}\n")

    return Items


def parse_args(argv: list[str]) -> tuple[str, int, Settings]:
    parser = argparse.ArgumentParser(description="the items service")
    parser.add_argument("host")
    parser.add_argument("port", type=int)
    parser.add_argument("--token-file", type=Path, required=True, help="file holding the API's bearer token")
    parser.add_argument("--version", default="1.0.0", dest="app_version")
    parser.add_argument("--fault", action="append", choices=FAULTS, default=[])
    args = parser.parse_args(argv)
    token = args.token_file.read_text(encoding="utf-8").strip()
    if not token:
        parser.error(f"--token-file {args.token_file} is empty")
    return args.host, args.port, Settings(token, args.app_version, frozenset(args.fault))


def _stop(signum: int, frame: FrameType | None) -> None:
    raise SystemExit(0)


def main(argv: list[str] | None = None) -> int:
    host, port, settings = parse_args(sys.argv[1:] if argv is None else argv)
    signal.signal(signal.SIGTERM, _stop)
    server = ThreadingHTTPServer((host, port), handler_for(settings))
    print(f"items app {settings.version} listening on http://{host}:{port}", flush=True)
    try:
        server.serve_forever()
    finally:
        server.server_close()
    return 0


if __name__ == "__main__":
    sys.exit(main())
