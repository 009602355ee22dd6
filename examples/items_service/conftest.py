# Only registers this repository's plugin; the harness (pytest-ecs-verdict) loads itself through its entry point.
pytest_plugins = ["plugins.items_suite"]
