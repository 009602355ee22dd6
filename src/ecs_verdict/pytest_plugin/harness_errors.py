"""A bug in the harness is a verdict, never a pytest INTERNALERROR.

Hooks of the smoke plugins are wrapped with :func:`guarded`: an exception inside
them (anything but pytest's own control flow) is recorded once per run, its
traceback goes to ``<report-dir>/harness-error.txt`` (secrets scrubbed), and the run
goes on to write a verdict ``error`` with exit 6 and one line:
``harness error: KeyError: 'x' in pytest_sessionstart; details in reports/harness-error.txt``.
"""

from __future__ import annotations

import functools
import traceback
from collections.abc import Callable
from pathlib import Path
from typing import Any, TypeVar

import pytest

from ecs_verdict.redact import SecretRegistry, scrub_patterns
from ecs_verdict.pytest_plugin.fixtures import registry_of
from ecs_verdict.pytest_plugin.stash import config_key, harness_error_key

HARNESS_ERROR_FILE = "harness-error.txt"

F = TypeVar("F", bound=Callable[..., Any])


def record_harness_error(config: pytest.Config, where: str, error: BaseException, *,
                         report_dir: Path | None, secrets: SecretRegistry | None) -> str:
    """Write the traceback beside the reports and keep the run's one line (the first error wins)."""
    headline = f"{type(error).__name__}: {str(error).splitlines()[0] if str(error) else ''}".rstrip(": ")
    details = "".join(traceback.format_exception(type(error), error, error.__traceback__))
    if secrets is not None:
        headline, details = secrets.redact(headline), secrets.redact(details)
    headline, details = scrub_patterns(headline), scrub_patterns(details)
    line = f"harness error: {headline} in {where}"
    if report_dir is not None:
        try:
            report_dir.mkdir(parents=True, exist_ok=True)
            with open(report_dir / HARNESS_ERROR_FILE, "a", encoding="utf-8") as out:
                out.write(f"{line}\n{details}\n")
            line += f"; details in {report_dir / HARNESS_ERROR_FILE}"
        except OSError as write_error:
            line += f"; could not write {report_dir / HARNESS_ERROR_FILE} ({write_error.strerror or write_error})"
    config.stash.setdefault(harness_error_key, line)
    return line


def config_in(*args: Any, **kwargs: Any) -> pytest.Config:
    """The ``pytest.Config`` among a hook's arguments (itself, or a session's, item's, metafunc's)."""
    for value in (*args, *kwargs.values()):
        if isinstance(value, pytest.Config):
            return value
    for value in (*args, *kwargs.values()):
        config = getattr(value, "config", None)
        if isinstance(config, pytest.Config):
            return config
    raise TypeError("no pytest.Config among the hook's arguments")


def guarded(*, report_dir_of: Callable[[pytest.Config], Path | None],
            secrets_of: Callable[[pytest.Config], SecretRegistry | None]) -> Callable[[F], F]:
    """Decorate a hook implementation so that its exceptions become a recorded harness error."""

    def decorate(hook: F) -> F:
        @functools.wraps(hook)
        def wrapper(*args: Any, **kwargs: Any) -> Any:
            try:
                return hook(*args, **kwargs)
            except (pytest.UsageError, pytest.skip.Exception, pytest.exit.Exception, KeyboardInterrupt, SystemExit):
                raise
            except Exception as error:  # noqa: BLE001 - exactly what this guard is for
                config = config_in(*args, **kwargs)
                record_harness_error(config, hook.__name__, error, report_dir=report_dir_of(config),
                                     secrets=secrets_of(config))
                return None

        return wrapper  # type: ignore[return-value]

    return decorate


def _report_dir(config: pytest.Config) -> Path | None:
    resolved = config.stash.get(config_key, None)
    return Path(resolved.report_dir) if resolved is not None else None


# The guard every smoke plugin's hooks use: the run's report folder and its secret registry.
harness_hook = guarded(report_dir_of=_report_dir, secrets_of=registry_of)


def record_run_error(config: pytest.Config, where: str, error: BaseException) -> str:
    """``record_harness_error`` into the run's report folder, scrubbed with its secrets (as ``harness_hook`` does)."""
    return record_harness_error(config, where, error, report_dir=_report_dir(config), secrets=registry_of(config))
