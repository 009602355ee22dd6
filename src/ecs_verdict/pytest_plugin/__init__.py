"""The pytest plugin of ecs-verdict, loaded through its ``pytest11`` entry point.

It only adapts pytest's hooks to the pytest-free harness (the ``ecs_verdict`` package): options,
the once-per-run preflight, parametrisation over the live tasks, the reports. A suite (a folder of
tests listed in ``smoke_suites``) takes part through the hooks in ``hookspecs``.
"""

pytest_plugins = [
    "ecs_verdict.pytest_plugin.fixtures",
    "ecs_verdict.pytest_plugin.reporting",
    "ecs_verdict.pytest_plugin.smoke_plugin",
]
