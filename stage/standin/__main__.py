"""Run one stand-in "task": ``python -m stage.standin --host H [--host H2] --port P --db PATH [--fault F]...``.

Does what the real container's entrypoint does — migrations and owner
bootstrap, then uvicorn with its normal logging (access lines on stdout,
errors and tracebacks on stderr; access paths without the ``/api`` mount, as
the real service logs them) — bound to exactly H:P (and H2:P: the stage runs a
task on its private address and its Elastic IP, never on 0.0.0.0). SIGTERM and
SIGINT end it with exit status 0, at any stage of its life.
"""

from __future__ import annotations

import argparse
import json
import logging
import os
import signal
import socket
import sys
import time
from types import FrameType
from typing import TYPE_CHECKING

if TYPE_CHECKING:
    import uvicorn

from stage.faults import APP_FAULTS, FaultError, Faults, parse_faults

PROG = "python -m stage.standin"
SECRET_KEY_ENV = "CIVICFORGE_SECRET_KEY"
STARTUP_FAILURE = 3  # uvicorn's exit status when it cannot bind or start the app


def _parse_arguments(argv: list[str] | None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(prog=PROG, description=__doc__.splitlines()[0])
    parser.add_argument("--host", required=True, action="append",
                        help="address to bind, e.g. 127.0.0.1; repeat it to listen on several addresses")
    parser.add_argument("--port", required=True, type=int, help="port to bind")
    parser.add_argument("--db", required=True, help="SQLite file shared by every task of the stage")
    parser.add_argument("--fault", action="append", default=[], metavar="F",
                        help="fault switch, repeatable: " + ", ".join(sorted(APP_FAULTS)))
    parser.add_argument("--version", dest="app_version", default=None,
                        help="version string to add to the health body (the real service has none)")
    parser.add_argument("--secret-key", default=None, help="HS256 key for tokens")
    parser.add_argument("--base-url", default=None,
                        help="invite URL base (default http://localhost:8000, as the real deployment, "
                             "which leaves BASE_URL unset)")
    return parser.parse_args(argv)


def _app_faults(items: list[str]) -> Faults:
    """Parse the switches, refusing the stage-only ones the app cannot honour."""
    faults = parse_faults(items)
    stage_only = sorted(name for name in faults.names if name not in APP_FAULTS)
    if stage_only:
        known = ", ".join(sorted(APP_FAULTS))
        raise FaultError(f"fault {stage_only[0]!r} is a stage fault, not an app fault; app faults: {known}")
    return faults


def _exit_cleanly(signum: int, frame: FrameType | None) -> None:
    # uvicorn restores this handler after its graceful shutdown and re-raises
    # the signal, so this also turns a served SIGTERM into exit status 0.
    raise SystemExit(0)


def main(argv: list[str] | None = None) -> int:
    """Parse arguments, run the entrypoint's migrations, then serve until a signal."""
    args = _parse_arguments(argv)
    try:
        faults = _app_faults(args.fault)
    except FaultError as exc:
        print(f"{PROG}: error: {exc}", file=sys.stderr)
        return 2
    for handled in (signal.SIGTERM, signal.SIGINT):
        signal.signal(handled, _exit_cleanly)

    # Imported only now: a typo in --fault fails fast, without loading FastAPI.
    import uvicorn

    from stage.standin.app import (
        DEFAULT_BASE_URL,
        DEFAULT_SECRET_KEY,
        Settings,
        create_app,
        run_entrypoint,
        uvicorn_log_config,
    )

    settings = Settings(
        db_path=args.db,
        faults=faults,
        # Like the real task: the key arrives as CIVICFORGE_SECRET_KEY (from Secrets Manager),
        # which keeps it out of the process list.
        secret_key=args.secret_key or os.environ.get(SECRET_KEY_ENV) or DEFAULT_SECRET_KEY,
        base_url=args.base_url or DEFAULT_BASE_URL,
        version=args.app_version,
    )
    # The real image's locale is UTF-8 and its start-up prints "✓" lines; so does this,
    # whatever locale the stage runs under.
    sys.stdout.reconfigure(encoding="utf-8")  # type: ignore[union-attr]
    run_entrypoint(settings, echo=lambda line: print(line, flush=True))
    if faults.warmup_s:
        # warmup_s: the port stays closed, like a task still booting.
        time.sleep(faults.warmup_s)
    config = uvicorn.Config(create_app(settings), host=args.host[0], port=args.port, log_level="info",
                            log_config=uvicorn_log_config())
    return _serve(config, args.host)


def _serve(config: uvicorn.Config, hosts: list[str]) -> int:
    """uvicorn on one socket per host, logging "Uvicorn running on ..." for each as uvicorn does for one.

    uvicorn binds a single host by itself; given sockets it serves them all but logs no
    "running on" line, which the real service's log has (recorded) after the app's start-up.
    """
    import uvicorn

    logger = logging.getLogger("uvicorn.error")

    class Server(uvicorn.Server):
        async def startup(self, sockets: list[socket.socket] | None = None) -> None:
            await super().startup(sockets=sockets)
            if not self.started:
                return
            for sock in sockets or ():
                host, port = sock.getsockname()[:2]
                shown = f"[{host}]" if sock.family == socket.AF_INET6 else host
                logger.info("Uvicorn running on http://%s:%d (Press CTRL+C to quit)", shown, port)

    sockets: list[socket.socket] = []
    try:
        for host in hosts:
            sock = socket.socket(socket.AF_INET6 if ":" in host else socket.AF_INET, socket.SOCK_STREAM)
            sockets.append(sock)
            sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
            # Bound, not listening: the port refuses connections until uvicorn has started the app.
            sock.bind((host, config.port))
    except OSError as exc:
        logger.error(exc)
        for sock in sockets:
            sock.close()
        return STARTUP_FAILURE
    server = Server(config)
    state = getattr(config.app, "state", None)
    if state is not None:
        state.connections = server.server_state.connections  # the reset_once fault finds its connection here
    try:
        server.run(sockets=sockets)
    finally:
        for sock in sockets:
            sock.close()
    return 0 if server.started else STARTUP_FAILURE


def warm_then_main() -> int:
    """``--warm``: load FastAPI and uvicorn now, then wait for this task's arguments on stdin.

    The stage keeps a few of these ready so a task starts in milliseconds instead of
    paying a second of imports after ECS "starts" it.
    """
    import uvicorn  # noqa: F401 - imported for its cost, used by main()

    import stage.standin.app  # noqa: F401

    line = sys.stdin.readline()
    if not line.strip():
        return 0  # the stage stopped before it needed this process
    return main(json.loads(line))


if __name__ == "__main__":
    sys.exit(warm_then_main() if sys.argv[1:] == ["--warm"] else main())
