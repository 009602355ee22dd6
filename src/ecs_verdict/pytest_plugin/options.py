"""The smoke harness's options in pytest: registration, and a bad value as pytest's exit 4.

Parsing, defaults, precedence (CLI, environment, ini, default) and the one rule per
option live in the pytest-free :mod:`ecs_verdict.settings`; this module only
registers the options in one group and turns its ``UsageError`` into
``pytest.UsageError``, which pytest reports as one line with exit status 4.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any, Callable

import pytest

from ecs_verdict.settings import (
    DEFAULT_HEALTH_PATH,
    OPTIONS,
    OptionSpec,
    Settings,
    UsageError,
    check_report_dir_writable,
    resolve_option,
    resolve_settings,
)
from ecs_verdict.suite import NO_SUITE, SuiteProfile

GROUP = "smoke harness (post-deploy verification)"
SmokeConfig = Settings  # the name the pytest layer and the tests know it by

__all__ = ["DEFAULT_HEALTH_PATH", "GROUP", "OPTIONS", "OptionSpec", "SmokeConfig", "add_options",
           "add_suite_option", "resolve_config", "resolve_suite_option"]


def add_options(parser: pytest.Parser) -> None:
    for spec in OPTIONS:
        add_suite_option(parser, spec)


def add_suite_option(parser: pytest.Parser, spec: OptionSpec) -> None:
    """Register one option (flag, environment variable, ini key) in the smoke group; a suite adds its own so."""
    group = parser.getgroup("smoke", GROUP)
    env = f" [env {spec.env}]" if spec.env else ""
    if spec.is_flag:
        group.addoption(spec.flag, action="store_const", const="true", default=None, dest=spec.dest,
                        help=spec.help + env)
    else:
        group.addoption(spec.flag, action="append" if spec.repeatable else "store", default=None,
                        dest=spec.dest, metavar=spec.metavar or spec.dest.upper(), help=spec.help + env)
    parser.addini(spec.ini, help=spec.help, default=None)


def resolve_suite_option(config: pytest.Config, spec: OptionSpec) -> tuple[Any, str]:
    """A suite's own option: (value, where it came from) by the harness's precedence, or exit 4 with one line."""
    try:
        return resolve_option(spec, config.getoption, lambda name: config.getini(name) or None)
    except UsageError as error:
        raise pytest.UsageError(str(error)) from None


def resolve_config(cli: Callable[[str], Any], ini: Callable[[str], Any],
                   environ: Mapping[str, str] | None = None, *, check_writable: bool = True,
                   suite: SuiteProfile = NO_SUITE) -> Settings:
    """The run's settings, or ``pytest.UsageError`` (exit 4) with the one line that says how to fix it."""
    try:
        settings = resolve_settings(cli, ini, environ, suite)
        if check_writable:
            check_report_dir_writable(settings.report_dir)
    except UsageError as error:
        raise pytest.UsageError(str(error)) from None
    return settings
