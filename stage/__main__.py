"""``python -m stage up --scenario NAME [--fault F]... [--load-balancer] [--lb-fault F]... [--app-cmd CMD]``.

A local ECS in the foreground. Prints ``export KEY=VALUE`` lines for a harness, then
``stage ready``, on stdout; on stderr, first, how the health checks are counted
(``stage: health checks every ...``), and with a load balancer its listeners. Ctrl-C or SIGTERM stops everything it started. Bad input: one line on
stderr, exit 2.
"""

from __future__ import annotations

import argparse
import shlex
import signal
import sys
import threading

from stage.deployment import (DEFAULT_START_PERIOD_SCALE, DEFAULT_TIME_SCALE, Stage, StageOptions, clock_factor,
                              task_count)
from stage.seed import DESIRED_COUNT
from stage.faults import ALL_FAULTS
from stage.load_balancer import LB_FAULTS
from stage.scenarios import SCENARIOS
from stage.errors import StageError

EXIT_BAD_INPUT = 2


def parse_args(argv: list[str]) -> argparse.Namespace:
    parser = argparse.ArgumentParser(prog="python -m stage", description=__doc__)
    commands = parser.add_subparsers(dest="command", required=True)
    up = commands.add_parser("up", help="bring the deployment up and keep it running until interrupted")
    up.add_argument("--scenario", default="healthy", help="one of: " + ", ".join(SCENARIOS))
    up.add_argument("--tasks", default=DESIRED_COUNT, metavar="N",
                    help=f"the service's desired count: tasks per deployment (default {DESIRED_COUNT})")
    up.add_argument("--fault", action="append", default=[], metavar="NAME[=N]",
                    help="repeatable; one of: " + ", ".join(ALL_FAULTS))
    up.add_argument("--load-balancer", action="store_true",
                    help="an Application Load Balancer in front of the service (target groups, listeners on loopback)")
    up.add_argument("--lb-fault", action="append", default=[], metavar="NAME",
                    help="repeatable, implies --load-balancer; one of: " + ", ".join(LB_FAULTS))
    up.add_argument("--health-check-path", default="/health", help="path the task definition's health check probes")
    up.add_argument("--app-cmd", help="run this instead of the stand-in, e.g. 'myapp --bind {host}:{port}'")
    up.add_argument("--app-version", help="version string the stand-in reports in its health body")
    up.add_argument("--moto-port", type=int, default=0, help="port for the simulated AWS endpoint (default: free)")
    up.add_argument("--rolling-delay", type=float, default=3.0, help="seconds before the rolling deploy begins")
    # Read as text and checked by clock_factor, the rule Stage applies too: a bad value is one line, exit 2.
    up.add_argument("--time-scale", default=DEFAULT_TIME_SCALE, metavar="F",
                    help=f"factor on the health check's interval and timeout (default {DEFAULT_TIME_SCALE:g})")
    up.add_argument("--start-period-scale", default=DEFAULT_START_PERIOD_SCALE, metavar="F",
                    help="factor on the health check's startPeriod (default 1: real seconds, as the app "
                         "needs them to boot)")
    return parser.parse_args(argv)


def main(argv: list[str] | None = None) -> int:
    args = parse_args(sys.argv[1:] if argv is None else argv)
    stopping = threading.Event()
    # SIGTERM ends the stage like Ctrl-C does, so a CI job that kills it leaves nothing behind.
    signal.signal(signal.SIGTERM, lambda *_: stopping.set())
    try:
        options = StageOptions(
            scenario=args.scenario, tasks=task_count("--tasks", args.tasks), faults=tuple(args.fault), health_check_path=args.health_check_path,
            app_cmd=args.app_cmd, app_version=args.app_version, moto_port=args.moto_port,
            rolling_delay_s=args.rolling_delay, time_scale=clock_factor("--time-scale", args.time_scale),
            start_period_scale=clock_factor("--start-period-scale", args.start_period_scale),
            load_balancer=args.load_balancer or bool(args.lb_fault), lb_faults=tuple(args.lb_fault),
        )
        stage = Stage(options)
        stage.start()
    except StageError as error:
        print(f"stage: {error}", file=sys.stderr)
        return EXIT_BAD_INPUT
    except KeyboardInterrupt:
        return 130
    try:
        for key, value in stage.env.items():
            print(f"export {key}={shlex.quote(value)}")
        if options.load_balancer:
            balancer = stage.load_balancer
            listeners = f"production listener {balancer.production_url}"
            if balancer.test_url:
                listeners += f", test listener {balancer.test_url}"
            print(f"stage: load balancer {balancer.dns_name}: {listeners}", file=sys.stderr, flush=True)
        print("stage ready", flush=True)
        while not stopping.wait(0.5):
            pass
    except KeyboardInterrupt:
        pass
    finally:
        stage.stop()
        print("stage stopped", file=sys.stderr)
    return 0


if __name__ == "__main__":
    sys.exit(main())
