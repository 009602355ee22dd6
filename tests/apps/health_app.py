"""A service that is not CivicForge: one route, ``GET /health`` -> 200 (for the second-suite test).

``python tests/apps/health_app.py HOST PORT``; SIGTERM ends it with status 0.
"""

from __future__ import annotations

import json
import signal
import sys
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from types import FrameType


class Health(BaseHTTPRequestHandler):
    def do_GET(self) -> None:  # noqa: N802 - the http.server API
        found = self.path == "/health"
        body = json.dumps({"ok": True} if found else {"error": "not found"}).encode()
        self.send_response(200 if found else 404)
        self.send_header("Content-Type", "application/json")
        self.send_header("Content-Length", str(len(body)))
        self.end_headers()
        self.wfile.write(body)


def _stop(signum: int, frame: FrameType | None) -> None:
    raise SystemExit(0)


def main() -> int:
    host, port = sys.argv[1], int(sys.argv[2])
    signal.signal(signal.SIGTERM, _stop)
    server = ThreadingHTTPServer((host, port), Health)
    print(f"health app listening on http://{host}:{port}", flush=True)
    try:
        server.serve_forever()
    finally:
        server.server_close()
    return 0


if __name__ == "__main__":
    sys.exit(main())
